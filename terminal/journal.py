"""The terminal's journal: SQLite in WAL mode with synchronous=FULL, the only memory that survives.

Tables
    instructions  one row per accepted instruction: what HIS asked, its lifecycle `state`
                  (terminal.machine.State) and, once finished, its pay_status and error_code
    attempts      one row per payment attempt (out_trade_no), written BEFORE the pay call
    collections   one row per order collected: the "one order, one payment" gate (order_no is the
                  primary key, so a second collection of an order cannot even be written)
    refunds       one row per refund (out_refund_no): the amount is reserved BEFORE the channel is
                  called, and a trigger refuses any reservation beyond what was collected
    sealed_instructions  the envelope of every refund instruction as HIS sealed it: the gateway
                  opens it to check that the refund is one HIS asked for (with its row_sum)
    results       the sealed result envelope of every finished instruction, and when the bridge
                  acknowledged it (delivered_at)
    seen          msg_ids accepted, per kid (a protocol.freshness.SeenStore)
    meta          schema version and small persisted state (the PIN lockout)

Integrity (issue 14, finding 2): the money rows (instructions, attempts, collections, refunds,
results, sealed_instructions) carry `row_sum`, a protocol.integrity checksum of their fixed columns, and every commit
bumps `meta.commit_no`, also written after the commit to the mark file `<journal>.hwm`
(local_storage.journal_mark). On open the journal is checked against the mark (truncated, WAL lost or
damaged, an old copy put back) and its money rows against their checksums (a rotted order number
in `collections` would let an order be collected twice). A failed check locks the journal:
`transaction()` raises JournalIntegrityError (the service refuses instructions with
journal_integrity and moves no money) until `python -m terminal.journal_admin restore`.
Storage errors (disk full, locked) raise StorageUnavailable; `storage` names the last one until a
commit succeeds.

Every change happens in `with journal.transaction(label) as tx:`; the commit is durable when the
block ends, and only then does the service act on it. `on_commit` is called before and after each
commit with a `CommitPoint` (power-cut injection for the crash tests and the simulator's faults): if
it raises, the transaction is rolled back ("before") or stays committed ("after"), and after a
`PowerLostAtCommit` the journal refuses every further call, like a device that lost power.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from protocol.amount import Amount, Direction, format_yuan, parse_yuan
from protocol.errors import CodedError, ErrorCode
from protocol.freshness import SeenRecord
from protocol.integrity import IntegrityReport, rollback_problem, row_checksum
from protocol.messages import BillItem, Display, PayChannel, PayStatus, mask_patient_name
from local_storage.journal_mark import MarkFile, mark_path
from terminal.machine import Kind, State
from local_storage.private_files import prepare_private_file

SCHEMA_VERSION = 3
# Wait this long for a lock held by another connection (another process on the same files).
BUSY_TIMEOUT_MS = 5000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS seen (
  kid TEXT NOT NULL, msg_id TEXT NOT NULL, digest BLOB NOT NULL, first_seen REAL NOT NULL,
  PRIMARY KEY (kid, msg_id));
CREATE TABLE IF NOT EXISTS instructions (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  kid TEXT NOT NULL, msg_id TEXT NOT NULL, envelope_ts INTEGER NOT NULL, terminal_id TEXT NOT NULL,
  order_no TEXT NOT NULL, kind TEXT NOT NULL CHECK (kind IN ('collect', 'refund')),
  amount_fen INTEGER NOT NULL CHECK (amount_fen > 0), display TEXT, salt TEXT NOT NULL,
  received_at REAL NOT NULL, state TEXT NOT NULL, updated_at REAL NOT NULL,
  channel TEXT, close_reason TEXT, last_error_code TEXT, last_error_message TEXT,
  pay_status TEXT, error_code TEXT, finished_at REAL,
  UNIQUE (kid, msg_id));
CREATE INDEX IF NOT EXISTS instructions_order ON instructions (order_no);
CREATE INDEX IF NOT EXISTS instructions_open ON instructions (seq) WHERE state != 'finished';
CREATE INDEX IF NOT EXISTS instructions_finished ON instructions (finished_at);
CREATE TABLE IF NOT EXISTS sealed_instructions (
  seq INTEGER PRIMARY KEY REFERENCES instructions (seq), envelope BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS attempts (
  out_trade_no TEXT PRIMARY KEY, seq INTEGER NOT NULL REFERENCES instructions (seq),
  attempt_no INTEGER NOT NULL, channel TEXT NOT NULL, code_masked TEXT NOT NULL,
  started_at REAL NOT NULL, deadline REAL NOT NULL,
  outcome TEXT, channel_txn_id TEXT, paid_fen INTEGER, result_code TEXT, channel_code TEXT, message TEXT,
  UNIQUE (seq, attempt_no));
CREATE TABLE IF NOT EXISTS collections (
  order_no TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE REFERENCES instructions (seq),
  out_trade_no TEXT NOT NULL REFERENCES attempts (out_trade_no), channel TEXT NOT NULL,
  channel_txn_id TEXT NOT NULL, paid_fen INTEGER NOT NULL CHECK (paid_fen > 0), collected_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS refunds (
  out_refund_no TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE REFERENCES instructions (seq),
  order_no TEXT NOT NULL REFERENCES collections (order_no),
  refund_fen INTEGER NOT NULL CHECK (refund_fen > 0),
  status TEXT NOT NULL CHECK (status IN ('reserved', 'refunded', 'failed')),
  channel_refund_id TEXT, reserved_at REAL NOT NULL, settled_at REAL);
CREATE INDEX IF NOT EXISTS refunds_order ON refunds (order_no);
CREATE TRIGGER IF NOT EXISTS refunds_within_collected BEFORE INSERT ON refunds
WHEN (SELECT COALESCE(SUM(refund_fen), 0) FROM refunds WHERE order_no = NEW.order_no AND status != 'failed')
     + NEW.refund_fen > (SELECT paid_fen FROM collections WHERE order_no = NEW.order_no)
BEGIN SELECT RAISE(ABORT, 'refund exceeds what remains of the collection'); END;
CREATE TABLE IF NOT EXISTS results (
  result_msg_id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE REFERENCES instructions (seq),
  envelope BLOB NOT NULL, pay_status TEXT NOT NULL, pay_order_no TEXT NOT NULL,
  amount_fen INTEGER NOT NULL CHECK (amount_fen > 0), created_at REAL NOT NULL, delivered_at REAL);
CREATE INDEX IF NOT EXISTS results_undelivered ON results (delivered_at) WHERE delivered_at IS NULL;
"""

