"""The bridge's journal: every instruction, its state and its result, in SQLite (WAL).

Each transition is committed before the bridge acts on it (send to the device, ACK a result,
answer HIS), so after a crash, even kill -9 or power loss with `synchronous = FULL`, the journal
says exactly what happened. It is also the persistent msg_id store behind the replay rule
(`protocol.freshness.SeenStore`), and the bridge's record for T+1 reconciliation.

Schema (PRAGMA user_version = 1); read-only readers (reconcile/) may open it while the bridge runs:

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
    transitions                       append-only history: seq, at, msg_id, state, detail

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
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from protocol.freshness import SeenRecord

from bridge.private_files import prepare_private_file

SCHEMA_VERSION = 1
# Test hook (never set in production): make the process die right after committing this state,
# as a crash or power cut would, to prove recovery. E.g. HIS_BRIDGE_TEST_CRASH_AT=result_stored
CRASH_ENV = "HIS_BRIDGE_TEST_CRASH_AT"
CRASH_EXIT_CODE = 86
# The `progress` of an instruction the device acknowledged but could not take (protocol.link.app
# NotTakenMsg): it stays unfinished and is sent again when the device next attaches.
NOT_TAKEN = "not_taken"


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
    refusal_message TEXT
);
CREATE INDEX IF NOT EXISTS instructions_pending ON instructions (device_id, state);
CREATE INDEX IF NOT EXISTS instructions_order ON instructions (order_no);
CREATE TABLE IF NOT EXISTS transitions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    msg_id TEXT NOT NULL,
    state TEXT NOT NULL,
    detail TEXT
);
"""


class JournalError(Exception):
    """The journal cannot be opened or written; the message says which file and why."""


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


_ROW_COLUMNS = ("seq, msg_id, kid, digest, envelope, ts, terminal_id, device_id, order_no, amount, state, progress, "
                "accepted_at, result_envelope, refusal_code, refusal_message")


def _row(values: tuple) -> Row:  # type: ignore[type-arg]
    v = list(values)
    v[10] = JState(v[10])
    v[3], v[4] = bytes(v[3]), bytes(v[4])
    v[13] = bytes(v[13]) if v[13] is not None else None
    return Row(*v)


@dataclass(slots=True)
class _Op:
    msg_id: str
    state: JState
    sql: str
    args: tuple  # type: ignore[type-arg]
    detail: str | None
    done: bool = False
    changed: bool = False
    error: JournalError | None = None

    def outcome(self) -> bool:
        if self.error is not None:
            raise self.error
        return self.changed


