"""The bridge cannot be tricked: unproven devices get nothing, forged or misrouted results never reach HIS."""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Callable

import requests

from protocol.amount import parse_amount
from protocol.crypto import SharedKey
from protocol import signing
from protocol.envelope import Envelope, seal_result, sign_envelope
from protocol.errors import ErrorCode
from protocol.link.app import NotTakenMsg, ResultMsg, encode_app
from protocol.link.frame import FrameType
from protocol.link.handshake import DeviceIdentity
from protocol.messages import PayChannel, PayStatus, Result

from tests.bridge.conftest import World, wait_until


class ForgingHandler:
    """A device that answers every instruction with whatever `forge` makes of it."""

    def __init__(self, forge: Callable[[Envelope], list[ResultMsg]]) -> None:
        self.forge = forge
        self.instructions: list[Envelope] = []

    def on_link_up(self, endpoint, host_info: bytes) -> None:
        pass

    def on_link_down(self, unacked, endpoint) -> None:
        pass

    def on_delivered(self, tag, endpoint) -> None:
        pass

    def on_instruction(self, envelope: Envelope, endpoint) -> None:
        self.instructions.append(envelope)
        for message in self.forge(envelope):
            endpoint.send(message)


def result_for(envelope: Envelope, *, key: SharedKey, device_id: str, reply_to: str | None = None,
               order_no: str = "MZ0001", amount: str = "+12.50", seed: bytes | None = None) -> ResultMsg:
    """A result sealed with `key`; signed with `seed` (the device's key in a genuine result)."""
    result = Result(device_id, order_no, "4200000000001", PayStatus.SUCCESS, PayChannel.WECHAT, parse_amount(amount),
                    int(time.time()))
    return ResultMsg(seal_result(result, key=key, msg_id=f"R-{os.urandom(6).hex()}", reply_to=reply_to or envelope.msg_id,
                                 ts=int(time.time()), nonce=os.urandom(12), device_key_seed=seed))


def post(bridge, envelope: Envelope, wait: int = 0) -> requests.Response:
    return requests.post(f"{bridge.url}/v1/instructions?wait={wait}", data=envelope.to_bytes(), timeout=30)


def dropped(world: World, reason: str) -> bool:
    """Logged as a security event, and never served to HIS: a bad result is held (kept for IT, named in
    /v1/health: the link's ACK never loses a result), other bad messages are dropped."""
    return any(e.get("event") in ("device_message_dropped", "result_held") and reason in f"{e.get('reason')} ({e.get('code')})"
               for e in world.security_events())


def test_rogue_device_with_a_valid_id_but_the_wrong_key_gets_nothing(world: World) -> None:
    rogue = world.responder()
    endpoint = world.endpoint("tcp", rogue, device_id="D1", seed=os.urandom(32))
    bridge = world.bridge([endpoint.bridge_url])
    wait_until(lambda: any(e.get("event") == "handshake_refused" for e in world.security_events()), what="refusal logged")
    response = post(bridge, world.seal(), wait=5)
    assert response.status_code == 503 and response.json()["error"]["code"] == "device_unavailable"
    # It tries again (another refusal logged) and still gets nothing: no link, no instruction.
    wait_until(lambda: sum(e.get("event") == "handshake_refused" for e in world.security_events()) >= 2,
               what="a second refusal")
    assert not endpoint.link_up and sum(rogue.received.values()) == 0
    assert bridge.health()["devices"][0]["link"] == "handshake"
    event = next(e for e in world.security_events() if e["event"] == "handshake_refused")
    assert "key proof" in str(event["reason"])


def test_unregistered_device_is_refused(world: World) -> None:
    stranger = world.responder("D9")
    endpoint = world.endpoint("tcp", stranger, identity=DeviceIdentity("D9", "X", "Y", "1"), seed=os.urandom(32))
    world.bridge([endpoint.bridge_url])
    wait_until(lambda: any("not in the device registry" in str(e.get("reason")) for e in world.security_events()))
    assert not endpoint.link_up


