"""The journal: durable settings, compare-and-set transitions, the money gates, power cuts."""

import sqlite3
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.freshness import Verdict, classify
from protocol.messages import PayChannel
from terminal.journal import CommitPoint, Journal, PowerLostAtCommit, StaleState
from terminal.machine import Kind, State
from tests.budget import examples


def new_instruction(journal, msg_id="M1", order_no="O1", kind=Kind.COLLECT, amount_fen=1000):
    with journal.transaction("new") as tx:
        return tx.add_instruction(kid="k", msg_id=msg_id, envelope_ts=1, terminal_id="T", order_no=order_no, kind=kind,
                                  amount_fen=amount_fen, display=None, now=1.0)


def collected(journal, order_no="O1", paid_fen=1000):
    seq = new_instruction(journal, msg_id=f"C-{order_no}", order_no=order_no, amount_fen=paid_fen)
    with journal.transaction("paid") as tx:
        tx.add_attempt(seq=seq, out_trade_no=f"P-{order_no}", attempt_no=1, channel=PayChannel.WECHAT, code_masked="x", now=1, deadline=2)
        tx.add_collection(order_no=order_no, seq=seq, out_trade_no=f"P-{order_no}", channel=PayChannel.WECHAT,
                          channel_txn_id="42", paid_fen=paid_fen, now=1)
    return seq


def test_wal_and_full_sync(tmp_path):
    journal = Journal(tmp_path / "j.db")
    assert journal._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert journal._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_advance_is_compare_and_set(tmp_path):
    journal = Journal(tmp_path / "j.db")
    seq = new_instruction(journal)
    with journal.transaction("show") as tx:
        tx.advance(seq, State.QUEUED, State.AWAITING_SCAN, 2.0)
    with pytest.raises(StaleState):
        with journal.transaction("show again") as tx:
            tx.advance(seq, State.QUEUED, State.AWAITING_SCAN, 3.0)
    assert journal.instruction(seq).state is State.AWAITING_SCAN


def test_one_collection_per_order(tmp_path):
    journal = Journal(tmp_path / "j.db")
    collected(journal)
    with pytest.raises(sqlite3.IntegrityError):
        collected(journal)


def test_seen_store_speaks_the_protocol_rule(tmp_path):
    journal = Journal(tmp_path / "j.db")
    with journal.transaction("seen") as tx:
        tx.remember("k", "M1", b"d" * 32, 100.0)
    assert classify(journal, "k", "M1", b"d" * 32, 200.0, 3600) is Verdict.RETRY
    assert classify(journal, "k2", "M1", b"x" * 32, 200.0, 3600) is Verdict.NEW
    reopened = Journal(tmp_path / "j.db")
    assert reopened.seen("k", "M1").first_seen == 100.0


@settings(max_examples=examples(60))
@given(paid=st.integers(1, 10_000), ops=st.lists(st.tuples(st.integers(1, 6_000), st.sampled_from(["keep", "refunded", "failed"])), max_size=12))
def test_refunds_never_exceed_the_collection(tmp_path_factory, paid, ops):
    journal = Journal(tmp_path_factory.mktemp("j") / "j.db")
    collected(journal, paid_fen=paid)
    committed = 0
    for n, (amount, fate) in enumerate(ops):
        seq = new_instruction(journal, msg_id=f"R{n}", kind=Kind.REFUND, amount_fen=amount)
        with journal.transaction("reserve") as tx:
            ok = tx.reserve_refund(out_refund_no=f"RF{n}", seq=seq, order_no="O1", refund_fen=amount, now=2)
        assert ok == (committed + amount <= paid)
        if ok:
            committed += amount
            if fate != "keep":
                with journal.transaction("settle") as tx:
                    tx.settle_refund(f"RF{n}", refunded=fate == "refunded", channel_refund_id="r", now=3)
                if fate == "failed":
                    committed -= amount
        assert journal.committed_refunds_fen("O1") == committed <= paid


def test_concurrent_reservations_from_two_connections(tmp_path):
    path = tmp_path / "j.db"
    journal = Journal(path)
    collected(journal, paid_fen=1000)
    seqs = [new_instruction(journal, msg_id=f"R{n}", kind=Kind.REFUND, amount_fen=300) for n in range(8)]
    others = [Journal(path) for _ in range(4)]
    wins = []

    def reserve(j, n):
        with j.transaction("reserve") as tx:
            if tx.reserve_refund(out_refund_no=f"RF{n}", seq=seqs[n], order_no="O1", refund_fen=300, now=2):
                wins.append(n)

    threads = [threading.Thread(target=reserve, args=(others[n % 4], n)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 3  # 3 x 300 <= 1000 < 4 x 300
    assert journal.committed_refunds_fen("O1") == 900


def test_power_cut_before_commit_rolls_back_and_after_commit_keeps(tmp_path):
    path = tmp_path / "j.db"
    points = []

    def cut_at(number, phase):
        def hook(point: CommitPoint):
            points.append(point)
            if point.number == number and point.phase == phase:
                raise PowerLostAtCommit(point.label)
        return hook

    journal = Journal(path, on_commit=cut_at(1, "before"))
    with pytest.raises(PowerLostAtCommit):
        new_instruction(journal)
    with pytest.raises(PowerLostAtCommit):
        journal.unfinished()  # a dead journal refuses everything
    assert Journal(path).unfinished() == []

    journal = Journal(path, on_commit=cut_at(1, "after"))
    with pytest.raises(PowerLostAtCommit):
        new_instruction(journal)
    assert journal.dead
    assert [r.msg_id for r in Journal(path).unfinished()] == ["M1"]
    assert points[0] == CommitPoint(1, "new", "before")
