"""The sandbox's ledger: patient accounts, orders and refunds in SQLite (WAL), money in integer fen.

Channel-neutral: the WeChat and Alipay front ends translate their requests into these operations
and the outcomes back into their own codes. Every operation runs in one IMMEDIATE transaction
under one lock, so concurrent requests for the same order or refund number serialise and money
moves exactly once: an account is debited when its order becomes SUCCESS and credited by refunds
and by the reversal of a paid order, and `balance_fen` can never go below zero (a CHECK).

Two clocks: business time (`now()`: real time plus an offset a tester sets to move "today", used
for timestamps, bills and the 7-day reverse window) and real time (`real()`, used for the "user
paying for N seconds" behaviour, so moving the business day never confirms a payment). Real time
is the injected `clock` (time.time by default) plus what `advance()` added: tests move it instead
of sleeping. Real time also ends things as the channels do: a payment code expires `code_ttl_s`
after it was issued, and a WeChat order the patient never confirms is revoked (closed, nothing
taken) `unpaid_revoke_s` after it was placed.

Order numbers are the merchant's own, as at the real channels: `out_trade_no` (and a refund's number)
is unique per merchant, not across the sandbox, so two hospitals may use the same number at the same
channel and each gets its own order. `merchant` is the channel front end's name for whose money it is:
WeChat Pay's direct merchant "" or a sub-merchant's sub_mch_id; Alipay's own merchant "" or the seller
id a third-party app's token acts for. A data dir from before that (schema 1: one number space per
channel) is migrated when opened: its orders keep the merchant recorded with them.
"""

from __future__ import annotations

import datetime
import enum
import secrets
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from firmware_sim.sandbox.behaviour import Behaviour, Kind
from protocol.errors import CodedError

