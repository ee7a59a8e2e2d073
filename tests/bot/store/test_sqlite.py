"""The SQLite incident store: every failure (corrupt, full, read-only, locked) is one clear error the caller goes
on after. What every store does (records round-trip, old outbox rows pruned): test_contract.py; its migrations:
test_migrations.py."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

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
