"""The database side of recovery: who listens on the channel, and the reload NOTIFY itself.

Connections are opened per need with timeouts. Every error becomes a DatabaseError whose text is
scrubbed of the DSN and its password, so it can go to a log line or to Discord.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

import asyncpg
from pydantic import SecretStr

from bot.redact import redact


class DatabaseError(Exception):
    """A database problem described without secrets."""


class ListenerState(StrEnum):
    PRESENT = "present"
    ABSENT = "absent"
    UNKNOWN = "unknown"  # the monitoring role may not read other sessions' queries


@dataclass(frozen=True)
class ListenerStatus:
    state: ListenerState
    listeners: int
    postgrest_backends: int
    detail: str


def dsn_target(dsn: str) -> str:
    """host:port/db for messages, never user or password."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or "localhost"
        port = parts.port or 5432
        db = parts.path.lstrip("/") or "postgres"
        return f"{host}:{port}/{db}"
    except ValueError:
        return "the configured database"


def _describe(err: BaseException, dsn: str, timeout_s: float) -> str:
    target = dsn_target(dsn)
    if isinstance(err, TimeoutError | asyncio.TimeoutError):
        return f"database {target} did not answer within {timeout_s:g} s"
    if isinstance(err, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError):
        return f"database {target} rejected the login (wrong user or password in the DSN)"
    if isinstance(err, asyncpg.InvalidCatalogNameError):
        return f"database {target} does not exist"
    if isinstance(err, ConnectionRefusedError):
        return f"database {target} refused the connection (PostgreSQL down or wrong port)"
    if isinstance(err, socket.gaierror):
        return f"database host in the DSN does not resolve ({target})"
    if isinstance(err, asyncpg.TooManyConnectionsError):
        return f"database {target} has no free connections (too many connections)"
    if isinstance(err, asyncpg.PostgresError):
        sqlstate = getattr(err, "sqlstate", "")
        return redact(f"database {target} error {sqlstate}: {err}", dsn)
    if isinstance(err, OSError):
        return redact(f"cannot reach database {target}: {err.strerror or err}", dsn)
    if isinstance(err, ValueError | asyncpg.InterfaceError):
        return "the database DSN is malformed (expected postgresql://user:password@host:port/db)"
    return redact(f"database error ({type(err).__name__}): {err}", dsn)


@contextlib.asynccontextmanager
async def connect(
    dsn: SecretStr, *, connect_timeout: float, command_timeout: float
) -> AsyncIterator[asyncpg.Connection]:
    raw = dsn.get_secret_value()
    try:
        conn = await asyncpg.connect(raw, timeout=connect_timeout, command_timeout=command_timeout)
    except BaseException as err:
        if isinstance(err, asyncio.CancelledError):
            raise
        raise DatabaseError(_describe(err, raw, connect_timeout)) from None
    try:
        yield conn
    except (asyncpg.PostgresError, OSError, TimeoutError, asyncpg.InterfaceError) as err:
        raise DatabaseError(_describe(err, raw, command_timeout)) from None
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.close(), timeout=1.0)


_LISTENER_SQL = r"""
select
  count(*) filter (where query ~* ('^\s*LISTEN\s+"?' || $1 || '"?\s*;?\s*$')) as listeners,
  count(*) filter (where query = '<insufficient privilege>') as hidden,
  count(*) as backends
from pg_stat_activity
where application_name like 'PostgREST%'
  and datname = current_database()  -- NOTIFY reaches listeners of this database only
  and coalesce(backend_type, 'client backend') = 'client backend'
"""


async def listener_status(conn: asyncpg.Connection, channel: str) -> ListenerStatus:
    """Whether a PostgREST session LISTENs on `channel` (needs pg_read_all_stats to be sure)."""
    row = await conn.fetchrow(_LISTENER_SQL, channel)
    assert row is not None
    listeners, hidden, backends = int(row["listeners"]), int(row["hidden"]), int(row["backends"])
    if listeners:
        return ListenerStatus(
            ListenerState.PRESENT,
            listeners,
            backends,
            f"{listeners} PostgREST session(s) listen on '{channel}'",
        )
    if hidden:
        return ListenerStatus(
            ListenerState.UNKNOWN,
            0,
            backends,
            f"listener unknown: the monitoring role cannot see PostgREST's queries (grant it pg_read_all_stats); "
            f"{backends} PostgREST session(s) connected",
        )
    if backends:
        why = "channel disabled (db-channel-enabled=false), a transaction pooler in between, or PostgREST reconnecting"
        return ListenerStatus(
            ListenerState.ABSENT,
            0,
            backends,
            f"no listener on '{channel}': {backends} PostgREST session(s) connected but none LISTENs ({why})",
        )
    return ListenerStatus(
        ListenerState.ABSENT,
        0,
        0,
        f"no listener on '{channel}': no PostgREST session is connected to this database "
        "(PostgREST down or reconnecting, a transaction pooler in between, or the DSN points at another database)",
    )


async def send_reload(conn: asyncpg.Connection, channel: str) -> float:
    """Send the reload in autocommit (NOTIFY is delivered at commit) and return its execution time in ms."""
    started = time.perf_counter()
    await conn.execute("select pg_notify($1, 'reload schema')", channel)
    return (time.perf_counter() - started) * 1000
