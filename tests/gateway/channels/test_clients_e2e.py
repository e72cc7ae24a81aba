"""Both channel clients against the real sandbox process: every endpoint and payment-code behaviour.

Each test checks what a cashier or finance would notice: the outcome, and where the patient's money
went (the sandbox account balance, to the fen).
"""

from __future__ import annotations

import time

import pytest

from firmware_sim.sandbox.launcher import SandboxProcess
from protocol.messages import PayChannel, ResultCode
from terminal.channels.base import ChannelClient, PayOutcome, PayState, RefundState, ReverseState
from tests.gateway.channels.conftest import order_no


def _issue(sandbox: SandboxProcess, channel: PayChannel, balance: str = "100.00", behaviour: str = "success") -> str:
    return str(sandbox.issue_code(channel.value, balance, behaviour)["code"])


def _balance(sandbox: SandboxProcess, code: str) -> int:
    return int(sandbox.account(code)["balance_fen"])  # type: ignore[arg-type]


def _query_until(client: ChannelClient, out_trade_no: str, *wanted: PayState, timeout_s: float = 10.0) -> PayOutcome:
    deadline = time.monotonic() + timeout_s
    while True:
        outcome = client.query(out_trade_no)
        if outcome.state in wanted or time.monotonic() > deadline:
            return outcome
        time.sleep(client.query_interval_s)


def test_success_takes_exactly_the_amount(sandbox, clients, channel):
    client, code, otn = clients[channel], _issue(sandbox, channel), order_no()
    outcome = client.pay(out_trade_no=otn, auth_code=code, total_fen=1250, subject="门诊缴费")
    assert outcome.state is PayState.SUCCESS and outcome.paid_fen == 1250 and outcome.channel_txn_id
    assert _balance(sandbox, code) == 100_00 - 1250
    queried = client.query(otn)
    assert (queried.state, queried.channel_txn_id, queried.paid_fen) == (PayState.SUCCESS, outcome.channel_txn_id, 1250)


@pytest.mark.parametrize("balance, behaviour", [("100.00", "insufficient"), ("5.00", "success")])
def test_insufficient_balance_is_declined_and_takes_nothing(sandbox, clients, channel, balance, behaviour):
    client, code = clients[channel], _issue(sandbox, channel, balance, behaviour)
    before = _balance(sandbox, code)
    outcome = client.pay(out_trade_no=order_no(), auth_code=code, total_fen=1250, subject="x")
    assert outcome.state is PayState.FAILED and outcome.result_code is ResultCode.INSUFFICIENT_FUNDS
    assert _balance(sandbox, code) == before


def test_user_paying_then_success_after_n_seconds(sandbox, clients, channel):
    client, code, otn = clients[channel], _issue(sandbox, channel, behaviour="userpaying:1"), order_no()
    assert client.pay(out_trade_no=otn, auth_code=code, total_fen=300, subject="x").state is PayState.USER_PAYING
    assert _balance(sandbox, code) == 100_00  # nothing taken while the patient confirms
    outcome = _query_until(client, otn, PayState.SUCCESS)
    assert outcome.state is PayState.SUCCESS and outcome.paid_fen == 300
    assert _balance(sandbox, code) == 100_00 - 300


def test_user_paying_forever_then_reversed_takes_nothing(sandbox, clients, channel):
    client, code, otn = clients[channel], _issue(sandbox, channel, behaviour="userpaying_forever"), order_no()
    assert client.pay(out_trade_no=otn, auth_code=code, total_fen=300, subject="x").state is PayState.USER_PAYING
    assert client.query(otn).state is PayState.USER_PAYING
    assert client.reverse(otn).state is ReverseState.DONE
    assert client.query(otn).state is PayState.CLOSED
    assert client.reverse(otn).state is ReverseState.DONE  # idempotent
    # A late retry of the same payment is refused: the order is closed.
    assert client.pay(out_trade_no=otn, auth_code=code, total_fen=300, subject="x").state is PayState.CLOSED
    assert _balance(sandbox, code) == 100_00


def test_system_error_is_unknown_and_the_query_finds_the_payment(sandbox, clients, channel):
    client, code, otn = clients[channel], _issue(sandbox, channel, behaviour="systemerror"), order_no()
    assert client.pay(out_trade_no=otn, auth_code=code, total_fen=999, subject="x").state is PayState.UNKNOWN
    outcome = client.query(otn)
    assert outcome.state is PayState.SUCCESS and outcome.paid_fen == 999
    assert _balance(sandbox, code) == 100_00 - 999


