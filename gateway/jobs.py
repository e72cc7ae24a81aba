"""The jobs table: durable channel work the gateway owes, shared by every gateway process.

A job is one thing to finish (a collection, a refund, a day's bills of a hospital), due at a time.
The ledger writes a collection's or a refund's job in the same transaction that records it, before
the channel is called, and deletes it in the transaction that settles it; so whatever happens to
the request (the POS goes offline, the gateway process is killed, the power fails) the work stays
in the database until some process finishes it.

    queue = JobQueue(db, owner="gw-host-1234")
    job = queue.claim(lease_s=120)            # the most overdue job nobody holds, or None
    ... do the work ...       (a long one: queue.renew(job, lease_s=120) between steps; None: stop)
    queue.done(job)    or    queue.retry(job, after_s=30, error="channel: timeout")

Claiming takes a lease: `lease_owner` and `lease_until_ms`. Only a job whose lease has run out (or
was never taken) can be claimed, so two processes never run one job at once while a lease holds,
and a job whose process died (kill -9) is claimed again by another once its lease ends. The claim
is one UPDATE: on PostgreSQL its row is chosen with `FOR UPDATE SKIP LOCKED` (concurrent claimers
take different rows without waiting for each other); on SQLite the write transaction is `BEGIN
IMMEDIATE`, which serialises claimers. `done` and `retry` only touch a job still leased to the
caller: a process that overran its lease never undoes the work of the one that took it over (the
work itself is idempotent and re-checked under the ledger's row locks, so running it twice in a row
is harmless; running it twice at once is what the lease prevents).

Two clocks, for two purposes (milliseconds of unix time both):

- **leases and a job's age run on the database's clock.** Claiming, renewing and the test "has this
  lease run out" read the time where the lease is stored: on PostgreSQL the server's
  `clock_timestamp()`, the one clock every gateway host sharing the database agrees on; so two hosts
  whose clocks differ by minutes, or a host whose clock is stepped, never both hold one job, and
  never cut a live lease short. A job's `created_at_ms` is written with that clock too, and read
  against it (`clock_ms`): a payment's patience before it is reversed is the same seen from every
  host. SQLite runs inside the gateway's process (every process that opens its file is on the same
  host), so there the host clock (the injected `clock`) is the database's clock;
- **due times are a schedule** written with the writer's clock (the ledger's `now`, `retry`'s
  `after_s`) and compared with the claimer's: a host whose clock is off runs a job somewhat early
  or late, which the work tolerates (it re-checks everything under the ledger's row locks), while
  the lease keeps it from ever running twice at once.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Callable

from gateway.db import Database, Dialect, Param, Tx


# A collection's or refund's job falls due this long after it was recorded: longer than any request
# can run (a channel call is bounded at 35 s by its client's timeouts) and than the POS's own query
# loop (30 s), so the job only ever finishes what the request and the POS left unfinished.
FOLLOW_UP_AFTER_S = 60


class JobKind(str, enum.Enum):
    PAYMENT = "payment"  # subject: out_trade_no; query until final, reverse when abandoned
    REFUND = "refund"  # subject: out_refund_no; query until final, send again if the channel never saw it
    BILLS = "bills"  # subject: the business day YYYY-MM-DD; download the hospital's channel bills
    ALIPAY_TOKEN = "alipay_token"  # subject: "refresh"; refresh the hospital's Alipay app_auth_token before it ends (migration 11)
    WECHAT_CERTS = "wechat_certs"  # subject: a signing mchid; download its WeChat Pay platform certificates (migration 10)


class RunAgain(Exception):
    """Raised by a job's work: not finished, run it again after `after_s` (`error`: why, for operators)."""

    def __init__(self, after_s: float, error: str | None = None) -> None:
        super().__init__(error or "")
        self.after_s = after_s
        self.error = error


@dataclass(frozen=True, slots=True)
class Job:
    job_id: int
    kind: JobKind
    hospital_id: str
    subject: str
    due_at_ms: int
    attempts: int  # claims so far, this one included
    lease_owner: str | None
    lease_until_ms: int | None
    last_error: str | None
    created_at_ms: int


