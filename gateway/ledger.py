"""The money rules, enforced on the server for every window of a hospital (seed 000, seed 001).

- One order, one payment: a collection is written as `paying` BEFORE the channel is called, and the
  schema's unique index `payments_one_per_order` admits one row per (hospital, order) among those
  under way or succeeded. A failed or closed attempt leaves room for another; a second device, bridge
  or gateway process racing for the same order gets `duplicate_order` from the database itself.
- Refunds never beyond what was collected: the payment row is locked (`SELECT ... FOR UPDATE` on
  PostgreSQL, `BEGIN IMMEDIATE` on SQLite), then succeeded + in-flight refunds + this one must not
  exceed the amount paid; the refund is written as `refunding` before the channel is called.
- Nothing under way is forgotten: the transaction that records a collection or a refund also writes
  its job (`gateway.jobs`), due FOLLOW_UP_AFTER_S later, and the one that makes it final deletes it;
  so a collection or refund whose request died, or whose POS went away, is finished by a gateway
  process (`gateway.channel_work`), never left under way.
- Limits: the per-transaction limit is the hospital's setting (its one source); the per-terminal and
  per-hospital daily limits count collections under way or succeeded by the Asia/Shanghai day,
  checked with the hospital row locked so concurrent payments cannot both slip under the limit.

Payment and refund states move only along `PAYMENT_MOVES` / `REFUND_MOVES`; anything else is a bug
or a confused caller and is refused with `bad_transition`.
"""

from __future__ import annotations

import datetime
import enum
import time
from dataclasses import dataclass
from typing import Callable, Sequence
from zoneinfo import ZoneInfo

from protocol.amount import format_yuan
from protocol.ids import is_valid_id
from protocol.messages import PayChannel

from gateway import jobs
from gateway.db import Database, Param, Result, Tx, UniqueViolation
from gateway.errors import GatewayCode, GatewayError
from gateway.jobs import JobKind

# Business days of Chinese hospitals and of both channels' bills.
BUSINESS_TZ = ZoneInfo("Asia/Shanghai")
# WeChat Pay's refund API (申请退款): "交易时间超过一年的订单无法提交退款" and "每个支付订单的部分退款次数不能超过50次".
# The gateway refuses both up front with its own codes, rather than sending a refund the channel
# will refuse. A year is taken as 365 days from the collection (the safe side of a leap year).
WECHAT_REFUND_WINDOW_S = 365 * 86400
WECHAT_MAX_REFUNDS = 50


class PaymentState(enum.Enum):
    PAYING = "paying"  # written before the channel is called; the outcome is not known yet
    REVERSING = "reversing"  # the POS could not confirm it: being reversed/cancelled
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the channel confirms nothing was taken
    CLOSED = "closed"  # reversed / cancelled / expired: nothing taken


class RefundState(enum.Enum):
    REFUNDING = "refunding"  # reserved before the channel is called
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the channel confirms nothing was refunded: the reservation is released


# Collections that hold their order (the unique index) and count against the daily limits.
HOLDS_ORDER = (PaymentState.PAYING, PaymentState.REVERSING, PaymentState.SUCCEEDED)
# Refunds that count against what remains refundable.
HOLDS_MONEY = (RefundState.REFUNDING, RefundState.SUCCEEDED)

PAYMENT_MOVES: dict[PaymentState, frozenset[PaymentState]] = {
    PaymentState.PAYING: frozenset({PaymentState.SUCCEEDED, PaymentState.FAILED, PaymentState.CLOSED, PaymentState.REVERSING}),
    # A reversal that fails because the payment went through ends as succeeded.
    PaymentState.REVERSING: frozenset({PaymentState.CLOSED, PaymentState.SUCCEEDED}),
    # Reversing a succeeded collection (WeChat reverse / Alipay cancel refund it in full).
    PaymentState.SUCCEEDED: frozenset({PaymentState.REVERSING}),
    PaymentState.FAILED: frozenset(),
    PaymentState.CLOSED: frozenset(),
}
REFUND_MOVES: dict[RefundState, frozenset[RefundState]] = {
    RefundState.REFUNDING: frozenset({RefundState.SUCCEEDED, RefundState.FAILED}),
    RefundState.SUCCEEDED: frozenset(),
    RefundState.FAILED: frozenset(),
}


