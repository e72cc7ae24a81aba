"""Alipay's trade bill: the zip behind alipay.data.dataservice.bill.downloadurl.query (bill_type=trade).

The zip holds GBK-encoded CSVs, named `<账号>_<日期>_业务明细.csv` (the detail) and
`<账号>_<日期>_业务明细(汇总).csv` (the summary per store). The detail file reads:

    #支付宝业务明细查询
    #账号：[2088...]
    #起始日期：[...]   终止日期：[...]
    #-----------------------------------------业务明细列表----------------------------------------
    支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,
    订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,
    券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注
    <rows; ids often padded with a tab so that Excel keeps them as text>
    #-----------------------------------------业务明细列表结束------------------------------------
    #交易合计：N笔，商家实收共X元，商家优惠共0.00元
    #退款合计：M笔，商家实收退款共-Y元，商家优惠退款共0.00元
    #导出时间：[...]

Rows: 业务类型 交易 (a payment, keyed by 支付宝交易号) or 退款 (a refund of that trade, written with a
negative amount, named by 退款批次号/请求号 = out_request_no (our results' pay_order_no for it); a 退款 row without a request number is
the trade being cancelled, 撤销, and is read as the reversal of that payment). We reconcile 商家实收（元）, what the
hospital actually receives. The end marker and the 合计 lines guard against truncation; the summary
file's 合计 counts are checked when it is present.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import BinaryIO, Iterator

from protocol.amount import format_net_yuan
from reconcile.attribution import POS_ORDER_NO, OtherSink, OtherTrade
from reconcile.errors import BadInput, SourceUnavailable
from reconcile.fen import FenParser
from reconcile.lines import BATCH, TIME_PATTERN, YUAN_PATTERN, decode_line, fit_free_text, read_records
from reconcile.model import COLLECT, REFUND, Channel, State

TRADE_NO = "支付宝交易号"
OUT_TRADE_NO = "商户订单号"
BIZ_TYPE = "业务类型"
FINISHED = "完成时间"
RECEIVED = "商家实收（元）"
REQUEST_NO = "退款批次号/请求号"
REQUIRED = (TRADE_NO, OUT_TRADE_NO, BIZ_TYPE, FINISHED, RECEIVED, REQUEST_NO)
TERMINAL = "终端号"  # the terminal_id the POS sends (optional: attribution by device number)
END_MARK = "业务明细列表结束"
# The merchant's and the buyer's own text, written unquoted: commas and quotes as typed.
FREE_TEXT = ("商品名称", "门店名称", "操作员", "券名称", "备注")
TIME_COLUMNS = ("创建时间", "完成时间")
TRADE_GBK = "交易".encode("gbk")
REFUND_GBK = "退款".encode("gbk")
TRADES_FOOTER = re.compile(r"交易合计[：:]\s*(\d+)\s*笔(?:.*?商家实收共\s*(-?\d+\.\d{2})\s*元)?")
REFUNDS_FOOTER = re.compile(r"退款合计[：:]\s*(\d+)\s*笔(?:.*?商家实收退款共\s*(-?\d+\.\d{2})\s*元)?")
SUMMARY_TRADES = "交易订单总笔数"
SUMMARY_REFUNDS = "退款订单总笔数"
# A day's bill of a large hospital is tens of MB; anything far beyond is not a bill.
MAX_MEMBER_BYTES = 4 << 30


def read_alipay_bill(path: str | Path, others: OtherSink | None = None) -> Iterator[list[tuple]]:
    """Stream the detail rows as batches of Entry-layout tuples; check end marker, footer and summary.
    With `others`, rows that are not the POS's trades go there instead (reconcile.attribution)."""
    name = Path(path).name
    try:
        fb: BinaryIO = open(path, "rb")
    except OSError as exc:
        raise SourceUnavailable(f"cannot open the Alipay bill {path}: {exc.strerror or exc}") from None
    with fb:
        zf = _open_zip(fb, name)
        with zf:
            detail, summary = _members(zf, name)
            try:
                counts = yield from _read_detail(zf, detail, name, others)
                if summary is not None:
                    _check_summary(zf, summary, name, *counts)
            except (zipfile.BadZipFile, EOFError, OSError) as exc:
                raise BadInput(name, None, None, f"the zip is damaged or cut short: {exc}") from None


