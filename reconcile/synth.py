"""Synthetic business days for tests, benchmarks and rehearsals (`reconcile demo`).

A `Txn` is one instruction as it really happened, with what each source recorded about it. The
writers put a day of them in each source's real format: the neutral HIS ledger, a bridge journal
(through the bridge's own Journal API, or in bulk for benchmarks), and the channels' bills through
the sandbox's bill writers (firmware_sim.sandbox.bills), i.e. the same bytes the sandbox serves.
Merchant order/refund numbers are shaped like the terminal's.
"""

from __future__ import annotations

import datetime
import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

from protocol.amount import format_yuan
from reconcile.model import COLLECT, REFUND

DEVICE_ID = "D-SN-000123"
KID = "k2026a"
TERMINAL_ID = "T0001"
CHINA = datetime.timezone(datetime.timedelta(hours=8))


@dataclass(frozen=True)
class BillRow:
    kind: str  # "pay", "refund", "reversal"
    channel_id: str  # WeChat transaction_id / Alipay trade_no of the trade
    refund_id: str  # WeChat refund_id ("" for payments)
    fen: int
    at: int
    attempt: int = 1


@dataclass(frozen=True)
class Txn:
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


def out_trade_no(msg_id: str, attempt: int = 1) -> str:
    """A merchant order number shaped like the terminal's ("P" + 26 hex + attempt): the terminal salts
    its numbers per instruction, so reconciliation never relies on deriving them."""
    return "P" + hashlib.sha256(f"pay|{msg_id}".encode()).hexdigest()[:26] + f"{attempt:02d}"


def out_refund_no(msg_id: str) -> str:
    return "R" + hashlib.sha256(f"refund|{msg_id}".encode()).hexdigest()[:31]


def _ids(rng: random.Random, channel: str, day: datetime.date, k: int) -> str:
    if channel == "WECHAT":
        return f"42000{rng.randrange(10**4):04d}{day:%Y%m%d}{k:011d}"
    return f"{day:%Y%m%d}2200{rng.randrange(10**4):04d}{k:012d}"


def clean_day(day: datetime.date, n: int, *, seed: int = 1, refund_every: int = 7, fail_every: int = 11) -> list[Txn]:
    """n collections on `day` where everything agrees: some declined, some partially refunded
    (the insurance settled later, refunded back in two parts), one reversed after payment."""
    rng = random.Random(seed)
    start = int(datetime.datetime.combine(day, datetime.time(8), CHINA).timestamp())
    txns: list[Txn] = []
    k = 0
    for i in range(n):
        channel = "WECHAT" if i % 3 else "ALIPAY"
        fen = rng.choice((50, 1250, 2380, 10000, 15660, 300, 8888, 99999)) + rng.randrange(0, 3) * 100
        at = start + i * 36000 // max(n, 1)
        msg, order = f"HIS-{i:07d}", f"MZ{day:%Y%m%d}{i:07d}"
        k += 1
        if i % fail_every == 5:
            txns.append(Txn(msg, order, COLLECT, fen, channel, at, "FAILED", "", "FAILED"))
            continue
        trade = _ids(rng, channel, day, k)
        txns.append(Txn(msg, order, COLLECT, fen, channel, at, "SUCCESS", trade, "SUCCESS", (BillRow("pay", trade, "", fen, at),)))
        if i % refund_every == 3 and fen >= 300:
            first, second = fen // 3, fen // 5
            for j, part in enumerate((first, second)):
                k += 1
                rid = _ids(rng, channel, day, k) if channel == "WECHAT" else trade
                rat = at + 600 * (j + 1)
                txns.append(Txn(f"{msg}-R{j}", order, REFUND, part, channel, rat, "REFUNDED", rid, "SUCCESS",
                                (BillRow("refund", trade, rid if channel == "WECHAT" else "", part, rat),)))
    if n:
        # One payment reversed after the patient paid (the cashier cancelled): nothing held anywhere.
        k += 1
        trade = _ids(rng, "WECHAT", day, k)
        at = start + 36000 + 60
        txns.append(Txn("HIS-REVERSED", f"MZ{day:%Y%m%d}REV", COLLECT, 4200, "WECHAT", at, "CLOSED", "", "FAILED",
                        (BillRow("pay", trade, "", 4200, at), BillRow("reversal", trade, f"50300{k:023d}", 4200, at + 30))))
    return txns


