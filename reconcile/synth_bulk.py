"""Large synthetic days (`reconcile demo --transactions 1000000`, benchmarks), fast.

`reconcile.synth` writes a day through the sandbox's bill writers (firmware_sim.sandbox.bills) and
the bridge's Journal: right for tests, but a datetime, a dataclass and a list of 27 strings per bill
row cost a minute at a million. Here every source is formatted straight from the `Txn`s in one pass:
a timestamp text per second of the day and a yuan text per amount are made once (the day has a few
thousand of each), and each line is one f-string. The bytes are the sandbox's: the test
tests/reconcile/test_synth.py compares both writers on a day with every case.

The HIS ledger and the journal (the slowest: SQLite maintains its indexes) are written by a second
process where processes can fork, while this one writes the bills and the platform's ledger.
"""

from __future__ import annotations

import datetime
import heapq
import io
import multiprocessing
import zipfile
from operator import itemgetter
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator, TextIO

from protocol.amount import format_net_yuan, format_yuan
from reconcile.model import COLLECT
from reconcile.synth import (CHINA, DEVICE_ID, PLATFORM_HEADER, TERMINAL_ID, Txn, day_files, insert_journal_rows, out_refund_no, out_trade_no,
                             paid_msgs)

APPID, MCH_ID, PID = "wx2421b1c4370ec43b", "1900000109", "2088102146225135"
BUYER, LOGON, SUBJECT = "oUser0001", "oUser0001", "门诊缴费"  # the logon id of a buyer id this short is the id itself
WECHAT_HEADER = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,"
                 "微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注")
WECHAT_SUMMARY_HEADER = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
ALIPAY_DETAIL_HEADER = ("支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,"
                        "商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,"
                        "卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注")
ALIPAY_SUMMARY_HEADER = "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,支付宝优惠（元）,商家优惠（元）,卡消费金额（元）,服务费（元）,分润（元）,实收净额（元）"
CRLF = "\r\n"


class _Texts:
    """Per-day caches: "YYYY-MM-DD HH:MM:SS" per epoch second, yuan text per fen."""

    def __init__(self) -> None:
        self._stamps: dict[int, str] = {}
        self._yuan: dict[int, str] = {}

    def stamp(self, at: int) -> str:
        text = self._stamps.get(at)
        if text is None:
            text = self._stamps[at] = datetime.datetime.fromtimestamp(at, CHINA).strftime("%Y-%m-%d %H:%M:%S")
        return text

    def yuan(self, fen: int) -> str:
        text = self._yuan.get(fen)
        if text is None:
            text = self._yuan[fen] = format_yuan(fen)
        return text


class _Bill:
    """One channel's rows: (time, line) for payments, then refunds, in the day's order."""

    def __init__(self) -> None:
        self.payments: list[tuple[int, str]] = []
        self.refunds: list[tuple[int, str]] = []
        self.paid = self.refunded = 0

    def sorted_lines(self) -> list[str]:
        return list(self.iter_sorted())

    def iter_sorted(self) -> Iterator[str]:
        """The rows in time order, consumed: the lists are sorted in place and merged (stable, as the
        sandbox sorts: payments before refunds of the same second), then emptied; no second copy."""
        key = itemgetter(0)
        self.payments.sort(key=key)
        self.refunds.sort(key=key)
        for _, line in heapq.merge(self.payments, self.refunds, key=key):
            yield line
        self.payments, self.refunds = [], []


class _Counted:
    """A sink of platform lines (bill_rows' `platform`): each written through, counted."""

    def __init__(self, write: Callable[[str], object]) -> None:
        self._write = write
        self.n = 0

    def append(self, line: str) -> None:
        self._write(line)
        self.n += 1


