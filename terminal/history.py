"""The POS's history: finished instructions, day totals and receipts (the read side of the journal).

    History(journal, config, clock)
    entries(day=None, order_no=None) -> [HistoryEntry]   a local day's finished instructions, newest first
    totals(day=None) -> DayTotals                         money that moved that day, per channel
    receipt(msg_id) -> Receipt | None                     what the receipt of a finished instruction shows
    day_bounds(day) -> (start, end)                       the local day in unix seconds

What it owns: how the cashier looks back — which finished instructions belong to a day (local
midnight to midnight, by the time they finished), the order-number search (a case-insensitive part),
and what counts towards a day's totals (money that moved: a duplicate's original answer and failures
do not). It only reads the journal; the terminal service holds its lock around these calls. `day`
defaults to today by the injected clock.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, fields
from typing import Callable

from protocol.messages import PayChannel, PayStatus, ResultCode
from terminal.config import DeviceConfig
from terminal.journal import InstructionRow, Journal
from terminal.receipt import Receipt, receipt_for
from terminal.view import ResultView, result_view


@dataclass(frozen=True, slots=True)
class HistoryEntry(ResultView):
    """A finished instruction in the history: its result as the result screen shows it, and which
    window it was for and whether the bridge acknowledged the result."""

    terminal_id: str
    delivered: bool  # the bridge acknowledged the result

    @classmethod
    def of(cls, result: ResultView, *, terminal_id: str, delivered: bool) -> "HistoryEntry":
        return cls(**{f.name: getattr(result, f.name) for f in fields(ResultView)}, terminal_id=terminal_id, delivered=delivered)


@dataclass(frozen=True, slots=True)
class ChannelTotals:
    channel: PayChannel
    collected_count: int = 0
    collected_fen: int = 0
    refunded_count: int = 0
    refunded_fen: int = 0

    @property
    def net_fen(self) -> int:
        return self.collected_fen - self.refunded_fen


@dataclass(frozen=True, slots=True)
class DayTotals:
    day: str  # local date, ISO "2026-11-23"
    channels: tuple[ChannelTotals, ...]  # one per channel with activity, in PayChannel order

    @property
    def collected_fen(self) -> int:
        return sum(c.collected_fen for c in self.channels)

    @property
    def refunded_fen(self) -> int:
        return sum(c.refunded_fen for c in self.channels)


def history_entry(row: InstructionRow, pay_order_no: str, amount_fen: int, delivered: bool) -> HistoryEntry:
    return HistoryEntry.of(result_view(row, pay_order_no, amount_fen), terminal_id=row.terminal_id, delivered=delivered)


def history_entries(journal: Journal, start: float, end: float, order_no: str | None = None) -> list[HistoryEntry]:
    """Finished between start and end (unix s), newest first, optionally by part of the order number."""
    needle = None if not order_no else order_no.strip().lower()
    entries = []
    for row in journal.finished_between(start, end):
        if needle and needle not in row.order_no.lower():
            continue
        result = journal.result_for(row.seq)
        if result is not None:
            entries.append(history_entry(row, result.pay_order_no, result.amount_fen, result.delivered_at is not None))
    return entries[::-1]


def totals(day: str, entries: list[HistoryEntry]) -> DayTotals:
    """Money that moved: duplicates (nothing charged) and failures do not count."""
    sums: dict[PayChannel, list[int]] = {}
    for e in entries:
        if e.channel is None:
            continue
        moved = (e.pay_status is PayStatus.SUCCESS and e.error_code != ResultCode.DUPLICATE_ORDER.value) or e.pay_status is PayStatus.REFUNDED
        if not moved:
            continue
        s = sums.setdefault(e.channel, [0, 0, 0, 0])
        index = 0 if e.pay_status is PayStatus.SUCCESS else 2
        s[index] += 1
        s[index + 1] += e.amount_fen
    return DayTotals(day, tuple(ChannelTotals(c, *sums[c]) for c in PayChannel if c in sums))


class History:
    def __init__(self, journal: Journal, config: DeviceConfig, clock: Callable[[], float]) -> None:
        self.journal = journal
        self.config = config
        self.clock = clock

    def today(self) -> datetime.date:
        return datetime.date.fromtimestamp(self.clock())

    def day_bounds(self, day: datetime.date | None = None) -> tuple[float, float]:
        day = day or self.today()
        start = datetime.datetime.combine(day, datetime.time.min).timestamp()  # local midnight
        end = datetime.datetime.combine(day + datetime.timedelta(days=1), datetime.time.min).timestamp()
        return start, end

    def entries(self, day: datetime.date | None = None, order_no: str | None = None) -> list[HistoryEntry]:
        """Finished instructions of a local day (default today), newest first; `order_no` filters
        by a case-insensitive part of the order number."""
        start, end = self.day_bounds(day)
        return history_entries(self.journal, start, end, order_no)

    def totals(self, day: datetime.date | None = None) -> DayTotals:
        day = day or self.today()
        return totals(day.isoformat(), self.entries(day))

    def receipt(self, msg_id: str) -> Receipt | None:
        """The receipt of a finished instruction (by its HIS msg_id), or None."""
        return receipt_for(self.journal, self.config, msg_id)
