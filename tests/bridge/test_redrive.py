"""Issue 14, finding 5: an instruction the POS has acknowledged (sent / progress) and then lost is
asked about again after a reconnect and re-driven; one that does not move raises an alarm; one the
POS could not take is sent again as soon as the POS answers anything, without a new link-up."""

from __future__ import annotations

import requests

from firmware_sim.responder import ResponderMode
from protocol.errors import ErrorCode
from tests.bridge.conftest import World, wait_until


def test_an_instruction_the_pos_acknowledged_then_lost_is_re_driven_after_a_reconnect(world: World) -> None:
    forgetful = world.responder(mode=ResponderMode.SILENT)  # takes it (ACK, awaiting_scan), then loses power
    first = world.endpoint("tcp", forgetful)
    bridge = world.bridge([first.bridge_url], link={"stall_alarm_s": 30})
    wait_until(lambda: bridge.relay.attached("D1"))
    envelope = world.seal()
    assert requests.post(f"{bridge.url}/v1/instructions?wait=0", data=envelope.to_bytes(), timeout=10).status_code == 202
    wait_until(lambda: bridge.journal.get(envelope.msg_id).progress == "awaiting_scan", what="the POS to take it")
    bridge.stop(grace_s=0.5)
    first.stop()  # the POS comes back with nothing of it (a replaced unit, a lost journal)
    fresh = world.responder()
    second = world.endpoint("tcp", fresh)
    again = world.bridge([second.bridge_url], link={"stall_alarm_s": 30})
    answer = requests.get(f"{again.url}/v1/results/{envelope.msg_id}?wait=15", timeout=30)
    assert answer.status_code == 200 and answer.json()["reply_to"] == envelope.msg_id
    assert fresh.executions[envelope.msg_id] == 1
    assert any(e.get("event") == "instructions_resent" for e in world.log_lines())


def test_an_instruction_that_does_not_move_raises_an_alarm_in_health_and_the_log(world: World) -> None:
    silent = world.responder(mode=ResponderMode.SILENT)
    endpoint = world.endpoint("tcp", silent)
    bridge = world.bridge([endpoint.bridge_url], link={"stall_alarm_s": 0.5})
    bridge.relay.recheck_s = 0.1
    wait_until(lambda: bridge.relay.attached("D1"))
    envelope = world.seal()
    requests.post(f"{bridge.url}/v1/instructions?wait=0", data=envelope.to_bytes(), timeout=10)
    wait_until(lambda: bridge.health()["instructions"]["stalled"], what="the stall alarm")
    health = bridge.health()
    (alarm,) = health["instructions"]["stalled"]
    assert alarm["msg_id"] == envelope.msg_id and alarm["state"] == "awaiting_scan" and health["status"] == "degraded"
    assert any(e.get("event") == "instruction_stalled" and e.get("msg_id") == envelope.msg_id for e in world.log_lines())
    silent.release()  # the cashier is back: it finishes, the alarm goes
    wait_until(lambda: not bridge.health()["instructions"]["stalled"], what="the alarm to clear")


def test_a_not_taken_instruction_is_sent_again_when_the_pos_answers_again_without_relinking(world: World) -> None:
    full = world.responder(mode=ResponderMode.REFUSE, refuse_code=ErrorCode.STORAGE_UNAVAILABLE)  # its disk is full
    endpoint = world.endpoint("tcp", full)
    bridge = world.bridge([endpoint.bridge_url])
    wait_until(lambda: bridge.relay.attached("D1"))
    first = world.seal(order="MZ0001")
    requests.post(f"{bridge.url}/v1/instructions?wait=0", data=first.to_bytes(), timeout=10)
    wait_until(lambda: bridge.relay.not_taken(), what="not_taken")
    full.mode = ResponderMode.ANSWER  # space is freed; the link never went down
    second = world.seal(order="MZ0002")
    assert requests.post(f"{bridge.url}/v1/instructions?wait=10", data=second.to_bytes(), timeout=30).status_code == 200
    answer = requests.get(f"{bridge.url}/v1/results/{first.msg_id}?wait=10", timeout=30)
    assert answer.status_code == 200 and answer.json()["reply_to"] == first.msg_id
    assert bridge.health()["devices"][0]["stats"]["handshakes"] == 1  # no new link-up was needed
