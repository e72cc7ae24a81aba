"""WeChat Pay service-provider mode (v2) against the real sandbox: the provider's keys, the hospital's
sub-merchant, and whose money it is (each sub-merchant sees and is billed only its own orders)."""

from __future__ import annotations

import datetime
import uuid
from typing import Iterator

import pytest

from firmware_sim.sandbox.launcher import SandboxProcess
from gateway.channels.errors import BillDownloadError, ChannelConfigError
from gateway.channels.wechat import WeChatPayClient, WeChatPayConfig
from protocol.messages import PayChannel, ResultCode
from terminal.channels.base import PayState, RefundState, ReverseState

DAY = datetime.date(2031, 5, 6)


def _otn() -> str:
    return "SP" + uuid.uuid4().hex[:20]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    with SandboxProcess(str(tmp_path_factory.mktemp("wechat-sp"))) as process:
        process.control("POST", "/clock", {"today": DAY.isoformat()})
        yield process


def _provider(sandbox, sub_mch_id: str | None = None, **extra) -> WeChatPayClient:
    sp = sandbox.credentials["wechat_service_provider"]
    sub = sub_mch_id if sub_mch_id is not None else sp["sub_mch_ids"][0]
    return WeChatPayClient(WeChatPayConfig(appid=sp["appid"], mch_id=sp["mch_id"], api_key=sp["api_key"], base_url=sp["base_url"],
                                           sub_mch_id=sub, **extra))


def _direct(sandbox) -> WeChatPayClient:
    return WeChatPayClient(WeChatPayConfig(**sandbox.credentials["channels"]["wechat"]))


def _code(sandbox: SandboxProcess, balance: str = "100.00") -> str:
    return str(sandbox.issue_code("WECHAT", balance)["code"])


def _balance(sandbox: SandboxProcess, code: str) -> int:
    return int(sandbox.account(code)["balance_fen"])


def test_collect_refund_and_reverse_for_a_sub_merchant(sandbox):
    client, code, otn = _provider(sandbox), _code(sandbox), _otn()
    paid = client.pay(out_trade_no=otn, auth_code=code, total_fen=1250, subject="门诊缴费")
    assert paid.state is PayState.SUCCESS and paid.paid_fen == 1250
    assert _balance(sandbox, code) == 100_00 - 1250
    assert client.query(otn).state is PayState.SUCCESS
    refund = client.refund(out_trade_no=otn, out_refund_no="R" + otn, total_fen=1250, refund_fen=250, reason="x")
    assert refund.state is RefundState.PROCESSING and refund.refunded_fen == 250
    assert client.refund_query(out_trade_no=otn, out_refund_no="R" + otn).state is RefundState.SUCCESS
    assert client.reverse(otn).state is ReverseState.DONE
    assert _balance(sandbox, code) == 100_00  # 250 refunded, the remaining 1000 reversed


def test_a_sub_merchants_orders_are_invisible_to_every_other_merchant(sandbox):
    sub_a, sub_b = sandbox.credentials["wechat_service_provider"]["sub_mch_ids"][:2]
    otn = _otn()
    assert _provider(sandbox, sub_a).pay(out_trade_no=otn, auth_code=_code(sandbox), total_fen=500, subject="x").state is PayState.SUCCESS
    assert _provider(sandbox, sub_b).query(otn).state is PayState.NOT_FOUND
    assert _direct(sandbox).query(otn).state is PayState.NOT_FOUND
    refused = _provider(sandbox, sub_b).refund(out_trade_no=otn, out_refund_no="R" + otn, total_fen=500, refund_fen=500, reason="x")
    assert refused.state is RefundState.FAILED and refused.result_code is ResultCode.ORDER_NOT_PAID


