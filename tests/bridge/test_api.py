"""Contract tests of the HIS API: every endpoint, every answer and every error code, over real HTTP."""

from __future__ import annotations

import base64
import json
import os
import socket
import sqlite3
import time

import pytest
import requests

from protocol.crypto import KeyRing, SharedKey
from protocol.envelope import MsgType, receive_result, seal
from protocol.errors import HTTP_STATUS, ErrorCode
from protocol.messages import PayStatus, ResultCode
from protocol.strictjson import dumps_compact

from firmware_sim.responder import ResponderMode
from tests.bridge.conftest import World, wait_until


@pytest.fixture
def api(world: World):
    responder = world.responder()
    endpoint = world.endpoint("tcp", responder)
    bridge = world.bridge([endpoint.bridge_url], security={"amount_limit": "1000.00"})
    wait_until(lambda: bridge.relay.attached("D1"), what="D1 attached")
    return world, bridge, responder


def post(bridge, body: bytes, wait: int | None = 5, **kwargs) -> requests.Response:
    params = {} if wait is None else {"wait": wait}
    return requests.post(bridge.url + "/v1/instructions", params=params, data=body, timeout=30, **kwargs)


def assert_error(response: requests.Response, code: ErrorCode) -> str:
    assert response.status_code == HTTP_STATUS[code], response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code.value
    assert body["error"]["message"]
    return body["error"]["message"]


def raw(bridge, data: bytes, read_timeout: float = 10.0) -> tuple[int, dict[str, object]]:
    host, port = bridge.http.server_address[:2]
    with socket.create_connection((host, port), timeout=read_timeout) as sock:
        sock.sendall(data)
        chunks = b""
        while b"\r\n\r\n" not in chunks:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks += chunk
        head, _, body = chunks.partition(b"\r\n\r\n")
        length = int([h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0])
        while len(body) < length:
            body += sock.recv(65536)
    return int(head.split(b" ")[1]), json.loads(body)


# ------------------------------------------------------------------ POST /v1/instructions


def test_collect_answers_200_with_a_result_that_passes_step_6(api) -> None:
    world, bridge, responder = api
    envelope = world.seal("+12.50", "MZ0001", patient="张三明")
    response = post(bridge, envelope.to_bytes())
    assert response.status_code == 200
    received = receive_result(response.content, world.ring, now=time.time(), instruction_ts=envelope.ts)
    assert received.envelope.reply_to == envelope.msg_id
    assert received.message.device_id == "D1" and received.message.pay_status is PayStatus.SUCCESS
    assert str(received.message.amount) == "+12.50"
    assert responder.executions[envelope.msg_id] == 1
    log = (world.dir / "bridge.log").read_text(encoding="utf-8")
    assert "张三明" not in log and "张*明" in log  # names are masked in the log
    assert world.key.secret.hex() not in log


def test_identical_repost_is_answered_from_the_journal_and_executes_once(api) -> None:
    world, bridge, responder = api
    envelope = world.seal()
    first = post(bridge, envelope.to_bytes())
    again = [post(bridge, envelope.to_bytes(), wait=w) for w in (0, 5)]
    assert first.status_code == 200 and all(r.status_code == 200 and r.content == first.content for r in again)
    assert responder.executions[envelope.msg_id] == 1
    assert responder.received[envelope.msg_id] == 1  # retries never even reach the device


def test_unfinished_instruction_answers_202_with_its_state_then_200(api) -> None:
    world, bridge, responder = api
    responder.mode = ResponderMode.SILENT
    envelope = world.seal()
    response = post(bridge, envelope.to_bytes(), wait=0)
    assert response.status_code == 202
    assert response.json()["msg_id"] == envelope.msg_id
    assert response.json()["state"] in ("queued", "delivered", "awaiting_scan")
    wait_until(lambda: post(bridge, envelope.to_bytes(), wait=0).json()["state"] == "awaiting_scan", what="progress")
    pending = requests.get(f"{bridge.url}/v1/results/{envelope.msg_id}", timeout=10)
    body = pending.json()
    # his-interface 1.1 C: state, since, expires_at (the bridge's default: 600 s), last_event
    assert pending.status_code == 202 and set(body) == {"msg_id", "state", "since", "expires_at", "last_event"}
    assert (body["msg_id"], body["state"], body["last_event"]) == (envelope.msg_id, "awaiting_scan", None)
    assert body["expires_at"] - 600 <= body["since"] <= body["expires_at"]
    responder.release()
    done = requests.get(f"{bridge.url}/v1/results/{envelope.msg_id}?wait=10", timeout=30)
    assert done.status_code == 200
    assert post(bridge, envelope.to_bytes(), wait=0).content == done.content
    assert responder.executions[envelope.msg_id] == 1


