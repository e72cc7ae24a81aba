"""The WeChat Pay APIv3 code-payment client against the real sandbox (direct merchant and service
provider; platform public key and platform certificate), and the sandbox driven by the wechatpayv3
SDK itself, so that neither side only agrees with itself."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from firmware_sim.sandbox.launcher import SandboxProcess
from gateway.channels import build_clients
from gateway.channels.errors import ChannelConfigError
from gateway.channels.wechat import WeChatPayClient, WeChatPayConfig
from gateway.channels.wechat_v3 import WeChatPayV3Client, WeChatPayV3Config
from protocol.messages import PayChannel, ResultCode
from terminal.channels.base import PayState, RefundState, ReverseState


def _otn() -> str:
    return "V3" + uuid.uuid4().hex[:20]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    with SandboxProcess(str(tmp_path_factory.mktemp("wechat-v3"))) as process:
        yield process


def _settings(sandbox, who: str = "direct", **extra) -> dict:
    settings = dict(sandbox.credentials["wechat_v3"][who])
    settings.pop("sub_mchids", None)
    if who == "service_provider":
        settings["sub_mchid"] = sandbox.credentials["wechat_v3"]["service_provider"]["sub_mchids"][0]
    settings.pop("platform_certificate_pem" if "cert" not in extra.pop("mode", "public_key") else "platform_public_key_pem")
    if "platform_public_key_pem" not in settings:
        settings.pop("platform_public_key_id")
    return settings | extra


def _client(sandbox: SandboxProcess, who: str = "direct", **extra) -> WeChatPayV3Client:
    client = build_clients({"wechat": _settings(sandbox, who, **extra)})[PayChannel.WECHAT]
    assert isinstance(client, WeChatPayV3Client)
    return client


def _code(sandbox: SandboxProcess, balance: str = "100.00", behaviour: str = "success") -> str:
    return str(sandbox.issue_code("WECHAT", balance, behaviour)["code"])


def _balance(sandbox: SandboxProcess, code: str) -> int:
    return int(sandbox.account(code)["balance_fen"])


@pytest.mark.parametrize("who", ["direct", "service_provider"])
@pytest.mark.parametrize("mode", ["public_key", "certificate"])
def test_collect_query_refund_and_reverse(sandbox, who, mode) -> None:
    client, code, otn = _client(sandbox, who, mode=mode), _code(sandbox), _otn()
    paid = client.pay(out_trade_no=otn, auth_code=code, total_fen=1250, subject="门诊缴费", terminal_id="T0001")
    assert (paid.state, paid.paid_fen) == (PayState.SUCCESS, 1250) and paid.channel_txn_id
    assert _balance(sandbox, code) == 100_00 - 1250
    queried = client.query(otn)
    assert (queried.state, queried.channel_txn_id, queried.paid_fen) == (PayState.SUCCESS, paid.channel_txn_id, 1250)
    refund = client.refund(out_trade_no=otn, out_refund_no="R" + otn, total_fen=1250, refund_fen=250, reason="退费")
    assert refund.state is RefundState.PROCESSING and refund.channel_refund_id
    done = client.refund_query(out_trade_no=otn, out_refund_no="R" + otn)
    assert (done.state, done.refunded_fen) == (RefundState.SUCCESS, 250)
    again = client.refund(out_trade_no=otn, out_refund_no="R" + otn, total_fen=1250, refund_fen=250, reason="退费")
    assert again.channel_refund_id == refund.channel_refund_id  # the same refund, not a second one
    too_much = client.refund(out_trade_no=otn, out_refund_no="S" + otn, total_fen=1250, refund_fen=1001, reason="x")
    assert too_much.state is RefundState.FAILED and too_much.result_code is ResultCode.REFUND_EXCEEDS_REMAINING
    assert client.reverse(otn).state is ReverseState.DONE
    assert client.query(otn).state is PayState.CLOSED
    assert _balance(sandbox, code) == 100_00


def test_declines_user_paying_and_not_found(sandbox) -> None:
    client = _client(sandbox)
    poor = _code(sandbox, "1.00")
    declined = client.pay(out_trade_no=_otn(), auth_code=poor, total_fen=500, subject="x")
    assert (declined.state, declined.result_code) == (PayState.FAILED, ResultCode.INSUFFICIENT_FUNDS)
    otn, waiting = _otn(), _code(sandbox, behaviour="userpaying_forever")
    assert client.pay(out_trade_no=otn, auth_code=waiting, total_fen=300, subject="x").state is PayState.USER_PAYING
    assert client.query(otn).state is PayState.USER_PAYING
    assert client.reverse(otn).state is ReverseState.DONE
    assert client.query(otn).state is PayState.CLOSED
    assert client.query(_otn()).state is PayState.NOT_FOUND
    assert client.refund_query(out_trade_no=otn, out_refund_no="NOPE" + otn).state is RefundState.NOT_FOUND
    used = client.pay(out_trade_no=_otn(), auth_code=poor, total_fen=50, subject="x")  # declined code is still good once
    assert used.state is PayState.SUCCESS


def test_one_account_two_apis(sandbox) -> None:
    """v2 and v3 are two doors to one merchant account: an order paid through v2 is seen through v3."""
    otn = _otn()
    v2 = WeChatPayClient(WeChatPayConfig(**sandbox.credentials["channels"]["wechat"]))
    assert v2.pay(out_trade_no=otn, auth_code=_code(sandbox), total_fen=880, subject="x").state is PayState.SUCCESS
    assert _client(sandbox).query(otn).paid_fen == 880


def test_a_sub_merchant_not_bound_to_the_provider_is_refused(sandbox) -> None:
    code = _code(sandbox)
    outcome = _client(sandbox, "service_provider", sub_mchid="1999999999").pay(out_trade_no=_otn(), auth_code=code, total_fen=500, subject="x")
    assert (outcome.state, outcome.result_code) == (PayState.FAILED, ResultCode.MERCHANT_CONFIG)
    assert "NO_AUTH" in (outcome.message or "")
    assert _balance(sandbox, code) == 100_00


def test_a_wrong_merchant_key_is_rejected_before_anything_moves(sandbox, tmp_path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    code = _code(sandbox)
    outcome = _client(sandbox, private_key_pem=pem).pay(out_trade_no=_otn(), auth_code=code, total_fen=500, subject="x")
    assert (outcome.state, outcome.result_code) == (PayState.FAILED, ResultCode.MERCHANT_CONFIG)
    assert "SIGN_ERROR" in (outcome.message or "")
    assert _balance(sandbox, code) == 100_00


def test_a_reply_with_a_bad_signature_or_an_unknown_platform_key_needs_a_person(sandbox) -> None:
    """The channel processed the request (the money moved) but its reply cannot be verified: the
    outcome is UNVERIFIED, never success nor failure (issue 17: needs a person)."""
    code, otn = _code(sandbox), _otn()
    other_key_id = "PUB_KEY_ID_0199999999999999999999999999999999"
    unknown_key = _client(sandbox, platform_public_key_id=other_key_id)
    outcome = unknown_key.pay(out_trade_no=otn, auth_code=code, total_fen=500, subject="x")
    assert outcome.state is PayState.UNVERIFIED and "platform key" in (outcome.message or "")
    assert _balance(sandbox, code) == 100_00 - 500  # it did go through
    sandbox.control("POST", "/faults", {"channel": "WECHAT", "reply_signature": "corrupt"})
    try:
        assert _client(sandbox).query(otn).state is PayState.UNVERIFIED
    finally:
        sandbox.control("POST", "/faults", {"channel": "WECHAT", "reply_signature": "ok"})
    sandbox.control("POST", "/faults", {"channel": "WECHAT", "reply_signature": "missing"})
    try:
        assert _client(sandbox).reverse(otn).state is ReverseState.UNVERIFIED
    finally:
        sandbox.control("POST", "/faults", {"channel": "WECHAT", "reply_signature": "ok"})


def test_a_signed_reply_from_another_time_is_not_believed(sandbox) -> None:
    """A reply signed 200 s away from our clock, with a 100 s tolerance: not believed (an old signed
    reply replayed, or a clock to fix). The request itself is within the sandbox's 5 minutes, so the
    payment did go through: the outcome needs a person, it is not a failure."""
    import time

    skewed = WeChatPayV3Client(WeChatPayV3Config(**_settings(sandbox), reply_max_skew_s=100), clock=lambda: time.time() + 200)
    code, otn = _code(sandbox), _otn()
    outcome = skewed.pay(out_trade_no=otn, auth_code=code, total_fen=100, subject="x")
    assert outcome.state is PayState.UNVERIFIED and "clock" in (outcome.message or "")
    assert _balance(sandbox, code) == 100_00 - 100


def test_configuration_mistakes_are_named() -> None:
    base: dict[str, Any] = dict(appid="wx1", mchid="1900000109", merchant_serial_no="AB",
                                private_key_pem="-----BEGIN PRIVATE KEY-----\n", apiv3_key="k" * 32)
    # No platform key in the settings is a valid configuration now: the gateway downloads the platform
    # certificates; a client with nowhere to keep them refuses (test_wechat_v3_rotation.py).
    assert WeChatPayV3Config(**base).platform_certificate_pem is None
    with pytest.raises(ChannelConfigError, match="apiv3_key"):
        WeChatPayV3Config(**(base | {"apiv3_key": "short", "platform_certificate_pem": "x"}))
    with pytest.raises(ChannelConfigError, match="api_version"):
        build_clients({"wechat": base | {"api_version": "v4"}})


# --- the wechatpayv3 SDK against the sandbox -------------------------------------------------------

def _sdk(sandbox, who: str = "direct"):
    from wechatpayv3 import WeChatPay, WeChatPayType

    creds = sandbox.credentials["wechat_v3"][who]
    pay = WeChatPay(wechatpay_type=WeChatPayType.CODEPAY, mchid=creds["mchid"], private_key=Path(creds["private_key_pem"]).read_text(),
                    cert_serial_no=creds["merchant_serial_no"], appid=creds["appid"], apiv3_key=creds["apiv3_key"],
                    public_key=Path(creds["platform_public_key_pem"]).read_text(), public_key_id=creds["platform_public_key_id"],
                    partner_mode=who == "service_provider", timeout=(5, 10))
    pay._core._gate_way = sandbox.url  # the SDK's production host, pointed at the sandbox
    return pay, creds


@pytest.mark.parametrize("who", ["direct", "service_provider"])
def test_the_sdk_pays_queries_and_refunds_on_the_sandbox(sandbox, who) -> None:
    """The SDK signs its requests (the sandbox verifies them) and verifies the sandbox's replies with
    the platform public key (it raises when one does not verify)."""
    import json

    from wechatpayv3 import WeChatPayType

    pay, creds = _sdk(sandbox, who)
    sub = {"sub_mchid": creds["sub_mchids"][0]} if who == "service_provider" else {}
    code, otn = _code(sandbox), _otn()
    status, text = pay.pay(description="门诊缴费", out_trade_no=otn, amount={"total": 990, "currency": "CNY"},
                           payer={"auth_code": code}, scene_info={"store_info": {"out_id": "S1"}}, pay_type=WeChatPayType.CODEPAY, **sub)
    assert status == 200 and json.loads(text)["trade_state"] == "SUCCESS"
    status, text = pay.query(out_trade_no=otn, **sub)
    assert status == 200 and json.loads(text)["amount"]["total"] == 990
    status, text = pay.refund(out_refund_no="R" + otn, amount={"refund": 90, "total": 990, "currency": "CNY"}, out_trade_no=otn, **sub)
    assert status == 200 and json.loads(text)["status"] == "PROCESSING"
    status, text = pay.query_refund(out_refund_no="R" + otn, **sub)
    assert status == 200 and json.loads(text)["status"] == "SUCCESS"
    status, _ = pay.codepay_reverse(out_trade_no=otn, **sub)
    assert status == 200
    assert _balance(sandbox, code) == 100_00
    # Our own client sees the same order, so both speak the same protocol to the same account.
    assert _client(sandbox, who).query(otn).state is PayState.CLOSED


def test_the_sdk_refuses_a_corrupted_reply_signature_as_we_do(sandbox) -> None:
    pay, _ = _sdk(sandbox)
    otn = _otn()
    assert _client(sandbox).pay(out_trade_no=otn, auth_code=_code(sandbox), total_fen=100, subject="x").state is PayState.SUCCESS
    sandbox.control("POST", "/faults", {"channel": "WECHAT", "reply_signature": "corrupt"})
    try:
        with pytest.raises(Exception, match="verify the signature"):
            pay.query(out_trade_no=otn)
        assert _client(sandbox).query(otn).state is PayState.UNVERIFIED
    finally:
        sandbox.control("POST", "/faults", {"channel": "WECHAT", "reply_signature": "ok"})


def test_the_trade_bill_of_a_sub_merchant_downloads_and_matches_its_hash(sandbox) -> None:
    import datetime

    sub = sandbox.credentials["wechat_v3"]["service_provider"]["sub_mchids"][1]
    client, otn = _client(sandbox, "service_provider", sub_mchid=sub), _otn()
    assert client.pay(out_trade_no=otn, auth_code=_code(sandbox), total_fen=4321, subject="x").state is PayState.SUCCESS
    today = datetime.date.fromisoformat(str(sandbox.control("GET", "/clock")["today"]))
    sandbox.control("POST", "/clock", {"today": (today + datetime.timedelta(days=1)).isoformat()})
    try:
        text = client.download_bill(today).decode("utf-8")
        from gateway.channels.errors import BillDownloadError

        with pytest.raises(BillDownloadError) as none:
            client.download_bill(today - datetime.timedelta(days=3))
        assert none.value.no_bill
    finally:
        sandbox.control("POST", "/clock", {"today": None})
    rows = [line.split(",") for line in text.split("\r\n") if otn in line]
    assert len(rows) == 1 and rows[0][3] == "`" + sub and "`43.21" in rows[0]
