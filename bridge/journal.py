"""The bridge's journal: every instruction, its state and its result, in SQLite (WAL).

Each transition is committed before the bridge acts on it (send to the device, ACK a result,
answer HIS), so after a crash, even kill -9 or power loss with `synchronous = FULL`, the journal
says exactly what happened. It is also the persistent msg_id store behind the replay rule
(`protocol.freshness.SeenStore`), and the bridge's record for T+1 reconciliation.

Schema (PRAGMA user_version = 2; a version-1 journal is upgraded in place on open); read-only
readers (reconcile/) may open it while the bridge runs:

    instructions                      one row per accepted instruction, keyed by msg_id
      seq            INTEGER PK       acceptance order
      msg_id         TEXT UNIQUE      HIS's msg_id (unique across kids: results name it alone)
      kid            TEXT             key id the instruction was sealed with
      digest         BLOB             protocol.envelope.Envelope.digest(): "the same envelope"
      envelope       BLOB             the instruction envelope as JSON (compact), re-sent after restarts
      ts             INTEGER          the envelope's ts (HIS clock, unix s)
      terminal_id    TEXT
      device_id      TEXT             the device the terminal was bound to on acceptance
      order_no       TEXT
      amount         TEXT             signed wire amount, "+12.50" / "-5.00" (parse with protocol.amount)
      state          TEXT             accepted | sent | progress | result_stored | refused
      progress       TEXT             last protocol.messages.Progress reported by the device
      accepted_at    REAL             bridge clock, unix s;  updated_at REAL: last transition
      result_msg_id  TEXT             the result envelope's msg_id
      result_envelope BLOB            the result envelope JSON exactly as served to HIS (200 body)
      result_at      REAL             when it was stored
      pay_status, pay_channel, pay_order_no, result_amount, finished_at, error_code
                                      the verified result plaintext (for reconciliation)
      refusal_code, refusal_message   the bridge's own refusal after acceptance (state refused: the
                                      device's link could not take the envelope); a device never
                                      ends an instruction but with a signed result (1.1 A)
      env_sum, result_sum  BLOB       protocol.integrity.row_checksum of the accepted instruction's
                                      columns, and of the result (or refusal) columns
      expires_at     INTEGER          his-interface 1.1 C: the plaintext's expires_at or the bridge's default
      since          REAL             when the state HIS sees (the 202's `state`) last changed
      last_event     TEXT             the 202's last_event, compact JSON {"code", "message", "at"}
      cancel_envelope BLOB            HIS's withdrawal (the `cancel` envelope), re-sent at link-up until final
                                      (these four are added to an existing schema-2 journal on open: an
                                      older bridge ignores them)
    transitions                       append-only history: seq, at, msg_id, state, detail
    held_results                      results from an authenticated device that the bridge could not
                                      accept yet (their ts is off this PC's clock, their instruction is
                                      unknown here, ...): kept, not dropped, so the frame's ACK never
                                      loses one (issue 14, finding 1); re-checked by the relay and
                                      moved to their instruction once they pass; named in /v1/health;
                                      released by the operator (`his-bridge journal held clear`), each
                                      release a `held_cleared` transition keeping reason and envelope
    peer_marks                        the high-water mark each POS (device_id:key) told at its last
                                      link-up: given back to it at the next one, so a POS whose whole
                                      storage was rolled back finds out and locks itself
    state_counts                      instructions per state, kept by triggers: /v1/health reads five
                                      rows instead of counting the history (issue 14, finding 7)

Integrity (issue 14, finding 4): every row served is checked against its checksums, and on open the
journal is checked against its high-water mark file (`<journal>.hwm`, local_storage.journal_mark) and its
unfinished and most recent rows are verified. A failed check locks the journal (`integrity.ok` is
False): writes and reads for HIS raise JournalIntegrityError (503 journal_integrity) until
`his-bridge journal restore` (bridge.journal_admin). Storage errors (disk full, locked by another
program) raise JournalError with a `cause`; `storage` says what failed last until a commit succeeds.

Durability: with `synchronous = FULL` (the default) acceptance, results and refusals are on disk
before the bridge acts on them, also across a power cut; `sent` and `progress` are crash-safe but
skip the fsync (losing them is harmless: the instruction is re-sent and the device deduplicates).

States and transitions (TRANSITIONS below): accepted -> sent (the device ACKed the frame) ->
progress* -> result_stored | refused; a result or refusal may also arrive straight from accepted
(after a restart the device answers a re-sent instruction with its stored result). result_stored
and refused are final; anything arriving after that is ignored (and logged).
"""

from __future__ import annotations

import enum
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from protocol.errors import CodedError
from protocol.freshness import SeenRecord
from protocol.integrity import IntegrityReport, row_checksum, rollback_problem

from local_storage.journal_mark import MarkFile, mark_path
from local_storage.private_files import prepare_private_file

SCHEMA_VERSION = 2
# How long a write waits for a lock another program holds on the journal before it fails (and is
# retried: the caller gets storage_unavailable, the device side retries with backoff).
BUSY_TIMEOUT_S = 10.0
# Rows verified against their checksums when the journal opens, besides every unfinished one
# (every row is verified when it is served, and all of them by `his-bridge journal check`).
VERIFY_RECENT_ROWS = 1000
# Test hook (never set in production): make the process die right after committing this state,
# as a crash or power cut would, to prove recovery. E.g. HIS_BRIDGE_TEST_CRASH_AT=result_stored
CRASH_ENV = "HIS_BRIDGE_TEST_CRASH_AT"
CRASH_EXIT_CODE = 86
# The `progress` of an instruction the device acknowledged but could not take (protocol.link.app
# NotTakenMsg): it stays unfinished and is sent again when the device next attaches.
NOT_TAKEN = "not_taken"
# Columns of his-interface 1.1 C, added to a schema-2 journal when missing (additive: no version bump).
OUTCOME_COLUMNS = (("expires_at", "INTEGER"), ("since", "REAL"), ("last_event", "TEXT"), ("cancel_envelope", "BLOB"))


