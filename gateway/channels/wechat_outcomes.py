"""WeChat Pay v2 answers -> outcomes. Pure functions over a verified reply's fields.

The rule throughout: FAILED/CLOSED only when WeChat says in a signed reply that nothing was (or
remains) taken; SUCCESS only with a transaction_id and an amount; anything unexpected is UNKNOWN so
the service queries before deciding. Codes and trade states are WeChat Pay's own (micropay,
orderquery, reverse, refund and refundquery error-code tables).
"""

from __future__ import annotations

from typing import Mapping

from protocol.amount import parse_fen_text
from protocol.errors import ProtocolError
from protocol.messages import ResultCode
from terminal.channels.base import PayOutcome, PayState, RefundOutcome, RefundState, ReverseOutcome, ReverseState

# micropay err_code values after which WeChat tells merchants to query (the payment may go through).
_QUERY_CODES = {"SYSTEMERROR", "BANKERROR", "ORDERPAID", "OUT_TRADE_NO_USED", "TRADE_ERROR"}
_CODE_INVALID = {"AUTHCODEEXPIRE", "AUTH_CODE_INVALID", "AUTH_CODE_ERROR"}
_DECLINES = {
    "NOTENOUGH": ResultCode.INSUFFICIENT_FUNDS,
    "NOTSUPORTCARD": ResultCode.DECLINED,
    "BUYER_MISMATCH": ResultCode.DECLINED,
    "NOAUTH": ResultCode.DECLINED,
    "PARAM_ERROR": ResultCode.DECLINED,
    "INVALID_REQUEST": ResultCode.DECLINED,
    "LACK_PARAMS": ResultCode.DECLINED,
    "XML_FORMAT_ERROR": ResultCode.DECLINED,
    "NOT_UTF8": ResultCode.DECLINED,
    "SIGNERROR": ResultCode.DECLINED,
    "APPID_NOT_EXIST": ResultCode.DECLINED,
    "MCHID_NOT_EXIST": ResultCode.DECLINED,
    "APPID_MCHID_NOT_MATCH": ResultCode.DECLINED,
    "REQUIRE_POST_METHOD": ResultCode.DECLINED,
}
_REFUND_RETRY = {"SYSTEMERROR", "BIZERR_NEED_RETRY", "FREQUENCY_LIMITED", "INVALID_REQ_TOO_MUCH", "REFUND_FEE_MISMATCH"}
_REFUND_REJECTS = {"TRADE_OVERDUE", "USER_ACCOUNT_ABNORMAL", "NOTENOUGH", "PARAM_ERROR", "NOAUTH", "CERT_ERROR",
                   "APPID_NOT_EXIST", "MCHID_NOT_EXIST", "SIGNERROR", "XML_FORMAT_ERROR", "INVALID_REQUEST", "ERROR",
                   "LACK_PARAMS", "ORDER_NOT_READY"}


def _fen(value: object) -> int | None:
    """WeChat's fen field, through the one parser of its form; None (then UNKNOWN) if it is not one."""
    try:
        return parse_fen_text(value)
    except ProtocolError:
        return None


def _text(fields: Mapping[str, str], name: str) -> str | None:
    value = fields.get(name)
    return value[:256] if isinstance(value, str) and value else None


def _paid(fields: Mapping[str, str], out_trade_no: str) -> PayOutcome:
    txn = _text(fields, "transaction_id")
    paid = _fen(fields.get("total_fee"))
    if fields.get("out_trade_no") != out_trade_no or txn is None or paid is None:
        return PayOutcome(PayState.UNKNOWN, channel_code="incomplete_success", message="success reply without order details")
    return PayOutcome(PayState.SUCCESS, channel_txn_id=txn, paid_fen=paid, channel_code="SUCCESS")


def pay_outcome(fields: Mapping[str, str], out_trade_no: str) -> PayOutcome:
    if fields.get("result_code") == "SUCCESS":
        return _paid(fields, out_trade_no)
    code = fields.get("err_code") or ""
    message = _text(fields, "err_code_des")
    if code == "USERPAYING":
        return PayOutcome(PayState.USER_PAYING, channel_code=code, message=message)
    if code in _QUERY_CODES:
        return PayOutcome(PayState.UNKNOWN, channel_code=code, message=message)
    if code in _CODE_INVALID:
        return PayOutcome(PayState.FAILED, result_code=ResultCode.CODE_INVALID, channel_code=code, message=message)
    if code in ("ORDERCLOSED", "ORDERREVERSED"):
        return PayOutcome(PayState.CLOSED, result_code=ResultCode.CHANNEL_ERROR, channel_code=code, message=message)
    if code in _DECLINES and fields.get("result_code") == "FAIL":
        return PayOutcome(PayState.FAILED, result_code=_DECLINES[code], channel_code=code, message=message)
    # SYSTEMERROR, BANKERROR, ORDERPAID, codes we do not know: only a query can tell.
    return PayOutcome(PayState.UNKNOWN, channel_code=code[:64] or "no_result", message=message)