def _open_zip(fb: BinaryIO, name: str) -> zipfile.ZipFile:
    """Alipay writes member names in GBK without the zip's UTF-8 flag; a bill repacked on another
    machine may carry them in UTF-8 without the flag: names that are not GBK are read as UTF-8."""
    for encoding in ("gbk", "utf-8"):
        fb.seek(0)
        try:
            zf = zipfile.ZipFile(fb, metadata_encoding=encoding)
        except UnicodeDecodeError:
            continue
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise BadInput(name, None, None, f"not a zip file as Alipay serves its bills ({exc}); truncated download?") from None
        if encoding == "utf-8" or any("业务明细" in i.filename for i in zf.infolist()):
            return zf
        zf.close()  # GBK decoded to nonsense: try the names as UTF-8
    raise BadInput(name, None, None, "the zip's file names are neither GBK nor UTF-8: not an Alipay bill")


def _members(zf: zipfile.ZipFile, name: str) -> tuple[zipfile.ZipInfo, zipfile.ZipInfo | None]:
    details, summaries = [], []
    for info in zf.infolist():
        if info.is_dir() or not info.filename.lower().endswith(".csv"):
            continue
        if info.file_size > MAX_MEMBER_BYTES:
            raise BadInput(name, None, info.filename, f"{info.file_size} bytes uncompressed: not a bill")
        if "汇总" in info.filename:
            summaries.append(info)
        elif "业务明细" in info.filename:
            details.append(info)
    if len(details) != 1:
        found = ", ".join(i.filename for i in zf.infolist()) or "nothing"
        raise BadInput(name, None, None, f"expected exactly one ..._业务明细.csv in the zip, found: {found}")
    return details[0], (summaries[0] if summaries else None)