SHANGHAI = datetime.timezone(datetime.timedelta(hours=8), "Asia/Shanghai")
REVERSE_WINDOW_S = 7 * 86400  # WeChat: "7天以内的交易单可调用撤销"
# A payment code is good for a minute on the phone (it refreshes); the sandbox's default leaves a
# person time to type one in a demo. `channel-sandbox --code-ttl-s 60` for the real thing.
CODE_TTL_S = 300.0
# WeChat closes a payment-code order the patient never confirms ("REVOKED"); the sandbox does it
# this long after the order was placed (`--unpaid-revoke-s`).
UNPAID_REVOKE_S = 120.0
CHANNELS = ("WECHAT", "ALIPAY")
# PRAGMA user_version of the ledger: 2 keys orders and refunds by merchant (1, or 0 with tables: one
# number space per channel).
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts(
    code TEXT PRIMARY KEY, channel TEXT NOT NULL, behaviour TEXT NOT NULL,
    initial_fen INTEGER NOT NULL, balance_fen INTEGER NOT NULL CHECK (balance_fen >= 0),
    buyer_id TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS orders(
    channel TEXT NOT NULL, out_trade_no TEXT NOT NULL, txn_id TEXT NOT NULL UNIQUE, code TEXT,
    total_fen INTEGER NOT NULL, subject TEXT NOT NULL, state TEXT NOT NULL, device_info TEXT,
    created_at REAL NOT NULL, paid_at REAL, closed_at REAL, confirm_at REAL,
    refunded_fen INTEGER NOT NULL DEFAULT 0 CHECK (refunded_fen >= 0 AND refunded_fen <= total_fen),
    merchant TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (channel, merchant, out_trade_no));
CREATE INDEX IF NOT EXISTS orders_by_code ON orders(code);
CREATE TABLE IF NOT EXISTS refunds(
    channel TEXT NOT NULL, out_trade_no TEXT NOT NULL, out_refund_no TEXT NOT NULL,
    refund_id TEXT NOT NULL UNIQUE, amount_fen INTEGER NOT NULL CHECK (amount_fen > 0),
    kind TEXT NOT NULL, reason TEXT NOT NULL, created_at REAL NOT NULL, merchant TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (channel, merchant, out_trade_no, out_refund_no));
CREATE TABLE IF NOT EXISTS settings(key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# Schema 1 -> 2: the same rows, keyed by merchant (a refund's merchant is its order's).
_MIGRATE_1_TO_2 = """
ALTER TABLE orders RENAME TO orders_v1;
ALTER TABLE refunds RENAME TO refunds_v1;
DROP INDEX IF EXISTS orders_by_code;
""" + _SCHEMA + """
INSERT INTO orders SELECT channel, out_trade_no, txn_id, code, total_fen, subject, state, device_info, created_at, paid_at, closed_at,
    confirm_at, refunded_fen, merchant FROM orders_v1;
INSERT INTO refunds SELECT r.channel, r.out_trade_no, r.out_refund_no, r.refund_id, r.amount_fen, r.kind, r.reason, r.created_at,
    COALESCE(o.merchant, '') FROM refunds_v1 r LEFT JOIN orders_v1 o ON o.channel = r.channel AND o.out_trade_no = r.out_trade_no;
DROP TABLE refunds_v1;
DROP TABLE orders_v1;
"""


class OrderState(str, enum.Enum):
    USERPAYING = "USERPAYING"  # waiting for the patient's confirmation on the phone
    SUCCESS = "SUCCESS"  # paid (refunds, if any, are in refunded_fen)
    PAYERROR = "PAYERROR"  # declined: nothing taken; the number may be paid again
    CLOSED = "CLOSED"  # reversed/cancelled before payment: nothing taken
    REVOKED = "REVOKED"  # reversed after payment: the money went back


class PayResult(enum.Enum):
    PAID = "paid"
    USERPAYING = "userpaying"
    INSUFFICIENT = "insufficient"
    CODE_INVALID = "code_invalid"
    CODE_EXPIRED = "code_expired"
    SYSTEM_ERROR = "system_error"
    ALREADY_PAID = "already_paid"
    ALREADY_CLOSED = "already_closed"
    ALREADY_REVOKED = "already_revoked"
    CONFLICT = "conflict"  # the number is used by an order with another code or amount


class ReverseResult(enum.Enum):
    CLOSED = "closed"  # nothing had been taken
    REFUNDED = "refunded"  # it had been paid: the money went back
    EXPIRED = "expired"


class RefundResult(enum.Enum):
    DONE = "done"
    DUPLICATE = "duplicate"  # this refund number was already done: nothing moves again
    MISMATCH = "mismatch"  # this refund number was used with another amount or order
    NOT_EXIST = "not_exist"
    NOT_PAID = "not_paid"
    TOTAL_MISMATCH = "total_mismatch"
    FULLY_REFUNDED = "fully_refunded"
    EXCEEDS = "exceeds"


@dataclass(frozen=True, slots=True)
class Account:
    code: str
    channel: str
    behaviour: Behaviour
    initial_fen: int
    balance_fen: int
    buyer_id: str
    created_at: float


@dataclass(frozen=True, slots=True)
class Order:
    channel: str
    out_trade_no: str
    txn_id: str
    code: str | None
    total_fen: int
    subject: str
    state: OrderState
    device_info: str | None
    created_at: float
    paid_at: float | None
    closed_at: float | None
    confirm_at: float | None
    refunded_fen: int
    # Whose money it is: the WeChat merchant (a sub-merchant in service-provider mode) the order was
    # placed for; "" for orders of the single default merchant (and for Alipay).
    merchant: str = ""


@dataclass(frozen=True, slots=True)
class Refund:
    channel: str
    out_trade_no: str
    out_refund_no: str
    refund_id: str
    amount_fen: int
    kind: str  # REFUND, or REVERSAL for a paid order that was reversed
    reason: str
    created_at: float
    merchant: str = ""


class StoreError(CodedError):
    """The data dir's ledger cannot be used by this sandbox (the message says why and what to do)."""

    code = "sandbox_ledger"


def _digits(n: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(n))


class Store:
    def __init__(self, path: str, *, clock=time.time, code_ttl_s: float = CODE_TTL_S, unpaid_revoke_s: float = UNPAID_REVOKE_S) -> None:
        self._clock = clock
        self._advanced_s = 0.0
        self.code_ttl_s = code_ttl_s
        self.unpaid_revoke_s = unpaid_revoke_s
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self.migrated_from = self._migrate()
        self._lock = threading.RLock()
        self._offset_s = float(self._setting("clock_offset_s") or 0.0)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _migrate(self) -> int | None:
        """Bring the ledger to SCHEMA_VERSION; the version it had when it was older (None: it was current or new)."""
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(f"the sandbox ledger is schema {version}, newer than this sandbox's {SCHEMA_VERSION}: "
                             "use a newer sandbox or another --data-dir")
        if version == SCHEMA_VERSION:
            return None
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "orders" not in tables:  # a new data dir
            self._db.executescript(_SCHEMA + f"PRAGMA user_version = {SCHEMA_VERSION};")
            return None
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(orders)")}
        script = ("" if "merchant" in columns else  # a data dir from before service-provider mode
                  "ALTER TABLE orders ADD COLUMN merchant TEXT NOT NULL DEFAULT '';\n") + _MIGRATE_1_TO_2
        self._db.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {SCHEMA_VERSION};\nCOMMIT;")
        return version or 1

    def assign_merchant(self, channel: str, out_trade_no: str, merchant: str) -> bool:
        """Move an order recorded for the default merchant "" (and its refunds) to `merchant`: for a
        ledger migrated from schema 1, whose Alipay third-party trades were recorded apart (alipay_tenants)."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM orders WHERE channel = ? AND merchant = ? AND out_trade_no = ?",
                          (channel, merchant, out_trade_no)).fetchone():
                return False
            moved = db.execute("UPDATE orders SET merchant = ? WHERE channel = ? AND merchant = '' AND out_trade_no = ?",
                               (merchant, channel, out_trade_no)).rowcount
            db.execute("UPDATE refunds SET merchant = ? WHERE channel = ? AND merchant = '' AND out_trade_no = ?", (merchant, channel, out_trade_no))
            return moved == 1

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- clock -------------------------------------------------------------------------------

    def real(self) -> float:
        return self._clock() + self._advanced_s

    def advance(self, seconds: float) -> None:
        """Move real time on (codes expire, patients confirm, unpaid orders are revoked): for tests."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._advanced_s += seconds

    def now(self) -> float:
        return self.real() + self._offset_s

    def today(self) -> datetime.date:
        return datetime.datetime.fromtimestamp(self.now(), SHANGHAI).date()

    def set_today(self, day: datetime.date | None) -> None:
        """Move business time to `day` (keeping the time of day); None goes back to the real date."""
        real_today = datetime.datetime.fromtimestamp(self.real(), SHANGHAI).date()
        offset = 0.0 if day is None else float((day - real_today).days * 86400)
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO settings VALUES ('clock_offset_s', ?)", (repr(offset),))
        self._offset_s = offset

    def _setting(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def get_or_create_setting(self, key: str, make: str) -> str:
        with self._tx() as db:
            row = db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
            if row is not None:
                return str(row[0])
            db.execute("INSERT INTO settings VALUES (?, ?)", (key, make))
            return make

    # -- accounts ----------------------------------------------------------------------------

    def create_account(self, channel: str, code: str, behaviour: Behaviour, balance_fen: int, buyer_id: str) -> Account | None:
        """None if the code exists already (the caller draws another)."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM accounts WHERE code = ?", (code,)).fetchone():
                return None
            db.execute("INSERT INTO accounts VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (code, channel, behaviour.text, balance_fen, balance_fen, buyer_id, self.now()))
        account = self.account(code)
        assert account is not None
        return account

    def account(self, code: str) -> Account | None:
        with self._tx() as db:
            self._settle_code(db, code)
            row = db.execute("SELECT * FROM accounts WHERE code = ?", (code,)).fetchone()
        if row is None:
            return None
        return Account(row[0], row[1], Behaviour.parse(row[2]), row[3], row[4], row[5], row[6])

    def orders_for(self, code: str) -> list[Order]:
        rows = self._db.execute("SELECT * FROM orders WHERE code = ? ORDER BY created_at", (code,)).fetchall()
        return [_order(row) for row in rows]

    def refunds_for(self, code: str) -> list[Refund]:
        rows = self._db.execute(
            "SELECT r.* FROM refunds r JOIN orders o ON o.channel = r.channel AND o.merchant = r.merchant AND o.out_trade_no = r.out_trade_no"
            " WHERE o.code = ? ORDER BY r.created_at", (code,)).fetchall()
        return [Refund(*row) for row in rows]

    # -- payments ----------------------------------------------------------------------------

    def pay(self, channel: str, out_trade_no: str, code: str, total_fen: int, subject: str, device_info: str | None,
            merchant: str = "") -> tuple[PayResult, Order | None]:
        with self._tx() as db:
            existing = self._settle(db, channel, out_trade_no, merchant)
            if existing is not None and existing.state is not OrderState.PAYERROR:
                if existing.code is None:
                    return PayResult.ALREADY_CLOSED, existing  # reversed before the payment arrived
                if existing.code != code or existing.total_fen != total_fen:
                    return PayResult.CONFLICT, existing
                return {
                    OrderState.SUCCESS: PayResult.ALREADY_PAID,
                    OrderState.USERPAYING: PayResult.USERPAYING,
                    OrderState.CLOSED: PayResult.ALREADY_CLOSED,
                    OrderState.REVOKED: PayResult.ALREADY_REVOKED,
                }[existing.state], existing
            row = db.execute("SELECT behaviour, created_at FROM accounts WHERE code = ? AND channel = ?", (code, channel)).fetchone()
            if row is None:
                return PayResult.CODE_INVALID, None
            if self.now() - row[1] > self.code_ttl_s:
                return PayResult.CODE_EXPIRED, None
            used = db.execute("SELECT 1 FROM orders WHERE code = ? AND NOT (merchant = ? AND out_trade_no = ?) AND state != 'PAYERROR'",
                              (code, merchant, out_trade_no)).fetchone()
            if used:
                return PayResult.CODE_INVALID, None  # a payment code pays once
            behaviour = Behaviour.parse(row[0])
            if behaviour.kind is Kind.SYSTEMERROR_UNPAID:
                return PayResult.SYSTEM_ERROR, None
            now = self.now()
            txn = existing.txn_id if existing is not None else self._new_txn_id(channel, now)
            if behaviour.kind is Kind.INSUFFICIENT:
                state, result = OrderState.PAYERROR, PayResult.INSUFFICIENT
                confirm_at = None
            elif behaviour.kind in (Kind.USERPAYING, Kind.USERPAYING_FOREVER):
                state, result = OrderState.USERPAYING, PayResult.USERPAYING
                confirm_at = None if behaviour.kind is Kind.USERPAYING_FOREVER else self.real() + behaviour.seconds
            else:
                state, result, confirm_at = OrderState.SUCCESS, PayResult.PAID, None
            db.execute("DELETE FROM orders WHERE channel = ? AND merchant = ? AND out_trade_no = ?", (channel, merchant, out_trade_no))
            db.execute("INSERT INTO orders (channel, out_trade_no, txn_id, code, total_fen, subject, state, device_info, created_at,"
                       " paid_at, closed_at, confirm_at, refunded_fen, merchant) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, 0, ?)",
                       (channel, out_trade_no, txn, code, total_fen, subject, state.value, device_info, now, confirm_at, merchant))
            if state is OrderState.SUCCESS and not self._debit(db, channel, out_trade_no, merchant, code, total_fen, now):
                result = PayResult.INSUFFICIENT
            if behaviour.kind is Kind.SYSTEMERROR and result is PayResult.PAID:
                result = PayResult.SYSTEM_ERROR  # the money was taken; only the answer is lost
            return result, self._order(db, channel, out_trade_no, merchant)

    def order(self, channel: str, out_trade_no: str, merchant: str = "") -> Order | None:
        with self._tx() as db:
            return self._settle(db, channel, out_trade_no, merchant)

    def orders_numbered(self, channel: str, out_trade_no: str) -> list[Order]:
        """Every merchant's order with this number (the control API's view across merchants)."""
        with self._tx() as db:
            owners = [str(r[0]) for r in db.execute("SELECT merchant FROM orders WHERE channel = ? AND out_trade_no = ? ORDER BY created_at",
                                                    (channel, out_trade_no)).fetchall()]
            return [o for o in (self._settle(db, channel, out_trade_no, m) for m in owners) if o is not None]

    def reverse(self, channel: str, out_trade_no: str, merchant: str = "") -> tuple[ReverseResult, Order]:
        with self._tx() as db:
            order = self._settle(db, channel, out_trade_no, merchant)
            now = self.now()
            if order is None:
                # Nothing exists: record a closed order so a payment arriving late is refused.
                db.execute("INSERT INTO orders (channel, out_trade_no, txn_id, code, total_fen, subject, state, device_info, created_at,"
                           " paid_at, closed_at, confirm_at, refunded_fen, merchant) VALUES (?, ?, ?, NULL, 0, '', 'CLOSED', NULL, ?, NULL, ?, NULL, 0, ?)",
                           (channel, out_trade_no, self._new_txn_id(channel, now), now, now, merchant))
            elif order.state in (OrderState.USERPAYING, OrderState.PAYERROR):
                db.execute("UPDATE orders SET state = 'CLOSED', closed_at = ? WHERE channel = ? AND merchant = ? AND out_trade_no = ?",
                           (now, channel, merchant, out_trade_no))
            elif order.state is OrderState.SUCCESS:
                if now - order.created_at > REVERSE_WINDOW_S:
                    return ReverseResult.EXPIRED, order
                back = order.total_fen - order.refunded_fen
                if back > 0:
                    db.execute("INSERT INTO refunds VALUES (?, ?, 'REVERSAL', ?, ?, 'REVERSAL', 'reversed', ?, ?)",
                               (channel, out_trade_no, self._new_refund_id(channel), back, now, merchant))
                    db.execute("UPDATE accounts SET balance_fen = balance_fen + ? WHERE code = ?", (back, order.code))
                db.execute("UPDATE orders SET state = 'REVOKED', closed_at = ?, refunded_fen = total_fen"
                           " WHERE channel = ? AND merchant = ? AND out_trade_no = ?", (now, channel, merchant, out_trade_no))
                return ReverseResult.REFUNDED, self._order(db, channel, out_trade_no, merchant)
            elif order.state is OrderState.REVOKED:
                return ReverseResult.REFUNDED, order
            return ReverseResult.CLOSED, self._order(db, channel, out_trade_no, merchant)

    # -- refunds -----------------------------------------------------------------------------

    def refund(self, channel: str, out_trade_no: str, out_refund_no: str, refund_fen: int, *, total_fen: int | None,
               reason: str, merchant: str = "") -> tuple[RefundResult, Refund | None, Order | None]:
        with self._tx() as db:
            order = self._settle(db, channel, out_trade_no, merchant)
            previous = self._find_refund(db, channel, out_refund_no, out_trade_no, merchant)
            if previous is not None:
                if previous.out_trade_no != out_trade_no or previous.amount_fen != refund_fen:
                    return RefundResult.MISMATCH, previous, order
                return RefundResult.DUPLICATE, previous, order
            if order is None or order.code is None:
                return RefundResult.NOT_EXIST, None, order
            if order.state is not OrderState.SUCCESS:
                return RefundResult.NOT_PAID, None, order
            if total_fen is not None and total_fen != order.total_fen:
                return RefundResult.TOTAL_MISMATCH, None, order
            remaining = order.total_fen - order.refunded_fen
            if remaining == 0:
                return RefundResult.FULLY_REFUNDED, None, order
            if refund_fen > remaining:
                return RefundResult.EXCEEDS, None, order
            refund = Refund(channel, out_trade_no, out_refund_no, self._new_refund_id(channel), refund_fen, "REFUND", reason[:80], self.now(),
                            merchant)
            db.execute("INSERT INTO refunds VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (
                refund.channel, refund.out_trade_no, refund.out_refund_no, refund.refund_id, refund.amount_fen, refund.kind,
                refund.reason, refund.created_at, refund.merchant))
            db.execute("UPDATE orders SET refunded_fen = refunded_fen + ? WHERE channel = ? AND merchant = ? AND out_trade_no = ?",
                       (refund_fen, channel, merchant, out_trade_no))
            db.execute("UPDATE accounts SET balance_fen = balance_fen + ? WHERE code = ?", (refund_fen, order.code))
            return RefundResult.DONE, refund, self._order(db, channel, out_trade_no, merchant)

    def find_refund(self, channel: str, out_refund_no: str, out_trade_no: str | None = None, merchant: str = "") -> Refund | None:
        with self._lock:
            return self._find_refund(self._db, channel, out_refund_no, out_trade_no, merchant)

    def _find_refund(self, db: sqlite3.Connection, channel: str, out_refund_no: str, out_trade_no: str | None,
                     merchant: str) -> Refund | None:
        # WeChat refund numbers are unique per merchant; Alipay's per trade (the caller says which).
        if out_trade_no is None or channel == "WECHAT":
            row = db.execute("SELECT * FROM refunds WHERE channel = ? AND merchant = ? AND out_refund_no = ? AND kind = 'REFUND'",
                             (channel, merchant, out_refund_no)).fetchone()
        else:
            row = db.execute("SELECT * FROM refunds WHERE channel = ? AND merchant = ? AND out_trade_no = ? AND out_refund_no = ? "
                             "AND kind = 'REFUND'", (channel, merchant, out_trade_no, out_refund_no)).fetchone()
        return None if row is None else Refund(*row)

    # -- bills -------------------------------------------------------------------------------

    def day_activity(self, channel: str, day: datetime.date, merchant: str | None = None) -> tuple[list[Order], list[tuple[Refund, Order]]]:
        """Orders paid and refunds made during `day` (Asia/Shanghai), oldest first; only `merchant`'s when given."""
        start = datetime.datetime.combine(day, datetime.time(), SHANGHAI).timestamp()
        end = start + 86400
        with self._tx() as db:
            for (owner, number) in db.execute("SELECT merchant, out_trade_no FROM orders WHERE channel = ? AND state = 'USERPAYING'",
                                              (channel,)).fetchall():
                self._settle(db, channel, number, owner)
            paid = [_order(row) for row in db.execute(
                "SELECT * FROM orders WHERE channel = ? AND paid_at >= ? AND paid_at < ? ORDER BY paid_at", (channel, start, end))]
            refunds = [(Refund(*row[:9]), _order(row[9:])) for row in db.execute(
                "SELECT r.*, o.* FROM refunds r JOIN orders o ON o.channel = r.channel AND o.merchant = r.merchant AND o.out_trade_no = r.out_trade_no"
                " WHERE r.channel = ? AND r.created_at >= ? AND r.created_at < ? ORDER BY r.created_at", (channel, start, end))]
        if merchant is not None:
            paid = [o for o in paid if o.merchant == merchant]
            refunds = [(r, o) for r, o in refunds if o.merchant == merchant]
        return paid, refunds

    # -- internals ---------------------------------------------------------------------------

    def _order(self, db: sqlite3.Connection, channel: str, out_trade_no: str, merchant: str) -> Order:
        row = db.execute("SELECT * FROM orders WHERE channel = ? AND merchant = ? AND out_trade_no = ?", (channel, merchant, out_trade_no)).fetchone()
        return _order(row)

    def _settle(self, db: sqlite3.Connection, channel: str, out_trade_no: str, merchant: str) -> Order | None:
        """The order, after applying a patient's confirmation that is due."""
        row = db.execute("SELECT * FROM orders WHERE channel = ? AND merchant = ? AND out_trade_no = ?", (channel, merchant, out_trade_no)).fetchone()
        if row is None:
            return None
        order = _order(row)
        deadline = order.created_at - self._offset_s + self.unpaid_revoke_s  # in real time
        if (order.state is OrderState.USERPAYING and channel == "WECHAT" and self.real() >= deadline
                and (order.confirm_at is None or order.confirm_at > deadline)):
            # Never confirmed in time: WeChat revokes the order; nothing was taken.
            closed = deadline + self._offset_s
            db.execute("UPDATE orders SET state = 'CLOSED', closed_at = ?, confirm_at = NULL WHERE channel = ? AND merchant = ? AND out_trade_no = ?",
                       (closed, channel, merchant, out_trade_no))
            return self._order(db, channel, out_trade_no, merchant)
        if order.state is OrderState.USERPAYING and order.confirm_at is not None and self.real() >= order.confirm_at:
            now = self.now()
            db.execute("UPDATE orders SET state = 'SUCCESS', confirm_at = NULL WHERE channel = ? AND merchant = ? AND out_trade_no = ?", (channel, merchant, out_trade_no))
            assert order.code is not None
            self._debit(db, channel, out_trade_no, merchant, order.code, order.total_fen, now)
            order = self._order(db, channel, out_trade_no, merchant)
        return order

    def _settle_code(self, db: sqlite3.Connection, code: str) -> None:
        for channel, merchant, out_trade_no in db.execute(
                "SELECT channel, merchant, out_trade_no FROM orders WHERE code = ? AND state = 'USERPAYING'", (code,)).fetchall():
            self._settle(db, channel, out_trade_no, merchant)

    def _debit(self, db: sqlite3.Connection, channel: str, out_trade_no: str, merchant: str, code: str, total_fen: int, now: float) -> bool:
        """Take the money for a SUCCESS order, or turn it into PAYERROR if the balance is short."""
        moved = db.execute("UPDATE accounts SET balance_fen = balance_fen - ? WHERE code = ? AND balance_fen >= ?",
                           (total_fen, code, total_fen)).rowcount
        if moved:
            db.execute("UPDATE orders SET paid_at = ? WHERE channel = ? AND merchant = ? AND out_trade_no = ?", (now, channel, merchant, out_trade_no))
            return True
        db.execute("UPDATE orders SET state = 'PAYERROR' WHERE channel = ? AND merchant = ? AND out_trade_no = ?", (channel, merchant, out_trade_no))
        return False

    def _new_txn_id(self, channel: str, now: float) -> str:
        day = datetime.datetime.fromtimestamp(now, SHANGHAI).strftime("%Y%m%d")
        # WeChat transaction_id: 28 digits starting 42; Alipay trade_no: date + 22001 + 15 digits.
        return ("4200" + day + _digits(16)) if channel == "WECHAT" else (day + "22001" + _digits(15))

    def _new_refund_id(self, channel: str) -> str:
        return ("503" + _digits(26)) if channel == "WECHAT" else ("R" + _digits(27))


def _order(row: tuple) -> Order:
    return Order(row[0], row[1], row[2], row[3], row[4], row[5], OrderState(row[6]), row[7], row[8], row[9], row[10], row[11], row[12],
                 row[13] if len(row) > 13 else "")