def test_long_poll_returns_as_soon_as_the_result_is_stored(api) -> None:
    world, bridge, responder = api
    responder.mode = ResponderMode.SILENT
    envelope = world.seal()
    assert post(bridge, envelope.to_bytes(), wait=0).status_code == 202
    wait_until(lambda: responder.executions[envelope.msg_id] == 1, what="device has it")
    started = time.monotonic()
    import threading

    threading.Timer(0.3, responder.release).start()
    response = requests.get(f"{bridge.url}/v1/results/{envelope.msg_id}?wait=60", timeout=90)
    assert response.status_code == 200
    assert time.monotonic() - started < 30  # woken by the result, not by the 60 s wait


def test_second_collection_of_a_paid_order_is_relayed_and_gets_the_original_result(api) -> None:
    world, bridge, responder = api
    first = receive_result(post(bridge, world.seal("+30.00", "MZ77").to_bytes()).content, world.ring, now=time.time())
    second_env = world.seal("+30.00", "MZ77")
    second = receive_result(post(bridge, second_env.to_bytes()).content, world.ring, now=time.time())
    assert second.envelope.reply_to == second_env.msg_id
    assert second.message.error_code == ResultCode.DUPLICATE_ORDER.value
    assert second.message.pay_order_no == first.message.pay_order_no
    refund = receive_result(post(bridge, world.seal("-10.00", "MZ77").to_bytes()).content, world.ring, now=time.time())
    assert refund.message.pay_status is PayStatus.REFUNDED
    too_much = receive_result(post(bridge, world.seal("-25.00", "MZ77").to_bytes()).content, world.ring, now=time.time())
    assert too_much.message.pay_status is PayStatus.REFUND_FAILED
    assert too_much.message.error_code == ResultCode.REFUND_EXCEEDS_REMAINING.value


@pytest.mark.parametrize("body, code", [
    (b"not json", ErrorCode.MALFORMED_JSON),
    (b'{"v": 1, "v": 1}', ErrorCode.MALFORMED_JSON),
    (b"[1, 2]", ErrorCode.MALFORMED_JSON),
    (b'{"v": 1, "type": "instruction"}', ErrorCode.BAD_ENVELOPE),
    (b"", ErrorCode.MALFORMED_JSON),
])
def test_malformed_bodies_are_refused(api, body: bytes, code: ErrorCode) -> None:
    assert_error(post(api[1], body), code)


def _tamper(envelope_bytes: bytes, **changes: object) -> bytes:
    obj = json.loads(envelope_bytes)
    obj.update(changes)
    return json.dumps(obj).encode()


def test_every_envelope_refusal_has_its_code(api) -> None:
    world, bridge, responder = api
    good = world.seal().to_bytes()
    assert_error(post(bridge, _tamper(good, suite="DES-CBC")), ErrorCode.UNSUPPORTED_SUITE)
    assert_error(post(bridge, _tamper(good, kid="k-unknown")), ErrorCode.UNKNOWN_KID)
    ct = bytearray(base64.b64decode(json.loads(good)["ct"]))
    ct[0] ^= 1
    assert_error(post(bridge, _tamper(good, ct=base64.b64encode(bytes(ct)).decode())), ErrorCode.AUTH_FAILED)
    assert_error(post(bridge, _tamper(good, terminal_id="T2")), ErrorCode.AUTH_FAILED)  # header is authenticated
    assert_error(post(bridge, _tamper(good, nonce="AAAA")), ErrorCode.BAD_ENVELOPE)
    message = assert_error(post(bridge, world.seal(ts=int(time.time()) - 1000).to_bytes()), ErrorCode.CLOCK_SKEW)
    assert "clock" in message and str(int(time.time()))[:6] in message  # states the bridge clock
    assert_error(post(bridge, world.seal(terminal="T9").to_bytes()), ErrorCode.UNKNOWN_TERMINAL)
    assert_error(post(bridge, world.seal(order="MZ 1").to_bytes()), ErrorCode.BAD_ORDER_NO)
    assert_error(post(bridge, world.seal("+1000.01").to_bytes()), ErrorCode.BAD_AMOUNT)  # over the configured limit
    assert sum(responder.received.values()) == 0  # none of it reached the device


