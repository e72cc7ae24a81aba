"""Nothing lost: kill the bridge process at every journaled state (and with a real SIGKILL), restart it,
and every result still reaches HIS, identically on every query, with no instruction executed twice."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
import requests

from protocol.envelope import receive_result
from protocol.messages import PayStatus

from bridge.journal import CRASH_ENV, CRASH_EXIT_CODE
from firmware_sim.responder import ResponderMode
from tests.bridge.conftest import World, wait_until

BURST = 4


def device_up(process) -> bool:
    try:
        return process.health()["devices"][0]["link"] == "up"
    except (requests.RequestException, ValueError, KeyError, IndexError):
        return False


def post_quietly(url: str, body: bytes, results: list[object]) -> None:
    try:
        results.append(requests.post(url + "/v1/instructions?wait=10", data=body, timeout=30).status_code)
    except requests.RequestException as exc:  # the bridge died under this request: expected
        results.append(type(exc).__name__)


@pytest.mark.parametrize("state, wire", [
    ("accepted", "pty"), ("sent", "tcp"), ("progress", "pty"), ("result_stored", "tcp"),
])
def test_crash_right_after_each_journaled_state(world: World, bridge_process, state: str, wire: str) -> None:
    responder = world.responder(progress=True)  # progress, then the result: every state occurs
    endpoint = world.endpoint(wire, responder)
    config = world.write_config([endpoint.bridge_url])
    first = bridge_process(config, env={CRASH_ENV: state}).start()
    wait_until(lambda: device_up(first), what="device link up")

    envelopes = [world.seal("+12.50", f"MZ{i:04d}") for i in range(BURST)]
    outcomes: list[object] = []
    threads = [threading.Thread(target=post_quietly, args=(first.url, e.to_bytes(), outcomes)) for e in envelopes]
    for t in threads:
        t.start()
    assert first.wait_exit() == CRASH_EXIT_CODE  # it died right after committing `state`
    for t in threads:
        t.join()
    with sqlite3.connect(world.dir / "journal.sqlite3") as db:
        states = [s for (s,) in db.execute("SELECT state FROM instructions")]
    assert state in states  # committed, and nothing after it happened

    second = bridge_process(config).start()
    wait_until(lambda: device_up(second), what="device link up again")
    for envelope in envelopes:
        # HIS retries with the identical envelope: a result, never a second execution.
        answers = [requests.post(second.url + "/v1/instructions?wait=10", data=envelope.to_bytes(), timeout=30)
                   for _ in range(2)]
        answers.append(requests.get(f"{second.url}/v1/results/{envelope.msg_id}?wait=10", timeout=30))
        # Some instructions may never have been accepted before the crash: their first retry is new work.
        assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
        assert answers[0].content == answers[1].content == answers[2].content
        result = receive_result(answers[0].content, world.ring, now=time.time(), instruction_ts=envelope.ts)
        assert result.envelope.reply_to == envelope.msg_id and result.message.pay_status is PayStatus.SUCCESS
    assert all(responder.executions[e.msg_id] == 1 for e in envelopes), responder.executions
    assert second.terminate() == 0


def test_real_sigkill_mid_payment_then_restart(world: World, bridge_process) -> None:
    responder = world.responder()
    responder.mode = responder.mode.SILENT  # the patient has not scanned yet
    endpoint = world.endpoint("pty", responder)
    config = world.write_config([endpoint.bridge_url])
    first = bridge_process(config).start()
    wait_until(lambda: device_up(first))
    envelope = world.seal("+88.00", "MZ-KILL")
    answer = requests.post(first.url + "/v1/instructions?wait=0", data=envelope.to_bytes(), timeout=30)
    assert answer.status_code == 202
    wait_until(lambda: requests.get(f"{first.url}/v1/results/{envelope.msg_id}", timeout=5).json()["state"] == "awaiting_scan")
    first.kill()  # SIGKILL: no shutdown code runs

    responder.release()  # the patient pays while the bridge is down: the device keeps the result
    assert responder.pending_answers == 1
    with sqlite3.connect(world.dir / "journal.sqlite3") as db:  # the journal is consistent after kill -9
        (state,) = db.execute("SELECT state FROM instructions WHERE msg_id = ?", (envelope.msg_id,)).fetchone()
    assert state == "progress"

    second = bridge_process(config).start()
    got = requests.get(f"{second.url}/v1/results/{envelope.msg_id}?wait=20", timeout=40)
    assert got.status_code == 200
    assert receive_result(got.content, world.ring, now=time.time()).envelope.reply_to == envelope.msg_id
    wait_until(lambda: responder.pending_answers == 0, what="the device saw the bridge's ACK")
    assert responder.executions[envelope.msg_id] == 1
    assert requests.get(f"{second.url}/v1/results/{envelope.msg_id}", timeout=10).content == got.content
    assert second.terminate() == 0


def test_an_instruction_the_device_could_not_take_survives_a_crash_and_is_sent_again(world: World, bridge_process) -> None:
    from protocol.errors import ErrorCode

    # The device cannot seal an answer (its keys differ): it says so unsealed, which ends nothing.
    responder = world.responder(mode=ResponderMode.REFUSE, refuse_code=ErrorCode.AUTH_FAILED)
    endpoint = world.endpoint("tcp", responder)
    config = world.write_config([endpoint.bridge_url])
    first = bridge_process(config, env={CRASH_ENV: "progress"}).start()
    wait_until(lambda: device_up(first))
    envelope = world.seal()
    post_quietly(first.url, envelope.to_bytes(), [])
    assert first.wait_exit() == CRASH_EXIT_CODE
    # Fixed on the device (its keys provisioned again); the restarted bridge sends the instruction again.
    responder.mode = ResponderMode.ANSWER
    second = bridge_process(config).start()
    got = requests.get(f"{second.url}/v1/results/{envelope.msg_id}?wait=20", timeout=40)
    assert got.status_code == 200
    assert responder.received[envelope.msg_id] == 2 and responder.executions[envelope.msg_id] == 1
    assert second.terminate() == 0