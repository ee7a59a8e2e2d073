"""The leader lease on PostgreSQL: a session advisory lock held on a dedicated connection to the store's database.

A standby tries `pg_try_advisory_lock(key)` every `retry_s` on its own connection. The winner keeps that
connection open (the lock lives as long as the session) and confirms it every `check_every_s` with a bounded
`select 1`. A failed, timed-out or overdue confirmation, or the connection closing (the server ended it, the
network dropped it), ends leadership at once: `leading()` (the fence) turns false and `lost` is set. The rules and
the timings are in bot/core/lease.py; the session settings that make the server itself release a silent leader's
lock within `lease_s` are `LeaseTiming.server_settings`.

Each new leader bumps its group's row in `pgrst_ops_leader` (its epoch, who holds it, since when), under the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable

import asyncpg
from pydantic import SecretStr

from bot.core.lease import LeaseState, LeaseTiming, Role, lock_key, standby_unready
from bot.postgres.connect import _describe, dsn_target

log = logging.getLogger("pgrst_ops")

_EPOCH_SQL = """
insert into pgrst_ops_leader (leader_group, epoch, holder, since) values ($1, 1, $2, now())
on conflict (leader_group) do update
  set epoch = pgrst_ops_leader.epoch + 1, holder = excluded.holder, since = excluded.since
returning epoch
"""
_EPOCH_TABLE = """
create table if not exists pgrst_ops_leader (
  leader_group text primary key, epoch bigint not null, holder text not null, since timestamptz not null
)
"""
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class LeaderLease:
    """One replica's side of the election; `leading` is the fence handed to everything that acts."""

    def __init__(
        self,
        dsn: SecretStr,
        timing: LeaseTiming,
        group: str = "default",
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dsn = dsn
        self.timing = timing
        self.group = group
        self.key = lock_key(group)
        self.clock = clock
        self.state = LeaseState(timing)
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self.lost = asyncio.Event()
        self.error: str | None = None  # the last reason the database could not be used
        self.reached_at: float | None = None  # when the database last answered
        self._conn: asyncpg.Connection | None = None

    # -- the fence and what the endpoints show ---------------------------------------------------------
    def leading(self) -> bool:
        return self.state.leading(self.clock())

    @property
    def role(self) -> Role:
        return self.state.role

    def unready(self) -> str | None:
        """Why this replica is not ready as a standby (the store's database does not answer), or as a leader that
        can no longer trust its lease; None otherwise (a trusted leader's readiness is the bot's own)."""
        if self.state.role is Role.LOST:
            return f"lost the leader lease ({self.state.lost_reason}): stopping"
        overdue = self.state.overdue(self.clock())
        if overdue is not None:
            return f"leader: {overdue}"
        return standby_unready(self.timing, self.reached_at, self.error, self.clock())

    # -- standby ------------------------------------------------------------------------------------
    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait as a standby until this replica holds the lock (True), or until `stop` is set (False)."""
        waiting_logged = False
        while not stop.is_set():
            if await self.try_once():
                return True
            if not waiting_logged and self.error is None:
                log.info("standby: another replica leads group '%s'; taking over when it stops", self.group)
                waiting_logged = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.timing.retry_s)
        return False

    async def try_once(self) -> bool:
        """One attempt at the lock; True once held (the connection is then kept for as long as it leads)."""
        if self.state.role is not Role.STANDBY:
            return self.state.role is Role.LEADER
        started = self.clock()
        try:
            conn = self._conn or await self._connect()
            granted = await asyncio.wait_for(
                conn.fetchval("select pg_try_advisory_lock($1)", self.key), self.timing.check_timeout_s
            )
        except _DB_ERRORS as err:
            self._failed(err)
            return False
        self._reached()
        if not granted:
            return False
        self.state.won(started)
        conn.add_termination_listener(self._closed)
        self.state.epoch = await self._bump_epoch(conn)
        epoch = f" (epoch {self.state.epoch})" if self.state.epoch is not None else ""
        log.info("leader of group '%s'%s: this replica acts now", self.group, epoch)
        return True

    async def _connect(self) -> asyncpg.Connection:
        self._conn = await asyncpg.connect(
            self._dsn.get_secret_value(),
            timeout=self.timing.check_timeout_s,
            server_settings=self.timing.server_settings(),
        )
        return self._conn

    async def _bump_epoch(self, conn: asyncpg.Connection) -> int | None:
        """The new leader generation, recorded under the lock; a database that refuses it costs only the number."""
        try:
            async with asyncio.timeout(self.timing.check_timeout_s):
                await conn.execute(_EPOCH_TABLE)
                epoch = await conn.fetchval(_EPOCH_SQL, self.group, self.holder)
        except _DB_ERRORS as err:
            log.warning("leader epoch not recorded: %s", self._text(err))
            return None
        return int(epoch)

    # -- leader -------------------------------------------------------------------------------------
    async def hold(self) -> str:
        """Confirm the lease until it is lost; why it was lost."""
        while self.state.role is Role.LEADER:
            wait_s = max(0.0, self.state.next_check_at() - self.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.lost.wait(), wait_s)
            if self.state.role is not Role.LEADER:
                break
            await self.confirm()
        return self.state.lost_reason or "stopped"

    async def confirm(self) -> bool:
        """One bounded `select 1` on the lock's connection; a failure or a late answer ends leadership."""
        conn = self._conn
        if conn is None or conn.is_closed():
            self._lose("the lease's database connection is closed")
            return False
        started = self.clock()
        try:
            await asyncio.wait_for(conn.fetchval("select 1"), self.timing.check_timeout_s)
        except _DB_ERRORS as err:
            self._lose(f"the lease check failed: {self._text(err)}")
            return False
        self._reached()
        self.state.confirmed(started)
        overdue = self.state.overdue(self.clock())
        if overdue is not None:
            self._lose(overdue)
            return False
        return True

    # -- endings ------------------------------------------------------------------------------------
    def _closed(self, conn: asyncpg.Connection) -> None:
        """asyncpg's termination listener: the session, and with it the lock, is gone."""
        self._lose("the lease's database connection closed")

    def _lose(self, reason: str) -> None:
        if self.state.lose(reason):
            log.error("leader lease of group '%s' lost: %s; this replica stops acting now", self.group, reason)
        self.lost.set()
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()  # whatever is left of the session goes; it must not outlive the fence

    def _failed(self, err: BaseException) -> None:
        text = self._text(err)
        if text != self.error:
            log.warning("standby: the lease's database cannot be used: %s", text)
        self.error = text
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    def _reached(self) -> None:
        if self.error is not None:
            log.info("standby: the lease's database answers again")
        self.error, self.reached_at = None, self.clock()

    def _text(self, err: BaseException) -> str:
        return _describe(err, self._dsn.get_secret_value(), self.timing.check_timeout_s)

    async def close(self) -> None:
        """Release the lock (closing the session does it) so a standby takes over at once."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            conn.remove_termination_listener(self._closed)
        if self.state.role is Role.LEADER:
            self.state.lose("stopped")
        try:
            await asyncio.wait_for(conn.close(), 2.0)
        except Exception:
            conn.terminate()

    def describe(self) -> str:
        return f"group '{self.group}' on {dsn_target(self._dsn.get_secret_value())}"
