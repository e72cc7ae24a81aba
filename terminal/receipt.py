"""What a receipt shows (data only; the UI renders it with Pillow at 58 mm / 384 px).

Built from the journal by `TerminalService.receipt(msg_id)`. Never holds a payment code or a full
patient name. `lookup_text()` is what the receipt's QR code carries, so a cashier can find the
transaction again (history search by order number, or the channel's own lookup by transaction no).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from protocol.amount import Direction
from protocol.messages import BillItem, PayChannel, PayStatus
from terminal.config import DeviceConfig
from terminal.journal import Journal
from terminal.machine import Kind
from terminal.texts import CHANNEL_NAME, NOT_COMPLETED, RESULT_REFUNDED, RESULT_SUCCESS, Text, display_money, reason_text


@dataclass(frozen=True, slots=True)
class Receipt:
    merchant_name: str
    merchant_name_en: str | None
    device_id: str
    terminal_id: str
    order_no: str
    direction: Direction
    amount_fen: int
    pay_status: PayStatus
    channel: PayChannel | None
    channel_txn_no: str  # WeChat transaction_id / Alipay trade_no, or the refund's id; "" if none
    out_trade_no: str | None  # our order number at the channel (for a refund: out_refund_no)
    finished_at: int  # unix seconds
    patient: str | None  # already masked
    items: tuple[BillItem, ...]
    error_code: str | None

    @property
    def amount_text(self) -> str:
        """'¥1,212.50' for a collection, '-¥1,212.50' for a refund (never a bare number); the printed
        receipt shows exactly this."""
        return display_money(self.direction, self.amount_fen)

    @property
    def title(self) -> Text:
        if self.pay_status is PayStatus.SUCCESS:
            return RESULT_SUCCESS
        if self.pay_status is PayStatus.REFUNDED:
            return RESULT_REFUNDED
        return reason_text(self.error_code) or NOT_COMPLETED

    @property
    def channel_name(self) -> Text | None:
        return None if self.channel is None else CHANNEL_NAME[self.channel]

    def time_text(self) -> str:
        """Local time as printed: '2026-11-23 10:12:03'."""
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.finished_at))

    def lookup_text(self) -> str:
        return f"his-receipt:v1:{self.device_id}:{self.order_no}:{self.channel_txn_no}"


def receipt_for(journal: Journal, config: DeviceConfig, msg_id: str) -> Receipt | None:
    """The receipt of the finished instruction with this HIS msg_id (None if there is none)."""
    row = journal.find_msg_id(msg_id)
    if row is None or row.pay_status is None or row.finished_at is None:
        return None
    result = journal.result_for(row.seq)
    if result is None:
        return None
    if row.kind is Kind.COLLECT:
        collection = journal.collection(row.order_no)
        out_no = collection.out_trade_no if collection is not None and result.pay_order_no else None
    else:
        refund = journal.refund_for(row.seq)
        out_no = None if refund is None else refund.out_refund_no
    display = row.display
    return Receipt(config.merchant_name, config.merchant_name_en, config.device.device_id, row.terminal_id, row.order_no,
                   row.direction, result.amount_fen, row.pay_status, row.channel, result.pay_order_no, out_no,
                   int(row.finished_at), None if display is None else display.patient,
                   () if display is None else display.items, row.error_code)