def _two_devices(world: World, forge_d2: Callable[[Envelope], list[ResultMsg]] | None = None,
                 forge_d1: Callable[[Envelope], list[ResultMsg]] | None = None):
    d1 = ForgingHandler(forge_d1) if forge_d1 else world.responder("D1")
    d2 = ForgingHandler(forge_d2) if forge_d2 else world.responder("D2")
    e1 = world.endpoint("tcp", d1, device_id="D1")
    e2 = world.endpoint("tcp", d2, device_id="D2")
    bridge = world.bridge([e1.bridge_url, e2.bridge_url])
    wait_until(lambda: bridge.relay.attached("D1") and bridge.relay.attached("D2"), what="both attached")
    return bridge, (d1, e1), (d2, e2)


def test_result_claiming_another_device_id_never_reaches_his(world: World) -> None:
    bridge, _, (d2, _) = _two_devices(world, forge_d2=lambda env: [result_for(env, key=world.key, device_id="D1", seed=world.seeds["D1"])])
    envelope = world.seal(terminal="T2")
    assert post(bridge, envelope, wait=1).status_code == 202
    wait_until(lambda: dropped(world, "claims device_id D1"), what="drop logged")
    answer = requests.get(f"{bridge.url}/v1/results/{envelope.msg_id}", timeout=10)
    assert answer.status_code == 202
    held = bridge.health()["journal"]["held_results"]
    assert held["count"] == 1 and held["oldest"][0]["code"] == "wrong_device" and bridge.health()["status"] == "degraded"


def test_result_with_unknown_reply_to_is_dropped(world: World) -> None:
    forge = lambda env: [result_for(env, key=world.key, device_id="D1", reply_to="NEVER-SENT-1", seed=world.seeds["D1"])]  # noqa: E731
    handler = ForgingHandler(forge)
    endpoint = world.endpoint("tcp", handler)
    bridge = world.bridge([endpoint.bridge_url])
    wait_until(lambda: bridge.relay.attached("D1"))
    envelope = world.seal()
    assert post(bridge, envelope, wait=1).status_code == 202
    wait_until(lambda: dropped(world, "names no instruction"))
    assert requests.get(f"{bridge.url}/v1/results/NEVER-SENT-1", timeout=10).status_code == 404


def test_result_for_an_instruction_given_to_another_device_is_dropped(world: World) -> None:
    target: dict[str, str] = {}
    forge_d1 = lambda env: [result_for(env, key=world.key, device_id="D1", reply_to=target["msg_id"], seed=world.seeds["D1"])]  # noqa: E731
    bridge, (d1, _), (d2, _) = _two_devices(world, forge_d1=forge_d1)
    d2.mode = d2.mode.SILENT
    for_d2 = world.seal(terminal="T2")
    target["msg_id"] = for_d2.msg_id
    assert post(bridge, for_d2).status_code == 202
    wait_until(lambda: d2.executions[for_d2.msg_id] == 1)
    post(bridge, world.seal(terminal="T1", order="MZ0002"))  # D1 now answers with reply_to = D2's instruction
    wait_until(lambda: dropped(world, "given to D2"))
    assert requests.get(f"{bridge.url}/v1/results/{for_d2.msg_id}", timeout=10).status_code == 202
    d2.release()
    final = requests.get(f"{bridge.url}/v1/results/{for_d2.msg_id}?wait=10", timeout=30)
    assert final.status_code == 200 and final.json()["device_id"] == "D2"


