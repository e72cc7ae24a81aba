"""WeChat Pay's trade bill (downloadbill, bill_type=ALL), in the format WeChat serves it.

The file (UTF-8 CSV, as /pay/downloadbill returns it, optionally gzip-compressed with
tar_type=GZIP) has four parts: the detail header (plain), detail rows (every value prefixed with a
backtick ` so that Excel keeps long numbers as text; nothing is quoted, so the merchant's free text,
商品名称 and 商户数据包 (attach, often JSON), holds commas and double quotes as sent), the summary header
`总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额`
and one summary row (values with backticks). A day without transactions is WeChat's XML answer
`No Bill Exist` (error_code 20002): an empty bill, not an error.

Rows we read: `交易状态` SUCCESS (a payment: 应结订单金额, keyed by 微信订单号), REFUND (a refund:
退款金额, keyed by 微信退款单号, with 商户退款单号) and REVOKED (a paid order reversed, "撤销"; it
appears with the original order number: its 退款金额 minus its own 应结订单金额 is what it gives back
of that trade, so a SUCCESS row plus a REVOKED row, or a lone REVOKED row, nets to nothing held). Amounts are yuan with two decimals and go through protocol.amount.parse_yuan; the
fee columns (5 decimals) are not money we reconcile and are not read.

The summary is the defence against a truncated download: the row count, the sum of 应结订单金额
over all rows and the sum of 退款金额 over refund and reversal rows must equal what the rows add up to.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path
from typing import BinaryIO, Iterator

from protocol.amount import format_yuan
from reconcile.attribution import POS_ORDER_NO, POS_TRADE_TYPES, OtherSink, OtherTrade
from reconcile.errors import BadInput, SourceUnavailable
from reconcile.fen import FenParser
from reconcile.lines import BATCH, TIME_PATTERN, YUAN_PATTERN, bad_bytes, fit_free_text, read_records
from reconcile.model import COLLECT, REFUND, Channel, State

TIME = "交易时间"
TXN_ID = "微信订单号"
OUT_TRADE_NO = "商户订单号"
TRADE_STATE = "交易状态"
SETTLEMENT = "应结订单金额"
REFUND_ID = "微信退款单号"
OUT_REFUND_NO = "商户退款单号"
REFUND_FEE = "退款金额"
REFUND_STATUS = "退款状态"
TRADE_TYPE = "交易类型"
DEVICE = "设备号"
REQUIRED = (TIME, TXN_ID, OUT_TRADE_NO, TRADE_STATE, SETTLEMENT, REFUND_ID, OUT_REFUND_NO, REFUND_FEE, REFUND_STATUS, TRADE_TYPE, DEVICE)

# The columns holding the merchant's own text, written as sent: commas, quotes, JSON.
FREE_TEXT = ("商品名称", "商户数据包")
# Typed columns a fitted row must get right (see reconcile.lines.fit_free_text).
TIME_COLUMNS = ("交易时间",)
YUAN_COLUMNS = ("应结订单金额", "代金券金额", "退款金额", "充值券退款金额", "订单金额", "申请退款金额")
FEE = re.compile(r"-?\d+\.\d+")
RATE = re.compile(r"\d+(?:\.\d+)?%")

SUMMARY_FIRST = "总交易单数"
SUM_SETTLEMENT = "应结订单总金额"
SUM_REFUND = "退款总金额"

# 退款状态 of a refund row. The bill is a snapshot taken when the refund was accepted, so
# PROCESSING means the merchant's money has left; CHANGE (退款异常: the bank card refused it) too.
REFUND_STATES = {"SUCCESS": State.MOVED, "PROCESSING": State.MOVED, "CHANGE": State.MOVED, "REFUNDCLOSE": State.NOT_MOVED, "FAIL": State.NOT_MOVED}
NO_BILL = re.compile(r"<return_msg>\s*(?:<!\[CDATA\[)?\s*([^<\]]*)")


def read_wechat_bill(path: str | Path, others: OtherSink | None = None) -> Iterator[list[tuple]]:
    """Stream the bill's detail rows as batches of Entry-layout tuples, then check the summary.
    With `others`, rows that are not the POS's trades go there instead (reconcile.attribution)."""
    name = Path(path).name
    try:
        fb: BinaryIO = open(path, "rb")
    except OSError as exc:
        raise SourceUnavailable(f"cannot open the WeChat Pay bill {path}: {exc.strerror or exc}") from None
    with fb:
        if fb.read(2) == b"\x1f\x8b":
            fb.seek(0)
            with gzip.GzipFile(fileobj=fb) as gz:
                yield from _guarded(gz, name, others)
        else:
            fb.seek(0)
            yield from _guarded(fb, name, others)