def bill_rows(txns: list[Txn] | Callable[[], Iterable[Txn]], platform: list[str] | _Counted | None = None) -> dict[str, _Bill]:
    """Every bill row of the day, formatted: {"WECHAT": ..., "ALIPAY": ...}; and into `platform`,
    the lines of the platform's ledger (reconcile.synth.platform_rows, in the same pass: the
    merchant order numbers are hashed once)."""
    texts = _Texts()
    stamp, yuan = texts.stamp, texts.yuan
    day = _source(txns)
    paid = paid_msgs(day())
    bills = {"WECHAT": _Bill(), "ALIPAY": _Bill()}
    wx = bills["WECHAT"]
    plat = platform.append if platform is not None else None
    for t in day():
        rows = t.bill
        collect = t.direction == COLLECT
        # A collection's merchant order number (its first bill row's attempt), hashed once for both files.
        first = out_trade_no(t.msg_id, rows[0].attempt) if collect and rows else None
        if plat is not None and t.platform != "missing" and t.error_code != "duplicate_order":
            plat(_platform_line(t, texts, first))
        if not rows:
            continue
        bill = bills[t.channel]
        payer = t.msg_id if collect else paid.get(t.order_no, t.msg_id)
        for b in rows:
            trade = first if first is not None and b.attempt == rows[0].attempt else out_trade_no(payer, b.attempt)
            at, fen = b.at, b.fen
            when, amount = stamp(at), yuan(fen)
            if b.kind == "pay":
                bill.paid += fen
                if bill is wx:
                    line = (f"`{when},`{APPID},`{MCH_ID},`0,`{DEVICE_ID},`{b.channel_id},`{trade},`{BUYER},`MICROPAY,`SUCCESS,`OTHERS,`CNY,"
                            f"`{amount},`0.00,`0,`0,`0.00,`0.00,`,`,`{SUBJECT},`,`0.00000,`0.00%,`{amount},`0.00,`")
                else:
                    line = (f"{b.channel_id}\t,{trade}\t,交易,{SUBJECT},{when},{when},,,,{DEVICE_ID},{LOGON},{amount},{amount},"
                            "0.00,0.00,0.00,0.00,0.00,,0.00,0.00,,0.00,0.00,")
                bill.payments.append((at, line))
                continue
            bill.refunded += fen
            reversal = b.kind == "reversal"
            refund_no = "" if reversal else out_refund_no(t.msg_id)
            if bill is wx:
                line = (f"`{when},`{APPID},`{MCH_ID},`0,`{DEVICE_ID},`{b.channel_id},`{trade},`{BUYER},`MICROPAY,"
                        f"`{'REVOKED' if reversal else 'REFUND'},`OTHERS,`CNY,`0.00,`0.00,`{b.refund_id},`{refund_no},`{amount},`0.00,`ORIGINAL,"
                        f"`SUCCESS,`{SUBJECT},`,`0.00000,`0.00%,`0.00,`{amount},`")
            else:
                request = f"{refund_no}\t" if refund_no else ""
                line = (f"{b.channel_id}\t,{trade}\t,退款,{SUBJECT},{when},{when},,,,{DEVICE_ID},{LOGON},{amount},-{amount},"
                        f"0.00,0.00,0.00,0.00,0.00,,0.00,0.00,{request},0.00,0.00,{'撤销' if reversal else ''}")
            bill.refunds.append((at, line))
    return bills


def wechat_text(bill: _Bill) -> str:
    out = io.StringIO()
    write_wechat(out, bill)
    return out.getvalue()


def write_wechat(out: TextIO, bill: _Bill) -> None:
    """The WeChat Pay bill, line by line into `out` (the same text as wechat_text, never whole in memory)."""
    rows = len(bill.payments) + len(bill.refunds)
    out.write(WECHAT_HEADER + CRLF)
    _write_lines(out, bill.iter_sorted())
    summary = [str(rows), format_yuan(bill.paid), format_yuan(bill.refunded), "0.00", "0.00000", format_yuan(bill.paid), format_yuan(bill.refunded)]
    out.write(WECHAT_SUMMARY_HEADER + CRLF + ",".join("`" + v for v in summary) + CRLF)


def _write_lines(out: TextIO, lines: Iterable[str], end: str = CRLF, chunk: int = 4096) -> None:
    """Each line and `end` into `out`, a few thousand lines a write."""
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) == chunk:
            out.write(end.join(batch) + end)
            batch = []
    if batch:
        out.write(end.join(batch) + end)


def _cn(moment: datetime.datetime) -> str:
    return moment.strftime("%Y年%m月%d日 %H:%M:%S")


def alipay_texts(bill: _Bill, day: datetime.date, exported: datetime.datetime) -> tuple[str, str]:
    """The detail (业务明细) and summary (业务明细(汇总)) files."""
    summary = _alipay_summary(bill, day, exported)  # before the detail consumes the rows
    out = io.StringIO()
    _write_alipay_detail(out, bill, day, exported)
    return out.getvalue(), summary


def _period(day: datetime.date) -> str:
    start = datetime.datetime.combine(day, datetime.time())
    return f"#起始日期：[{_cn(start)}]   终止日期：[{_cn(start + datetime.timedelta(days=1))}]"


