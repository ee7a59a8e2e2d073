"""The SQLite incident store: records round-trip, old outbox rows are pruned, and every failure (corrupt, full,
read-only, locked) is one clear error the caller goes on after. Its migrations: test_migrations.py."""

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
from bot.delivery.guard import StoreGuard
from bot.store.errors import StoreError
from bot.store.sqlite import Store, open_store


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


async def test_a_corrupt_file_is_reported_once_and_the_caller_goes_on(tmp_path, caplog):
    path = tmp_path / "incidents.db"
    path.write_bytes(b"this is not an sqlite database at all" * 200)
    with caplog.at_level(logging.ERROR):
        store = await open_store(str(path))
    assert store is None
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "corrupt" in errors[0] and "probing and alerting go on" in errors[0]


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