def test_plaintext_problems_inside_a_valid_envelope(api) -> None:
    world, bridge, _ = api

    def sealed(plaintext: dict[str, object], terminal: str = "T1") -> bytes:
        return seal(msg_type=MsgType.INSTRUCTION, key=world.key, msg_id=world.msg_id(), ts=int(time.time()),
                    party_id=terminal, reply_to=None, plaintext=dumps_compact(plaintext), nonce=os.urandom(12)).to_bytes()

    for amount in ("12.50", "+12.5", "-0.00", "+1e3", "＋12.50", "+012.50"):
        assert_error(post(bridge, sealed({"terminal_id": "T1", "order_no": "MZ1", "amount": amount})), ErrorCode.BAD_AMOUNT)
    assert_error(post(bridge, sealed({"terminal_id": "T2", "order_no": "MZ1", "amount": "+1.00"})), ErrorCode.UNKNOWN_TERMINAL)
    # One rule (docs/his-interface.md §9): whatever is wrong with order_no is bad_order_no, with amount
    # bad_amount (missing or of the wrong type included), with any other field bad_envelope.
    assert_error(post(bridge, sealed({"terminal_id": "T1", "amount": "+1.00"})), ErrorCode.BAD_ORDER_NO)
    assert_error(post(bridge, sealed({"terminal_id": "T1", "order_no": 12, "amount": "+1.00"})), ErrorCode.BAD_ORDER_NO)
    assert_error(post(bridge, sealed({"terminal_id": "T1", "order_no": "MZ1"})), ErrorCode.BAD_AMOUNT)
    assert_error(post(bridge, sealed({"terminal_id": "T1", "order_no": "MZ1", "amount": 1.0})), ErrorCode.BAD_AMOUNT)
    assert_error(post(bridge, sealed({"terminal_id": 1, "order_no": "MZ1", "amount": "+1.00"})), ErrorCode.BAD_ENVELOPE)
    assert_error(post(bridge, sealed({"terminal_id": "T1", "order_no": "MZ1", "amount": "-1.00", "display": {
        "items": [{"name": "x", "qty": "1", "amount": "-1.00"}]}})), ErrorCode.BAD_ENVELOPE)  # display is not money


def test_msg_id_conflict_and_replay(api) -> None:
    world, bridge, _ = api
    first = world.seal("+1.00", "MZ5")
    assert post(bridge, first.to_bytes()).status_code == 200
    other = world.seal("+2.00", "MZ5", msg_id=first.msg_id)
    assert_error(post(bridge, other.to_bytes()), ErrorCode.MSG_ID_CONFLICT)
    with sqlite3.connect(world.dir / "journal.sqlite3") as db:  # the stored answer is now 8 days old
        db.execute("UPDATE instructions SET accepted_at = accepted_at - 8 * 86400 WHERE msg_id = ?", (first.msg_id,))
    assert_error(post(bridge, first.to_bytes()), ErrorCode.REPLAY)


def test_device_unavailable_is_answered_at_once(api) -> None:
    world, bridge, _ = api
    started = time.monotonic()
    assert "not bound" in assert_error(post(bridge, world.seal(terminal="T3").to_bytes(), wait=60), ErrorCode.DEVICE_UNAVAILABLE)
    assert "not attached" in assert_error(post(bridge, world.seal(terminal="T2").to_bytes(), wait=60),
                                          ErrorCode.DEVICE_UNAVAILABLE)
    assert time.monotonic() - started < 30  # not after the 60 s wait
    # Nothing was journaled: the same envelope succeeds once the terminal is served.
    envelope = world.seal(terminal="T1")
    assert post(bridge, envelope.to_bytes()).status_code == 200


