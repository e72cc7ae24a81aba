"""Gateway fixtures: `db` runs a test against SQLite and against a real PostgreSQL server."""

from __future__ import annotations

import pytest

from gateway.db import Database, PostgresDatabase, SqliteDatabase
from tests.gateway.pgserver import PostgresServer, PostgresUnavailable


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """The channel sandbox (WeChat Pay and Alipay on 127.0.0.1), one process per test module."""
    from firmware_sim.sandbox.launcher import SandboxProcess

    process = SandboxProcess(str(tmp_path_factory.mktemp("gateway-sandbox"))).start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def pg_server():
    server = PostgresServer()
    try:
        server.start()
    except PostgresUnavailable as exc:
        server.cleanup()
        pytest.fail(str(exc))
    yield server
    server.cleanup()


@pytest.fixture(params=["sqlite", "postgresql"])
def raw_db(request, tmp_path) -> Database:
    """An empty database of each kind (not migrated)."""
    if request.param == "sqlite":
        db: Database = SqliteDatabase(tmp_path / "gateway.db")
    else:
        db = PostgresDatabase(request.getfixturevalue("pg_server").new_schema())
    yield db
    db.close()


@pytest.fixture
def db(raw_db: Database) -> Database:
    raw_db.migrate()
    return raw_db
