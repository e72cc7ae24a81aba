"""Alipay through the gateway in every mode (own app with a public key, own app in certificate mode,
our third-party app with the hospital's app_auth_token) and Alipay's async notifications applied to
the ledger: the real HTTP gateway, device-signed requests, the channel sandbox on 127.0.0.1, SQLite
and a real PostgreSQL server."""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from firmware_sim.sandbox.alipay_notify import Delivery, Notifier
from firmware_sim.sandbox.identity import load_identity
from firmware_sim.sandbox.server import Sandbox
from gateway.admin import main as admin_main
from gateway.api import GatewayHttpServer
from gateway.channel_clients import ChannelFactory
from gateway.errors import GatewayCode, GatewayError
from gateway.ledger import PaymentState, RefundState
from gateway.notifications import PATH_ALIPAY
from gateway.service import GatewayService
from gateway.tenancy import Mode
from protocol.crypto import KeyRing
from protocol.messages import PayChannel
from terminal.gateway_client import GatewayConnection
from tests.gateway.fleet import ACTOR, Fleet, make_fleet
from tests.gateway.test_api import HIS_KEY, refund_body

FAST = {"query_interval_s": 0.2, "pay_deadline_s": 5.0}
MODES = ["public_key", "certificate", "third_party"]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("alipay-gw-sandbox"))
    box = Sandbox(path, load_identity(path))
    box.start()
    yield box
    box.stop()


def _inline(section: dict) -> dict[str, str]:
    """Settings as the gateway stores them: key material as PEM text, never a path."""
    files = {"private_key_pem", "alipay_public_key_pem", "app_cert_pem", "alipay_cert_pem", "alipay_root_cert_pem"}
    return {k: Path(v).read_text() if k in files else str(v) for k, v in section.items() if k != "app_id"}


def control(sandbox: Sandbox, method: str, path: str, body: dict | None = None) -> dict:
    reply = requests.request(method, f"{sandbox.url}/sandbox/v1{path}", json=body, timeout=10)
    assert reply.status_code < 300, reply.text
    return reply.json()


@dataclass
class Site:
    server: GatewayHttpServer
    fleet: Fleet
    sandbox: Sandbox
    seller_id: str

    def pos(self) -> GatewayConnection:
        return GatewayConnection(self.server.url, device_id="H001-POS1", seed=self.fleet.seeds["H001-POS1"], firmware="1.5.0")

    def code(self, behaviour: str = "success", balance: str = "1000.00") -> str:
        return str(control(self.sandbox, "POST", "/codes", {"channel": "ALIPAY", "balance": balance, "behaviour": behaviour})["code"])

    def pay(self, order_no: str, code: str, fen: int = 1250) -> dict:
        body = {"idempotency_key": uuid.uuid4().hex, "terminal_id": "T0001", "order_no": order_no, "channel": "ALIPAY",
                "out_trade_no": "A" + uuid.uuid4().hex[:20], "amount_fen": fen, "auth_code": code}
        status, reply = self.pos().post("/v1/pay", body)
        assert status == 200, reply
        return reply

    def deliveries(self, out_trade_no: str) -> list[Delivery]:
        return [d for d in self.sandbox.notifier.deliveries if d.form.get("out_trade_no") == out_trade_no]

    def notified(self, out_trade_no: str, n: int = 1) -> list[Delivery]:
        """The first n notifications of the trade, once each was delivered or given up."""
        found = self.deliveries(out_trade_no)
        assert len(found) >= n, f"{len(found)} notifications for {out_trade_no}"
        for delivery in found[:n]:
            assert delivery.done.wait(30)
        return found[:n]


