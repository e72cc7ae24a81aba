"""The journal: its state machine (property-tested against a model), persistence, and the replay store."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import ErrorCode, ProtocolError
from protocol.freshness import Verdict, classify

from bridge.journal import TRANSITIONS, JState, Journal, NewInstruction, StoredResult, can_advance
from tests.budget import examples


def new(msg_id: str, device: str = "D1") -> NewInstruction:
    return NewInstruction(msg_id, "k1", os.urandom(32), b'{"v":1}', 1795000000, "T1", device, "MZ1", "+12.50")


def stored(tag: str = "R1") -> StoredResult:
    return StoredResult(tag, b'{"result":"' + tag.encode() + b'"}', "SUCCESS", "WECHAT", "420000", "+12.50", 1795000042, None)


OPERATIONS = st.lists(st.sampled_from(["sent", "progress", "result", "refused", "result2"]), max_size=8)


@given(OPERATIONS)
@settings(max_examples=examples(60))
def test_state_machine_matches_the_transition_table(operations: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal(Path(tmp) / "j.sqlite3", synchronous="NORMAL")
        assert journal.accept(new("M1"))
        model = JState.ACCEPTED
        first_result: bytes | None = None
        for op in operations:
            target = {"sent": JState.SENT, "progress": JState.PROGRESS, "result": JState.RESULT_STORED,
                      "result2": JState.RESULT_STORED, "refused": JState.REFUSED}[op]
            if op == "sent":
                applied = journal.mark_sent("M1")
            elif op == "progress":
                applied = journal.mark_progress("M1", "paying")
            elif op in ("result", "result2"):
                applied = journal.store_result("M1", stored(op))
            else:
                applied = journal.store_refusal("M1", "auth_failed", "keys differ")
            assert applied == can_advance(model, target)
            if applied:
                model = target
                if target is JState.RESULT_STORED:
                    first_result = stored(op).envelope
        row = journal.get("M1")
        assert row is not None and row.state is model
        if model is JState.RESULT_STORED:
            assert row.result_envelope == first_result  # a final answer is never overwritten
        history = [s for s, _ in journal.history("M1")]
        assert history[0] == "accepted" and history[-1] == model.value
        journal.close()


def test_final_states_have_no_way_out() -> None:
    assert TRANSITIONS[JState.RESULT_STORED] == frozenset() and TRANSITIONS[JState.REFUSED] == frozenset()
    assert all(s.final == (not TRANSITIONS[s]) for s in JState)


def test_everything_survives_reopening(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    for msg_id in ("A", "B", "C"):
        journal.accept(new(msg_id))
    journal.accept(new("OTHER", device="D2"))
    journal.mark_sent("B")
    journal.store_result("C", stored())
    journal.close()
    again = Journal(tmp_path / "j.sqlite3")
    assert [r.msg_id for r in again.unsent_for("D1")] == ["A"]  # only what the device never acknowledged
    assert again.get("C").result_envelope == stored().envelope  # type: ignore[union-attr]  # C was stored above, so get() finds it
    assert again.counts() == {"accepted": 2, "sent": 1, "result_stored": 1}
    assert not again.accept(new("A"))  # a msg_id is recorded once
    again.close()


def test_the_journal_is_the_persistent_replay_store(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3", clock=lambda: 1000.0)
    item = new("M1")
    journal.accept(item)
    assert classify(journal, "k1", "M1", item.digest, 1000.0 + 3600, 86400) is Verdict.RETRY
    with pytest.raises(ProtocolError) as conflict:
        classify(journal, "k1", "M1", os.urandom(32), 1000.0, 86400)
    assert conflict.value.code is ErrorCode.MSG_ID_CONFLICT
    with pytest.raises(ProtocolError) as replay:
        classify(journal, "k1", "M1", item.digest, 1000.0 + 86401, 86400)
    assert replay.value.code is ErrorCode.REPLAY
    assert classify(journal, "k1", "M2", item.digest, 1000.0, 86400) is Verdict.NEW


def test_a_msg_id_under_another_kid_is_a_conflict_not_new_work(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3", clock=lambda: 1000.0)
    journal.accept(new("M1"))
    with pytest.raises(ProtocolError) as conflict:
        classify(journal, "k-other", "M1", os.urandom(32), 1000.0, 86400)
    assert conflict.value.code is ErrorCode.MSG_ID_CONFLICT


def test_group_commit_keeps_each_transition_separate(tmp_path: Path) -> None:
    import threading

    journal = Journal(tmp_path / "j.sqlite3")
    outcomes: dict[str, list[bool]] = {}
    lock = threading.Lock()
    barrier = threading.Barrier(24)

    def worker(msg_id: str) -> None:
        barrier.wait()
        ok = journal.accept(new(msg_id))
        with lock:
            outcomes.setdefault(msg_id, []).append(ok)

    names = [f"M{i}" for i in range(16)] + ["DUP"] * 8  # a refused duplicate must not undo its batch
    threads = [threading.Thread(target=worker, args=(name,)) for name in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(outcomes[f"M{i}"] == [True] for i in range(16))
    assert sorted(outcomes["DUP"]) == [False] * 7 + [True]
    assert journal.counts() == {"accepted": 17}
    assert len(journal.history("DUP")) == 1
    journal.close()
