"""Issue 12 finding 8: journals and logs hold orders, amounts and masked names; they were 0644.
On the bridge and on the POS they are now 0600 and the directories made for them 0700."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from bridge.journal import Journal as BridgeJournal
from bridge.logjson import log_event, setup_logging
from terminal.journal import Journal as PosJournal

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def open_umask():
    old = os.umask(0o022)  # a usual umask: files 0644 and directories 0755 unless the code says otherwise
    yield
    os.umask(old)


def _sqlite_files(path: Path) -> list[Path]:
    return [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]


def test_the_bridge_journal_and_its_wal_are_owner_only(tmp_path):
    path = tmp_path / "state" / "bridge" / "journal.sqlite3"
    journal = BridgeJournal(path)
    try:
        files = _sqlite_files(path)
        assert len(files) == 3
        assert all(mode(p) == 0o600 for p in files), {p.name: oct(mode(p)) for p in files}
        assert mode(path.parent) == 0o700 and mode(path.parent.parent) == 0o700
    finally:
        journal.close()


def test_the_pos_journal_and_its_wal_are_owner_only(tmp_path):
    path = tmp_path / "device" / "journal.db"
    journal = PosJournal(path)
    try:
        files = _sqlite_files(path)
        assert len(files) == 3
        assert all(mode(p) == 0o600 for p in files), {p.name: oct(mode(p)) for p in files}
        assert mode(path.parent) == 0o700
    finally:
        journal.close()


def test_a_journal_left_world_readable_by_an_earlier_version_is_tightened(tmp_path):
    path = tmp_path / "journal.db"
    PosJournal(path).close()
    os.chmod(path, 0o644)
    journal = PosJournal(path)
    try:
        assert mode(path) == 0o600
    finally:
        journal.close()


def test_the_bridge_log_is_owner_only(tmp_path):
    path = tmp_path / "logs" / "bridge.log"
    handler = setup_logging("INFO", path)
    try:
        log_event(logging.getLogger("bridge.test"), "order_seen", order_no="MZ0001", amount="+12.50")
        handler.flush()
        assert "MZ0001" in path.read_text(encoding="utf-8")
        assert mode(path) == 0o600 and mode(path.parent) == 0o700
    finally:
        handler.close()
        logging.getLogger("bridge").handlers.clear()
