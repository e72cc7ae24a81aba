"""Issue 17, finding 1 and 2-4 at the channel clients: every outcome is final, retryable or needs a
person, and the two kinds of configuration failure are told apart (real HTTP to the sandbox).

- The channel REJECTS our request (WeChat return_code FAIL for a wrong API key; Alipay
  isv.invalid-signature for a wrong app key, isv.invalid-app-id): nothing moved, so a payment or a
  refund is FAILED `merchant_config`; a query or a reverse learnt nothing, so it is retryable.
- We CANNOT VERIFY the channel's reply (a wrong Alipay public key, a platform key that is not the
  channel's): the channel did act, so it is UNVERIFIED and needs a person, never "failed".
"""

from __future__ import annotations

from pathlib import Path

import pytest
from Crypto.PublicKey import RSA

from firmware_sim.sandbox.launcher import SandboxProcess
from gateway.channels import build_clients, settings_from_sandbox
from protocol.messages import PayChannel, ResultCode
from terminal.channels.base import (MERCHANT_CONFIG, Disposition, PayState, RefundState, ReverseState, disposition)
from tests.gateway.channels.conftest import FAST, order_no


def _issue(sandbox: SandboxProcess, channel: PayChannel, behaviour: str = "success") -> str:
    return str(sandbox.issue_code(channel.value, "100.00", behaviour)["code"])


def _balance(sandbox: SandboxProcess, code: str) -> int:
    return int(sandbox.account(code)["balance_fen"])  # type: ignore[arg-type]


def _client(sandbox: SandboxProcess, channel: PayChannel, **changes: str):
    settings = settings_from_sandbox(sandbox.credentials_path, wechat=FAST, alipay=FAST)
    section = "wechat" if channel is PayChannel.WECHAT else "alipay"
    settings[section].update(changes)
    return build_clients(settings)[channel]


def _other_public_key(sandbox: SandboxProcess) -> str:
    """A well-formed public key that is not Alipay's: the app's own (a classic copy-paste mistake)."""
    settings = settings_from_sandbox(sandbox.credentials_path)
    path = Path(str(settings["alipay"]["private_key_pem"]))
    return RSA.import_key(path.read_text()).public_key().export_key().decode()


@pytest.fixture
def rejecting(sandbox, channel):
    """A client whose requests the channel rejects: wrong WeChat API key / wrong Alipay app key."""
    if channel is PayChannel.WECHAT:
        return _client(sandbox, channel, api_key="0" * 32)
    settings = settings_from_sandbox(sandbox.credentials_path)
    return _client(sandbox, channel, private_key_pem=str(settings["alipay"]["private_key_pem"]).replace("app_private", "alipay_private"))


def test_a_rejected_payment_is_final_with_a_configuration_code_and_takes_nothing(sandbox, clients, rejecting, channel):
    code = _issue(sandbox, channel)
    outcome = rejecting.pay(out_trade_no=order_no(), auth_code=code, total_fen=100, subject="x")
    assert (outcome.state, outcome.result_code, outcome.channel_code) == (PayState.FAILED, ResultCode.MERCHANT_CONFIG, MERCHANT_CONFIG)
    assert disposition(outcome) is Disposition.FINAL
    assert outcome.message and ("签名错误" in outcome.message or "验签" in outcome.message)
    assert _balance(sandbox, code) == 100_00


def test_a_rejected_refund_is_final_and_refunds_nothing(sandbox, clients, rejecting, channel):
    code, otn = _issue(sandbox, channel), order_no()
    assert clients[channel].pay(out_trade_no=otn, auth_code=code, total_fen=300, subject="x").state is PayState.SUCCESS
    refund = rejecting.refund(out_trade_no=otn, out_refund_no=otn + "R1", total_fen=300, refund_fen=100, reason="x")
    assert (refund.state, refund.result_code) == (RefundState.FAILED, ResultCode.MERCHANT_CONFIG)
    assert _balance(sandbox, code) == 100_00 - 300


def test_a_rejected_query_or_reverse_learns_nothing_so_it_is_retryable(sandbox, clients, rejecting, channel):
    code, otn = _issue(sandbox, channel), order_no()
    assert clients[channel].pay(out_trade_no=otn, auth_code=code, total_fen=300, subject="x").state is PayState.SUCCESS
    query = rejecting.query(otn)
    reverse = rejecting.reverse(otn)
    refund_query = rejecting.refund_query(out_trade_no=otn, out_refund_no=otn + "R9")
    assert (query.state, query.channel_code) == (PayState.UNKNOWN, MERCHANT_CONFIG)
    assert (reverse.state, reverse.channel_code) == (ReverseState.UNKNOWN, MERCHANT_CONFIG)
    assert (refund_query.state, refund_query.channel_code) == (RefundState.UNKNOWN, MERCHANT_CONFIG)
    assert {disposition(o) for o in (query, reverse, refund_query)} == {Disposition.RETRYABLE}
    assert _balance(sandbox, code) == 100_00 - 300  # the rejected reverse moved nothing


def test_an_invalid_alipay_app_id_is_rejected_as_configuration(sandbox):
    client = _client(sandbox, PayChannel.ALIPAY, app_id="2021000000000000")
    code = _issue(sandbox, PayChannel.ALIPAY)
    outcome = client.pay(out_trade_no=order_no(), auth_code=code, total_fen=100, subject="x")
    assert (outcome.state, outcome.result_code) == (PayState.FAILED, ResultCode.MERCHANT_CONFIG)
    assert "isv.invalid-app-id" in (outcome.message or "")
    assert _balance(sandbox, code) == 100_00


