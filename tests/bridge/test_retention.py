"""Issue 14, finding 8: journals are pruned; what leaves them is archived, checksummed and still reconciled."""

from __future__ import annotations

import datetime
import gzip
from pathlib import Path

import pytest

from bridge.journal import Journal, JournalError, NewInstruction, StoredResult
from bridge.retention import archive_name, prune, read_archive, verify_archive
from reconcile.ours import read_ours

CHINA = datetime.timezone(datetime.timedelta(hours=8))
DAY = 86400


def _pay(journal: Journal, n: int, *, at: list[float]) -> None:
    msg_id = f"HIS-{n:04d}"
    journal.accept(NewInstruction(msg_id, "k1", bytes(32), b'{"e":1}', int(at[0]), "T1", "D1", f"MZ{n:04d}", "+12.50"))
    journal.store_result(msg_id, StoredResult(f"R-{msg_id}", b'{"r":1}', "SUCCESS", "WECHAT", f"4200{n:06d}", "+12.50",
                                              int(at[0]) + 5, None))


def test_old_finished_records_are_archived_per_month_and_removed(tmp_path: Path) -> None:
    now = datetime.datetime(2026, 12, 1, 12, tzinfo=datetime.timezone.utc).timestamp()
    clock = [now - 450 * DAY]
    journal = Journal(tmp_path / "journal.sqlite3", clock=lambda: clock[0])
    for n in range(3):
        _pay(journal, n, at=clock)
    clock[0] = now - 10 * DAY
    _pay(journal, 99, at=clock)  # recent: stays
    journal.accept(NewInstruction("HIS-OPEN", "k1", bytes(32), b'{"e":1}', int(now - 500 * DAY), "T1", "D1", "MZ-OPEN", "+1.00"))
    archive = tmp_path / "archive"
    report = prune(journal, archive, retention_days=400, now=now)
    assert report.archived == 3  # the unfinished one is never archived, however old
    month = datetime.datetime.fromtimestamp(now - 450 * DAY, datetime.timezone.utc).strftime("%Y-%m")
    assert report.months == (month,)
    path = archive / archive_name(month)
    verify_archive(path)
    assert [r["msg_id"] for r in read_archive(path)] == ["HIS-0000", "HIS-0001", "HIS-0002"]
    assert journal.get("HIS-0000") is None and journal.get("HIS-0099") is not None and journal.get("HIS-OPEN") is not None
    assert journal.counts() == {"result_stored": 1, "accepted": 1}
    journal.close()
    reopened = Journal(tmp_path / "journal.sqlite3")  # pruning is not a rollback: the journal opens unlocked
    assert reopened.integrity.ok
    reopened.close()


def test_a_second_prune_into_the_same_month_keeps_both_and_damage_is_found(tmp_path: Path) -> None:
    now = datetime.datetime(2026, 12, 20, tzinfo=datetime.timezone.utc).timestamp()
    clock = [datetime.datetime(2025, 7, 3, tzinfo=datetime.timezone.utc).timestamp()]
    journal = Journal(tmp_path / "journal.sqlite3", clock=lambda: clock[0])
    _pay(journal, 1, at=clock)
    prune(journal, tmp_path / "archive", retention_days=400, now=now)
    clock[0] += 10 * DAY
    _pay(journal, 2, at=clock)
    prune(journal, tmp_path / "archive", retention_days=400, now=now)
    path = tmp_path / "archive" / archive_name("2025-07")
    assert [r["msg_id"] for r in read_archive(path)] == ["HIS-0001", "HIS-0002"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(JournalError, match="checksum"):
        verify_archive(path)
    journal.close()


def test_reconciliation_reads_archived_days(tmp_path: Path) -> None:
    day = datetime.date(2025, 7, 3)
    at = datetime.datetime(2025, 7, 3, 10, tzinfo=CHINA).timestamp()
    clock = [at]
    journal = Journal(tmp_path / "journal.sqlite3", clock=lambda: clock[0])
    _pay(journal, 7, at=clock)
    before = read_ours(tmp_path / "journal.sqlite3", day, CHINA, keep_text=True)
    prune(journal, tmp_path / "archive", retention_days=400, now=at + 500 * DAY)
    journal.close()
    after = read_ours(tmp_path / "journal.sqlite3", day, CHINA, keep_text=True)
    assert list(after.texts.values()) == list(before.texts.values())  # type: ignore[union-attr]  # read with keep_text=True, so texts is a dict, not None
    assert [msg_id for _, msg_id, _ in after.texts.values()] == ["HIS-0007"]  # type: ignore[union-attr]  # read with keep_text=True, so texts is a dict, not None
    assert [p for _, _, p in after.texts.values()] == ["4200000007"] and list(after.fen) == list(before.fen)  # type: ignore[union-attr]  # read with keep_text=True, so texts is a dict, not None
    assert gzip.open(tmp_path / "archive" / archive_name("2025-07")).read()  # a real gzip file