def test_two_hospitals_using_the_same_out_trade_no_each_get_their_own_order(sandbox):
    """Order numbers are each merchant's own (as at WeChat Pay): hospital A (sub-merchant), hospital B
    (sub-merchant) and a direct merchant all pay "MZ..." and each gets its own order, refund and bill
    line; through API v2 and APIv3 alike (one order space per merchant across both APIs)."""
    from gateway.channels import build_clients

    sub_a, sub_b = sandbox.credentials["wechat_service_provider"]["sub_mch_ids"][:2]
    otn = "MZ" + uuid.uuid4().hex[:12]
    codes = {who: _code(sandbox) for who in ("a", "b", "direct")}
    clients = {"a": _provider(sandbox, sub_a), "b": _provider(sandbox, sub_b), "direct": _direct(sandbox)}
    fen = {"a": 1250, "b": 3300, "direct": 700}
    sandbox.control("POST", "/clock", {"today": (DAY - datetime.timedelta(days=1)).isoformat()})  # not DAY, whose bills are tested
    try:
        for who, client in clients.items():
            paid = client.pay(out_trade_no=otn, auth_code=codes[who], total_fen=fen[who], subject="门诊缴费")
            assert paid.state is PayState.SUCCESS and paid.paid_fen == fen[who], (who, paid)
    finally:
        sandbox.control("POST", "/clock", {"today": DAY.isoformat()})
    v3 = dict(sandbox.credentials["wechat_v3"]["service_provider"])
    v3.pop("sub_mchids")
    b_v3 = build_clients({"wechat": v3 | {"sub_mchid": sub_b}})[PayChannel.WECHAT]
    assert b_v3.query(otn).paid_fen == 3300  # B's order, through the other API
    refund = clients["a"].refund(out_trade_no=otn, out_refund_no="R" + otn, total_fen=1250, refund_fen=250, reason="x")
    assert refund.state is RefundState.PROCESSING
    same_number = b_v3.refund(out_trade_no=otn, out_refund_no="R" + otn, total_fen=3300, refund_fen=300, reason="x")
    assert same_number.state is RefundState.PROCESSING and same_number.refunded_fen == 300  # B's own refund number space
    assert {who: _balance(sandbox, codes[who]) for who in codes} == {"a": 100_00 - 1000, "b": 100_00 - 3000, "direct": 100_00 - 700}
    assert clients["direct"].query(otn).paid_fen == 700
    owners = [sandbox.control("GET", f"/orders/WECHAT/{otn}/{m}")["total_fen"] for m in (sub_a, sub_b, "-")]
    assert owners == [1250, 3300, 700]


def test_a_sub_merchant_not_bound_to_the_provider_is_refused_and_nothing_moves(sandbox):
    code = _code(sandbox)
    outcome = _provider(sandbox, "1999999999").pay(out_trade_no=_otn(), auth_code=code, total_fen=500, subject="x")
    assert outcome.state is PayState.FAILED and outcome.result_code is ResultCode.MERCHANT_CONFIG
    assert "sub_mch_id" in (outcome.message or "")
    assert _balance(sandbox, code) == 100_00


def test_a_provider_request_without_a_sub_merchant_is_refused(sandbox):
    sp = sandbox.credentials["wechat_service_provider"]
    client = WeChatPayClient(WeChatPayConfig(appid=sp["appid"], mch_id=sp["mch_id"], api_key=sp["api_key"], base_url=sp["base_url"]))
    outcome = client.pay(out_trade_no=_otn(), auth_code=_code(sandbox), total_fen=500, subject="x")
    assert outcome.state is PayState.FAILED and outcome.result_code is ResultCode.MERCHANT_CONFIG


def test_sub_appid_without_sub_mch_id_is_a_configuration_error():
    with pytest.raises(ChannelConfigError, match="sub_appid"):
        WeChatPayConfig(appid="wx1", mch_id="1900000109", api_key="k" * 32, sub_appid="wx2")


def test_each_sub_merchant_is_billed_for_its_own_orders_only(sandbox):
    sub_a, sub_b = sandbox.credentials["wechat_service_provider"]["sub_mch_ids"][:2]
    mine = _otn()
    assert _provider(sandbox, sub_a).pay(out_trade_no=mine, auth_code=_code(sandbox), total_fen=777, subject="x").state is PayState.SUCCESS
    theirs = _otn()
    assert _provider(sandbox, sub_b).pay(out_trade_no=theirs, auth_code=_code(sandbox), total_fen=333, subject="x").state is PayState.SUCCESS
    sandbox.control("POST", "/clock", {"today": (DAY + datetime.timedelta(days=1)).isoformat()})
    try:
        bill_a = _provider(sandbox, sub_a).download_bill(DAY).decode("utf-8")
        bill_b = _provider(sandbox, sub_b).download_bill(DAY).decode("utf-8")
        with pytest.raises(BillDownloadError) as direct:
            _direct(sandbox).download_bill(DAY)  # the direct merchant collected nothing that day
        assert direct.value.no_bill
    finally:
        sandbox.control("POST", "/clock", {"today": DAY.isoformat()})
    assert mine in bill_a and theirs not in bill_a
    assert theirs in bill_b and mine not in bill_b
    row = next(line for line in bill_a.split("\r\n") if mine in line).split(",")
    assert row[2] == "`" + sandbox.credentials["wechat_service_provider"]["mch_id"] and row[3] == "`" + sub_a  # 商户号, 特约商户号
