"""The platform leg of reconciliation: one hospital's day of the ledger as a file (read-only).

`gateway-admin ledger export --hospital H --day D` writes what the gateway did that day, one line
per collection attempt and per refund, in `his-platform-ledger-v1` (docs/reconciliation.md): the
hospital's finance staff reconcile it beside their HIS export, the bridge journals and the channel
bills (`reconcile --platform-ledger FILE`). A file, not database access: reconcile runs at the
hospital, the ledger lives in the provider's database beside the sealed merchant keys, and the
format stays put while the schema migrates.

    #his-platform-ledger-v1
    #hospital=H001
    #day=2026-11-22
    kind,order_no,out_no,instruction_msg_id,terminal_id,device_id,channel,amount,state,channel_id,created_at,finished_at
    payment,MZ0001,P3fa9...01,,T0001,POS-0001,WECHAT,12.50,succeeded,4200000001202611220000000001,2026-11-22 09:00:01,2026-11-22 09:00:03
    refund,MZ0001,R9c1e...,HIS-0002,T0001,POS-0001,WECHAT,5.00,succeeded,50300000012026112200000001,2026-11-22 11:30:00,2026-11-22 11:30:02
    #END,2

A row is the day's when it reached its state that day (`updated_at`, Asia/Shanghai), or was
started that day and is still under way (`paying`, `reversing`, `refunding`). Amounts are yuan with
two decimals (protocol.amount). Rows are read in pages by primary key inside one read transaction
and written as they come: a day of millions never sits in memory. The first page starts at the
first row created within LOOKBACK_DAYS of the day (found by bisecting the key), so the scan is the
day plus a margin, not the table's history, without an index of its own.
"""

from __future__ import annotations

import datetime
from typing import Callable, Iterator, TextIO

from protocol.amount import format_yuan

from gateway.db import Database, Tx
from gateway.errors import GatewayCode, GatewayError
from gateway.ledger import BUSINESS_TZ, PaymentState, RefundState

FORMAT = "his-platform-ledger-v1"
COLUMNS = ("kind", "order_no", "out_no", "instruction_msg_id", "terminal_id", "device_id", "channel", "amount", "state", "channel_id",
           "created_at", "finished_at")
PAGE = 5000
# A refund can settle days after it was asked for (WeChat PROCESSING): rows created this long before
# the day are looked at too.
LOOKBACK_DAYS = 7
_UNDER_WAY_PAYMENTS = (PaymentState.PAYING.value, PaymentState.REVERSING.value)
_UNDER_WAY_REFUND = RefundState.REFUNDING.value


def day_window(day: datetime.date) -> tuple[int, int]:
    start = datetime.datetime.combine(day, datetime.time(0), BUSINESS_TZ)
    return int(start.timestamp()), int((start + datetime.timedelta(days=1)).timestamp())


def _first_id(tx: Tx, table: str, key: str, since: int) -> int:
    """The smallest key of a row created at or after `since` (keys grow with creation time), by
    bisection over the primary key: a handful of lookups, no scan."""
    bounds = tx.one(f"SELECT MIN({key}), MAX({key}) FROM {table}")
    if bounds is None or bounds[0] is None:
        return 0
    lo, hi = int(bounds[0]), int(bounds[1]) + 1
    while lo < hi:
        mid = (lo + hi) // 2
        row = tx.one(f"SELECT {key}, created_at FROM {table} WHERE {key} >= ? ORDER BY {key} LIMIT 1", (mid,))
        if row is None or int(row[1]) >= since:
            hi = mid
        else:
            lo = int(row[0]) + 1
    return lo


_PAYMENTS = ("SELECT payment_id, order_no, out_trade_no, '', terminal_id, device_id, channel, amount_fen, state, channel_txn_id, created_at, "
             "updated_at FROM payments WHERE payment_id >= ? AND hospital_id = ? AND ((updated_at >= ? AND updated_at < ?) OR "
             "(created_at >= ? AND created_at < ? AND state IN (?, ?))) ORDER BY payment_id LIMIT ?")
_REFUNDS = ("SELECT r.refund_id, p.order_no, r.out_refund_no, r.instruction_msg_id, p.terminal_id, r.device_id, p.channel, r.amount_fen, "
            "r.state, r.channel_refund_id, r.created_at, r.updated_at FROM refunds r JOIN payments p ON p.payment_id = r.payment_id "
            "WHERE r.refund_id >= ? AND r.hospital_id = ? AND ((r.updated_at >= ? AND r.updated_at < ?) OR "
            "(r.created_at >= ? AND r.created_at < ? AND r.state = ?)) ORDER BY r.refund_id LIMIT ?")


def ledger_rows(db: Database, hospital_id: str, day: datetime.date) -> Iterator[tuple[str, tuple]]:
    """("payment" | "refund", row) for the day, payments first, each in key order."""
    start, end = day_window(day)
    since = start - LOOKBACK_DAYS * 86400
    with db.transaction(write=False) as tx:
        if tx.one("SELECT 1 FROM hospitals WHERE hospital_id = ?", (hospital_id,)) is None:
            raise GatewayError(GatewayCode.UNKNOWN_HOSPITAL, f"no hospital {hospital_id!r}; `gateway-admin hospital list` shows them")
        for kind, table, key, sql, extra in (("payment", "payments", "payment_id", _PAYMENTS, _UNDER_WAY_PAYMENTS),
                                             ("refund", "refunds", "refund_id", _REFUNDS, (_UNDER_WAY_REFUND,))):
            after = _first_id(tx, table, key, since)
            while True:
                page = tx.all(sql, (after, hospital_id, start, end, start, end, *extra, PAGE))
                for row in page:
                    yield kind, row
                if len(page) < PAGE:
                    break
                after = int(page[-1][0]) + 1


def _stamp_cache() -> Callable[[int], str]:
    cache: dict[int, str] = {}

    def stamp(ts: int) -> str:
        text = cache.get(ts)
        if text is None:
            if len(cache) > 200_000:
                cache.clear()
            text = cache[ts] = datetime.datetime.fromtimestamp(ts, BUSINESS_TZ).strftime("%Y-%m-%d %H:%M:%S")
        return text
    return stamp


def write_export(db: Database, hospital_id: str, day: datetime.date, out: TextIO) -> int:
    """Write the day's platform ledger to `out`; the number of rows."""
    stamp = _stamp_cache()
    out.write(f"#{FORMAT}\n#hospital={hospital_id}\n#day={day.isoformat()}\n{','.join(COLUMNS)}\n")
    n = 0
    for kind, (_key, order_no, out_no, msg_id, terminal, device, channel, fen, state, channel_id, created, updated) in ledger_rows(db, hospital_id, day):
        out.write(f"{kind},{order_no},{out_no},{msg_id or ''},{terminal},{device},{channel},{format_yuan(int(fen))},{state},{channel_id or ''},"
                  f"{stamp(int(created))},{stamp(int(updated))}\n")
        n += 1
    out.write(f"#END,{n}\n")
    return n
