"""The catalog watch: a schema change made behind PostgREST's back is noticed and fixed in about a second.

One task per environment with a `database_dsn` keeps one database connection: it LISTENs on PostgREST's own
channel (so a reload someone else sends is seen, and needs no action of ours) and polls a cheap fingerprint of
the catalog (bot/postgres/fingerprint.py). When the fingerprint changes and no reload is heard within a short
grace, it reads the exposed schemas' objects, compares them with the last read (bot/core/watch.py
`catalog_changes`) and asks the API about the changed objects only. What is not served is fixed the way drift
fixes it (RecoveryOperator.reload_for_drift: the reload cap, the pre-flight, one recovery at a time), then the
same objects are re-checked until served; one line says what happened. A lost connection is retried with a
growing pause; every read is bounded by the recovery section's database timeouts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg

from bot.config import Target
from bot.core.catalog import Catalog
from bot.core.recovery import PollSchedule
from bot.core.watch import (
    FOREIGN_RELOAD_SETTLE_S,
    CatalogChanges,
    PollCost,
    Step,
    Unserved,
    WatchState,
    catalog_changes,
    poll_interval_s,
    reconnect_delay_s,
    unserved,
)
from bot.messages.alert import build_info_line
from bot.ops.desk import IncidentDesk
from bot.ops.recovery import RecoveryOperator
from bot.postgres.connect import DatabaseError, connect, listening
from bot.postgres.fingerprint import CatalogFingerprint, read_objects
from bot.postgrest.probe import Prober
from bot.postgrest.served import ServedApi

log = logging.getLogger(__name__)

ACTOR = "auto (catalog watch)"
RELOAD_PAYLOADS = ("", "reload schema")  # what PostgREST reloads its schema cache on
KEPT = 100


@dataclass(frozen=True)
class WatchFix:
    """One change behind PostgREST's back, as the watch handled it (for the log, tests and the benchmark)."""

    env: str
    objects: str  # what was not served
    changed_at: float  # time.monotonic() when the fingerprint changed
    outcome: str  # fixed, not fixed, held, auto_recover off
    served_at: float | None = None  # when the re-check saw every object served
    reason: str | None = None


@dataclass
class _Env:
    state: WatchState = field(default_factory=WatchState)
    snapshot: Catalog | None = None  # the objects as the last check read them
    early: Catalog | None = None  # the objects read as soon as the pending change was seen
    fingerprint: CatalogFingerprint = field(default_factory=CatalogFingerprint)
    poll_cost: PollCost = field(default_factory=PollCost)  # a scan only when the snapshot moved
    connected: bool = False
    attempts: int = 0  # connections tried