_COLS = "job_id, kind, hospital_id, subject, due_at_ms, attempts, lease_owner, lease_until_ms, last_error, created_at_ms"


def _job(row: tuple) -> Job:
    return Job(int(row[0]), JobKind(row[1]), row[2], row[3], int(row[4]), int(row[5]), row[6],
               None if row[7] is None else int(row[7]), row[8], int(row[9]))


# PostgreSQL's clock in unix milliseconds. clock_timestamp(), not now(): now() is when the
# transaction began, and a lease should be measured from when it is taken.
_PG_CLOCK_MS = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"


def ms(seconds: float) -> int:
    return int(seconds * 1000)


# --- inside the ledger's own transactions --------------------------------------------------------

def schedule_statement(kind: JobKind, hospital_id: str, subject: str, *, due_at_ms: int, now_ms: int,
                       dialect: Dialect) -> tuple[str, tuple[Param, ...]]:
    """`schedule` as a statement, for a caller's `Tx.batch`. `created_at_ms` is the database's clock
    (on PostgreSQL its own; `now_ms` on SQLite): a payment's patience is measured on it."""
    if dialect is Dialect.POSTGRES:
        return (f"INSERT INTO jobs (kind, hospital_id, subject, due_at_ms, created_at_ms) VALUES (?, ?, ?, ?, {_PG_CLOCK_MS}) "
                "ON CONFLICT (kind, hospital_id, subject) DO NOTHING", (kind.value, hospital_id, subject, due_at_ms))
    return ("INSERT INTO jobs (kind, hospital_id, subject, due_at_ms, created_at_ms) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (kind, hospital_id, subject) DO NOTHING", (kind.value, hospital_id, subject, due_at_ms, now_ms))


def cancel_statement(kind: JobKind, hospital_id: str, subject: str) -> tuple[str, tuple[Param, ...]]:
    """`cancel` as a statement, for a caller's `Tx.batch`."""
    return "DELETE FROM jobs WHERE kind = ? AND hospital_id = ? AND subject = ?", (kind.value, hospital_id, subject)


def schedule(tx: Tx, kind: JobKind, hospital_id: str, subject: str, *, due_at_ms: int, now_ms: int) -> None:
    """Make sure the job exists (a job already there keeps its due time and lease)."""
    tx.execute(*schedule_statement(kind, hospital_id, subject, due_at_ms=due_at_ms, now_ms=now_ms, dialect=tx.dialect))


def cancel(tx: Tx, kind: JobKind, hospital_id: str, subject: str) -> None:
    """The thing is final: nothing is owed any more (a process running it finds that and stops)."""
    tx.execute(*cancel_statement(kind, hospital_id, subject))


# --- the queue ----------------------------------------------------------------------------------

