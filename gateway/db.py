"""Storage behind one interface: SQLite (the embedded default) and PostgreSQL (production).

    db = open_database("sqlite:/var/lib/gateway/gateway.db")      # or "postgresql://gw@db/gateway"
    db.migrate()
    with db.transaction() as tx:                                 # a write transaction
        row = tx.one("SELECT amount_fen FROM payments WHERE payment_id = ?" + tx.for_update, (pid,))
        tx.execute("UPDATE ...", (...))

Everything above this module (tenancy, ledger, API) is written once against `Database` and `Tx`:
SQL uses `?` placeholders and the subset both engines share; the few differences live here:

- write transactions: SQLite `BEGIN IMMEDIATE` (the database write lock is taken at once, so a
  read-then-write cannot interleave with another writer); PostgreSQL `BEGIN` plus
  `SELECT ... FOR UPDATE` on the rows the decision depends on (`tx.for_update` is that clause on
  PostgreSQL and empty on SQLite, where the whole database is already locked);
- a unique-constraint violation is `UniqueViolation` on both, so "one order, one payment" is
  enforced by the database and reported the same way;
- connections come from a small pool (one connection per concurrent transaction); the gateway is
  stateless above the database, so several processes can share one PostgreSQL;
- `tx.batch([...])` runs statements that do not depend on one another's results: one after the
  other on SQLite, in one round trip on PostgreSQL (psycopg's pipeline mode), the hot path's way of
  paying one network exchange for several statements (docs/gateway.md, Performance);
- `db.counters` counts the statements sent and the round trips made (a test keeps a payment's
  count from growing back; the bench reports it).
"""

from __future__ import annotations

import abc
import enum
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from gateway.errors import GatewayCode, GatewayError

# Wait this long for another connection's write lock (SQLite) before failing the transaction.
SQLITE_BUSY_TIMEOUT_S = 30.0
# Idle connections kept for reuse; more may be open while that many transactions run at once.
POOL_IDLE_MAX = 8
# A PostgreSQL server that does not answer a connection in this long is unavailable (a request then
# gets `database_unavailable` 503, and the POS queries later) rather than hanging the request.
PG_CONNECT_TIMEOUT_S = 5

Param = int | str | bytes | None
Row = tuple


class Dialect(enum.Enum):
    SQLITE = "sqlite"
    POSTGRES = "postgresql"


