"""`gateway-admin ledger export`: one hospital's day of the ledger in his-platform-ledger-v1, read back
by reconcile's own reader; against SQLite and a real PostgreSQL server (`db` fixture)."""

from __future__ import annotations

import datetime
import io

import pytest

from gateway.admin import main
from gateway.ledger import BUSINESS_TZ, PaymentState, RefundState
from gateway.ledger_export import LOOKBACK_DAYS, PAGE, write_export
from protocol.messages import PayChannel
from reconcile.model import COLLECT, REFUND, Channel, State
from reconcile.platform import read_platform
from tests.gateway.fleet import make_fleet
from tests.clocks import ManualClock

DAY = datetime.date(2026, 12, 1)


def at(day: datetime.date, hh: int, mm: int = 0, ss: int = 0) -> float:
    return datetime.datetime.combine(day, datetime.time(hh, mm, ss), BUSINESS_TZ).timestamp()


def _day_of_business(db, clock: ManualClock):
    fleet = make_fleet(db, clock=clock)
    ledger = fleet.ledger
    other = make_fleet(db, hospital_id="H002", clock=clock)

    def pay(order: str, fen: int, otn: str, *, channel: PayChannel = PayChannel.WECHAT, hospital: str = "H001", f=fleet):
        return f.ledger.start_payment(hospital_id=hospital, terminal_id="T0001", device_id=f"{hospital}-POS1", order_no=order,
                                      out_trade_no=otn, channel=channel, amount_fen=fen)

    clock.now = at(DAY - datetime.timedelta(days=LOOKBACK_DAYS - 1), 10)  # collected days ago, refunded today
    pay("MZ-OLD", 5000, "P-OLD")
    ledger.settle_payment("P-OLD", hospital_id="H001", state=PaymentState.SUCCEEDED, channel_txn_id="4200OLD")
    clock.now = at(DAY - datetime.timedelta(days=1), 23, 59, 58)  # yesterday's: not today's
    pay("MZ-YDAY", 700, "P-YDAY")
    ledger.settle_payment("P-YDAY", hospital_id="H001", state=PaymentState.SUCCEEDED, channel_txn_id="4200YDAY")
    clock.now = at(DAY, 9)
    pay("MZ-1", 1250, "P-1")
    ledger.settle_payment("P-1", hospital_id="H001", state=PaymentState.SUCCEEDED, channel_txn_id="4200001")
    pay("MZ-2", 2380, "P-2", channel=PayChannel.ALIPAY)
    ledger.settle_payment("P-2", hospital_id="H001", state=PaymentState.FAILED)
    pay("MZ-3", 999, "P-3")  # still paying at the end of the day
    pay("MZ-4", 300, "P-4", hospital="H002", f=other)  # another hospital's
    other.ledger.settle_payment("P-4", hospital_id="H002", state=PaymentState.SUCCEEDED, channel_txn_id="4200004")
    ledger.start_refund(hospital_id="H001", order_no="MZ-1", out_refund_no="R-1", amount_fen=500, device_id="H001-POS1", instruction_msg_id="HIS-R1")
    ledger.settle_refund("R-1", hospital_id="H001", state=RefundState.SUCCEEDED, channel_refund_id="5030001")
    ledger.start_refund(hospital_id="H001", order_no="MZ-OLD", out_refund_no="R-OLD", amount_fen=1000, device_id="H001-POS1")  # refunding
    clock.now = at(DAY, 23, 59, 59)
    pay("MZ-LATE", 100, "P-LATE")
    clock.now = at(DAY + datetime.timedelta(days=1), 0, 0, 2)  # finished after midnight: tomorrow's
    ledger.settle_payment("P-LATE", hospital_id="H001", state=PaymentState.SUCCEEDED, channel_txn_id="4200LATE")


def test_the_days_ledger_reads_back_in_reconcile(db, tmp_path) -> None:
    _day_of_business(db, ManualClock(at(DAY, 9)))
    out = io.StringIO()
    assert write_export(db, "H001", DAY, out) == 5
    path = tmp_path / "platform.csv"
    path.write_text(out.getvalue(), encoding="utf-8")
    rows = [r for batch in read_platform(path, DAY) for r in batch]
    got = {(r[1], r[3], r[4], State(r[5]), Channel(r[6]), r[7]) for r in rows}
    assert got == {
        ("MZ-1", COLLECT, 1250, State.MOVED, Channel.WECHAT, "4200001"),
        ("MZ-2", COLLECT, 2380, State.NOT_MOVED, Channel.ALIPAY, ""),
        ("MZ-3", COLLECT, 999, State.PENDING, Channel.WECHAT, ""),
        ("MZ-1", REFUND, 500, State.MOVED, Channel.WECHAT, "5030001"),
        ("MZ-OLD", REFUND, 1000, State.PENDING, Channel.WECHAT, ""),
    }
    assert [r[2] for r in rows if r[3] == REFUND] == ["HIS-R1", ""]  # the HIS instruction a refund executed


def test_pages_of_a_large_day_are_all_written_once(db, monkeypatch) -> None:
    monkeypatch.setattr("gateway.ledger_export.PAGE", 3)  # many pages from a few rows
    clock = ManualClock(at(DAY, 9))
    fleet = make_fleet(db, clock=clock)
    for k in range(10):
        fleet.ledger.start_payment(hospital_id="H001", terminal_id="T0001", device_id="H001-POS1", order_no=f"MZ{k}", out_trade_no=f"P{k}",
                                   channel=PayChannel.WECHAT, amount_fen=100 + k)
        fleet.ledger.settle_payment(f"P{k}", hospital_id="H001", state=PaymentState.SUCCEEDED, channel_txn_id=f"4200{k}")
    out = io.StringIO()
    assert write_export(db, "H001", DAY, out) == 10
    assert [line.split(",")[1] for line in out.getvalue().splitlines()[4:-1]] == [f"MZ{k}" for k in range(10)]
    assert PAGE != 3  # the module's own constant is untouched outside this test


def test_the_cli_writes_the_file_whole_or_refuses(raw_db, tmp_path, capsys) -> None:
    if not raw_db.url.startswith("sqlite:"):
        pytest.skip("the CLI path is the same for both; the export itself is tested on both above")
    raw_db.migrate()
    _day_of_business(raw_db, ManualClock(at(DAY, 9)))
    out = tmp_path / "platform-20261201.csv"
    assert main(["--db", raw_db.url, "ledger", "export", "--hospital", "H001", "--day", "2026-12-01", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8").splitlines()[-1] == "#END,5" and not list(tmp_path.glob(".platform-*"))  # no temporary file left
    assert "5 row(s) of H001 on 2026-12-01" in capsys.readouterr().err
    assert main(["--db", raw_db.url, "ledger", "export", "--hospital", "H404", "--day", "2026-12-01", "--out", str(tmp_path / "x.csv")]) == 1
    assert "no hospital 'H404'" in capsys.readouterr().err and not (tmp_path / "x.csv").exists()
    assert main(["--db", raw_db.url, "ledger", "export", "--hospital", "H001", "--day", "1 Dec"]) == 1
    assert "is not a date" in capsys.readouterr().err
