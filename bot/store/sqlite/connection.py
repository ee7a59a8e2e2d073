"""The SQLite store's connection: one sqlite3 connection in one worker thread, opened and migrated.

Every call is `await store.call(fn, ...)`, so the event loop never blocks on disk; every sqlite or OS error
becomes a StoreError saying what is wrong. The table parts of the store (incidents, audit, outbox, silences,
drift memory) build on this class. Imports sqlite3, the records, the migrations and the error wording.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any, Self, TypeVar

from bot.config import MEMORY_STORE as MEMORY
from bot.core.records import now, ts
from bot.store.columns import OUTBOX_KEEP_DAYS
from bot.store.errors import StoreError, cause_code, describe
from bot.store.migrations import migrate

T = TypeVar("T")


class SqliteConnection:
    """One SQLite connection in a dedicated thread: opening (migrated), closing, and `call` to run work there."""

    def __init__(self, path: str | Path, *, timeout_s: float = 2.0) -> None:
        self.path = str(path)
        self.timeout_s = timeout_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pgrst-ops-store")
        self._conn: sqlite3.Connection | None = None
        self.version = 0

    async def open(self) -> Self:
        await self.call(self._open)
        return self

    def _open(self) -> None:
        try:
            self._connect()
        except sqlite3.Error as err:
            if cause_code(err) == "SQLITE_CANTOPEN" and self.path != MEMORY:
                self._probe_directory(err)
            raise

    def _probe_directory(self, err: sqlite3.Error) -> None:
        """SQLite says only "unable to open": a file created beside it tells why (read-only, disk full, ...)."""
        try:
            with tempfile.TemporaryFile(dir=Path(self.path).parent):
                pass
        except OSError as cause:
            raise cause from err

    def _connect(self) -> None:
        if self.path != MEMORY:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        try:
            if self.path != MEMORY:
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self.version = migrate(conn)
            # delivered messages are kept a while for the record, not forever
            cutoff = ts(now() - timedelta(days=OUTBOX_KEEP_DAYS))
            conn.execute("DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?", (cutoff,))
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=False)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn in the store's thread; every sqlite/OS error becomes a StoreError saying what is wrong."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except StoreError:
            raise
        except (sqlite3.Error, OSError) as err:
            raise StoreError(f"incident store {self.path}: {describe(err)}") from err
        except RuntimeError as err:  # executor shut down
            raise StoreError(f"incident store {self.path} is closed") from err

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"incident store {self.path} is not open")
        return self._conn

    def _exec(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)