def test_forged_tag_wrong_order_and_second_answers_are_dropped(world: World) -> None:
    wrong_key = SharedKey("k1", "AES-256-GCM", os.urandom(32))
    seed = world.seeds["D1"]
    forge = lambda env: [  # noqa: E731
        result_for(env, key=wrong_key, device_id="D1", seed=seed),  # tag does not verify
        result_for(env, key=world.key, device_id="D1", order_no="MZ9999", seed=seed),  # someone else's order
        result_for(env, key=world.key, device_id="D1", seed=seed),  # the genuine one
        result_for(env, key=world.key, device_id="D1", seed=seed),  # a different second answer
    ]
    endpoint = world.endpoint("tcp", ForgingHandler(forge))
    bridge = world.bridge([endpoint.bridge_url])
    wait_until(lambda: bridge.relay.attached("D1"))
    envelope = world.seal()
    response = post(bridge, envelope, wait=10)
    assert response.status_code == 200
    wait_until(lambda: dropped(world, "(auth_failed)") and dropped(world, "result for order MZ9999")
               and dropped(world, "second, different answer"))
    assert requests.get(f"{bridge.url}/v1/results/{envelope.msg_id}", timeout=10).content == response.content


def test_device_identity_is_visible_and_moves_with_the_device(world: World) -> None:
    responder = world.responder()
    first = world.endpoint("tcp", responder)
    second = world.endpoint("tcp", responder)  # the same device shows up on a second port
    bridge = world.bridge([first.bridge_url, second.bridge_url])
    wait_until(lambda: any(e.get("event") == "device_moved" for e in world.security_events()), what="device_moved")
    assert post(bridge, world.seal(), wait=10).status_code == 200


def test_finding_1_a_result_sealed_with_the_shared_key_but_not_signed_by_the_device_never_reaches_his(world: World) -> None:
    # The attacker holds the shared key (from a configuration image) but not the device's private key.
    forge = lambda env: [  # noqa: E731
        result_for(env, key=world.key, device_id="D1"),  # sealed, unsigned: passed every check before 1.1
        result_for(env, key=world.key, device_id="D1", seed=os.urandom(32)),  # signed by some other key
        result_for(env, key=world.key, device_id="D1", seed=world.seeds["D2"]),  # signed by another registered device
    ]
    endpoint = world.endpoint("tcp", ForgingHandler(forge))
    bridge = world.bridge([endpoint.bridge_url])
    wait_until(lambda: bridge.relay.attached("D1"))
    envelope = world.seal()
    assert post(bridge, envelope, wait=1).status_code == 202
    wait_until(lambda: sum(1 for e in world.security_events() if e.get("event") == "result_held" and e.get("code") == "auth_failed") == 3,
               what="three forgeries held, never served")
    assert requests.get(f"{bridge.url}/v1/results/{envelope.msg_id}", timeout=10).status_code == 202


def test_finding_7_a_result_whose_amount_differs_from_the_instruction_never_reaches_his(world: World) -> None:
    seed = world.seeds["D1"]
    forge = lambda env: [result_for(env, key=world.key, device_id="D1", amount="+1.25", seed=seed)]  # noqa: E731
    endpoint = world.endpoint("tcp", ForgingHandler(forge))
    bridge = world.bridge([endpoint.bridge_url])
    wait_until(lambda: bridge.relay.attached("D1"))
    envelope = world.seal("+12.50")
    assert post(bridge, envelope, wait=1).status_code == 202
    wait_until(lambda: dropped(world, "amount +1.25, instruction was +12.50"), what="amount mismatch dropped")
    assert requests.get(f"{bridge.url}/v1/results/{envelope.msg_id}", timeout=10).status_code == 202


class RawDataHandler(ForgingHandler):
    """A device (or anything on the cable) that answers with raw DATA payloads of its choosing."""

    def __init__(self, payloads: Callable[[Envelope], list[bytes]]) -> None:
        super().__init__(lambda env: [])
        self.payloads = payloads

    def on_instruction(self, envelope: Envelope, endpoint) -> None:
        self.instructions.append(envelope)
        for payload in self.payloads(envelope):
            endpoint._send(FrameType.DATA, payload, ("app", None))


