"""Alipay OpenAPI answers -> outcomes. Pure functions over a verified response node.

Gateway codes: 10000 success, 10003 waiting for the user (bar_code pay), 20000 service unavailable
(unknown), 20001 insufficient authority, 40001 missing parameter, 40002 invalid parameter (including
an invalid signature), 40004 business failure with a sub_code, 40006 insufficient permissions.
As for WeChat: FAILED/CLOSED only when Alipay says so in a signed reply; SUCCESS only with a trade_no
and an amount; refunds are UNKNOWN unless Alipay names the reason, so a refund that may already have
happened is never reported as not done.
"""

from __future__ import annotations

from typing import Mapping

from protocol.amount import parse_yuan
from protocol.errors import ProtocolError
from protocol.messages import ResultCode
from terminal.channels.base import PayOutcome, PayState, RefundOutcome, RefundState, ReverseOutcome, ReverseState

SUCCESS = "10000"
WAITING = "10003"
BUSINESS_FAILED = "40004"
# The request itself was refused before anything was processed.
REQUEST_REFUSED = {"20001", "40001", "40002", "40006"}

_PAY_QUERY = {"ACQ.SYSTEM_ERROR", "ACQ.TRADE_HAS_SUCCESS", "ACQ.CONTEXT_INCONSISTENT", "ACQ.PAYMENT_REQUEST_HAS_RISK_RETRY"}
_PAY_CODE_INVALID = {"ACQ.PAYMENT_AUTH_CODE_INVALID", "ACQ.AUTH_CODE_INVALID"}
_PAY_INSUFFICIENT = {"ACQ.BUYER_BALANCE_NOT_ENOUGH", "ACQ.BUYER_BANKCARD_BALANCE_NOT_ENOUGH", "ACQ.BUYER_PAYMENT_AMOUNT_DAY_LIMIT_ERROR",
                     "ACQ.BUYER_PAYMENT_AMOUNT_MONTH_LIMIT_ERROR"}
