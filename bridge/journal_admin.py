"""`his-bridge journal check | backup | restore`: what IT staff do with the journal, offline or online.

- check: the whole journal against its high-water mark, SQLite's own integrity check and every
  row's checksums; read-only, safe while the bridge runs.
- backup: an online copy through SQLite's backup API, so what still sits in the WAL is in it too
  (copying only `journal.sqlite3` loses the WAL). Safe while the bridge runs; written to a temporary
  name, flushed, then renamed, so a backup file is always whole.
- restore: put a verified backup in place of a damaged journal (the damaged one is kept beside it
  as `*.damaged-<time>`) and record the backup's high-water mark, which unlocks the bridge. With
  `accept_current` instead, keep the journal as it is (every row verified) and accept its end as the
  new mark: for a rollback with no newer backup; results the POS sent after that point are lost to
  the bridge and must be re-asked of the POS (docs/bridge.md, "Journal integrity").
Stop the bridge before a restore.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from protocol.integrity import IntegrityReport

from bridge.journal import SUM_COLUMNS, JournalError, journal_mark, row_problem
from local_storage.journal_files import backup_online, open_read_only, put_in_place, record_mark, verify_journal
from local_storage.journal_mark import MarkFile, mark_path


def _connect_ro(path: Path) -> sqlite3.Connection:
    return open_read_only(path, JournalError)


def verify_file(path: Path, *, recorded_mark: int | None) -> tuple[IntegrityReport, int, int]:
    """(report, the file's own mark, rows checked). `recorded_mark` None: no mark to compare with."""
    rows = 0

    def row_problems(db: sqlite3.Connection) -> list[str]:
        nonlocal rows
        problems = []
        for values in db.execute(f"SELECT {SUM_COLUMNS} FROM instructions ORDER BY seq"):
            rows += 1
            problem = row_problem(values)
            if problem:
                problems.append(problem)
        return problems

    report, hwm = verify_journal(path, recorded_mark=recorded_mark, missing=JournalError, read_mark=journal_mark,
                                 rows_table="instructions", row_problems=row_problems,
                                 no_rows="the journal holds no instructions table (empty or not a journal)")
    return report, hwm, rows


def check(journal: Path) -> tuple[IntegrityReport, int, int]:
    recorded = MarkFile(mark_path(journal)).read()
    return verify_file(journal, recorded_mark=recorded.mark if recorded else None)


def backup(journal: Path, dest: Path) -> int:
    """Copy the journal (database and WAL) to `dest` while the bridge may run; returns its mark."""
    src = _connect_ro(journal)
    try:
        return backup_online(src, dest, journal_mark)
    except sqlite3.Error as exc:
        raise JournalError(f"cannot back up {journal} to {dest}: {exc}") from None
    finally:
        src.close()


def restore(journal: Path, source: Path) -> int:
    """Replace the journal by a verified backup; returns the restored mark (the new high-water mark)."""
    report, mark, _ = verify_file(source, recorded_mark=None)
    if not report.ok:
        raise JournalError(f"the backup {source} fails its own check: {report.reason}; choose another backup")
    put_in_place(journal, source)
    record_mark(journal, mark)
    return mark


def accept_current(journal: Path, at_least: int | None = None) -> int:
    """Accept the journal's end as its high-water mark (every row must verify); returns it.

    `at_least`: the mark a POS holds for this journal (a rollback it detected: /v1/health names it).
    The journal's own counter is raised to it, so that POS takes this journal as it is from now on."""
    report, mark, _ = verify_file(journal, recorded_mark=None)
    if not report.ok:
        raise JournalError(f"the journal itself is damaged ({report.reason}): restore a backup instead")
    if at_least is not None and at_least > mark:
        db = sqlite3.connect(str(journal), isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            if db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'transitions'", (at_least,)).rowcount == 0:
                db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('transitions', ?)", (at_least,))
            db.execute("COMMIT")
            mark = journal_mark(db)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot raise the mark of {journal}: {exc}") from None
        finally:
            db.close()
    record_mark(journal, mark)
    return mark
