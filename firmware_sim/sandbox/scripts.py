"""Scripted channel answers: what a tester tells the sandbox to say about one code or one order.

The channels answer some calls in ways a client must survive but the happy path never shows. A
script (control API `POST /sandbox/v1/scripts`) attaches such answers to a payment code (every
order paid with it) or to one order (channel + out_trade_no); each answer is given `times` times
(0: for as long as the script is there), then the channel answers as usual again:

    wechat_refund_status   PROCESSING | CHANGE | REFUNDCLOSE   refundquery reports the order's refunds so
                           (a refund in progress, 退款异常 the bank refused it, closed: the money stayed)
    wechat_reverse_recall  the reverse answers recall=Y (call it again) and reverses nothing
    alipay_cancel_retry    alipay.trade.cancel answers ACQ.SYSTEM_ERROR with retry_flag=Y, cancels nothing
    alipay_fund_change_n   alipay.trade.refund accepts a first refund but answers fund_change=N
    alipay_refund_status_missing   alipay.trade.fastpay.refund.query answers without refund_status
                           (Alipay: the refund not received, or not yet: query again)

Scripts change only what the API says, never the ledger: a REFUNDCLOSE refund is still in the
sandbox's bills, which is what the ledger holds.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from protocol.errors import CodedError

WECHAT_REFUND_STATUSES = ("PROCESSING", "CHANGE", "REFUNDCLOSE")
ANSWERS = ("wechat_refund_status", "wechat_reverse_recall", "alipay_cancel_retry", "alipay_fund_change_n", "alipay_refund_status_missing")


class ScriptError(CodedError, ValueError):
    """A script the sandbox cannot follow; the message says which field and why."""

    code = "bad_script"


@dataclass
class Script:
    answer: str
    value: str  # e.g. "CHANGE" for wechat_refund_status; "Y" otherwise
    times: int  # answers left; 0: until removed
    code: str | None = None
    channel: str | None = None
    out_trade_no: str | None = None

    def describe(self) -> dict[str, object]:
        target = {"code": self.code} if self.code else {"channel": self.channel, "out_trade_no": self.out_trade_no}
        return {**target, "answer": self.answer, "value": self.value, "times_left": self.times or "until removed"}


class Scripts:
    """The scripts in force, thread-safe; the front ends ask `take` when they answer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: list[Script] = []

    def add(self, request: dict[str, object]) -> Script:
        unknown = sorted(set(request) - {"code", "channel", "out_trade_no", "answer", "value", "times"})
        if unknown:
            raise ScriptError(f"unknown field(s) {', '.join(unknown)}; known: code or channel + out_trade_no, answer, value, times")
        answer = request.get("answer")
        if answer not in ANSWERS:
            raise ScriptError(f"answer must be one of {', '.join(ANSWERS)}")
        value = request.get("value", "Y")
        if answer == "wechat_refund_status":
            if value not in WECHAT_REFUND_STATUSES:
                raise ScriptError(f"wechat_refund_status needs value {', '.join(WECHAT_REFUND_STATUSES)}")
        elif value != "Y":
            raise ScriptError(f"{answer} takes no value (or \"Y\")")
        times = request.get("times", 1)
        if type(times) is not int or not 0 <= times <= 1000:
            raise ScriptError("times must be an integer 0..1000 (0: until removed)")
        code, channel, number = request.get("code"), request.get("channel"), request.get("out_trade_no")
        if (code is None) == (number is None):
            raise ScriptError("give either code (every order paid with it) or channel and out_trade_no (one order)")
        if code is not None and not (isinstance(code, str) and code.isdigit()):
            raise ScriptError("code must be a payment code (digits)")
        if number is not None and (channel not in ("WECHAT", "ALIPAY") or not isinstance(number, str) or not number):
            raise ScriptError("an order is named by channel (WECHAT or ALIPAY) and out_trade_no")
        script = Script(str(answer), str(value), times, code, channel, number)  # type: ignore[arg-type]  # code, channel and number were checked to be str or None just above
        with self._lock:
            self._scripts.append(script)
        return script

    def take(self, answer: str, *, code: str | None, channel: str, out_trade_no: str) -> str | None:
        """The scripted value for this answer about this order (paid with `code`), using one of
        its times; None: answer as usual. An order's own script comes before its code's."""
        with self._lock:
            for match_order in (True, False):
                for script in self._scripts:
                    if script.answer != answer:
                        continue
                    hit = (script.channel == channel and script.out_trade_no == out_trade_no) if match_order else (
                        script.code is not None and script.code == code)
                    if not hit:
                        continue
                    if script.times:
                        script.times -= 1
                        if script.times == 0:
                            self._scripts.remove(script)
                    return script.value
        return None

    def clear(self) -> None:
        with self._lock:
            self._scripts.clear()

    def snapshot(self) -> list[dict[str, object]]:
        with self._lock:
            return [s.describe() for s in self._scripts]