class Journal:
    """Thread-safe; one connection; each transition committed before the caller goes on (group commit)."""

    def __init__(self, path: Path, *, synchronous: str = "FULL", clock=time.time) -> None:  # type: ignore[no-untyped-def]
        self.path = path
        self.clock = clock
        self._lock = threading.Lock()
        self._crash_at = os.environ.get(CRASH_ENV) or None
        self._full = synchronous == "FULL"
        self._queue_cv = threading.Condition()
        self._queue: list[_Op] = []
        self._leading = False
        try:
            prepare_private_file(path)  # 0600 before SQLite opens it (its -wal/-shm copy the mode)
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'FULL' else 'NORMAL'}")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise JournalError(f"{path} has journal schema {version}; this bridge knows {SCHEMA_VERSION}")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            # Reads get their own connection: in WAL mode they see the last commit and never wait for
            # the writer's fsync (nor ever see a transaction that is not committed yet).
            self._rdb = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=10)
            self._rdb.execute("PRAGMA query_only=1")
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open the journal {path}: {exc}") from None
        self._rlock = threading.Lock()

    def close(self) -> None:
        with self._rlock:
            self._rdb.close()
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
            self._db.close()

    # ------------------------------------------------------------ SeenStore

    def seen(self, kid: str, msg_id: str) -> SeenRecord | None:
        """Any kid: a msg_id names one instruction in this bridge (results and GETs carry no kid)."""
        with self._rlock:
            found = self._rdb.execute("SELECT digest, accepted_at FROM instructions WHERE msg_id = ?", (msg_id,)).fetchone()
        return SeenRecord(bytes(found[0]), found[1]) if found else None

    # ------------------------------------------------------------ writes

    def _commit(self, msg_id: str, state: JState, sql: str, args: tuple, detail: str | None) -> bool:  # type: ignore[type-arg]
        """Commit one transition; True if it applied. Returns only once it is committed.

        Group commit: concurrent callers queue their transitions; the first becomes the leader and
        commits everything queued in one transaction (one fsync), each in its own savepoint so one
        refused insert does not undo the others. Every caller still returns only after its own
        transition is committed, so "journal first, then act" holds for each of them.
        """
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
                                             (self.clock(), op.msg_id, op.state.value, op.detail))
                    self._db.execute("RELEASE op")
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                error = JournalError(f"cannot write the journal {self.path}: {exc}")
                for op in batch:
                    op.error, op.changed = error, False
            finally:
                if relaxed:
                    self._db.execute("PRAGMA synchronous=FULL")
                for op in batch:
                    op.done = True
        if any(op.changed and op.state.value == self._crash_at for op in batch):
            os._exit(CRASH_EXIT_CODE)  # the test hook: die before anyone acts on the commit

    def accept(self, item: NewInstruction) -> bool:
        """Record a new instruction; False if its msg_id is already there (a concurrent duplicate)."""
        now = self.clock()
        return self._commit(
            item.msg_id, JState.ACCEPTED,
            "INSERT INTO instructions (msg_id, kid, digest, envelope, ts, terminal_id, device_id, order_no, amount, "
            "state, accepted_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (item.msg_id, item.kid, item.digest, item.envelope, item.ts, item.terminal_id, item.device_id,
             item.order_no, item.amount, JState.ACCEPTED.value, now, now),
            f"terminal {item.terminal_id} -> device {item.device_id}",
        )

    def _advance(self, msg_id: str, new: JState, sets: str, args: tuple, detail: str | None) -> bool:  # type: ignore[type-arg]
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

    def mark_progress(self, msg_id: str, progress: str) -> bool:
        return self._advance(msg_id, JState.PROGRESS, ", progress = ?", (progress,), progress)

    def store_result(self, reply_to: str, result: StoredResult) -> bool:
        return self._advance(
            reply_to, JState.RESULT_STORED,
            ", result_msg_id = ?, result_envelope = ?, result_at = ?, pay_status = ?, pay_channel = ?, pay_order_no = ?, "
            "result_amount = ?, finished_at = ?, error_code = ?",
            (result.msg_id, result.envelope, self.clock(), result.pay_status, result.pay_channel, result.pay_order_no,
             result.amount, result.finished_at, result.error_code),
            f"{result.pay_status} {result.error_code or ''}".strip(),
        )

    def store_refusal(self, msg_id: str, code: str, message: str) -> bool:
        return self._advance(msg_id, JState.REFUSED, ", refusal_code = ?, refusal_message = ?", (code, message), code)

    # ------------------------------------------------------------ reads

    def get(self, msg_id: str) -> Row | None:
        with self._rlock:
            found = self._rdb.execute(f"SELECT {_ROW_COLUMNS} FROM instructions WHERE msg_id = ?", (msg_id,)).fetchone()
        return _row(found) if found else None

    def unsent_for(self, device_id: str) -> list[Row]:
        """Instructions the device has not acknowledged yet, or acknowledged but could not take
        (progress NOT_TAKEN), oldest first: re-sent when its link comes up."""
        with self._rlock:
            rows = self._rdb.execute(
                f"SELECT {_ROW_COLUMNS} FROM instructions WHERE device_id = ? AND (state = ? OR (state = ? AND progress = ?)) "
                "ORDER BY seq",
                (device_id, JState.ACCEPTED.value, JState.PROGRESS.value, NOT_TAKEN),
            ).fetchall()
        return [_row(r) for r in rows]

    def counts(self) -> dict[str, int]:
        with self._rlock:
            rows = self._rdb.execute("SELECT state, COUNT(*) FROM instructions GROUP BY state").fetchall()
        return {state: n for state, n in rows}

    def history(self, msg_id: str) -> list[tuple[str, str | None]]:
        with self._rlock:
            rows = self._rdb.execute("SELECT state, detail FROM transitions WHERE msg_id = ? ORDER BY seq", (msg_id,)).fetchall()
        return [(s, d) for s, d in rows]
