"""Issue 14: the gateway keeps the POS's high-water mark, against the real processes of `make run`
(channel sandbox, `payment-gateway`, `pos-sim run`, the bridge), driven with the field tools:

    copy the POS's storage; his-client pay +7.00; pos-sim scan; put the old copy back; restart
    -> the POS starts locked (journal_integrity: nothing taken, nothing charged)
    python -m terminal.journal_admin resync STORAGE/app/journal.db; restart
    -> re-synced from the gateway: the second `+` for the same order is refused (no double charge)
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.firmware_sim.test_system import BIN, Launcher, tool
from tests.waiting import wait_until

# About a minute of process start-ups: run by `make fuzz` (slow), not `make test`; the same sequence in one
# process (tests/e2e/test_rollback_marks.py) runs in `make test`.
pytestmark = [pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the launcher's children are found in /proc"),
              pytest.mark.slow]


def gateway_mark(workdir: Path) -> int:
    db = sqlite3.connect(f"{(workdir / 'gateway' / 'gateway.db').resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        row = db.execute("SELECT MAX(mark) FROM device_journal_marks").fetchone()
    finally:
        db.close()
    return int(row[0]) if row and row[0] is not None else 0


def journal_files(app: Path) -> list[Path]:
    return [p for p in app.iterdir() if p.name.startswith("journal.db")]


def test_a_pos_storage_put_back_from_an_old_copy_is_locked_then_resynced_from_the_gateway(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    system = Launcher(workdir)
    try:
        demo, storage, his = system.demo, system.storage, system.his
        app = workdir / "device" / "app"

        def power_cycle(between=lambda: None) -> None:
            assert tool("pos-sim", "fault", "power-cut", *storage).returncode == 0
            between()
            assert tool("pos-sim", "fault", "power-on", *storage).returncode == 0
            wait_until(lambda: json.loads(tool("pos-sim", "status", "--json", *storage).stdout or "{}").get("link", {}).get("up"),
                       timeout=30, what="the POS's link up again")

        def pay(order: str, msg_id: str, *, scan: str | None, wait: int = 20) -> dict:
            proc = subprocess.Popen([str(BIN / his[0]), *his[1:], "pay", "+7.00", "--order", order, "--msg-id", msg_id,
                                     "--wait", str(wait)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                if scan is not None:
                    wait_until(lambda: tool("pos-sim", "scan", scan, *storage).returncode == 0, timeout=30, what="the scan")
                out, err = proc.communicate(timeout=90)
            finally:
                if proc.poll() is None:
                    proc.kill()
            return json.loads(out or "{}")

        old = tmp_path / "old"
        old.mkdir()
        power_cycle(lambda: [shutil.copy2(f, old / f.name) for f in journal_files(app)])  # the copy
        before = gateway_mark(workdir)
        code = requests.post(demo["sandbox_url"] + "/sandbox/v1/codes", json={"channel": "WECHAT"}, timeout=10).json()["code"]
        stamp = int(time.time())
        paid = pay("ROLLBACK1", f"T0001-RB1-{stamp}", scan=code)
        assert paid.get("result", {}).get("pay_status") == "SUCCESS", paid
        wait_until(lambda: gateway_mark(workdir) > before, timeout=30, what="the POS to report its mark to the gateway")

        def put_back() -> None:
            for f in journal_files(app):
                f.unlink()
            for f in old.iterdir():
                shutil.copy2(f, app / f.name)

        power_cycle(put_back)
        again = pay("ROLLBACK1", f"T0001-RB2-{stamp}", scan=None, wait=5)  # HIS sends it again
        assert "result" not in again and (again.get("last_event") or {}).get("code") == "journal_integrity", again

        def resync() -> None:
            done = subprocess.run([sys.executable, "-m", "terminal.journal_admin", "resync", str(app / "journal.db")],
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr

        power_cycle(resync)
        duplicate = pay("ROLLBACK1", f"T0001-RB3-{stamp}", scan=None)
        assert duplicate.get("result", {}).get("error_code") == "duplicate_order", duplicate
        balance = requests.get(f"{demo['sandbox_url']}/sandbox/v1/accounts/{code}", timeout=10).json()["balance"]
        assert balance == "93.00"  # paid once
    finally:
        system.kill()