def _guarded(fb: BinaryIO, name: str, others: OtherSink | None) -> Iterator[list[tuple]]:
    try:
        yield from _read(fb, name, others)
    except (EOFError, gzip.BadGzipFile, OSError) as exc:
        raise BadInput(name, None, None, f"the gzip-compressed bill is damaged or cut short: {exc}") from None


def _read(fb: BinaryIO, name: str, others: OtherSink | None) -> Iterator[list[tuple]]:
    records = read_records(fb, name, "utf-8")
    first = next(records, None)
    if first is None:
        raise BadInput(name, 1, None, "empty file: a WeChat Pay bill starts with its header row (or is WeChat's 'No Bill Exist' answer)")
    lineno, header = first
    if header[0].lstrip().startswith("<xml"):
        _no_bill(fb, ",".join(header), name)
        return
    header = [h.strip() for h in header]
    pos = {h: i for i, h in enumerate(header)}
    for column in REQUIRED:
        if column not in pos:
            raise BadInput(name, lineno, column, "column missing from the header: expected a bill of type ALL in the current format (see docs/reconciliation.md)")
    ncol = len(header)
    i_time, i_txn, i_otn, i_state, i_settle, i_rid, i_orid, i_rfee, i_rstat, i_type, i_dev = (pos[c] for c in REQUIRED)
    devices, pos_order, pos_types = (others.attribution.devices if others else frozenset()), POS_ORDER_NO.fullmatch, POS_TRADE_TYPES
    fen = FenParser(name)
    memo = fen.memo
    count = sum_settle = sum_refund = 0
    wechat, collect, refund, moved, reversal = int(Channel.WECHAT), COLLECT, REFUND, int(State.MOVED), int(State.REVERSAL)
    free = tuple(pos[c] for c in FREE_TEXT if c in pos)
    valid = _validator(pos)
    batch: list[tuple] = []
    for raw in fb:
        lineno += 1
        start = lineno
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise bad_bytes(name, lineno, exc, "utf-8") from None
        if line[:1] == "`":
            # Every value starts with a backtick and nothing is quoted, so splitting on ",`" both
            # splits the fields and drops their backticks. Free text (商品名称, attach JSON) may
            # hold commas and quotes as the merchant sent them; a "`" right after a comma in it
            # gives surplus fields, which fit_free_text hands back to the free-text columns.
            text = line.rstrip("\r\n")
            row = text[1:].split(",`")
            if len(row) != ncol:
                fitted = fit_free_text(row, ncol, free, valid, ",`") if len(row) > ncol else None
                if fitted is None:
                    if len(row) < ncol:
                        _bad_row(text.split(","), header, ncol, name, start)
                    raise BadInput(name, start, None, f"{len(row)} fields, but the header has {ncol}, and no reading of the free-text columns "
                                   "(商品名称, 商户数据包) fits the row")
                row = fitted
        else:
            text = line.strip()
            if not text:
                continue
            row = text.split(",")
            if row[0] == SUMMARY_FIRST:
                if batch:
                    yield batch
                _check_summary(read_records(fb, name, "utf-8", start=lineno), row, start, name, count, sum_settle, sum_refund, fen)
                return
            _bad_row(row, header, ncol, name, start)
            raise BadInput(name, start, None, "a detail row's values start with a backtick `")
        count += 1
        settle = row[i_settle]
        settled = memo.get(settle)
        if settled is None:
            settled = fen.parse(settle, start, SETTLEMENT)
        sum_settle += settled
        st = row[i_state]
        if st == "SUCCESS":
            t = (start, row[i_otn], "", collect, settled, moved, wechat, row[i_txn], "", row[i_time])
        else:
            if st != "REFUND" and st != "REVOKED":
                raise BadInput(name, start, TRADE_STATE, f"{st!r} is not SUCCESS, REFUND or REVOKED")
            rfee = row[i_rfee]
            value = memo.get(rfee)
            if value is None:
                value = fen.parse(rfee, start, REFUND_FEE)
            state = REFUND_STATES.get(row[i_rstat])
            if state is None:
                raise BadInput(name, start, REFUND_STATUS, f"{row[i_rstat]!r} is not one of {', '.join(REFUND_STATES)}")
            sum_refund += value
            if st == "REVOKED":
                # A reversed payment (撤销): what it gives back of its trade, net of what this row
                # itself settles (0.00 when the payment has its own SUCCESS row).
                if settled > value:
                    raise BadInput(name, start, SETTLEMENT, "a REVOKED row settling more than it gives back")
                t = (start, row[i_otn], "", collect, value - settled, reversal, wechat, row[i_txn], row[i_rid], row[i_time])
            else:
                if not row[i_rid]:
                    raise BadInput(name, start, REFUND_ID, "empty on a refund row")
                t = (start, row[i_otn], "", refund, value, int(state), wechat, row[i_rid], row[i_orid], row[i_time])
        if others is not None and (row[i_type] not in pos_types or pos_order(row[i_otn]) is None or (devices and row[i_dev] not in devices)):
            why = others.attribution.why_not(row[i_otn], row[i_type], row[i_dev])
            if why is not None:
                others.trades.append(OtherTrade(Channel.WECHAT, f"{name} line {start}", t[1], t[7], t[3], t[4], State(t[5]), t[9],
                                                row[i_type], row[i_dev], why))
                continue
        batch.append(t)
        if len(batch) == BATCH:
            yield batch
            batch = []
    raise BadInput(name, None, None, f"no summary section (总交易单数,...) after {count} rows: the bill is incomplete (truncated download?)")


