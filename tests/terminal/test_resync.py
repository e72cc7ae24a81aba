"""Issue 14: a POS's orders re-synced from the payment gateway's list into a real journal
(terminal.resync): collections gate a second `+`, refunds leave what the gateway says to refund,
the journal's rows still verify, and the mark is raised above the gateway's (and the bridge's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from terminal.journal import Journal
from terminal.journal_admin import check
from terminal.resync import ResyncError, after_resync_bridge_mark, resync


def order(n: str, fen: int, state: str = "succeeded", refunds: list[dict] | None = None) -> dict:
    return {"payment_id": int(n[-1]), "terminal_id": "T0001", "order_no": f"MZ{n}", "out_trade_no": f"P{n}", "channel": "WECHAT",
            "amount_fen": fen, "state": state, "channel_txn_id": f"42000{n}" if state == "succeeded" else None,
            "created_at": 1_790_000_000, "refunds": refunds or []}


def refund(n: str, fen: int, state: str = "succeeded") -> dict:
    return {"out_refund_no": f"R{n}", "amount_fen": fen, "state": state, "channel_refund_id": f"50300{n}", "created_at": 1_790_000_100}


ORDERS = [order("A1", 1250, refunds=[refund("A1", 250), refund("A2", 100, "refunding"), refund("A3", 900, "failed")]),
          order("B2", 300), order("C3", 700, "paying"), order("D4", 500, "failed")]


@pytest.fixture
def journal(tmp_path: Path):
    j = Journal(tmp_path / "journal.db")
    yield j
    j.close()


def test_collections_and_refunds_are_written_as_the_gateway_holds_them(journal: Journal) -> None:
    report = resync(journal, ORDERS, gateway_mark=40)
    assert (report.collections, report.refunds, report.already, report.under_way) == (2, 2, 0, 1)
    a = journal.collection("MZA1")
    assert a is not None and (a.out_trade_no, a.paid_fen) == ("PA1", 1250)
    assert journal.committed_refunds_fen("MZA1") == 350 and journal.refunded_fen("MZA1") == 250  # one settled, one under way
    assert journal.collection("MZB2") is not None
    assert journal.collection("MZC3") is None and journal.collection("MZD4") is None  # under way / failed: not collected here
    assert journal.high_water_mark == 41 and report.mark == 41
    assert not journal.unfinished()  # nothing for the service to resume


def test_the_re_synced_journal_passes_its_own_check_and_a_second_re_sync_adds_nothing(journal: Journal, tmp_path: Path) -> None:
    resync(journal, ORDERS, gateway_mark=None)
    again = resync(journal, ORDERS, gateway_mark=None)
    assert (again.collections, again.refunds, again.already) == (0, 0, 2)
    journal.close()
    report, _ = check(tmp_path / "journal.db")
    assert report.ok, report.problems


def test_refunds_beyond_the_collection_write_nothing(journal: Journal) -> None:
    bad = [order("E5", 100, refunds=[refund("E1", 80), refund("E2", 80)])]
    before = journal.high_water_mark
    with pytest.raises(ResyncError, match="exceed"):
        resync(journal, bad, gateway_mark=10)
    assert journal.collection("MZE5") is None and journal.high_water_mark == before


def test_the_first_bridge_marks_after_a_re_sync_take_a_higher_bridge_mark_once(journal: Journal) -> None:
    resync(journal, ORDERS, gateway_mark=20)
    after_resync_bridge_mark(journal, 35)  # the bridge heard more commits at link-up than the gateway had
    assert journal.high_water_mark == 36
    after_resync_bridge_mark(journal, 90)  # only once: afterwards the usual rule (lock) applies
    assert journal.high_water_mark == 36