def onboard(fleet: Fleet, sandbox: Sandbox, mode: str) -> str:
    """The hospital's Alipay settings for `mode`; the seller (merchant) whose account receives the money."""
    creds: dict = sandbox.credentials()
    directory = fleet.directory
    if mode == "public_key":
        section = dict(creds["channels"]["alipay"])
        directory.set_merchant_key("H001", PayChannel.ALIPAY, section["app_id"], _inline(section), actor=ACTOR)
        seller = sandbox.identity.alipay_pid
    elif mode == "certificate":
        section = dict(creds["alipay_modes"]["cert"])
        directory.set_merchant_key("H001", PayChannel.ALIPAY, section["app_id"], _inline(section), actor=ACTOR)
        seller = sandbox.identity.alipay_pid
    else:
        section = dict(creds["alipay_modes"]["third_party"])
        directory.set_provider_key(PayChannel.ALIPAY, section["app_id"], _inline(section), actor=ACTOR)
        grant = control(sandbox, "POST", "/alipay/app-auth")
        directory.set_merchant_key("H001", PayChannel.ALIPAY, grant["user_id"], {"app_auth_token": grant["app_auth_token"]}, actor=ACTOR)
        seller = grant["user_id"]
    directory.add_his_keys("H001", KeyRing([HIS_KEY]), actor=ACTOR)
    return seller


@pytest.fixture(params=MODES)
def site(request, db, sandbox):
    mode = request.param
    fleet = make_fleet(db, devices=1, mode=Mode.SERVICE_PROVIDER if mode == "third_party" else Mode.DIRECT)
    seller = onboard(fleet, sandbox, mode)
    service = GatewayService(fleet.directory, fleet.ledger, ChannelFactory(fleet.directory, overrides=FAST))
    server = GatewayHttpServer(service).start()
    yield Site(server, fleet, sandbox, seller)
    server.stop()


def test_collect_and_refund_land_on_the_hospitals_merchant(site) -> None:
    order_no = "MZ" + uuid.uuid4().hex[:12]
    paid = site.pay(order_no, site.code())
    assert (paid["state"], paid["paid_fen"]) == ("success", 1250)
    owner = control(site.sandbox, "GET", f"/alipay/trades/{paid['out_trade_no']}")
    assert owner["seller_id"] == site.seller_id
    assert owner["notify_url"] == site.server.url + PATH_ALIPAY
    body = refund_body(order_no, 300)
    status, refunded = site.pos().post("/v1/refund", body)
    assert (status, refunded["state"]) == (200, "success"), refunded
    # Both notifications (paid, refunded) came, were verified and acknowledged, and changed nothing more.
    for delivery in site.notified(paid["out_trade_no"], 2):
        assert (delivery.delivered, delivery.attempts) == (True, 1), delivery.as_json()
    ledger = site.fleet.ledger
    assert ledger.payment(paid["out_trade_no"], hospital_id="H001").state is PaymentState.SUCCEEDED
    assert ledger.refund(body["out_refund_no"], hospital_id="H001").state is RefundState.SUCCEEDED


def test_a_reversed_collection_is_closed_and_its_notification_agrees(site) -> None:
    paid = site.pay("MZ" + uuid.uuid4().hex[:12], site.code())
    status, reversed_ = site.pos().post("/v1/reverse", {"idempotency_key": uuid.uuid4().hex, "out_trade_no": paid["out_trade_no"]})
    assert (status, reversed_.get("state")) == (200, "done"), reversed_
    closed = site.notified(paid["out_trade_no"], 2)[1]
    assert (closed.form["trade_status"], closed.form["refund_fee"], closed.delivered) == ("TRADE_CLOSED", "12.50", True)
    assert site.fleet.ledger.payment(paid["out_trade_no"], hospital_id="H001").state is PaymentState.CLOSED


