"""The database side of recovery: who listens on the channel, and the reload NOTIFY itself.

Connections are opened per need with timeouts. Every error becomes a DatabaseError whose text is
scrubbed of the DSN and its password, so it can go to a log line or to Discord.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from urllib.parse import urlsplit

import asyncpg
from pydantic import SecretStr

from bot.config.secrets import DSN_SHAPE
from bot.core.listener import ListenerSession, ListenerState, ListenerStatus
from bot.redact import redact


class DatabaseError(Exception):
    """A database problem described without secrets."""


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
        return f"the database DSN is malformed (expected {DSN_SHAPE})"
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


def postgrest_session(alias: str, role_param: str) -> str:
    """SQL predicate: the pg_stat_activity row `alias` is one of PostgREST's own sessions.

    The one rule for "is this PostgREST?" (listener, lock waits, blocking sessions): PostgREST logs in as the
    authenticator role. Never its application_name: that is 'PostgREST <version>' only when the db-uri names none
    (Supabase's says 'postgrest'), and any other program, or another project's PostgREST, may carry it.
    `role_param` is a placeholder such as '$2' bound to the configured authenticator_role.
    """
    return f"({alias}.usename = {role_param})"


def listen_pattern(channel: str) -> str:
    """A PostgreSQL regex for the statement a session listening on `channel` shows: LISTEN "<channel>"."""
    # re.escape only puts backslashes before punctuation, which PostgreSQL's regexes read as that character.
    quoted, bare = re.escape(channel.replace('"', '""')), re.escape(channel)
    return rf'^\s*[Ll][Ii][Ss][Tt][Ee][Nn]\s+("{quoted}"|{bare})\s*;?\s*$'


# The bot's own LISTEN sessions (the catalog watch's), by session identity: (backend pid, backend start). A
# session of ours that LISTENs on PostgREST's channel is not PostgREST listening, and must never be counted so.
_OWN_LISTENERS: set[tuple[int, datetime]] = set()


@contextlib.asynccontextmanager
async def listening(
    conn: asyncpg.Connection, channel: str, callback: Callable[[object, int, str, str], None]
) -> AsyncIterator[None]:
    """LISTEN on `channel` for as long as the block runs, known to `listener_status` as one of ours."""
    row = await conn.fetchrow("select pid, backend_start from pg_stat_activity where pid = pg_backend_pid()")
    assert row is not None
    session = (int(row["pid"]), row["backend_start"])
    _OWN_LISTENERS.add(session)
    try:
        await conn.add_listener(channel, callback)
        yield
    finally:
        _OWN_LISTENERS.discard(session)


HIDDEN_QUERY = "<insufficient privilege>"
_POOLER_NAME = re.compile(r"pgbouncer|supavisor|odyssey|pgcat", re.I)
_LISTENER_SQL = f"""
select a.application_name, a.usename::text as usename, host(a.client_addr) as client_addr,
       coalesce(a.query ~ $1, false) as listens, a.query = '{HIDDEN_QUERY}' as hidden,
       coalesce({postgrest_session("a", "$2")}, false) as postgrest
from pg_stat_activity a
where a.datname = current_database()  -- NOTIFY reaches listeners of this database only
  and coalesce(a.backend_type, 'client backend') = 'client backend'
  and a.pid <> pg_backend_pid()
  and not exists (select 1 from unnest($3::int[], $4::timestamptz[]) as ours(pid, started)
                  where ours.pid = a.pid and ours.started = a.backend_start)  -- the bot's own listeners
  and (a.query ~ $1 or a.query = '{HIDDEN_QUERY}' or {postgrest_session("a", "$2")})
limit 500
"""


def _who(sessions: list[ListenerSession]) -> str:
    shown = "; ".join(s.describe() for s in sessions[:3])
    return shown + (f"; and {len(sessions) - 3} more" if len(sessions) > 3 else "")


async def listener_status(conn: asyncpg.Connection, channel: str, authenticator_role: str) -> ListenerStatus:
    """Who LISTENs on `channel` in this database, and whether it is PostgREST (needs pg_read_all_stats)."""
    ours = sorted(_OWN_LISTENERS)
    rows = await conn.fetch(
        _LISTENER_SQL, listen_pattern(channel), authenticator_role, [p for p, _ in ours], [t for _, t in ours]
    )
    sessions = [
        ListenerSession(r["application_name"] or "", r["usename"] or "", r["client_addr"], bool(r["postgrest"]))
        for r in rows
        if r["listens"]
    ]
    postgrest = [s for s in sessions if s.postgrest]
    others = [s for s in sessions if not s.postgrest]
    hidden = sum(1 for r in rows if r["hidden"])
    backends = sum(1 for r in rows if r["postgrest"])
    pooled = sum(1 for r in rows if r["postgrest"] and _POOLER_NAME.search(r["application_name"] or ""))

    def status(state: ListenerState, detail: str) -> ListenerStatus:
        return ListenerStatus(state, len(sessions), backends, detail, tuple(sessions), pooled)

    if postgrest:
        return status(
            ListenerState.PRESENT, f"{len(postgrest)} PostgREST session(s) listen on '{channel}': {_who(postgrest)}"
        )
    if hidden:
        return status(
            ListenerState.UNKNOWN,
            "listener unknown: the monitoring role cannot see other sessions' queries (grant it pg_read_all_stats); "
            f"{backends} session(s) of {authenticator_role} connected",
        )
    if others and not backends:
        # Nothing logs in as the configured role: this may be PostgREST under another role, or another program.
        return status(
            ListenerState.PRESENT,
            f"{len(others)} session(s) listen on '{channel}', none as {authenticator_role} (authenticator_role): "
            f"{_who(others)}; if that is not PostgREST, a NOTIFY will not reach PostgREST",
        )
    if others:
        return status(
            ListenerState.ABSENT,
            f"no PostgREST session listens on '{channel}': {backends} session(s) of {authenticator_role} connected, "
            f"none LISTENs; the only listener(s): {_who(others)}",
        )
    if backends:
        why = "channel disabled (db-channel-enabled=false), a transaction pooler in between, or PostgREST reconnecting"
        return status(
            ListenerState.ABSENT,
            f"no listener on '{channel}': {backends} session(s) of {authenticator_role} connected but none LISTENs "
            f"({why})",
        )
    return status(
        ListenerState.ABSENT,
        f"no listener on '{channel}': no session of {authenticator_role} is connected to this database "
        "(PostgREST down or reconnecting, a transaction pooler in between, or the DSN points at another database)",
    )


async def send_reload(conn: asyncpg.Connection, channel: str) -> float:
    """Send the reload in autocommit (NOTIFY is delivered at commit) and return its execution time in ms."""
    started = time.perf_counter()
    await conn.execute("select pg_notify($1, 'reload schema')", channel)
    return (time.perf_counter() - started) * 1000