class JobQueue:
    def __init__(self, db: Database, *, owner: str, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.owner = owner
        self._clock = clock

    def now_ms(self) -> int:
        return ms(self._clock())

    def clock_ms(self) -> int:
        """The database's clock now (PostgreSQL's own; on SQLite this host's, the injected clock): what
        a job's `created_at_ms` was written with, so the age of a job is the same seen from any host."""
        if self.db.dialect is Dialect.POSTGRES:
            with self.db.reads() as tx:
                row = tx.one(f"SELECT {_PG_CLOCK_MS}", ())
            assert row is not None
            return int(row[0])
        return self.now_ms()

    def claim(self, *, lease_s: float, kinds: tuple[JobKind, ...] = tuple(JobKind)) -> Job | None:
        """Lease the most overdue job that is due and held by nobody (or by a lease that ran out, by
        the database's clock); the lease lasts `lease_s` of the database's clock."""
        due = self.now_ms()
        marks = ", ".join("?" for _ in kinds)
        kind_values = tuple(k.value for k in kinds)
        with self.db.reads() as tx:  # the common case, nothing due: no write lock taken, no transaction
            lease_now, now_params = self._lease_now(tx)
            if tx.one(f"SELECT 1 FROM jobs WHERE due_at_ms <= ? AND (lease_until_ms IS NULL OR lease_until_ms <= {lease_now}) "
                      f"AND kind IN ({marks}) LIMIT 1", (due, *now_params, *kind_values)) is None:
                return None
        with self.db.transaction(durable=False) as tx:  # a lost claim is only a claim: the job is run again
            lease_now, now_params = self._lease_now(tx)
            skip_locked = " FOR UPDATE SKIP LOCKED" if tx.dialect is Dialect.POSTGRES else ""
            row = tx.one(
                f"UPDATE jobs SET lease_owner = ?, lease_until_ms = {lease_now} + ?, attempts = attempts + 1 WHERE job_id = ("
                f"SELECT job_id FROM jobs WHERE due_at_ms <= ? AND (lease_until_ms IS NULL OR lease_until_ms <= {lease_now}) "
                f"AND kind IN ({marks}) ORDER BY due_at_ms LIMIT 1{skip_locked}) RETURNING {_COLS}",
                (self.owner, *now_params, ms(lease_s), due, *now_params, *kind_values))
        return None if row is None else _job(row)

    def renew(self, job: Job, *, lease_s: float) -> Job | None:
        """Extend the caller's lease on `job` to `lease_s` from now (the database's clock): the job with
        its new lease, or None when it is no longer ours (taken over after the lease ran out, finished
        by the ledger); the caller then stops working on it."""
        with self.db.transaction(durable=False) as tx:
            lease_now, now_params = self._lease_now(tx)
            row = tx.one(f"UPDATE jobs SET lease_until_ms = {lease_now} + ? WHERE job_id = ? AND lease_owner = ? RETURNING {_COLS}",
                         (*now_params, ms(lease_s), job.job_id, self.owner))
        return None if row is None else _job(row)

    def done(self, job: Job) -> bool:
        """The work is finished: delete the job (if it is still ours; the ledger may have deleted it)."""
        with self.db.transaction(durable=False) as tx:
            return tx.execute("DELETE FROM jobs WHERE job_id = ? AND lease_owner = ?", (job.job_id, self.owner)) > 0

    def retry(self, job: Job, *, after_s: float, error: str | None = None) -> bool:
        """Not finished: due again `after_s` from now, lease released, `error` kept for operators."""
        with self.db.transaction(durable=False) as tx:
            return tx.execute("UPDATE jobs SET due_at_ms = ?, lease_owner = NULL, lease_until_ms = NULL, last_error = ? "
                              "WHERE job_id = ? AND lease_owner = ?",
                              (self.now_ms() + ms(after_s), error, job.job_id, self.owner)) > 0

    def _lease_now(self, tx: Tx) -> tuple[str, tuple[int, ...]]:
        """The database's clock as SQL, with its parameters: PostgreSQL's own (the statement's time,
        not the transaction's start); SQLite's is this host's, the injected clock."""
        if tx.dialect is Dialect.POSTGRES:
            return _PG_CLOCK_MS, ()
        return "?", (self.now_ms(),)

    def get(self, kind: JobKind, hospital_id: str, subject: str) -> Job | None:
        with self.db.transaction(write=False) as tx:
            row = tx.one(f"SELECT {_COLS} FROM jobs WHERE kind = ? AND hospital_id = ? AND subject = ?",
                         (kind.value, hospital_id, subject))
        return None if row is None else _job(row)

    def pending(self, *, hospital_id: str | None = None, limit: int = 1000) -> list[Job]:
        """Every job not finished, soonest due first (`gateway-admin jobs list`)."""
        sql = f"SELECT {_COLS} FROM jobs"
        params: list = []
        if hospital_id is not None:
            sql += " WHERE hospital_id = ?"
            params.append(hospital_id)
        with self.db.transaction(write=False) as tx:
            return [_job(r) for r in tx.all(sql + " ORDER BY due_at_ms, job_id LIMIT ?", (*params, limit))]

    def add(self, kind: JobKind, hospital_id: str, subject: str, *, due_at_ms: int) -> None:
        """Schedule a job outside any ledger transaction (the daily bills job, tests)."""
        with self.db.transaction() as tx:
            schedule(tx, kind, hospital_id, subject, due_at_ms=due_at_ms, now_ms=self.now_ms())
