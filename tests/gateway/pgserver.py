"""A real PostgreSQL server in a temporary directory, for the gateway's tests and benchmarks.

Debian's `postgresql` package (the Makefile installs it) keeps initdb and pg_ctl under
/usr/lib/postgresql/<version>/bin, off the PATH. initdb refuses to run as root, which CI is: as root
the server runs as the unprivileged `postgres` user the package creates (through `runuser`).
The server listens on a Unix socket in its own directory only (no TCP port to collide with other
test runs); each test gets a schema of its own (`new_schema`), so one server serves the session.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

PORT = 5432  # only names the socket file: the server has no TCP listener
SUPERUSER = "gw"
# Test speed over durability (a crash test that needs fsync passes durable=True).
FAST_SETTINGS = ("-c fsync=off -c synchronous_commit=off -c full_page_writes=off")


class PostgresUnavailable(RuntimeError):
    pass


def find_bindir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    raise PostgresUnavailable("PostgreSQL is not installed: run `make setup` (it installs Debian's postgresql package)")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


def _children(root: int) -> set[int]:
    found: set[int] = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == root:
            found.add(int(stat.parent.name))
    return found


class PostgresServer:
    def __init__(self, *, durable: bool = False) -> None:
        self.bindir = find_bindir()
        self.dir = Path(tempfile.mkdtemp(prefix="gw-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self._durable = durable
        self._schemas = itertools.count(1)
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            user = "postgres"
            try:
                entry = pwd.getpwnam(user)
            except KeyError:
                raise PostgresUnavailable("running as root and there is no 'postgres' user to run the server as") from None
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
            self._as_user = ["runuser", "-u", user, "--"]

    def _run(self, *args: str) -> None:
        proc = subprocess.run([*self._as_user, *args], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise PostgresUnavailable(f"{' '.join(args[:2])} failed:\n{proc.stdout}\n{proc.stderr}\n{log}")

    def start(self) -> "PostgresServer":
        if not self.data.exists():
            self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
                      "--locale=C", *([] if self._durable else ["--no-sync"]))
        options = f"-k {self.dir} -p {PORT} -c listen_addresses='' -c max_connections=100"
        if not self._durable:
            options += " " + FAST_SETTINGS
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", options, "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def kill_9(self, timeout_s: float = 30.0) -> None:
        """SIGKILL the postmaster and every backend at once (a crash or power cut of the database host,
        as far as the server can tell); returns when they are all gone. `start()` brings it back up
        through crash recovery (durable=True servers lose nothing committed)."""
        import signal
        import time

        root = self.pid()
        pids = {root} | _children(root)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout_s
        while any(Path(f"/proc/{pid}").exists() and _state(pid) != "Z" for pid in pids):
            if time.monotonic() > deadline:
                raise PostgresUnavailable(f"PostgreSQL processes {sorted(pids)} survived SIGKILL")
            time.sleep(0.02)  # waiting for the kernel to reap processes that are not our children
        # A killed postmaster may stay a zombie for a while (its parent is whoever adopted it, which in a
        # container may never reap it), and a zombie's PID still "exists": the lock files it left would
        # stop the next start. After a real crash of the host no process is left; remove them as that.
        for lock in (self.data / "postmaster.pid", self.dir / f".s.PGSQL.{PORT}.lock", self.dir / f".s.PGSQL.{PORT}"):
            lock.unlink(missing_ok=True)

    def conninfo(self, dbname: str = "postgres", *, search_path: str | None = None) -> str:
        info = f"host={self.dir} port={PORT} user={SUPERUSER} dbname={dbname}"
        if search_path:
            info += f" options='-c search_path={search_path}'"
        return info

    def url(self, conninfo: str) -> str:
        """The same connection as a postgresql:// URL (what GATEWAY_DB and `--db` take)."""
        from urllib.parse import quote

        parts = dict(item.split("=", 1) for item in conninfo.split(" ", 4)[:4])
        url = f"postgresql://{parts['user']}@/{parts['dbname']}?host={quote(parts['host'])}&port={parts['port']}"
        if "search_path=" in conninfo:
            url += "&options=" + quote("-c search_path=" + conninfo.split("search_path=")[1].rstrip("'"))
        return url

    def new_schema(self) -> str:
        """A fresh, empty schema; the conninfo whose connections use it."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._schemas)}"
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {name}")
        return self.conninfo(search_path=name)

    def cleanup(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