def test_system_error_without_payment_queries_not_found_and_reverse_blocks_a_late_payment(sandbox, clients, channel):
    client, code, otn = clients[channel], _issue(sandbox, channel, behaviour="systemerror_unpaid"), order_no()
    assert client.pay(out_trade_no=otn, auth_code=code, total_fen=999, subject="x").state is PayState.UNKNOWN
    assert client.query(otn).state is PayState.NOT_FOUND
    assert client.reverse(otn).state is ReverseState.DONE
    assert client.query(otn).state is PayState.CLOSED
    assert _balance(sandbox, code) == 100_00


def test_slow_reply_times_out_as_unknown_but_the_payment_went_through(sandbox, clients, impatient, channel):
    code, otn = _issue(sandbox, channel, behaviour="slow:3"), order_no()
    outcome = impatient[channel].pay(out_trade_no=otn, auth_code=code, total_fen=420, subject="x")
    assert outcome.state is PayState.UNKNOWN and outcome.channel_code == "http_timeout"
    assert clients[channel].query(otn).state is PayState.SUCCESS
    assert _balance(sandbox, code) == 100_00 - 420


def test_no_reply_is_unknown_and_nothing_was_taken(sandbox, clients, impatient, channel):
    code, otn = _issue(sandbox, channel, behaviour="noreply"), order_no()
    outcome = impatient[channel].pay(out_trade_no=otn, auth_code=code, total_fen=420, subject="x")
    assert outcome.state is PayState.UNKNOWN
    assert clients[channel].query(otn).state is PayState.NOT_FOUND
    assert clients[channel].reverse(otn).state is ReverseState.DONE
    assert _balance(sandbox, code) == 100_00


def test_a_payment_code_pays_once(sandbox, clients, channel):
    client, code = clients[channel], _issue(sandbox, channel)
    first, second = order_no(), order_no()
    assert client.pay(out_trade_no=first, auth_code=code, total_fen=100, subject="x").state is PayState.SUCCESS
    outcome = client.pay(out_trade_no=second, auth_code=code, total_fen=100, subject="x")
    assert outcome.state is PayState.FAILED and outcome.result_code is ResultCode.CODE_INVALID
    assert _balance(sandbox, code) == 100_00 - 100


def test_repeating_a_paid_order_charges_nothing_more(sandbox, clients, channel):
    client, code, otn = clients[channel], _issue(sandbox, channel), order_no()
    paid = client.pay(out_trade_no=otn, auth_code=code, total_fen=100, subject="x")
    again = client.pay(out_trade_no=otn, auth_code=code, total_fen=100, subject="x")
    assert again.state is PayState.UNKNOWN  # ORDERPAID / ACQ.TRADE_HAS_SUCCESS: the query tells
    assert again.channel_code in ("ORDERPAID", "ACQ.TRADE_HAS_SUCCESS")
    assert client.query(otn).channel_txn_id == paid.channel_txn_id
    assert _balance(sandbox, code) == 100_00 - 100


def test_a_code_of_the_other_channel_is_invalid(sandbox, clients):
    wechat_code = _issue(sandbox, PayChannel.WECHAT)
    outcome = clients[PayChannel.ALIPAY].pay(out_trade_no=order_no(), auth_code=wechat_code, total_fen=100, subject="x")
    assert outcome.state is PayState.FAILED and outcome.result_code is ResultCode.CODE_INVALID


def _refund_settled(client: ChannelClient, otn: str, rno: str, fen: int):
    outcome = client.refund(out_trade_no=otn, out_refund_no=rno, total_fen=1000, refund_fen=fen, reason="退费")
    if outcome.state is RefundState.PROCESSING:
        outcome = client.refund_query(out_trade_no=otn, out_refund_no=rno)
    return outcome


def test_full_refund(sandbox, clients, channel):
    client, code, otn = clients[channel], _issue(sandbox, channel), order_no()
    client.pay(out_trade_no=otn, auth_code=code, total_fen=1000, subject="x")
    outcome = _refund_settled(client, otn, otn + "R1", 1000)
    assert outcome.state is RefundState.SUCCESS and outcome.refunded_fen == 1000
    assert _balance(sandbox, code) == 100_00
    more = client.refund(out_trade_no=otn, out_refund_no=otn + "R2", total_fen=1000, refund_fen=1, reason="x")
    assert more.state is RefundState.FAILED and more.result_code is ResultCode.REFUND_EXCEEDS_REMAINING