def test_a_payment_whose_answer_was_lost_is_settled_by_the_notification(site) -> None:
    """SYSTEMERROR: Alipay took the money but its answer says nothing; the notification says paid."""
    paid = site.pay("MZ" + uuid.uuid4().hex[:12], site.code("systemerror"))
    assert paid["state"] != "success"
    [delivery] = site.notified(paid["out_trade_no"])
    assert delivery.delivered and delivery.form["trade_status"] == "TRADE_SUCCESS"
    payment = site.fleet.ledger.payment(paid["out_trade_no"], hospital_id="H001")
    assert (payment.state, payment.channel_txn_id) == (PaymentState.SUCCEEDED, delivery.form["trade_no"])
    # The same notification again (Alipay repeats them): acknowledged, nothing changes.
    again = requests.post(site.server.url + PATH_ALIPAY, data=delivery.form, timeout=10)
    assert (again.status_code, again.text) == (200, "success")
    assert site.fleet.ledger.payment(paid["out_trade_no"], hospital_id="H001") == payment


def test_a_refund_alipay_did_not_confirm_is_settled_by_the_notification(site) -> None:
    order_no = "MZ" + uuid.uuid4().hex[:12]
    code = site.code()
    paid = site.pay(order_no, code)
    control(site.sandbox, "POST", "/scripts", {"code": code, "answer": "alipay_fund_change_n"})
    body = refund_body(order_no, 500)
    status, refunded = site.pos().post("/v1/refund", body)
    assert (status, refunded["state"]) == (200, "processing"), refunded
    refund_notice = site.notified(paid["out_trade_no"], 2)[1]
    assert (refund_notice.form["out_biz_no"], refund_notice.form["refund_fee"]) == (body["out_refund_no"], "5.00")
    assert refund_notice.delivered
    assert site.fleet.ledger.refund(body["out_refund_no"], hospital_id="H001").state is RefundState.SUCCEEDED


@pytest.mark.parametrize("site", ["public_key"], indirect=True)
def test_forged_mismatched_and_unknown_notifications_change_nothing(site, caplog) -> None:
    paid = site.pay("MZ" + uuid.uuid4().hex[:12], site.code("systemerror"))
    [delivery] = site.notified(paid["out_trade_no"])
    url = site.server.url + PATH_ALIPAY
    before = site.fleet.ledger.payment(paid["out_trade_no"], hospital_id="H001")

    def post(form: dict) -> tuple[int, str]:
        reply = requests.post(url, data=form, timeout=10)
        return reply.status_code, reply.json()["error"]["code"] if reply.status_code != 200 else reply.text

    tampered = {**delivery.form, "trade_status": "TRADE_CLOSED"}  # not signed again
    assert post(tampered) == (401, "bad_signature")
    notifier = site.sandbox.notifier
    fields = {k: v for k, v in delivery.form.items() if k not in ("sign", "sign_type", "notify_id", "notify_time")}
    assert post(notifier.sign({**fields, "total_amount": "0.01"})) == (422, "notification_mismatch")
    assert post(notifier.sign({**fields, "app_id": "2021000000000000"})) == (422, "notification_mismatch")
    with caplog.at_level(logging.INFO):
        unknown = notifier.sign({**fields, "out_trade_no": "NOSUCHTRADE1"})
        assert post(unknown) == (422, "unknown_payment")
    assert unknown["sign"] not in caplog.text and "NOSUCHTRADE1" in caplog.text
    assert requests.post(url, data=b"a=1&a=2", headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=10).status_code == 400
    assert site.fleet.ledger.payment(paid["out_trade_no"], hospital_id="H001") == before