# The fixed columns each money table's row_sum covers (what never changes after the insert).
SUMMED: dict[str, tuple[str, ...]] = {
    "instructions": ("seq", "kid", "msg_id", "envelope_ts", "terminal_id", "order_no", "kind", "amount_fen", "salt"),
    "attempts": ("out_trade_no", "seq", "attempt_no", "channel"),
    "collections": ("order_no", "seq", "out_trade_no", "channel", "channel_txn_id", "paid_fen"),
    "refunds": ("out_refund_no", "seq", "order_no", "refund_fen"),
    "results": ("result_msg_id", "seq", "envelope", "pay_status", "pay_order_no", "amount_fen"),
    # The refund instruction as HIS sealed it: the gateway checks the refund against it (schema 3).
    "sealed_instructions": ("seq", "envelope"),
}
KEYS = {"instructions": "seq", "attempts": "out_trade_no", "collections": "order_no", "refunds": "out_refund_no",
        "results": "result_msg_id", "sealed_instructions": "seq"}


def _sum(table: str, values: tuple[object, ...]) -> bytes:
    return row_checksum(table, *(bytes(v) if isinstance(v, memoryview) else v for v in values))


class JournalUnavailable(CodedError):
    """The journal cannot be used for new work now; `.code` is what the bridge and HIS are told."""

    code = ErrorCode.STORAGE_UNAVAILABLE


