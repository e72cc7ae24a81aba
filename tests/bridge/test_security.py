"""The bridge cannot be tricked: unproven devices get nothing, forged or misrouted results never reach HIS."""

from __future__ import annotations

import os
import time
from typing import Callable

import requests

from protocol.amount import parse_amount
from protocol.crypto import SharedKey
from protocol.envelope import Envelope, seal_result
from protocol.link.app import ResultMsg
from protocol.link.handshake import DeviceIdentity
from protocol.messages import PayChannel, PayStatus, Result

from tests.bridge.conftest import World, wait_until


class ForgingHandler:
    """A device that answers every instruction with whatever `forge` makes of it."""

    def __init__(self, forge: Callable[[Envelope], list[ResultMsg]]) -> None:
        self.forge = forge
        self.instructions: list[Envelope] = []

    def on_link_up(self, endpoint, host_info: bytes) -> None:  # type: ignore[no-untyped-def]
        pass

    def on_link_down(self, unacked, endpoint) -> None:  # type: ignore[no-untyped-def]
        pass

    def on_delivered(self, tag, endpoint) -> None:  # type: ignore[no-untyped-def]
        pass

    def on_instruction(self, envelope: Envelope, endpoint) -> None:  # type: ignore[no-untyped-def]
        self.instructions.append(envelope)
        for message in self.forge(envelope):
            endpoint.send(message)


def result_for(envelope: Envelope, *, key: SharedKey, device_id: str, reply_to: str | None = None,
               order_no: str = "MZ0001") -> ResultMsg:
    result = Result(device_id, order_no, "4200000000001", PayStatus.SUCCESS, PayChannel.WECHAT, parse_amount("+12.50"),
                    int(time.time()))
    return ResultMsg(seal_result(result, key=key, msg_id=f"R-{os.urandom(6).hex()}", reply_to=reply_to or envelope.msg_id,
                                 ts=int(time.time()), nonce=os.urandom(12)))


def post(bridge, envelope: Envelope, wait: int = 0) -> requests.Response:  # type: ignore[no-untyped-def]
    return requests.post(f"{bridge.url}/v1/instructions?wait={wait}", data=envelope.to_bytes(), timeout=30)


def dropped(world: World, reason: str) -> bool:
    return any(e.get("event") == "device_message_dropped" and reason in str(e.get("reason")) for e in world.security_events())


def test_rogue_device_with_a_valid_id_but_the_wrong_key_gets_nothing(world: World) -> None:
    rogue = world.responder()
    endpoint = world.endpoint("tcp", rogue, device_id="D1", seed=os.urandom(32))
    bridge = world.bridge([endpoint.bridge_url])
    wait_until(lambda: any(e.get("event") == "handshake_refused" for e in world.security_events()), what="refusal logged")
    response = post(bridge, world.seal(), wait=5)
    assert response.status_code == 503 and response.json()["error"]["code"] == "device_unavailable"
    time.sleep(0.3)
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
                 forge_d1: Callable[[Envelope], list[ResultMsg]] | None = None):  # type: ignore[no-untyped-def]
    d1 = ForgingHandler(forge_d1) if forge_d1 else world.responder("D1")
    d2 = ForgingHandler(forge_d2) if forge_d2 else world.responder("D2")
    e1 = world.endpoint("tcp", d1, device_id="D1")
    e2 = world.endpoint("tcp", d2, device_id="D2")
    bridge = world.bridge([e1.bridge_url, e2.bridge_url])
    wait_until(lambda: bridge.relay.attached("D1") and bridge.relay.attached("D2"), what="both attached")
    return bridge, (d1, e1), (d2, e2)


def test_result_claiming_another_device_id_never_reaches_his(world: World) -> None:
    bridge, _, (d2, _) = _two_devices(world, forge_d2=lambda env: [result_for(env, key=world.key, device_id="D1")])
    envelope = world.seal(terminal="T2")
    assert post(bridge, envelope, wait=1).status_code == 202
    wait_until(lambda: dropped(world, "claims device_id D1"), what="drop logged")
    answer = requests.get(f"{bridge.url}/v1/results/{envelope.msg_id}", timeout=10)
    assert answer.status_code == 202


def test_result_with_unknown_reply_to_is_dropped(world: World) -> None:
    forge = lambda env: [result_for(env, key=world.key, device_id="D1", reply_to="NEVER-SENT-1")]  # noqa: E731
    handler = ForgingHandler(forge)
    endpoint = world.endpoint("tcp", handler)
    bridge = world.bridge([endpoint.bridge_url])
    wait_until(lambda: bridge.relay.attached("D1"))
    envelope = world.seal()
    assert post(bridge, envelope, wait=1).status_code == 202
    wait_until(lambda: dropped(world, "unknown reply_to"))
    assert requests.get(f"{bridge.url}/v1/results/NEVER-SENT-1", timeout=10).status_code == 404


def test_result_for_an_instruction_given_to_another_device_is_dropped(world: World) -> None:
    target: dict[str, str] = {}
    forge_d1 = lambda env: [result_for(env, key=world.key, device_id="D1", reply_to=target["msg_id"])]  # noqa: E731
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
    forge = lambda env: [  # noqa: E731
        result_for(env, key=wrong_key, device_id="D1"),  # tag does not verify
        result_for(env, key=world.key, device_id="D1", order_no="MZ9999"),  # someone else's order
        result_for(env, key=world.key, device_id="D1"),  # the genuine one
        result_for(env, key=world.key, device_id="D1"),  # a different second answer
    ]
    endpoint = world.endpoint("tcp", ForgingHandler(forge))
    bridge = world.bridge([endpoint.bridge_url])
    wait_until(lambda: bridge.relay.attached("D1"))
    envelope = world.seal()
    response = post(bridge, envelope, wait=10)
    assert response.status_code == 200
    wait_until(lambda: dropped(world, "result refused (auth_failed)") and dropped(world, "result for order MZ9999")
               and dropped(world, "second, different answer"))
    assert requests.get(f"{bridge.url}/v1/results/{envelope.msg_id}", timeout=10).content == response.content


def test_device_identity_is_visible_and_moves_with_the_device(world: World) -> None:
    responder = world.responder()
    first = world.endpoint("tcp", responder)
    second = world.endpoint("tcp", responder)  # the same device shows up on a second port
    bridge = world.bridge([first.bridge_url, second.bridge_url])
    wait_until(lambda: any(e.get("event") == "device_moved" for e in world.security_events()), what="device_moved")
    assert post(bridge, world.seal(), wait=10).status_code == 200
