"""The monitor: probe every environment on its interval, act after N failures, alert once, resolve once.

Loops and scheduling only: one task per environment (a slow one never delays another), the slow loop
(drift and the schema version guard, bot/ops/drift_watch.py) and the outbox's periodic retry. What a check
leads to is decided in bot/core/incident.py and carried out by the incident desk (bot/ops/desk.py), which
owns every store write and message. Knows nothing of Discord: messages go to an AlertSink.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from bot.config import Settings, Target
from bot.core.diagnosis import Diagnosis
from bot.core.drift import DriftReport
from bot.core.incident import EnvState, MonitorHealth, Next, OpenAlert, Policy, decide, record_report
from bot.core.incidents import MANUAL_RELOAD, RECOVERED_BY_ITSELF, FlapDetector
from bot.core.lease import Fence, always_leading
from bot.core.records import Silence
from bot.core.recovery import Outcome, RecoveryResult, StepListener
from bot.core.report import EnvReport
from bot.core.verdicts import Verdict, info
from bot.delivery.guard import StoreGuard
from bot.delivery.sink import AlertSink
from bot.observe import AUTO_RECOVERED, Metrics
from bot.ops.catalog_watch import CatalogWatch
from bot.ops.check import config_note, diagnose_failure, served_schemas, with_project
from bot.ops.desk import IncidentDesk
from bot.ops.drift_watch import DriftWatch
from bot.ops.liveness import probe_loop
from bot.ops.recovery import RecoveryOperator
from bot.postgrest.probe import Prober
from bot.store import IncidentStore
from bot.supabase.watch import ProjectWatch

log = logging.getLogger(__name__)


class Monitor:
    def __init__(
        self,
        settings: Settings,
        targets: list[Target],
        prober: Prober,
        operator: RecoveryOperator,
        sink: AlertSink,
        store: IncidentStore | None = None,
        guard: StoreGuard | None = None,
        metrics: Metrics | None = None,
        projects: ProjectWatch | None = None,
        fence: Fence = always_leading,
    ) -> None:
        self.fence = fence  # "still the leader?": a replica that lost the lease decides and acts on nothing
        self.prober = prober
        self.projects = projects  # the Supabase Management API's view of each project (None: none configured)
        self.operator = operator
        cfg = settings.incidents
        states = {t.name: EnvState(t.name, flaps=FlapDetector(cfg.flap_flips, cfg.flap_window_s)) for t in targets}
        self.desk = IncidentDesk(settings, {t.name: t for t in targets}, states, sink, guard or StoreGuard(store))
        self.metrics = self.desk.metrics = metrics or Metrics(states)
        self.metrics.watch(states)
        self.drift_watch = DriftWatch(self.desk, prober, operator)
        self.catalog_watch = CatalogWatch(self.desk, prober, operator, fence=fence)
        self.health = MonitorHealth()
        self._tasks: list[asyncio.Task[None]] = []
        self._locks = {t.name: asyncio.Lock() for t in targets}
        outbox = getattr(sink, "outbox", None)
        if outbox is not None:  # a post delivered later (in the background) is remembered on its incident
            outbox.on_delivered = self.desk.delivered
            outbox.fence = fence
            if fence is not always_leading:  # replicas: another leader group may share the store
                outbox.envs = frozenset(states)
            self.metrics.watch_backlog(outbox.waiting)

    # The desk holds the state; these keep the monitor the one object callers (and tests) hold.
    @property
    def settings(self) -> Settings:
        return self.desk.settings

    @settings.setter
    def settings(self, settings: Settings) -> None:  # the alert role is resolved after start
        self.desk.settings = settings

    @property
    def now(self) -> Callable[[], datetime]:
        return self.desk.now

    @now.setter
    def now(self, clock: Callable[[], datetime]) -> None:  # tests move the clock
        self.desk.now = clock

    @property
    def states(self) -> dict[str, EnvState]:
        return self.desk.states

    @property
    def silences(self) -> dict[str, Silence]:
        return self.desk.silences

    @property
    def targets(self) -> dict[str, Target]:
        return self.desk.targets

    @property
    def sink(self) -> AlertSink:
        return self.desk.sink

    @property
    def guard(self) -> StoreGuard:
        return self.desk.guard

    # -- the loops --------------------------------------------------------------------------------
    async def check_all(self) -> None:
        """The first check of every environment at once, so console mode can say each verdict before the loops
        start (then `start(checked=True)`). A failing check is logged, as in the loop."""
        await asyncio.gather(*(self.checked(name) for name in self.targets))

    def start(self, *, checked: bool = False) -> None:
        """One task per environment: a slow environment never delays another's checks.

        Each loop checks at once (the Discord bot's first check is at start too), unless `checked` says that
        check_all has just done so: then each waits one interval first.
        """
        self.health.running = True
        settle_heap()
        self._tasks = [
            asyncio.create_task(probe_loop(self, name, wait_first=checked), name=f"monitor:{name}")
            for name in self.targets
        ]
        # Unsent messages (Discord down for longer than the retries) go out as soon as Discord is back.
        outbox = every(
            lambda: self.settings.incidents.outbox_retry_s, self.flush_outbox, "outbox flush", sleep_first=True
        )
        self._tasks.append(asyncio.create_task(outbox, name="monitor:outbox"))
        if self.settings.monitor.drift_interval_s > 0:
            self._tasks += [
                asyncio.create_task(
                    every(self._drift_interval_s, partial(self._drift_step, name), f"drift check of {name}"),
                    name=f"monitor:drift:{name}",
                )
                for name, target in self.targets.items()
                if target.secrets.database_dsn is not None
            ]
        self._tasks += [
            asyncio.create_task(self.catalog_watch.run(name), name=f"monitor:watch:{name}")
            for name, target in self.targets.items()
            if self.catalog_watch.watches(target)
        ]

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop the loops at once; background sends and store writes get `grace_s` (default shutdown_grace_s).

        A send cut short stays in the outbox (written before it is sent) and goes out at the next start.
        """
        self.health.running = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        outbox = getattr(self.sink, "outbox", None)
        pending: set[asyncio.Task[Any]] = set(self.desk.background)
        pending |= outbox.in_flight() if outbox is not None else set()
        if not pending:
            return
        grace = self.settings.discord.shutdown_grace_s if grace_s is None else grace_s
        _, late = await asyncio.wait(pending, timeout=grace)
        if late:
            log.warning(
                "stopping: %d background send(s) or store write(s) not done within %g s, cut short "
                "(messages not delivered stay in the outbox for the next start)",
                len(late),
                grace,
            )
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    @property
    def alive(self) -> bool:
        return self.health.running and any(not t.done() for t in self._tasks)

    async def checked(self, name: str) -> None:
        """One check whose failure is logged, never raised: one bad sweep must not kill the monitor."""
        try:
            await self.check(name)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("monitor check of %s failed", name)

    def _drift_interval_s(self) -> float:
        return self.settings.monitor.drift_interval_s

    async def _drift_step(self, name: str) -> None:
        """Drift and the schema version guard: heavier than a probe, so on their own slower interval."""
        if self.fence():  # drift may reload: only the leader's
            await self.slow_check(name)

    async def slow_check(self, name: str) -> DriftReport:
        return await self.drift_watch.slow_check(name)

    async def flush_outbox(self) -> None:
        outbox = getattr(self.sink, "outbox", None)
        if outbox is not None:
            await outbox.flush(self.desk.delivered)

    async def restore(self) -> None:
        """After a restart: send what was left in the outbox, re-attach open incidents, reload silences."""
        await self.flush_outbox()
        await self.desk.reattach()

    # -- one check --------------------------------------------------------------------------------
    async def check(self, name: str) -> EnvState:
        async with self._locks[name]:
            started = time.perf_counter()
            report = await self.prober.probe(self.targets[name])
            self.health.last_sweep_at = datetime.now(UTC)
            self.health.last_sweep_ms = (time.perf_counter() - started) * 1000
            state = self.states[name]
            report, state.project = await with_project(self.projects, self.targets[name], report)
            state.postgrest_config = await config_note(self.projects, self.targets[name])
            paused = report.verdict is Verdict.PROJECT_PAUSED  # nothing runs: no catalog to read
            state.diagnosis = None if paused else await self._diagnose(name, report)
            if state.diagnosis is not None:
                report = state.diagnosis.report  # stale confirmed, or missing / not granted
            if not self.fence():  # asked after the slow probe, before anything is recorded, decided or sent
                return state
            self._record(state, report)
            self.metrics.checked(name, report.verdict, self.health.last_sweep_ms)
            now = self.now()
            assert state.flaps is not None
            state.flaps.record(report.healthy, now)
            await self.desk.network(report)
            mon = self.settings.monitor
            decision = decide(state, report, now, Policy(mon.failure_threshold, mon.success_threshold))
            if decision.next is Next.FLAPPING:
                await self.desk.flapping(state, now)
            elif decision.next is Next.RESOLVE and decision.resolution:
                await self.desk.resolve(state, decision.resolution)
            elif decision.next is Next.ACT:
                await self._act(state, report)
            await self.desk.housekeeping(state)
            return state

    async def _diagnose(self, name: str, report: EnvReport) -> Diagnosis | None:
        served = [] if report.healthy else await served_schemas(self.projects, self.targets[name])
        return await diagnose_failure(
            self.targets[name],
            report,
            self.settings.recovery,
            measured_reload_ms=self.operator.measured_reload_ms(name),
            skip_unreachable=True,
            served_schemas=served,
        )

    def _record(self, state: EnvState, report: EnvReport) -> None:
        old = state.verdict
        if record_report(state, report):
            self.sink.status_change(state.name, old, report.verdict, report.explanation)

    async def _act(self, state: EnvState, report: EnvReport) -> None:
        """The threshold is reached: a reload where it can help (auto_recover), else the CRITICAL alert."""
        target = self.targets[state.name]
        if not (target.config.auto_recover and info(report.verdict).reload_helps):
            await self.desk.open_alert(state.name, report, None, diagnosis=state.diagnosis)
            return
        result = await self.operator.recover(target, actor="auto")
        self.desk.record_reload(result)
        if result.outcome is Outcome.ESCALATED:
            await self.desk.open_alert(state.name, result.report_after, result)
            return
        self._record(state, result.report_after)
        if result.outcome is Outcome.RECOVERED:
            await self.desk.auto_recovered(state, report, result)
            self.metrics.alerted(state.name, AUTO_RECOVERED)

    # -- people's actions (buttons and commands), carried out by the desk --------------------------
    def record_reload(self, result: RecoveryResult, *, audited: bool = False) -> None:
        self.desk.record_reload(result, audited=audited)

    def audit(self, actor: str, action: str, env: str, outcome: str) -> None:
        self.desk.audit(actor, action, env, outcome)

    async def audit_begin(self, actor: str, action: str, env: str) -> int | None:
        return await self.desk.audit_begin(actor, action, env)

    async def audit_end(self, row_id: int | None, outcome: str, *, interrupted: bool = False) -> None:
        await self.desk.audit_end(row_id, outcome, interrupted=interrupted)

    async def open_alert(
        self, name: str, report: EnvReport, result: RecoveryResult | None, *, diagnosis: Diagnosis | None = None
    ) -> bool:
        return await self.desk.open_alert(name, report, result, diagnosis=diagnosis)

    def hold_reason(self, name: str) -> str | None:
        return self.desk.hold_reason(name)

    async def acknowledge(self, incident_id: int, actor: str) -> str:
        return await self.desk.acknowledge(incident_id, actor)

    async def silence(self, env: str, duration_s: float, reason: str, actor: str) -> Silence:
        return await self.desk.silence(env, duration_s, reason, actor)

    async def unsilence(self, env: str, actor: str) -> bool:
        if not await self.desk.unsilence(env, actor):
            return False
        async with self._locks[env]:
            await self.desk.housekeeping(self.states[env])  # a held alert goes out now
        return True

    async def retry_reload(
        self, incident_id: int, actor: str, on_step: StepListener | None = None
    ) -> RecoveryResult | str:
        """The alert's Retry reload; the caller audits it (audit_begin / audit_end) and may be interrupted."""
        state = self.desk.find(incident_id)
        if state is None:
            return f"Incident #{incident_id} is already resolved: no reload needed."
        result = await self.operator.recover(self.targets[state.name], actor=actor, on_step=on_step)
        self.desk.record_reload(result, audited=True)
        if result.outcome is not Outcome.ESCALATED:
            hint = MANUAL_RELOAD if result.outcome is Outcome.RECOVERED else RECOVERED_BY_ITSELF
            await self.resolve_with(state.name, incident_id, result.report_after, hint)
        return result

    async def resolve_with(self, env: str, incident_id: int, report: EnvReport, resolution: str) -> None:
        """A person's action (Retry reload, a followed restart) left the environment healthy: `report` recorded,
        and this incident ends with `resolution` (unless a check already ended it)."""
        async with self._locks[env]:
            state = self.states[env]
            self._record(state, report)
            if state.alert is not None and state.alert.incident_id == incident_id:
                await self.desk.resolve(state, resolution)

    def incident_for(self, env: str) -> OpenAlert | None:
        state = self.states.get(env)
        return state.alert if state else None


async def every(
    interval_s: Callable[[], float], work: Callable[[], Awaitable[Any]], what: str, *, sleep_first: bool = False
) -> None:
    """`work` for ever, `interval_s()` apart (first after one interval with `sleep_first`); a failure is logged and
    the loop goes on: one bad round must not end it."""
    while True:
        if sleep_first:
            await asyncio.sleep(interval_s())
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed", what)
        if not sleep_first:
            await asyncio.sleep(interval_s())


def settle_heap() -> None:
    """Start-up's objects (config, targets, clients) live as long as the process: frozen out of the collector's
    walks (about 5% less CPU per check at 2,000 environments, bench/README.md). Once per process."""
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()


def open_summary(monitor: Monitor) -> list[str]:
    """One line per open incident or active silence, for /status."""
    lines = []
    now = monitor.now()
    for state in monitor.states.values():
        alert = state.alert
        if alert is not None:
            ref = f"#{alert.incident_id}" if alert.stored else "(not stored)"
            parts = [f"❌ **{state.name.upper()}** incident {ref} open since <t:{int(alert.opened_at.timestamp())}:R>"]
            parts.append(str(state.verdict or alert.verdict))
            if alert.flapping:
                parts.append("flapping")
            if alert.acknowledged_by:
                parts.append(f"acknowledged by {alert.acknowledged_by}")
            if alert.held:
                parts.append(f"alert held ({monitor.hold_reason(state.name) or 'releasing'})")
            lines.append(" · ".join(parts))
        silence = monitor.silences.get(state.name)
        if silence is not None and now < silence.until:
            lines.append(
                f"**{state.name.upper()}** silenced until <t:{int(silence.until.timestamp())}:R> by "
                f"{silence.actor}: {silence.reason}"
            )
    if monitor.guard.error:
        lines.append(f"⚠️ {monitor.guard.error[:300]} (incidents are in memory only)")
    return lines