def _write_alipay_detail(out: TextIO, bill: _Bill, day: datetime.date, exported: datetime.datetime) -> None:
    """The detail file line by line into `out` (consumes the bill's rows)."""
    payments, refunds = len(bill.payments), len(bill.refunds)
    out.write(CRLF.join(["#支付宝业务明细查询", f"#账号：[{PID}]", _period(day),
                         "#-----------------------------------------业务明细列表----------------------------------------", ALIPAY_DETAIL_HEADER]) + CRLF)
    _write_lines(out, bill.iter_sorted())
    out.write(CRLF.join([
        "#-----------------------------------------业务明细列表结束------------------------------------",
        f"#交易合计：{payments}笔，商家实收共{format_yuan(bill.paid)}元，商家优惠共0.00元",
        f"#退款合计：{refunds}笔，商家实收退款共{format_net_yuan(-bill.refunded)}元，商家优惠退款共0.00元",
        f"#导出时间：[{_cn(exported)}]"]) + CRLF)


def _alipay_summary(bill: _Bill, day: datetime.date, exported: datetime.datetime) -> str:
    period = _period(day)
    net = bill.paid - bill.refunded
    zero = "0.00"
    totals = [str(len(bill.payments)), str(len(bill.refunds)), format_yuan(bill.paid), format_net_yuan(net), zero, zero, zero, zero, zero, format_net_yuan(net)]
    summary = CRLF.join([
        "#支付宝业务汇总查询", f"#账号：[{PID}]", period,
        "#-----------------------------------------业务汇总列表----------------------------------------", ALIPAY_SUMMARY_HEADER,
        ",".join(["", ""] + totals), ",".join(["合计", ""] + totals),
        "#----------------------------------------业务汇总列表结束-------------------------------------",
        f"#导出时间：[{_cn(exported)}]"]) + CRLF
    return summary


class _GbkName(zipfile.ZipInfo):
    """A zip entry named in GBK without the UTF-8 flag, as Alipay's bill zips are."""

    def _encodeFilenameFlags(self) -> tuple[bytes, int]:  # noqa: N802 (zipfile's own name)
        return self.filename.encode("gbk"), self.flag_bits & ~0x800


def alipay_zip(bill: _Bill, day: datetime.date) -> bytes:
    out = io.BytesIO()
    write_alipay_zip(out, bill, day)
    return out.getvalue()


def write_alipay_zip(out: BinaryIO, bill: _Bill, day: datetime.date) -> None:
    """The Alipay bill zip into `out`, its detail compressed as it is formatted (never whole in
    memory); its members hold the same text as alipay_texts'. Consumes the bill's rows."""
    exported = datetime.datetime.combine(day + datetime.timedelta(days=1), datetime.time(9), CHINA)
    stem = f"{PID}_{day.strftime('%Y%m%d')}"
    summary = _alipay_summary(bill, day, exported)
    large = len(bill.payments) + len(bill.refunds) > 4_000_000  # over 2 GiB of detail is possible: a zip64 member
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        info = _GbkName(f"{stem}_业务明细.csv", date_time=exported.timetuple()[:6])
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=large) as member, io.TextIOWrapper(member, encoding="gbk", errors="replace", newline="") as text:
            _write_alipay_detail(text, bill, day, exported)
        info = _GbkName(f"{stem}_业务明细(汇总).csv", date_time=exported.timetuple()[:6])
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, summary.encode("gbk", errors="replace"))


def his_text(txns: Iterable[Txn]) -> str:
    out = io.StringIO()
    write_his(out, txns)
    return out.getvalue()


def write_his(out: TextIO, txns: Iterable[Txn]) -> None:
    """The HIS ledger line by line into `out` (the same text as his_text)."""
    ledger = _HisLedger(out)
    for t in txns:
        ledger.add(t)
    ledger.close()


class _HisLedger:
    """The HIS ledger written as the transactions pass (`passing`: while the journal takes them)."""

    HEADER = "order_no,msg_id,direction,amount,status,pay_channel,pay_order_no,finished_at\n"

    def __init__(self, out: TextIO) -> None:
        self._out, self._texts, self.count = out, _Texts(), 0
        self._batch: list[str] = []
        out.write(self.HEADER)

    def add(self, t: Txn) -> None:
        if t.his_status is None:
            return
        paid = t.his_status == "SUCCESS"
        texts = self._texts
        row = (f"{t.order_no},{t.msg_id},{'+' if t.direction == COLLECT else '-'},{texts.yuan(t.his_fen or t.fen)},{t.his_status},"
               f"{t.channel if paid else ''},{t.pay_order_no if paid else ''},{texts.stamp(t.at)}\n")
        self._batch += [row] * t.his_rows
        self.count += t.his_rows
        if len(self._batch) >= 4096:
            self._out.write("".join(self._batch))
            self._batch = []

    def passing(self, txns: Iterable[Txn]) -> Iterator[Txn]:
        for t in txns:
            self.add(t)
            yield t

    def close(self) -> None:
        self._out.write("".join(self._batch) + f"#END,{self.count}\n")
        self._batch = []


