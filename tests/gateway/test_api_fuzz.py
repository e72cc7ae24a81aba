"""Every body a registered device can sign gets a clear answer (issue 13, "Bad input"): 200, or a 4xx
whose `error.code` is one of the gateway's stable codes with a message. Never a 500, never
`internal_error`, never a reply that is not JSON; and a refusal leaves nothing behind: no payment, no
refund in the ledger. Valid bodies of every route, then mutated by hypothesis (a field dropped, a field
of any JSON type, unknown fields, a non-object, bytes that are not UTF-8), signed by the device and
sent over real HTTP to the gateway with the channel sandbox behind it."""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.api import GatewayHttpServer
from gateway.channel_clients import ChannelFactory
from gateway.errors import GatewayCode
from gateway.service import GatewayService
from protocol.device_request import NONCE_SIZE, sign_request
from tests.budget import examples
from tests.gateway.fleet import make_fleet
from tests.gateway.test_api import FAST, instruction, onboard, sandbox  # noqa: F401 (the module's sandbox fixture)

CODES = {c.value for c in GatewayCode}
DEVICE = "H001-POS1"

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False), st.text(max_size=80),
                      st.just("T0001"), st.just("WECHAT"), st.just("12.50"), st.just(""), st.just("1" * 200))
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                          max_leaves=6)


def _valid(route: str) -> dict:
    order_no = "MZ" + uuid.uuid4().hex[:12]
    key = uuid.uuid4().hex
    bodies: dict[str, dict] = {
        "/v1/pay": {"idempotency_key": key, "terminal_id": "T0001", "order_no": order_no, "out_trade_no": "P" + key[:20],
                    "channel": "WECHAT", "amount_fen": 1, "auth_code": "134567890123456789"},
        "/v1/query": {"out_trade_no": "P" + key[:20]},
        "/v1/reverse": {"idempotency_key": key, "out_trade_no": "P" + key[:20]},
        "/v1/refund": {"idempotency_key": key, "order_no": order_no, "out_refund_no": "R" + key[:20], "amount_fen": 100,
                       "instruction": instruction(order_no, 100)},
        "/v1/refund-query": {"out_refund_no": "R" + key[:20]},
        "/v1/alarm": {"idempotency_key": key, "reason": "unverified_reply", "kind": "collect", "reference": key[:20],
                      "order_no": order_no, "channel": "WECHAT", "amount_fen": 100, "message": "x"},
        "/v1/journal-mark": {"mark": 3},
        "/v1/orders": {"since": 0},
    }
    return bodies[route]


@st.composite
def bodies(draw) -> tuple[str, bytes]:
    route = draw(st.sampled_from(["/v1/pay", "/v1/query", "/v1/reverse", "/v1/refund", "/v1/refund-query", "/v1/alarm",
                                  "/v1/journal-mark", "/v1/orders", "/v1/nothing-here"]))
    if route == "/v1/nothing-here":
        return route, b"{}"
    body = _valid(route)
    how = draw(st.sampled_from(["drop", "replace", "extra", "not_object", "not_utf8", "nested_instruction"]))
    if how == "drop":
        body.pop(draw(st.sampled_from(sorted(body))))
    elif how == "replace":
        body[draw(st.sampled_from(sorted(body)))] = draw(json_value)
    elif how == "extra":
        body[draw(st.text(min_size=1, max_size=12))] = draw(json_value)
    elif how == "nested_instruction" and isinstance(body.get("instruction"), dict):
        sealed = body["instruction"]
        sealed[draw(st.sampled_from(sorted(sealed)))] = draw(json_value)
    elif how == "not_object":
        return route, json.dumps(draw(st.one_of(json_leaf, st.lists(json_leaf, max_size=3)))).encode()
    elif how == "not_utf8":
        return route, b'{"order_no": "\xff\xfe"}'
    return route, json.dumps(body).encode()


@pytest.fixture
def live(db, sandbox):  # noqa: F811 (the sandbox fixture imported above)
    fleet = make_fleet(db, devices=1)
    onboard(fleet, sandbox)
    service = GatewayService(fleet.directory, fleet.ledger, ChannelFactory(fleet.directory, overrides=FAST))
    server = GatewayHttpServer(service).start()
    yield server.url, fleet
    server.stop()


@settings(max_examples=examples(120), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=bodies())
def test_every_signed_body_gets_a_stable_code_and_a_refusal_leaves_nothing(live, case) -> None:
    url, fleet = live
    route, body = case
    headers = sign_request(fleet.seeds[DEVICE], method="POST", path=route, device_id=DEVICE, ts=int(time.time()),
                           nonce=os.urandom(NONCE_SIZE), firmware="1.0", body=body)
    before = fleet.ledger.db.transaction(write=False)
    with before as tx:
        counts = tx.one("SELECT (SELECT COUNT(*) FROM payments), (SELECT COUNT(*) FROM refunds)")
    reply = requests.post(url + route, data=body, headers=headers | {"Content-Type": "application/json"}, timeout=30)
    assert reply.status_code < 500, (route, body, reply.status_code, reply.text)
    payload = reply.json()
    if reply.status_code == 200:
        assert "error" not in payload
        return
    error = payload["error"]
    assert error["code"] in CODES and error["code"] != GatewayCode.INTERNAL_ERROR.value, (route, body, payload)
    assert isinstance(error["message"], str) and error["message"]
    with fleet.ledger.db.transaction(write=False) as tx:
        after = tx.one("SELECT (SELECT COUNT(*) FROM payments), (SELECT COUNT(*) FROM refunds)")
    if error["code"] not in (GatewayCode.DUPLICATE_ORDER.value,):
        assert tuple(after) == tuple(counts), (route, body, payload)