class JState(str, enum.Enum):
    ACCEPTED = "accepted"
    SENT = "sent"
    PROGRESS = "progress"
    RESULT_STORED = "result_stored"
    REFUSED = "refused"

    @property
    def final(self) -> bool:
        return self in (JState.RESULT_STORED, JState.REFUSED)


TRANSITIONS: dict[JState, frozenset[JState]] = {
    JState.ACCEPTED: frozenset({JState.SENT, JState.PROGRESS, JState.RESULT_STORED, JState.REFUSED}),
    JState.SENT: frozenset({JState.PROGRESS, JState.RESULT_STORED, JState.REFUSED}),
    JState.PROGRESS: frozenset({JState.PROGRESS, JState.RESULT_STORED, JState.REFUSED}),
    JState.RESULT_STORED: frozenset(),
    JState.REFUSED: frozenset(),
}


def can_advance(current: JState, new: JState) -> bool:
    return new in TRANSITIONS[current]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS instructions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    msg_id TEXT NOT NULL UNIQUE,
    kid TEXT NOT NULL,
    digest BLOB NOT NULL,
    envelope BLOB NOT NULL,
    ts INTEGER NOT NULL,
    terminal_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    order_no TEXT NOT NULL,
    amount TEXT NOT NULL,
    state TEXT NOT NULL,
    progress TEXT,
    accepted_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    result_msg_id TEXT,
    result_envelope BLOB,
    result_at REAL,
    pay_status TEXT,
    pay_channel TEXT,
    pay_order_no TEXT,
    result_amount TEXT,
    finished_at INTEGER,
    error_code TEXT,
    refusal_code TEXT,
    refusal_message TEXT,
    env_sum BLOB,
    result_sum BLOB
);
CREATE INDEX IF NOT EXISTS instructions_pending ON instructions (device_id, state);
CREATE INDEX IF NOT EXISTS instructions_order ON instructions (order_no);
CREATE INDEX IF NOT EXISTS instructions_unfinished ON instructions (seq) WHERE state NOT IN ('result_stored', 'refused');
CREATE TABLE IF NOT EXISTS transitions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    msg_id TEXT NOT NULL,
    state TEXT NOT NULL,
    detail TEXT
);
"""

_COUNTS = """
CREATE TABLE IF NOT EXISTS held_results (
  result_msg_id TEXT PRIMARY KEY, reply_to TEXT NOT NULL, device_id TEXT NOT NULL, envelope BLOB NOT NULL,
  code TEXT NOT NULL, message TEXT NOT NULL, held_at REAL NOT NULL, checked_at REAL NOT NULL, held_sum BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS held_results_reply_to ON held_results (reply_to);
CREATE TABLE IF NOT EXISTS peer_marks (peer TEXT PRIMARY KEY, mark INTEGER NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS state_counts (state TEXT PRIMARY KEY, n INTEGER NOT NULL);
CREATE TRIGGER IF NOT EXISTS count_insert AFTER INSERT ON instructions BEGIN
  INSERT INTO state_counts (state, n) VALUES (NEW.state, 1) ON CONFLICT (state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS count_update AFTER UPDATE OF state ON instructions WHEN OLD.state != NEW.state BEGIN
  UPDATE state_counts SET n = n - 1 WHERE state = OLD.state;
  INSERT INTO state_counts (state, n) VALUES (NEW.state, 1) ON CONFLICT (state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS count_delete AFTER DELETE ON instructions BEGIN
  UPDATE state_counts SET n = n - 1 WHERE state = OLD.state;
END;
"""


def envelope_sum(msg_id: str, kid: str, digest: bytes, envelope: bytes, ts: int, terminal_id: str, device_id: str,
                 order_no: str, amount: str) -> bytes:
    return row_checksum(msg_id, kid, bytes(digest), bytes(envelope), ts, terminal_id, device_id, order_no, amount)


def result_sum(msg_id: str, result_msg_id: str | None, envelope: bytes | None, pay_status: str | None,
               pay_channel: str | None, pay_order_no: str | None, amount: str | None, finished_at: int | None,
               error_code: str | None) -> bytes:
    return row_checksum(msg_id, result_msg_id, None if envelope is None else bytes(envelope), pay_status, pay_channel,
                        pay_order_no, amount, finished_at, error_code)


def refusal_sum(msg_id: str, code: str | None, message: str | None) -> bytes:
    return row_checksum(msg_id, "refused", code, message)


# Everything a row's checksums cover, in one SELECT (verification on read, on open, and by check).
SUM_COLUMNS = ("msg_id, kid, digest, envelope, ts, terminal_id, device_id, order_no, amount, state, result_msg_id, "
               "result_envelope, pay_status, pay_channel, pay_order_no, result_amount, finished_at, error_code, "
               "refusal_code, refusal_message, env_sum, result_sum")


def row_problem(values: tuple) -> str | None:
    """What is wrong with one row (SUM_COLUMNS order), or None if its checksums hold."""
    (msg_id, kid, digest, envelope, ts, terminal_id, device_id, order_no, amount, state, result_msg_id, result_envelope,
     pay_status, pay_channel, pay_order_no, result_amount, finished_at, error_code, refusal_code, refusal_message,
     env, res) = values
    try:
        expected = envelope_sum(msg_id, kid, digest, envelope, ts, terminal_id, device_id, order_no, amount)
    except TypeError:
        return f"instruction {msg_id!r}: a column holds the wrong type"
    if env is None or bytes(env) != expected:
        return f"instruction {msg_id}: the stored instruction does not match its checksum (damaged)"
    if state == JState.RESULT_STORED.value:
        want = result_sum(msg_id, result_msg_id, result_envelope, pay_status, pay_channel, pay_order_no, result_amount,
                          finished_at, error_code)
        if res is None or bytes(res) != want:
            return f"instruction {msg_id}: the stored result does not match its checksum (damaged)"
    elif state == JState.REFUSED.value:
        if res is None or bytes(res) != refusal_sum(msg_id, refusal_code, refusal_message):
            return f"instruction {msg_id}: the stored refusal does not match its checksum (damaged)"
    elif state not in {s.value for s in JState}:
        return f"instruction {msg_id}: unknown state {state!r} (damaged)"
    return None


class StorageCause(str, enum.Enum):
    """Why a journal write failed: named in /v1/health and in the 503 storage_unavailable message."""

    DISK_FULL = "disk_full"
    LOCKED = "locked"  # another program holds a lock on the journal ("database is locked")
    IO_ERROR = "io_error"
    READ_ONLY = "read_only"
    OTHER = "other"


def storage_cause(exc: sqlite3.Error) -> StorageCause:
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    if name.startswith("SQLITE_FULL") or "disk is full" in text or "no space" in text:
        return StorageCause.DISK_FULL
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return StorageCause.LOCKED
    if name.startswith("SQLITE_READONLY") or "readonly" in text or "read-only" in text:
        return StorageCause.READ_ONLY
    if name.startswith("SQLITE_IOERR") or "disk i/o" in text:
        return StorageCause.IO_ERROR
    return StorageCause.OTHER


class JournalError(CodedError):
    """The journal cannot be opened or written; the message says which file and why."""

    code = "journal_unavailable"

    def __init__(self, message: str, cause: StorageCause = StorageCause.OTHER) -> None:
        super().__init__(message)
        self.cause = cause


class JournalIntegrityError(JournalError):
    """The journal failed its integrity check: it is locked until `his-bridge journal restore`."""

    code = "journal_integrity"


@dataclass(frozen=True, slots=True)
class StorageFault:
    cause: StorageCause
    message: str
    since: float  # bridge clock, unix s: the first failure of this run of failures


@dataclass(frozen=True, slots=True)
class NewInstruction:
    msg_id: str
    kid: str
    digest: bytes
    envelope: bytes
    ts: int
    terminal_id: str
    device_id: str
    order_no: str
    amount: str
    expires_at: int | None = None


@dataclass(frozen=True, slots=True)
class StoredResult:
    msg_id: str
    envelope: bytes
    pay_status: str
    pay_channel: str | None
    pay_order_no: str
    amount: str
    finished_at: int
    error_code: str | None


@dataclass(frozen=True, slots=True)
class Row:
    seq: int
    msg_id: str
    kid: str
    digest: bytes
    envelope: bytes
    ts: int
    terminal_id: str
    device_id: str
    order_no: str
    amount: str
    state: JState
    progress: str | None
    accepted_at: float
    result_envelope: bytes | None
    refusal_code: str | None
    refusal_message: str | None
    expires_at: int | None = None
    since: float | None = None
    last_event: str | None = None  # compact JSON
    cancel_envelope: bytes | None = None

    @property
    def undelivered(self) -> bool:
        """No device ever took it: not acknowledged, or acknowledged but not taken (NotTakenMsg)."""
        return self.state is JState.ACCEPTED or (self.state is JState.PROGRESS and self.progress == NOT_TAKEN)


_ROW_COLUMNS = ("seq, msg_id, kid, digest, envelope, ts, terminal_id, device_id, order_no, amount, state, progress, "
                "accepted_at, result_envelope, refusal_code, refusal_message, expires_at, since, last_event, cancel_envelope")


def _row(values: tuple) -> Row:
    v = list(values)
    v[10] = JState(v[10])
    v[3], v[4] = bytes(v[3]), bytes(v[4])
    v[13] = bytes(v[13]) if v[13] is not None else None
    v[19] = bytes(v[19]) if v[19] is not None else None
    return Row(*v)


@dataclass(slots=True)
class _Op:
    msg_id: str
    state: "JState | str"  # an instruction's new state, or a label for other durable writes (held results)
    sql: str
    args: tuple
    detail: str | None
    done: bool = False
    changed: bool = False
    error: JournalError | None = None

    def outcome(self) -> bool:
        if self.error is not None:
            raise self.error
        return self.changed


def _label(state: "JState | str") -> str:
    return state.value if isinstance(state, JState) else state


def held_sum(result_msg_id: str, reply_to: str, device_id: str, envelope: bytes, code: str, message: str) -> bytes:
    return row_checksum(result_msg_id, reply_to, device_id, bytes(envelope), code, message)


@dataclass(frozen=True, slots=True)
class HeldResult:
    """A result the bridge keeps but could not accept yet (see held_results above)."""

    result_msg_id: str
    reply_to: str
    device_id: str
    envelope: bytes
    code: str
    message: str
    held_at: float


# Held results kept at most: a device that floods the bridge with unacceptable results cannot fill its disk.
MAX_HELD_RESULTS = 10_000


def journal_mark(db: sqlite3.Connection) -> int:
    """The journal's own high-water mark: the last transition ever numbered (survives pruning)."""
    try:
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'transitions'").fetchone()
    except sqlite3.OperationalError:  # no sqlite_sequence: nothing was ever written
        return 0
    return int(row[0]) if row else 0


def open_schema(db: sqlite3.Connection, path: Path) -> None:
    """Create or upgrade the schema (1 -> 2: checksums and state counts, computed for existing rows)."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version not in (0, 1, SCHEMA_VERSION):
        raise JournalError(f"{path} has journal schema {version}; this bridge knows {SCHEMA_VERSION}")
    if version == 1:
        db.execute("BEGIN IMMEDIATE")
        db.execute("ALTER TABLE instructions ADD COLUMN env_sum BLOB")
        db.execute("ALTER TABLE instructions ADD COLUMN result_sum BLOB")
        for (msg_id, kid, digest, envelope, ts, terminal_id, device_id, order_no, amount, state, result_msg_id,
             result_envelope, pay_status, pay_channel, pay_order_no, result_amount, finished_at, error_code,
             refusal_code, refusal_message, _e, _r) in db.execute(f"SELECT {SUM_COLUMNS} FROM instructions").fetchall():
            env = envelope_sum(msg_id, kid, digest, envelope, ts, terminal_id, device_id, order_no, amount)
            res = (result_sum(msg_id, result_msg_id, result_envelope, pay_status, pay_channel, pay_order_no, result_amount,
                              finished_at, error_code) if state == JState.RESULT_STORED.value
                   else refusal_sum(msg_id, refusal_code, refusal_message) if state == JState.REFUSED.value else None)
            db.execute("UPDATE instructions SET env_sum = ?, result_sum = ? WHERE msg_id = ?", (env, res, msg_id))
        db.execute("COMMIT")
    db.executescript(_SCHEMA)
    have = {row[1] for row in db.execute("PRAGMA table_info(instructions)").fetchall()}
    for name, kind in OUTCOME_COLUMNS:
        if name not in have:
            db.execute(f"ALTER TABLE instructions ADD COLUMN {name} {kind}")
    if db.execute("SELECT name FROM sqlite_master WHERE name = 'state_counts'").fetchone() is None:
        db.executescript("BEGIN IMMEDIATE;" + _COUNTS +
                         "INSERT INTO state_counts (state, n) SELECT state, COUNT(*) FROM instructions GROUP BY state; COMMIT;")
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


class Journal:
    """Thread-safe; one connection; each transition committed before the caller goes on (group commit)."""

    def __init__(self, path: Path, *, synchronous: str = "FULL", clock=time.time,
                 busy_timeout_s: float = BUSY_TIMEOUT_S, verify_recent: int = VERIFY_RECENT_ROWS) -> None:
        self.path = path
        self.clock = clock
        self._lock = threading.Lock()
        self._crash_at = os.environ.get(CRASH_ENV) or None
        self._full = synchronous == "FULL"
        self._queue_cv = threading.Condition()
        self._queue: list[_Op] = []
        self._leading = False
        self._mark = MarkFile(mark_path(path))
        self.storage: StorageFault | None = None
        try:
            prepare_private_file(path)  # 0600 before SQLite opens it (its -wal/-shm copy the mode)
            recorded = self._mark.read()
            had_mark = self._mark.exists()
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=busy_timeout_s)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'FULL' else 'NORMAL'}")
            open_schema(self._db, path)
            # Reads get their own connection: in WAL mode they see the last commit and never wait for
            # the writer's fsync (nor ever see a transaction that is not committed yet).
            self._rdb = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=busy_timeout_s)
            self._rdb.execute("PRAGMA query_only=1")
            # Health has a connection and a lock of its own: it never waits behind the instruction path.
            self._hdb = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=busy_timeout_s)
            self._hdb.execute("PRAGMA query_only=1")
            self._hwm = journal_mark(self._db)
            self._durable = self._hwm
            self.integrity = self._check_on_open(recorded.mark if recorded else (1 if had_mark else 0), verify_recent)
            if self.integrity.ok and (recorded is None or recorded.mark != self._hwm):
                self._mark.write(self._hwm)  # a new journal, or one upgraded from schema 1
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open the journal {path}: {exc}", storage_cause(exc)) from None
        except OSError as exc:
            raise JournalError(f"cannot open the journal {path} or its mark {self._mark.path.name}: {exc.strerror}") from None
        self._rlock = threading.Lock()
        self._hlock = threading.Lock()

    def _check_on_open(self, recorded: int, verify_recent: int) -> IntegrityReport:
        problems = []
        rollback = rollback_problem(self._hwm, recorded)
        if rollback:
            problems.append(rollback)
        rows = self._db.execute(
            f"SELECT {SUM_COLUMNS} FROM instructions WHERE state NOT IN ('result_stored', 'refused') "
            f"UNION SELECT {SUM_COLUMNS} FROM (SELECT * FROM instructions ORDER BY seq DESC LIMIT ?)", (verify_recent,)).fetchall()
        problems += [p for p in map(row_problem, rows) if p]
        if not problems:
            return IntegrityReport(True)
        return IntegrityReport(False, problems[0], tuple(problems))

    @property
    def locked(self) -> bool:
        return not self.integrity.ok

    @property
    def high_water_mark(self) -> int:
        """The last durable commit: what the POS will keep for us at link-up (the peer exchange, a follow-up)."""
        return self._hwm

    @property
    def durable_mark(self) -> int:
        """The mark of the last commit that survives a power cut (`sent`/`progress` commits skip the
        fsync): what the bridge tells a POS at link-up, so a power cut never looks like a rollback."""
        return self._durable

    def rolled_back(self, problem: str) -> None:
        """A peer holds a higher mark for this journal than it has: lock it (health says why)."""
        self._lock_out(problem)

    def peer_mark(self, peer: str) -> int | None:
        found = self._read("SELECT mark FROM peer_marks WHERE peer = ?", (peer,))
        return int(found[0][0]) if found else None

    def set_peer_mark(self, peer: str, mark: int) -> None:
        self._commit(peer, "peer_mark", "INSERT INTO peer_marks (peer, mark, at) VALUES (?, ?, ?) "
                     "ON CONFLICT (peer) DO UPDATE SET mark = excluded.mark, at = excluded.at WHERE mark != excluded.mark",
                     (peer, mark, self.clock()), str(mark))

    def _lock_out(self, problem: str) -> None:
        if self.integrity.ok:
            self.integrity = IntegrityReport(False, problem, (problem,))
        elif problem not in self.integrity.problems:
            self.integrity = IntegrityReport(False, self.integrity.reason, (*self.integrity.problems, problem))

    def _refuse_if_locked(self) -> None:
        if self.locked:
            raise JournalIntegrityError(f"the journal {self.path} failed its integrity check: {self.integrity.reason}; "
                                        "nothing is done until it is recovered (his-bridge journal check, restore)")

    def close(self) -> None:
        with self._rlock:
            self._rdb.close()
        with self._hlock:
            self._hdb.close()
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                if not self._full and not self.locked:
                    self._mark.write(journal_mark(self._db))  # NORMAL: commits were not fsynced, so only now
            except (sqlite3.Error, OSError):
                pass
            self._mark.close()
            self._db.close()

    def _read(self, sql: str, args: tuple) -> list[tuple]:
        self._refuse_if_locked()
        try:
            with self._rlock:
                return self._rdb.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise JournalError(f"cannot read the journal {self.path}: {exc}", storage_cause(exc)) from None

    # ------------------------------------------------------------ SeenStore

    def seen(self, kid: str, msg_id: str) -> SeenRecord | None:
        """Any kid: a msg_id names one instruction in this bridge (results and GETs carry no kid)."""
        found = self._read("SELECT digest, accepted_at FROM instructions WHERE msg_id = ?", (msg_id,))
        return SeenRecord(bytes(found[0][0]), found[0][1]) if found else None

    # ------------------------------------------------------------ writes

    def _commit(self, msg_id: str, state: "JState | str", sql: str, args: tuple, detail: str | None) -> bool:
        """Commit one transition; True if it applied. Returns only once it is committed.

        Group commit: concurrent callers queue their transitions; the first becomes the leader and
        commits everything queued in one transaction (one fsync), each in its own savepoint so one
        refused insert does not undo the others. Every caller still returns only after its own
        transition is committed, so "journal first, then act" holds for each of them.
        """
        self._refuse_if_locked()
        op = _Op(msg_id, state, sql, args, detail)
        with self._queue_cv:
            self._queue.append(op)
            while not op.done:
                if not self._leading:
                    self._leading = True
                    batch, self._queue = self._queue, []
                    break
                self._queue_cv.wait()
            else:
                return op.outcome()
        try:
            self._commit_batch(batch)
        finally:
            with self._queue_cv:
                self._leading = False
                self._queue_cv.notify_all()
        return op.outcome()

    def _commit_batch(self, batch: list["_Op"]) -> None:
        # `sent` and `progress` may be lost in a power cut without harm (the instruction is re-sent,
        # the device deduplicates; progress is informational): a batch of only those skips the fsync
        # that acceptance, results and refusals always get. WAL order keeps them behind every earlier
        # durable commit.
        relaxed = self._full and all(op.state in (JState.SENT, JState.PROGRESS) for op in batch)
        with self._lock:
            try:
                if relaxed:
                    self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute("BEGIN IMMEDIATE")
                for op in batch:
                    self._db.execute("SAVEPOINT op")
                    try:
                        op.changed = bool(self._db.execute(op.sql, op.args).rowcount)
                    except sqlite3.IntegrityError:
                        self._db.execute("ROLLBACK TO op")
                    else:
                        if op.changed:
                            self._db.execute("INSERT INTO transitions (at, msg_id, state, detail) VALUES (?, ?, ?, ?)",
                                             (self.clock(), op.msg_id, _label(op.state), op.detail))
                    self._db.execute("RELEASE op")
                self._db.execute("COMMIT")
                self._hwm = journal_mark(self._db)
                if not relaxed:
                    self._durable = self._hwm  # WAL order: everything before it is durable too
                if self._full and not relaxed:
                    self._write_mark()
                self.storage = None
            except sqlite3.Error as exc:
                try:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # SQLite rolled it back itself (disk full, I/O error)
                cause = storage_cause(exc)
                error = JournalError(f"cannot write the journal {self.path}: {exc}", cause)
                if self.storage is None or self.storage.cause is not cause:
                    self.storage = StorageFault(cause, str(exc), self.clock())
                for op in batch:
                    op.error, op.changed = error, False
            finally:
                if relaxed:
                    try:
                        self._db.execute("PRAGMA synchronous=FULL")
                    except sqlite3.Error:
                        pass
                for op in batch:
                    op.done = True
        if any(op.changed and _label(op.state) == self._crash_at for op in batch):
            os._exit(CRASH_EXIT_CODE)  # the test hook: die before anyone acts on the commit

    def _write_mark(self) -> None:
        try:
            self._mark.write(self._hwm)
        except OSError as exc:  # the commit stands; the mark lags behind it, which the rule allows
            self.storage = StorageFault(StorageCause.DISK_FULL if exc.errno == 28 else StorageCause.IO_ERROR,
                                        f"cannot write the high-water mark {self._mark.path}: {exc.strerror}", self.clock())

    def accept(self, item: NewInstruction) -> bool:
        """Record a new instruction; False if its msg_id is already there (a concurrent duplicate)."""
        now = self.clock()
        env = envelope_sum(item.msg_id, item.kid, item.digest, item.envelope, item.ts, item.terminal_id, item.device_id,
                           item.order_no, item.amount)
        return self._commit(
            item.msg_id, JState.ACCEPTED,
            "INSERT INTO instructions (msg_id, kid, digest, envelope, ts, terminal_id, device_id, order_no, amount, "
            "state, accepted_at, updated_at, env_sum, expires_at, since) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (item.msg_id, item.kid, item.digest, item.envelope, item.ts, item.terminal_id, item.device_id,
             item.order_no, item.amount, JState.ACCEPTED.value, now, now, env, item.expires_at, now),
            f"terminal {item.terminal_id} -> device {item.device_id}",
        )

    def _advance(self, msg_id: str, new: JState, sets: str, args: tuple, detail: str | None) -> bool:
        allowed = [s.value for s in JState if can_advance(s, new)]
        marks = ", ".join("?" for _ in allowed)
        return self._commit(
            msg_id, new,
            f"UPDATE instructions SET state = ?, updated_at = ?{sets} WHERE msg_id = ? AND state IN ({marks})",
            (new.value, self.clock(), *args, msg_id, *allowed),
            detail,
        )

    def mark_sent(self, msg_id: str) -> bool:
        return self._advance(msg_id, JState.SENT, "", (), None)

    def mark_progress(self, msg_id: str, progress: str, event: str | None = None) -> bool:
        """The device's progress; `since` moves only when it changes; `event` (compact JSON) becomes
        last_event (kept when None)."""
        return self._advance(msg_id, JState.PROGRESS,
                             ", since = CASE WHEN progress IS ? THEN since ELSE ? END, progress = ?, "
                             "last_event = COALESCE(?, last_event)",
                             (progress, self.clock(), progress, event), progress)

    def mark_withdrawn(self, msg_id: str, cancel_envelope: bytes) -> bool:
        """HIS's withdrawal of an unfinished instruction (the first one counts; durable, not a state)."""
        final = ", ".join(f"'{s.value}'" for s in JState if s.final)
        return self._commit(msg_id, JState.PROGRESS,
                            f"UPDATE instructions SET cancel_envelope = ?, updated_at = ? WHERE msg_id = ? "
                            f"AND cancel_envelope IS NULL AND state NOT IN ({final})",
                            (cancel_envelope, self.clock(), msg_id), "withdrawn by HIS")

    def store_expired_undelivered(self, msg_id: str, message: str) -> bool:
        """Final refusal expired_undelivered, only while no device ever took the instruction (1.1 C)."""
        code = "expired_undelivered"
        return self._commit(
            msg_id, JState.REFUSED,
            "UPDATE instructions SET state = ?, updated_at = ?, refusal_code = ?, refusal_message = ?, result_sum = ? "
            "WHERE msg_id = ? AND (state = ? OR (state = ? AND progress = ?))",
            (JState.REFUSED.value, self.clock(), code, message, refusal_sum(msg_id, code, message), msg_id,
             JState.ACCEPTED.value, JState.PROGRESS.value, NOT_TAKEN), code)

    def store_result(self, reply_to: str, result: StoredResult) -> bool:
        return self._advance(
            reply_to, JState.RESULT_STORED,
            ", result_msg_id = ?, result_envelope = ?, result_at = ?, pay_status = ?, pay_channel = ?, pay_order_no = ?, "
            "result_amount = ?, finished_at = ?, error_code = ?, result_sum = ?",
            (result.msg_id, result.envelope, self.clock(), result.pay_status, result.pay_channel, result.pay_order_no,
             result.amount, result.finished_at, result.error_code,
             result_sum(reply_to, result.msg_id, result.envelope, result.pay_status, result.pay_channel, result.pay_order_no,
                        result.amount, result.finished_at, result.error_code)),
            f"{result.pay_status} {result.error_code or ''}".strip(),
        )

    def store_refusal(self, msg_id: str, code: str, message: str) -> bool:
        return self._advance(msg_id, JState.REFUSED, ", refusal_code = ?, refusal_message = ?, result_sum = ?",
                             (code, message, refusal_sum(msg_id, code, message)), code)

    def hold_result(self, held: HeldResult) -> bool:
        """Keep a result that cannot be accepted yet (durably, before its frame is acknowledged);
        False if it is held already. A device past MAX_HELD_RESULTS gets JournalError (not ACKed)."""
        count = self._read("SELECT count(*) FROM held_results", ())[0][0]
        if count >= MAX_HELD_RESULTS:
            raise JournalError(f"the journal {self.path} already holds {count} results it could not accept; "
                               "look into them and release them (his-bridge journal held list|clear) before more are taken")
        now = self.clock()
        return self._commit(
            held.reply_to, "result_held",
            "INSERT OR IGNORE INTO held_results (result_msg_id, reply_to, device_id, envelope, code, message, held_at, "
            "checked_at, held_sum) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (held.result_msg_id, held.reply_to, held.device_id, held.envelope, held.code, held.message, now, now,
             held_sum(held.result_msg_id, held.reply_to, held.device_id, held.envelope, held.code, held.message)),
            f"{held.code}: {held.message}"[:500],
        )

    def release_held(self, result_msg_id: str, reply_to: str, why: str) -> bool:
        """Forget a held result: it was accepted (stored as its instruction's result) or is moot."""
        return self._commit(reply_to, "held_released", "DELETE FROM held_results WHERE result_msg_id = ?",
                            (result_msg_id,), why)

    def held_listing(self, limit: int = 1000) -> list[tuple[HeldResult, bool]]:
        """Every held result for the operator (`his-bridge journal held list`), oldest first, each with
        whether its checksum verifies (one that does not is never accepted, but is listed)."""
        rows = self._read("SELECT result_msg_id, reply_to, device_id, envelope, code, message, held_at, held_sum "
                          "FROM held_results ORDER BY held_at LIMIT ?", (limit,))
        return [(HeldResult(r[0], r[1], r[2], bytes(r[3]), r[4], r[5], r[6]),
                 held_sum(r[0], r[1], r[2], r[3], r[4], r[5]) == bytes(r[7])) for r in rows]

    def clear_held(self, msg_id: str, reason: str) -> list[HeldResult]:
        """The operator releases held results (`his-bridge journal held clear`): those whose own
        result_msg_id, or whose instruction (reply_to), is `msg_id`. Each removal is a transition of
        its instruction, `held_cleared`, whose detail keeps the reason, the code it was held for and the
        whole sealed envelope: the audit trail, and the evidence of a security hold. The instruction
        itself is untouched (still unfinished: HIS keeps getting 202 and must settle it by hand)."""
        reason = reason.strip()
        if not reason:
            raise ValueError("a reason is required (it is kept in the journal's audit trail)")
        rows = self._read("SELECT result_msg_id, reply_to, device_id, envelope, code, message, held_at "
                          "FROM held_results WHERE result_msg_id = ? OR reply_to = ? ORDER BY held_at", (msg_id, msg_id))
        cleared = []
        for r in rows:
            held = HeldResult(r[0], r[1], r[2], bytes(r[3]), r[4], r[5], r[6])
            detail = json.dumps({"by": "operator", "reason": reason, "result_msg_id": held.result_msg_id,
                                 "device_id": held.device_id, "code": held.code, "message": held.message,
                                 "envelope": held.envelope.decode("utf-8", "replace")}, separators=(",", ":"), ensure_ascii=False)
            if self._commit(held.reply_to, "held_cleared", "DELETE FROM held_results WHERE result_msg_id = ?",
                            (held.result_msg_id,), detail):
                cleared.append(held)
        return cleared

    def update_held(self, result_msg_id: str, code: str, message: str) -> None:
        """A re-check still fails: record why now (the reason can change, e.g. as a clock is put right)."""
        row = self._read("SELECT reply_to, device_id, envelope FROM held_results WHERE result_msg_id = ?", (result_msg_id,))
        if not row:
            return
        reply_to, device_id, envelope = row[0]
        # Only when the reason's code changes: a clock_skew message names the clock and changes every time.
        self._commit(reply_to, "result_held", "UPDATE held_results SET code = ?, message = ?, checked_at = ?, held_sum = ? "
                     "WHERE result_msg_id = ? AND code != ?",
                     (code, message, self.clock(), held_sum(result_msg_id, reply_to, device_id, envelope, code, message),
                      result_msg_id, code), f"{code}: {message}"[:500])

    def held(self, limit: int = 1000) -> list[HeldResult]:
        """Held results, oldest first; a row whose checksum fails is skipped (never accepted)."""
        return self._held_rows("ORDER BY held_at LIMIT ?", (limit,))

    def held_for(self, reply_to: str) -> HeldResult | None:
        found = self._held_rows("WHERE reply_to = ? ORDER BY held_at LIMIT 1", (reply_to,))
        return found[0] if found else None

    def _held_rows(self, tail: str, args: tuple) -> list[HeldResult]:
        rows = self._read("SELECT result_msg_id, reply_to, device_id, envelope, code, message, held_at, held_sum "
                          f"FROM held_results {tail}", args)
        return [HeldResult(r[0], r[1], r[2], bytes(r[3]), r[4], r[5], r[6]) for r in rows
                if held_sum(r[0], r[1], r[2], r[3], r[4], r[5]) == bytes(r[7])]

    def held_summary(self, items: int = 10) -> dict[str, object]:
        """For /v1/health, on health's own connection: how many results are held and the oldest few."""
        try:
            with self._hlock:
                count = self._hdb.execute("SELECT count(*) FROM held_results").fetchone()[0]
                rows = self._hdb.execute("SELECT result_msg_id, reply_to, device_id, code, message, held_at FROM held_results "
                                         "ORDER BY held_at LIMIT ?", (items,)).fetchall() if count else []
        except sqlite3.Error as exc:
            raise JournalError(f"cannot read the journal {self.path}: {exc}", storage_cause(exc)) from None
        return {"count": count, "oldest": [{"result_msg_id": r[0], "msg_id": r[1], "device_id": r[2], "code": r[3],
                                            "message": r[4], "since": int(r[5])} for r in rows]}

    # ------------------------------------------------------------ reads

    def _verified(self, rows: list[tuple]) -> list[Row]:
        """Rows of `_ROW_COLUMNS, SUM_COLUMNS`, each checked against its checksums before anyone uses it."""
        n = len(_ROW_COLUMNS.split(","))
        out = []
        for values in rows:
            problem = row_problem(values[n:])
            if problem:
                self._lock_out(problem)
                self._refuse_if_locked()
            out.append(_row(values[:n]))
        return out

    def get(self, msg_id: str) -> Row | None:
        found = self._read(f"SELECT {_ROW_COLUMNS}, {SUM_COLUMNS} FROM instructions WHERE msg_id = ?", (msg_id,))
        return self._verified(found)[0] if found else None

    def unsent_for(self, device_id: str) -> list[Row]:
        """Instructions the device has not acknowledged yet, or acknowledged but could not take
        (progress NOT_TAKEN), oldest first: re-sent when its link comes up."""
        rows = self._read(
            f"SELECT {_ROW_COLUMNS}, {SUM_COLUMNS} FROM instructions WHERE device_id = ? "
            "AND (state = ? OR (state = ? AND progress = ?)) ORDER BY seq",
            (device_id, JState.ACCEPTED.value, JState.PROGRESS.value, NOT_TAKEN),
        )
        return self._verified(rows)

    def unfinished_for(self, device_id: str) -> list[Row]:
        """Every unfinished instruction given to the device, oldest first: after a reconnect the bridge
        asks the device about each again (it answers with its result or progress, or takes up one it lost)."""
        rows = self._read(
            f"SELECT {_ROW_COLUMNS}, {SUM_COLUMNS} FROM instructions WHERE device_id = ? AND state IN (?, ?, ?) ORDER BY seq",
            (device_id, JState.ACCEPTED.value, JState.SENT.value, JState.PROGRESS.value))
        return self._verified(rows)

    def stalled(self, before: float) -> list[tuple[str, str, str, str | None, float]]:
        """Unfinished instructions unchanged since `before`: (msg_id, device_id, state, progress, updated_at)."""
        try:
            with self._hlock:
                rows = self._hdb.execute(
                    "SELECT msg_id, device_id, state, progress, updated_at FROM instructions "
                    "WHERE state NOT IN ('result_stored', 'refused') AND updated_at < ? ORDER BY seq", (before,)).fetchall()
        except sqlite3.Error as exc:
            raise JournalError(f"cannot read the journal {self.path}: {exc}", storage_cause(exc)) from None
        return [tuple(r) for r in rows]

    def withdrawn_for(self, device_id: str) -> list[Row]:
        """Unfinished instructions HIS withdrew, oldest first: their cancel is re-sent at link-up."""
        rows = self._read(
            f"SELECT {_ROW_COLUMNS}, {SUM_COLUMNS} FROM instructions WHERE device_id = ? AND cancel_envelope IS NOT NULL "
            "AND state NOT IN ('result_stored', 'refused') ORDER BY seq", (device_id,))
        return self._verified(rows)

    def counts(self) -> dict[str, int]:
        """Instructions per state: five rows kept by triggers, so O(1) in history, on health's own connection."""
        try:
            with self._hlock:
                rows = self._hdb.execute("SELECT state, n FROM state_counts WHERE n != 0").fetchall()
        except sqlite3.Error as exc:
            raise JournalError(f"cannot read the journal {self.path}: {exc}", storage_cause(exc)) from None
        return {state: n for state, n in rows}

    def history(self, msg_id: str) -> list[tuple[str, str | None]]:
        rows = self._read("SELECT state, detail FROM transitions WHERE msg_id = ? ORDER BY seq", (msg_id,))
        return [(s, d) for s, d in rows]

    def finished_before(self, cutoff: float, limit: int) -> list[tuple[sqlite3.Row, list[tuple]]]:
        """Up to `limit` finished instructions last changed before `cutoff`, with their transitions (retention)."""
        self._refuse_if_locked()
        with self._rlock:
            self._rdb.row_factory = sqlite3.Row
            try:
                rows = self._rdb.execute("SELECT * FROM instructions WHERE state IN ('result_stored', 'refused') "
                                         "AND updated_at < ? ORDER BY seq LIMIT ?", (cutoff, limit)).fetchall()
                out = []
                for row in rows:
                    problem = row_problem(tuple(row[c.strip()] for c in SUM_COLUMNS.split(",")))
                    if problem:
                        self._lock_out(problem)
                        self._refuse_if_locked()
                    history = self._rdb.execute("SELECT at, state, detail FROM transitions WHERE msg_id = ? ORDER BY seq",
                                                (row["msg_id"],)).fetchall()
                    out.append((row, [tuple(h) for h in history]))
                return out
            finally:
                self._rdb.row_factory = None

    def remove_finished(self, msg_ids: list[str]) -> int:
        """Delete archived instructions (finished ones only) and their transitions, in one commit."""
        self._refuse_if_locked()
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                removed = 0
                for msg_id in msg_ids:
                    removed += self._db.execute("DELETE FROM instructions WHERE msg_id = ? AND state IN "
                                                "('result_stored', 'refused')", (msg_id,)).rowcount
                    self._db.execute("DELETE FROM transitions WHERE msg_id = ?", (msg_id,))
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise JournalError(f"cannot prune the journal {self.path}: {exc}", storage_cause(exc)) from None
        return removed

    def health(self) -> dict[str, object]:
        """The journal's part of /v1/health: integrity, storage, and where the file is."""
        storage: dict[str, object] = {"ok": self.storage is None}
        if self.storage is not None:
            storage.update(cause=self.storage.cause.value, message=self.storage.message, since=int(self.storage.since))
        return {"path": str(self.path), "integrity": self.integrity.to_json_obj(), "storage": storage,
                "high_water_mark": self._hwm}