def query_outcome(fields: Mapping[str, str], out_trade_no: str) -> PayOutcome:
    if fields.get("result_code") != "SUCCESS":
        code = fields.get("err_code") or ""
        if code == "ORDERNOTEXIST":
            return PayOutcome(PayState.NOT_FOUND, channel_code=code, message=_text(fields, "err_code_des"))
        return PayOutcome(PayState.UNKNOWN, channel_code=code[:64] or "no_result", message=_text(fields, "err_code_des"))
    if fields.get("out_trade_no") != out_trade_no:
        return PayOutcome(PayState.UNKNOWN, channel_code="wrong_order", message="reply is about another order")
    state = fields.get("trade_state") or ""
    message = _text(fields, "trade_state_desc")
    if state in ("SUCCESS", "REFUND"):  # REFUND: paid, and some of it has since been refunded
        return _paid(fields, out_trade_no)
    if state in ("USERPAYING", "NOTPAY", "ACCEPT"):
        return PayOutcome(PayState.USER_PAYING, channel_code=state, message=message)
    if state == "PAYERROR":
        return PayOutcome(PayState.FAILED, result_code=ResultCode.DECLINED, channel_code=state, message=message)
    if state in ("CLOSED", "REVOKED"):
        return PayOutcome(PayState.CLOSED, result_code=ResultCode.CHANNEL_ERROR, channel_code=state, message=message)
    return PayOutcome(PayState.UNKNOWN, channel_code=state[:64] or "no_trade_state", message=message)


def reverse_outcome(fields: Mapping[str, str]) -> ReverseOutcome:
    code = fields.get("err_code") or None
    message = _text(fields, "err_code_des")
    if fields.get("result_code") == "SUCCESS":
        if fields.get("recall") == "Y":
            return ReverseOutcome(ReverseState.RETRY, "recall", message)
        return ReverseOutcome(ReverseState.DONE, "SUCCESS", message)
    if fields.get("recall") == "Y":
        return ReverseOutcome(ReverseState.RETRY, code, message)
    if code == "ORDERNOTEXIST":  # nothing was created, so nothing is taken
        return ReverseOutcome(ReverseState.DONE, code, message)
    if code in ("REVERSE_EXPIRE", "INVALID_TRANSACTIONID", "PARAM_ERROR", "INVALID_REQUEST", "TRADE_ERROR"):
        return ReverseOutcome(ReverseState.FAILED, code, message)
    return ReverseOutcome(ReverseState.UNKNOWN, (code or "no_result")[:64], message)


def refund_outcome(fields: Mapping[str, str], out_trade_no: str, out_refund_no: str) -> RefundOutcome:
    message = _text(fields, "err_code_des")
    if fields.get("result_code") == "SUCCESS":
        refund_id = _text(fields, "refund_id")
        amount = _fen(fields.get("refund_fee"))
        if fields.get("out_refund_no") != out_refund_no or fields.get("out_trade_no") != out_trade_no or refund_id is None or amount is None:
            return RefundOutcome(RefundState.UNKNOWN, channel_code="incomplete_success", message="refund reply without details")
        # WeChat: "the reply only says the refund was accepted; query for the result".
        return RefundOutcome(RefundState.PROCESSING, channel_refund_id=refund_id, refunded_fen=amount, channel_code="ACCEPTED")
    code = fields.get("err_code") or ""
    if code in _REFUND_RETRY:
        return RefundOutcome(RefundState.UNKNOWN, channel_code=code, message=message)
    if code in ("ORDERNOTEXIST", "INVALID_TRANSACTIONID"):
        return RefundOutcome(RefundState.FAILED, result_code=ResultCode.ORDER_NOT_PAID, channel_code=code, message=message)
    if code in _REFUND_REJECTS:
        exceeds = message is not None and ("可退金额" in message or "全额退款" in message)
        result = ResultCode.REFUND_EXCEEDS_REMAINING if exceeds else ResultCode.REFUND_REJECTED
        return RefundOutcome(RefundState.FAILED, result_code=result, channel_code=code, message=message)
    return RefundOutcome(RefundState.UNKNOWN, channel_code=code[:64] or "no_result", message=message)


def refund_query_outcome(fields: Mapping[str, str], out_trade_no: str, out_refund_no: str) -> RefundOutcome:
    if fields.get("result_code") != "SUCCESS":
        code = fields.get("err_code") or ""
        if code == "REFUNDNOTEXIST":
            return RefundOutcome(RefundState.NOT_FOUND, channel_code=code, message=_text(fields, "err_code_des"))
        return RefundOutcome(RefundState.UNKNOWN, channel_code=code[:64] or "no_result", message=_text(fields, "err_code_des"))
    if fields.get("out_trade_no") != out_trade_no:
        return RefundOutcome(RefundState.UNKNOWN, channel_code="wrong_order", message="reply is about another order")
    count = _fen(fields.get("refund_count"))
    for n in range(min(count or 0, 50)):
        if fields.get(f"out_refund_no_{n}") != out_refund_no:
            continue
        status = fields.get(f"refund_status_{n}") or ""
        refund_id = _text(fields, f"refund_id_{n}")
        amount = _fen(fields.get(f"refund_fee_{n}"))
        if status == "SUCCESS" and refund_id is not None and amount is not None:
            return RefundOutcome(RefundState.SUCCESS, channel_refund_id=refund_id, refunded_fen=amount, channel_code=status)
        if status == "PROCESSING":
            return RefundOutcome(RefundState.PROCESSING, channel_refund_id=refund_id, refunded_fen=amount, channel_code=status)
        if status == "REFUNDCLOSE":
            return RefundOutcome(RefundState.FAILED, channel_refund_id=refund_id, result_code=ResultCode.REFUND_REJECTED, channel_code=status)
        if status == "CHANGE":
            # 退款异常: the money left the merchant but could not reach the patient's card (a closed
            # or frozen card); WeChat: resolve it by hand on the merchant platform. Needs a person.
            return RefundOutcome(RefundState.ABNORMAL, channel_refund_id=refund_id, refunded_fen=amount, channel_code=status,
                                 message="退款异常：请在商户平台-交易中心手动处理此笔退款")
        return RefundOutcome(RefundState.UNKNOWN, channel_refund_id=refund_id, refunded_fen=amount, channel_code=status[:64] or "no_status")
    return RefundOutcome(RefundState.NOT_FOUND, channel_code="not_in_reply")