def test_too_large_is_refused_from_content_length_before_reading(api) -> None:
    world, bridge, _ = api
    assert_error(post(bridge, b" " * (64 * 1024 + 1)), ErrorCode.TOO_LARGE)
    status, body = raw(bridge, b"POST /v1/instructions HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
    assert status == 413 and body["error"]["code"] == "too_large"


@pytest.mark.parametrize("request_bytes, code", [
    (b"POST /v1/instructions HTTP/1.1\r\nHost: x\r\n\r\n", ErrorCode.BAD_REQUEST),  # no Content-Length
    (b"POST /v1/instructions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", ErrorCode.BAD_REQUEST),
    (b"POST /v1/instructions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", ErrorCode.BAD_REQUEST),
    (b"GET /v1/health?wait=5 HTTP/1.1\r\nHost: x\r\n\r\n", ErrorCode.BAD_REQUEST),
    (b"GET /v1/results/M1?wait=abc HTTP/1.1\r\nHost: x\r\n\r\n", ErrorCode.BAD_REQUEST),
    (b"GET /v1/results/M1?wait=121 HTTP/1.1\r\nHost: x\r\n\r\n", ErrorCode.BAD_REQUEST),
    (b"GET /v1/results/M1?wait=1.5 HTTP/1.1\r\nHost: x\r\n\r\n", ErrorCode.BAD_REQUEST),
    (b"GET /v1/results/M1?wiat=1 HTTP/1.1\r\nHost: x\r\n\r\n", ErrorCode.BAD_REQUEST),
    (b"GET /v1/results/M1?wait=1&wait=2 HTTP/1.1\r\nHost: x\r\n\r\n", ErrorCode.BAD_REQUEST),
    (b"GET /v1/results/M%20 HTTP/1.1\r\nHost: x\r\n\r\n", ErrorCode.BAD_REQUEST),
    (b"GARBAGE\r\n\r\n", ErrorCode.BAD_REQUEST),
    (b"GET /v1/health HTTP/9.9\r\n\r\n", ErrorCode.BAD_REQUEST),
    (b"GET /v1/nothing HTTP/1.1\r\nHost: x\r\n\r\n", ErrorCode.NOT_FOUND),
    (b"GET /v1/results/NO-SUCH-MSG HTTP/1.1\r\nHost: x\r\n\r\n", ErrorCode.NOT_FOUND),
    (b"GET /v1/instructions HTTP/1.1\r\nHost: x\r\n\r\n", ErrorCode.METHOD_NOT_ALLOWED),
    (b"DELETE /v1/health HTTP/1.1\r\nHost: x\r\n\r\n", ErrorCode.METHOD_NOT_ALLOWED),
    (b"BREW /v1/health HTTP/1.1\r\nHost: x\r\n\r\n", ErrorCode.METHOD_NOT_ALLOWED),
])
def test_http_level_refusals_are_json_with_stable_codes(api, request_bytes: bytes, code: ErrorCode) -> None:
    status, body = raw(api[1], request_bytes)
    assert status == HTTP_STATUS[code] and body["error"]["code"] == code.value, body


def test_method_not_allowed_names_the_method_to_use(api) -> None:
    response = requests.get(api[1].url + "/v1/instructions", timeout=10)
    assert_error(response, ErrorCode.METHOD_NOT_ALLOWED)
    assert response.headers["Allow"] == "POST"


def test_results_endpoint_answers_200_202_404_and_device_refusals(api) -> None:
    world, bridge, responder = api
    assert_error(requests.get(bridge.url + "/v1/results/UNKNOWN-1", timeout=10), ErrorCode.NOT_FOUND)
    done = world.seal()
    body = post(bridge, done.to_bytes()).content
    got = requests.get(f"{bridge.url}/v1/results/{done.msg_id}", timeout=10)
    assert got.status_code == 200 and got.content == body
    # A refusal by the device is a sealed result signed by the device (his-interface 1.1 A).
    responder.mode = ResponderMode.REFUSE
    responder.refuse_code = ErrorCode.UNKNOWN_TERMINAL  # e.g. the terminal is not provisioned on the device
    refused = world.seal(order="MZ-REFUSED")
    answer = post(bridge, refused.to_bytes())
    assert answer.status_code == 200 and "sig" in answer.json()
    result = receive_result(answer.content, world.ring, now=time.time(), device_keys=world.public_keys().get).message
    assert (result.pay_status.value, result.error_code, result.order_no) == ("FAILED", "unknown_terminal", "MZ-REFUSED")
    assert requests.get(f"{bridge.url}/v1/results/{refused.msg_id}", timeout=10).content == answer.content
    assert post(bridge, refused.to_bytes()).content == answer.content  # identical retry: same answer
    # A device that cannot seal (its keys differ) cannot end the instruction: it stays unfinished, and says why.
    responder.refuse_code = ErrorCode.AUTH_FAILED
    stuck = world.seal()
    first = post(bridge, stuck.to_bytes())
    assert first.status_code == 202
    wait_until(lambda: requests.get(f"{bridge.url}/v1/results/{stuck.msg_id}", timeout=10).json()["last_event"] is not None)
    body = requests.get(f"{bridge.url}/v1/results/{stuck.msg_id}", timeout=10).json()
    assert body["state"] == "queued" and body["last_event"]["code"] == "auth_failed"


def test_health_shows_devices_link_state_firmware_and_clock_but_no_secrets(api) -> None:
    world, bridge, _ = api
    response = requests.get(bridge.url + "/v1/health", timeout=10)
    assert response.status_code == 200
    health = response.json()
    assert health["status"] == "ok"
    assert abs(health["clock"]["unix"] - time.time()) < 60
    (device,) = health["devices"]
    assert device["link"] == "up" and device["device_id"] == "D1" and device["firmware"] == "1.0.0"
    assert device["terminals"] == ["T1"]
    assert world.key.secret.hex() not in response.text and world.key.fingerprint not in response.text


def test_forbidden_for_clients_outside_the_allowlist(world: World) -> None:
    bridge = world.bridge(["socket://127.0.0.1:9"], http={"allow_clients": ["10.9.9.9"]})
    assert_error(requests.get(bridge.url + "/v1/health", timeout=10), ErrorCode.FORBIDDEN)


def test_request_timeout_for_a_request_that_never_completes(world: World) -> None:
    bridge = world.bridge(["socket://127.0.0.1:9"], http={"request_timeout_s": 0.5})
    status, body = raw(bridge, b"POST /v1/instructions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    assert status == 408 and body["error"]["code"] == "request_timeout"


def test_shutting_down_and_internal_error(api, monkeypatch: pytest.MonkeyPatch) -> None:
    world, bridge, _ = api

    def broken(body: bytes, wait: float) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(bridge.relay, "submit", broken)
    assert_error(post(bridge, world.seal().to_bytes()), ErrorCode.INTERNAL_ERROR)
    monkeypatch.undo()
    bridge.relay.begin_shutdown()
    assert_error(post(bridge, world.seal().to_bytes()), ErrorCode.SHUTTING_DOWN)


def test_sm4_gcm_and_key_rotation(world: World) -> None:
    sm4 = SharedKey("k-sm4", "SM4-GCM", os.urandom(16))
    from bridge.keystore import retire_key, write_keyfile

    write_keyfile(world.dir / "keys.json", [world.key, sm4], {})
    world.key = sm4
    responder = world.responder()
    responder.keys = KeyRing([sm4])
    endpoint = world.endpoint("tcp", responder)
    bridge = world.bridge([endpoint.bridge_url])
    wait_until(lambda: bridge.relay.attached("D1"))
    response = post(bridge, world.seal().to_bytes())
    assert response.status_code == 200 and response.json()["suite"] == "SM4-GCM"
    retire_key(world.dir / "keys.json", "k-sm4")
    # The bridge re-reads the key file at most once a second: wait for it to have, not for a second.
    wait_until(lambda: "k-sm4" not in {k.kid for k in bridge.keys.ring().active()}, what="the key file re-read")
    assert "retired" in assert_error(post(bridge, world.seal().to_bytes()), ErrorCode.UNKNOWN_KID)


def test_a_long_polling_retry_does_not_hold_up_other_instructions(api) -> None:
    world, bridge, responder = api
    responder.mode = ResponderMode.SILENT
    held = world.seal(order="MZ-HELD")
    assert post(bridge, held.to_bytes(), wait=0).status_code == 202
    import threading

    retry = threading.Thread(target=lambda: post(bridge, held.to_bytes(), wait=60))
    retry.start()  # an identical re-POST, waiting up to 60 s for the result
    wait_until(lambda: bridge.relay.waiters.waiting(held.msg_id), what="the retry to be waiting")
    responder.mode = ResponderMode.ANSWER
    started = time.monotonic()
    assert post(bridge, world.seal(order="MZ-OTHER").to_bytes(), wait=10).status_code == 200
    assert time.monotonic() - started < 30  # served while the retry is still waiting
    responder.release()
    retry.join(30)
    assert not retry.is_alive()


def test_concurrent_identical_posts_execute_once(api) -> None:
    world, bridge, responder = api
    envelope = world.seal()
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: post(bridge, envelope.to_bytes(), wait=10), range(8)))
    assert all(a.status_code == 200 for a in answers) and len({a.content for a in answers}) == 1
    assert responder.executions[envelope.msg_id] == 1


def test_content_type_must_be_json_when_given(api) -> None:
    world, bridge, _ = api
    body = world.seal().to_bytes()
    assert_error(post(bridge, body, headers={"Content-Type": "text/plain"}), ErrorCode.BAD_REQUEST)
    assert post(bridge, body, headers={"Content-Type": "application/json; charset=utf-8"}).status_code == 200


def test_internal_errors_carry_an_incident_id_found_in_the_log(api, monkeypatch: pytest.MonkeyPatch) -> None:
    world, bridge, _ = api
    monkeypatch.setattr(bridge.relay, "query", lambda msg_id, wait: 1 / 0)
    message = assert_error(requests.get(bridge.url + "/v1/results/M1", timeout=10), ErrorCode.INTERNAL_ERROR)
    incident = message.split("incident ")[1].split(":")[0]
    logged = [line for line in world.log_lines() if line.get("event") == "internal_error"]
    assert logged and logged[-1]["incident"] == incident and "ZeroDivisionError" in logged[-1]["exception"]