def test_finding_2_an_unsealed_refusal_on_the_link_does_not_end_an_instruction(world: World) -> None:
    refused = lambda env: [json.dumps({"kind": "refused", "msg_id": env.msg_id, "code": "auth_failed",  # noqa: E731
                                       "message": "forged by the cable"}).encode()]
    handler = RawDataHandler(refused)
    endpoint = world.endpoint("tcp", handler)
    bridge = world.bridge([endpoint.bridge_url])
    wait_until(lambda: bridge.relay.attached("D1"))
    envelope = world.seal()
    first = post(bridge, envelope, wait=1)
    assert first.status_code == 202, first.text
    wait_until(lambda: dropped(world, "undecodable DATA message"), what="the unsealed refusal dropped")
    assert requests.get(f"{bridge.url}/v1/results/{envelope.msg_id}", timeout=10).status_code == 202
    # The genuine, signed answer still ends it.
    endpoint.send(result_for(envelope, key=world.key, device_id="D1", seed=world.seeds["D1"]))
    final = requests.get(f"{bridge.url}/v1/results/{envelope.msg_id}?wait=10", timeout=30)
    assert final.status_code == 200 and "sig" in final.json()


def test_a_device_that_cannot_take_an_instruction_leaves_it_unfinished_and_says_why(world: World) -> None:
    why = lambda env: [encode_app(NotTakenMsg(env.msg_id, ErrorCode.DEVICE_UNAVAILABLE,  # noqa: E731
                                              "device D1: no configuration; flash one"))]
    handler = RawDataHandler(why)
    endpoint = world.endpoint("tcp", handler)
    bridge = world.bridge([endpoint.bridge_url])
    wait_until(lambda: bridge.relay.attached("D1"))
    envelope = world.seal()
    post(bridge, envelope, wait=0)
    wait_until(lambda: (requests.get(f"{bridge.url}/v1/results/{envelope.msg_id}", timeout=10).json().get("last_event")
                        or {}).get("code") == "device_unavailable", what="the reason in the 202 answer")
    body = requests.get(f"{bridge.url}/v1/results/{envelope.msg_id}", timeout=10).json()
    assert body["state"] == "queued" and "no configuration" in body["last_event"]["message"]
    not_taken = bridge.health()["instructions"]["not_taken"]
    assert not_taken == [{"msg_id": envelope.msg_id, "device_id": "D1", "code": "device_unavailable",
                          "message": "device D1: no configuration; flash one", "at": not_taken[0]["at"]}]
    # Once the device can answer, it gets the instruction again when it next attaches, and answers.
    handler.payloads = lambda env: [encode_app(result_for(env, key=world.key, device_id="D1", seed=world.seeds["D1"]))]
    endpoint.unplug()
    endpoint.replug()
    final = requests.get(f"{bridge.url}/v1/results/{envelope.msg_id}?wait=10", timeout=30)
    assert final.status_code == 200
    assert bridge.health()["instructions"]["not_taken"] == []


def test_part_b_require_his_signature_at_the_bridge(world: World) -> None:
    his_seed = os.urandom(32)
    his_key = base64.b64encode(signing.public_key(his_seed)).decode()
    endpoint = world.endpoint("tcp", world.responder())
    bridge = world.bridge([endpoint.bridge_url], security={"his_public_keys": [his_key], "require_his_signature_terminals": ["T1"]})
    wait_until(lambda: bridge.relay.attached("D1"))
    unsigned = world.seal("-5.00", "MZ-B1")
    answer = post(bridge, unsigned, wait=0)
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "auth_failed" and "his_sig" in answer.text
    forged = sign_envelope(world.seal("-5.00", "MZ-B1"), os.urandom(32))  # a shared-key holder signs with its own key
    assert post(bridge, forged, wait=0).json()["error"]["code"] == "auth_failed"
    signed = sign_envelope(world.seal("+5.00", "MZ-B1"), his_seed)
    assert post(bridge, signed, wait=10).status_code == 200


def test_part_b_settings_are_checked_when_the_bridge_starts(world: World) -> None:
    import pytest

    from bridge.config import BridgeConfigError, parse_config

    with pytest.raises(BridgeConfigError, match="needs HIS's public key"):
        parse_config(world.config([], security={"require_his_signature": True}), base_dir=world.dir)
    with pytest.raises(BridgeConfigError, match="his_public_keys"):
        parse_config(world.config([], security={"his_public_keys": ["AAAA"]}), base_dir=world.dir)