class StorageUnavailable(JournalUnavailable):
    """A write failed (disk full, locked by another program, I/O error); nothing of it was committed."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


class JournalIntegrityError(JournalUnavailable):
    """The journal failed its integrity check: locked until it is recovered."""

    code = ErrorCode.JOURNAL_INTEGRITY


def storage_cause(exc: sqlite3.Error) -> str:
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    if name.startswith("SQLITE_FULL") or "disk is full" in text:
        return "disk_full"
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return "locked"
    if name.startswith("SQLITE_READONLY") or "readonly" in text:
        return "read_only"
    return "io_error"


def check_rows(db: sqlite3.Connection, *, recent: int | None) -> list[str]:
    """Problems with the money rows' checksums. recent=None: every row; else every collection and
    refund (the money gates), unfinished instructions, undelivered results, and the `recent` newest."""
    problems = []
    for table, columns in SUMMED.items():
        key = KEYS[table]
        where = ""
        if recent is not None and table == "instructions":
            where = f" WHERE state != 'finished' OR seq > (SELECT COALESCE(MAX(seq), 0) - {int(recent)} FROM instructions)"
        elif recent is not None and table in ("results", "attempts", "sealed_instructions"):
            where = f" WHERE seq > (SELECT COALESCE(MAX(seq), 0) - {int(recent)} FROM instructions)"
            if table == "results":
                where += " OR delivered_at IS NULL"
        for row in db.execute(f"SELECT {', '.join(columns)}, row_sum FROM {table}{where}"):
            values, stored = tuple(row)[:-1], row[-1]
            if stored is None or bytes(stored) != _sum(table, values):
                problems.append(f"{table} row {key}={row[0]!r} does not match its checksum (damaged)")
    return problems


class PowerLostAtCommit(BaseException):
    """Injected loss of power. A BaseException so no `except Exception` can swallow it."""


class StaleState(Exception):
    """advance() found the instruction in another state than expected (another thread moved it)."""


@dataclass(frozen=True, slots=True)
class CommitPoint:
    number: int  # commits attempted by this Journal object, from 1
    label: str  # what the transaction records, e.g. "collect:awaiting_scan->paying"
    phase: str  # "before" (not yet durable) or "after" (durable)


@dataclass(frozen=True, slots=True)
class InstructionRow:
    seq: int
    kid: str
    msg_id: str
    envelope_ts: int
    terminal_id: str
    order_no: str
    kind: Kind
    amount_fen: int
    display: Display | None
    salt: str  # random, drawn on arrival: makes out_trade_no / out_refund_no unique even if HIS reuses a msg_id
    received_at: float
    state: State
    updated_at: float
    channel: PayChannel | None
    close_reason: str | None
    last_error_code: str | None
    last_error_message: str | None
    pay_status: PayStatus | None
    error_code: str | None
    finished_at: float | None

    @property
    def direction(self) -> Direction:
        return self.kind.direction

    @property
    def amount(self) -> Amount:
        """The instruction's amount as HIS sent it (journaled as kind + fen)."""
        return Amount(self.kind.direction, self.amount_fen)


@dataclass(frozen=True, slots=True)
class AttemptRow:
    out_trade_no: str
    seq: int
    attempt_no: int
    channel: PayChannel
    code_masked: str
    started_at: float
    deadline: float
    outcome: str | None
    channel_txn_id: str | None
    paid_fen: int | None
    result_code: str | None
    channel_code: str | None
    message: str | None


@dataclass(frozen=True, slots=True)
class CollectionRow:
    order_no: str
    seq: int
    out_trade_no: str
    channel: PayChannel
    channel_txn_id: str
    paid_fen: int
    collected_at: float


@dataclass(frozen=True, slots=True)
class RefundRow:
    out_refund_no: str
    seq: int
    order_no: str
    refund_fen: int
    status: str
    channel_refund_id: str | None
    reserved_at: float
    settled_at: float | None


