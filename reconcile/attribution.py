"""Which bill rows are the POS's own trades; the others on the same merchant account, kept apart.

A hospital's merchant account (WeChat 商户号, Alipay app) is rarely the POS's alone: the official
account takes JSAPI payments, a kiosk shows NATIVE QR codes, the pharmacy's till scans payment
codes under its own order numbers. Only the POS's trades are reconciled against HIS and our
journals; matching the others by amount and time would pin them on POS attempts that failed. A
bill row is the POS's when all of these hold:

- its trade type (WeChat 交易类型) is MICROPAY: the POS collects by payment code only (Alipay's
  trade bill has no such column);
- its merchant order number (商户订单号) has the POS's shape, `P` + 26 hex digits + the attempt in
  two digits (terminal/lifecycle.py `out_trade_no`; refund rows carry their payment's number);
- if device numbers are configured (`--pos-device`: the `device_info` / `terminal_id` the POSes send,
  shown as WeChat 设备号 / Alipay 终端号), its device number is one of them.

Every other row becomes an `OtherTrade`, listed in the report with the reason, never a difference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from reconcile.model import Channel, State, effect_of

# terminal/lifecycle.py out_trade_no: "P" + sha256(...)[:26] + f"{attempt_no:02d}" (a test holds the two together).
POS_ORDER_NO = re.compile(r"P[0-9a-f]{26}[0-9]{2}")
POS_TRADE_TYPES = frozenset({"MICROPAY"})


@dataclass(frozen=True, slots=True)
class Attribution:
    devices: frozenset[str] = frozenset()  # empty: any device number

    def why_not(self, out_trade_no: str, trade_type: str | None, device: str) -> str | None:
        """None if the row is the POS's; else why not, for the report."""
        if trade_type is not None and trade_type not in POS_TRADE_TYPES:
            return f"trade type {trade_type}, not a payment-code payment"
        if POS_ORDER_NO.fullmatch(out_trade_no) is None:
            return "merchant order number not made by the POS"
        if self.devices and device not in self.devices:
            return f"device number {device or '(none)'} is not a POS's"
        return None


POS = Attribution()


@dataclass(frozen=True, slots=True)
class OtherTrade:
    """A bill row that is not the POS's: listed, never matched."""

    channel: Channel
    where: str  # "wechat-2026-11-22.csv line 7"
    out_trade_no: str
    pay_order_no: str  # transaction id, or refund id
    direction: int
    fen: int
    state: State
    at: str
    trade_type: str  # WeChat 交易类型; "" for Alipay
    device: str
    why: str

    @property
    def effect(self) -> int:
        return effect_of(self.direction, self.fen, self.state)


@dataclass
class OtherSink:
    """Where a bill reader puts the rows that are not the POS's (one per bill file)."""

    origin: str
    attribution: Attribution = POS
    trades: list[OtherTrade] = field(default_factory=list)
