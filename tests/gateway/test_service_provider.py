"""A hospital in WeChat Pay service-provider mode, through the gateway: our provider keys sign, the
hospital's sub-merchant is paid, on SQLite and on a real PostgreSQL server, against the real sandbox."""

from __future__ import annotations

import pytest
import requests

from firmware_sim.sandbox.launcher import SandboxProcess
from gateway.api import GatewayHttpServer
from gateway.channel_clients import ChannelFactory
from gateway.channels.wechat import WeChatPayClient, WeChatPayConfig
from gateway.errors import GatewayCode, GatewayError
from gateway.ledger import PaymentState
from gateway.service import GatewayService
from gateway.tenancy import Mode
from protocol.crypto import KeyRing
from protocol.messages import PayChannel
from terminal.channels.base import PayState
from tests.gateway.fleet import ACTOR, make_fleet
from tests.gateway.test_api import FAST, HIS_KEY, Gw, error_code, order, pay_body, refund_body


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    process = SandboxProcess(str(tmp_path_factory.mktemp("gw-sp-sandbox"))).start()
    yield process
    process.stop()


def onboard_sub_merchant(fleet, sandbox, sub: int = 0) -> str:
    sp = sandbox.credentials["wechat_service_provider"]
    directory = fleet.directory
    directory.set_provider_key(PayChannel.WECHAT, sp["mch_id"],
                               {"appid": sp["appid"], "api_key": sp["api_key"], "base_url": sp["base_url"]}, actor=ACTOR)
    directory.set_mode("H001", Mode.SERVICE_PROVIDER, actor=ACTOR)
    sub_mch_id = sp["sub_mch_ids"][sub]
    directory.set_merchant_key("H001", PayChannel.WECHAT, sub_mch_id, {"sub_appid": sp["sub_appid"]}, actor=ACTOR)
    directory.add_his_keys("H001", KeyRing([HIS_KEY]), actor=ACTOR)
    return sub_mch_id


@pytest.fixture
def gw(db, sandbox):
    fleet = make_fleet(db, devices=1)
    onboard_sub_merchant(fleet, sandbox)
    service = GatewayService(fleet.directory, fleet.ledger, ChannelFactory(fleet.directory, overrides=FAST))
    server = GatewayHttpServer(service).start()
    yield Gw(server, fleet, sandbox, __import__("tests.gateway.test_api", fromlist=["Clock"]).Clock())
    server.stop()


def test_collect_and_refund_land_on_the_hospitals_sub_merchant(gw) -> None:
    pos, order_no = gw.pos(), order()
    status, paid = pos.post("/v1/pay", pay_body(order_no, gw.code(), 1250))
    assert (status, paid["state"], paid["paid_fen"]) == (200, "success", 1250)
    assert gw.fleet.ledger.payment(paid["out_trade_no"], hospital_id="H001").state is PaymentState.SUCCEEDED
    # The order is the sub-merchant's: the provider sees it for that sub-merchant, the direct merchant does not.
    direct = WeChatPayClient(WeChatPayConfig(**gw.sandbox.credentials["channels"]["wechat"]))
    assert direct.query(paid["out_trade_no"]).state is PayState.NOT_FOUND
    body = refund_body(order_no, 500)
    status, refunded = pos.post("/v1/refund", body)
    assert (status, refunded["state"]) == (200, "processing"), refunded
    status, rq = pos.post("/v1/refund-query", {"out_refund_no": body["out_refund_no"]})
    assert (status, rq["state"], rq["refunded_fen"]) == (200, "success", 500)


def test_a_sub_merchant_moved_to_an_unbound_id_is_refused_from_the_next_request(gw) -> None:
    """Credentials changes take effect at once (the cached client is rebuilt): an id the provider has
    no binding for is refused by the channel, nothing is charged, and the operators get an alarm."""
    pos = gw.pos()
    gw.fleet.directory.set_merchant_key("H001", PayChannel.WECHAT, "1999999999", {}, actor=ACTOR)
    code = gw.code(balance="20.00")
    status, reply = pos.post("/v1/pay", pay_body(order(), code, 1250))
    assert (status, reply["state"], reply["result_code"]) == (200, "failed", "merchant_config")
    assert requests.get(f"{gw.sandbox.url}/sandbox/v1/accounts/{code}", timeout=10).json()["balance"] == "20.00"
    assert [a.reason for a in gw.server.service.alarms.list(hospital_id="H001")] == ["merchant_config"]


def test_rotating_the_provider_key_reaches_every_sub_merchant_at_once(gw) -> None:
    pos = gw.pos()
    sp = gw.sandbox.credentials["wechat_service_provider"]
    assert pos.post("/v1/pay", pay_body(order(), gw.code(), 100))[1]["state"] == "success"
    gw.fleet.directory.set_provider_key(PayChannel.WECHAT, sp["mch_id"],
                                        {"appid": sp["appid"], "api_key": "W" * 32, "base_url": sp["base_url"]}, actor=ACTOR)
    reply = pos.post("/v1/pay", pay_body(order(), gw.code(), 100))[1]
    assert (reply["state"], reply["result_code"]) == ("failed", "merchant_config")  # the sandbox knows the old key only


def test_a_sub_merchant_needs_the_provider_credentials_and_only_it_may_have_no_secret(db) -> None:
    fleet = make_fleet(db, devices=1)
    directory = fleet.directory
    with pytest.raises(GatewayError) as direct_without_keys:
        directory.set_merchant_key("H001", PayChannel.WECHAT, "1900000109", {}, actor=ACTOR)
    assert direct_without_keys.value.code is GatewayCode.BAD_INPUT
    directory.set_mode("H001", Mode.SERVICE_PROVIDER, actor=ACTOR)
    directory.set_merchant_key("H001", PayChannel.WECHAT, "1900000109", {}, actor=ACTOR)
    with pytest.raises(GatewayError) as no_provider_keys:
        ChannelFactory(directory).client("H001", PayChannel.WECHAT)
    assert no_provider_keys.value.code is GatewayCode.NO_MERCHANT and "provider set" in no_provider_keys.value.message
    audit = [action for _, _, action, _, _ in directory.audit_log()]
    assert {"hospital.mode", "merchant_key.set"} <= set(audit)


def test_an_unknown_hospital_error_still_names_it(db) -> None:
    fleet = make_fleet(db, devices=1)
    with pytest.raises(GatewayError) as unknown:
        ChannelFactory(fleet.directory).client("H404", PayChannel.WECHAT)
    assert unknown.value.code is GatewayCode.UNKNOWN_HOSPITAL and error_code(unknown.value.to_json_obj()) == "unknown_hospital"
