"""The incident store's schema: a fresh file reaches SCHEMA_VERSION, an older one migrates forward keeping its
rows, a newer one is refused, and a migration that fails leaves nothing half-applied."""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime

import pytest

from bot.store import migrations as migrations_module
from bot.store.errors import StoreError
from bot.store.migrations import MIGRATIONS, SCHEMA_VERSION, migrate
from bot.store.sqlite import Store, open_store


def test_a_fresh_database_reaches_the_schema_version_and_records_every_step():
    conn = sqlite3.connect(":memory:", isolation_level=None)
    assert migrate(conn) == SCHEMA_VERSION == len(MIGRATIONS)
    assert [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")] == list(
        range(1, SCHEMA_VERSION + 1)
    )
    assert migrate(conn) == SCHEMA_VERSION  # nothing left to apply: a second run changes nothing
    assert conn.execute("SELECT count(*) FROM schema_version").fetchone() == (SCHEMA_VERSION,)
    conn.close()


def test_each_older_version_migrates_forward_keeping_its_rows(tmp_path):
    for start in range(1, SCHEMA_VERSION):
        conn = sqlite3.connect(tmp_path / f"at-{start}.db", isolation_level=None)
        assert migrate(conn, upto=start) == start
        conn.execute(
            "INSERT INTO incidents (env, opened_at, verdict, trigger) VALUES ('prod', '2026-01-01T00:00:00+00:00', "
            "'unreachable', 'monitor')"
        )
        conn.execute(
            "INSERT INTO audit (at, actor, action, env, outcome) VALUES ('2026-01-01T00:00:00+00:00', 'alice', "
            "'reload', 'prod', 'ok')"
        )
        assert migrate(conn) == SCHEMA_VERSION
        assert conn.execute("SELECT env, verdict FROM incidents").fetchall() == [("prod", "unreachable")]
        assert conn.execute("SELECT actor, outcome, status FROM audit").fetchall() == [("alice", "ok", "done")]
        conn.close()


async def test_an_empty_file_is_migrated_to_the_newest_schema(tmp_path):
    path = tmp_path / "sub" / "incidents.db"
    store = await Store(path).open()
    try:
        assert store.version == SCHEMA_VERSION == len(MIGRATIONS)
        versions = await store.call(lambda: [r[0] for r in store.conn.execute("SELECT version FROM schema_version")])
        tables = await store.call(
            lambda: {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        )
        mode = await store.call(lambda: store.conn.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        await store.close()
    assert versions == list(range(1, SCHEMA_VERSION + 1))
    assert {"incidents", "incident_actions", "audit", "outbox", "silences"} <= tables
    assert mode == "wal"


async def test_a_file_at_the_first_version_is_upgraded_and_keeps_its_incidents(tmp_path):
    path = tmp_path / "incidents.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, upto=1) == 1  # before migration 2 (flapping); every later one is applied at open
    conn.execute(
        "INSERT INTO incidents (env, opened_at, verdict, status, code, trigger) VALUES (?, ?, ?, ?, ?, ?)",
        ("prod", "2026-01-01T00:00:00+00:00", "schema_cache_unavailable", 503, "PGRST002", "monitor"),
    )
    with pytest.raises(sqlite3.OperationalError):  # the previous schema has no flapping column
        conn.execute("SELECT flapping FROM incidents")
    conn.close()

    store = await Store(path).open()
    try:
        (incident,) = await store.open_incidents()
        await store.update_incident(incident.id, flapping=True, last_reminder_at=datetime.now(UTC))
        again = await store.get_incident(incident.id)
    finally:
        await store.close()
    assert store.version == SCHEMA_VERSION
    assert (incident.env, incident.status, incident.code, incident.flapping) == ("prod", 503, "PGRST002", False)
    assert again is not None and again.flapping and again.last_reminder_at is not None


async def test_a_store_from_a_newer_pgrst_ops_is_refused(tmp_path):
    path = tmp_path / "incidents.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn)
    conn.execute("INSERT INTO schema_version VALUES (?, 'later')", (SCHEMA_VERSION + 5,))
    conn.close()
    with pytest.raises(StoreError, match="newer than this pgrst-ops"):
        await Store(path).open()


async def test_a_disk_that_fills_up_during_a_migration_says_disk_full(tmp_path, monkeypatch, caplog):
    """SQLite rolls a transaction back by itself when the disk is full; the migration must not hide that cause."""
    # A backfill bigger than the room left: max_page_count gives a real SQLITE_FULL without filling a disk.
    backfill = (
        "PRAGMA max_page_count = 1; CREATE TABLE backfill (b BLOB); INSERT INTO backfill VALUES (zeroblob(200000))"
    )
    monkeypatch.setattr(migrations_module, "MIGRATIONS", (*MIGRATIONS, backfill))
    path = tmp_path / "incidents.db"
    with caplog.at_level(logging.ERROR):
        assert await open_store(str(path)) is None
    (error,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert "disk full" in error and "cannot rollback" not in error and "probing and alerting go on" in error
    monkeypatch.setattr(migrations_module, "MIGRATIONS", MIGRATIONS)
    store = await Store(path).open()  # the failed migration left nothing half-applied: the next start works
    await store.close()
    assert store.version == SCHEMA_VERSION


def test_the_drift_memory_migration_is_safe_whatever_its_number_ends_up_being(tmp_path):
    conn = sqlite3.connect(tmp_path / "incidents.db", isolation_level=None)
    drift_migration = next(m for m in MIGRATIONS if "drift_memory" in m)
    migrate(conn)
    conn.executescript(drift_migration)  # applied twice (e.g. renumbered at a merge): no error, nothing lost
    assert conn.execute("SELECT count(*) FROM drift_memory").fetchone() == (0,)
    conn.close()