@pytest.mark.parametrize("site", ["public_key"], indirect=True)
def test_a_notification_that_contradicts_the_ledger_is_not_acknowledged_and_alipay_retries(site) -> None:
    declined = site.pay("MZ" + uuid.uuid4().hex[:12], site.code("insufficient"))
    assert declined["state"] == "failed"
    payment = site.fleet.ledger.payment(declined["out_trade_no"], hospital_id="H001")
    owner = control(site.sandbox, "GET", f"/alipay/trades/{declined['out_trade_no']}")
    form = {"notify_type": "trade_status_sync", "app_id": owner["app_id"], "auth_app_id": owner["auth_app_id"], "charset": "utf-8",
            "version": "1.0", "trade_no": "2026120222001000000000000001", "out_trade_no": declined["out_trade_no"],
            "seller_id": owner["seller_id"], "trade_status": "TRADE_SUCCESS", "total_amount": "12.50"}
    impatient = Notifier(site.sandbox.identity.alipay_private_key, threading.Event(), retry_delays_s=(0.05, 0.1))
    delivery = impatient.send(owner["notify_url"], form)
    assert delivery.done.wait(60)
    assert not delivery.delivered and delivery.attempts > 1  # never acknowledged: Alipay tries again
    assert "bad_transition" in (delivery.answered or "")
    [alarm] = site.server.service.alarms.list(hospital_id="H001")
    assert (alarm.reason, alarm.reference, alarm.count) == ("notification_conflict", declined["out_trade_no"], delivery.attempts)
    assert "merchant platform" in alarm.what_to_do
    assert site.fleet.ledger.payment(declined["out_trade_no"], hospital_id="H001") == payment


# -- third-party mode: onboarding ---------------------------------------------------------------


@pytest.mark.parametrize("site", ["third_party"], indirect=True)
def test_a_third_party_hospital_needs_only_its_token_and_the_provider_key(site) -> None:
    directory = site.fleet.directory
    with pytest.raises(GatewayError) as refused:
        directory.set_merchant_key("H001", PayChannel.ALIPAY, "2088000000000001", {"app_auth_token": "t", "extra": "x"}, actor=ACTOR)
        site.server.service.channels.client("H001", PayChannel.ALIPAY)
    assert refused.value.code is GatewayCode.BAD_CONFIG
    audit = json.dumps(directory.audit_log())
    token = control(site.sandbox, "POST", "/alipay/app-auth")["app_auth_token"]
    directory.set_merchant_key("H001", PayChannel.ALIPAY, "2088000000000001", {"app_auth_token": token}, actor=ACTOR)
    assert token not in audit + json.dumps(directory.audit_log())


def test_gateway_admin_onboards_a_third_party_hospital(tmp_path, monkeypatch, capsys, sandbox) -> None:
    key = tmp_path / "master.key"
    monkeypatch.setenv("GATEWAY_DB", f"sqlite:{tmp_path}/gw.db")
    monkeypatch.setenv("GATEWAY_MASTER_KEY_FILE", str(key))
    monkeypatch.delenv("GATEWAY_MASTER_KEY", raising=False)
    run = lambda *argv: admin_main(["--actor", "alice", *argv])  # noqa: E731
    assert run("master-key", "new", str(key)) == 0 and run("migrate") == 0
    section = dict(sandbox.credentials()["alipay_modes"]["third_party"])
    (tmp_path / "provider.json").write_text(json.dumps(_inline(section)))
    grant = control(sandbox, "POST", "/alipay/app-auth")
    (tmp_path / "token").write_text(grant["app_auth_token"] + "\n")
    assert run("hospital", "add", "H002", "--name", "County Hospital", "--mode", "service_provider") == 0
    assert run("provider", "set", "alipay", "--merchant-id", section["app_id"], "--credentials", str(tmp_path / "provider.json")) == 0
    assert run("merchant", "set", "H002", "alipay", "--merchant-id", grant["user_id"], "--app-auth-token", f"@{tmp_path / 'token'}") == 0
    capsys.readouterr()
    assert run("merchant", "set", "H002", "alipay", "--merchant-id", grant["user_id"], "--app-auth-token", "bad token") == 1
    assert "app_auth_token must be" in capsys.readouterr().err
    assert run("audit") == 0
    audit = capsys.readouterr().out
    assert "provider_key.set" in audit and "merchant_key.set" in audit
    stored = (tmp_path / "gw.db").read_bytes()
    assert grant["app_auth_token"].encode() not in stored and b"PRIVATE KEY" not in stored and grant["app_auth_token"] not in audit
    os.remove(tmp_path / "token")
