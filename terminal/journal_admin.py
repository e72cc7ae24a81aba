"""The POS journal's recovery tool: `python -m terminal.journal_admin check|backup|restore JOURNAL`.

What a field engineer runs on the device (adb shell, or the simulator's storage directory) when the
POS shows "transaction records are damaged" (terminal.journal locked, issue 14 finding 2):

- check JOURNAL: the mark, SQLite's integrity check and every money row's checksum; exit 1 if damaged.
- backup JOURNAL DEST: an online copy through SQLite's backup API (database and WAL together).
- resync JOURNAL: the payment gateway holds a higher mark for this journal (the POS's whole storage
  was rolled back): at its next start the POS app re-syncs its orders from the gateway (terminal.resync).
- restore JOURNAL BACKUP: put a verified backup in place (the damaged files are kept beside it as
  `*.damaged-<time>`) and record its mark; `restore JOURNAL --accept-current`: keep the journal as
  it is (its rows must verify) and accept its end as the mark, when no newer backup exists.
Stop the POS app first. After a restore from an older backup, results and collections made after
the backup are missing on the POS: reconcile the day with the channel's records before refunding
those orders (docs/terminal.md, "Journal integrity"), or `resync` them from the payment gateway.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from pathlib import Path

from protocol.errors import CodedError
from protocol.integrity import IntegrityReport
from terminal.journal import check_rows
from terminal.resync import request_path
from local_storage.journal_files import backup_online, open_read_only, put_in_place, record_mark, verify_journal
from local_storage.journal_mark import MarkFile, mark_path


class AdminError(CodedError):
    code = "journal_admin"


def _connect_ro(path: Path) -> sqlite3.Connection:
    return open_read_only(path, AdminError)


def _commit_no(db: sqlite3.Connection) -> int:
    try:
        row = db.execute("SELECT value FROM meta WHERE key='commit_no'").fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(row[0]) if row else 0


def verify_file(path: Path, *, recorded_mark: int | None) -> tuple[IntegrityReport, int]:
    return verify_journal(path, recorded_mark=recorded_mark, missing=AdminError, read_mark=_commit_no, rows_table="collections",
                          row_problems=lambda db: check_rows(db, recent=None),
                          no_rows="the journal holds no tables (empty or not a journal)")


def check(journal: Path) -> tuple[IntegrityReport, int]:
    recorded = MarkFile(mark_path(journal)).read()
    return verify_file(journal, recorded_mark=recorded.mark if recorded else None)


def backup(journal: Path, dest: Path) -> int:
    src = _connect_ro(journal)
    try:
        return backup_online(src, dest, _commit_no)
    finally:
        src.close()


def restore(journal: Path, source: Path) -> int:
    report, mark = verify_file(source, recorded_mark=None)
    if not report.ok:
        raise AdminError(f"the backup {source} fails its own check: {report.reason}; choose another backup")
    put_in_place(journal, source)
    record_mark(journal, mark)
    return mark


def accept_current(journal: Path, at_least: int | None = None) -> int:
    """Accept the journal's end as its mark. `at_least`: the mark the bridge holds for this journal (a
    rollback it found: the POS screen and log name it); the journal's commit counter is raised to it."""
    report, mark = verify_file(journal, recorded_mark=None)
    if not report.ok:
        raise AdminError(f"the journal itself is damaged ({report.reason}): restore a backup instead")
    if at_least is not None and at_least > mark:
        db = sqlite3.connect(str(journal), isolation_level=None)
        try:
            db.execute("INSERT INTO meta (key, value) VALUES ('commit_no', ?) ON CONFLICT (key) DO UPDATE SET value=excluded.value",
                       (str(at_least),))
        finally:
            db.close()
        mark = at_least
    record_mark(journal, mark)
    return mark


def request_resync(journal: Path) -> int:
    """Ask the POS app to re-sync its orders from the payment gateway at its next start (the gateway
    holds a higher mark for this journal: its whole storage was rolled back). The journal's own rows
    must verify (else restore a backup first). Returns the journal's mark."""
    report, mark = verify_file(journal, recorded_mark=None)
    if not report.ok:
        raise AdminError(f"the journal itself is damaged ({report.reason}): restore a backup first, then resync")
    request = request_path(journal)
    request.write_text(f"re-sync requested at {time.strftime('%Y-%m-%dT%H:%M:%S')}, journal mark {mark}\n", encoding="ascii")
    return mark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m terminal.journal_admin", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check", help="check the journal; exit 1 if damaged")
    p.add_argument("journal")
    p = sub.add_parser("backup", help="online backup (database and WAL together)")
    p.add_argument("journal")
    p.add_argument("dest")
    p = sub.add_parser("restore", help="replace a damaged journal by BACKUP, or --accept-current")
    p.add_argument("journal")
    p.add_argument("backup", nargs="?")
    p.add_argument("--accept-current", action="store_true")
    p.add_argument("--mark", type=int, default=None, help="with --accept-current, after the bridge found this journal "
                   "rolled back: the mark the bridge holds (named on the screen and in the log)")
    p = sub.add_parser("resync", help="the payment gateway holds a higher mark: re-sync the orders from it at the next start")
    p.add_argument("journal")
    args = parser.parse_args(argv)
    journal = Path(args.journal)
    try:
        if args.command == "check":
            report, mark = check(journal)
            if report.ok:
                print(f"{journal}: ok (high-water mark {mark})")
                return 0
            print(f"{journal}: journal_integrity: {report.reason}")
            for problem in report.problems[1:20]:
                print(f"  also: {problem}")
            print("recover: stop the POS app, then `python -m terminal.journal_admin restore JOURNAL BACKUP`")
            return 1
        if args.command == "backup":
            print(f"backed up {journal} to {args.dest} (high-water mark {backup(journal, Path(args.dest))})")
            return 0
        if args.command == "resync":
            mark = request_resync(journal)
            print(f"{journal}: re-sync requested (high-water mark {mark}); start the POS app with the payment gateway reachable: "
                  "it fetches this device's orders from the gateway first, then starts unlocked")
            return 0
        if args.accept_current == (args.backup is not None):
            raise AdminError("name a BACKUP to restore, or --accept-current (not both)")
        if args.accept_current:
            print(f"{journal}: accepted as it is (high-water mark {accept_current(journal, args.mark)})")
        else:
            print(f"restored {journal} from {args.backup} (high-water mark {restore(journal, Path(args.backup))})")
        return 0
    except (AdminError, OSError, sqlite3.Error) as exc:
        print(f"journal_admin: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
