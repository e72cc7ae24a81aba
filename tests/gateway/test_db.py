"""Storage: URLs, versioned migrations, concurrent migrators, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import pytest

from gateway import migrations
from gateway.db import Dialect, open_database
from gateway.errors import GatewayCode, GatewayError


def test_migrate_is_versioned_and_idempotent(raw_db) -> None:
    assert raw_db.schema_version() == 0
    assert raw_db.migrate() == migrations.LATEST
    assert raw_db.migrate() == migrations.LATEST
    with raw_db.transaction(write=False) as tx:
        rows = tx.all("SELECT version FROM schema_migrations ORDER BY version")
    assert [r[0] for r in rows] == [m.version for m in migrations.MIGRATIONS]


def test_a_migration_that_landed_after_a_higher_one_still_runs(raw_db) -> None:
    """Branches can land in another order than their numbers: a database that ran 8 before 5 existed
    in the code (the real history of 5 and 8) gets 5 on its next start, once."""
    numbers = [m.version for m in migrations.MIGRATIONS]
    assert 5 in numbers and 8 in numbers
    late = next(m for m in migrations.MIGRATIONS if m.version == 5)
    migrations.migrate(raw_db, upto=4)
    with raw_db.transaction() as tx:  # what the code without migration 5 did: 8 applied on top of 4
        eight = next(m for m in migrations.MIGRATIONS if m.version == 8)
        for statement in eight.statements:
            tx.execute(statement.format(**migrations._SPELLING[tx.dialect]))
        tx.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (8, ?, 0)", (eight.name,))
    assert raw_db.migrate() == migrations.LATEST
    with raw_db.transaction(write=False) as tx:
        applied = [r[0] for r in tx.all("SELECT version FROM schema_migrations ORDER BY version")]
        marks = tx.scalar("SELECT COUNT(*) FROM device_journal_marks")  # migration 5's table exists
    assert applied == numbers and marks == 0 and late.version in applied
    assert raw_db.migrate() == migrations.LATEST  # and only once


@pytest.mark.parametrize("first", [10, 11])
def test_the_job_kinds_of_10_and_11_both_hold_whichever_ran_first(raw_db, first) -> None:
    """Migrations 10 (wechat_certs) and 11 (alipay_token), written on parallel branches, each change
    jobs.kind's CHECK: whichever order a database gets them in, both kinds are accepted afterwards."""
    migrations.migrate(raw_db, upto=8)
    with raw_db.transaction() as tx:  # what a gateway knowing only `first` did
        m = next(m for m in migrations.MIGRATIONS if m.version == first)
        statements = m.postgres if tx.dialect is Dialect.POSTGRES and m.postgres is not None else m.statements
        for statement in statements:
            tx.execute(statement.format(**migrations._SPELLING[tx.dialect]))
        tx.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, 0)", (first, m.name))
    assert raw_db.migrate() == migrations.LATEST
    with raw_db.transaction() as tx:
        tx.execute("INSERT INTO hospitals (hospital_id, name, mode, txn_limit_fen, created_at) VALUES ('H1', 'h', 'direct', 100, 0)")
        for kind in ("payment", "refund", "bills", "wechat_certs", "alipay_token"):
            tx.execute("INSERT INTO jobs (kind, hospital_id, subject, due_at_ms, created_at_ms) VALUES (?, 'H1', 's', 0, 0)", (kind,))
    with pytest.raises(Exception):  # noqa: B017 - either engine's CHECK violation
        with raw_db.transaction() as tx:
            tx.execute("INSERT INTO jobs (kind, hospital_id, subject, due_at_ms, created_at_ms) VALUES ('nonsense', 'H1', 's', 0, 0)")


def test_two_processes_migrating_at_once_apply_each_migration_once(raw_db) -> None:
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            raw_db.migrate()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with raw_db.transaction(write=False) as tx:
        assert tx.scalar("SELECT COUNT(*) FROM schema_migrations") == len(migrations.MIGRATIONS)


def test_a_database_newer_than_the_code_is_refused(db) -> None:
    with db.transaction() as tx:
        tx.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'from the future', 0)", (migrations.LATEST + 1,))
    with pytest.raises(GatewayError) as info:
        db.migrate()
    assert info.value.code is GatewayCode.SCHEMA_TOO_NEW


def test_a_failed_transaction_leaves_nothing_behind(db) -> None:
    with pytest.raises(RuntimeError):
        with db.transaction() as tx:
            tx.execute("INSERT INTO audit (at, actor, action, subject, detail) VALUES (1, 'a', 'b', 'c', '{}')")
            raise RuntimeError("crash between two statements")
    with db.transaction(write=False) as tx:
        assert tx.scalar("SELECT COUNT(*) FROM audit") == 0


@pytest.mark.parametrize("url", ["sqlite:", "sqlite::memory:", "mysql://x", "gateway.db"])
def test_bad_database_urls_say_what_is_expected(url) -> None:
    with pytest.raises(GatewayError) as info:
        open_database(url)
    assert info.value.code is GatewayCode.BAD_DATABASE_URL


def test_sqlite_urls(tmp_path) -> None:
    for url in (f"sqlite:{tmp_path}/a.db", f"sqlite://{tmp_path}/b.db"):
        db = open_database(url)
        assert db.migrate() == migrations.LATEST
        db.close()
    assert (tmp_path / "a.db").exists() and (tmp_path / "b.db").exists()


def test_sqlite_durable_commits_flush_and_relaxed_ones_do_not(tmp_path) -> None:
    """A durable transaction runs with synchronous=FULL (the commit waits for the disk), a relaxed one
    with NORMAL (docs/gateway.md, "Commits"), on the same pooled connection: a relaxed transaction,
    committed or rolled back, never leaves its setting to the next transaction."""
    from gateway.db import SqliteDatabase

    db = SqliteDatabase(tmp_path / "g.db")
    try:
        for _ in range(3):
            with db.transaction() as tx:
                assert tx.scalar("PRAGMA synchronous") == 2
            with db.transaction(durable=False) as tx:
                assert tx.scalar("PRAGMA synchronous") == 1
            with pytest.raises(ZeroDivisionError), db.transaction(durable=False) as tx:
                assert tx.scalar("PRAGMA synchronous") == 1
                1 / 0
            with db.reads() as tx:
                assert tx.scalar("PRAGMA synchronous") == 2
    finally:
        db.close()


def test_reads_see_what_was_committed_and_need_no_transaction(db) -> None:
    db.migrate()
    with db.transaction() as tx:
        tx.execute("INSERT INTO audit (at, actor, action, subject, detail) VALUES (1, 'a', 'x', 's', '{}')")
    with db.reads() as tx:
        assert tx.scalar("SELECT COUNT(*) FROM audit WHERE action = 'x'") == 1