def every_class_day(day: datetime.date) -> list[Txn]:
    """A clean day plus one seeded case of every difference class (see docs/reconciliation.md)."""
    txns = clean_day(day, 40, seed=7)
    at = int(datetime.datetime.combine(day, datetime.time(15), CHINA).timestamp())
    rng = random.Random(99)
    w = lambda k: _ids(rng, "WECHAT", day, 900 + k)  # noqa: E731
    a = lambda k: _ids(rng, "ALIPAY", day, 900 + k)  # noqa: E731
    t1, t2, t3, t4, t5, t6, t7, t8, t9 = (w(1), w(2), w(3), a(4), w(5), a(6), w(7), w(8), w(9))
    txns += [
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
        Txn("HIS-REFUND-INS", "MZ-INSURED", REFUND, 6000, "ALIPAY", at + 3600, "REFUNDED", t6, "PENDING", (BillRow("refund", t6, "", 6000, at + 3600),)),
        # duplicate: the HIS export lists a payment twice
        Txn("HIS-DUP-HIS", "MZ-DUP-HIS", COLLECT, 1500, "WECHAT", at + 70, "SUCCESS", t7, "SUCCESS", (BillRow("pay", t7, "", 1500, at + 70),), his_rows=2),
        # duplicate: HIS booked a duplicate_order reply (a second '+' for a paid order) as a new payment
        Txn("HIS-PAY-8", "MZ-ECHO", COLLECT, 1000, "WECHAT", at + 80, "SUCCESS", t8, "SUCCESS", (BillRow("pay", t8, "", 1000, at + 80),)),
        Txn("HIS-ECHO", "MZ-ECHO", COLLECT, 1000, "WECHAT", at + 90, "SUCCESS", t8, "SUCCESS", error_code="duplicate_order"),
        # duplicate: an earlier attempt of an instruction was charged too (the channel holds it twice)
        Txn("HIS-TWICE", "MZ-TWICE", COLLECT, 700, "WECHAT", at + 100, "SUCCESS", t9, "SUCCESS",
            (BillRow("pay", t9, "", 700, at + 100, attempt=2), BillRow("pay", w(10), "", 700, at + 95, attempt=1))),
    ]
    return txns


# -- writers ----------------------------------------------------------------------------------

def his_rows(txns: list[Txn]) -> list[str]:
    lines = ["order_no,msg_id,direction,amount,status,pay_channel,pay_order_no,finished_at"]
    for t in txns:
        if t.his_status is None:
            continue
        paid = t.his_status == "SUCCESS"
        when = datetime.datetime.fromtimestamp(t.at, CHINA).strftime("%Y-%m-%d %H:%M:%S")
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


def write_journal(path: Path, txns: list[Txn]) -> Path:
    """Through the bridge's own Journal API: accept each instruction, then store its result."""
    from bridge.journal import Journal, NewInstruction, StoredResult

    clock = [0.0]
    journal = Journal(path, synchronous="NORMAL", clock=lambda: clock[0])
    try:
        for t in txns:
            clock[0] = float(t.at - 5)
            amount = ("+" if t.direction == COLLECT else "-") + format_yuan(t.fen)
            journal.accept(NewInstruction(t.msg_id, KID, t.msg_id.encode(), b"{}", t.at - 5, TERMINAL_ID, DEVICE_ID, t.order_no, amount))
            if t.ours_status is not None:
                clock[0] = float(t.at + 1)
                journal.store_result(t.msg_id, StoredResult(f"R-{t.msg_id}", b"{}", t.ours_status, t.channel, t.pay_order_no, amount, t.at, t.error_code))
    finally:
        journal.close()
    return path


def bill_lines(txns: list[Txn], channel: str):  # type: ignore[no-untyped-def]
    from firmware_sim.sandbox.bills import PaymentLine, RefundLine

    payments, refunds = [], []
    for t in txns:
        if t.channel != channel:
            continue
        for b in t.bill:
            at = datetime.datetime.fromtimestamp(b.at, CHINA)
            trade = out_trade_no(t.msg_id if t.direction == COLLECT else _paid_msg(txns, t), b.attempt)
            if b.kind == "pay":
                payments.append(PaymentLine(at, at, b.channel_id, trade, "oUser0001", b.fen, "门诊缴费", DEVICE_ID))
            else:
                refund_no = out_refund_no(t.msg_id) if b.kind == "refund" else ""
                refund_id = b.refund_id or (b.channel_id if channel == "ALIPAY" else "")
                refunds.append(RefundLine(at, at, b.channel_id, trade, "oUser0001", b.fen, refund_id, refund_no, b.fen, "门诊缴费", DEVICE_ID,
                                          b.kind == "reversal"))
    return payments, refunds


def _paid_msg(txns: list[Txn], refund: Txn) -> str:
    """The msg_id of the collection a refund refunds (same order, a collection that moved money)."""
    for t in txns:
        if t.order_no == refund.order_no and t.direction == COLLECT and t.ours_status == "SUCCESS" and not t.error_code:
            return t.msg_id
    return refund.msg_id


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


def write_day(folder: Path, day: datetime.date, txns: list[Txn]) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "his": write_his(folder / f"his-{day:%Y%m%d}.csv", txns),
        "journal": write_journal(folder / "bridge-journal.db", txns),
        "wechat": write_wechat(folder / f"wechat-{day:%Y%m%d}.csv", txns),
        "alipay": write_alipay(folder / f"alipay-{day:%Y%m%d}.zip", txns, day),
    }