def test_an_unverifiable_reply_is_not_failed_the_channel_did_act(sandbox, clients):
    client = _client(sandbox, PayChannel.ALIPAY, alipay_public_key_pem=_other_public_key(sandbox))
    code, otn = _issue(sandbox, PayChannel.ALIPAY), order_no()
    outcome = client.pay(out_trade_no=otn, auth_code=code, total_fen=500, subject="x")
    assert outcome.state is PayState.UNVERIFIED and disposition(outcome) is Disposition.NEEDS_PERSON
    assert _balance(sandbox, code) == 100_00 - 500  # Alipay took the money: "failed" would be a lie
    refund = client.refund(out_trade_no=otn, out_refund_no=otn + "R1", total_fen=500, refund_fen=200, reason="x")
    assert refund.state is RefundState.UNVERIFIED and disposition(refund) is Disposition.NEEDS_PERSON
    assert client.reverse(otn).state is ReverseState.UNVERIFIED
    assert client.query(otn).state is PayState.UNVERIFIED
    assert clients[PayChannel.ALIPAY].refund_query(out_trade_no=otn, out_refund_no=otn + "R1").state is RefundState.SUCCESS


def test_alipay_refund_query_without_refund_status_is_not_final_either_way(sandbox, clients):
    client, code, otn = clients[PayChannel.ALIPAY], _issue(sandbox, PayChannel.ALIPAY), order_no()
    assert client.pay(out_trade_no=otn, auth_code=code, total_fen=1000, subject="x").state is PayState.SUCCESS
    assert client.refund(out_trade_no=otn, out_refund_no=otn + "R1", total_fen=1000, refund_fen=400, reason="x").state is RefundState.SUCCESS
    sandbox.control("POST", "/scripts", {"channel": "ALIPAY", "out_trade_no": otn, "answer": "alipay_refund_status_missing"})
    unsure = client.refund_query(out_trade_no=otn, out_refund_no=otn + "R1")
    assert unsure.state is RefundState.UNCONFIRMED and unsure.channel_code == "no_refund_status"
    assert disposition(unsure) is Disposition.RETRYABLE  # never REFUNDED, never "no such refund"
    again = client.refund_query(out_trade_no=otn, out_refund_no=otn + "R1")  # the same out_request_no
    assert (again.state, again.refunded_fen) == (RefundState.SUCCESS, 400)


def test_alipay_refund_query_of_a_refund_never_made_is_not_final_either(sandbox, clients):
    """Alipay: no refund_status means "not received, or failed" and an early query can miss a
    refund that succeeds later; a wrong REFUND_FAILED would invite HIS to refund twice."""
    client, code, otn = clients[PayChannel.ALIPAY], _issue(sandbox, PayChannel.ALIPAY), order_no()
    assert client.pay(out_trade_no=otn, auth_code=code, total_fen=1000, subject="x").state is PayState.SUCCESS
    unsure = client.refund_query(out_trade_no=otn, out_refund_no=otn + "R7")
    assert unsure.state is RefundState.UNCONFIRMED and disposition(unsure) is Disposition.RETRYABLE


@pytest.mark.parametrize("status, state, kind", [("PROCESSING", RefundState.PROCESSING, Disposition.RETRYABLE),
                                                  ("CHANGE", RefundState.ABNORMAL, Disposition.NEEDS_PERSON),
                                                  ("REFUNDCLOSE", RefundState.FAILED, Disposition.FINAL)])
def test_wechat_refund_statuses_are_classified(sandbox, clients, status, state, kind):
    client, code, otn = clients[PayChannel.WECHAT], _issue(sandbox, PayChannel.WECHAT), order_no()
    assert client.pay(out_trade_no=otn, auth_code=code, total_fen=1000, subject="x").state is PayState.SUCCESS
    sandbox.control("POST", "/scripts", {"channel": "WECHAT", "out_trade_no": otn, "answer": "wechat_refund_status", "value": status})
    client.refund(out_trade_no=otn, out_refund_no=otn + "R1", total_fen=1000, refund_fen=300, reason="x")
    outcome = client.refund_query(out_trade_no=otn, out_refund_no=otn + "R1")
    assert outcome.state is state and disposition(outcome) is kind


def test_reverse_recall_and_alipay_retry_flag_are_retryable(sandbox, clients, channel):
    client, code, otn = clients[channel], _issue(sandbox, channel), order_no()
    assert client.pay(out_trade_no=otn, auth_code=code, total_fen=1000, subject="x").state is PayState.SUCCESS
    answer = "wechat_reverse_recall" if channel is PayChannel.WECHAT else "alipay_cancel_retry"
    sandbox.control("POST", "/scripts", {"channel": channel.value, "out_trade_no": otn, "answer": answer})
    first = client.reverse(otn)
    assert first.state is ReverseState.RETRY and disposition(first) is Disposition.RETRYABLE
    assert _balance(sandbox, code) == 100_00 - 1000
    assert client.reverse(otn).state is ReverseState.DONE
    assert _balance(sandbox, code) == 100_00


def test_the_channels_clients_say_how_long_before_a_reverse(clients):
    assert clients[PayChannel.WECHAT].reverse_not_before_s == 15.0  # WeChat Pay's POS guide
    assert clients[PayChannel.ALIPAY].reverse_not_before_s == 0.0
