"""The incident store: migrations (from empty and from the previous version), records, and clear errors."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.core.records import RememberedObject
from bot.delivery.outbox import StoreGuard
from bot.store import sqlite as store_module
from bot.store.sqlite import MIGRATIONS, SCHEMA_VERSION, Store, StoreError, migrate, open_store


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make a file or directory unwritable for real: chmod for a normal user, the immutable flag for root."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("running as root on a file system without the immutable flag: cannot make anything read-only")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


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


async def test_a_corrupt_file_is_reported_once_and_the_caller_goes_on(tmp_path, caplog):
    path = tmp_path / "incidents.db"
    path.write_bytes(b"this is not an sqlite database at all" * 200)
    with caplog.at_level(logging.ERROR):
        store = await open_store(str(path))
    assert store is None
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "corrupt" in errors[0] and "probing and alerting go on" in errors[0]


async def test_a_disk_that_fills_up_during_a_migration_says_disk_full(tmp_path, monkeypatch, caplog):
    """SQLite rolls a transaction back by itself when the disk is full; the migration must not hide that cause."""
    # A backfill bigger than the room left: max_page_count gives a real SQLITE_FULL without filling a disk.
    backfill = (
        "PRAGMA max_page_count = 1; CREATE TABLE backfill (b BLOB); INSERT INTO backfill VALUES (zeroblob(200000))"
    )
    monkeypatch.setattr(store_module, "MIGRATIONS", (*MIGRATIONS, backfill))
    path = tmp_path / "incidents.db"
    with caplog.at_level(logging.ERROR):
        assert await open_store(str(path)) is None
    (error,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert "disk full" in error and "cannot rollback" not in error and "probing and alerting go on" in error
    monkeypatch.setattr(store_module, "MIGRATIONS", MIGRATIONS)
    store = await Store(path).open()  # the failed migration left nothing half-applied: the next start works
    await store.close()
    assert store.version == SCHEMA_VERSION


async def test_a_full_disk_while_running_is_logged_once_and_the_caller_goes_on(tmp_path, caplog):
    store = await Store(tmp_path / "incidents.db").open()
    await store.call(lambda: store.conn.execute("PRAGMA max_page_count = 1"))
    guard = StoreGuard(store)
    try:
        with caplog.at_level(logging.ERROR):
            for _ in range(3):
                assert await guard(lambda s: s.audit("alice", "reload", "prod", "x" * 100_000)) is None
    finally:
        await store.close()
    (error,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert "disk full" in error and guard.error is not None and "disk full" in guard.error


async def test_a_read_only_file_or_directory_is_named_as_such(tmp_path, caplog):
    path = tmp_path / "ro" / "incidents.db"
    store = await Store(path).open()
    await store.close()
    with read_only(path), caplog.at_level(logging.ERROR):
        assert await open_store(str(path)) is None
    new = tmp_path / "ro-dir" / "incidents.db"
    new.parent.mkdir()
    with read_only(new.parent), caplog.at_level(logging.ERROR):
        assert await open_store(str(new)) is None
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2 and all("read-only" in e and "probing and alerting go on" in e for e in errors), errors


async def test_a_store_locked_by_another_connection_at_start_says_locked(tmp_path, caplog):
    path = tmp_path / "incidents.db"
    await (await Store(path).open()).close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        store = Store(path, timeout_s=0.1)
        with pytest.raises(StoreError, match="locked by another process"):
            await store.open()
        await store.close()
    finally:
        other.close()


async def test_a_locked_database_is_a_store_error_and_the_guard_logs_it_once(tmp_path, caplog):
    path = tmp_path / "incidents.db"
    store = Store(path, timeout_s=0.1)
    await store.open()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    guard = StoreGuard(store)
    try:
        with caplog.at_level(logging.ERROR):
            for _ in range(3):
                result = await guard(lambda s: s.audit("alice", "reload", "prod", "recovered"))
                assert result is None
        assert guard.error is not None and "locked" in guard.error
        assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1
        other.execute("ROLLBACK")
        guard.CLEAR_AFTER_S = 0
        await guard(lambda s: s.audit("alice", "reload", "prod", "recovered"))
        assert guard.error is None
        (entry,) = await store.audit_log()
    finally:
        other.close()
        await store.close()
    assert (entry.actor, entry.action, entry.env, entry.outcome) == ("alice", "reload", "prod", "recovered")


async def test_incidents_actions_outbox_and_silences_round_trip():
    store = await Store(":memory:").open()
    try:
        opened = datetime.now(UTC) - timedelta(minutes=5)
        incident = await store.open_incident(
            "prod", opened_at=opened, verdict="postgrest_down", status=None, code=None, trigger="monitor"
        )
        await store.add_action(incident.id, "alice", "ack")
        await store.update_incident(incident.id, resolved_at=datetime.now(UTC), resolution="manual_reload")
        (stored,) = await store.recent_incidents("prod")
        actions = await store.actions(incident.id)
        row = await store.outbox_add("prod", "post", {"content": "x"}, {"incident_id": incident.id}, "nonce1")
        pending = await store.outbox_pending()
        await store.outbox_sent(row, {"channel_id": 1, "message_id": 2})
        still = await store.outbox_pending()
        until = datetime.now(UTC) + timedelta(hours=1)
        await store.add_silence("prod", until, "deploy", "bob")
        (silence,) = await store.active_silences()
        await store.end_silence("prod")
        ended = await store.active_silences()
    finally:
        await store.close()
    assert stored.resolution == "manual_reload" and stored.duration_s is not None and stored.duration_s >= 299
    assert [(a[1], a[2]) for a in actions] == [("alice", "ack")]
    assert [p.nonce for p in pending] == ["nonce1"] and pending[0].meta == {"incident_id": incident.id}
    assert still == [] and (silence.reason, silence.actor) == ("deploy", "bob") and ended == []


async def test_delivered_outbox_rows_older_than_30_days_are_pruned_at_open(tmp_path):
    path = tmp_path / "incidents.db"
    store = await Store(path).open()
    old = await store.outbox_add("prod", "post", {"content": "old"}, {}, "n-old")
    await store.outbox_sent(old, {"message_id": 1})
    await store.outbox_add("prod", "post", {"content": "unsent"}, {}, "n-unsent")
    await store.call(
        lambda: store.conn.execute("UPDATE outbox SET sent_at = '2020-01-01T00:00:00+00:00' WHERE id = ?", (old,))
    )
    await store.close()
    store = await Store(path).open()
    try:
        assert await store.outbox_count() == 1 and [r.nonce for r in await store.outbox_pending()] == ["n-unsent"]
    finally:
        await store.close()


async def test_drift_memory_is_replaced_per_environment_and_survives_a_reopen(tmp_path):
    path = tmp_path / "incidents.db"
    store = await Store(path).open()
    try:
        await store.replace_drift_memory("prod", [RememberedObject("relation", "public", "orders")])
        await store.replace_drift_memory("dev", [RememberedObject("column", "public", "t", "c")])
        await store.replace_drift_memory(
            "prod", [RememberedObject("function", "api", "add", detail='[[["a", "b"], null]]')]
        )
    finally:
        await store.close()
    again = await Store(path).open()
    try:
        assert await again.drift_memory("prod") == [
            RememberedObject("function", "api", "add", "", '[[["a", "b"], null]]')
        ]
        assert await again.drift_memory("dev") == [RememberedObject("column", "public", "t", "c")]
        assert await again.drift_memory("qa") == []
    finally:
        await again.close()


def test_the_drift_memory_migration_is_safe_whatever_its_number_ends_up_being(tmp_path):
    conn = sqlite3.connect(tmp_path / "incidents.db", isolation_level=None)
    drift_migration = next(m for m in MIGRATIONS if "drift_memory" in m)
    migrate(conn)
    conn.executescript(drift_migration)  # applied twice (e.g. renumbered at a merge): no error, nothing lost
    assert conn.execute("SELECT count(*) FROM drift_memory").fetchone() == (0,)
    conn.close()
