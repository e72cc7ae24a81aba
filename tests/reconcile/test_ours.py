"""The read-only adapter over the bridge's journal, against journals written by the bridge's own API."""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path

import pytest

from bridge.journal import Journal, NewInstruction, StoredResult
from reconcile.errors import SourceUnavailable
from reconcile.model import COLLECT, FLAG_ECHO, FLAG_LATE, REFUND, Channel, State
from reconcile.ours import day_window, read_ours

CHINA = datetime.timezone(datetime.timedelta(hours=8))
DAY = datetime.date(2026, 11, 22)
START, END = day_window(DAY, CHINA)


def accept(journal: Journal, msg_id: str, order: str, amount: str) -> None:
    journal.accept(NewInstruction(msg_id, "k1", hashlib.sha256(msg_id.encode()).digest(), b"{}", START, "T0001", "D-SN-1", order, amount))


def result(journal: Journal, msg_id: str, status: str, pay: str, amount: str, at: int, error: str | None = None) -> None:
    journal.store_result(msg_id, StoredResult("R" + msg_id, b"{}", status, "WECHAT", pay, amount, at, error))


@pytest.fixture()
def journal_path(tmp_path: Path) -> Path:
    clock = [float(START + 60)]
    path = tmp_path / "journal.db"
    j = Journal(path, synchronous="NORMAL", clock=lambda: clock[0])
    accept(j, "M1", "MZ1", "+12.50"); result(j, "M1", "SUCCESS", "4200001", "+12.50", START + 100)
    accept(j, "M2", "MZ1", "-2.50"); result(j, "M2", "REFUNDED", "5030001", "-2.50", START + 200)
    accept(j, "M3", "MZ3", "+1.00"); result(j, "M3", "FAILED", "", "+1.00", START + 300)
    accept(j, "M4", "MZ1", "+12.50"); result(j, "M4", "SUCCESS", "4200001", "+12.50", START + 400, "duplicate_order")
    accept(j, "M5", "MZ5", "+3.00")  # still in flight
    accept(j, "M6", "MZ6", "+3.00"); j.store_refusal("M6", "unknown_terminal", "no")
    accept(j, "M7", "MZ7", "+9.99"); result(j, "M7", "SUCCESS", "4200007", "+9.99", END + 5)  # its result the next day: late
    j.close()
    return path


def test_reads_the_days_instructions_and_results(journal_path):
    got = {e.msg_id: e for e in read_ours(journal_path, DAY, CHINA, keep_text=True).rows()}
    assert sorted(got) == ["M1", "M2", "M3", "M4", "M5", "M6", "M7"]
    assert got["M7"].flags == FLAG_LATE and got["M7"].at == END + 5 and got["M7"].state == State.MOVED
    assert (got["M1"].direction, got["M1"].fen, got["M1"].state, got["M1"].channel, got["M1"].pay_order_no) == (COLLECT, 1250, State.MOVED, Channel.WECHAT, "4200001")
    assert (got["M2"].direction, got["M2"].fen, got["M2"].state) == (REFUND, 250, State.MOVED)
    assert got["M3"].state == State.NOT_MOVED
    assert got["M4"].flags == FLAG_ECHO  # the first payment's result replayed: moves nothing itself
    assert got["M5"].state == State.PENDING and got["M5"].channel == Channel.UNKNOWN
    assert got["M6"].state == State.NOT_MOVED
    assert got["M1"].at == START + 100 and got["M1"].line == 1


def test_reads_while_the_bridge_holds_the_journal_open_and_never_writes(journal_path):
    before = journal_path.read_bytes()
    assert len(read_ours(journal_path, DAY, CHINA)) == 7
    assert journal_path.read_bytes() == before  # reading changed nothing (SQLite may add its -shm index)
    live = Journal(journal_path, synchronous="NORMAL", clock=lambda: float(START + 70))  # the bridge runs again
    try:
        accept(live, "M8", "MZ8", "+1.00")
        got = {e.msg_id: e for e in read_ours(journal_path, DAY, CHINA, keep_text=True).rows()}
        assert got["M8"].state == State.PENDING and len(got) == 8
    finally:
        live.close()


def test_missing_or_foreign_files_say_what_to_check(tmp_path):
    with pytest.raises(SourceUnavailable, match="does not exist"):
        read_ours(tmp_path / "nope.db", DAY, CHINA)
    (tmp_path / "notes.db").write_text("hello")
    with pytest.raises(SourceUnavailable, match="notes.db"):
        read_ours(tmp_path / "notes.db", DAY, CHINA)


def test_a_value_with_a_separator_character_is_read_row_by_row(tmp_path):
    path = tmp_path / "odd.db"
    j = Journal(path, synchronous="NORMAL", clock=lambda: float(START + 60))
    accept(j, "M1", "MZ1", "+1.00"); result(j, "M1", "SUCCESS", "42\x1e00001", "+1.00", START + 100)
    accept(j, "M2", "MZ2", "+2.00"); result(j, "M2", "SUCCESS", "4200002", "+2.00", START + 200)
    j.close()
    got = list(read_ours(path, DAY, CHINA, keep_text=True).rows())
    assert [(e.msg_id, e.pay_order_no, e.fen) for e in got] == [("M1", "42\x1e00001", 100), ("M2", "4200002", 200)]


def test_without_text_the_ids_are_keys_and_are_read_back_by_seq(journal_path):
    from reconcile.model import funds_key
    from reconcile.ours import texts_by_seq

    keyed = read_ours(journal_path, DAY, CHINA)
    full = list(read_ours(journal_path, DAY, CHINA, keep_text=True).rows())
    assert keyed.texts is None and list(keyed.line) == [e.line for e in full]
    assert list(keyed.msg_key) == [hash(e.msg_id) for e in full]
    assert list(keyed.funds) == [0 if e.flags & FLAG_ECHO else funds_key(e.pay_order_no, e.direction) for e in full]
    assert texts_by_seq(journal_path, [2, 1]) == {1: ("MZ1", "M1", "4200001"), 2: ("MZ1", "M2", "5030001")}
    funds_only = read_ours(journal_path, DAY, CHINA, funds_only=True)
    assert len(funds_only.msg_key) == 0 and list(funds_only.funds) == list(keyed.funds)


def test_a_journal_larger_than_a_chunk_is_read_whole(tmp_path, monkeypatch):
    from reconcile import ours

    monkeypatch.setattr(ours, "CHUNK", 2)
    path = tmp_path / "chunks.db"
    j = Journal(path, synchronous="NORMAL", clock=lambda: float(START + 60))
    for k in range(7):
        accept(j, f"M{k}", f"MZ{k}", "+1.00"); result(j, f"M{k}", "SUCCESS", f"42000{k}", "+1.00", START + 100 + k)
    j.close()
    assert [e.msg_id for e in read_ours(path, DAY, CHINA, keep_text=True).rows()] == [f"M{k}" for k in range(7)]
