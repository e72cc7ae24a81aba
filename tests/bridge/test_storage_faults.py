"""Issue 14, finding 3: storage errors are survivable.

Any storage error used to kill the bridge's device-port thread for good: a result the POS sent while
the disk was full was never stored (HIS saw a stale 202), new instructions got 500 internal_error,
health did not name the journal, and only a restart helped. Here the journal sits on a real, small
filesystem (a tmpfs of a few MiB this test mounts and removes) that is really filled up, and on a
journal another program really locks.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from firmware_sim.responder import ResponderMode
from protocol.envelope import receive_result
from terminal.link.endpoint import DeviceEndpoint
from terminal.link.tcp_wire import TcpWire
from tests.bridge.conftest import DEVICE_TIMERS, World, wait_until
from tests.small_disk import fill, small_disk  # noqa: F401 (small_disk: a fixture)


def post(bridge, body: bytes, wait: int = 0) -> requests.Response:
    return requests.post(f"{bridge.url}/v1/instructions?wait={wait}", data=body, timeout=30)


def test_a_full_disk_is_named_answered_503_and_survived(world: World, small_disk: Path) -> None:
    responder = world.responder(mode=ResponderMode.SILENT)  # the patient has not paid yet
    endpoint = world.endpoint("tcp", responder)
    bridge = world.bridge([endpoint.bridge_url], journal={"path": str(small_disk / "journal.sqlite3")})
    wait_until(lambda: bridge.health()["devices"][0]["link"] == "up", what="device link up")
    paying = world.seal("+7.00", "MZ-FULL")
    assert post(bridge, paying.to_bytes()).status_code == 202

    filler = fill(small_disk)
    responder.release()  # the payment went through while the disk is full: the result must not be lost
    wait_until(lambda: bridge.ports[0].withheld_acks >= 1, what="the result not acknowledged")
    assert responder.pending_answers == 1  # the POS keeps it and sends it again at every link-up
    later = world.seal("+3.00", "MZ-LATER")
    refused = post(bridge, later.to_bytes())
    assert (refused.status_code, refused.json()["error"]["code"]) == (503, "storage_unavailable")
    assert "disk_full" in refused.json()["error"]["message"]
    health = bridge.health()
    assert health["status"] == "degraded"
    assert (health["journal"]["storage"]["ok"], health["journal"]["storage"]["cause"]) == (False, "disk_full")
    assert bridge.ports[0]._thread is not None and bridge.ports[0]._thread.is_alive()  # the port's thread lives on

    filler.unlink()  # IT frees space: the bridge recovers by itself, nothing restarted
    got = requests.get(f"{bridge.url}/v1/results/{paying.msg_id}?wait=20", timeout=40)
    assert got.status_code == 200
    retried = post(bridge, later.to_bytes(), wait=10)  # HIS retries the identical envelope
    assert retried.status_code == 200
    wait_until(lambda: bridge.health()["journal"]["storage"]["ok"], what="storage ok again")
    wait_until(lambda: responder.pending_answers == 0, what="the POS saw the ACK once the result was journaled")
    assert responder.executions[paying.msg_id] == 1 and responder.executions[later.msg_id] == 1


def test_a_journal_locked_by_another_program_answers_503_and_recovers(world: World) -> None:
    endpoint = world.endpoint("tcp", world.responder())
    bridge = world.bridge([endpoint.bridge_url], journal={"busy_timeout_s": 1})
    wait_until(lambda: bridge.health()["devices"][0]["link"] == "up", what="device link up")
    other = sqlite3.connect(world.dir / "journal.sqlite3", isolation_level=None, timeout=5)
    other.execute("BEGIN EXCLUSIVE")  # e.g. a backup tool or `sqlite3` left open mid-transaction
    try:
        envelope = world.seal("+5.00", "MZ-LOCK")
        refused = post(bridge, envelope.to_bytes())
        assert (refused.status_code, refused.json()["error"]["code"]) == (503, "storage_unavailable")
        assert bridge.health()["journal"]["storage"]["cause"] == "locked"
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert post(bridge, envelope.to_bytes(), wait=10).status_code == 200
    assert bridge.health()["journal"]["storage"]["ok"] is True


def test_a_pos_that_cannot_write_its_journal_shows_in_bridge_health(world: World) -> None:
    """Issue 14, finding 6: a full POS disk was invisible (bridge health said ok)."""
    from protocol.errors import ErrorCode

    responder = world.responder(mode=ResponderMode.REFUSE, refuse_code=ErrorCode.STORAGE_UNAVAILABLE)
    endpoint = world.endpoint("tcp", responder)
    bridge = world.bridge([endpoint.bridge_url])
    wait_until(lambda: bridge.health()["devices"][0]["link"] == "up", what="device link up")
    envelope = world.seal("+2.00", "MZ-POSFULL")
    post(bridge, envelope.to_bytes(), wait=0)
    # The POS cannot journal, so it cannot seal an answer: not_taken ends nothing, HIS sees why.
    wait_until(lambda: (requests.get(f"{bridge.url}/v1/results/{envelope.msg_id}", timeout=10).json().get("last_event")
                        or {}).get("code") == "storage_unavailable", what="the reason in the 202 answer")
    assert requests.get(f"{bridge.url}/v1/results/{envelope.msg_id}", timeout=10).json()["state"] == "queued"
    health = bridge.health()
    assert health["status"] == "degraded" and health["devices"][0]["journal_problem"] == "storage_unavailable"
    assert [n["msg_id"] for n in health["instructions"]["not_taken"]] == [envelope.msg_id]
    # Space freed on the POS: the same instruction is sent again when the device next attaches, and answered.
    responder.mode = ResponderMode.ANSWER
    endpoint.unplug()
    endpoint.replug()
    final = requests.get(f"{bridge.url}/v1/results/{envelope.msg_id}?wait=10", timeout=30)
    assert final.status_code == 200 and "sig" in final.json()
    result = receive_result(final.content, world.ring, now=time.time(), device_keys=world.public_keys().get).message
    assert (result.pay_status.value, result.order_no) == ("SUCCESS", "MZ-POSFULL")
    assert responder.executions[envelope.msg_id] == 1
    health = bridge.health()
    assert health["status"] == "ok" and health["devices"][0]["journal_problem"] is None
    assert health["instructions"]["not_taken"] == []


def test_a_result_the_journal_cannot_take_is_not_acknowledged_and_survives_kill_9(
        world: World, small_disk: Path, bridge_process: Callable[..., Any]) -> None:
    """Never ACK a frame whose content is not durably journaled (docs/link-protocol.md §7, rule 3).

    The bridge used to ACK a result it could not journal and keep it in memory: kill -9 then lost a
    payment that went through. Now the POS keeps it (no ACK) and HIS gets it from the next bridge."""
    responder = world.responder(mode=ResponderMode.SILENT)  # the patient has not paid yet
    endpoint = world.endpoint("tcp", responder)
    config = world.write_config([endpoint.bridge_url], journal={"path": str(small_disk / "journal.sqlite3")})
    first = bridge_process(config).start()
    wait_until(lambda: first.health()["devices"][0]["link"] == "up", what="device link up")
    paying = world.seal("+7.00", "MZ-NOACK")
    assert requests.post(f"{first.url}/v1/instructions?wait=0", data=paying.to_bytes(), timeout=30).status_code == 202

    filler = fill(small_disk)
    responder.release()  # the payment went through while the disk is full
    wait_until(lambda: any(line.get("event") == "ack_withheld" for line in world.log_lines()),
               what="the bridge withholding the ACK")
    assert responder.pending_answers == 1  # the POS still holds the result: nothing acknowledged it
    health = first.health()
    assert health["status"] == "degraded" and health["journal"]["storage"]["cause"] == "disk_full"
    first.kill()  # kill -9 while the journal is unwritable: nothing of the result was only in memory

    filler.unlink()
    second = bridge_process(config).start()
    got = requests.get(f"{second.url}/v1/results/{paying.msg_id}?wait=20", timeout=40)
    assert got.status_code == 200
    result = receive_result(got.content, world.ring, now=time.time(), device_keys=world.public_keys().get).message
    assert (result.pay_status.value, result.order_no) == ("SUCCESS", "MZ-NOACK")
    wait_until(lambda: responder.pending_answers == 0, what="the POS saw the ACK once the result was journaled")
    assert responder.executions[paying.msg_id] == 1
    assert second.terminate() == 0


def test_a_result_sent_while_another_program_locks_the_journal_is_not_acknowledged_until_stored(world: World) -> None:
    responder = world.responder(mode=ResponderMode.SILENT)
    endpoint = world.endpoint("tcp", responder)
    bridge = world.bridge([endpoint.bridge_url], journal={"busy_timeout_s": 1})
    wait_until(lambda: bridge.health()["devices"][0]["link"] == "up", what="device link up")
    paying = world.seal("+6.00", "MZ-LOCKED-RESULT")
    assert post(bridge, paying.to_bytes()).status_code == 202
    other = sqlite3.connect(world.dir / "journal.sqlite3", isolation_level=None, timeout=5)
    other.execute("BEGIN EXCLUSIVE")  # another program holds the journal while the patient pays
    try:
        responder.release()
        wait_until(lambda: bridge.ports[0].withheld_acks >= 1, what="the result not acknowledged")
        assert responder.pending_answers == 1
    finally:
        other.execute("ROLLBACK")
        other.close()
    got = requests.get(f"{bridge.url}/v1/results/{paying.msg_id}?wait=20", timeout=40)
    assert got.status_code == 200
    wait_until(lambda: responder.pending_answers == 0, what="the POS saw the ACK once the result was journaled")
    assert responder.executions[paying.msg_id] == 1


def test_a_result_refused_for_a_full_disk_is_taken_on_the_same_link_session_once_space_is_back(world: World, small_disk: Path) -> None:
    """Finer withheld ACK (docs/link-protocol.md §7): only the frame the journal could not take is
    un-ACKed; the POS retransmits it on the same session, and it is taken once space is back, with
    no link restart. (The POS here retries for longer than the default 5 tries, as a slow-to-free
    disk needs; the session-level rule is tests/protocol/link/test_refuse.py.)"""
    responder = world.responder(mode=ResponderMode.SILENT)
    endpoint = DeviceEndpoint(TcpWire(), responder, identity=world.identities["D1"], device_key_seed=world.seeds["D1"],
                              timers=dataclasses.replace(DEVICE_TIMERS, rto_base_s=0.3, max_tries=200), host_trust=world.host_trust)
    endpoint.start()
    world._cleanups.append(endpoint.stop)
    bridge = world.bridge([endpoint.bridge_url], journal={"path": str(small_disk / "journal.sqlite3")})
    wait_until(lambda: bridge.health()["devices"][0]["link"] == "up", what="device link up")
    paying = world.seal("+7.00", "MZ-REFUSED")
    assert post(bridge, paying.to_bytes()).status_code == 202
    port = bridge.ports[0]
    session_since = port.since

    filler = fill(small_disk)
    responder.release()
    wait_until(lambda: port.withheld_acks >= 1, what="the result not acknowledged")
    filler.unlink()
    got = requests.get(f"{bridge.url}/v1/results/{paying.msg_id}?wait=20", timeout=40)
    assert got.status_code == 200
    wait_until(lambda: responder.pending_answers == 0, what="the POS saw the ACK")
    assert port.since == session_since and port.peer is not None  # the same link session: no restart
    assert port._link is not None and port._link.stats.refused >= 1
    assert responder.executions[paying.msg_id] == 1
