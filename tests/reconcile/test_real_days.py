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


NEXT = DAY + datetime.timedelta(days=1)


def _midnight_days(tmp_path: Path, *, second_refund_in_next_bill: bool = True) -> tuple[list[str], list[str]]:
    """Finding 7: refunds started before midnight and finished after it. HIS books an instruction on
    the day it sends it; the channel puts a refund in the bill of the day it received the request;
    our journal has the result on the day it came."""
    pay_at, late = at("10:00:00"), at("23:59:40")
    t_pay, a_pay = "4200000009202611220000000009", "2026112222001409"
    journal = [
        Instr("HIS-0009", "MZ0009", "+100.00", "SUCCESS", "WECHAT", t_pay, pay_at - 5, pay_at),
        Instr("HIS-0010", "MZ0010", "+200.00", "SUCCESS", "ALIPAY", a_pay, pay_at + 55, pay_at + 60),
        # R1: requested at 23:59:45 (the bill of the 22nd has it), the POS confirmed it at 00:00:20.
        Instr("HIS-0011", "MZ0009", "-30.00", "REFUNDED", "WECHAT", "50300000112026112200000011", late, late + 40),
        # R2: HIS sent it at 23:59:55, the supervisor confirmed on the POS at 00:00:30: the 23rd's bill.
        Instr("HIS-0012", "MZ0009", "-20.00", "REFUNDED", "WECHAT", "50300000122026112300000012", late + 15, late + 55),
        # R3: an Alipay refund, requested before midnight, its result after.
        Instr("HIS-0013", "MZ0010", "-60.00", "REFUNDED", "ALIPAY", a_pay, late - 100, late + 90),
        # On the 23rd, an ordinary payment.
        Instr("HIS-0014", "MZ0014", "+12.50", "SUCCESS", "WECHAT", "4200000014202611230000000014", at("09:00:00", NEXT) - 5, at("09:00:00", NEXT)),
    ]
    write_journal(tmp_path / "journal.db", journal)
    files = {}
    his_d = [f"MZ0009,HIS-0009,+,100.00,SUCCESS,WECHAT,{t_pay},{stamp(pay_at)}",
             f"MZ0010,HIS-0010,+,200.00,SUCCESS,ALIPAY,{a_pay},{stamp(pay_at + 60)}",
             f"MZ0009,HIS-0011,-,30.00,SUCCESS,WECHAT,50300000112026112200000011,{stamp(late + 40)}",
             f"MZ0009,HIS-0012,-,20.00,SUCCESS,WECHAT,50300000122026112300000012,{stamp(late + 55)}",
             f"MZ0010,HIS-0013,-,60.00,SUCCESS,ALIPAY,{a_pay},{stamp(late + 90)}"]
    his_n = [f"MZ0014,HIS-0014,+,12.50,SUCCESS,WECHAT,4200000014202611230000000014,{stamp(at('09:00:00', NEXT))}"]
    wx_d = [WxRow(stamp(pay_at), t_pay, pos_no(9), "SUCCESS", 10000, attach='{"dept":"儿科","win":3}'),
            WxRow(stamp(late + 5), t_pay, pos_no(9), "REFUND", 3000, refund_id="50300000112026112200000011", out_refund_no="R" + "1" * 31,
                  refund_status="PROCESSING")]
    wx_n = [WxRow(stamp(at("09:00:00", NEXT)), "4200000014202611230000000014", pos_no(14), "SUCCESS", 1250)]
    if second_refund_in_next_bill:
        wx_n.insert(0, WxRow(stamp(late + 50), t_pay, pos_no(9), "REFUND", 2000, refund_id="50300000122026112300000012",
                             out_refund_no="R" + "2" * 31))
    ali_d = [AliRow(a_pay, pos_no(10), "交易", 20000, stamp(pay_at + 60), name="检查费,CT平扫"),
             AliRow(a_pay, pos_no(10), "退款", 6000, stamp(late - 90), request_no="R" + "3" * 31, name="检查费,CT平扫", order_fen=20000)]
    for day, his, wx, ali in ((DAY, his_d, wx_d, ali_d), (NEXT, his_n, wx_n, [])):
        folder = tmp_path / day.isoformat()
        folder.mkdir()
        (folder / "his.csv").write_text("\n".join([HIS_HEADER, *his, f"#END,{len(his)}"]) + "\n", encoding="utf-8")
        (folder / "wechat.csv").write_bytes(wechat_bill(wx))
        files[day] = ["--date", day.isoformat(), "--his", str(folder / "his.csv"), "--journal", str(tmp_path / "journal.db"),
                      "--wechat-bill", str(folder / "wechat.csv")]
        (folder / "alipay.zip").write_bytes(alipay_zip(ali))  # the 23rd: no trades, but HIS-0013's result is an Alipay one
        files[day] += ["--alipay-bill", str(folder / "alipay.zip")]
        files[day] += ["--out", str(tmp_path / "out")]
    return files[DAY], files[NEXT]


def test_refunds_across_midnight_reconcile_on_both_days(tmp_path, capsys):
    day, next_day = _midnight_days(tmp_path)
    assert main(day) == 0
    first = rows(tmp_path / "out" / f"reconcile-{DAY}.csv")
    assert sorted((r["class"], r["reason"], r["msg_id"], r["resolved"]) for r in first) == [
        ("cross_day", "result_next_day", "HIS-0011", "no action"),  # HIS and the bill today, our result tomorrow
        ("cross_day", "result_next_day", "HIS-0012", "no action"),  # HIS today; the bill and our result tomorrow
        ("cross_day", "result_next_day", "HIS-0013", "no action"),
    ]
    assert "not yet resolved" not in capsys.readouterr().out
    assert main(next_day) == 0
    second = rows(tmp_path / "out" / f"reconcile-{NEXT}.csv")
    assert sorted((r["class"], r["reason"], r["msg_id"]) for r in second) == [
        ("cross_day", "seen_previous_day", "HIS-0011"),
        ("cross_day", "seen_previous_day", "HIS-0012"),
        ("cross_day", "seen_previous_day", "HIS-0013"),
    ]
    r2 = next(r for r in second if r["msg_id"] == "HIS-0012")
    assert "his.csv line 5 (2026-11-22)" in r2["his_where"] and r2["channel_amount"] == "-20.00"  # the bill of the 23rd has it


def test_a_refund_missing_from_the_next_days_bill_is_still_a_difference(tmp_path, capsys):
    day, next_day = _midnight_days(tmp_path, second_refund_in_next_bill=False)
    assert main(day) == 0  # the 22nd cannot know yet
    assert main(next_day) == 1
    assert [(r["class"], r["reason"], r["msg_id"]) for r in rows(tmp_path / "out" / f"reconcile-{NEXT}.csv") if r["class"] != "cross_day"] == [
        ("status_mismatch", "refund_his_only", "HIS-0012"),  # HIS and our journal say refunded, no bill has it
    ]
