"""Whole days in the real formats, end to end through `reconcile` (issue 17, findings 5-7).

Each day is built by hand: the HIS ledger in the neutral format, a bridge journal through the
bridge's own Journal API, and the bills exactly as WeChat Pay and Alipay write them
(tests/reconcile/real_bills.py). What a real merchant account holds besides the POS's trades, and
what midnight does to a refund, must reconcile cleanly (exit 0) with the right lists.
"""

from __future__ import annotations

import csv
import datetime
from pathlib import Path

from reconcile.cli import main

from .real_bills import AliRow, Instr, WxRow, alipay_zip, wechat_bill, write_journal

CHINA = datetime.timezone(datetime.timedelta(hours=8))
DAY = datetime.date(2026, 11, 22)
HIS_HEADER = "order_no,msg_id,direction,amount,status,pay_channel,pay_order_no,finished_at"


def at(hhmmss: str, day: datetime.date = DAY) -> int:
    return int(datetime.datetime.combine(day, datetime.time.fromisoformat(hhmmss), CHINA).timestamp())


def stamp(epoch: int) -> str:
    return datetime.datetime.fromtimestamp(epoch, CHINA).strftime("%Y-%m-%d %H:%M:%S")


def pos_no(n: int) -> str:
    """A merchant order number as the POS makes them (terminal/lifecycle.py: P + 26 hex + attempt)."""
    return f"P{n:026x}01"


def write_day(folder: Path, his: list[str], journal: list[Instr], wx: list[WxRow], ali: list[AliRow]) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "his.csv").write_text("\n".join([HIS_HEADER, *his, f"#END,{len(his)}"]) + "\n", encoding="utf-8")
    write_journal(folder / "journal.db", journal)
    (folder / "wechat.csv").write_bytes(wechat_bill(wx))
    (folder / "alipay.zip").write_bytes(alipay_zip(ali))
    return ["--his", str(folder / "his.csv"), "--journal", str(folder / "journal.db"), "--wechat-bill", str(folder / "wechat.csv"),
            "--alipay-bill", str(folder / "alipay.zip")]


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def test_other_trades_on_the_merchant_account_are_listed_apart_not_matched_to_a_failed_attempt(tmp_path, capsys):
    """Finding 6: a JSAPI payment from the hospital's official account, a payment-code payment from
    the pharmacy's own till and an Alipay kiosk trade share the merchant account with the POS. One
    of them has the amount and the time of a POS attempt that failed: it is not that attempt."""
    t = at("10:00:00")
    journal = [
        Instr("HIS-0001", "MZ0001", "+12.50", "SUCCESS", "WECHAT", "4200000001202611220000000001", t - 5, t),
        Instr("HIS-0002", "MZ0002", "+30.00", "FAILED", "WECHAT", "", t + 55, t + 60),  # declined: nothing taken
        Instr("HIS-0003", "MZ0003", "+200.00", "SUCCESS", "ALIPAY", "2026112222001401", t + 95, t + 100),
        Instr("HIS-0004", "MZ0003", "-60.00", "REFUNDED", "ALIPAY", "2026112222001401", t + 3595, t + 3600),
    ]
    his = [f"MZ0001,HIS-0001,+,12.50,SUCCESS,WECHAT,4200000001202611220000000001,{stamp(t)}",
           f"MZ0002,HIS-0002,+,30.00,FAILED,,,{stamp(t + 60)}",
           f"MZ0003,HIS-0003,+,200.00,SUCCESS,ALIPAY,2026112222001401,{stamp(t + 100)}",
           f"MZ0003,HIS-0004,-,60.00,SUCCESS,ALIPAY,2026112222001401,{stamp(t + 3600)}"]
    wx = [WxRow(stamp(t), "4200000001202611220000000001", pos_no(1), "SUCCESS", 1250, attach='{"dept":"儿科","win":3}'),
          WxRow(stamp(t + 70), "4200000002202611220000000002", "WXGZH20261122000017", "SUCCESS", 3000, trade_type="JSAPI", device="",
                name="预约挂号,专家号"),
          WxRow(stamp(t + 80), "4200000003202611220000000003", "YF202611220001", "SUCCESS", 3000, device="YF-01", name='药房"零售"')]
    ali = [AliRow("2026112222001401", pos_no(3), "交易", 20000, stamp(t + 100), name="检查费,CT平扫"),
           AliRow("2026112222001401", pos_no(3), "退款", 6000, stamp(t + 3600), request_no="R" + "4" * 31, name="检查费,CT平扫", order_fen=20000),
           AliRow("2026112222009999", "KIOSK-000081", "交易", 3000, stamp(t + 65), terminal="KIOSK-3")]
    files = write_day(tmp_path / "in", his, journal, wx, ali)
    assert main(["--date", DAY.isoformat(), *files, "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert rows(tmp_path / "out" / f"reconcile-{DAY}.csv") == []
    others = rows(tmp_path / "out" / f"reconcile-{DAY}-other-trades.csv")
    assert sorted((r["channel"], r["out_trade_no"], r["amount"], r["trade_type"]) for r in others) == [
        ("ALIPAY", "KIOSK-000081", "30.00", ""),
        ("WECHAT", "WXGZH20261122000017", "30.00", "JSAPI"),
        ("WECHAT", "YF202611220001", "30.00", "MICROPAY"),
    ]
    assert "3 other trade(s)" in out
    html = (tmp_path / "out" / f"reconcile-{DAY}.html").read_text(encoding="utf-8")
    assert "WXGZH20261122000017" in html and "非本系统交易" in html
