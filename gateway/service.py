"""What the POS -> gateway API does, without HTTP: authenticate a device request, apply the money
rules, call the channel with the hospital's credentials, remember the first outcome.

    service = GatewayService(directory, ledger, channels)
    auth = service.authenticate(headers, "POST", "/v1/pay", body)        # or raises GatewayError
    status, reply = service.handle(auth, "/v1/pay", body)

Authentication order: headers -> known device -> signature -> clock -> disabled -> nonce (replay).
The signature comes before anything that answers differently for different devices' states, so only
the key holder learns whether its device is disabled.

Commits per payment: two, the first durable (a disk flush on SQLite synchronous=FULL and on
PostgreSQL). The usual payment (`_pay_at_once`) writes the request's nonce, the device's last
contact, the idempotency claim, the collection as `paying` and its job in that first transaction,
before the channel is called (lost, the channel could hold money the ledger does not know of, and
the order could be paid again); its statements go in one batch (`Tx.batch`: one round trip on
PostgreSQL, BEGIN included). The settled state, the job's DELETE and the stored reply share the
second, not durable: lost in a crash, the collection is `paying` again, and a retry, the POS's
query or its job (gateway.channel_work) settles it from the channel (the first durable commit after
it flushes it anyway). Anything not usual (a refusal, a retry, a number or order taken, a daily
limit) rolls that first transaction back and takes the general path: the nonce, contact and claim
in a transaction of their own (not durable: lost, a retry claims the key again and finds its
payment by out_trade_no), then the ledger's checked `start_payment`, as before. A usual payment
costs 14 statements on SQLite and 6 round trips on PostgreSQL (tests/gateway/test_payment_cost.py).

Idempotency: every mutating call carries `idempotency_key`. The first request's digest and, once it
is known, its reply are stored under (device, key); a retry with the same body gets the stored reply
(never a second charge, never `duplicate_order`), a different body under the same key gets
`idempotency_conflict`, a retry while the first is still running gets `in_progress`.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping

from protocol.amount import MAX_FEN, Amount, Direction, parse_fen
from protocol.crypto import KeyRing
from protocol.device_request import MAX_SKEW_S, RequestAuthError, parse_headers, verify_request
from protocol.envelope import Envelope, MsgType, check_signature, open_envelope, parse_envelope
from protocol.errors import ProtocolError
from protocol.ids import is_valid_id
from protocol.messages import PayChannel, ResultCode, decode_instruction
from protocol.strictjson import Fields, loads_object

from gateway.alarms import POS_REASONS, AlarmKind, Alarms
from gateway.channel_clients import ChannelFactory
from gateway.db import Tx, UniqueViolation
from gateway.device_sync import MAX_MARK, PAGE_DEFAULT, PAGE_MAX, DeviceSync
from gateway.errors import GatewayCode, GatewayError
from gateway.ledger import PAYMENT_FINAL, Ledger, OutTradeNoUsed, Payment, PaymentState, RefundState, Unbatched
from gateway.tenancy import Device, DeviceStatus, Directory, Hospital
from terminal.channels.base import MERCHANT_CONFIG, ChannelClient, PayOutcome, PayState, RefundOutcome, ReverseOutcome, ReverseState
from terminal.channels.base import RefundState as ChannelRefundState

MAX_BODY_BYTES = 64 * 1024
# Keep nonces at least twice the clock window: a replay inside the window is always caught.
NONCE_TTL_S = 2 * MAX_SKEW_S

# A request with no stored reply claimed less than this ago may still be talking to the channel (a
# channel call is bounded by its client's timeouts: connect 5 s + 3 x read 10 s); a retry is told
# `in_progress`. Older, its process is gone: the retry resolves it from the ledger and the channel.
IN_PROGRESS_WINDOW_S = 60
# A device's last contact is recorded at most this often (and whenever its firmware version changes).
CONTACT_RESOLUTION_S = 60
# Refusals after which nothing has been decided: the reply is not stored, a retry runs again.
UNDECIDED = (GatewayCode.INTERNAL_ERROR, GatewayCode.CHANNEL_UNAVAILABLE, GatewayCode.DATABASE_UNAVAILABLE)

MUTATING = ("/v1/pay", "/v1/reverse", "/v1/refund", "/v1/alarm")
# The POS's recovery (gateway.device_sync): the mark report is idempotent (the maximum is kept), the
# orders list only reads; neither needs an idempotency key.
SYNC_ROUTES = ("/v1/journal-mark", "/v1/orders")
ROUTES = MUTATING + ("/v1/query", "/v1/refund-query") + SYNC_ROUTES

# Whether a pay outcome settles the ledger, and how.
_PAY_SETTLES = {PayState.SUCCESS: PaymentState.SUCCEEDED, PayState.FAILED: PaymentState.FAILED, PayState.CLOSED: PaymentState.CLOSED}
_RESULT_CODES = frozenset(c.value for c in ResultCode)
_REFUND_SETTLES = {ChannelRefundState.SUCCESS: RefundState.SUCCEEDED, ChannelRefundState.FAILED: RefundState.FAILED}


def _pay_reply(o: PayOutcome, out_trade_no: str) -> dict:
    return {"out_trade_no": out_trade_no, "state": o.state.value, "channel_txn_id": o.channel_txn_id, "paid_fen": o.paid_fen,
            "result_code": o.result_code.value if o.result_code else None, "channel_code": o.channel_code, "message": o.message}


def _ledger_pay_reply(p: Payment) -> dict:
    """The pay reply of a settled collection, from the ledger alone (its first reply was lost)."""
    state = {PaymentState.SUCCEEDED: PayState.SUCCESS, PaymentState.FAILED: PayState.FAILED,
             PaymentState.CLOSED: PayState.CLOSED}.get(p.state, PayState.UNKNOWN)
    result_code = p.result_code if p.result_code in _RESULT_CODES else None
    return {"out_trade_no": p.out_trade_no, "state": state.value, "channel_txn_id": p.channel_txn_id,
            "paid_fen": p.amount_fen if state is PayState.SUCCESS else None, "result_code": result_code,
            "channel_code": None if result_code else p.result_code, "message": "recovered from the gateway's ledger"}


def _reverse_reply(o: ReverseOutcome, out_trade_no: str) -> dict:
    return {"out_trade_no": out_trade_no, "state": o.state.value, "channel_code": o.channel_code, "message": o.message}


def _refund_reply(o: RefundOutcome, out_refund_no: str) -> dict:
    return {"out_refund_no": out_refund_no, "state": o.state.value, "channel_refund_id": o.channel_refund_id,
            "refunded_fen": o.refunded_fen, "result_code": o.result_code.value if o.result_code else None,
            "channel_code": o.channel_code, "message": o.message}


def _bad(message: str) -> GatewayError:
    return GatewayError(GatewayCode.BAD_REQUEST, message)


class _AlreadyStarted(Exception):
    """pay(): this request's collection is already in the ledger (handled by `_started`)."""

    def __init__(self, payment: Payment) -> None:
        super().__init__(payment.out_trade_no)
        self.payment = payment