def _read_detail(zf: zipfile.ZipFile, info: zipfile.ZipInfo, zname: str, others: OtherSink | None):
    name = f"{zname}:{info.filename}"
    # zipfile's own readline is Python code; a BufferedReader over it splits lines in C.
    with io.BufferedReader(zf.open(info), buffer_size=1 << 20) as fb:
        header: list[str] | None = None
        lineno = 0
        for lineno, row in read_records(fb, name, "gbk"):
            if not row[0].startswith("#"):
                header = [h.strip() for h in row]
                break
        if header is None:
            raise BadInput(name, lineno or 1, None, "no header row (支付宝交易号,商户订单号,...): not a trade bill detail file")
        pos = {h: i for i, h in enumerate(header)}
        for column in REQUIRED:
            if column not in pos:
                raise BadInput(name, lineno, column, "column missing from the header (a bill of type trade is expected)")
        ncol = len(header)
        i_trade, i_otn, i_type, i_fin, i_recv, i_req = (pos[c] for c in REQUIRED)
        i_dev = pos.get(TERMINAL)
        devices, pos_order = (others.attribution.devices if others else frozenset()), POS_ORDER_NO.fullmatch
        fen = FenParser(name)
        memo: dict[bytes, int] = {}  # keyed by the raw bytes: no decoding for a known amount
        trades = refunds = trade_sum = refund_sum = 0
        alipay, collect, refund, moved, reversal = int(Channel.ALIPAY), COLLECT, REFUND, int(State.MOVED), int(State.REVERSAL)
        ended = False
        batch: list[tuple] = []
        free = tuple(pos[c] for c in FREE_TEXT if c in pos)
        valid = _validator(header)
        # GBK decoding costs ~4 us a line in CPython, three times the rest of the work, so rows
        # are split as bytes (in GBK a ',' byte is never part of a two-byte character) and only
        # the fields we use are decoded: IDs, times and amounts are ASCII, 业务类型 is compared
        # as GBK bytes. Alipay quotes nothing: a row with surplus fields has commas in its free
        # text (商品名称, 备注...) and is fitted back together as text (reconcile.lines).
        for raw in fb:
            lineno += 1
            start = lineno
            raw = raw.rstrip(b"\r\n")
            if not raw:
                continue
            braw = raw.split(b",")
            if len(braw) != ncol:
                first = decode_line(braw[0], "gbk", name, start)
                if first.startswith("#"):
                    if END_MARK not in first:
                        raise BadInput(name, start, None, f"unexpected comment line inside the detail list: {first[:40]!r}")
                    ended = True
                    break
                fitted = fit_free_text(decode_line(raw, "gbk", name, start).split(","), ncol, free, valid) if len(braw) > ncol else None
                if fitted is None:
                    raise BadInput(name, start, None, f"{len(braw)} fields, but the header has {ncol} (a cut line?)"
                                   + (", and no reading of the free-text columns (商品名称, 备注...) fits the row" if len(braw) > ncol else ""))
                braw = [f.encode("gbk") for f in fitted]
            try:
                trade_no = braw[i_trade].strip().decode("ascii")
                order_no = braw[i_otn].strip().decode("ascii")
                finished = braw[i_fin].strip().decode("ascii")
            except UnicodeDecodeError:
                raise _not_ascii(braw, header, (i_trade, i_otn, i_fin), name, start) from None
            if not trade_no:
                raise BadInput(name, start, TRADE_NO, "empty")
            kind = braw[i_type]
            if kind != TRADE_GBK and kind != REFUND_GBK:
                kind = kind.strip()
            amount = braw[i_recv]
            if kind == TRADE_GBK:
                value = memo.get(amount)
                if value is None:
                    value = fen.parse(_ascii(amount, name, start, RECEIVED).strip(), start, RECEIVED)
                    memo[amount] = value
                trades += 1
                trade_sum += value
                t = (start, order_no, "", collect, value, moved, alipay, trade_no, "", finished)
            elif kind == REFUND_GBK:
                value = abs(fen.parse_signed(_ascii(amount, name, start, RECEIVED).strip(), start, RECEIVED))
                refunds += 1
                refund_sum += value
                request_no = _ascii(braw[i_req], name, start, REQUEST_NO).strip()
                if request_no:  # a refund is named by its request number, as in our results (pay_order_no)
                    t = (start, order_no, "", refund, value, moved, alipay, request_no, trade_no, finished)
                else:  # no refund request number: the trade was cancelled (撤销, alipay.trade.cancel)
                    t = (start, order_no, "", collect, value, reversal, alipay, trade_no, "", finished)
            else:
                raise BadInput(name, start, BIZ_TYPE, f"{decode_line(kind, 'gbk', name, start)!r} is neither 交易 nor 退款")
            if others is not None and (pos_order(order_no) is None or devices):
                device = decode_line(braw[i_dev], "gbk", name, start).strip() if i_dev is not None else ""
                why = others.attribution.why_not(order_no, None, device)
                if why is not None:
                    others.trades.append(OtherTrade(Channel.ALIPAY, f"{name} line {start}", order_no, trade_no, t[3], value, State(t[5]),
                                                    finished, "", device, why))
                    continue
            batch.append(t)
            if len(batch) == BATCH:
                yield batch
                batch = []
        if batch:
            yield batch
        if not ended:
            raise BadInput(name, lineno, None, f"no end marker ({END_MARK}) after {trades + refunds} rows: the bill is incomplete (truncated?)")
        footer = " ".join(",".join(r) for _, r in read_records(fb, name, "gbk", start=lineno))
        _check_footer(footer, name, lineno, fen, trades, trade_sum, refunds, refund_sum)
    return trades, refunds


