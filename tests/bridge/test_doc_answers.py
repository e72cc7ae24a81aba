"""docs/his-interface.md answers questions 4-8 of issue 15; these check the bridge does what it says:
health's version, the Content-Type rule, the port rule, the 202 states of 1.1 C, result msg_ids."""

from __future__ import annotations

import importlib.metadata
import re
import socket

import pytest
import requests

from protocol.messages import Progress
from tests.bridge.conftest import World, wait_until
from tests.bridge.test_api import api, post  # noqa: F401 - the fixture

DOC_STATES = {"queued", "awaiting_scan", "paying", "awaiting_supervisor", "refunding", "reversing"}


def test_health_reports_the_package_version(api) -> None:  # noqa: F811
    _, bridge, _ = api
    health = requests.get(f"{bridge.url}/v1/health", timeout=10).json()
    assert health["version"] == importlib.metadata.version("his-smartpos")


def test_a_post_without_content_type_is_read_as_json(api) -> None:  # noqa: F811
    world, bridge, _ = api
    envelope = world.seal("+1.00", "MZ-CT")
    answer = requests.post(f"{bridge.url}/v1/instructions?wait=5", data=envelope.to_bytes(), timeout=30,
                           headers={"Content-Type": None})  # requests sends none for bytes; make sure
    assert answer.status_code == 200
    assert re.fullmatch(r"ECHO-R-[0-9a-f]{24}|R[0-9a-f]{24}", answer.json()["msg_id"])


def test_the_bridge_never_falls_back_to_another_port(world: World) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        with pytest.raises(OSError):
            world.bridge(["socket://127.0.0.1:9"], http={"port": port})
    finally:
        busy.close()


def test_the_202_states_are_the_documented_six() -> None:
    assert {p.state_for_his() for p in Progress} == DOC_STATES
    doc = (__import__("pathlib").Path(__file__).resolve().parents[2] / "docs" / "his-interface.md").read_text(encoding="utf-8")
    for state in DOC_STATES:
        assert f"`{state}`" in doc
