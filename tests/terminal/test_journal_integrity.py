"""Issue 14, findings 2 and 6: the POS never starts silently on a lost journal, and says when it cannot write.

A journal truncated to nothing, one that lost its WAL, and a collection whose order number rotted by
one bit (PRAGMA integrity_check passes) all used to start a POS that charged a second time for an
order it had already collected. Now the POS starts locked: instructions get an unsealed not_taken
with journal_integrity (nothing charged, nothing ended: the bridge sends them again after recovery),
the screen's view names the problem, and the recovery tool puts a backup back. On a full disk an
instruction gets not_taken with storage_unavailable, shown on the screen
(test with a real, small tmpfs; needs root, as CI has).
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from protocol.errors import ErrorCode
from protocol.messages import PayStatus
from terminal import texts
from terminal.journal_admin import main as admin
from tests.terminal.helpers import Bridge, His, open_service
from tests.small_disk import fill, small_disk  # noqa: F401 (small_disk: a fixture)
from tests.terminal.test_service import seed_collection


def _refusal_codes(bridge: Bridge) -> list[ErrorCode]:
    """What the POS said it could not take. A POS that cannot journal cannot seal an answer either:
    each is an unsealed not_taken, which ends nothing (the bridge sends it again after recovery)."""
    bridge.pump()
    assert not any(r.sealed for r in bridge.refused)
    return [r.code for r in bridge.refused]


def _second_collection_is_refused(path: Path, order: str, expected: ErrorCode) -> None:
    service = open_service(path)
    try:
        bridge = Bridge(service)
        assert service.view().journal_problem is not None
        service.submit_instruction(His().envelope(order, "+12.50"))
        assert _refusal_codes(bridge) == [expected]
        assert bridge.results == {}  # nothing charged: no result at all
        assert service.journal.unfinished() == []
    finally:
        service.close()


def test_a_journal_truncated_to_nothing_starts_locked(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    service = open_service(path)
    seed_collection(service.journal, "MZ-PAID", 1250)
    service.close()
    service.journal.close()
    path.write_bytes(b"")
    Path(str(path) + "-wal").unlink(missing_ok=True)
    _second_collection_is_refused(path, "MZ-PAID", ErrorCode.JOURNAL_INTEGRITY)


def test_a_journal_that_lost_its_wal_starts_locked(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    service = open_service(path)
    stale = tmp_path / "stale.db"
    shutil.copyfile(path, stale)  # the main file only: what is in the WAL is not in it
    seed_collection(service.journal, "MZ-PAID", 1250)
    service.close()
    service.journal.close()
    shutil.copyfile(stale, path)
    Path(str(path) + "-wal").unlink(missing_ok=True)
    _second_collection_is_refused(path, "MZ-PAID", ErrorCode.JOURNAL_INTEGRITY)


def test_a_one_bit_rot_of_an_order_number_is_found(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    service = open_service(path)
    seed_collection(service.journal, "MZ-PAID", 1250)
    service.close()
    service.journal.close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA foreign_keys=OFF")
        db.execute("UPDATE collections SET order_no='MZ-PAIE' WHERE order_no='MZ-PAID'")  # 'D' ^ 0x01
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    _second_collection_is_refused(path, "MZ-PAID", ErrorCode.JOURNAL_INTEGRITY)


def test_the_recovery_tool_checks_backs_up_and_restores(tmp_path: Path, capsys) -> None:
    path = tmp_path / "journal.db"
    service = open_service(path)
    seed_collection(service.journal, "MZ-PAID", 1250)
    backup = tmp_path / "backup" / "journal.db"
    assert admin(["backup", str(path), str(backup)]) == 0  # online: the service still runs
    service.close()
    service.journal.close()
    path.write_bytes(b"")
    Path(str(path) + "-wal").unlink(missing_ok=True)
    assert admin(["check", str(path)]) == 1
    assert "journal_integrity" in capsys.readouterr().out
    assert admin(["restore", str(path), str(backup)]) == 0
    assert admin(["check", str(path)]) == 0
    service = open_service(path)
    try:
        bridge = Bridge(service)
        assert service.view().journal_problem is None
        service.submit_instruction(His().envelope("MZ-PAID", "+12.50", msg_id="HIS-AGAIN"))
        result = bridge.result("HIS-AGAIN")  # the original collection answers: nothing charged again
        assert (result.pay_status, result.error_code) == (PayStatus.SUCCESS, "duplicate_order")
    finally:
        service.close()


def test_a_full_disk_refuses_with_storage_unavailable_shows_it_and_recovers(small_disk: Path) -> None:
    service = open_service(small_disk / "journal.db")
    try:
        bridge = Bridge(service)
        filler = fill(small_disk)
        service.submit_instruction(His().envelope("MZ-FULL", "+3.00", msg_id="HIS-FULL"))
        assert _refusal_codes(bridge) == [ErrorCode.STORAGE_UNAVAILABLE]  # the link is not torn down
        assert service.view().journal_problem == texts.STORAGE_FULL
        filler.unlink()
        service.submit_instruction(His().envelope("MZ-FULL", "+3.00", msg_id="HIS-LATER"))
        bridge.pump()
        assert service.view().journal_problem is None
        assert service.view().order_no == "MZ-FULL"  # accepted: the cashier can scan now
    finally:
        service.close()


def test_a_rotted_sealed_refund_instruction_is_found(tmp_path: Path) -> None:
    """The refund instruction as HIS sealed it is what the gateway checks a refund against: one byte
    of it rotted must lock the journal (schema 3 gives sealed_instructions a row checksum)."""
    from terminal.journal import Journal, JournalIntegrityError
    from terminal.machine import Kind

    path = tmp_path / "journal.db"
    journal = Journal(path)
    with journal.transaction("refund:new->queued") as tx:
        seq = tx.add_instruction(kid="k", msg_id="M1", envelope_ts=1, terminal_id="T0001", order_no="MZ1", kind=Kind.REFUND,
                                 amount_fen=500, display=None, now=1.0, salt="s", envelope=b'{"amount":"-5.00"}')
    assert journal.sealed_instruction(seq) == b'{"amount":"-5.00"}'
    journal.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE sealed_instructions SET envelope=? WHERE seq=?", (b'{"amount":"-9.00"}', seq))
    reopened = Journal(path)
    assert reopened.locked and "sealed_instructions" in reopened.integrity.reason
    reopened.close()
    live = Journal(path, verify_recent=0)  # even when the open check does not reach it, reading it does
    with pytest.raises(JournalIntegrityError):
        live.sealed_instruction(seq)
    live.close()
