"""Channel codes -> outcomes: the documented codes, and nothing surprising for anything else."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.messages import ResultCode
from gateway.channels import alipay_outcomes as ali
from gateway.channels import wechat_outcomes as wx
from terminal.channels.base import PayState, RefundState, ReverseState

OTN = "ORDER0001"


def _wx_fail(code: str, **extra: str) -> dict[str, str]:
    return {"result_code": "FAIL", "err_code": code, "err_code_des": "…", **extra}


@pytest.mark.parametrize("code, state, result", [
    ("USERPAYING", PayState.USER_PAYING, None),
    ("SYSTEMERROR", PayState.UNKNOWN, None),
    ("BANKERROR", PayState.UNKNOWN, None),
    ("ORDERPAID", PayState.UNKNOWN, None),
    ("NOTENOUGH", PayState.FAILED, ResultCode.INSUFFICIENT_FUNDS),
    ("AUTHCODEEXPIRE", PayState.FAILED, ResultCode.CODE_INVALID),
    ("AUTH_CODE_INVALID", PayState.FAILED, ResultCode.CODE_INVALID),
    ("ORDERCLOSED", PayState.CLOSED, ResultCode.CHANNEL_ERROR),
    ("ORDERREVERSED", PayState.CLOSED, ResultCode.CHANNEL_ERROR),
    ("NOTSUPORTCARD", PayState.FAILED, ResultCode.DECLINED),
    ("A_CODE_FROM_THE_FUTURE", PayState.UNKNOWN, None),
])
def test_wechat_micropay_codes(code, state, result):
    outcome = wx.pay_outcome(_wx_fail(code), OTN)
    assert (outcome.state, outcome.result_code) == (state, result)


def test_wechat_success_needs_the_order_the_transaction_and_the_amount():
    paid = {"result_code": "SUCCESS", "out_trade_no": OTN, "transaction_id": "4200", "total_fee": "1250"}
    assert wx.pay_outcome(paid, OTN).paid_fen == 1250
    assert wx.pay_outcome({**paid, "out_trade_no": "OTHER0001"}, OTN).state is PayState.UNKNOWN
    assert wx.pay_outcome({**paid, "total_fee": "12.50"}, OTN).state is PayState.UNKNOWN
    assert wx.pay_outcome({**paid, "total_fee": "-1"}, OTN).state is PayState.UNKNOWN
    assert wx.pay_outcome({k: v for k, v in paid.items() if k != "transaction_id"}, OTN).state is PayState.UNKNOWN


@pytest.mark.parametrize("trade_state, state", [
    ("SUCCESS", PayState.SUCCESS), ("REFUND", PayState.SUCCESS), ("USERPAYING", PayState.USER_PAYING),
    ("NOTPAY", PayState.USER_PAYING), ("PAYERROR", PayState.FAILED), ("CLOSED", PayState.CLOSED),
    ("REVOKED", PayState.CLOSED), ("SOMETHING_NEW", PayState.UNKNOWN),
])
def test_wechat_trade_states(trade_state, state):
    fields = {"result_code": "SUCCESS", "out_trade_no": OTN, "transaction_id": "4200", "total_fee": "1", "trade_state": trade_state}
    assert wx.query_outcome(fields, OTN).state is state


def test_wechat_reverse_and_refund_codes():
    assert wx.reverse_outcome({"result_code": "SUCCESS", "recall": "N"}).state is ReverseState.DONE
    assert wx.reverse_outcome(_wx_fail("SYSTEMERROR", recall="Y")).state is ReverseState.RETRY
    assert wx.reverse_outcome(_wx_fail("REVERSE_EXPIRE")).state is ReverseState.FAILED
    assert wx.reverse_outcome(_wx_fail("SYSTEMERROR")).state is ReverseState.UNKNOWN
    assert wx.refund_outcome(_wx_fail("SYSTEMERROR"), OTN, "R1").state is RefundState.UNKNOWN
    assert wx.refund_outcome(_wx_fail("REFUND_FEE_MISMATCH"), OTN, "R1").state is RefundState.UNKNOWN
    exceeds = wx.refund_outcome({**_wx_fail("INVALID_REQUEST"), "err_code_des": "refund_fee大于可退金额"}, OTN, "R1")
    assert exceeds.result_code is ResultCode.REFUND_EXCEEDS_REMAINING
    assert wx.refund_outcome(_wx_fail("ORDERNOTEXIST"), OTN, "R1").result_code is ResultCode.ORDER_NOT_PAID
    assert wx.refund_outcome(_wx_fail("SOMETHING_NEW"), OTN, "R1").state is RefundState.UNKNOWN
    query = {"result_code": "SUCCESS", "out_trade_no": OTN, "refund_count": "2", "out_refund_no_0": "R0", "refund_status_0": "SUCCESS",
             "refund_id_0": "1", "refund_fee_0": "5", "out_refund_no_1": "R1", "refund_status_1": "CHANGE", "refund_fee_1": "5"}
    assert wx.refund_query_outcome(query, OTN, "R0").state is RefundState.SUCCESS
    assert wx.refund_query_outcome(query, OTN, "R1").state is RefundState.ABNORMAL  # CHANGE: a person resolves it
    assert wx.refund_query_outcome(query, OTN, "R2").state is RefundState.NOT_FOUND


def _ali(code: str, sub: str = "", **extra: object) -> dict[str, object]:
    return {"code": code, "msg": "m", **({"sub_code": sub, "sub_msg": "s"} if sub else {}), **extra}


@pytest.mark.parametrize("node, state, result", [
    (_ali("10003"), PayState.USER_PAYING, None),
    (_ali("20000", "isp.unknow-error"), PayState.UNKNOWN, None),
    (_ali("40004", "ACQ.SYSTEM_ERROR"), PayState.UNKNOWN, None),
    (_ali("40004", "ACQ.TRADE_HAS_SUCCESS"), PayState.UNKNOWN, None),
    (_ali("40004", "ACQ.PAYMENT_AUTH_CODE_INVALID"), PayState.FAILED, ResultCode.CODE_INVALID),
    (_ali("40004", "ACQ.BUYER_BALANCE_NOT_ENOUGH"), PayState.FAILED, ResultCode.INSUFFICIENT_FUNDS),
    (_ali("40004", "ACQ.TRADE_HAS_CLOSE"), PayState.CLOSED, ResultCode.CHANNEL_ERROR),
    (_ali("40004", "ACQ.BUYER_ENABLE_STATUS_FORBID"), PayState.FAILED, ResultCode.DECLINED),
    (_ali("99999"), PayState.UNKNOWN, None),
])
def test_alipay_pay_codes(node, state, result):
    outcome = ali.pay_outcome(node, OTN)
    assert (outcome.state, outcome.result_code) == (state, result)


def test_alipay_amounts_go_through_the_strict_yuan_parser():
    paid = _ali("10000", out_trade_no=OTN, trade_no="2024", total_amount="12.50")
    assert ali.pay_outcome(paid, OTN).paid_fen == 1250
    for bad in ("12.5", "1e3", "-1.00", 12.5, "１２.５０"):
        assert ali.pay_outcome({**paid, "total_amount": bad}, OTN).state is PayState.UNKNOWN


def test_alipay_query_cancel_and_refund_codes():
    base = _ali("10000", out_trade_no=OTN, trade_no="2024", total_amount="1.00")
    assert ali.query_outcome({**base, "trade_status": "WAIT_BUYER_PAY"}, OTN).state is PayState.USER_PAYING
    assert ali.query_outcome({**base, "trade_status": "TRADE_FINISHED"}, OTN).state is PayState.SUCCESS
    assert ali.query_outcome({**base, "trade_status": "TRADE_CLOSED"}, OTN).state is PayState.CLOSED
    assert ali.query_outcome(_ali("40004", "ACQ.TRADE_NOT_EXIST"), OTN).state is PayState.NOT_FOUND
    assert ali.cancel_outcome(_ali("10000", retry_flag="N", action="close")).state is ReverseState.DONE
    assert ali.cancel_outcome(_ali("40004", "ACQ.SYSTEM_ERROR", retry_flag="Y")).state is ReverseState.RETRY
    assert ali.cancel_outcome(_ali("40004", "ACQ.TRADE_CANCEL_TIME_OUT", retry_flag="N")).state is ReverseState.FAILED
    refund = _ali("10000", out_trade_no=OTN, trade_no="2024", refund_fee="3.00")
    assert ali.refund_outcome({**refund, "fund_change": "Y"}, OTN, 100, "R1").refunded_fen == 100
    assert ali.refund_outcome({**refund, "fund_change": "Y"}, OTN, 100, "R1").channel_refund_id == "R1"  # not trade_no
    assert ali.refund_outcome({**refund, "fund_change": "N"}, OTN, 100, "R1").state is RefundState.PROCESSING
    assert ali.refund_outcome(_ali("40004", "ACQ.REASON_TRADE_REFUND_FEE_ERR"), OTN, 1, "R1").result_code is ResultCode.REFUND_EXCEEDS_REMAINING
    assert ali.refund_outcome(_ali("40004", "ACQ.DISCORDANT_REPEAT_REQUEST"), OTN, 1, "R1").state is RefundState.UNKNOWN
    # No refund_status: not final either way (the client queries again, then a person decides).
    assert ali.refund_query_outcome(_ali("10000"), OTN, "R1").state is RefundState.UNCONFIRMED
    found = _ali("10000", out_trade_no=OTN, out_request_no="R1", refund_amount="0.50", trade_no="2024", refund_status="REFUND_SUCCESS")
    assert ali.refund_query_outcome(found, OTN, "R1").refunded_fen == 50
    assert ali.refund_query_outcome(found, OTN, "R2").state is RefundState.UNKNOWN


_text = st.one_of(st.sampled_from(["SUCCESS", "FAIL", "10000", "10003", "40004", OTN, "Y", "N", "1", "12.50", "TRADE_SUCCESS"]), st.text(max_size=8))
_wx_fields = st.dictionaries(st.sampled_from(["result_code", "err_code", "out_trade_no", "transaction_id", "total_fee", "trade_state",
                                              "recall", "refund_id", "refund_fee", "out_refund_no", "refund_count", "out_refund_no_0",
                                              "refund_status_0", "refund_fee_0"]), _text)
_ali_node = st.dictionaries(st.sampled_from(["code", "sub_code", "out_trade_no", "trade_no", "total_amount", "trade_status", "retry_flag",
                                             "fund_change", "out_request_no", "refund_amount", "refund_status", "send_back_fee"]),
                            st.one_of(_text, st.integers(), st.none(), st.lists(st.integers(), max_size=2)))


@given(_wx_fields)
def test_wechat_mapping_never_raises_and_success_always_has_the_money(fields):
    for outcome in (wx.pay_outcome(fields, OTN), wx.query_outcome(fields, OTN)):
        if outcome.state is PayState.SUCCESS:
            assert outcome.channel_txn_id and isinstance(outcome.paid_fen, int) and fields["out_trade_no"] == OTN
    wx.reverse_outcome(fields)
    for refund in (wx.refund_outcome(fields, OTN, "R1"), wx.refund_query_outcome(fields, OTN, "R1")):
        if refund.state is RefundState.SUCCESS:
            assert isinstance(refund.refunded_fen, int)


@given(_ali_node)
def test_alipay_mapping_never_raises_and_success_always_has_the_money(node):
    for outcome in (ali.pay_outcome(node, OTN), ali.query_outcome(node, OTN)):
        if outcome.state is PayState.SUCCESS:
            assert outcome.channel_txn_id and isinstance(outcome.paid_fen, int) and node["out_trade_no"] == OTN
    ali.cancel_outcome(node)
    for refund in (ali.refund_outcome(node, OTN, 1, "R1"), ali.refund_query_outcome(node, OTN, "R1")):
        if refund.state is RefundState.SUCCESS:
            assert isinstance(refund.refunded_fen, int)
