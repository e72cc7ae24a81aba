"""His-interface 1.1 C at the bridge, over real HTTP and a real link: expiry, 410, withdrawal.

The device is the echo responder (firmware_sim.responder) on TCP; the POS's own side of expiry and
withdrawal is tested in tests/terminal/test_his_outcomes.py and end to end in tests/e2e.
"""

from __future__ import annotations

import os
import time

import pytest
import requests

from protocol.amount import parse_amount
from protocol.envelope import seal_cancel, seal_instruction
from protocol.errors import ErrorCode
from protocol.messages import Cancel, Instruction

from firmware_sim.responder import ResponderMode
from tests.bridge.conftest import World, wait_until
from tests.bridge.test_api import assert_error, post


@pytest.fixture
def silent(world: World):
    responder = world.responder(mode=ResponderMode.SILENT)
    endpoint = world.endpoint("tcp", responder)
    bridge = world.bridge([endpoint.bridge_url], security={"clock_skew_s": 1})
    wait_until(lambda: bridge.relay.attached("D1"), what="D1 attached")
    return world, bridge, responder


def instruction(world: World, *, order: str = "MZ0001", expires_at: int | None = None, ts: int | None = None):
    return seal_instruction(Instruction("T1", order, parse_amount("+12.50"), None, expires_at), key=world.key,
                            msg_id=world.msg_id(), ts=int(time.time()) if ts is None else ts, nonce=os.urandom(12))


def cancel(world: World, msg_id: str, *, order: str = "MZ0001", terminal: str = "T1", ts: int | None = None,
           reply_to: str | None = None):
    return seal_cancel(Cancel(terminal, order), key=world.key, msg_id=world.msg_id(), reply_to=reply_to or msg_id,
                       ts=int(time.time()) if ts is None else ts, nonce=os.urandom(12))


def post_cancel(bridge, msg_id: str, body: bytes, wait: int = 5) -> requests.Response:
    return requests.post(f"{bridge.url}/v1/instructions/{msg_id}/cancel", params={"wait": wait}, data=body,
                         headers={"Content-Type": "application/json"}, timeout=30)


def test_an_expires_at_already_past_is_410_at_once_and_not_remembered(silent) -> None:
    world, bridge, responder = silent
    envelope = instruction(world, expires_at=int(time.time()) - 5)
    message = assert_error(post(bridge, envelope.to_bytes(), wait=0), ErrorCode.EXPIRED_UNDELIVERED)
    assert "new msg_id" in message
    assert_error(requests.get(f"{bridge.url}/v1/results/{envelope.msg_id}", timeout=10), ErrorCode.NOT_FOUND)
    assert responder.received[envelope.msg_id] == 0


def test_an_expires_at_beyond_a_day_is_refused(silent) -> None:
    world, bridge, _ = silent
    envelope = instruction(world, expires_at=int(time.time()) + 86_400 + 60)
    assert "86400" in assert_error(post(bridge, envelope.to_bytes(), wait=0), ErrorCode.BAD_ENVELOPE)


def test_an_instruction_no_device_took_is_410_once_it_expires(silent) -> None:
    world, bridge, responder = silent
    port = bridge.ports[0]
    port.send_instruction = lambda *args: False  # as if the cable were out
    envelope = instruction(world, expires_at=int(time.time()) + 1)
    first = post(bridge, envelope.to_bytes(), wait=0)
    assert first.status_code == 202 and first.json()["state"] == "queued"
    assert first.json()["expires_at"] == envelope_expiry(envelope, world)
    late = requests.get(f"{bridge.url}/v1/results/{envelope.msg_id}?wait=10", timeout=30)  # wakes at expiry + skew
    assert "nothing was charged" in assert_error(late, ErrorCode.EXPIRED_UNDELIVERED)
    assert_error(post(bridge, envelope.to_bytes(), wait=0), ErrorCode.EXPIRED_UNDELIVERED)  # the same answer for good
    del port.send_instruction  # the real one again; a new link-up must not send the expired instruction
    before = port.since
    port.request_restart("test: link up again")
    # A new session: the link is up again since after the restart (not the old session still ending).
    wait_until(lambda: port.since > before and port.status()["link"] == "up" and bridge.relay.attached("D1"), what="re-attached")
    second = instruction(world, order="MZ0002")
    assert post(bridge, second.to_bytes(), wait=0).status_code == 202
    wait_until(lambda: responder.received[second.msg_id] == 1, what="the new one delivered")
    assert responder.received[envelope.msg_id] == 0


def envelope_expiry(envelope, world: World) -> int:
    from protocol.envelope import open_envelope
    from protocol.strictjson import loads_object
    return int(loads_object(open_envelope(envelope, world.ring))["expires_at"])


