"""WeChat Pay refund notifications through the gateway: the sandbox sends them to the notify_url the
gateway put in the refund (v2 req_info and APIv3 resources, direct and service-provider mode); the
gateway verifies, opens and applies them to the ledger once, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import json
import logging
import secrets
import time
import uuid
from pathlib import Path

import pytest
import requests

from firmware_sim.sandbox.launcher import SandboxProcess
from gateway.api import GatewayHttpServer
from gateway.channel_clients import ChannelFactory
from gateway.channels import wechat_v3_codec as v3
from gateway.channels.wechat_codec import parse_xml, to_xml
from gateway.ledger import RefundState
from gateway.service import GatewayService
from gateway.wechat_notifications import WeChatNotifications
from gateway.tenancy import Mode
from protocol.crypto import KeyRing
from protocol.messages import PayChannel
from tests.gateway.fleet import ACTOR, make_fleet
from tests.gateway.test_api import FAST, HIS_KEY, Clock, Gw, order, pay_body, refund_body
from tests.waiting import wait_until

SETUPS = ["v2-direct", "v2-provider", "v3-direct", "v3-provider"]
# Every setup on SQLite; PostgreSQL once (the ledger's updates are the same SQL, tested on both in test_ledger.py).
SETUP_DBS = [(setup, "sqlite") for setup in SETUPS] + [("v3-provider", "postgresql")]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    process = SandboxProcess(str(tmp_path_factory.mktemp("gw-notify-sandbox"))).start()
    yield process
    process.stop()


def _v3_secrets(creds: dict) -> dict[str, str]:
    return {"api_version": "v3", "base_url": creds["base_url"], "appid": creds["appid"], "merchant_serial_no": creds["merchant_serial_no"],
            "private_key_pem": Path(creds["private_key_pem"]).read_text(), "apiv3_key": creds["apiv3_key"],
            "platform_public_key_pem": Path(creds["platform_public_key_pem"]).read_text(),
            "platform_public_key_id": creds["platform_public_key_id"]}


def onboard(fleet, sandbox, setup: str) -> None:
    directory, creds = fleet.directory, sandbox.credentials
    version, who = setup.split("-")
    if who == "direct":
        if version == "v2":
            w = creds["channels"]["wechat"]
            directory.set_merchant_key("H001", PayChannel.WECHAT, w["mch_id"], {"appid": w["appid"], "api_key": w["api_key"],
                                                                                 "base_url": w["base_url"]}, actor=ACTOR)
        else:
            w = creds["wechat_v3"]["direct"]
            directory.set_merchant_key("H001", PayChannel.WECHAT, w["mchid"], _v3_secrets(w), actor=ACTOR)
    else:
        if version == "v2":
            sp = creds["wechat_service_provider"]
            directory.set_provider_key(PayChannel.WECHAT, sp["mch_id"], {"appid": sp["appid"], "api_key": sp["api_key"],
                                                                                 "base_url": sp["base_url"]}, actor=ACTOR)
            sub = sp["sub_mch_ids"][1]
        else:
            sp = creds["wechat_v3"]["service_provider"]
            directory.set_provider_key(PayChannel.WECHAT, sp["mchid"], _v3_secrets(sp), actor=ACTOR)
            sub = sp["sub_mchids"][1]
        directory.set_mode("H001", Mode.SERVICE_PROVIDER, actor=ACTOR)
        directory.set_merchant_key("H001", PayChannel.WECHAT, sub, {}, actor=ACTOR)
    directory.add_his_keys("H001", KeyRing([HIS_KEY]), actor=ACTOR)


@pytest.fixture(params=SETUP_DBS, ids=["-".join(p) for p in SETUP_DBS])
def gw(request, tmp_path, sandbox):
    from gateway.db import Database, PostgresDatabase, SqliteDatabase

    setup, kind = request.param
    db: Database = SqliteDatabase(tmp_path / "gateway.db") if kind == "sqlite" else PostgresDatabase(
        request.getfixturevalue("pg_server").new_schema())
    db.migrate()
    request.addfinalizer(db.close)
    fleet = make_fleet(db, devices=1)
    onboard(fleet, sandbox, setup)
    factory = ChannelFactory(fleet.directory, overrides=FAST)
    service = GatewayService(fleet.directory, fleet.ledger, factory)
    server = GatewayHttpServer(service).start()  # start() gives the clients the notify URL of this server
    gw = Gw(server, fleet, sandbox, Clock())
    gw.setup = setup
    yield gw
    server.stop()


def _deliveries(sandbox: SandboxProcess, out_refund_no: str) -> list[dict]:
    return [d for d in sandbox.control("GET", "/wechat/notifications")["notifications"] if d["out_refund_no"] == out_refund_no]


def _refund_through_the_gateway(gw) -> tuple[str, dict]:
    pos, order_no = gw.pos(), order()
    status, paid = pos.post("/v1/pay", pay_body(order_no, gw.code(), 1250))
    assert (status, paid["state"]) == (200, "success"), paid
    body = refund_body(order_no, 500)
    status, refunded = pos.post("/v1/refund", body)
    assert (status, refunded["state"]) == (200, "processing"), refunded  # accepted; nobody queries it in this test
    return body["out_refund_no"], paid


def test_the_notification_settles_the_refund_and_a_repeat_changes_nothing(gw) -> None:
    out_refund_no, _ = _refund_through_the_gateway(gw)
    ledger = gw.fleet.ledger
    wait_until(lambda: ledger.refund(out_refund_no, hospital_id="H001").state is RefundState.SUCCEEDED,
               what="the refund notification to settle the refund")
    assert ledger.refund(out_refund_no, hospital_id="H001").channel_refund_id
    [delivery] = wait_until(lambda: [d for d in _deliveries(gw.sandbox, out_refund_no) if d["delivered"]], what="the delivery record")
    assert delivery["kind"] == gw.setup.split("-")[0] and delivery["attempts"] == 1
    with gw.fleet.directory.db.transaction(write=False) as tx:
        before = tx.all("SELECT * FROM refunds WHERE out_refund_no = ?", (out_refund_no,))
    again = gw.sandbox.control("POST", f"/wechat/notifications/{delivery['id']}/resend")
    assert again["delivered"] and again["last_status"] in (200, 204)  # acknowledged, as WeChat expects
    with gw.fleet.directory.db.transaction(write=False) as tx:
        assert tx.all("SELECT * FROM refunds WHERE out_refund_no = ?", (out_refund_no,)) == before
    assert gw.server.service.alarms.list(hospital_id="H001") == []


# --- forged and foreign notifications ---------------------------------------------------------------

def _keys(gw) -> dict:
    creds = gw.sandbox.credentials
    version, who = gw.setup.split("-")
    if version == "v2":
        c = creds["channels"]["wechat"] if who == "direct" else creds["wechat_service_provider"]
        ids = {"appid": c["appid"], "mch_id": c["mch_id"]}
        if who == "provider":
            ids["sub_mch_id"] = c["sub_mch_ids"][1]
        return {"ids": ids, "key": c["api_key"]}
    c = creds["wechat_v3"]["direct" if who == "direct" else "service_provider"]
    ids = {"mchid": c["mchid"]} if who == "direct" else {"sp_mchid": c["mchid"], "sub_mchid": c["sub_mchids"][1]}
    platform = v3.load_private_key(Path(c["platform_public_key_pem"]).parent.joinpath("wechat_platform_private_key.pem").read_text())
    return {"ids": ids, "key": c["apiv3_key"], "platform": platform, "serial": c["platform_public_key_id"]}


def _notify(gw, out_trade_no: str, out_refund_no: str, fen: int, *, status: str = "SUCCESS", key: str | None = None,
            tamper: bool = False) -> requests.Response:
    k = _keys(gw)
    url = f"{gw.server.url}/v1/notify/wechat/H001"
    if gw.setup.startswith("v2"):
        inner = to_xml({"out_trade_no": out_trade_no, "out_refund_no": out_refund_no, "refund_id": "5030000001",
                        "refund_fee": str(fen), "refund_status": status})
        plain = b"<root>" + inner[len(b"<xml>"):-len(b"</xml>")] + b"</root>"
        body = to_xml({"return_code": "SUCCESS", **k["ids"], "nonce_str": "n1", "req_info": v3.req_info_encrypt(key or k["key"], plain)})
        return requests.post(url, data=body, headers={"Content-Type": "text/xml"}, timeout=10)
    resource = {**k["ids"], "out_trade_no": out_trade_no, "out_refund_no": out_refund_no, "refund_id": "5030000001",
                "refund_status": status, "amount": {"total": 1250, "refund": fen, "payer_total": 1250, "payer_refund": fen}}
    nonce = secrets.token_hex(6)
    doc = {"id": "EV-1", "resource_type": "encrypt-resource", "event_type": "REFUND.SUCCESS",
           "resource": {"algorithm": "AEAD_AES_256_GCM", "original_type": "refund", "associated_data": "refund", "nonce": nonce,
                        "ciphertext": v3.aead_encrypt(key or k["key"], nonce, "refund", json.dumps(resource).encode())}}
    text = json.dumps(doc)
    ts, sig_nonce = str(int(time.time())), secrets.token_hex(8)
    signature = v3.rsa_sign(v3.response_message(ts, sig_nonce, text), k["platform"])
    if tamper:
        text = text.replace("EV-1", "EV-2")
    headers = {"Content-Type": "application/json", v3.H_TIMESTAMP: ts, v3.H_NONCE: sig_nonce, v3.H_SERIAL: k["serial"],
               v3.H_SIGNATURE: signature, v3.H_SIGNATURE_TYPE: v3.SIGNATURE_TYPE}
    return requests.post(url, data=text.encode(), headers=headers, timeout=10)


def _refused_code(gw, response: requests.Response) -> str:
    if gw.setup.startswith("v2"):
        reply = parse_xml(response.content)
        assert response.status_code == 200 and reply["return_code"] == "FAIL"
        return reply["return_msg"]
    assert response.status_code >= 400
    return response.json()["message"].split(":")[0]


def test_a_notification_for_an_unknown_refund_is_refused_and_logged_without_secrets(gw, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    response = _notify(gw, "P" + uuid.uuid4().hex[:20], "R-NOBODY-KNOWS", 500)
    assert _refused_code(gw, response) == "unknown_refund"
    assert "R-NOBODY-KNOWS" in caplog.text
    assert _keys(gw)["key"] not in caplog.text and "req_info" not in caplog.text


def test_forged_mismatched_and_abnormal_notifications(gw) -> None:
    out_refund_no, paid = _refund_through_the_gateway(gw)
    ledger = gw.fleet.ledger
    wait_until(lambda: ledger.refund(out_refund_no, hospital_id="H001").state is RefundState.SUCCEEDED, what="the real notification")
    wrong_key = "K" * 32
    assert _refused_code(gw, _notify(gw, paid["out_trade_no"], out_refund_no, 500, key=wrong_key)) == "bad_notification"
    if gw.setup.startswith("v3"):
        assert _refused_code(gw, _notify(gw, paid["out_trade_no"], out_refund_no, 500, tamper=True)) == "bad_notification"
    assert _refused_code(gw, _notify(gw, paid["out_trade_no"], out_refund_no, 499)) == "notification_mismatch"
    # A CLOSED notice for a refund the ledger holds as succeeded: nothing changes, a person is asked.
    closed = _notify(gw, paid["out_trade_no"], out_refund_no, 500, status="CLOSED" if gw.setup.startswith("v3") else "REFUNDCLOSE")
    assert closed.status_code in (200, 204)
    assert ledger.refund(out_refund_no, hospital_id="H001").state is RefundState.SUCCEEDED
    abnormal = _notify(gw, paid["out_trade_no"], out_refund_no, 500, status="ABNORMAL" if gw.setup.startswith("v3") else "CHANGE")
    assert abnormal.status_code in (200, 204)
    reasons = sorted(a.reason for a in gw.server.service.alarms.list(hospital_id="H001"))
    assert reasons == ["notification_conflict", "refund_abnormal"]


def test_a_collection_the_patient_never_confirms_is_reversed_through_the_gateway(gw) -> None:
    """The reversal leg of every setup (v2/v3, direct/provider): nothing taken, the ledger closed."""
    from gateway.ledger import PaymentState

    pos = gw.pos()
    code = requests.post(gw.sandbox.url + "/sandbox/v1/codes", json={"channel": "WECHAT", "balance": "50.00",
                                                                      "behaviour": "userpaying_forever"}, timeout=10).json()["code"]
    status, paying = pos.post("/v1/pay", pay_body(order(), code, 1250))
    assert (status, paying["state"]) == (200, "user_paying"), paying
    status, reversed_ = pos.post("/v1/reverse", {"idempotency_key": uuid.uuid4().hex, "out_trade_no": paying["out_trade_no"]})
    assert (status, reversed_["state"]) == (200, "done"), reversed_
    assert gw.fleet.ledger.payment(paying["out_trade_no"], hospital_id="H001").state is PaymentState.CLOSED
    assert requests.get(f"{gw.sandbox.url}/sandbox/v1/accounts/{code}", timeout=10).json()["balance"] == "50.00"


def test_any_bytes_at_the_notification_endpoint_get_a_stable_refusal(tmp_path) -> None:
    """Whatever arrives (XML, JSON, garbage, headers or none), the answer is a refusal with one of the
    documented codes, never an exception and never a ledger change."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from gateway.alarms import Alarms
    from gateway.db import SqliteDatabase

    db = SqliteDatabase(tmp_path / "fuzz.db")
    db.migrate()
    fleet = make_fleet(db, devices=1)
    fleet.directory.set_merchant_key("H001", PayChannel.WECHAT, "1900000109",
                                     {"appid": "wx1", "api_key": "k" * 32, "apiv3_key": "a" * 32, "platform_public_key_id": "PUB_KEY_ID_1",
                                      "platform_public_key_pem": _keys_pem()}, actor=ACTOR)
    receiver = WeChatNotifications(fleet.directory, fleet.ledger, Alarms(db))
    codes = {"bad_notification", "notification_mismatch", "unknown_refund", "unknown_hospital", "no_merchant"}
    bodies = st.one_of(st.binary(max_size=300), st.builds(lambda t: ("<xml>" + t + "</xml>").encode(), st.text(max_size=100)),
                       st.builds(lambda d: json.dumps(d).encode(), st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=5)))

    @settings(max_examples=150, deadline=None)
    @given(bodies, st.sampled_from(["/v1/notify/wechat/H001", "/v1/notify/wechat/H404", "/v1/notify/wechat/../x"]),
           st.dictionaries(st.sampled_from([v3.H_SERIAL, v3.H_SIGNATURE, v3.H_TIMESTAMP, v3.H_NONCE]), st.text(max_size=40)))
    def check(body: bytes, path: str, headers: dict[str, str]) -> None:
        status, reply, _ = receiver.handle(path, headers, body)
        if body.lstrip()[:1] == b"<":
            answer = parse_xml(reply)
            assert status == 200 and answer["return_code"] == "FAIL" and answer["return_msg"] in codes
        else:
            assert status >= 400 and json.loads(reply)["message"].split(":")[0] in codes

    check()
    with db.transaction(write=False) as tx:
        assert tx.scalar("SELECT COUNT(*) FROM refunds") == 0 and tx.scalar("SELECT COUNT(*) FROM alarms") == 0
    db.close()


def _keys_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