def _check_summary(records: Iterator[tuple[int, list[str]]], header: list[str], lineno: int, name: str, count: int, sum_settle: int, sum_refund: int, fen: FenParser) -> None:
    header = [h.strip() for h in header]
    nxt = next(records, None)
    if nxt is None:
        raise BadInput(name, lineno, None, "the summary header has no summary row after it (truncated?)")
    line2, values = nxt
    if len(values) != len(header):
        raise BadInput(name, line2, None, f"{len(values)} summary values for {len(header)} summary columns")
    summary = {}
    for column, value in zip(header, values):
        if value[:1] != "`":
            raise BadInput(name, line2, column, "summary values start with a backtick `")
        summary[column] = value[1:]
    total = summary.get(SUMMARY_FIRST, "")
    if not (total.isascii() and total.isdigit()):
        raise BadInput(name, line2, SUMMARY_FIRST, f"{total!r} is not a count")
    if int(total) != count:
        raise BadInput(name, line2, SUMMARY_FIRST, f"the summary counts {int(total)} rows, the bill has {count} (truncated or altered?)")
    for column, have in ((SUM_SETTLEMENT, sum_settle), (SUM_REFUND, sum_refund)):
        if column not in summary:
            raise BadInput(name, lineno, column, "column missing from the summary header")
        want = fen.parse(summary[column], line2, column)
        if want != have:
            raise BadInput(name, line2, column, f"the summary says {summary[column]}, the rows add up to {format_yuan(have)} (truncated or altered?)")
    extra = next(records, None)
    if extra is not None:
        raise BadInput(name, extra[0], None, "data after the summary row")


def _validator(pos: dict[str, int]):
    checks = [(pos[c], TIME_PATTERN) for c in TIME_COLUMNS if c in pos] + [(pos[c], YUAN_PATTERN) for c in YUAN_COLUMNS if c in pos]
    checks += [(pos[c], pattern) for c, pattern in (("手续费", FEE), ("费率", RATE)) if c in pos]

    def valid(row: list[str]) -> bool:
        return all(pattern.fullmatch(row[i]) for i, pattern in checks)

    return valid


def _no_bill(fb: BinaryIO, first_line: str, name: str) -> None:
    text = first_line + fb.read(4096).decode("utf-8", "replace")
    match = NO_BILL.search(text)
    message = match.group(1).strip() if match else ""
    if message.lower() == "no bill exist":
        return
    raise BadInput(name, 1, None, f"this is WeChat Pay's error answer, not a bill: {message or text[:120]!r}")


def _bad_row(row: list[str], header: list[str], ncol: int, name: str, lineno: int) -> None:
    """Say what is wrong with a row split on plain commas: its field count, or the first value
    without its backtick. Returns if neither."""
    if len(row) != ncol:
        raise BadInput(name, lineno, None, f"{len(row)} fields, but the header has {ncol} (a cut line?)")
    for column, value in zip(header, row):
        if value[:1] != "`":
            raise BadInput(name, lineno, column, "bill values start with a backtick `")
