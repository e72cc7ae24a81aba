"""Findings 1, 2 and 3 of issue 12, as an attacker on the hospital floor tries them, over real ptys:

- a man-in-the-middle on the cable who holds the shared HIS key (it was in every configuration image)
  injects a sealed SUCCESS, injects an unsealed refusal, or drops a result and acknowledges it to
  the POS; and reads what crosses the cable;
- a rogue host (a second bridge, with its own identity key, on the cable the POS is plugged into)
  tries to take the POS's results.
Each must fail: HIS only ever sees the POS's genuine answer, and nothing readable crosses the cable.
"""

from __future__ import annotations

import os
import time

import requests

from protocol.amount import parse_amount
from protocol.errors import ErrorCode
from protocol.envelope import seal_result
from protocol.link.app import NotTakenMsg, ResultMsg, encode_app
from protocol.link.frame import FrameType, encode_frame
from protocol.messages import PayChannel, PayStatus, Result

from bridge.keystore import new_identity
from firmware_sim.responder import ResponderMode
from tests.bridge.cable_mitm import TO_BRIDGE, TO_DEVICE, CableMitm
from tests.bridge.conftest import World, wait_until


def forged_success(world: World, reply_to: str) -> bytes:
    """What the attacker can make with the shared key: a correctly sealed SUCCESS of +88.00."""
    result = Result("D1", "MZ0001", "FORGED-4200000001", PayStatus.SUCCESS, PayChannel.WECHAT, parse_amount("+88.00"),
                    int(time.time()))
    sealed = seal_result(result, key=world.key, msg_id=f"R-{os.urandom(6).hex()}", reply_to=reply_to,
                         ts=int(time.time()), nonce=os.urandom(12))
    return encode_app(ResultMsg(sealed))


def result_of(bridge, msg_id: str) -> requests.Response:
    return requests.get(f"{bridge.url}/v1/results/{msg_id}", timeout=10)


def port_stats(bridge) -> dict[str, int]:
    return bridge.health()["devices"][0].get("stats", {})


def rig(world: World, tamper=None):
    responder = world.responder(mode=ResponderMode.SILENT)
    endpoint = world.endpoint("pty", responder)
    mitm = CableMitm(endpoint.wire.slave_path, tamper).start()  # type: ignore[attr-defined]  # a pty endpoint's wire is a PtyWire, which names its slave path
    bridge = world.bridge([mitm.bridge_url])
    world._cleanups.append(mitm.stop)
    wait_until(lambda: bridge.relay.attached("D1"), what="the device attached through the attacker")
    return responder, endpoint, mitm, bridge


def next_device_seq(mitm: CableMitm) -> int:
    reliable = [f.seq for f in mitm.frames(TO_BRIDGE) if f.type == FrameType.DATA]
    return (max(reliable) + 1) % 65536 if reliable else 0


def test_an_injected_sealed_success_never_reaches_his(world: World) -> None:
    responder, _, mitm, bridge = rig(world)
    envelope = world.seal("+88.00")
    assert requests.post(f"{bridge.url}/v1/instructions", data=envelope.to_bytes(), timeout=10).status_code == 202
    wait_until(lambda: responder.executions[envelope.msg_id] == 1, what="the POS holds the instruction")
    forged = forged_success(world, envelope.msg_id)
    before = port_stats(bridge).get("rejected_frames", 0)
    for seq in range(next_device_seq(mitm), next_device_seq(mitm) + 3):  # whatever seq the bridge expects next
        mitm.inject_to_bridge(encode_frame(FrameType.DATA, seq, forged))
    wait_until(lambda: port_stats(bridge).get("rejected_frames", 0) > before, what="the forgery rejected")
    assert result_of(bridge, envelope.msg_id).status_code == 202  # still waiting for the POS
    responder.release()  # the patient pays; the genuine result arrives
    wait_until(lambda: result_of(bridge, envelope.msg_id).status_code == 200, what="the genuine result")
    assert b"FORGED" not in result_of(bridge, envelope.msg_id).content


def test_an_unsealed_refusal_does_not_end_the_instruction(world: World) -> None:
    responder, _, mitm, bridge = rig(world)
    envelope = world.seal("+30.00")
    assert requests.post(f"{bridge.url}/v1/instructions", data=envelope.to_bytes(), timeout=10).status_code == 202
    wait_until(lambda: responder.executions[envelope.msg_id] == 1, what="the POS holds the instruction")
    refusal = encode_app(NotTakenMsg(envelope.msg_id, ErrorCode.AUTH_FAILED, "forged"))
    before = port_stats(bridge).get("rejected_frames", 0)
    for seq in range(next_device_seq(mitm), next_device_seq(mitm) + 3):
        mitm.inject_to_bridge(encode_frame(FrameType.DATA, seq, refusal))
    wait_until(lambda: port_stats(bridge).get("rejected_frames", 0) > before, what="the forgery rejected")
    assert result_of(bridge, envelope.msg_id).status_code == 202
    responder.release()
    wait_until(lambda: result_of(bridge, envelope.msg_id).status_code == 200, what="the genuine result")