def test_two_partial_refunds_then_over_refund_refused(sandbox, clients, channel):
    client, code, otn = clients[channel], _issue(sandbox, channel), order_no()
    client.pay(out_trade_no=otn, auth_code=code, total_fen=1000, subject="x")
    assert _refund_settled(client, otn, otn + "A", 300).refunded_fen == 300
    assert _refund_settled(client, otn, otn + "B", 500).refunded_fen == 500
    over = client.refund(out_trade_no=otn, out_refund_no=otn + "C", total_fen=1000, refund_fen=201, reason="x")
    assert over.state is RefundState.FAILED and over.result_code is ResultCode.REFUND_EXCEEDS_REMAINING
    assert _balance(sandbox, code) == 100_00 - 1000 + 800
    # WeChat: REFUNDNOTEXIST; Alipay gives no refund_status, which is never final (issue 17).
    assert client.refund_query(out_trade_no=otn, out_refund_no=otn + "C").state in (RefundState.NOT_FOUND, RefundState.UNCONFIRMED)


def test_refund_is_idempotent_by_refund_number(sandbox, clients, channel):
    client, code, otn = clients[channel], _issue(sandbox, channel), order_no()
    client.pay(out_trade_no=otn, auth_code=code, total_fen=1000, subject="x")
    first = _refund_settled(client, otn, otn + "R", 400)
    again = client.refund(out_trade_no=otn, out_refund_no=otn + "R", total_fen=1000, refund_fen=400, reason="x")
    assert again.state in (RefundState.PROCESSING, RefundState.SUCCESS)
    assert client.refund_query(out_trade_no=otn, out_refund_no=otn + "R").refunded_fen == first.refunded_fen == 400
    assert _balance(sandbox, code) == 100_00 - 1000 + 400  # moved once
    # The same number with another amount is not a new refund: unknown until queried.
    other = client.refund(out_trade_no=otn, out_refund_no=otn + "R", total_fen=1000, refund_fen=500, reason="x")
    assert other.state is RefundState.UNKNOWN
    assert _balance(sandbox, code) == 100_00 - 1000 + 400


def test_refund_of_an_order_never_paid(sandbox, clients, channel):
    outcome = clients[channel].refund(out_trade_no=order_no(), out_refund_no="R1", total_fen=1000, refund_fen=100, reason="x")
    assert outcome.state is RefundState.FAILED and outcome.result_code is ResultCode.ORDER_NOT_PAID


def test_reverse_of_a_paid_order_gives_the_money_back(sandbox, clients, channel):
    client, code, otn = clients[channel], _issue(sandbox, channel), order_no()
    client.pay(out_trade_no=otn, auth_code=code, total_fen=700, subject="x")
    client.refund(out_trade_no=otn, out_refund_no=otn + "R", total_fen=700, refund_fen=200, reason="x")
    assert client.reverse(otn).state is ReverseState.DONE
    assert client.query(otn).state is PayState.CLOSED
    assert _balance(sandbox, code) == 100_00


@pytest.mark.parametrize("fault", ["corrupt", "missing", "tamper"])
def test_a_badly_signed_reply_is_never_believed(sandbox, clients, channel, fault):
    client, code, otn = clients[channel], _issue(sandbox, channel), order_no()
    sandbox.control("POST", "/faults", {"channel": channel.value, "reply_signature": fault})
    try:
        outcome = client.pay(out_trade_no=otn, auth_code=code, total_fen=100, subject="x")
        refund = client.refund(out_trade_no=otn, out_refund_no=otn + "R", total_fen=100, refund_fen=50, reason="x")
    finally:
        sandbox.control("POST", "/faults", {"channel": "ALL", "reply_signature": "ok"})
    # Not believed, and not "failed" either: the channel did act (it needs a person, issue 17).
    assert outcome.state is PayState.UNVERIFIED and outcome.channel_code == "bad_signature"
    assert refund.state is RefundState.UNVERIFIED
    # The payment did happen at the channel: a trustworthy query now says so.
    assert client.query(otn).state is PayState.SUCCESS


def test_a_request_signed_with_the_wrong_key_charges_nothing(sandbox, channel):
    from gateway.channels import build_clients, settings_from_sandbox

    settings = settings_from_sandbox(sandbox.credentials_path)
    if channel is PayChannel.WECHAT:
        settings["wechat"]["api_key"] = "0" * 32
    else:
        settings["alipay"]["private_key_pem"] = settings["alipay"]["private_key_pem"].replace("app_private", "alipay_private")  # type: ignore[union-attr]
    client = build_clients(settings)[channel]
    code = _issue(sandbox, channel)
    outcome = client.pay(out_trade_no=order_no(), auth_code=code, total_fen=100, subject="x")
    # WeChat return_code FAIL 签名错误 / Alipay 40002 isv.invalid-signature: rejected, not processed.
    assert outcome.state is PayState.FAILED and outcome.result_code is ResultCode.MERCHANT_CONFIG
    assert "签名错误" in (outcome.message or "") or "isv.invalid-signature" in (outcome.message or "")
    assert _balance(sandbox, code) == 100_00