@dataclass(frozen=True, slots=True)
class ResultRow:
    result_msg_id: str
    seq: int
    envelope: bytes
    pay_status: PayStatus
    pay_order_no: str
    amount_fen: int  # what the result reports (a duplicate reports the original collection)
    created_at: float
    delivered_at: float | None


def encode_display(display: Display | None) -> str | None:
    """What the journal keeps of the display block: the patient name masked, the items."""
    if display is None:
        return None
    return json.dumps({
        "patient": None if display.patient is None else mask_patient_name(display.patient),
        "items": [{"name": i.name, "qty": i.qty, "amount": format_yuan(i.amount_fen)} for i in display.items],
    }, ensure_ascii=False)


def _decode_display(text: str | None) -> Display | None:
    if text is None:
        return None
    obj = json.loads(text)
    return Display(obj["patient"], tuple(BillItem(i["name"], i["qty"], parse_yuan(i["amount"])) for i in obj["items"]))


def _instruction(r: sqlite3.Row) -> InstructionRow:
    return InstructionRow(
        r["seq"], r["kid"], r["msg_id"], r["envelope_ts"], r["terminal_id"], r["order_no"], Kind(r["kind"]),
        r["amount_fen"], _decode_display(r["display"]), r["salt"], r["received_at"], State(r["state"]), r["updated_at"],
        None if r["channel"] is None else PayChannel(r["channel"]), r["close_reason"], r["last_error_code"],
        r["last_error_message"], None if r["pay_status"] is None else PayStatus(r["pay_status"]), r["error_code"],
        r["finished_at"],
    )


def _attempt(r: sqlite3.Row) -> AttemptRow:
    return AttemptRow(r["out_trade_no"], r["seq"], r["attempt_no"], PayChannel(r["channel"]), r["code_masked"],
                      r["started_at"], r["deadline"], r["outcome"], r["channel_txn_id"], r["paid_fen"],
                      r["result_code"], r["channel_code"], r["message"])


def _result(r: sqlite3.Row) -> ResultRow:
    return ResultRow(r["result_msg_id"], r["seq"], bytes(r["envelope"]), PayStatus(r["pay_status"]), r["pay_order_no"],
                     r["amount_fen"], r["created_at"], r["delivered_at"])


