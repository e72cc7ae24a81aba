"""One channel-sandbox process for the channel client tests (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import uuid
from typing import Iterator

import pytest

from firmware_sim.sandbox.launcher import SandboxProcess
from protocol.messages import PayChannel
from gateway.channels import build_clients, settings_from_sandbox
from terminal.channels.base import ChannelClient

# Short cadence for tests; the channels' own values are the class defaults.
FAST = {"query_interval_s": 0.2, "pay_deadline_s": 5.0}


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    process = SandboxProcess(str(tmp_path_factory.mktemp("channel-sandbox")))
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def clients(sandbox: SandboxProcess) -> dict[PayChannel, ChannelClient]:
    return build_clients(settings_from_sandbox(sandbox.credentials_path, wechat=FAST, alipay=FAST))


@pytest.fixture(scope="session")
def impatient(sandbox: SandboxProcess) -> dict[PayChannel, ChannelClient]:
    """Clients that give up on a reply after 0.7 s (for slow and silent codes)."""
    short = {**FAST, "read_timeout_s": 0.7}
    return build_clients(settings_from_sandbox(sandbox.credentials_path, wechat=short, alipay=short))


@pytest.fixture(params=[PayChannel.WECHAT, PayChannel.ALIPAY], ids=["wechat", "alipay"])
def channel(request: pytest.FixtureRequest) -> PayChannel:
    return request.param


def order_no() -> str:
    return "T" + uuid.uuid4().hex[:24]
