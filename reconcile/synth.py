"""Synthetic business days for tests, benchmarks and rehearsals (`reconcile demo`).

A `Txn` is one instruction as it really happened, with what each source recorded about it. The
writers put a day of them in each source's real format: the neutral HIS ledger, a bridge journal
(through the bridge's own Journal API, or in bulk for benchmarks), and the channels' bills through
the sandbox's bill writers (firmware_sim.sandbox.bills), i.e. the same bytes the sandbox serves.
Merchant order/refund numbers are shaped like the terminal's.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import random
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple

from protocol.amount import Amount, Direction, format_amount, format_yuan
from reconcile.model import COLLECT, REFUND

DEVICE_ID = "D-SN-000123"
KID = "k2026a"
TERMINAL_ID = "T0001"
CHINA = datetime.timezone(datetime.timedelta(hours=8))


class BillRow(NamedTuple):
    kind: str  # "pay", "refund", "reversal"
    channel_id: str  # WeChat transaction_id / Alipay trade_no of the trade
    refund_id: str  # WeChat refund_id ("" for payments)
    fen: int
    at: int
    attempt: int = 1


class Txn(NamedTuple):
    msg_id: str
    order_no: str
    direction: int
    fen: int
    channel: str  # "WECHAT" | "ALIPAY"
    at: int  # epoch seconds
    ours_status: str | None  # the result's pay_status; None: no result (in flight)
    pay_order_no: str  # what our result says
    his_status: str | None  # SUCCESS / FAILED / PENDING; None: HIS has no row
    bill: tuple[BillRow, ...] = ()
    his_fen: int | None = None  # HIS books another amount
    his_rows: int = 1  # 2: the HIS export lists it twice
    error_code: str | None = None
    platform: str = ""  # the gateway's ledger: "" as the channel says, "missing" no row, or the state it is stuck in ("reversing")


def out_trade_no(msg_id: str, attempt: int = 1) -> str:
    """A merchant order number shaped like the terminal's ("P" + 26 hex + attempt): the terminal salts
    its numbers per instruction, so reconciliation never relies on deriving them."""
    return "P" + hashlib.sha256(f"pay|{msg_id}".encode()).hexdigest()[:26] + f"{attempt:02d}"


def out_refund_no(msg_id: str) -> str:
    return "R" + hashlib.sha256(f"refund|{msg_id}".encode()).hexdigest()[:31]


def _ids(channel: str, day: datetime.date | str, k: int) -> str:
    """A channel transaction id, unique per k (plain arithmetic: a million of them in a second)."""
    ymd = day if isinstance(day, str) else day.strftime("%Y%m%d")
    if channel == "WECHAT":
        return f"42000{k * 7919 % 10000:04d}{ymd}{k:011d}"
    return f"{ymd}2200{k * 104729 % 10000:04d}{k:012d}"


# Special cases of every_class_day take ids from here on, clear of any clean day's.
SPECIAL_IDS = 10**10
FENS = (50, 1250, 2380, 10000, 15660, 300, 8888, 99999)


def clean_day(day: datetime.date, n: int, *, seed: int = 1, refund_every: int = 7, fail_every: int = 11) -> list[Txn]:
    """n collections on `day` where everything agrees: some declined, some partially refunded
    (the insurance settled later, refunded back in two parts), one reversed after payment."""
    return list(clean_day_iter(day, n, seed=seed, refund_every=refund_every, fail_every=fail_every))


def clean_day_iter(day: datetime.date, n: int, *, seed: int = 1, refund_every: int = 7, fail_every: int = 11) -> Iterator[Txn]:
    """clean_day's transactions one by one, in its order (a day of millions never held whole)."""
    rng = random.Random(seed)
    start = int(datetime.datetime.combine(day, datetime.time(8), CHINA).timestamp())
    k = 0
    shift = rng.randrange(len(FENS))
    ymd = day.strftime("%Y%m%d")  # once: strftime per row would cost more than the rest of the row
    # Rows are made with tuple.__new__ (the NamedTuple's own __new__ is a Python function: a third of
    # the time at a million rows), with every field given.
    new, span = tuple.__new__, max(n, 1)
    for i in range(n):
        wx = i % 3
        channel = "WECHAT" if wx else "ALIPAY"
        fen = FENS[(i * 5 + shift) % 8] + (i * 7 // 3) % 3 * 100
        at = start + i * 36000 // span
        msg, order = f"HIS-{i:07d}", f"MZ{ymd}{i:07d}"
        k += 1
        if i % fail_every == 5:
            yield new(Txn, (msg, order, COLLECT, fen, channel, at, "FAILED", "", "FAILED", (), None, 1, None, ""))
            continue
        trade = f"42000{k * 7919 % 10000:04d}{ymd}{k:011d}" if wx else f"{ymd}2200{k * 104729 % 10000:04d}{k:012d}"  # _ids, inline
        yield new(Txn, (msg, order, COLLECT, fen, channel, at, "SUCCESS", trade, "SUCCESS", (new(BillRow, ("pay", trade, "", fen, at, 1)),),
                        None, 1, None, ""))
        if i % refund_every == 3 and fen >= 300:
            first, second = fen // 3, fen // 5
            for j, part in enumerate((first, second)):
                k += 1
                rid = _ids(channel, ymd, k) if channel == "WECHAT" else out_refund_no(f"{msg}-R{j}")
                rat = at + 600 * (j + 1)
                yield Txn(f"{msg}-R{j}", order, REFUND, part, channel, rat, "REFUNDED", rid, "SUCCESS",
                          (BillRow("refund", trade, rid if channel == "WECHAT" else "", part, rat),))
    if n:
        # One payment reversed after the patient paid (the cashier cancelled): nothing held anywhere.
        k += 1
        trade = _ids("WECHAT", day, k)
        at = start + 36000 + 60
        yield Txn("HIS-REVERSED", f"MZ{day:%Y%m%d}REV", COLLECT, 4200, "WECHAT", at, "CLOSED", "", "FAILED",
                  (BillRow("pay", trade, "", 4200, at), BillRow("reversal", trade, f"50300{k:023d}", 4200, at + 30)))


def every_class_day(day: datetime.date, n: int = 40) -> list[Txn]:
    """A clean day of n collections plus one seeded case of every difference class (see docs/reconciliation.md)."""
    return list(every_class_day_iter(day, n))


def every_class_day_iter(day: datetime.date, n: int = 40) -> Iterator[Txn]:
    """every_class_day's transactions one by one (`reconcile demo` of millions: never held whole)."""
    yield from clean_day_iter(day, n, seed=7)
    at = int(datetime.datetime.combine(day, datetime.time(15), CHINA).timestamp())
    w = lambda k: _ids("WECHAT", day, SPECIAL_IDS + k)  # noqa: E731
    a = lambda k: _ids("ALIPAY", day, SPECIAL_IDS + k)  # noqa: E731
    t1, t2, t3, t4, t5, t6, t7, t8, t9 = (w(1), w(2), w(3), a(4), w(5), a(6), w(7), w(8), w(9))
    yield from [
        # long: paid, but the write-back to HIS failed: HIS still waits (one-sided record)
        Txn("HIS-LONG-WB", "MZ-LONG-WB", COLLECT, 12500, "WECHAT", at, "SUCCESS", t1, "PENDING", (BillRow("pay", t1, "", 12500, at),)),
        # long: HIS has no row at all for a payment the channel holds
        Txn("HIS-LONG-NOHIS", "MZ-LONG-NOHIS", COLLECT, 3000, "WECHAT", at + 10, "SUCCESS", t2, None, (BillRow("pay", t2, "", 3000, at + 10),)),
        # long: our journal believes the payment failed (timeout, reversal failed), the channel took it
        Txn("HIS-LONG-LOST", "MZ-LONG-LOST", COLLECT, 4500, "WECHAT", at + 20, "FAILED", "", "FAILED", (BillRow("pay", t3, "", 4500, at + 20),)),
        # short: HIS and our result say paid, the channel has nothing
        Txn("HIS-SHORT", "MZ-SHORT", COLLECT, 2200, "ALIPAY", at + 30, "SUCCESS", t4, "SUCCESS"),
        # amount mismatch: HIS booked 88.00 for 80.00
        Txn("HIS-AMOUNT", "MZ-AMOUNT", COLLECT, 8000, "WECHAT", at + 40, "SUCCESS", t5, "SUCCESS", (BillRow("pay", t5, "", 8000, at + 40),), his_fen=8800),
        # a later partial refund (insurance settled), refunded by the channel, but HIS never got the result
        Txn("HIS-PAY-INS", "MZ-INSURED", COLLECT, 20000, "ALIPAY", at + 50, "SUCCESS", t6, "SUCCESS", (BillRow("pay", t6, "", 20000, at + 50),)),
        Txn("HIS-REFUND-INS", "MZ-INSURED", REFUND, 6000, "ALIPAY", at + 3600, "REFUNDED", out_refund_no("HIS-REFUND-INS"), "PENDING", (BillRow("refund", t6, "", 6000, at + 3600),)),
        # duplicate: the HIS export lists a payment twice
        Txn("HIS-DUP-HIS", "MZ-DUP-HIS", COLLECT, 1500, "WECHAT", at + 70, "SUCCESS", t7, "SUCCESS", (BillRow("pay", t7, "", 1500, at + 70),), his_rows=2),
        # duplicate: HIS booked a duplicate_order reply (a second '+' for a paid order) as a new payment
        Txn("HIS-PAY-8", "MZ-ECHO", COLLECT, 1000, "WECHAT", at + 80, "SUCCESS", t8, "SUCCESS", (BillRow("pay", t8, "", 1000, at + 80),)),
        Txn("HIS-ECHO", "MZ-ECHO", COLLECT, 1000, "WECHAT", at + 90, "SUCCESS", t8, "SUCCESS", error_code="duplicate_order"),
        # duplicate: an earlier attempt of an instruction was charged too (the channel holds it twice)
        Txn("HIS-TWICE", "MZ-TWICE", COLLECT, 700, "WECHAT", at + 100, "SUCCESS", t9, "SUCCESS",
            (BillRow("pay", t9, "", 700, at + 100, attempt=2), BillRow("pay", w(10), "", 700, at + 95, attempt=1))),
        # the platform leg (with a platform ledger only): HIS, ours and the channel agree, the gateway's ledger does not
        Txn("HIS-PLAT-LOST", "MZ-PLAT-LOST", COLLECT, 1800, "WECHAT", at + 110, "SUCCESS", w(11), "SUCCESS",
            (BillRow("pay", w(11), "", 1800, at + 110),), platform="missing"),
        Txn("HIS-PLAT-STUCK", "MZ-PLAT-STUCK", COLLECT, 2600, "ALIPAY", at + 120, "FAILED", "", "FAILED", platform="reversing"),
    ]


# -- writers ----------------------------------------------------------------------------------

PLATFORM_HEADER = ("#his-platform-ledger-v1\n#hospital={hospital}\n#day={day}\n"
                   "kind,order_no,out_no,instruction_msg_id,terminal_id,device_id,channel,amount,state,channel_id,created_at,finished_at\n")


def platform_rows(txns: list[Txn]):
    """What the gateway's ledger holds for each transaction, as `gateway-admin ledger export` writes
    it (gateway/ledger_export.py): the channel's truth (the bill), unless `Txn.platform` says otherwise."""
    for t in txns:
        if t.platform == "missing" or t.error_code == "duplicate_order":  # a replayed result started nothing at the gateway
            continue
        pays = [b for b in t.bill if b.kind == "pay"]
        if t.direction == COLLECT:
            kind, out_no, msg = "payment", out_trade_no(t.msg_id, pays[0].attempt if pays else 1), ""
            reversed_ = any(b.kind == "reversal" for b in t.bill)
            state = "closed" if reversed_ else "succeeded" if pays else "failed"
            channel_id = pays[0].channel_id if pays else ""
        else:
            kind, out_no, msg = "refund", out_refund_no(t.msg_id), t.msg_id
            done = [b for b in t.bill if b.kind == "refund"]
            state = "succeeded" if done else "failed"
            channel_id = (done[0].refund_id or done[0].channel_id) if done else ""
        state = t.platform or state
        yield kind, t.order_no, out_no, msg, t.channel, t.fen, state, channel_id, t.at - 3, t.at


def write_platform(path: Path, txns: list[Txn], day: datetime.date, *, hospital: str = "H001") -> Path:
    lines = [PLATFORM_HEADER.format(hospital=hospital, day=day.isoformat())]
    n = 0
    for kind, order_no, out_no, msg, channel, fen, state, channel_id, created, finished in platform_rows(txns):
        lines.append(f"{kind},{order_no},{out_no},{msg},{TERMINAL_ID},{DEVICE_ID},{channel},{format_yuan(fen)},{state},{channel_id},"
                     f"{_stamp(created)},{_stamp(finished)}\n")
        n += 1
    lines.append(f"#END,{n}\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path

@functools.lru_cache(maxsize=1024)
def _stamp(at: int) -> str:
    return datetime.datetime.fromtimestamp(at, CHINA).strftime("%Y-%m-%d %H:%M:%S")


@functools.lru_cache(maxsize=1024)
def _moment(at: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(at, CHINA)


def his_rows(txns: list[Txn]) -> list[str]:
    lines = ["order_no,msg_id,direction,amount,status,pay_channel,pay_order_no,finished_at"]
    for t in txns:
        if t.his_status is None:
            continue
        paid = t.his_status == "SUCCESS"
        when = _stamp(t.at)
        row = ",".join((t.order_no, t.msg_id, "+" if t.direction == COLLECT else "-", format_yuan(t.his_fen or t.fen), t.his_status,
                        t.channel if paid else "", t.pay_order_no if paid else "", when))
        lines += [row] * t.his_rows
    return lines


def write_his(path: Path, txns: list[Txn], *, trailer: bool = True) -> Path:
    lines = his_rows(txns)
    if trailer:
        lines.append(f"#END,{len(lines) - 1}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_journal(path: Path, txns: list[Txn], *, bulk: bool = False) -> Path:
    """Through the bridge's own Journal API: accept each instruction, then store its result. `bulk`
    (large days): the bridge creates the journal, the rows go in with one statement, in the
    columns bridge/journal.py documents and reconcile/ours.py reads."""
    from bridge.journal import Journal, NewInstruction, StoredResult

    if bulk:
        Journal(path, synchronous="NORMAL").close()
        insert_journal_rows(path, (
            (t.msg_id, t.order_no, _signed(t), t.ours_status, t.channel, t.pay_order_no, _signed(t), t.at - 5, t.at, t.error_code)
            for t in txns))
        return path
    clock = [0.0]
    journal = Journal(path, synchronous="NORMAL", clock=lambda: clock[0])
    try:
        for t in txns:
            clock[0] = float(t.at - 5)
            amount = _signed(t)
            journal.accept(NewInstruction(t.msg_id, KID, t.msg_id.encode(), b"{}", t.at - 5, TERMINAL_ID, DEVICE_ID, t.order_no, amount))
            if t.ours_status is not None:
                clock[0] = float(t.at + 1)
                journal.store_result(t.msg_id, StoredResult(f"R-{t.msg_id}", b"{}", t.ours_status, t.channel, t.pay_order_no, amount, t.at, t.error_code))
    finally:
        journal.close()
    return path


def _signed(t: Txn) -> str:
    return format_amount(Amount(Direction.COLLECT if t.direction == COLLECT else Direction.REFUND, t.fen))


def insert_journal_rows(path: Path, rows) -> None:
    """Bulk rows (msg_id, order_no, amount, pay_status or None, channel, pay_order_no, result_amount,
    accepted_at, finished_at, error_code) into a fresh journal the bridge created: one commit, no
    rollback journal (a half-written file is simply written again)."""
    import sqlite3

    def full(row):
        msg, order, amount, status, channel, pay, result_amount, accepted, finished, error = row
        if status is None:
            return (msg, KID, accepted, TERMINAL_ID, DEVICE_ID, order, amount, "sent", accepted, accepted, None, None, None, None, None, None, None, None, None)
        return (msg, KID, accepted, TERMINAL_ID, DEVICE_ID, order, amount, "result_stored", accepted, finished, "R-" + msg, b"{}", finished,
                status, channel, pay, result_amount, finished, error)

    from bridge.journal import Journal

    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        # The per-state counts the bridge keeps by triggers cost a third of the insert: they go,
        # and the bridge rebuilds them from the rows when it next opens the journal (below).
        triggers = db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'instructions'").fetchall()
        with db:
            for (name,) in triggers:
                db.execute(f'DROP TRIGGER "{name}"')
            db.execute("DROP TABLE IF EXISTS state_counts")
        with db:
            db.executemany(
                "INSERT INTO instructions (msg_id, kid, digest, envelope, ts, terminal_id, device_id, order_no, amount, state, accepted_at, "
                "updated_at, result_msg_id, result_envelope, result_at, pay_status, pay_channel, pay_order_no, result_amount, finished_at, "
                "error_code) VALUES (?, ?, x'00', x'7b7d', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", map(full, rows))
    finally:
        db.close()
    Journal(Path(path), synchronous="NORMAL").close()


def bill_lines(txns: list[Txn], channel: str):
    from firmware_sim.sandbox.bills import PaymentLine, RefundLine

    paid = paid_msgs(txns)
    payments, refunds = [], []
    for t in txns:
        if t.channel != channel:
            continue
        for b in t.bill:
            at = _moment(b.at)
            trade = out_trade_no(t.msg_id if t.direction == COLLECT else paid.get(t.order_no, t.msg_id), b.attempt)
            if b.kind == "pay":
                payments.append(PaymentLine(at, at, b.channel_id, trade, "oUser0001", b.fen, "门诊缴费", DEVICE_ID))
            else:
                refund_no = out_refund_no(t.msg_id) if b.kind == "refund" else ""
                refund_id = b.refund_id or (b.channel_id if channel == "ALIPAY" else "")
                refunds.append(RefundLine(at, at, b.channel_id, trade, "oUser0001", b.fen, refund_id, refund_no, b.fen, "门诊缴费", DEVICE_ID,
                                          b.kind == "reversal"))
    return payments, refunds


def paid_msgs(txns: Iterable[Txn]) -> dict[str, str]:
    """Order number -> the msg_id of its collection that moved money (what a refund refunds): one
    pass over the day, not one per refund."""
    paid: dict[str, str] = {}
    for t in txns:
        if t.direction == COLLECT and t.ours_status == "SUCCESS" and not t.error_code:
            paid.setdefault(t.order_no, t.msg_id)
    return paid


def write_wechat(path: Path, txns: list[Txn], *, appid: str = "wx2421b1c4370ec43b", mch_id: str = "1900000109") -> Path:
    from firmware_sim.sandbox.bills import wechat_bill

    payments, refunds = bill_lines(txns, "WECHAT")
    path.write_bytes(wechat_bill("ALL", appid, mch_id, payments, refunds).encode("utf-8"))
    return path


def write_alipay(path: Path, txns: list[Txn], day: datetime.date, *, pid: str = "2088102146225135") -> Path:
    from firmware_sim.sandbox.bills import alipay_bill_zip

    payments, refunds = bill_lines(txns, "ALIPAY")
    exported = datetime.datetime.combine(day + datetime.timedelta(days=1), datetime.time(9), CHINA)
    path.write_bytes(alipay_bill_zip(day, pid, payments, refunds, exported))
    return path


def day_files(folder: Path, day: datetime.date) -> dict[str, Path]:
    return {"his": folder / f"his-{day:%Y%m%d}.csv", "journal": folder / "bridge-journal.db", "wechat": folder / f"wechat-{day:%Y%m%d}.csv",
            "alipay": folder / f"alipay-{day:%Y%m%d}.zip", "platform": folder / f"platform-{day:%Y%m%d}.csv"}


def write_day(folder: Path, day: datetime.date, txns: list[Txn] | Callable[[], Iterable[Txn]], *, bulk: bool = False) -> dict[str, Path]:
    """Every source of the day into `folder`. `txns`: the day's transactions, or a function that
    makes them anew each time it is called (every_class_day_iter: a large day is then never held
    whole). `bulk` (large days): reconcile.synth_bulk writes the same bytes straight from the
    transactions, in two processes where they can fork."""
    if bulk:
        from reconcile.synth_bulk import write_large_day

        return write_large_day(folder, day, txns)
    if callable(txns):
        txns = list(txns())
    folder.mkdir(parents=True, exist_ok=True)
    files = day_files(folder, day)
    write_his(files["his"], txns)
    write_journal(files["journal"], txns)
    write_wechat(files["wechat"], txns)
    write_alipay(files["alipay"], txns, day)
    write_platform(files["platform"], txns, day)
    return files