class Journal:
    """One SQLite file. Thread-safe: one connection, used under a lock."""

    def __init__(self, path: str | Path, *, on_commit: Callable[[CommitPoint], None] | None = None,
                 verify_recent: int | None = 1000) -> None:
        self.path = Path(path)
        self._on_commit = on_commit
        self._lock = threading.RLock()
        self._commits = 0
        self._dead = False
        prepare_private_file(self.path)  # 0600 before SQLite opens it (its -wal/-shm copy the mode)
        self.storage: str | None = None  # the cause of the last failed write, until a commit succeeds
        self._mark = MarkFile(mark_path(self.path))
        recorded = self._mark.read()
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
        self._db.row_factory = sqlite3.Row
        mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise RuntimeError(f"{self.path}: SQLite refused WAL mode (got {mode}); is it on a network drive?")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            for statement in _statements(_SCHEMA):
                self._db.execute(statement)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
                for table in SUMMED:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN row_sum BLOB")
            elif int(row[0]) == 1:
                _upgrade_from_1(self._db)
            elif int(row[0]) == 2:
                _add_sums(self._db, ("sealed_instructions",))
            elif int(row[0]) != SCHEMA_VERSION:
                self._db.execute("ROLLBACK")
                raise RuntimeError(f"{self.path}: journal schema {row[0]}, this software reads {SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        self._commit_no = self._read_commit_no()
        problems = []
        rollback = rollback_problem(self._commit_no, recorded.mark if recorded else 0)
        if rollback:
            problems.append(rollback)
        problems += check_rows(self._db, recent=verify_recent)
        self.integrity = IntegrityReport(not problems, problems[0] if problems else "", tuple(problems))
        if self.integrity.ok and (recorded is None or recorded.mark != self._commit_no):
            self._mark.write(self._commit_no)

    def _read_commit_no(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key='commit_no'").fetchone()
        return int(row[0]) if row else 0

    @property
    def locked(self) -> bool:
        return not self.integrity.ok

    @property
    def high_water_mark(self) -> int:
        """The last durable commit: what the bridge keeps for us and gives back at the next link-up."""
        return self._commit_no

    def raise_mark(self, at_least: int) -> None:
        """Inside a transaction: make its commit number at least `at_least` (the re-sync from the
        gateway, which holds that mark for this journal: terminal.resync)."""
        with self._lock:
            self._commit_no = max(self._commit_no, at_least - 1)

    def rolled_back(self, problem: str) -> None:
        """The bridge holds a higher mark for this journal than it has: the whole storage was rolled
        back (an old copy put back). Locked like a failed check on open, until it is recovered."""
        self.integrity = IntegrityReport(False, problem, (problem,) + tuple(p for p in self.integrity.problems if p != problem))

    # -- plumbing ---------------------------------------------------------------------------------
    def _alive(self) -> None:
        if self._dead:
            raise PowerLostAtCommit("the journal lost power")

    @contextmanager
    def transaction(self, label: str) -> Iterator["Tx"]:
        with self._lock:
            self._alive()
            if self.locked:
                raise JournalIntegrityError(f"the journal {self.path} failed its integrity check: {self.integrity.reason}")
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise self._storage_error(exc) from None
            try:
                yield Tx(self._db)
                self._db.execute("INSERT INTO meta (key, value) VALUES ('commit_no', ?) ON CONFLICT (key) DO UPDATE SET "
                                 "value=excluded.value", (str(self._commit_no + 1),))
                self._commits += 1
                self._hook(CommitPoint(self._commits, label, "before"))
            except BaseException as exc:
                try:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # SQLite already rolled back (disk full, I/O error)
                if isinstance(exc, sqlite3.OperationalError):
                    raise self._storage_error(exc) from None
                raise
            try:
                self._db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise self._storage_error(exc) from None
            self._commit_no += 1
            self.storage = None
            try:
                self._mark.write(self._commit_no)
            except OSError as exc:  # the commit stands; the mark may lag behind it, which the rule allows
                self.storage = "disk_full" if exc.errno == 28 else "io_error"
            self._hook(CommitPoint(self._commits, label, "after"))

    def _storage_error(self, exc: sqlite3.Error) -> StorageUnavailable:
        cause = storage_cause(exc)
        self.storage = cause
        return StorageUnavailable(f"cannot write the journal {self.path}: {exc}", cause)

    def _hook(self, point: CommitPoint) -> None:
        if self._on_commit is None:
            return
        try:
            self._on_commit(point)
        except PowerLostAtCommit:
            self._dead = True
            raise

    @property
    def dead(self) -> bool:
        """True after a PowerLostAtCommit (or close): every further call raises PowerLostAtCommit."""
        return self._dead

    @property
    def commits(self) -> int:
        return self._commits

    def close(self) -> None:
        with self._lock:
            self._dead = True
            self._mark.close()
            self._db.close()

    def _all(self, sql: str, args: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            self._alive()
            return self._db.execute(sql, args).fetchall()

    def _one(self, sql: str, args: tuple[object, ...] = ()) -> sqlite3.Row | None:
        rows = self._all(sql, args)
        return rows[0] if rows else None

    # -- reads ------------------------------------------------------------------------------------
    def seen(self, kid: str, msg_id: str) -> SeenRecord | None:
        r = self._one("SELECT digest, first_seen FROM seen WHERE kid=? AND msg_id=?", (kid, msg_id))
        return None if r is None else SeenRecord(bytes(r["digest"]), r["first_seen"])

    def sealed_instruction(self, seq: int) -> bytes | None:
        """The instruction's envelope as HIS sealed it (refunds only), for the gateway."""
        r = self._one("SELECT envelope, row_sum FROM sealed_instructions WHERE seq=?", (seq,))
        if r is None:
            return None
        envelope = bytes(r["envelope"])
        if r["row_sum"] is None or bytes(r["row_sum"]) != _sum("sealed_instructions", (seq, envelope)):
            problem = f"sealed_instructions row seq={seq} does not match its checksum (damaged)"
            self.integrity = IntegrityReport(False, problem, (problem,))  # locked: no refund on a damaged instruction
            raise JournalIntegrityError(f"the journal {self.path} failed its integrity check: {problem}")
        return envelope

    def instruction(self, seq: int) -> InstructionRow:
        r = self._one("SELECT * FROM instructions WHERE seq=?", (seq,))
        if r is None:
            raise KeyError(f"no instruction {seq}")
        return _instruction(r)

    def find(self, kid: str, msg_id: str) -> InstructionRow | None:
        r = self._one("SELECT * FROM instructions WHERE kid=? AND msg_id=?", (kid, msg_id))
        return None if r is None else _instruction(r)

    def find_msg_id(self, msg_id: str) -> InstructionRow | None:
        """The latest instruction with this msg_id under any kid (for people looking things up)."""
        r = self._one("SELECT * FROM instructions WHERE msg_id=? ORDER BY seq DESC LIMIT 1", (msg_id,))
        return None if r is None else _instruction(r)

    def unfinished(self) -> list[InstructionRow]:
        return [_instruction(r) for r in self._all("SELECT * FROM instructions WHERE state != 'finished' ORDER BY seq")]

    def last_finished(self) -> InstructionRow | None:
        r = self._one("SELECT * FROM instructions WHERE finished_at IS NOT NULL ORDER BY finished_at DESC, seq DESC LIMIT 1")
        return None if r is None else _instruction(r)

    def unfinished_for_order(self, order_no: str) -> list[InstructionRow]:
        rows = self._all("SELECT * FROM instructions WHERE state != 'finished' AND order_no=? ORDER BY seq", (order_no,))
        return [_instruction(r) for r in rows]

    def finished_between(self, start: float, end: float) -> list[InstructionRow]:
        rows = self._all("SELECT * FROM instructions WHERE finished_at >= ? AND finished_at < ? ORDER BY finished_at, seq", (start, end))
        return [_instruction(r) for r in rows]

    def attempts(self, seq: int) -> list[AttemptRow]:
        return [_attempt(r) for r in self._all("SELECT * FROM attempts WHERE seq=? ORDER BY attempt_no", (seq,))]

    def current_attempt(self, seq: int) -> AttemptRow | None:
        r = self._one("SELECT * FROM attempts WHERE seq=? ORDER BY attempt_no DESC LIMIT 1", (seq,))
        return None if r is None else _attempt(r)

    def collection(self, order_no: str) -> CollectionRow | None:
        r = self._one("SELECT * FROM collections WHERE order_no=?", (order_no,))
        if r is None:
            return None
        return CollectionRow(r["order_no"], r["seq"], r["out_trade_no"], PayChannel(r["channel"]), r["channel_txn_id"],
                             r["paid_fen"], r["collected_at"])

    def committed_refunds_fen(self, order_no: str) -> int:
        """Refunded plus reserved (in flight) for an order: what is no longer refundable."""
        r = self._one("SELECT COALESCE(SUM(refund_fen), 0) AS s FROM refunds WHERE order_no=? AND status != 'failed'", (order_no,))
        return int(r["s"]) if r else 0

    def refunded_fen(self, order_no: str) -> int:
        """What the channel has refunded of an order (settled refunds only)."""
        r = self._one("SELECT COALESCE(SUM(refund_fen), 0) AS s FROM refunds WHERE order_no=? AND status = 'refunded'", (order_no,))
        return int(r["s"]) if r else 0

    def refund_known(self, out_refund_no: str) -> bool:
        return self._one("SELECT 1 FROM refunds WHERE out_refund_no=?", (out_refund_no,)) is not None

    def refund_for(self, seq: int) -> RefundRow | None:
        r = self._one("SELECT * FROM refunds WHERE seq=?", (seq,))
        if r is None:
            return None
        return RefundRow(r["out_refund_no"], r["seq"], r["order_no"], r["refund_fen"], r["status"], r["channel_refund_id"],
                         r["reserved_at"], r["settled_at"])

    def result_for(self, seq: int) -> ResultRow | None:
        r = self._one("SELECT * FROM results WHERE seq=?", (seq,))
        return None if r is None else _result(r)

    def undelivered(self) -> list[ResultRow]:
        return [_result(r) for r in self._all("SELECT * FROM results WHERE delivered_at IS NULL ORDER BY seq")]

    def meta(self, key: str) -> str | None:
        r = self._one("SELECT value FROM meta WHERE key=?", (key,))
        return None if r is None else str(r["value"])


class Tx:
    """The writes of one transaction (only valid inside `Journal.transaction`)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def remember(self, kid: str, msg_id: str, digest: bytes, now: float) -> None:
        self._db.execute("INSERT INTO seen (kid, msg_id, digest, first_seen) VALUES (?, ?, ?, ?)", (kid, msg_id, digest, now))

    def forget_seen_before(self, cutoff: float) -> int:
        return self._db.execute("DELETE FROM seen WHERE first_seen < ?", (cutoff,)).rowcount

    def add_instruction(self, *, kid: str, msg_id: str, envelope_ts: int, terminal_id: str, order_no: str, kind: Kind,
                        amount_fen: int, display: Display | None, now: float, salt: str = "", envelope: bytes | None = None) -> int:
        cur = self._db.execute(
            "INSERT INTO instructions (kid, msg_id, envelope_ts, terminal_id, order_no, kind, amount_fen, display, salt,"
            " received_at, state, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (kid, msg_id, envelope_ts, terminal_id, order_no, kind.value, amount_fen, encode_display(display), salt, now,
             State.QUEUED.value, now),
        )
        assert cur.lastrowid is not None
        self._db.execute("UPDATE instructions SET row_sum=? WHERE seq=?", (
            _sum("instructions", (cur.lastrowid, kid, msg_id, envelope_ts, terminal_id, order_no, kind.value, amount_fen, salt)),
            cur.lastrowid))
        if envelope is not None:
            self._db.execute("INSERT INTO sealed_instructions (seq, envelope, row_sum) VALUES (?, ?, ?)",
                             (cur.lastrowid, envelope, _sum("sealed_instructions", (cur.lastrowid, envelope))))
        return cur.lastrowid

    _FIELDS = frozenset({"channel", "close_reason", "last_error_code", "last_error_message", "pay_status", "error_code", "finished_at"})

    def advance(self, seq: int, expect: State, to: State, now: float, **fields: object) -> None:
        """Move `seq` from `expect` to `to` (compare-and-set), updating the named columns."""
        unknown = set(fields) - self._FIELDS
        if unknown:
            raise ValueError(f"advance: unknown columns {sorted(unknown)}")
        values = [v.value if hasattr(v, "value") else v for v in fields.values()]
        sets = "".join(f", {name}=?" for name in fields)
        cur = self._db.execute(f"UPDATE instructions SET state=?, updated_at=?{sets} WHERE seq=? AND state=?",
                               (to.value, now, *values, seq, expect.value))
        if cur.rowcount != 1:
            raise StaleState(f"instruction {seq} is no longer {expect.value}")

    def add_attempt(self, *, seq: int, out_trade_no: str, attempt_no: int, channel: PayChannel, code_masked: str,
                    now: float, deadline: float) -> None:
        self._db.execute(
            "INSERT INTO attempts (out_trade_no, seq, attempt_no, channel, code_masked, started_at, deadline, row_sum)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (out_trade_no, seq, attempt_no, channel.value, code_masked, now, deadline,
             _sum("attempts", (out_trade_no, seq, attempt_no, channel.value))),
        )

    def settle_attempt(self, out_trade_no: str, *, outcome: str, channel_txn_id: str | None = None, paid_fen: int | None = None,
                       result_code: str | None = None, channel_code: str | None = None, message: str | None = None) -> None:
        self._db.execute(
            "UPDATE attempts SET outcome=?, channel_txn_id=?, paid_fen=?, result_code=?, channel_code=?, message=?"
            " WHERE out_trade_no=?",
            (outcome, channel_txn_id, paid_fen, result_code, channel_code, message, out_trade_no),
        )

    def add_collection(self, *, order_no: str, seq: int, out_trade_no: str, channel: PayChannel, channel_txn_id: str,
                       paid_fen: int, now: float) -> None:
        self._db.execute(
            "INSERT INTO collections (order_no, seq, out_trade_no, channel, channel_txn_id, paid_fen, collected_at, row_sum)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (order_no, seq, out_trade_no, channel.value, channel_txn_id, paid_fen, now,
             _sum("collections", (order_no, seq, out_trade_no, channel.value, channel_txn_id, paid_fen))),
        )

    def reserve_refund(self, *, out_refund_no: str, seq: int, order_no: str, refund_fen: int, now: float) -> bool:
        """Reserve `refund_fen` of the order's collection; False if that is more than remains."""
        try:
            self._db.execute(
                "INSERT INTO refunds (out_refund_no, seq, order_no, refund_fen, status, reserved_at, row_sum)"
                " VALUES (?, ?, ?, ?, 'reserved', ?, ?)",
                (out_refund_no, seq, order_no, refund_fen, now, _sum("refunds", (out_refund_no, seq, order_no, refund_fen))),
            )
        except sqlite3.IntegrityError as exc:
            if "exceeds" in str(exc):
                return False
            raise
        return True

    def settle_refund(self, out_refund_no: str, *, refunded: bool, channel_refund_id: str | None, now: float) -> None:
        self._db.execute("UPDATE refunds SET status=?, channel_refund_id=?, settled_at=? WHERE out_refund_no=? AND status='reserved'",
                         ("refunded" if refunded else "failed", channel_refund_id, now, out_refund_no))

    def add_result(self, *, result_msg_id: str, seq: int, envelope: bytes, pay_status: PayStatus, pay_order_no: str,
                   amount_fen: int, now: float) -> None:
        self._db.execute(
            "INSERT INTO results (result_msg_id, seq, envelope, pay_status, pay_order_no, amount_fen, created_at, row_sum)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (result_msg_id, seq, envelope, pay_status.value, pay_order_no, amount_fen, now,
             _sum("results", (result_msg_id, seq, envelope, pay_status.value, pay_order_no, amount_fen))),
        )

    def mark_delivered(self, result_msg_id: str, now: float) -> bool:
        cur = self._db.execute("UPDATE results SET delivered_at=? WHERE result_msg_id=? AND delivered_at IS NULL", (now, result_msg_id))
        return cur.rowcount == 1

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value=excluded.value", (key, value))


def _upgrade_from_1(db: sqlite3.Connection) -> None:
    """Schema 1 -> 3: checksums for the rows already there (inside the caller's transaction)."""
    _add_sums(db, tuple(SUMMED))


def _add_sums(db: sqlite3.Connection, tables: tuple[str, ...]) -> None:
    """Give `tables` their row_sum column, with checksums of the rows already there (schema 1 -> 3:
    every money table; 2 -> 3: sealed_instructions), inside the caller's transaction."""
    for table in tables:
        columns = SUMMED[table]
        db.execute(f"ALTER TABLE {table} ADD COLUMN row_sum BLOB")
        for row in db.execute(f"SELECT rowid, {', '.join(columns)} FROM {table}").fetchall():
            db.execute(f"UPDATE {table} SET row_sum=? WHERE rowid=?", (_sum(table, tuple(row)[1:]), row[0]))
    db.execute("UPDATE meta SET value=? WHERE key='schema'", (str(SCHEMA_VERSION),))


def _statements(script: str) -> Iterator[str]:
    """The statements of a script, one by one (the trigger body holds a ';' of its own, and
    executescript() would commit the transaction we create the schema in)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer.strip()
            buffer = ""
    if buffer.strip():
        raise ValueError(f"incomplete SQL statement: {buffer.strip()[:60]}")