class CatalogWatch:
    def __init__(
        self,
        desk: IncidentDesk,
        prober: Prober,
        operator: RecoveryOperator,
        *,
        clock: Callable[[], float] = time.monotonic,
        fence: Callable[[], bool] = lambda: True,
    ) -> None:
        self.fence = fence  # "still the leader?": a replica that lost the lease reloads nothing
        self.desk = desk
        self.prober = prober
        self.operator = operator
        self.clock = clock
        self._envs: dict[str, _Env] = {}
        # The last ones only: a bot that runs for months must not keep every migration in memory.
        self.fixes: deque[WatchFix] = deque(maxlen=KEPT)
        self.checks: deque[tuple[str, str, str]] = deque(maxlen=KEPT)  # (env, what changed, what was not served)

    def poll_s(self, target: Target) -> float:
        """The configured poll interval (the environment's own, else the monitor's); 0 = off."""
        own = target.config.catalog_watch_s
        return self.desk.settings.monitor.catalog_watch_s if own is None else own

    def watches(self, target: Target) -> bool:
        return target.secrets.database_dsn is not None and self.poll_s(target) > 0

    def attempts(self, name: str) -> int:
        env = self._envs.get(name)
        return 0 if env is None else env.attempts

    def connected(self, name: str) -> bool:
        env = self._envs.get(name)
        return env is not None and env.connected

    async def run(self, name: str) -> None:
        """Watch one environment until cancelled: connect, poll, reconnect after a pause when the connection is lost.

        The pause grows with failed attempts in a row (1 s doubling to 30 s), so a database that is gone is tried
        a few times a minute, never in a spin; a connection that worked starts again from the first pause.
        """
        env = self._envs.setdefault(name, _Env())
        failures = 0
        while True:
            try:
                await self._session(name, env)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # DatabaseError above all; nothing may end the watch or make it spin
                failures = 1 if env.connected else failures + 1
                what = str(err) if isinstance(err, DatabaseError) else type(err).__name__
                pause = reconnect_delay_s(failures)
                (log.warning if failures == 1 else log.debug)(
                    "%s: catalog watch has no database connection (%s); next try in %g s", name, what, pause
                )
                if not isinstance(err, DatabaseError | OSError | TimeoutError):
                    log.exception("%s: catalog watch failed", name)
            else:
                pause = reconnect_delay_s(1)
            env.connected = False
            env.state.lost()
            await asyncio.sleep(pause)

    async def _session(self, name: str, env: _Env) -> None:
        target = self.desk.targets[name]
        dsn = target.secrets.database_dsn
        assert dsn is not None
        rec = self.desk.settings.recovery
        timeout = rec.db_command_timeout_s
        env.attempts += 1
        async with connect(dsn, connect_timeout=rec.db_connect_timeout_s, command_timeout=timeout) as conn:

            def on_notify(_conn: object, _pid: int, _channel: str, payload: str) -> None:
                if payload.strip().lower() in RELOAD_PAYLOADS:
                    env.state.heard_reload(self.clock())

            async with listening(conn, target.config.notify_channel, on_notify):
                await self._poll(target, conn, env)

    async def _poll(self, target: Target, conn: asyncpg.Connection, env: _Env) -> None:
        """The baseline (first connection only), then the poll, until the connection fails."""
        name = target.name
        if env.snapshot is None:
            # The baseline: fingerprint and objects from one snapshot, so no change falls between them.
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                env.state.observe(await env.fingerprint.read(conn), self.clock())
                env.snapshot = await read_objects(conn, target.config.exposed_schemas, target.config.api_roles)
        while True:
            started = time.perf_counter()
            fingerprint = await env.fingerprint.read(conn)
            env.poll_cost.observe((time.perf_counter() - started) * 1000)
            if not env.connected:
                env.connected = True
                log.info("%s: catalog watch connected (fingerprint read in %.1f ms)", name, env.poll_cost.typical_ms)
            now = self.clock()
            if env.state.observe(fingerprint, now):
                log.debug("%s: catalog changed", name)
                env.early = None  # read before this change
                if not env.state.covered():
                    # Read the objects while the grace runs: at 5,000 tables the read (~150 ms) outlasts it.
                    env.early = await read_objects(conn, target.config.exposed_schemas, target.config.api_roles)
                    now = self.clock()
            step, due = env.state.next_step(now, self.desk.settings.monitor.catalog_watch_grace_s)
            if step is Step.CHECK:
                changed_at = env.state.changed_at or now
                since = env.state.window_start if env.state.window_start is not None else changed_at
                covered = env.state.covered()  # then the check comes after that reload had time to land
                env.state.checked()
                await self._check(target, conn, env, changed_at, None if covered else since)
            wait = poll_interval_s(self.poll_s(target), env.poll_cost.typical_ms)
            if step is Step.WAIT:
                wait = min(wait, max(0.0, due - self.clock()))
            await asyncio.sleep(wait)

    async def _check(
        self, target: Target, conn: asyncpg.Connection, env: _Env, changed_at: float, since: float | None
    ) -> None:
        """The catalog changed: compare, ask the API about what changed, fix it. `since`: a reload heard from then
        on still wins (None: the check already waited for one)."""
        assert env.snapshot is not None
        cfg = target.config
        new, env.early = env.early or await read_objects(conn, cfg.exposed_schemas, cfg.api_roles), None
        changes, env.snapshot = catalog_changes(env.snapshot, new), new
        if not changes:
            return
        found = await unserved(self._api(target), changes)
        self.checks.append((target.name, changes.describe(), found.describe()))
        if found.unverified:
            log.info("%s: catalog watch could not verify %s", target.name, ", ".join(found.unverified))
        if not found:
            log.debug("%s: changed and served: %s", target.name, changes.describe())
            return
        if since is not None and self._heard_since(env, since):
            # Someone else's reload came while we looked (a NOTIFY sent just after the migration): let it land.
            await asyncio.sleep(FOREIGN_RELOAD_SETTLE_S)
            found = await unserved(self._api(target), changes)
            if not found:
                return
        await self._fix(target, changes, found, changed_at)

    @staticmethod
    def _heard_since(env: _Env, since: float) -> bool:
        heard = env.state.reload_heard_at
        return heard is not None and heard >= since

    def _api(self, target: Target) -> ServedApi:
        return ServedApi(self.prober.client, target, self.desk.settings.max_body_bytes)

    async def _fix(self, target: Target, changes: CatalogChanges, found: Unserved, changed_at: float) -> None:
        name, what = target.name, found.describe()
        if not self.fence():
            log.info("%s: not served after a change (%s); not this replica's to fix: it lost the lease", name, what)
            return
        state = self.desk.states[name]
        held = self.desk.hold_reason(name)
        if state.alert is not None or held:
            # An open incident (or a silence, a maintenance window) is in charge: its checks see this too.
            log.info("%s: not served after a change (%s); left to %s", name, what, held or "the open incident")
            self.fixes.append(WatchFix(name, what, changed_at, "held", reason=held or "open incident"))
            return
        if not target.config.auto_recover:
            text = (
                f"⚠️ {name.upper()}: changed in the database without a schema reload and not served: {what}. "
                f"Reload with `/reload {name}` (auto_recover is off)."
            )
            self.fixes.append(WatchFix(name, what, changed_at, "auto_recover off"))
            await self.desk.sink.post_line(name, build_info_line(name, text))
            return
        result = await self.operator.reload_for_drift(target, actor=ACTOR)
        self.desk.record_reload(result)
        if not result.notify_sent:
            text = f"⚠️ {name.upper()}: not served after a change without a schema reload: {what}; {result.reason}"
            self.fixes.append(WatchFix(name, what, changed_at, "not fixed", reason=result.reason))
            await self.desk.sink.post_line(name, build_info_line(name, text))
            return
        served_at = await self._served(target, changes)
        if served_at is None:
            text = (
                f"⚠️ {name.upper()}: reloaded after a change without a schema reload, still not served: {what}. "
                f"`/health {name}` says what stands in the way."
            )
            self.fixes.append(WatchFix(name, what, changed_at, "not fixed", reason="still not served"))
        else:
            text = (
                f"✅ {name.upper()}: {what} changed in the database without a schema reload; reloaded, served "
                f"{served_at - changed_at:.1f} s after the change was seen."
            )
            self.fixes.append(WatchFix(name, what, changed_at, "fixed", served_at))
        log.info("%s", text)
        await self.desk.sink.post_line(name, build_info_line(name, text))

    async def _served(self, target: Target, changes: CatalogChanges) -> float | None:
        """Re-check the changed objects after the reload (densely, then less often) until served, or None."""
        rec = self.desk.settings.recovery
        schedule = PollSchedule.of(rec, rec.deadline_s)
        notified, attempts = time.perf_counter(), 0
        while (wait := schedule.wait_s(time.perf_counter() - notified, attempts)) is not None:
            await asyncio.sleep(wait)
            attempts += 1
            if not await unserved(self._api(target), changes):
                return self.clock()
        return None
