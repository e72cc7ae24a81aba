"""WeChat Pay APIv3 answers -> outcomes. Pure functions over a verified reply (status and JSON).

The same rule as v2 (`wechat_outcomes`): FAILED/CLOSED only when a signed reply says nothing was (or
remains) taken; SUCCESS only with a transaction_id and an amount for the order asked about; anything
unexpected is UNKNOWN, so the service queries before deciding. Errors come as HTTP 4xx/5xx with
{"code", "message"}; the codes are APIv3's (code payment, query, reverse, refund and refund query).
"""

from __future__ import annotations

from typing import Mapping

from protocol.amount import parse_fen
from protocol.errors import ProtocolError
from protocol.messages import ResultCode
from terminal.channels.base import PayOutcome, PayState, RefundOutcome, RefundState, ReverseOutcome, ReverseState

# Codes after which WeChat tells merchants to query: the payment may still go through.
_QUERY_CODES = {"SYSTEM_ERROR", "BANK_ERROR", "ORDER_PAID", "OUT_TRADE_NO_USED", "TRADE_ERROR", "FREQUENCY_LIMITED"}
_CODE_INVALID = {"AUTH_CODE_INVALID", "AUTH_CODE_EXPIRE", "AUTH_CODE_ERROR", "AUTHCODEEXPIRE"}
_DECLINES = {"NOT_ENOUGH": ResultCode.INSUFFICIENT_FUNDS, "PARAM_ERROR": ResultCode.DECLINED, "INVALID_REQUEST": ResultCode.DECLINED,
             "RULE_LIMIT": ResultCode.DECLINED, "ACCOUNT_ERROR": ResultCode.DECLINED, "BUYER_MISMATCH": ResultCode.DECLINED,
             "NOT_SUPPORT_CARD": ResultCode.DECLINED, "PAYER_ACCOUNT_ABNORMAL": ResultCode.DECLINED}
# Codes that say our merchant settings are wrong: nothing was processed; the operators must act.
MERCHANT_CODES = {"SIGN_ERROR", "NO_AUTH", "MCH_NOT_EXISTS", "APPID_MCHID_NOT_MATCH", "APPID_NOT_EXIST"}
_REFUND_REJECTS = {"PARAM_ERROR", "INVALID_REQUEST", "NOT_ENOUGH", "USER_ACCOUNT_ABNORMAL", "TRADE_OVERDUE", "NO_AUTH"}


def _text(reply: Mapping[str, object], name: str) -> str | None:
    value = reply.get(name)
    return value[:256] if isinstance(value, str) and value else None


def _fen(value: object) -> int | None:
    """APIv3's JSON integer of fen, through the one parser of its form; None (then UNKNOWN) if it is not one."""
    try:
        return parse_fen(value, what="amount", allow_zero=True)
    except ProtocolError:
        return None


def _amount(reply: Mapping[str, object], name: str) -> int | None:
    amount = reply.get("amount")
    return _fen(amount.get(name)) if isinstance(amount, dict) else None


def _error(reply: Mapping[str, object]) -> tuple[str, str | None]:
    return (_text(reply, "code") or "no_code")[:64], _text(reply, "message")


def _paid(reply: Mapping[str, object], out_trade_no: str) -> PayOutcome:
    txn, paid = _text(reply, "transaction_id"), _amount(reply, "total")
    if reply.get("out_trade_no") != out_trade_no or txn is None or paid is None:
        return PayOutcome(PayState.UNKNOWN, channel_code="incomplete_success", message="success reply without order details")
    return PayOutcome(PayState.SUCCESS, channel_txn_id=txn, paid_fen=paid, channel_code="SUCCESS")


def _trade_state(reply: Mapping[str, object], out_trade_no: str) -> PayOutcome:
    state = _text(reply, "trade_state") or ""
    message = _text(reply, "trade_state_desc")
    if state in ("SUCCESS", "REFUND"):  # REFUND: paid, and some of it has since been refunded
        return _paid(reply, out_trade_no)
    if state in ("USERPAYING", "NOTPAY", "ACCEPT"):
        return PayOutcome(PayState.USER_PAYING, channel_code=state, message=message)
    if reply.get("out_trade_no") not in (None, out_trade_no):
        return PayOutcome(PayState.UNKNOWN, channel_code="wrong_order", message="reply is about another order")
    if state == "PAYERROR":
        return PayOutcome(PayState.FAILED, result_code=ResultCode.DECLINED, channel_code=state, message=message)
    if state in ("CLOSED", "REVOKED"):
        return PayOutcome(PayState.CLOSED, result_code=ResultCode.CHANNEL_ERROR, channel_code=state, message=message)
    return PayOutcome(PayState.UNKNOWN, channel_code=state[:64] or "no_trade_state", message=message)