def _validator(header: list[str]):
    """Checks a fitted row must pass: times, every amount column (元), the business type."""
    checks = [(i, TIME_PATTERN) for i, h in enumerate(header) if h in TIME_COLUMNS]
    checks += [(i, YUAN_PATTERN) for i, h in enumerate(header) if h.endswith("（元）")]
    kind = header.index(BIZ_TYPE)

    def valid(row: list[str]) -> bool:
        return row[kind].strip() in ("交易", "退款") and all(pattern.fullmatch(row[i].strip()) for i, pattern in checks)

    return valid


def _ascii(field: bytes, name: str, lineno: int, column: str) -> str:
    try:
        return field.decode("ascii")
    except UnicodeDecodeError:
        raise BadInput(name, lineno, column, "not ASCII text (IDs, times and amounts are)") from None


def _not_ascii(row: list[bytes], header: list[str], positions: tuple[int, ...], name: str, lineno: int) -> BadInput:
    for i in positions:
        try:
            row[i].decode("ascii")
        except UnicodeDecodeError:
            return BadInput(name, lineno, header[i], "not ASCII text (IDs, times and amounts are)")
    return BadInput(name, lineno, None, "not ASCII text")


def _check_footer(footer: str, name: str, lineno: int, fen: FenParser, trades: int, trade_sum: int, refunds: int, refund_sum: int) -> None:
    for pattern, label, count, total in ((TRADES_FOOTER, "#交易合计", trades, trade_sum), (REFUNDS_FOOTER, "#退款合计", refunds, -refund_sum)):
        match = pattern.search(footer)
        if match is None:
            raise BadInput(name, lineno, label, "footer line missing after the end marker (truncated?)")
        if int(match.group(1)) != count:
            raise BadInput(name, lineno, label, f"the footer counts {match.group(1)}, the detail has {count} rows (truncated or altered?)")
        if match.group(2) is not None:
            text = match.group(2)
            stated = fen.parse_signed(text, lineno, label) if text not in ("-0.00",) else 0
            if stated != total:
                shown = format_net_yuan(total)
                raise BadInput(name, lineno, label, f"the footer says {text} yuan, the rows add up to {shown} (truncated or altered?)")


def _check_summary(zf: zipfile.ZipFile, info: zipfile.ZipInfo, zname: str, trades: int, refunds: int) -> None:
    name = f"{zname}:{info.filename}"
    with zf.open(info) as fb:
        rows = [(n, [c.strip() for c in r]) for n, r in read_records(fb, name, "gbk") if not r[0].startswith("#")]
    if not rows:
        raise BadInput(name, 1, None, "the summary file has no header row")
    (hline, header), body = rows[0], rows[1:]
    if SUMMARY_TRADES not in header or SUMMARY_REFUNDS not in header:
        raise BadInput(name, hline, SUMMARY_TRADES, "column missing from the summary header")
    i_t, i_r = header.index(SUMMARY_TRADES), header.index(SUMMARY_REFUNDS)
    total_rows = [(n, r) for n, r in body if "合计" in r[:2]]
    counted = total_rows[-1:] if total_rows else body
    want_t = want_r = 0
    for n, r in counted:
        if len(r) != len(header):
            raise BadInput(name, n, None, f"{len(r)} fields, but the header has {len(header)}")
        for i, column in ((i_t, SUMMARY_TRADES), (i_r, SUMMARY_REFUNDS)):
            if not (r[i].isascii() and r[i].isdigit()):
                raise BadInput(name, n, column, f"{r[i]!r} is not a count")
        want_t += int(r[i_t])
        want_r += int(r[i_r])
    if (want_t, want_r) != (trades, refunds):
        raise BadInput(name, counted[-1][0] if counted else hline, SUMMARY_TRADES, f"the summary counts {want_t} trades and {want_r} refunds, the detail has {trades} and {refunds}")