class _Body:
    """Strict field access over a request body (protocol.strictjson), errors as bad_request."""

    def __init__(self, body: bytes) -> None:
        try:
            self.f = Fields(loads_object(body, what="request body"), where="request")
        except ProtocolError as exc:
            raise _bad(exc.message) from None

    def id(self, name: str, *, max_len: int = 64) -> str:
        try:
            value = self.f.req_str(name, max_len=max_len)
        except ProtocolError as exc:
            raise _bad(exc.message) from None
        if not is_valid_id(value):
            raise _bad(f"request.{name} must match [A-Za-z0-9_-]{{1,{max_len}}}")
        return value

    def text(self, name: str, *, max_len: int, default: str | None = None) -> str:
        try:
            if default is not None and not self.f.has(name):
                return default
            return self.f.req_str(name, max_len=max_len)
        except ProtocolError as exc:
            raise _bad(exc.message) from None

    def fen(self, name: str) -> int:
        """An amount of the POS's request, checked once here (the POS -> gateway trust boundary)."""
        try:
            return parse_fen(self.f.raw(name), what=name)
        except ProtocolError as exc:
            raise _bad(exc.message) from None

    def raw(self, name: str) -> object:
        try:
            return self.f.raw(name)
        except ProtocolError as exc:
            raise _bad(exc.message) from None


@dataclass(frozen=True, slots=True)
class Authenticated:
    """A request whose headers, device, signature, clock and device status checked out. Its nonce (the
    replay check) and the device's last contact are written by `handle`, in the request's first
    write transaction."""

    device: Device
    nonce: bytes
    at: int
    firmware: str | None


@dataclass(frozen=True, slots=True)
class _PayPlan:
    """A pay request's fields, checked, and the hospital's channel client for it."""

    terminal_id: str
    channel: PayChannel
    order_no: str
    out_trade_no: str
    amount_fen: int
    auth_code: str
    subject: str
    client: ChannelClient


