"""The fast writer of large synthetic days (reconcile.synth_bulk) writes what the sandbox's bill
writers and the bridge's Journal write, byte for byte, and a day it writes reconciles."""

from __future__ import annotations

import datetime
import sqlite3
import zipfile
from pathlib import Path
from typing import Iterator

from reconcile import synth
from reconcile.model import Channel
from reconcile.run import RunConfig, reconcile_day
from reconcile.synth_bulk import write_large_day

DAY = datetime.date(2026, 11, 22)
JOURNAL_COLUMNS = "msg_id, order_no, amount, state, pay_status, pay_channel, pay_order_no, result_amount, finished_at, error_code, accepted_at"


def _zip_members(path: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(path, metadata_encoding="gbk") as z:
        return [(info.filename, z.read(info)) for info in z.infolist()]


def _journal(path: Path) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute(f"SELECT {JOURNAL_COLUMNS} FROM instructions ORDER BY msg_id").fetchall()
    finally:
        db.close()


def test_bulk_writer_writes_the_same_sources_as_the_sandbox_writers(tmp_path: Path) -> None:
    txns = synth.every_class_day(DAY, 400)
    slow = synth.write_day(tmp_path / "slow", DAY, txns)
    fast = write_large_day(tmp_path / "fast", DAY, txns)
    for name in ("his", "wechat", "platform"):
        assert fast[name].read_bytes() == slow[name].read_bytes(), name
    assert _zip_members(fast["alipay"]) == _zip_members(slow["alipay"])
    assert _journal(fast["journal"]) == _journal(slow["journal"])
    assert len(_journal(fast["journal"])) == len(txns)
    db = sqlite3.connect(fast["journal"])  # the bridge's per-state counts (rebuilt by the bridge after the bulk insert)
    try:
        assert db.execute("SELECT state, n FROM state_counts").fetchall() == [("result_stored", len(txns))]
    finally:
        db.close()


def test_a_bulk_day_reconciles_to_its_seeded_differences(tmp_path: Path) -> None:
    files = synth.write_day(tmp_path / "in", DAY, synth.every_class_day(DAY, 3000), bulk=True)
    cfg = RunConfig(day=DAY, his=files["his"], journals=(files["journal"],), out_dir=tmp_path / "out", state_db=tmp_path / "state.db",
                    bills={Channel.WECHAT: files["wechat"], Channel.ALIPAY: files["alipay"]}, jobs=1)
    counts = {c.value: n for c, n in reconcile_day(cfg).result.class_counts().items() if n and c.value != "matched"}
    assert counts == {"long": 3, "short": 1, "amount_mismatch": 1, "status_mismatch": 1, "duplicate": 3}


def test_a_day_given_as_a_function_is_written_without_holding_it_and_to_the_same_bytes(tmp_path: Path) -> None:
    """`reconcile demo` of millions passes the day as a function (every_class_day_iter): each
    process makes the transactions itself, pass by pass, and the files are the list's, byte for byte."""
    assert list(synth.every_class_day_iter(DAY, 500)) == synth.every_class_day(DAY, 500)
    calls = []

    def day() -> Iterator[synth.Txn]:
        calls.append(1)
        return synth.every_class_day_iter(DAY, 500)

    streamed = write_large_day(tmp_path / "streamed", DAY, day)
    listed = write_large_day(tmp_path / "listed", DAY, synth.every_class_day(DAY, 500))
    for name in ("his", "wechat", "platform"):
        assert streamed[name].read_bytes() == listed[name].read_bytes(), name
    assert _zip_members(streamed["alipay"]) == _zip_members(listed["alipay"])
    assert _journal(streamed["journal"]) == _journal(listed["journal"])
    assert calls  # the function was called (in this process at least: the bills' passes)
    assert synth.write_day(tmp_path / "small", DAY, lambda: synth.every_class_day_iter(DAY, 20))["his"].read_bytes() == \
        synth.write_day(tmp_path / "small-list", DAY, synth.every_class_day(DAY, 20))["his"].read_bytes()