def pay_outcome(status: int, reply: Mapping[str, object], out_trade_no: str) -> PayOutcome:
    if status in (200, 202) and "trade_state" in reply:
        return _trade_state(reply, out_trade_no)
    code, message = _error(reply)
    if code == "USERPAYING":
        return PayOutcome(PayState.USER_PAYING, channel_code=code, message=message)
    if status >= 500 or code in _QUERY_CODES:
        return PayOutcome(PayState.UNKNOWN, channel_code=code, message=message)
    if code in _CODE_INVALID:
        return PayOutcome(PayState.FAILED, result_code=ResultCode.CODE_INVALID, channel_code=code, message=message)
    if code in ("ORDER_CLOSED", "ORDER_REVERSED"):
        return PayOutcome(PayState.CLOSED, result_code=ResultCode.CHANNEL_ERROR, channel_code=code, message=message)
    if code in _DECLINES and 400 <= status < 500:
        return PayOutcome(PayState.FAILED, result_code=_DECLINES[code], channel_code=code, message=message)
    return PayOutcome(PayState.UNKNOWN, channel_code=code, message=message)


def query_outcome(status: int, reply: Mapping[str, object], out_trade_no: str) -> PayOutcome:
    if status == 200:
        return _trade_state(reply, out_trade_no)
    code, message = _error(reply)
    if status == 404 and code == "ORDER_NOT_EXIST":
        return PayOutcome(PayState.NOT_FOUND, channel_code=code, message=message)
    return PayOutcome(PayState.UNKNOWN, channel_code=code, message=message)


def reverse_outcome(status: int, reply: Mapping[str, object], out_trade_no: str) -> ReverseOutcome:
    if status in (200, 204):
        if status == 200 and reply.get("out_trade_no") not in (None, out_trade_no):
            return ReverseOutcome(ReverseState.UNKNOWN, "wrong_order", "reply is about another order")
        return ReverseOutcome(ReverseState.DONE, "SUCCESS", None)
    code, message = _error(reply)
    if code == "USERPAYING" or (status >= 500 and code == "SYSTEM_ERROR"):
        return ReverseOutcome(ReverseState.RETRY, code, message)
    if code == "ORDER_NOT_EXIST":  # nothing was created, so nothing is taken
        return ReverseOutcome(ReverseState.DONE, code, message)
    if code in ("REVERSE_EXPIRE", "PARAM_ERROR", "INVALID_REQUEST", "TRADE_ERROR"):
        return ReverseOutcome(ReverseState.FAILED, code, message)
    return ReverseOutcome(ReverseState.UNKNOWN, code, message)


def _refund_status(reply: Mapping[str, object], out_trade_no: str, out_refund_no: str, *, query: bool) -> RefundOutcome:
    refund_id, amount = _text(reply, "refund_id"), _amount(reply, "refund")
    if reply.get("out_refund_no") != out_refund_no or reply.get("out_trade_no") != out_trade_no:
        return RefundOutcome(RefundState.UNKNOWN, channel_code="wrong_refund", message="reply is about another refund")
    status = _text(reply, "status") or ""
    if status == "SUCCESS" and refund_id is not None and amount is not None:
        return RefundOutcome(RefundState.SUCCESS, channel_refund_id=refund_id, refunded_fen=amount, channel_code=status)
    if status == "PROCESSING" and refund_id is not None:
        return RefundOutcome(RefundState.PROCESSING, channel_refund_id=refund_id, refunded_fen=amount,
                             channel_code=status if query else "ACCEPTED")
    if status == "CLOSED":
        return RefundOutcome(RefundState.FAILED, channel_refund_id=refund_id, result_code=ResultCode.REFUND_REJECTED, channel_code=status)
    if status == "ABNORMAL":
        # 退款异常: the money left the merchant but could not reach the patient (a closed card); resolved
        # by hand on the merchant platform. Needs a person.
        return RefundOutcome(RefundState.ABNORMAL, channel_refund_id=refund_id, refunded_fen=amount, channel_code=status,
                             message="退款异常：请在商户平台-交易中心手动处理此笔退款")
    return RefundOutcome(RefundState.UNKNOWN, channel_refund_id=refund_id, refunded_fen=amount, channel_code=status[:64] or "no_status")


def refund_outcome(status: int, reply: Mapping[str, object], out_trade_no: str, out_refund_no: str) -> RefundOutcome:
    if status == 200:
        return _refund_status(reply, out_trade_no, out_refund_no, query=False)
    code, message = _error(reply)
    if status >= 500 or code in ("SYSTEM_ERROR", "FREQUENCY_LIMITED"):
        return RefundOutcome(RefundState.UNKNOWN, channel_code=code, message=message)
    if status == 404 and code == "RESOURCE_NOT_EXISTS":
        return RefundOutcome(RefundState.FAILED, result_code=ResultCode.ORDER_NOT_PAID, channel_code=code, message=message)
    if code in _REFUND_REJECTS:
        exceeds = message is not None and ("可退金额" in message or "全额退款" in message)
        result = ResultCode.REFUND_EXCEEDS_REMAINING if exceeds else ResultCode.REFUND_REJECTED
        return RefundOutcome(RefundState.FAILED, result_code=result, channel_code=code, message=message)
    return RefundOutcome(RefundState.UNKNOWN, channel_code=code, message=message)


def refund_query_outcome(status: int, reply: Mapping[str, object], out_trade_no: str, out_refund_no: str) -> RefundOutcome:
    if status == 200:
        return _refund_status(reply, out_trade_no, out_refund_no, query=True)
    code, message = _error(reply)
    if status == 404 and code == "RESOURCE_NOT_EXISTS":
        return RefundOutcome(RefundState.NOT_FOUND, channel_code=code, message=message)
    return RefundOutcome(RefundState.UNKNOWN, channel_code=code, message=message)