class GatewayService:
    def __init__(self, directory: Directory, ledger: Ledger, channels: ChannelFactory, *,
                 clock: Callable[[], float] = time.time, max_skew_s: int = MAX_SKEW_S) -> None:
        self.directory = directory
        self.ledger = ledger
        self.channels = channels
        self.db = directory.db
        self._clock = clock
        self._max_skew_s = max_skew_s
        self._last_prune = 0.0
        self._prune_lock = threading.Lock()
        self.alarms = Alarms(directory.db, clock=clock)
        self.device_sync = DeviceSync(directory.db, clock=clock)

    # --- authentication -------------------------------------------------------------------------

    def authenticate(self, headers: Mapping[str, str], method: str, path: str, body: bytes) -> Authenticated:
        now = self._clock()
        try:
            signed = parse_headers(headers)
        except RequestAuthError as exc:
            raise GatewayError(GatewayCode.BAD_REQUEST_AUTH, exc.message) from None
        try:
            device = self.directory.device_for_request(signed.device_id)  # with its hospital's credentials versions
        except GatewayError as exc:
            if exc.code is not GatewayCode.UNKNOWN_DEVICE:
                raise  # e.g. database_unavailable: never tell a device it is unknown because the database is away
            raise GatewayError(GatewayCode.UNKNOWN_DEVICE, f"device {signed.device_id} is not registered with this gateway") from None
        try:
            verify_request(signed, device.public_key, method=method, path=path, body=body, now=now, max_skew_s=self._max_skew_s)
        except RequestAuthError as exc:
            raise GatewayError(GatewayCode(exc.code), exc.message) from None
        if device.status is DeviceStatus.DISABLED:
            raise GatewayError(GatewayCode.DEVICE_DISABLED, f"device {device.device_id} has been disabled by the operator; call the service desk")
        self._prune_nonces(now)
        return Authenticated(device, signed.nonce, int(now), signed.firmware or None)

    @staticmethod
    def _record(tx: Tx, auth: Authenticated) -> None:
        """The replay check (a nonce is accepted once per device) and the device's last contact."""
        results = tx.batch(GatewayService._record_statements(auth))
        GatewayService._check_replay(results[0].rowcount)

    @staticmethod
    def _record_statements(auth: Authenticated) -> list[tuple[str, tuple]]:
        device = auth.device
        statements: list[tuple[str, tuple]] = [(
            "INSERT INTO request_nonces (device_id, nonce, seen_at) VALUES (?, ?, ?) ON CONFLICT (device_id, nonce) DO NOTHING",
            (device.device_id, auth.nonce, auth.at))]
        # Last contact to the minute (gateway-admin device show): not one more write on every request.
        if auth.firmware != device.firmware_version or device.last_seen_at is None or auth.at - device.last_seen_at >= CONTACT_RESOLUTION_S:
            statements.append(("UPDATE devices SET last_seen_at = ?, firmware_version = ? WHERE device_id = ?",
                               (auth.at, auth.firmware, device.device_id)))
        return statements

    @staticmethod
    def _check_replay(nonce_rowcount: int) -> None:
        if not nonce_rowcount:
            raise GatewayError(GatewayCode.REPLAY, "this request (its nonce) has been received before")

    def _prune_nonces(self, now: float) -> None:
        with self._prune_lock:
            if now - self._last_prune < 60:
                return
            self._last_prune = now
        with self.db.transaction() as tx:
            tx.execute("DELETE FROM request_nonces WHERE seen_at < ?", (int(now - NONCE_TTL_S),))

    # --- dispatch and idempotency ---------------------------------------------------------------

    def handle(self, auth: Authenticated, path: str, body: bytes) -> tuple[int, dict]:
        device = auth.device
        if path not in MUTATING:
            with self.db.transaction(durable=False) as tx:  # losing it in a crash re-admits a query: harmless
                self._record(tx, auth)
            if path not in ROUTES:
                raise GatewayError(GatewayCode.NOT_FOUND, f"no endpoint {path}; see docs/gateway.md")
        if not device.terminal_ids:
            raise GatewayError(GatewayCode.DEVICE_UNBOUND, f"device {device.device_id} is not bound to a terminal yet")
        request = _Body(body)
        if path not in MUTATING:
            return 200, self._dispatch(device, path, request)
        key = request.id("idempotency_key")
        digest = hashlib.sha256(path.encode() + b"\n" + body).digest()
        if path == "/v1/pay":
            answered = self._pay_at_once(auth, key, digest, request)
            if answered is not None:
                return answered
        # Not durable: lost in a crash, a retry claims the key again and finds its payment, if it was
        # started, by out_trade_no in the ledger (pay: `_AlreadyStarted`); nothing was acted on otherwise.
        with self.db.transaction(durable=False) as tx:
            self._record(tx, auth)
            # Claim the key; a concurrent retry's INSERT waits for ours (PostgreSQL) or for the write
            # lock (SQLite), does nothing, and reads the row we left.
            claimed = tx.execute("INSERT INTO idempotency (device_id, idem_key, request_digest, created_at) VALUES (?, ?, ?, ?) "
                                 "ON CONFLICT (device_id, idem_key) DO NOTHING", (device.device_id, key, digest, int(self._clock())))
            row = None if claimed else tx.one(
                "SELECT request_digest, status, response, created_at FROM idempotency WHERE device_id = ? AND idem_key = ?", (device.device_id, key))
        if row is not None:
            if bytes(row[0]) != digest:
                raise GatewayError(GatewayCode.IDEMPOTENCY_CONFLICT, f"idempotency_key {key} was used for a different request")
            if row[1] is not None:
                return int(row[1]), json.loads(row[2])
            # The first request has no stored reply: it is still running, or its process died (kill -9,
            # power, the database went away) after claiming the key. Either way it is resolved here:
            # reverse and refund are idempotent at the channel and in the ledger and simply run again;
            # a payment finds its out_trade_no in the ledger and is answered from there (`_started`).
            return self._run_and_store(device, path, key, request, claimed_at=int(row[3]))
        return self._run_and_store(device, path, key, request, claimed_at=int(self._clock()))

    def _pay_at_once(self, auth: Authenticated, key: str, digest: bytes, request: _Body) -> tuple[int, dict] | None:
        """A payment's usual case in one durable transaction: the nonce, the device's last contact,
        the idempotency claim, the collection written `paying` and its job (on PostgreSQL: BEGIN,
        one round trip for all of them, COMMIT). None when anything is not the usual case (a refused
        request, a retry, a number already used, a limit): nothing of it was committed, and the
        general path (`handle`) runs the request with every check, in its own transactions."""
        device = auth.device
        try:
            plan = self._pay_plan(device, request)
        except GatewayError as exc:
            if exc.code is GatewayCode.DATABASE_UNAVAILABLE:
                raise
            return None  # refused: the general path stores the refusal as this key's reply
        claimed_at = int(self._clock())
        try:
            with self.db.transaction() as tx:  # durable: the collection is in it (module docstring, "Commits")
                before = [*self._record_statements(auth),
                          ("INSERT INTO idempotency (device_id, idem_key, request_digest, created_at) VALUES (?, ?, ?, ?) "
                           "ON CONFLICT (device_id, idem_key) DO NOTHING", (device.device_id, key, digest, claimed_at))]
                results, _ = self.ledger.start_payment_in(
                    tx, before, hospital_id=device.hospital_id, terminal_id=plan.terminal_id, device_id=device.device_id,
                    order_no=plan.order_no, out_trade_no=plan.out_trade_no, channel=plan.channel, amount_fen=plan.amount_fen)
                self._check_replay(results[0].rowcount)
                if not results[-1].rowcount:
                    raise Unbatched()  # a retry of this key: the general path answers it
        except Unbatched:
            return None
        return self._run_and_store(device, "/v1/pay", key, request, claimed_at=claimed_at,
                                   run=lambda stored: self._charge(device, plan, stored))

    def _run_and_store(self, device: Device, path: str, key: str, request: _Body, *, claimed_at: int,
                       run: Callable[[tuple[str, dict[str, tuple[int, dict]]]], dict] | None = None) -> tuple[int, dict]:
        stored: dict[str, tuple[int, dict]] = {}  # pay() stores a settled reply in the ledger's own transaction
        try:
            if run is not None:
                status, reply = 200, run((key, stored))
            else:
                status, reply = 200, self._dispatch(device, path, request, stored=(key, stored))
        except _AlreadyStarted as started:
            return self._started(device, key, started.payment, claimed_at)
        except GatewayError as exc:
            if exc.code in UNDECIDED:
                if exc.code is not GatewayCode.DATABASE_UNAVAILABLE:
                    self._forget(device.device_id, key)  # nothing was decided: a retry may run again
                raise
            status, reply = exc.http_status, exc.to_json_obj()
        if "reply" in stored:
            return stored["reply"]
        return self._store(device.device_id, key, status, reply)

    def _store(self, device_id: str, key: str, status: int, reply: dict) -> tuple[int, dict]:
        with self.db.transaction() as tx:
            return self._store_in(tx, device_id, key, status, reply)

    @staticmethod
    def _store_statement(device_id: str, key: str, status: int, reply: dict) -> tuple[str, tuple]:
        return ("UPDATE idempotency SET status = ?, response = ? WHERE device_id = ? AND idem_key = ? AND status IS NULL",
                (status, json.dumps(reply, sort_keys=True), device_id, key))

    @staticmethod
    def _store_in(tx: Tx, device_id: str, key: str, status: int, reply: dict) -> tuple[int, dict]:
        """Store a request's reply; the first stored reply wins (a resumed request and the original
        may both finish), and is what every later retry gets."""
        if tx.execute(*GatewayService._store_statement(device_id, key, status, reply)):
            return status, reply
        return GatewayService._first_stored(tx, device_id, key, status, reply)

    @staticmethod
    def _first_stored(tx: Tx, device_id: str, key: str, status: int, reply: dict) -> tuple[int, dict]:
        """The reply stored before ours (ours was not stored: the first stored reply wins)."""
        row = tx.one("SELECT status, response FROM idempotency WHERE device_id = ? AND idem_key = ?", (device_id, key))
        if row is None or row[0] is None:  # forgotten meanwhile: nothing to keep
            return status, reply
        return int(row[0]), json.loads(row[1])

    def _started(self, device: Device, key: str, payment: Payment, claimed_at: int) -> tuple[int, dict]:
        """The reply to a copy of a payment request whose collection is already in the ledger.

        Settled: the reply is made from the ledger and stored. Under way: if the request that started
        it may still be talking to the channel (the key was claimed less than IN_PROGRESS_WINDOW_S
        ago), `in_progress` as before; otherwise that request died, so the channel is queried, the
        ledger settled, and a final outcome stored (a non-final one is answered `unknown` and not
        stored: the POS queries, then reverses)."""
        if payment.state in (PaymentState.PAYING, PaymentState.REVERSING):
            if self._clock() - claimed_at < IN_PROGRESS_WINDOW_S:
                raise GatewayError(GatewayCode.IN_PROGRESS, "the first request with this idempotency_key is still running; query it")
            outcome = self.channels.client(device.hospital_id, payment.channel, device.keys).query(payment.out_trade_no)
            self._settle_pay(device, payment.out_trade_no, outcome)
            if outcome.state not in _PAY_SETTLES:
                return 200, _pay_reply(PayOutcome(PayState.UNKNOWN, message=outcome.message or outcome.state.value), payment.out_trade_no)
            payment = self.ledger.payment(payment.out_trade_no, hospital_id=device.hospital_id)
        return self._store(device.device_id, key, 200, _ledger_pay_reply(payment))

    def _forget(self, device_id: str, key: str) -> None:
        with self.db.transaction() as tx:
            tx.execute("DELETE FROM idempotency WHERE device_id = ? AND idem_key = ? AND status IS NULL", (device_id, key))

    def _dispatch(self, device: Device, path: str, request: _Body,
                  stored: tuple[str, dict[str, tuple[int, dict]]] | None = None) -> dict:
        if path == "/v1/pay":
            return self.pay(device, request, stored=stored)
        if path == "/v1/query":
            return self.query(device, request)
        if path == "/v1/reverse":
            return self.reverse(device, request)
        if path == "/v1/refund":
            return self.refund(device, request)
        if path == "/v1/alarm":
            return self.alarm(device, request)
        if path == "/v1/journal-mark":
            return self.device_sync.journal_mark(device, self._int(request, "mine", 0, MAX_MARK))
        if path == "/v1/orders":
            after = self._int(request, "after", 0, 2**62) if request.f.has("after") else 0
            limit = self._int(request, "limit", 1, PAGE_MAX) if request.f.has("limit") else PAGE_DEFAULT
            return self.device_sync.orders(device, after=after, limit=limit)
        return self.refund_query(device, request)

    # --- the five calls -------------------------------------------------------------------------

    def pay(self, device: Device, request: _Body, *, stored: tuple[str, dict[str, tuple[int, dict]]] | None = None) -> dict:
        """`stored`: (idempotency key, box): a final outcome and its stored reply commit together, and
        the reply that was stored (the first one) is left in the box."""
        plan = self._pay_plan(device, request)
        try:
            self.ledger.start_payment(hospital_id=device.hospital_id, terminal_id=plan.terminal_id, device_id=device.device_id,
                                      order_no=plan.order_no, out_trade_no=plan.out_trade_no, channel=plan.channel,
                                      amount_fen=plan.amount_fen)
        except OutTradeNoUsed:
            # The same collection, from a copy of this request (a retry racing the first, or the first
            # died): never call the channel twice for it. Anything else reusing a number is refused.
            existing = self.ledger.payment(plan.out_trade_no, hospital_id=device.hospital_id)
            if (existing.device_id, existing.order_no, existing.amount_fen, existing.channel) != (
                    device.device_id, plan.order_no, plan.amount_fen, plan.channel):
                raise
            raise _AlreadyStarted(existing) from None
        return self._charge(device, plan, stored)

    def _pay_plan(self, device: Device, request: _Body) -> _PayPlan:
        terminal_id = request.id("terminal_id")
        if terminal_id not in device.terminal_ids:
            raise GatewayError(GatewayCode.WRONG_TERMINAL,
                               f"device {device.device_id} serves {', '.join(device.terminal_ids)}, not {terminal_id}")
        channel = self._channel(request)
        return _PayPlan(terminal_id, channel, request.id("order_no"), request.id("out_trade_no", max_len=32), request.fen("amount_fen"),
                        request.text("auth_code", max_len=128), request.text("subject", max_len=128, default="self-pay"),
                        self.channels.client(device.hospital_id, channel, device.keys))

    def _charge(self, device: Device, plan: _PayPlan, stored: tuple[str, dict[str, tuple[int, dict]]] | None) -> dict:
        """Call the channel for a collection recorded `paying`, settle it, store the reply (`pay`)."""
        outcome = plan.client.pay(out_trade_no=plan.out_trade_no, auth_code=plan.auth_code, total_fen=plan.amount_fen, subject=plan.subject)
        self._watch(device, plan.channel, outcome)
        reply = _pay_reply(outcome, plan.out_trade_no)
        state = _PAY_SETTLES.get(outcome.state)
        if stored is not None and state is not None:
            # The usual case in one batch (one round trip on PostgreSQL): the settlement, its job's
            # DELETE and the stored reply; not durable (module docstring, "Commits").
            key, box = stored
            try:
                _, (store,) = self.ledger.settle_payment_with(
                    plan.out_trade_no, hospital_id=device.hospital_id, state=state, channel_txn_id=outcome.channel_txn_id,
                    result_code=outcome.result_code.value if outcome.result_code else outcome.channel_code,
                    after=[self._store_statement(device.device_id, key, 200, reply)], durable=False)
            except Unbatched:
                pass  # settled meanwhile (a copy of this request, a job): the ordinary way below tells which
            else:
                if store.rowcount:
                    box["reply"] = (200, reply)
                else:
                    with self.db.reads() as tx:  # a first reply was stored before ours: it stands (committed, final)
                        box["reply"] = self._first_stored(tx, device.device_id, key, 200, reply)
                return reply
        then = None
        if stored is not None:
            key, box = stored
            then = lambda tx: box.__setitem__("reply", self._store_in(tx, device.device_id, key, 200, reply))  # noqa: E731
        self._settle_pay(device, plan.out_trade_no, outcome, then=then, durable=False)
        return reply

    def query(self, device: Device, request: _Body) -> dict:
        """The outcome of a collection: from the ledger once it is final (the gateway's job may have
        finished it while the POS was away; no channel call), from the channel while it is paying.
        While it is being reversed the answer is `unknown` (never the channel's `success` of a
        moment before the reversal lands): the POS asks again, or reverses too (idempotent)."""
        payment = self.ledger.payment(request.id("out_trade_no", max_len=32), hospital_id=device.hospital_id)
        if payment.state in PAYMENT_FINAL:
            return _ledger_pay_reply(payment)
        if payment.state is PaymentState.REVERSING:
            return _pay_reply(PayOutcome(PayState.UNKNOWN, message="the gateway is reversing this payment"), payment.out_trade_no)
        outcome = self.channels.client(device.hospital_id, payment.channel, device.keys).query(payment.out_trade_no)
        self._watch(device, payment.channel, outcome)
        try:
            self._settle_pay(device, payment.out_trade_no, outcome)
        except GatewayError as exc:
            if exc.code is not GatewayCode.BAD_TRANSITION:
                raise
            # Reversed (or settled) by the gateway's job since we read it: the ledger's word stands.
            payment = self.ledger.payment(payment.out_trade_no, hospital_id=device.hospital_id)
            if payment.state in PAYMENT_FINAL:
                return _ledger_pay_reply(payment)
            return _pay_reply(PayOutcome(PayState.UNKNOWN, message="the gateway is reversing this payment"), payment.out_trade_no)
        return _pay_reply(outcome, payment.out_trade_no)

    def reverse(self, device: Device, request: _Body) -> dict:
        payment = self.ledger.payment(request.id("out_trade_no", max_len=32), hospital_id=device.hospital_id)
        if payment.state in (PaymentState.FAILED, PaymentState.CLOSED):
            return {"out_trade_no": payment.out_trade_no, "state": ReverseState.DONE.value, "channel_code": None,
                    "message": f"nothing to reverse: the payment is {payment.state.value}"}
        self.ledger.settle_payment(payment.out_trade_no, hospital_id=device.hospital_id, state=PaymentState.REVERSING)
        outcome = self.channels.client(device.hospital_id, payment.channel, device.keys).reverse(payment.out_trade_no)
        self._watch(device, payment.channel, outcome)
        if outcome.state is ReverseState.DONE:
            self.ledger.settle_payment(payment.out_trade_no, hospital_id=device.hospital_id, state=PaymentState.CLOSED)
        return _reverse_reply(outcome, payment.out_trade_no)

    def refund(self, device: Device, request: _Body) -> dict:
        order_no = request.id("order_no")
        out_refund_no = request.id("out_refund_no", max_len=32)
        amount_fen = request.fen("amount_fen")
        reason = request.text("reason", max_len=80, default="patient refund")
        instruction_id = self._check_instruction(device, request.raw("instruction"), order_no, amount_fen)
        try:
            refund = self.ledger.start_refund(hospital_id=device.hospital_id, order_no=order_no, out_refund_no=out_refund_no,
                                              amount_fen=amount_fen, device_id=device.device_id, instruction_msg_id=instruction_id)
        except GatewayError as exc:
            if exc.code is not GatewayCode.DUPLICATE_REFUND:
                raise
            # The POS calls refund again for a refund the channel never saw (its refund query said
            # "not found"): the same refund, same instruction, same amount is sent to the channel
            # again; the channel is idempotent by out_refund_no, so it never refunds twice.
            refund = self.ledger.refund(out_refund_no, hospital_id=device.hospital_id)
            if refund.state is RefundState.FAILED or refund.amount_fen != amount_fen or refund.instruction_msg_id != instruction_id:
                raise
        payment = self.ledger.payment_for_order(order_no, hospital_id=device.hospital_id)
        assert payment is not None  # start_refund found it succeeded, and succeeded is final
        outcome = self.channels.client(device.hospital_id, payment.channel, device.keys).refund(
            out_trade_no=payment.out_trade_no, out_refund_no=refund.out_refund_no, total_fen=payment.amount_fen,
            refund_fen=amount_fen, reason=reason)
        self._watch(device, payment.channel, outcome)
        if outcome.state in _REFUND_SETTLES:
            self.ledger.settle_refund(out_refund_no, hospital_id=device.hospital_id, state=_REFUND_SETTLES[outcome.state],
                                      channel_refund_id=outcome.channel_refund_id)
        return _refund_reply(outcome, out_refund_no) | {"out_trade_no": payment.out_trade_no}

    def refund_query(self, device: Device, request: _Body) -> dict:
        refund = self.ledger.refund(request.id("out_refund_no", max_len=32), hospital_id=device.hospital_id)
        with self.db.transaction(write=False) as tx:
            row = tx.one("SELECT out_trade_no, channel FROM payments WHERE payment_id = ?", (refund.payment_id,))
        out_trade_no, channel = row[0], PayChannel(row[1])
        outcome = self.channels.client(device.hospital_id, channel, device.keys).refund_query(out_trade_no=out_trade_no,
                                                                                  out_refund_no=refund.out_refund_no)
        self._watch(device, channel, outcome)
        if refund.state is RefundState.REFUNDING and outcome.state in _REFUND_SETTLES:
            self.ledger.settle_refund(refund.out_refund_no, hospital_id=device.hospital_id,
                                      state=_REFUND_SETTLES[outcome.state], channel_refund_id=outcome.channel_refund_id)
        return _refund_reply(outcome, refund.out_refund_no)

    def alarm(self, device: Device, request: _Body) -> dict:
        """A POS handed an instruction to a person (terminal.alarms): store it for the operators."""
        reason = request.text("reason", max_len=32)
        if reason not in POS_REASONS:
            raise _bad(f"request.reason must be one of {', '.join(sorted(POS_REASONS))}")
        kind_text = request.text("kind", max_len=16)
        if kind_text not in (AlarmKind.COLLECT.value, AlarmKind.REFUND.value):
            raise _bad("request.kind must be collect or refund")
        reference = request.id("reference")
        channel = request.raw("channel") if request.f.has("channel") else None
        if channel is not None and (not isinstance(channel, str) or channel not in {c.value for c in PayChannel}):
            raise _bad(f"request.channel must be one of {', '.join(c.value for c in PayChannel)} or null")
        alarm = self.alarms.raise_alarm(hospital_id=device.hospital_id, kind=AlarmKind(kind_text), reason=reason, reference=reference,
                                        order_no=request.id("order_no"), channel=channel, amount_fen=request.fen("amount_fen"),
                                        device_id=device.device_id, message=request.text("message", max_len=512, default=""))
        return {"alarm_id": alarm.alarm_id, "count": alarm.count, "what_to_do": alarm.what_to_do}

    # --- helpers --------------------------------------------------------------------------------

    def _watch(self, device: Device, channel: PayChannel, outcome: PayOutcome | ReverseOutcome | RefundOutcome) -> None:
        """A hospital's channel settings failing is the operators' business at once: the channel
        rejected our request (merchant_config) or its reply cannot be verified (unverified)."""
        if outcome.channel_code == MERCHANT_CONFIG:
            reason = "merchant_config"
        elif outcome.state in (PayState.UNVERIFIED, ReverseState.UNVERIFIED, ChannelRefundState.UNVERIFIED):
            reason = "unverified_reply"
        else:
            return
        self.alarms.raise_alarm(hospital_id=device.hospital_id, kind=AlarmKind.MERCHANT, reason=reason, reference=channel.value,
                                channel=channel.value, device_id=device.device_id, message=outcome.message or reason)


    @staticmethod
    def _int(request: _Body, name: str, minimum: int, maximum: int) -> int:
        try:
            return request.f.int(name, minimum=minimum, maximum=maximum)
        except ProtocolError as exc:
            raise _bad(exc.message) from None

    def _channel(self, request: _Body) -> PayChannel:
        text = request.text("channel", max_len=16)
        try:
            return PayChannel(text)
        except ValueError:
            raise _bad(f"request.channel must be one of {', '.join(c.value for c in PayChannel)}") from None

    def _settle_pay(self, device: Device, out_trade_no: str, outcome: PayOutcome,
                    then: Callable[[Tx], object] | None = None, durable: bool = True) -> None:
        state = _PAY_SETTLES.get(outcome.state)
        if state is None:
            return  # USER_PAYING / UNKNOWN / NOT_FOUND: still under way; the POS queries, then reverses
        result_code = outcome.result_code.value if outcome.result_code else outcome.channel_code
        self.ledger.settle_payment(out_trade_no, hospital_id=device.hospital_id, state=state,
                                   channel_txn_id=outcome.channel_txn_id, result_code=result_code, then=then, durable=durable)

    def _check_instruction(self, device: Device, sealed: object, order_no: str, amount_fen: int) -> str:
        """Open the HIS instruction a refund executes; its order, amount and terminal must match."""
        if not isinstance(sealed, dict):
            raise GatewayError(GatewayCode.BAD_INSTRUCTION, "a refund must carry the sealed HIS instruction it executes (request.instruction)")
        hospital = self.directory.hospital(device.hospital_id)
        keys: KeyRing = self.directory.his_keyring(device.hospital_id)
        try:
            envelope = parse_envelope(sealed, expect=MsgType.INSTRUCTION)
            plaintext = open_envelope(envelope, keys)
            instruction = decode_instruction(plaintext, header_terminal_id=envelope.terminal_id, limit_fen=MAX_FEN)
        except ProtocolError as exc:
            raise GatewayError(GatewayCode.BAD_INSTRUCTION, f"the HIS instruction does not open: {exc.code.value}: {exc.message}") from None
        if instruction.amount.direction is not Direction.REFUND:
            raise GatewayError(GatewayCode.INSTRUCTION_MISMATCH, "the HIS instruction is a collection, not a refund")
        if instruction.order_no != order_no or instruction.amount != Amount.refund(amount_fen):
            raise GatewayError(GatewayCode.INSTRUCTION_MISMATCH,
                               "the refund's order or amount differ from the HIS instruction it claims to execute")
        if instruction.terminal_id not in device.terminal_ids:
            raise GatewayError(GatewayCode.INSTRUCTION_MISMATCH,
                               f"the HIS instruction is for terminal {instruction.terminal_id}, this device serves {', '.join(device.terminal_ids)}")
        self._check_his_sig(hospital, envelope)
        return f"{envelope.kid}:{envelope.msg_id}"

    @staticmethod
    def _check_his_sig(hospital: Hospital, envelope: Envelope) -> None:
        """HIS interface 1.1 B at the gateway: HIS's own Ed25519 signature over the sealed instruction.

        HIS's envelope keys are shared with every POS of the hospital (and this gateway), so a stolen
        POS can seal a refund instruction that opens here; only `his_sig`, made with a key
        HIS alone holds, proves HIS asked for the refund. Required when the hospital turned
        `require_his_signature` on; otherwise checked whenever present (one that does not verify is
        always refused), as the bridge and the POS do (protocol.signatures)."""
        keys = (hospital.his_public_key,) if hospital.his_public_key else ()
        if envelope.sig is None:
            if hospital.require_his_signature:
                raise GatewayError(GatewayCode.HIS_SIGNATURE_REQUIRED,
                                   f"hospital {hospital.hospital_id} requires HIS-signed refunds: the instruction has no his_sig")
            return
        if not keys:
            return  # no HIS key registered: an unverifiable his_sig proves nothing either way (the envelope opened)
        try:
            check_signature(envelope, keys, signer=f"HIS of {hospital.hospital_id}")
        except ProtocolError:
            raise GatewayError(GatewayCode.BAD_HIS_SIGNATURE,
                               "the instruction's his_sig does not verify with HIS's registered public key; "
                               "a refund HIS did not sign is refused") from None
