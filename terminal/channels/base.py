"""What the terminal service needs from a payment channel, whichever it is.

Clients (`wechat.py`, `alipay.py`) speak each channel's own API over HTTP with requests, sign every
request and verify every reply as the channel defines it, and map the channel's answers to these
outcomes. The service decides what to do with them (query, reverse, report); clients never retry
money-moving calls on their own.

Every outcome falls in one of three classes (`Disposition`, `disposition(outcome)`):

- FINAL: the channel said, in a reply we verified, what happened (paid, declined, reversed,
  refunded, refused). A request the channel REJECTED before processing it (WeChat `return_code
  FAIL`, Alipay `isv.invalid-signature` / `isv.invalid-app-id` ...: a wrong merchant key or app id)
  is final for a payment or a refund: nothing moved, `result_code` is `merchant_config`.
- RETRYABLE: we cannot tell yet (network error, timeout, system error, user paying, processing,
  a malformed reply, a query or reverse the channel rejected): ask again, within a bounded budget
  (`terminal.machine.Budget`), then hand the instruction to a person.
- NEEDS_PERSON: the channel answered but we CANNOT VERIFY its reply (the platform certificate or
  Alipay public key we hold is not the channel's), so it may well have acted (UNVERIFIED); or a
  refund the bank bounced (WeChat `CHANGE`, 退款异常: ABNORMAL). Asking again cannot settle these;
  the instruction is not ended, it waits for a person.

A client raises only for programming errors; everything that can happen on the network is an
outcome.
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass
from typing import Protocol

from protocol.messages import PayChannel, ResultCode


class PayState(enum.Enum):
    SUCCESS = "success"  # the channel confirms the money was taken
    USER_PAYING = "user_paying"  # the patient is confirming on the phone: query again later
    FAILED = "failed"  # the channel confirms nothing was taken (declined, bad code, ...)
    CLOSED = "closed"  # the order was reversed/cancelled/closed at the channel: nothing taken
    NOT_FOUND = "not_found"  # the channel has no such order (query only)
    UNKNOWN = "unknown"  # could not tell: query before deciding
    UNVERIFIED = "unverified"  # the channel answered; its reply failed verification: it may have acted


class ReverseState(enum.Enum):
    DONE = "done"  # reversed (refunded if it had been paid) or closed: nothing remains taken
    RETRY = "retry"  # the channel asks to call reverse again (WeChat recall=Y, Alipay retry_flag=Y)
    FAILED = "failed"  # the channel refuses to reverse (code and message say why)
    UNKNOWN = "unknown"
    UNVERIFIED = "unverified"  # answered, but the reply failed verification


class RefundState(enum.Enum):
    SUCCESS = "success"
    PROCESSING = "processing"  # accepted, not final: query again later
    FAILED = "failed"  # the channel confirms nothing was refunded
    NOT_FOUND = "not_found"  # refund query: no such refund
    # Alipay's refund query without refund_status: "not received, or failed" — and an early query can
    # miss a refund that succeeds later. Not final either way: the refund is sent again with the same
    # out_request_no (idempotent) and queried again, within the budget, then a person decides.
    UNCONFIRMED = "unconfirmed"
    UNKNOWN = "unknown"
    UNVERIFIED = "unverified"  # answered, but the reply failed verification
    ABNORMAL = "abnormal"  # WeChat CHANGE (退款异常): the bank bounced it; a person resolves it on the merchant platform


class Disposition(enum.Enum):
    FINAL = "final"  # settles the call: act on it
    RETRYABLE = "retryable"  # ask again, within the retry budget
    NEEDS_PERSON = "needs_person"  # asking again cannot settle it


# The error code (channel_code) of a request the channel rejected for the merchant's configuration
# before processing it; a payment or refund it ends carries ResultCode.MERCHANT_CONFIG.
MERCHANT_CONFIG = "merchant_config"

_FINAL = {PayState.SUCCESS, PayState.FAILED, PayState.CLOSED, ReverseState.DONE, ReverseState.FAILED,
          RefundState.SUCCESS, RefundState.FAILED}
_NEEDS_PERSON = {PayState.UNVERIFIED, ReverseState.UNVERIFIED, RefundState.UNVERIFIED, RefundState.ABNORMAL}


def disposition(outcome: "PayOutcome | ReverseOutcome | RefundOutcome") -> Disposition:
    """Which of the three classes an outcome is in (the module docstring says why)."""
    if outcome.state in _FINAL:
        return Disposition.FINAL
    if outcome.state in _NEEDS_PERSON:
        return Disposition.NEEDS_PERSON
    return Disposition.RETRYABLE


@dataclass(frozen=True, slots=True)
class PayOutcome:
    state: PayState
    channel_txn_id: str | None = None  # WeChat transaction_id / Alipay trade_no
    paid_fen: int | None = None  # what the channel says it took (SUCCESS)
    result_code: ResultCode | None = None  # FAILED/CLOSED: the business reason, for the result
    channel_code: str | None = None  # the channel's own code (err_code / sub_code), for logs
    message: str | None = None  # the channel's text, safe to show a cashier


@dataclass(frozen=True, slots=True)
class ReverseOutcome:
    state: ReverseState
    channel_code: str | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class RefundOutcome:
    state: RefundState
    channel_refund_id: str | None = None  # WeChat refund_id / Alipay: our out_request_no (Alipay has no refund id)
    refunded_fen: int | None = None
    result_code: ResultCode | None = None
    channel_code: str | None = None
    message: str | None = None


class ChannelClient(Protocol):
    channel: PayChannel
    # The cadence the channel documents for querying a payment the patient is still confirming,
    # and how long to keep querying before reversing. Config may override both.
    query_interval_s: float
    pay_deadline_s: float
    # WeChat Pay: never reverse sooner than 15 s after micropay (its POS guide); 0 for Alipay.
    reverse_not_before_s: float

    def pay(self, *, out_trade_no: str, auth_code: str, total_fen: int, subject: str, order_no: str | None = None,
            terminal_id: str | None = None) -> PayOutcome:
        """Barcode payment (WeChat micropay / Alipay alipay.trade.pay scene=bar_code). `order_no` (the
        HIS order) and `terminal_id` (the HIS terminal the instruction named: a POS may serve several)
        are for the gateway, which enforces one order, one payment and checks the terminal is this
        device's; a channel ignores them."""

    def query(self, out_trade_no: str) -> PayOutcome: ...

    def reverse(self, out_trade_no: str) -> ReverseOutcome:
        """WeChat reverse / Alipay alipay.trade.cancel."""

    def refund(self, *, out_trade_no: str, out_refund_no: str, total_fen: int, refund_fen: int, reason: str,
               order_no: str | None = None, instruction: bytes | None = None) -> RefundOutcome:
        """Idempotent by out_refund_no: calling again with the same number never refunds twice.
        `instruction` is the sealed HIS instruction (envelope JSON) the refund executes: the gateway
        opens it and checks order and amount; a channel ignores it and `order_no`."""

    def refund_query(self, *, out_trade_no: str, out_refund_no: str) -> RefundOutcome: ...

    def download_bill(self, bill_date: datetime.date) -> bytes:
        """The day's bill exactly as the channel serves it (WeChat: CSV text; Alipay: zip)."""