def business_day(ts: float) -> str:
    """The Asia/Shanghai calendar day of a unix time, as YYYY-MM-DD."""
    return datetime.datetime.fromtimestamp(ts, BUSINESS_TZ).date().isoformat()


@dataclass(frozen=True, slots=True)
class Payment:
    payment_id: int
    hospital_id: str
    terminal_id: str
    device_id: str
    order_no: str
    out_trade_no: str
    channel: PayChannel
    amount_fen: int
    state: PaymentState
    local_day: str
    channel_txn_id: str | None
    result_code: str | None


@dataclass(frozen=True, slots=True)
class Refund:
    refund_id: int
    payment_id: int
    hospital_id: str
    out_refund_no: str
    amount_fen: int
    state: RefundState
    device_id: str
    instruction_msg_id: str | None
    channel_refund_id: str | None


_PAYMENT_COLS = ("payment_id, hospital_id, terminal_id, device_id, order_no, out_trade_no, channel, amount_fen, state, "
                 "local_day, channel_txn_id, result_code")
_REFUND_COLS = "refund_id, payment_id, hospital_id, out_refund_no, amount_fen, state, device_id, instruction_msg_id, channel_refund_id"


def _payment(row: tuple) -> Payment:
    return Payment(int(row[0]), row[1], row[2], row[3], row[4], row[5], PayChannel(row[6]), int(row[7]), PaymentState(row[8]),
                   row[9], row[10], row[11])


def _refund(row: tuple) -> Refund:
    return Refund(int(row[0]), int(row[1]), row[2], row[3], int(row[4]), RefundState(row[5]), row[6], row[7], row[8])


class _OrderTaken(Exception):  # internal: the payment's INSERT met the order's unique index (see start_payment)
    pass


class Unbatched(Exception):
    """`start_payment_in` / `settle_payment_with`: this collection needs the checks the batched
    statements do not make (a daily limit, a limit exceeded, its out_trade_no or order taken, a move
    other than the usual one). The caller rolls its transaction back and takes the ordinary way
    (`start_payment` / `settle_payment`), which refuses or records it with every check."""


Statement = tuple[str, tuple[Param, ...]]


class OutTradeNoUsed(GatewayError):
    """A collection with this out_trade_no is already recorded (`bad_input` to a caller; the service
    tells a retry of the same request from a reuse)."""


def _check_amount(amount_fen: int) -> None:
    if type(amount_fen) is not int or amount_fen <= 0:
        raise GatewayError(GatewayCode.BAD_INPUT, "an amount is a positive integer of fen")


def _check_no(field: str, value: str) -> None:
    if not isinstance(value, str) or not is_valid_id(value) or len(value) > 32:
        raise GatewayError(GatewayCode.BAD_INPUT, f"{field} {value!r} must be 1..32 of [A-Za-z0-9_-] (the channels' limit)")


def _check_payment_fields(order_no: str, out_trade_no: str, amount_fen: int) -> None:
    _check_amount(amount_fen)
    _check_no("out_trade_no", out_trade_no)
    if not is_valid_id(order_no):
        raise GatewayError(GatewayCode.BAD_INPUT, f"order_no {order_no!r} must match [A-Za-z0-9_-]{{1,64}}")


# States after which nothing more is owed to the channel (the job is deleted).
PAYMENT_FINAL = frozenset({PaymentState.SUCCEEDED, PaymentState.FAILED, PaymentState.CLOSED})
REFUND_FINAL = frozenset({RefundState.SUCCEEDED, RefundState.FAILED})