def test_a_dropped_and_acknowledged_result_still_reaches_his(world: World) -> None:
    dropped: list[int] = []

    def swallow_the_first_result(direction: str, frame):
        if direction == TO_BRIDGE and frame.type == FrameType.DATA and len(frame.payload) > 300 and not dropped:
            dropped.append(frame.seq)
            # Acknowledge it to the POS, in every form an attacker might try.
            return [], [encode_frame(FrameType.ACK, frame.seq, b""), encode_frame(FrameType.ACK, frame.seq, bytes(16))]
        return None

    def tamper(direction: str, frame):
        verdict = swallow_the_first_result(direction, frame)
        if verdict is None:
            return None
        to_bridge, to_device = verdict
        for ack in to_device:
            mitm_ref[0].inject_to_device(ack)
        return to_bridge

    mitm_ref: list[CableMitm] = []
    responder, endpoint, mitm, bridge = rig(world, tamper)
    mitm_ref.append(mitm)
    envelope = world.seal("+6.00")
    assert requests.post(f"{bridge.url}/v1/instructions", data=envelope.to_bytes(), timeout=10).status_code == 202
    wait_until(lambda: responder.executions[envelope.msg_id] == 1, what="the POS holds the instruction")
    responder.release()
    wait_until(lambda: bool(dropped), what="the result swallowed")
    wait_until(lambda: result_of(bridge, envelope.msg_id).status_code == 200, timeout=15,
               what="the POS to send the result again (the forged ACK did not count)")
    assert endpoint.link.stats.rejected_frames >= 1


def test_nothing_readable_crosses_the_cable(world: World) -> None:
    responder, _, mitm, bridge = rig(world)
    responder.release(ResponderMode.ANSWER)
    envelope = world.seal("+12.50", order="MZ-SECRET-ORDER")
    response = requests.post(f"{bridge.url}/v1/instructions?wait=10", data=envelope.to_bytes(), timeout=20)
    assert response.status_code == 200
    captured = bytes(mitm.captured)
    for visible in (envelope.msg_id.encode(), b"instruction", b"result", b"terminal_id", b"ECHO-", b"AES-256-GCM",
                    b"reply_to", b"device_id\":\"D1\",\"order"):
        assert visible not in captured, visible


def test_a_rogue_host_gets_no_result(world: World) -> None:
    """Finding 3: the patient paid, the cable was moved to another PC running a bridge of its own
    (the device registry is public: it has the POS's public key), and that PC must get nothing."""
    responder = world.responder(mode=ResponderMode.SILENT)
    endpoint = world.endpoint("pty", responder)
    port = endpoint.bridge_url
    real = world.bridge([port])
    wait_until(lambda: real.relay.attached("D1"))
    envelope = world.seal("+6.00")
    assert requests.post(f"{real.url}/v1/instructions", data=envelope.to_bytes(), timeout=10).status_code == 202
    wait_until(lambda: responder.executions[envelope.msg_id] == 1)
    real.stop()  # the cable goes to the rogue PC

    new_identity(world.dir / "rogue.key", "rogue-pc")
    rogue = world.bridge([port], security={"identity_file": "rogue.key"}, journal={"path": "rogue.sqlite3"})
    refused_before = endpoint.link.stats.refused_handshakes
    wait_until(lambda: endpoint.link.stats.refused_handshakes > refused_before + 1, what="the POS refusing the rogue")
    responder.release()  # the patient pays while the rogue holds the cable
    refused = endpoint.link.stats.refused_handshakes
    # Two more handshake attempts by the rogue: every chance to receive and acknowledge, had it been let in.
    wait_until(lambda: endpoint.link.stats.refused_handshakes >= refused + 2, what="the rogue trying again")
    assert responder.pending_answers == 1  # the result is still the POS's to deliver
    assert result_of(rogue, envelope.msg_id).status_code == 404  # the rogue never saw the result
    assert not endpoint.link_up
    rogue.stop()

    back = world.bridge([port])  # the cable comes back
    wait_until(lambda: result_of(back, envelope.msg_id).status_code == 200, what="the result at the real bridge")