class UniqueViolation(Exception):
    """An INSERT or UPDATE would break a UNIQUE constraint or index (`detail` names it if known)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Counters:
    """Statements sent to the database and round trips made, since the database was opened (exact
    under concurrency: a lock per count, ~0.1 us, next to a statement's tens of microseconds)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.statements = 0
        self.round_trips = 0

    def add(self, statements: int, round_trips: int) -> None:
        with self._lock:
            self.statements += statements
            self.round_trips += round_trips

    def snapshot(self) -> tuple[int, int]:
        with self._lock:
            return self.statements, self.round_trips


@dataclass(frozen=True, slots=True)
class Result:
    """One statement's outcome in a `Tx.batch`: the rows it returned and the rows it changed."""

    rows: list["Row"]
    rowcount: int


class Tx(abc.ABC):
    """One transaction. Rows are plain tuples in the order of the SELECT list."""

    dialect: Dialect

    @property
    def for_update(self) -> str:
        """Append to a SELECT whose rows the transaction's decision depends on."""
        return " FOR UPDATE" if self.dialect is Dialect.POSTGRES else ""

    @abc.abstractmethod
    def execute(self, sql: str, params: Sequence[Param] = ()) -> int:
        """Run one statement; the number of rows it changed."""

    @abc.abstractmethod
    def all(self, sql: str, params: Sequence[Param] = ()) -> list[Row]: ...

    def one(self, sql: str, params: Sequence[Param] = ()) -> Row | None:
        rows = self.all(sql, params)
        return rows[0] if rows else None

    def scalar(self, sql: str, params: Sequence[Param] = ()) -> Param:
        row = self.one(sql, params)
        return None if row is None else row[0]

    @abc.abstractmethod
    def batch(self, statements: Sequence[tuple[str, Sequence[Param]]]) -> list[Result]:
        """Run statements none of which needs another's result, in order; each one's `Result`. The
        first error is raised (a UNIQUE violation as `UniqueViolation`) and the transaction must then
        be rolled back: on PostgreSQL the statements after the failing one were not run."""


class Database(abc.ABC):
    dialect: Dialect
    url: str
    counters: Counters

    @abc.abstractmethod
    @contextmanager
    def transaction(self, *, write: bool = True, durable: bool = True) -> Iterator[Tx]:
        """Commit when the block ends, roll back if it raises.

        `durable=False`: the commit does not wait for the disk (SQLite synchronous=NORMAL in WAL
        mode; PostgreSQL `SET LOCAL synchronous_commit = off`). A crash or power cut may then lose
        this transaction (never corrupt anything), until the next durable commit, which flushes it
        too. Only for writes whose loss the callers are built to survive (docs/gateway.md, "Commits")."""

    @abc.abstractmethod
    @contextmanager
    def reads(self) -> Iterator[Tx]:
        """Read-only statements that need no common snapshot, each run on its own (autocommit): no
        BEGIN and COMMIT around them, which on PostgreSQL are two round trips more per read. For the
        hot single-row reads of every request (a device, a hospital's credentials version, a payment)."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def migrate(self) -> int:
        """Bring the schema up to date; the version it is at."""
        from gateway.migrations import migrate

        return migrate(self)

    def schema_version(self) -> int:
        from gateway.migrations import current_version

        return current_version(self)


class _Pool:
    def __init__(self, connect) -> None:
        self._connect = connect
        self._idle: list[object] = []
        self._lock = threading.Lock()
        self._closed = False

    def get(self):
        with self._lock:
            if self._closed:
                raise GatewayError(GatewayCode.BAD_CONFIG, "the database has been closed")
            if self._idle:
                return self._idle.pop()
        return self._connect()

    def put(self, conn, healthy: bool) -> None:
        with self._lock:
            if healthy and not self._closed and len(self._idle) < POOL_IDLE_MAX:
                self._idle.append(conn)
                return
        conn.close()

    def drop_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


# --- SQLite -------------------------------------------------------------------------------------


class _SqliteTx(Tx):
    dialect = Dialect.SQLITE

    def __init__(self, conn: sqlite3.Connection, counters: Counters) -> None:
        self._conn = conn
        self._counters = counters

    def execute(self, sql: str, params: Sequence[Param] = ()) -> int:
        self._counters.add(1, 1)
        try:
            return self._conn.execute(sql, tuple(params)).rowcount
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc):
                raise UniqueViolation(str(exc)) from None
            raise

    def all(self, sql: str, params: Sequence[Param] = ()) -> list[Row]:
        self._counters.add(1, 1)
        try:
            return self._conn.execute(sql, tuple(params)).fetchall()
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc):
                raise UniqueViolation(str(exc)) from None
            raise

    def batch(self, statements: Sequence[tuple[str, Sequence[Param]]]) -> list[Result]:
        results = []
        for sql, params in statements:
            self._counters.add(1, 1)
            try:
                cursor = self._conn.execute(sql, tuple(params))
                rows = cursor.fetchall()  # a RETURNING statement's rowcount is known once its rows are read
            except sqlite3.IntegrityError as exc:
                if "UNIQUE" in str(exc):
                    raise UniqueViolation(str(exc)) from None
                raise
            results.append(Result(rows, cursor.rowcount))
        return results


class SqliteDatabase(Database):
    """A file on local disk, WAL mode, synchronous=FULL: a committed payment survives a power cut."""

    dialect = Dialect.SQLITE

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.url = f"sqlite:{self.path}"
        self.counters = Counters()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._pool = _Pool(self._connect)
        # Switch the file to WAL once, here: concurrent first connections racing to change the
        # journal mode can fail with "database is locked" (the mode change does not wait).
        self._pool.put(self._connect(), True)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=SQLITE_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @contextmanager
    def transaction(self, *, write: bool = True, durable: bool = True) -> Iterator[Tx]:
        # synchronous is a per-connection setting, set for a relaxed commit and back after it. Not a
        # pool of relaxed connections: SQLite drops a connection's page cache whenever another one
        # has written, so a payment's two transactions on two connections reread their pages each
        # time (~0.2 ms of CPU a payment, more than the two PRAGMAs).
        relaxed = write and not durable
        conn = self._pool.get()
        healthy = False
        try:
            if relaxed:
                self._run(conn, "PRAGMA synchronous=NORMAL")
            self._run(conn, "BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield _SqliteTx(conn, self.counters)
            except BaseException:
                self._run(conn, "ROLLBACK")
                healthy = True
                raise
            self._run(conn, "COMMIT")
            healthy = True
        finally:
            if relaxed and healthy:
                try:
                    self._run(conn, "PRAGMA synchronous=FULL")
                except sqlite3.Error:
                    healthy = False  # never lend out a connection whose commits may not wait for the disk
            self._pool.put(conn, healthy)

    def _run(self, conn: sqlite3.Connection, sql: str) -> None:
        self.counters.add(1, 1)
        conn.execute(sql)

    @contextmanager
    def reads(self) -> Iterator[Tx]:
        conn = self._pool.get()
        healthy = False
        try:
            yield _SqliteTx(conn, self.counters)  # isolation_level=None: each statement is its own transaction
            healthy = True
        finally:
            self._pool.put(conn, healthy or not conn.in_transaction)

    def close(self) -> None:
        self._pool.close()


# --- PostgreSQL ---------------------------------------------------------------------------------


def _pg_rows(cur) -> list[Row]:  # type: ignore[no-untyped-def]  # a psycopg cursor; psycopg is imported lazily
    return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in cur.fetchall()]


class _PostgresTx(Tx):
    """A transaction on a pooled connection. Its BEGIN is sent with its first exchange: in front of
    a batch, in the same round trip (`batch`); on its own before a single statement. A pooled
    connection that died with the server (a restart, kill -9, a failover) fails that first exchange
    before anything was done: it and every other idle one are dropped, and the exchange is made
    again, BEGIN included, on a fresh connection."""

    dialect = Dialect.POSTGRES

    def __init__(self, conn, counters: Counters, db: "PostgresDatabase | None" = None, begin: tuple[str, ...] = ()) -> None:
        self._conn = conn
        self._counters = counters
        self._db = db
        self._begin = begin  # statements still to send before the first one (BEGIN, SET LOCAL)

    @property
    def conn(self):  # type: ignore[no-untyped-def]  # a psycopg connection; psycopg is imported lazily (SQLite-only installs)
        return self._conn

    @property
    def begun(self) -> bool:
        """Whether anything was sent (a transaction that sent nothing has nothing to commit)."""
        return not self._begin

    def _first(self, exchange):  # type: ignore[no-untyped-def]  # a callable over the connection, its result
        """Run the transaction's first exchange, once more on a fresh connection if the pooled one was dead."""
        import psycopg

        try:
            return exchange()
        except psycopg.Error:
            if self._db is None or not (self._conn.closed or self._conn.broken):
                raise
        self._conn.close()
        self._db._pool.drop_idle()
        self._conn = self._db._connect()
        return exchange()

    def _open(self) -> None:
        if self._begin:
            begin = self._begin
            self._counters.add(len(begin), 1)
            self._first(lambda: self._conn.execute("; ".join(begin)))  # one simple-query message
            self._begin = ()

    def _run(self, sql: str, params: Sequence[Param]):
        import psycopg

        self._open()
        self._counters.add(1, 1)
        # Our SQL never contains a literal '?' or '%': the placeholder swap is exact.
        try:
            return self._conn.execute(sql.replace("?", "%s"), tuple(params))
        except psycopg.errors.UniqueViolation as exc:
            raise UniqueViolation(exc.diag.constraint_name or str(exc)) from None

    def execute(self, sql: str, params: Sequence[Param] = ()) -> int:
        return self._run(sql, params).rowcount

    def all(self, sql: str, params: Sequence[Param] = ()) -> list[Row]:
        return _pg_rows(self._run(sql, params))

    def batch(self, statements: Sequence[tuple[str, Sequence[Param]]]) -> list[Result]:
        import psycopg

        begin, self._begin = self._begin, ()
        self._counters.add(len(begin) + len(statements), 1)

        def exchange() -> list:
            cursors = []
            with self._conn.pipeline():  # sent together, one Sync at the end: one round trip
                for sql in begin:
                    self._conn.execute(sql)
                for sql, params in statements:
                    cursors.append(self._conn.execute(sql.replace("?", "%s"), tuple(params)))
            return cursors

        try:
            cursors = self._first(exchange) if begin else exchange()
        except psycopg.errors.UniqueViolation as exc:
            raise UniqueViolation(exc.diag.constraint_name or str(exc)) from None
        return [Result(_pg_rows(cur) if cur.description is not None else [], cur.rowcount) for cur in cursors]


class _PostgresReadTx(_PostgresTx):
    """`PostgresDatabase.reads()`: a pooled connection that died with the server (a restart, kill -9,
    a failover) fails its first statement; that statement, a read in autocommit, is run again once
    on a fresh connection, as `transaction()` does at BEGIN."""

    def __init__(self, db: "PostgresDatabase", conn) -> None:
        super().__init__(conn, db.counters, db)
        self._fresh = False

    def _run(self, sql: str, params: Sequence[Param]):
        import psycopg

        try:
            return super()._run(sql, params)
        except (psycopg.OperationalError, psycopg.InterfaceError):
            if self._fresh:
                raise
            self._fresh = True
            self._conn.close()
            self._db._pool.drop_idle()
            self._conn = self._db._connect()
            return super()._run(sql, params)


class PostgresDatabase(Database):
    """A PostgreSQL server through psycopg 3; `conninfo` is a libpq URL or key=value string."""

    dialect = Dialect.POSTGRES

    def __init__(self, conninfo: str) -> None:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise GatewayError(GatewayCode.BAD_CONFIG, "PostgreSQL needs psycopg: pip install 'psycopg[binary]'") from None
        self.url = conninfo
        self.counters = Counters()
        self._pool = _Pool(self._connect)

    def _connect(self):
        import psycopg

        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=PG_CONNECT_TIMEOUT_S)
        except psycopg.OperationalError as exc:
            raise GatewayError(GatewayCode.DATABASE_UNAVAILABLE, f"cannot connect to PostgreSQL: {str(exc).strip()}") from None

    @contextmanager
    def transaction(self, *, write: bool = True, durable: bool = True) -> Iterator[Tx]:
        import psycopg

        # A relaxed commit is set right after BEGIN, in the same round trip (see _PostgresTx).
        begin = (("BEGIN",) if durable else ("BEGIN", "SET LOCAL synchronous_commit = off")) if write else ("BEGIN READ ONLY",)
        tx = _PostgresTx(self._pool.get(), self.counters, self, begin)
        healthy = False
        try:
            try:
                yield tx
            except BaseException:
                if not tx.begun:
                    healthy = True  # nothing was sent: nothing to roll back
                elif not tx.conn.closed:
                    try:
                        self.counters.add(1, 1)
                        tx.conn.execute("ROLLBACK")
                        healthy = True
                    except psycopg.Error:
                        pass
                raise
            if tx.begun:
                self.counters.add(1, 1)
                tx.conn.execute("COMMIT")
            healthy = True
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            # The server went away mid-transaction (or at COMMIT, when it is unknown whether the
            # commit happened): the caller learns the database is unavailable, never a half answer.
            raise GatewayError(GatewayCode.DATABASE_UNAVAILABLE, f"PostgreSQL went away: {str(exc).strip() or exc.__class__.__name__}") from None
        finally:
            self._pool.put(tx.conn, healthy and not tx.conn.closed)

    @contextmanager
    def reads(self) -> Iterator[Tx]:
        import psycopg

        tx = _PostgresReadTx(self, self._pool.get())
        healthy = True
        try:
            yield tx  # an autocommit connection: each statement is its own transaction
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            healthy = False
            raise GatewayError(GatewayCode.DATABASE_UNAVAILABLE, f"PostgreSQL went away: {str(exc).strip() or exc.__class__.__name__}") from None
        except psycopg.Error:
            healthy = False
            raise
        finally:
            self._pool.put(tx.conn, healthy and not tx.conn.closed)

    def close(self) -> None:
        self._pool.close()


def open_database(url: str) -> Database:
    """`sqlite:PATH` (also `sqlite:///PATH`) or `postgresql://...` / `postgres://...`."""
    if url.startswith("sqlite:"):
        path = url[len("sqlite:"):]
        if path.startswith("//"):
            path = path[2:]
        if not path or path == ":memory:":
            raise GatewayError(GatewayCode.BAD_DATABASE_URL, f"{url!r}: give a file path, e.g. sqlite:/var/lib/gateway/gateway.db")
        return SqliteDatabase(Path(path))
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(url)
    raise GatewayError(GatewayCode.BAD_DATABASE_URL, f"{url!r}: the database URL must start with sqlite: or postgresql://")