class Ledger:
    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time,
                 follow_up_after_s: float = jobs.FOLLOW_UP_AFTER_S) -> None:
        self.db = db
        self._clock = clock
        self.follow_up_after_s = follow_up_after_s
        # Hospitals last seen with a daily limit: their collections are started with the hospital row
        # locked (a hint only: every batch re-reads the row and gives up if a limit appeared).
        self._daily_limited: set[str] = set()

    def _schedule(self, tx: Tx, kind: JobKind, hospital_id: str, subject: str, now: float) -> None:
        jobs.schedule(tx, kind, hospital_id, subject, due_at_ms=jobs.ms(now + self.follow_up_after_s), now_ms=jobs.ms(now))

    # --- collections ----------------------------------------------------------------------------

    def start_payment(
        self,
        *,
        hospital_id: str,
        terminal_id: str,
        device_id: str,
        order_no: str,
        out_trade_no: str,
        channel: PayChannel,
        amount_fen: int,
    ) -> Payment:
        """Record a collection as `paying` before the channel is called, or refuse it."""
        _check_payment_fields(order_no, out_trade_no, amount_fen)
        try:
            with self.db.transaction() as tx:
                return self._start_payment(tx, hospital_id, terminal_id, device_id, order_no, out_trade_no, channel, amount_fen)
        except _OrderTaken:
            with self.db.reads() as tx:
                copy = tx.scalar("SELECT 1 FROM payments WHERE hospital_id = ? AND out_trade_no = ?", (hospital_id, out_trade_no))
            if copy is not None:
                raise OutTradeNoUsed(GatewayCode.BAD_INPUT,
                                     f"out_trade_no {out_trade_no} has been used before; every attempt needs a new one") from None
            raise GatewayError(GatewayCode.DUPLICATE_ORDER,
                               f"order {order_no} already has a collection under way or paid at this hospital") from None

    def start_payment_in(self, tx: Tx, before: Sequence[Statement], *, hospital_id: str, terminal_id: str, device_id: str,
                         order_no: str, out_trade_no: str, channel: PayChannel, amount_fen: int) -> tuple[list[Result], Payment]:
        """`start_payment` inside the caller's (durable) transaction, its statements sent in one batch
        after the caller's `before` (their results are returned): on PostgreSQL the request's
        bookkeeping and the collection cost one round trip. The collection is inserted before its
        hospital's limits are looked at (they come back in the same batch); if they refuse it, or a
        daily limit needs the hospital row locked first, or its numbers are taken, `Unbatched` is
        raised and the caller rolls everything back (nothing of it was committed)."""
        try:
            _check_payment_fields(order_no, out_trade_no, amount_fen)
        except GatewayError:
            raise Unbatched() from None
        now = self._clock()
        if hospital_id in self._daily_limited:  # the hospital row is locked before the daily totals are read
            results = tx.batch(before)
            try:
                return results, self._start_payment(tx, hospital_id, terminal_id, device_id, order_no, out_trade_no, channel,
                                                     amount_fen)
            except (GatewayError, _OrderTaken):
                raise Unbatched() from None
        try:
            results = tx.batch([*before,
                                ("SELECT txn_limit_fen, daily_limit_fen, terminal_daily_limit_fen FROM hospitals WHERE hospital_id = ?",
                                 (hospital_id,)),
                                self._insert_payment(hospital_id, terminal_id, device_id, order_no, out_trade_no, channel, amount_fen, now),
                                self._job_statement(JobKind.PAYMENT, hospital_id, out_trade_no, now)])
        except UniqueViolation:
            raise Unbatched() from None
        limits, inserted = results[-3].rows, results[-2].rows
        if not limits or not inserted:
            raise Unbatched()
        txn_limit, daily_limit, terminal_limit = limits[0]
        if daily_limit is not None or terminal_limit is not None:
            self._daily_limited.add(hospital_id)
            raise Unbatched()
        if amount_fen > txn_limit:
            raise Unbatched()
        return results[:-3], _payment(inserted[0])

    def _insert_payment(self, hospital_id: str, terminal_id: str, device_id: str, order_no: str, out_trade_no: str,
                        channel: PayChannel, amount_fen: int, now: float) -> Statement:
        # A copy of this very request (the same out_trade_no) racing us is told apart from another
        # attempt at the order by the conflict target: PostgreSQL waits for the copy's insert and
        # does nothing (no row back), whatever the order index says; SQLite is serialised anyway.
        return (f"INSERT INTO payments ({_PAYMENT_COLS.replace('payment_id, ', '')}, created_at, updated_at) "
                f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?) ON CONFLICT (hospital_id, out_trade_no) DO NOTHING "
                f"RETURNING {_PAYMENT_COLS}",
                (hospital_id, terminal_id, device_id, order_no, out_trade_no, channel.value, amount_fen,
                 PaymentState.PAYING.value, business_day(now), int(now), int(now)))

    def _job_statement(self, kind: JobKind, hospital_id: str, subject: str, now: float) -> Statement:
        return jobs.schedule_statement(kind, hospital_id, subject, due_at_ms=jobs.ms(now + self.follow_up_after_s), now_ms=jobs.ms(now),
                                       dialect=self.db.dialect)

    def _start_payment(self, tx: Tx, hospital_id: str, terminal_id: str, device_id: str, order_no: str, out_trade_no: str,
                       channel: PayChannel, amount_fen: int) -> Payment:
        now = self._clock()
        day = business_day(now)
        # With a daily limit, the hospital row lock serialises payment starts of one hospital on
        # PostgreSQL (SQLite's BEGIN IMMEDIATE already does): the daily totals below cannot change
        # under us. Without one, nothing here depends on other payments (one order, one payment
        # is the unique index's), so payments of one hospital commit side by side.
        limits_sql = "SELECT txn_limit_fen, daily_limit_fen, terminal_daily_limit_fen FROM hospitals WHERE hospital_id = ?"
        row = tx.one(limits_sql, (hospital_id,))
        if row is None:
            raise GatewayError(GatewayCode.UNKNOWN_HOSPITAL, f"no hospital {hospital_id!r}")
        if row[1] is None and row[2] is None:
            self._daily_limited.discard(hospital_id)
        else:
            self._daily_limited.add(hospital_id)
            if tx.for_update:
                row = tx.one(limits_sql + tx.for_update, (hospital_id,))
                assert row is not None
        txn_limit, daily_limit, terminal_limit = row
        if amount_fen > txn_limit:
            raise GatewayError(GatewayCode.OVER_TRANSACTION_LIMIT,
                               f"{format_yuan(amount_fen)} is over this hospital's per-payment limit of {format_yuan(int(txn_limit))}")
        held = tuple(s.value for s in HOLDS_ORDER)
        if terminal_limit is not None:
            used = int(tx.scalar(
                "SELECT COALESCE(SUM(amount_fen), 0) FROM payments WHERE hospital_id = ? AND local_day = ? AND terminal_id = ? "
                "AND state IN (?, ?, ?)", (hospital_id, day, terminal_id, *held)) or 0)
            if used + amount_fen > terminal_limit:
                raise GatewayError(GatewayCode.OVER_TERMINAL_DAILY_LIMIT,
                                   f"terminal {terminal_id} has collected {format_yuan(used)} on {day}; "
                                   f"{format_yuan(amount_fen)} more is over its daily limit of {format_yuan(int(terminal_limit))}")
        if daily_limit is not None:
            used = int(tx.scalar(
                "SELECT COALESCE(SUM(amount_fen), 0) FROM payments WHERE hospital_id = ? AND local_day = ? AND state IN (?, ?, ?)",
                (hospital_id, day, *held)) or 0)
            if used + amount_fen > daily_limit:
                raise GatewayError(GatewayCode.OVER_HOSPITAL_DAILY_LIMIT,
                                   f"the hospital has collected {format_yuan(used)} on {day}; "
                                   f"{format_yuan(amount_fen)} more is over its daily limit of {format_yuan(int(daily_limit))}")
        try:
            row = tx.one(*self._insert_payment(hospital_id, terminal_id, device_id, order_no, out_trade_no, channel, amount_fen, now))
        except UniqueViolation:
            # Either another attempt at the order holds it, or a copy of this very request won a
            # race its conflict target could not see: PostgreSQL arbitrates ON CONFLICT on the
            # target's index only, and two inserts that both passed its pre-check can meet first on
            # the order's index. Which of the two is read once this transaction has rolled back.
            raise _OrderTaken() from None
        if row is None:
            raise OutTradeNoUsed(GatewayCode.BAD_INPUT, f"out_trade_no {out_trade_no} has been used before; every attempt needs a new one")
        self._schedule(tx, JobKind.PAYMENT, hospital_id, out_trade_no, now)
        assert row is not None
        return _payment(row)

    def settle_payment(self, out_trade_no: str, *, hospital_id: str, state: PaymentState,
                       channel_txn_id: str | None = None, result_code: str | None = None,
                       then: Callable[[Tx], object] | None = None, durable: bool = True) -> Payment:
        """Move a collection to `state` (a repeat of the state it is in is a no-op). `then(tx)` runs in
        the same transaction afterwards (the API stores its reply with the outcome: one commit).
        `durable=False` only where a lost settlement is recovered from the channel (a `paying` row)."""
        with self.db.transaction(durable=durable) as tx:
            now = self._clock()
            if state in PAYMENT_FINAL:
                # The usual move in one statement (the UPDATE locks the row as FOR UPDATE would); when
                # it matches nothing, the row is read below to tell a repeat from a bad transition.
                sources = [s.value for s, moves in PAYMENT_MOVES.items() if state in moves]
                row = tx.one(
                    "UPDATE payments SET state = ?, channel_txn_id = COALESCE(?, channel_txn_id), result_code = COALESCE(?, result_code), "
                    f"updated_at = ? WHERE hospital_id = ? AND out_trade_no = ? AND state IN ({', '.join('?' for _ in sources)}) "
                    f"RETURNING {_PAYMENT_COLS}",
                    (state.value, channel_txn_id, result_code, int(now), hospital_id, out_trade_no, *sources))
                if row is not None:
                    jobs.cancel(tx, JobKind.PAYMENT, hospital_id, out_trade_no)
                    if then is not None:
                        then(tx)
                    return _payment(row)
            payment = self._payment_by(tx, "out_trade_no", out_trade_no, hospital_id=hospital_id, lock=True)
            if payment.state is state:
                if then is not None:
                    then(tx)
                return payment
            if state not in PAYMENT_MOVES[payment.state]:
                raise GatewayError(GatewayCode.BAD_TRANSITION, f"payment {out_trade_no} is {payment.state.value}; it cannot become {state.value}")
            if state is PaymentState.REVERSING and self._held_refunds(tx, payment.payment_id):
                raise GatewayError(GatewayCode.BAD_TRANSITION, f"payment {out_trade_no} has refunds; it cannot be reversed")
            row = tx.one(
                "UPDATE payments SET state = ?, channel_txn_id = COALESCE(?, channel_txn_id), result_code = COALESCE(?, result_code), "
                f"updated_at = ? WHERE payment_id = ? RETURNING {_PAYMENT_COLS}",
                (state.value, channel_txn_id, result_code, int(now), payment.payment_id),
            )
            if state in PAYMENT_FINAL:
                jobs.cancel(tx, JobKind.PAYMENT, hospital_id, out_trade_no)
            else:  # reversing (also a succeeded collection being reversed): owed until the channel confirms
                self._schedule(tx, JobKind.PAYMENT, hospital_id, out_trade_no, now)
            if then is not None:
                then(tx)
            assert row is not None
            return _payment(row)

    def settle_payment_with(self, out_trade_no: str, *, hospital_id: str, state: PaymentState, channel_txn_id: str | None = None,
                            result_code: str | None = None, after: Sequence[Statement] = (),
                            durable: bool = True) -> tuple[Payment, list[Result]]:
        """`settle_payment` to a final state from one of the states that lead to it, or a repeat of
        that state (Alipay's notification or a job got there first: the row is left as it is), in one
        batch with its job's DELETE and the caller's `after` statements (their results are returned):
        on PostgreSQL one round trip. `Unbatched` (everything rolled back) when the collection is in
        another state (a bad transition): the caller then uses `settle_payment`, which says so."""
        if state not in PAYMENT_FINAL:
            raise Unbatched()
        sources = [s.value for s, moves in PAYMENT_MOVES.items() if state in moves]
        with self.db.transaction(durable=durable) as tx:
            # SET's right-hand sides read the row as it was: a repeat keeps its trade number, result
            # code and time (as `settle_payment` does), only a move writes the caller's.
            results = tx.batch([
                ("UPDATE payments SET channel_txn_id = CASE WHEN state = ? THEN channel_txn_id ELSE COALESCE(?, channel_txn_id) END, "
                 "result_code = CASE WHEN state = ? THEN result_code ELSE COALESCE(?, result_code) END, "
                 "updated_at = CASE WHEN state = ? THEN updated_at ELSE ? END, state = ? "
                 f"WHERE hospital_id = ? AND out_trade_no = ? AND state IN ({', '.join('?' for _ in range(len(sources) + 1))}) "
                 f"RETURNING {_PAYMENT_COLS}",
                 (state.value, channel_txn_id, state.value, result_code, state.value, int(self._clock()), state.value,
                  hospital_id, out_trade_no, *sources, state.value)),
                jobs.cancel_statement(JobKind.PAYMENT, hospital_id, out_trade_no),
                *after])
            if not results[0].rows:
                raise Unbatched()  # rolls the job's DELETE and `after` back
            return _payment(results[0].rows[0]), results[2:]

    def payment(self, out_trade_no: str, *, hospital_id: str) -> Payment:
        with self.db.reads() as tx:
            return self._payment_by(tx, "out_trade_no", out_trade_no, hospital_id=hospital_id)

    def find_payment(self, out_trade_no: str) -> Payment | None:
        """The collection with this out_trade_no at any hospital (out_trade_no is unique), or None."""
        with self.db.transaction(write=False) as tx:
            row = tx.one(f"SELECT {_PAYMENT_COLS} FROM payments WHERE out_trade_no = ?", (out_trade_no,))
        return None if row is None else _payment(row)

    def payment_for_order(self, order_no: str, *, hospital_id: str) -> Payment | None:
        """The collection holding `order_no` (under way or succeeded), if any."""
        with self.db.transaction(write=False) as tx:
            row = tx.one(f"SELECT {_PAYMENT_COLS} FROM payments WHERE hospital_id = ? AND order_no = ? AND state IN (?, ?, ?)",
                         (hospital_id, order_no, *(s.value for s in HOLDS_ORDER)))
        return None if row is None else _payment(row)

    def _payment_by(self, tx: Tx, column: str, value: object, *, hospital_id: str | None = None, lock: bool = False) -> Payment:
        sql = f"SELECT {_PAYMENT_COLS} FROM payments WHERE {column} = ?"
        params: list = [value]
        if hospital_id is not None:
            sql += " AND hospital_id = ?"
            params.append(hospital_id)
        row = tx.one(sql + (tx.for_update if lock else ""), params)
        if row is None:
            raise GatewayError(GatewayCode.UNKNOWN_PAYMENT, f"no payment {value}")
        return _payment(row)

    def payment_by_id(self, payment_id: int) -> Payment:
        with self.db.transaction(write=False) as tx:
            return self._payment_by(tx, "payment_id", payment_id)

    # --- refunds --------------------------------------------------------------------------------

    def _held_refunds(self, tx: Tx, payment_id: int) -> int:
        return int(tx.scalar("SELECT COALESCE(SUM(amount_fen), 0) FROM refunds WHERE payment_id = ? AND state IN (?, ?)",
                             (payment_id, *(s.value for s in HOLDS_MONEY))) or 0)

    def start_refund(self, *, hospital_id: str, order_no: str, out_refund_no: str, amount_fen: int, device_id: str,
                     instruction_msg_id: str | None = None) -> Refund:
        """Reserve a refund of a succeeded collection before the channel is called, or refuse it."""
        _check_amount(amount_fen)
        _check_no("out_refund_no", out_refund_no)
        now = int(self._clock())
        with self.db.transaction() as tx:
            row = tx.one(f"SELECT {_PAYMENT_COLS} FROM payments WHERE hospital_id = ? AND order_no = ? AND state IN (?, ?, ?)"
                         + tx.for_update, (hospital_id, order_no, *(s.value for s in HOLDS_ORDER)))
            if row is None:
                raise GatewayError(GatewayCode.UNKNOWN_PAYMENT, f"order {order_no} has no collection at this hospital")
            payment = _payment(row)
            if payment.state is not PaymentState.SUCCEEDED:
                raise GatewayError(GatewayCode.NOT_PAID, f"order {order_no} is {payment.state.value}, not paid: nothing to refund yet")
            if tx.one("SELECT 1 FROM refunds WHERE hospital_id = ? AND out_refund_no = ?", (hospital_id, out_refund_no)):
                raise GatewayError(GatewayCode.DUPLICATE_REFUND, f"out_refund_no {out_refund_no} has been used before")
            if instruction_msg_id is not None and tx.one("SELECT 1 FROM refunds WHERE hospital_id = ? AND instruction_msg_id = ?",
                                                         (hospital_id, instruction_msg_id)):
                raise GatewayError(GatewayCode.INSTRUCTION_USED, f"HIS instruction {instruction_msg_id} has already been executed")
            if payment.channel is PayChannel.WECHAT:
                self._check_wechat_limits(tx, payment, now)
            held = self._held_refunds(tx, payment.payment_id)
            if held + amount_fen > payment.amount_fen:
                raise GatewayError(
                    GatewayCode.REFUND_EXCEEDS_COLLECTED,
                    f"order {order_no} collected {format_yuan(payment.amount_fen)}, {format_yuan(held)} of it refunded or being refunded; "
                    f"at most {format_yuan(payment.amount_fen - held)} remains, not {format_yuan(amount_fen)}",
                )
            try:
                refund_id = tx.scalar(
                "INSERT INTO refunds (payment_id, hospital_id, out_refund_no, amount_fen, state, device_id, instruction_msg_id, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING refund_id",
                (payment.payment_id, hospital_id, out_refund_no, amount_fen, RefundState.REFUNDING.value, device_id,
                 instruction_msg_id, now, now),
                )
            except UniqueViolation:  # a concurrent refund took the number or the instruction first
                raise GatewayError(GatewayCode.DUPLICATE_REFUND, f"out_refund_no {out_refund_no} or its HIS instruction was just used") from None
            self._schedule(tx, JobKind.REFUND, hospital_id, out_refund_no, now)
            return self._refund_by(tx, "refund_id", refund_id)

    def _check_wechat_limits(self, tx: Tx, payment: Payment, now: int) -> None:
        collected_at = int(tx.scalar("SELECT created_at FROM payments WHERE payment_id = ?", (payment.payment_id,)) or 0)
        if now - collected_at > WECHAT_REFUND_WINDOW_S:
            day = datetime.datetime.fromtimestamp(collected_at, BUSINESS_TZ).date().isoformat()
            raise GatewayError(GatewayCode.REFUND_WINDOW_CLOSED,
                               f"order {payment.order_no} was collected with WeChat Pay on {day}, more than one year ago; "
                               "WeChat Pay refunds only within one year of the payment: settle it with the patient another way")
        # Every refund request of the order counts (WeChat counts them, whatever became of them).
        count = int(tx.scalar("SELECT COUNT(*) FROM refunds WHERE payment_id = ?", (payment.payment_id,)) or 0)
        if count >= WECHAT_MAX_REFUNDS:
            raise GatewayError(GatewayCode.TOO_MANY_REFUNDS,
                               f"order {payment.order_no} has had {count} refunds; WeChat Pay allows at most {WECHAT_MAX_REFUNDS} "
                               "partial refunds of one payment: settle the rest with the patient another way")

    def settle_refund(self, out_refund_no: str, *, hospital_id: str, state: RefundState, channel_refund_id: str | None = None) -> Refund:
        with self.db.transaction() as tx:
            refund = self._refund_by(tx, "out_refund_no", out_refund_no, hospital_id=hospital_id, lock=True)
            if refund.state is state:
                return refund
            if state not in REFUND_MOVES[refund.state]:
                raise GatewayError(GatewayCode.BAD_TRANSITION, f"refund {out_refund_no} is {refund.state.value}; it cannot become {state.value}")
            tx.execute("UPDATE refunds SET state = ?, channel_refund_id = COALESCE(?, channel_refund_id), updated_at = ? WHERE refund_id = ?",
                       (state.value, channel_refund_id, int(self._clock()), refund.refund_id))
            if state in REFUND_FINAL:
                jobs.cancel(tx, JobKind.REFUND, hospital_id, out_refund_no)
            return self._refund_by(tx, "refund_id", refund.refund_id)

    def refund(self, out_refund_no: str, *, hospital_id: str) -> Refund:
        with self.db.reads() as tx:
            return self._refund_by(tx, "out_refund_no", out_refund_no, hospital_id=hospital_id)

    def refundable_fen(self, order_no: str, *, hospital_id: str) -> int:
        """What may still be refunded of the order's succeeded collection (0 if none)."""
        with self.db.transaction(write=False) as tx:
            row = tx.one("SELECT payment_id, amount_fen FROM payments WHERE hospital_id = ? AND order_no = ? AND state = ?",
                         (hospital_id, order_no, PaymentState.SUCCEEDED.value))
            return 0 if row is None else int(row[1]) - self._held_refunds(tx, int(row[0]))

    def _refund_by(self, tx: Tx, column: str, value: object, *, hospital_id: str | None = None, lock: bool = False) -> Refund:
        sql = f"SELECT {_REFUND_COLS} FROM refunds WHERE {column} = ?"
        params: list = [value]
        if hospital_id is not None:
            sql += " AND hospital_id = ?"
            params.append(hospital_id)
        row = tx.one(sql + (tx.for_update if lock else ""), params)
        if row is None:
            raise GatewayError(GatewayCode.UNKNOWN_REFUND, f"no refund {value}")
        return _refund(row)