def _platform_line(t: Txn, texts: _Texts, trade: str | None) -> str:
    """One line of the platform's ledger: what reconcile.synth.platform_rows says of `t` (`trade`:
    the merchant order number of its first bill row, if it has one)."""
    bill = t.bill
    if t.direction == COLLECT:
        first = bill[0] if bill and bill[0].kind == "pay" else next((b for b in bill if b.kind == "pay"), None)
        out_no = trade if first is not None and first is bill[0] and trade else out_trade_no(t.msg_id, first.attempt if first else 1)
        kind, msg = "payment", ""
        state = ("closed" if any(b.kind == "reversal" for b in bill) else "succeeded") if first else "failed"
        channel_id = first.channel_id if first else ""
    else:
        done = next((b for b in bill if b.kind == "refund"), None)
        kind, out_no, msg = "refund", out_refund_no(t.msg_id), t.msg_id
        state, channel_id = ("succeeded", done.refund_id or done.channel_id) if done else ("failed", "")
    return (f"{kind},{t.order_no},{out_no},{msg},{TERMINAL_ID},{DEVICE_ID},{t.channel},{texts.yuan(t.fen)},{t.platform or state},{channel_id},"
            f"{texts.stamp(t.at - 3)},{texts.stamp(t.at)}\n")


def write_books(his: Path, journal: Path, txns: list[Txn] | Callable[[], Iterable[Txn]]) -> None:
    """The hospital's side: the HIS ledger and the bridge journal."""
    with open(his, "w", encoding="utf-8", newline="") as out:
        ledger = _HisLedger(out)
        write_journal(journal, ledger.passing(_source(txns)()))  # one pass over the day for both
        ledger.close()


def _source(txns: list[Txn] | Callable[[], Iterable[Txn]]) -> Callable[[], Iterable[Txn]]:
    """The day as a function giving its transactions anew on each call (one pass each)."""
    if callable(txns):
        return txns
    return lambda: txns


def write_journal(path: Path, txns: Iterable[Txn]) -> None:
    from bridge.journal import Journal

    Journal(path, synchronous="NORMAL").close()  # the bridge makes its journal (schema, version)
    texts = _Texts()
    signed = {1: "+", -1: "-"}
    insert_journal_rows(path, (
        (t.msg_id, t.order_no, signed[t.direction] + texts.yuan(t.fen), t.ours_status, t.channel, t.pay_order_no,
         signed[t.direction] + texts.yuan(t.fen), t.at - 5, t.at, t.error_code) for t in txns))


def write_large_day(folder: Path, day: datetime.date, txns: list[Txn] | Callable[[], Iterable[Txn]]) -> dict[str, Path]:
    """Every source of the day into `folder` (the names reconcile.synth.write_day uses). `txns` as
    reconcile.synth.write_day takes it: given as a function, each process makes the transactions
    itself, one pass per file it writes (and one for the refunds' payers), and none holds the day."""
    folder.mkdir(parents=True, exist_ok=True)
    files = day_files(folder, day)
    child = None
    if "fork" in multiprocessing.get_all_start_methods():  # the day is shared with the child, not copied
        child = multiprocessing.get_context("fork").Process(target=write_books, args=(files["his"], files["journal"], txns), name="synth-books")
        child.start()
    else:
        write_books(files["his"], files["journal"], txns)
    try:
        # Each file is written as it is formatted: the platform's ledger line by line during the pass
        # over the day, the bills from their rows (sorted in place, then merged), never a whole text.
        with open(files["platform"], "w", encoding="utf-8", newline="") as plat:
            plat.write(PLATFORM_HEADER.format(hospital="H001", day=day.isoformat()))
            counted = _Counted(plat.write)
            bills = bill_rows(txns, counted)
            plat.write(f"#END,{counted.n}\n")
        with open(files["wechat"], "w", encoding="utf-8", newline="") as wx:
            write_wechat(wx, bills["WECHAT"])
        with open(files["alipay"], "wb") as ali:
            write_alipay_zip(ali, bills["ALIPAY"], day)
        del bills
    finally:
        if child is not None:
            child.join()
    if child is not None and child.exitcode != 0:
        raise RuntimeError(f"writing the HIS ledger and the bridge journal failed (exit status {child.exitcode})")
    return files