_REFUND_EXCEEDS = {"ACQ.REASON_TRADE_REFUND_FEE_ERR", "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "ACQ.REFUND_FEE_ERROR"}
_REFUND_NOT_PAID = {"ACQ.TRADE_NOT_EXIST", "ACQ.TRADE_STATUS_ERROR"}
_REFUND_REJECTS = {"ACQ.TRADE_HAS_FINISHED", "ACQ.SELLER_BALANCE_NOT_ENOUGH", "ACQ.REASON_TRADE_BEEN_FREEZEN", "ACQ.TRADE_NOT_ALLOW_REFUND",
                   "ACQ.INVALID_PARAMETER", "ACQ.ACCESS_FORBIDDEN", "ACQ.BUYER_ERROR", "ACQ.REFUND_CHARGE_ERROR"}


def _text(node: Mapping[str, object], name: str) -> str | None:
    value = node.get(name)
    return value[:256] if isinstance(value, str) and value else None


def _yuan(node: Mapping[str, object], name: str) -> int | None:
    try:
        return parse_yuan(node.get(name))
    except ProtocolError:
        return None


def _codes(node: Mapping[str, object]) -> tuple[str, str, str | None]:
    code = node.get("code") if isinstance(node.get("code"), str) else ""
    sub = node.get("sub_code") if isinstance(node.get("sub_code"), str) else ""
    message = _text(node, "sub_msg") or _text(node, "msg")
    return str(code), str(sub), message


def _paid(node: Mapping[str, object], out_trade_no: str) -> PayOutcome:
    trade_no = _text(node, "trade_no")
    amount = _yuan(node, "total_amount")
    if node.get("out_trade_no") != out_trade_no or trade_no is None or amount is None:
        return PayOutcome(PayState.UNKNOWN, channel_code="incomplete_success", message="success reply without order details")
    return PayOutcome(PayState.SUCCESS, channel_txn_id=trade_no, paid_fen=amount, channel_code=SUCCESS)


def pay_outcome(node: Mapping[str, object], out_trade_no: str) -> PayOutcome:
    code, sub, message = _codes(node)
    if code == SUCCESS:
        return _paid(node, out_trade_no)
    if code == WAITING:
        return PayOutcome(PayState.USER_PAYING, channel_code=code, message=message)
    if code == BUSINESS_FAILED and sub not in _PAY_QUERY:
        if sub in _PAY_CODE_INVALID:
            return PayOutcome(PayState.FAILED, result_code=ResultCode.CODE_INVALID, channel_code=sub, message=message)
        if sub in _PAY_INSUFFICIENT:
            return PayOutcome(PayState.FAILED, result_code=ResultCode.INSUFFICIENT_FUNDS, channel_code=sub, message=message)
        if sub == "ACQ.TRADE_HAS_CLOSE":
            return PayOutcome(PayState.CLOSED, result_code=ResultCode.CHANNEL_ERROR, channel_code=sub, message=message)
        if sub.startswith("ACQ."):
            # Alipay's face-to-face guide: a 40004 business failure other than SYSTEM_ERROR is a
            # definite failure of this payment.
            return PayOutcome(PayState.FAILED, result_code=ResultCode.DECLINED, channel_code=sub[:64], message=message)
    return PayOutcome(PayState.UNKNOWN, channel_code=(sub or code)[:64] or "no_code", message=message)


def query_outcome(node: Mapping[str, object], out_trade_no: str) -> PayOutcome:
    code, sub, message = _codes(node)
    if code == BUSINESS_FAILED and sub == "ACQ.TRADE_NOT_EXIST":
        return PayOutcome(PayState.NOT_FOUND, channel_code=sub, message=message)
    if code != SUCCESS:
        return PayOutcome(PayState.UNKNOWN, channel_code=(sub or code)[:64] or "no_code", message=message)
    if node.get("out_trade_no") != out_trade_no:
        return PayOutcome(PayState.UNKNOWN, channel_code="wrong_order", message="reply is about another order")
    status = node.get("trade_status") if isinstance(node.get("trade_status"), str) else ""
    if status in ("TRADE_SUCCESS", "TRADE_FINISHED"):
        return _paid(node, out_trade_no)
    if status == "WAIT_BUYER_PAY":
        return PayOutcome(PayState.USER_PAYING, channel_code=status)
    if status == "TRADE_CLOSED":
        # Unpaid and closed, or paid and since refunded in full (Alipay uses one status for both).
        return PayOutcome(PayState.CLOSED, result_code=ResultCode.CHANNEL_ERROR, channel_code=status)
    return PayOutcome(PayState.UNKNOWN, channel_code=str(status)[:64] or "no_trade_status")


def cancel_outcome(node: Mapping[str, object]) -> ReverseOutcome:
    code, sub, message = _codes(node)
    if node.get("retry_flag") == "Y":
        return ReverseOutcome(ReverseState.RETRY, sub or code, message)
    if code == SUCCESS:
        action = _text(node, "action") or "close"
        return ReverseOutcome(ReverseState.DONE, action, message)
    if code == BUSINESS_FAILED and sub == "ACQ.TRADE_NOT_EXIST":
        return ReverseOutcome(ReverseState.DONE, sub, message)
    if code == BUSINESS_FAILED and sub not in ("ACQ.SYSTEM_ERROR", ""):
        return ReverseOutcome(ReverseState.FAILED, sub[:64], message)
    return ReverseOutcome(ReverseState.UNKNOWN, (sub or code)[:64] or "no_code", message)


def refund_outcome(node: Mapping[str, object], out_trade_no: str, refund_fen: int, out_refund_no: str) -> RefundOutcome:
    """Alipay gives a refund no id of its own (trade_no is the payment's): the refund is named by
    our out_request_no, so two partial refunds of one trade stay apart for HIS and reconciliation."""
    code, sub, message = _codes(node)
    if code == SUCCESS:
        trade_no = _text(node, "trade_no")
        if node.get("out_trade_no") != out_trade_no or trade_no is None:
            return RefundOutcome(RefundState.UNKNOWN, channel_code="incomplete_success", message="refund reply without details")
        if node.get("fund_change") == "Y":
            # refund_fee is the trade's cumulative refunded total; this request moved refund_fen.
            sent = _yuan(node, "send_back_fee")
            return RefundOutcome(RefundState.SUCCESS, channel_refund_id=out_refund_no, refunded_fen=refund_fen if sent in (None, 0) else sent,
                                 channel_code="fund_change_Y")
        # fund_change=N: a repeated request, or not settled yet. Alipay: confirm with the refund query.
        return RefundOutcome(RefundState.PROCESSING, channel_refund_id=out_refund_no, channel_code="fund_change_N", message=message)
    if code == BUSINESS_FAILED:
        if sub in _REFUND_EXCEEDS:
            return RefundOutcome(RefundState.FAILED, result_code=ResultCode.REFUND_EXCEEDS_REMAINING, channel_code=sub, message=message)
        if sub in _REFUND_NOT_PAID:
            return RefundOutcome(RefundState.FAILED, result_code=ResultCode.ORDER_NOT_PAID, channel_code=sub, message=message)
        if sub in _REFUND_REJECTS:
            return RefundOutcome(RefundState.FAILED, result_code=ResultCode.REFUND_REJECTED, channel_code=sub, message=message)
    # SYSTEM_ERROR, DISCORDANT_REPEAT_REQUEST (the number was used before), request-level refusals,
    # unknown codes: the refund may or may not exist; the refund query decides.
    return RefundOutcome(RefundState.UNKNOWN, channel_code=(sub or code)[:64] or "no_code", message=message)


def refund_query_outcome(node: Mapping[str, object], out_trade_no: str, out_refund_no: str) -> RefundOutcome:
    code, sub, message = _codes(node)
    if code == BUSINESS_FAILED and sub == "ACQ.TRADE_NOT_EXIST":
        return RefundOutcome(RefundState.NOT_FOUND, channel_code=sub, message=message)
    if code != SUCCESS:
        return RefundOutcome(RefundState.UNKNOWN, channel_code=(sub or code)[:64] or "no_code", message=message)
    status = node.get("refund_status")
    if status in (None, ""):
        # Alipay: "未返回该字段表示退款请求未收到或者退款失败" — and a query soon after the refund can
        # miss one that succeeds later. Not final either way: a wrong REFUND_FAILED invites HIS to
        # refund twice, a wrong REFUNDED books money that never moved. The POS sends the refund again
        # with the same out_request_no (idempotent at Alipay: never a second refund) and queries again,
        # within its budget, then hands it to a person.
        return RefundOutcome(RefundState.UNCONFIRMED, channel_code="no_refund_status",
                             message="Alipay's refund query has no refund_status: not received yet, or failed")
    amount = _yuan(node, "refund_amount")
    if node.get("out_trade_no") != out_trade_no or node.get("out_request_no") != out_refund_no or amount is None:
        return RefundOutcome(RefundState.UNKNOWN, channel_code="wrong_refund", message="reply is about another refund")
    if status == "REFUND_SUCCESS":
        return RefundOutcome(RefundState.SUCCESS, channel_refund_id=out_refund_no, refunded_fen=amount, channel_code="REFUND_SUCCESS")
    return RefundOutcome(RefundState.PROCESSING, channel_refund_id=out_refund_no, refunded_fen=amount, channel_code=str(status)[:64])
