"""The PostgreSQL store's connection: one small asyncpg pool, opened and migrated, every call bounded in time.

Every call is `await store.run(fn)` with a pooled connection; an asyncpg, OS or timeout error becomes a
StoreError naming the store by where its DSN comes from ("the PostgreSQL store (environment variable X)"),
never by the DSN. The table parts of the store build on this class. Imports asyncpg, the records, the
migrations and the error wording.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Self, TypeVar

import asyncpg

from bot.core.records import ts
from bot.store.columns import OUTBOX_KEEP_DAYS
from bot.store.errors import StoreError
from bot.store.postgres.errors import describe_pg
from bot.store.postgres.migrate import migrate, quote_ident

T = TypeVar("T")

DEFAULT_SCHEMA = "pgrst_ops"
APPLICATION_NAME = "pgrst-ops store"
POOL_SIZE = 4  # the desk, the outbox drainers and a command or two at once; calls are short

_FAILURES = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


def utc(value: datetime | None) -> datetime | None:
    """A point in time as the store keeps it (UTC), like bot.core.records.ts does for SQLite's text."""
    return value.astimezone(UTC) if value is not None else None


def as_text_row(record: asyncpg.Record) -> dict[str, Any]:
    """A row with its time stamps as SQLite's text, so both stores share the records' from_row."""
    return {k: (ts(v) if isinstance(v, datetime) else v) for k, v in record.items()}


def affected(status: str) -> int:
    """The row count of an asyncpg command status ("UPDATE 3")."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class PgConnection:
    """A small asyncpg pool on the store's schema: opening (migrated), closing, and `run` to use a connection."""

    def __init__(
        self, dsn: str, *, label: str = "the PostgreSQL store", schema: str = DEFAULT_SCHEMA, timeout_s: float = 5.0
    ) -> None:
        self._dsn = dsn
        self.label = label  # how errors name the store: never the DSN
        self.schema = schema
        self.timeout_s = timeout_s
        self._pool: asyncpg.Pool | None = None
        self.version = 0

    def _error(self, err: BaseException, within_s: float | None = None) -> StoreError:
        if isinstance(err, TimeoutError):
            return StoreError(f"{self.label}: no answer within {within_s or self.timeout_s:g} s")
        return StoreError(f"{self.label}: {describe_pg(err, self._dsn)}")

    async def open(self) -> Self:
        pool = asyncpg.create_pool(
            self._dsn,
            # No floor: asyncpg would keep reconnecting it (a warning with a traceback each time) while the
            # database is down; a connection is made when a call needs one, and opening makes the first.
            min_size=0,
            max_size=POOL_SIZE,
            timeout=self.timeout_s,  # connecting
            command_timeout=self.timeout_s,
            max_inactive_connection_lifetime=300,
            server_settings={"search_path": quote_ident(self.schema), "application_name": APPLICATION_NAME},
        )
        bound = self.timeout_s * 4  # connecting, then a first migration creating every table (or waiting for it)
        scope = asyncio.timeout(bound)
        try:
            async with scope:
                await pool
                self._pool = pool
                async with pool.acquire() as conn:
                    self.version = await migrate(conn, self.schema)
                    # delivered messages are kept a while for the record, not forever
                    cutoff = datetime.now(UTC) - timedelta(days=OUTBOX_KEEP_DAYS)
                    await conn.execute("DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < $1", cutoff)
        except StoreError:
            await self._terminate(pool)
            raise
        except (*_FAILURES, ValueError) as err:  # ValueError: asyncpg's reading of a malformed DSN
            await self._terminate(pool)
            raise self._error(
                err, bound if scope.expired() else None
            ) from None  # the cause may hold the DSN: its words are kept, scrubbed
        return self

    async def _terminate(self, pool: asyncpg.Pool) -> None:
        self._pool = None
        with contextlib.suppress(Exception):
            pool.terminate()

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), self.timeout_s)
        except _FAILURES:
            pool.terminate()
        except asyncio.CancelledError:
            pool.terminate()
            raise

    async def run(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """fn with a pooled connection, within the timeout; every asyncpg/OS error becomes a StoreError."""
        pool = self._pool
        if pool is None:
            raise StoreError(f"{self.label} is not open")
        try:
            async with asyncio.timeout(self.timeout_s):
                async with pool.acquire() as conn:
                    return await fn(conn)
        except StoreError:
            raise
        except _FAILURES as err:
            raise self._error(err) from None

    async def execute(self, sql: str, *args: Any) -> str:
        return await self.run(lambda c: c.execute(sql, *args))

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return await self.run(lambda c: c.fetch(sql, *args))

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self.run(lambda c: c.fetchval(sql, *args))