def test_an_instruction_the_pos_holds_is_not_410_the_pos_ends_it(silent) -> None:
    world, bridge, responder = silent
    envelope = instruction(world, expires_at=int(time.time()) + 1)
    assert post(bridge, envelope.to_bytes(), wait=0).status_code == 202
    wait_until(lambda: responder.executions[envelope.msg_id] == 1, what="the device has it")
    later = requests.get(f"{bridge.url}/v1/results/{envelope.msg_id}?wait=3", timeout=30)
    assert later.status_code == 202 and later.json()["state"] == "awaiting_scan"


def test_withdrawal_answers_the_signed_result(silent) -> None:
    world, bridge, responder = silent
    envelope = instruction(world)
    assert post(bridge, envelope.to_bytes(), wait=0).status_code == 202
    wait_until(lambda: responder.executions[envelope.msg_id] == 1, what="the device has it")
    withdrawal = cancel(world, envelope.msg_id)
    answer = post_cancel(bridge, envelope.msg_id, withdrawal.to_bytes())
    assert answer.status_code == 200, answer.text
    result = world_result(world, answer.content)
    assert (result.pay_status.value, result.error_code) == ("CLOSED", "withdrawn")
    again = post_cancel(bridge, envelope.msg_id, cancel(world, envelope.msg_id).to_bytes())
    assert again.status_code == 200 and again.content == answer.content  # withdrawing twice withdraws once
    assert requests.get(f"{bridge.url}/v1/results/{envelope.msg_id}", timeout=10).content == answer.content


def world_result(world: World, body: bytes):
    from protocol.envelope import receive_result
    return receive_result(body, world.ring, now=time.time(), device_keys=world.public_keys().get).message


def test_a_withdrawal_made_while_the_pos_was_away_is_sent_when_it_attaches(silent) -> None:
    world, bridge, responder = silent
    port = bridge.ports[0]
    envelope = instruction(world)
    assert post(bridge, envelope.to_bytes(), wait=0).status_code == 202
    wait_until(lambda: responder.executions[envelope.msg_id] == 1, what="the device has it")
    port.send_cancel = lambda *args: False  # the link is down at that moment
    pending = post_cancel(bridge, envelope.msg_id, cancel(world, envelope.msg_id).to_bytes(), wait=0)
    assert pending.status_code == 202 and pending.json()["msg_id"] == envelope.msg_id
    assert responder.cancels[envelope.msg_id] == 0
    del port.send_cancel
    port.request_restart("test: link up again")
    done = requests.get(f"{bridge.url}/v1/results/{envelope.msg_id}?wait=15", timeout=30)
    assert done.status_code == 200 and world_result(world, done.content).error_code == "withdrawn"


@pytest.mark.parametrize("case, code", [
    ("unknown instruction", ErrorCode.NOT_FOUND),
    ("another order", ErrorCode.BAD_ORDER_NO),
    ("another terminal", ErrorCode.UNKNOWN_TERMINAL),
    ("reply_to is not the URL's", ErrorCode.BAD_ENVELOPE),
    ("tampered", ErrorCode.AUTH_FAILED),
    ("old", ErrorCode.CLOCK_SKEW),
    ("an instruction, not a cancel", ErrorCode.BAD_ENVELOPE),
])
def test_withdrawal_refusals(silent, case: str, code: ErrorCode) -> None:
    world, bridge, responder = silent
    envelope = instruction(world)
    assert post(bridge, envelope.to_bytes(), wait=0).status_code == 202
    target = envelope.msg_id
    if case == "unknown instruction":
        target = "HIS-NO-SUCH"
        body = cancel(world, target).to_bytes()
    elif case == "another order":
        body = cancel(world, target, order="MZ9999").to_bytes()
    elif case == "another terminal":
        world_terminal = cancel(world, target, terminal="T2")
        body = world_terminal.to_bytes()
    elif case == "reply_to is not the URL's":
        body = cancel(world, target, reply_to="HIS-OTHER").to_bytes()
    elif case == "tampered":
        obj = cancel(world, target).to_json_obj()
        obj["ts"] = int(obj["ts"]) + 1
        import json
        body = json.dumps(obj).encode()
    elif case == "old":
        body = cancel(world, target, ts=int(time.time()) - 100).to_bytes()
    else:
        body = envelope.to_bytes()
    assert_error(post_cancel(bridge, target, body), code)
    assert responder.cancels[envelope.msg_id] == 0
    assert post(bridge, envelope.to_bytes(), wait=0).status_code == 202  # still waiting


def test_the_cancel_endpoint_takes_post_only(silent) -> None:
    _, bridge, _ = silent
    answer = requests.get(f"{bridge.url}/v1/instructions/HIS-1/cancel", timeout=10)
    assert_error(answer, ErrorCode.METHOD_NOT_ALLOWED)
    assert answer.headers["Allow"] == "POST"
