"""terminal.history: the cashier's look back — a day's finished instructions, its totals, receipts.

The journal is real and its rows are made by the real lifecycle (the channel's answers are given
to it as the worker would); the clock is injected so "today" and "yesterday" are fixed.
"""

from __future__ import annotations

import datetime
import random
from pathlib import Path

import pytest

from protocol.amount import Direction
from protocol.messages import PayChannel, PayStatus
from terminal.channels.base import PayOutcome, PayState, RefundOutcome, RefundState
from terminal.history import History
from terminal.journal import Journal
from terminal.lifecycle import Accepted, Lifecycle
from terminal.machine import Event, State
from tests.terminal.helpers import DEVICE_ID, DEVICE_SEED, His, make_config

T0 = datetime.datetime(2026, 11, 23, 10, 0).timestamp()  # local time: mid-morning
DAY = datetime.date(2026, 11, 23)


class Till:
    """Runs instructions through the lifecycle to their end, at the clock's current time."""

    def __init__(self, path: Path) -> None:
        self.now = T0
        self.config = make_config()
        self.journal = Journal(path)
        self.core = Lifecycle(self.config, self.journal, clock=lambda: self.now, rng=random.Random(5).randbytes,
                              device_key_seed=DEVICE_SEED)
        self.history = History(self.journal, self.config, lambda: self.now)
        self.his = His(clock=lambda: self.now)

    def arrive(self, order_no: str, amount: str, msg_id: str) -> int:
        outcome = self.core.accept(self.his.envelope(order_no, amount, msg_id=msg_id))
        assert isinstance(outcome, Accepted)
        self.core.decide_on_arrival(outcome.seq)
        self.core.activate()
        return outcome.seq

    def collect(self, order_no: str, amount: str, msg_id: str, channel: PayChannel = PayChannel.WECHAT) -> None:
        seq = self.arrive(order_no, amount, msg_id)
        attempt = self.core.begin_attempt(seq, State.AWAITING_SCAN, channel, "134567******1234", 30.0)
        fen = self.journal.instruction(seq).amount_fen
        paid = PayOutcome(PayState.SUCCESS, channel_txn_id="4200" + attempt.out_trade_no[-10:], paid_fen=fen)
        assert self.core.apply(seq, State.PAYING, Event.PAID, pay=paid) is not None

    def cancel(self, order_no: str, amount: str, msg_id: str) -> None:
        seq = self.arrive(order_no, amount, msg_id)
        assert self.core.apply(seq, State.AWAITING_SCAN, Event.CANCEL, reason="cancelled") is not None

    def refund(self, order_no: str, amount: str, msg_id: str) -> None:
        seq = self.arrive(order_no, amount, msg_id)
        change = self.core.confirm_supervisor(seq)
        assert change is not None and change.after is State.REFUNDING
        fen = self.journal.instruction(seq).amount_fen
        done = RefundOutcome(RefundState.SUCCESS, channel_refund_id="5030", refunded_fen=fen)
        assert self.core.apply(seq, State.REFUNDING, Event.REFUNDED, refund=done) is not None


@pytest.fixture
def till(tmp_path: Path) -> Till:
    return Till(tmp_path / "j.db")


def test_a_day_lists_what_finished_that_day_newest_first(till: Till) -> None:
    till.now -= 86400  # yesterday
    till.collect("MZ0", "+1.00", "HIS-0")
    till.now = T0
    till.collect("MZ1", "+8.00", "HIS-1")
    till.now += 60
    till.cancel("MZ2", "+2.00", "HIS-2")
    assert [e.msg_id for e in till.history.entries()] == ["HIS-2", "HIS-1"]  # today, by the injected clock
    assert [e.msg_id for e in till.history.entries(DAY - datetime.timedelta(days=1))] == ["HIS-0"]


def test_an_entry_says_what_happened_to_the_money(till: Till) -> None:
    till.collect("MZ1", "+8.00", "HIS-1", PayChannel.ALIPAY)
    [entry] = till.history.entries()
    assert (entry.order_no, entry.direction, entry.amount_fen, entry.pay_status, entry.channel) == \
        ("MZ1", Direction.COLLECT, 800, PayStatus.SUCCESS, PayChannel.ALIPAY)
    assert entry.pay_order_no.startswith("4200") and not entry.delivered  # the bridge has not ACKed it


def test_the_order_search_takes_any_part_in_any_case(till: Till) -> None:
    till.collect("MZ2026A", "+1.00", "HIS-1")
    till.collect("ZY7", "+1.00", "HIS-2")
    assert [e.order_no for e in till.history.entries(order_no=" 26a ")] == ["MZ2026A"]
    assert [e.order_no for e in till.history.entries(order_no="zy")] == ["ZY7"]
    assert till.history.entries(order_no="none") == []


def test_day_bounds_are_local_midnight_to_midnight(till: Till) -> None:
    start, end = till.history.day_bounds(DAY)
    assert datetime.datetime.fromtimestamp(start) == datetime.datetime(2026, 11, 23)
    assert datetime.datetime.fromtimestamp(end) == datetime.datetime(2026, 11, 24)
    assert till.history.day_bounds() == (start, end)  # today, by the injected clock


def test_totals_count_money_that_moved_per_channel(till: Till) -> None:
    till.collect("MZ1", "+8.00", "HIS-1", PayChannel.WECHAT)
    till.collect("MZ2", "+5.50", "HIS-2", PayChannel.ALIPAY)
    till.refund("MZ1", "-3.00", "HIS-3")
    till.cancel("MZ3", "+9.99", "HIS-4")  # nothing moved
    totals = till.history.totals()
    assert totals.day == "2026-11-23"
    by_channel = {c.channel: (c.collected_count, c.collected_fen, c.refunded_count, c.refunded_fen) for c in totals.channels}
    assert by_channel == {PayChannel.WECHAT: (1, 800, 1, 300), PayChannel.ALIPAY: (1, 550, 0, 0)}
    assert (totals.collected_fen, totals.refunded_fen) == (1350, 300)


def test_a_duplicate_answered_from_the_journal_is_not_counted_again(till: Till) -> None:
    till.collect("MZ1", "+8.00", "HIS-1")
    till.arrive("MZ1", "+8.00", "HIS-2")  # HIS asks again under another msg_id: answered with the original
    entries = till.history.entries()
    assert [(e.msg_id, e.pay_status) for e in entries] == [("HIS-2", PayStatus.SUCCESS), ("HIS-1", PayStatus.SUCCESS)]
    assert till.history.totals().collected_fen == 800


def test_a_receipt_shows_the_transaction_without_the_patients_full_name(till: Till) -> None:
    till.collect("MZ1", "+8.00", "HIS-1")
    receipt = till.history.receipt("HIS-1")
    assert receipt is not None
    assert (receipt.order_no, receipt.amount_fen, receipt.pay_status, receipt.device_id) == \
        ("MZ1", 800, PayStatus.SUCCESS, DEVICE_ID)
    assert "张三明" not in repr(receipt)
    assert till.history.receipt("HIS-404") is None
