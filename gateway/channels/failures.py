"""What a channel call that produced no verified business answer means, per kind of call. Pure.

Three ways a call can end without an answer we can act on, and what each means (issue 17):

- `unknown`: no reply, a timeout, an unreadable reply. The call may or may not have been processed:
  retryable (query before deciding).
- `rejected`: the channel refused the request itself before processing it (WeChat `return_code
  FAIL`, e.g. 签名错误 for a wrong API key; Alipay 20001/40001/40002/40006 `isv.*`, e.g.
  `isv.invalid-signature` for a wrong app key, `isv.invalid-app-id`). Nothing moved: a payment or a
  refund ends FAILED `merchant_config`; a query, a reverse or a refund query learnt nothing and is
  retryable (within the budget; the configuration must be fixed, which the alarm says).
- `unverified`: a reply came that we cannot verify (its signature does not check with the key we
  hold for the channel: a wrong Alipay public key or platform certificate). The channel processed the
  request, so its money may have moved; nothing ends, the instruction needs a person.

Rejections are believed without a valid signature (WeChat never signs return_code FAIL; an Alipay
rejection of our signature may come with one we cannot check): they only ever say "nothing was
processed", which TLS to the channel's own host vouches for.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from protocol.messages import ResultCode
from terminal.channels.base import (MERCHANT_CONFIG, PayOutcome, PayState, RefundOutcome, RefundState, ReverseOutcome,
                                    ReverseState)


class Failure(enum.Enum):
    UNKNOWN = "unknown"
    REJECTED = "rejected"
    UNVERIFIED = "unverified"


@dataclass(frozen=True, slots=True)
class NoAnswer:
    """A call without a verified business answer: which kind, the code for logs, words for people."""

    failure: Failure
    code: str
    message: str


def unknown(code: str, message: str) -> NoAnswer:
    return NoAnswer(Failure.UNKNOWN, code[:64], message)


def rejected(message: str) -> NoAnswer:
    return NoAnswer(Failure.REJECTED, MERCHANT_CONFIG, message[:256])


def unverified(message: str) -> NoAnswer:
    return NoAnswer(Failure.UNVERIFIED, "bad_signature", message)


def as_pay(answer: NoAnswer) -> PayOutcome:
    if answer.failure is Failure.REJECTED:
        return PayOutcome(PayState.FAILED, result_code=ResultCode.MERCHANT_CONFIG, channel_code=answer.code, message=answer.message)
    state = PayState.UNVERIFIED if answer.failure is Failure.UNVERIFIED else PayState.UNKNOWN
    return PayOutcome(state, channel_code=answer.code, message=answer.message)


def as_query(answer: NoAnswer) -> PayOutcome:
    """A rejected query says nothing about the payment."""
    state = PayState.UNVERIFIED if answer.failure is Failure.UNVERIFIED else PayState.UNKNOWN
    return PayOutcome(state, channel_code=answer.code, message=answer.message)


def as_reverse(answer: NoAnswer) -> ReverseOutcome:
    """A rejected reverse reversed nothing and proves nothing about the payment: try again."""
    state = ReverseState.UNVERIFIED if answer.failure is Failure.UNVERIFIED else ReverseState.UNKNOWN
    return ReverseOutcome(state, answer.code, answer.message)


def as_refund(answer: NoAnswer) -> RefundOutcome:
    if answer.failure is Failure.REJECTED:
        return RefundOutcome(RefundState.FAILED, result_code=ResultCode.MERCHANT_CONFIG, channel_code=answer.code, message=answer.message)
    state = RefundState.UNVERIFIED if answer.failure is Failure.UNVERIFIED else RefundState.UNKNOWN
    return RefundOutcome(state, channel_code=answer.code, message=answer.message)


def as_refund_query(answer: NoAnswer) -> RefundOutcome:
    state = RefundState.UNVERIFIED if answer.failure is Failure.UNVERIFIED else RefundState.UNKNOWN
    return RefundOutcome(state, channel_code=answer.code, message=answer.message)
