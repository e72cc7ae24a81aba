"""What an issued payment code does when it is scanned, and the codes themselves.

Behaviours (the `behaviour` of `POST /sandbox/v1/codes`):
    success             pays at once (or is declined for insufficient balance if the balance is short)
    insufficient        always declined: insufficient balance
    userpaying:N        "user paying" until N seconds after the scan, then paid (queries see it)
    userpaying_forever  "user paying" until reversed
    systemerror         the channel answers SYSTEMERROR, but the payment did go through (query: paid)
    systemerror_unpaid  the channel answers SYSTEMERROR and nothing was recorded (query: no such order)
    slow:N              the payment goes through at once; the answer leaves N seconds later
    noreply             the request is swallowed: no answer ever, nothing recorded
Behaviours act on the payment call of that code only; queries, reversals and refunds answer at once.

Codes route like the real ones: WeChat Pay 18 digits starting 10-15, Alipay 16-24 digits starting
25-30 (the sandbox issues 18-digit Alipay codes). Two other kinds a patient may show are refused by
both channels with a message that says what they are: UnionPay (云闪付) codes, 19 digits starting
62, and e-CNY (数字人民币) codes, 19 digits starting 01 (`POST /sandbox/v1/codes` issues them too,
with no account behind them, to test that refusal).
"""

from __future__ import annotations

import enum
import re
import secrets
from dataclasses import dataclass

MAX_SECONDS = 3600.0
_SECONDS = re.compile(r"(0|[1-9][0-9]{0,3})(\.[0-9]{1,3})?", re.ASCII)


class Kind(enum.Enum):
    SUCCESS = "success"
    INSUFFICIENT = "insufficient"
    USERPAYING = "userpaying"
    USERPAYING_FOREVER = "userpaying_forever"
    SYSTEMERROR = "systemerror"
    SYSTEMERROR_UNPAID = "systemerror_unpaid"
    SLOW = "slow"
    NOREPLY = "noreply"


_TIMED = {Kind.USERPAYING, Kind.SLOW}


@dataclass(frozen=True, slots=True)
class Behaviour:
    kind: Kind
    seconds: float = 0.0

    @property
    def text(self) -> str:
        if self.kind in _TIMED:
            return f"{self.kind.value}:{self.seconds:g}"
        return self.kind.value

    @classmethod
    def parse(cls, text: object) -> "Behaviour":
        """Parse "success", "userpaying:5", "slow:2.5"...; ValueError names what is accepted."""
        if not isinstance(text, str):
            raise ValueError("behaviour must be a string such as \"success\" or \"userpaying:5\"")
        name, _, arg = text.partition(":")
        try:
            kind = Kind(name)
        except ValueError:
            allowed = ", ".join(k.value + (":N" if k in _TIMED else "") for k in Kind)
            raise ValueError(f"behaviour {text[:40]!r} is not one of {allowed}") from None
        if kind in _TIMED:
            if not _SECONDS.fullmatch(arg) or not 0 <= float(arg) <= MAX_SECONDS:
                raise ValueError(f"behaviour {kind.value}:N needs N seconds between 0 and {MAX_SECONDS:g}, as in {kind.value}:5")
            return cls(kind, float(arg))
        if arg or ":" in text:
            raise ValueError(f"behaviour {kind.value} takes no argument")
        return cls(kind)


def new_code(channel: str) -> str:
    if channel == "WECHAT":
        return "1" + secrets.choice("012345") + "".join(secrets.choice("0123456789") for _ in range(16))
    prefix = secrets.choice(["25", "26", "27", "28", "29", "30"])
    return prefix + "".join(secrets.choice("0123456789") for _ in range(16))


def channel_of_code(code: str) -> str | None:
    if re.fullmatch(r"1[0-5][0-9]{16}", code, re.ASCII):
        return "WECHAT"
    if re.fullmatch(r"(2[5-9]|30)[0-9]{14,22}", code, re.ASCII):
        return "ALIPAY"
    return None


FOREIGN = {
    "UNIONPAY": (re.compile(r"62[0-9]{17}", re.ASCII), "银联云闪付付款码，本商户不能用此渠道收款，请患者出示微信或支付宝付款码",
                 "a UnionPay (云闪付) payment code: not a code this channel collects"),
    "ECNY": (re.compile(r"01[0-9]{17}", re.ASCII), "数字人民币付款码，本商户不能用此渠道收款，请患者出示微信或支付宝付款码",
             "an e-CNY (数字人民币) payment code: not a code this channel collects"),
}


def foreign_code(code: str) -> str | None:
    """"UNIONPAY" or "ECNY" for those codes; None for anything else."""
    for name, (pattern, _zh, _en) in FOREIGN.items():
        if pattern.fullmatch(code):
            return name
    return None


def new_foreign_code(kind: str) -> str:
    return ("62" if kind == "UNIONPAY" else "01") + "".join(secrets.choice("0123456789") for _ in range(17))


def new_buyer_id(channel: str) -> str:
    if channel == "WECHAT":  # an openid under the merchant's appid
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        return "o" + "".join(secrets.choice(alphabet) for _ in range(27))
    return "2088" + "".join(secrets.choice("0123456789") for _ in range(12))  # an Alipay user id


def mask(code: str) -> str:
    return code[:4] + "*" * (len(code) - 8) + code[-4:] if len(code) >= 12 else "*" * len(code)
