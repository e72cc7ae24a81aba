"""A journal's file as the recovery tools handle it, the same on the bridge and on the POS: opened
read-only, checked by SQLite, copied online, put back from a backup, and its high-water mark recorded.

`his-bridge journal ...` (bridge/journal_admin.py) and the POS's `python -m terminal.journal_admin`
check different tables (each journal its own rows and checksums) but handle the file by the same
rules, written here once:

- an online backup goes through SQLite's backup API (what still sits in the WAL is in it too),
  as one self-contained file (journal_mode DELETE), written to a temporary name and published
  whole (local_storage.atomic_file);
- a restore keeps the damaged files beside the journal as `*.damaged-<time>` (the -shm index is
  rebuilt by SQLite and dropped), then publishes a copy of the backup in its place;
- the mark file (local_storage.journal_mark) then records the mark the journal now ends at;
- a check (`verify_journal`) is the mark against the recorded one, SQLite's own integrity check and
  the journal's own rows (the caller's check: each journal knows its tables and checksums).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Callable

from protocol.integrity import IntegrityReport, rollback_problem

from local_storage.atomic_file import publish
from local_storage.journal_mark import MarkFile, mark_path


def open_read_only(path: Path, missing: Callable[[str], Exception]) -> sqlite3.Connection:
    """The journal read-only (never creating it: a missing one raises `missing(message)`)."""
    if not path.exists():
        raise missing(f"{path} does not exist")
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)


def sqlite_problems(db: sqlite3.Connection) -> list[str]:
    """What SQLite's own integrity check finds (the first ten lines), or nothing."""
    found = [r[0] for r in db.execute("PRAGMA integrity_check").fetchall()]
    return [] if found == ["ok"] else [f"SQLite integrity_check: {line}" for line in found[:10]]


def verify_journal(path: Path, *, recorded_mark: int | None, missing: Callable[[str], Exception],
                   read_mark: Callable[[sqlite3.Connection], int], rows_table: str,
                   row_problems: Callable[[sqlite3.Connection], list[str]], no_rows: str) -> tuple[IntegrityReport, int]:
    """(report, the file's own mark). `recorded_mark` None: no mark to compare with. `row_problems`
    checks the journal's rows when its table `rows_table` exists; a journal without it that has (or
    should have) a mark is reported with `no_rows`. A file SQLite cannot read is a problem, mark 0."""
    problems: list[str] = []
    db = open_read_only(path, missing)
    try:
        mark = read_mark(db)
        if recorded_mark is not None:
            rollback = rollback_problem(mark, recorded_mark)
            if rollback:
                problems.append(rollback)
        problems += sqlite_problems(db)
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (rows_table,)).fetchone():
            problems += row_problems(db)
        elif mark or recorded_mark:
            problems.append(no_rows)
    except sqlite3.Error as exc:
        problems.append(f"SQLite cannot read it: {exc}")
        mark = 0
    finally:
        db.close()
    return IntegrityReport(not problems, problems[0] if problems else "", tuple(problems)), mark


def backup_online(src: sqlite3.Connection, dest: Path, read_mark: Callable[[sqlite3.Connection], int]) -> int:
    """Copy the open journal `src` to `dest` (whole or not at all); the copy's mark. sqlite3.Error
    propagates, with nothing left behind."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        out = sqlite3.connect(str(partial))
        try:
            src.backup(out)
            out.execute("PRAGMA journal_mode=DELETE")  # a backup is one self-contained file
            mark = read_mark(out)
        finally:
            out.close()
    except sqlite3.Error:
        partial.unlink(missing_ok=True)
        raise
    publish(partial, dest)
    return mark


def put_in_place(journal: Path, source: Path) -> None:
    """Replace the journal's files by a copy of the (verified) backup `source`, the damaged ones kept."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for suffix in ("", "-wal", "-shm"):
        old = Path(str(journal) + suffix)
        if old.exists():
            if suffix == "-shm":
                old.unlink()
            else:
                os.replace(old, old.with_name(old.name + f".damaged-{stamp}"))
    partial = journal.with_name(journal.name + ".restoring")
    shutil.copyfile(source, partial)
    publish(partial, journal)


def record_mark(journal: Path, mark: int) -> None:
    """Record `mark` as the journal's high-water mark (what the running process checks at start)."""
    marks = MarkFile(mark_path(journal))
    try:
        marks.write(mark)
    finally:
        marks.close()
