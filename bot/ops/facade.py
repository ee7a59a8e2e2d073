"""The application layer: `Ops`, the one API the cogs (and the CLI where natural) call.

Built complete by the composition root (bot.app): settings, targets, the HTTP client, prober, operator, monitor
and store guard are all there before the first cog loads, so no caller meets a "not started yet" phase. It
delegates to the Monitor, the RecoveryOperator, the check and drift pipelines and the store, and returns their
data (reports, results, records); wording belongs to bot.messages. It imports bot.ops, bot.core, bot.delivery,
bot.store and bot.config, never discord.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx

from bot.config import Settings, Target
from bot.core.access import RoleIds
from bot.core.drift import DriftReport
from bot.core.incident import EnvState, MonitorHealth
from bot.core.incidents import parse_duration
from bot.core.records import AUDIT_INTERRUPTED, AuditEntry, Incident, Silence

# Action, RecoveryStep, StepKind are re-exported: /reload's progress lines need them (cogs import only this).
from bot.core.recovery import Outcome, RecoveryResult, RecoveryStep, StepKind, StepListener
from bot.delivery.guard import StoreGuard
from bot.ops.check import Checked, check_environments
from bot.ops.drift import check_drift
from bot.ops.inflight import Action, InFlight, Interrupted
from bot.ops.monitor import Monitor, open_summary
from bot.ops.recovery import RecoveryOperator
from bot.ops.restart import Restarts
from bot.postgrest.probe import Prober
from bot.store import IncidentStore, open_store, store_label
from bot.supabase.watch import ProjectWatch

log = logging.getLogger("pgrst_ops")

ALL = "*"  # every environment (/health's Re-check button on "all")
INTERRUPTED_SHOWN_FOR = timedelta(days=1)  # an interrupted action is news for a day, then it is in the audit


@dataclass(frozen=True)
class StatusData:
    """What /status shows: the monitor's memory, open incidents, recent interrupted actions."""

    states: list[EnvState]
    health: MonitorHealth
    alive: bool
    reloads_in_window: dict[str, int]
    open_incidents: list[str]
    interrupted: list[AuditEntry]


@dataclass(frozen=True)
class IncidentLog:
    recent: list[Incident]
    month: list[Incident]
    now: datetime


@dataclass
class Ops:
    """Everything the cogs use, built once by the composition root and injected into the bot."""

    settings: Settings
    targets: dict[str, Target]
    http: httpx.AsyncClient
    prober: Prober
    operator: RecoveryOperator
    monitor: Monitor
    guard: StoreGuard
    autostart_monitor: bool = True  # tests drive the monitor's checks by hand
    roles: RoleIds | None = None  # resolved at start (setup_hook); every check fails closed until then
    inflight: InFlight = field(default_factory=InFlight)  # changing actions running now (for a clean stop)
    projects: ProjectWatch | None = None  # the Supabase Management API's view of each project
    restarts: Restarts = field(init=False)  # the Restart button and /restart

    def __post_init__(self) -> None:
        self.restarts = Restarts(self.monitor, self.projects, self.inflight)

    @property
    def store(self) -> IncidentStore | None:
        return self.guard.store

    # Lifecycle
    def adopt_settings(self, settings: Settings) -> None:
        """Settings with the role ids resolved at start (the alert mention): the monitor reads them too."""
        self.settings = settings
        self.monitor.settings = settings

    async def open_store(self) -> None:
        if self.guard.store is None:
            self.guard.store = await open_store(self.settings.incidents)
            if self.guard.store is None:
                self.guard.error = f"{store_label(self.settings.incidents)} could not be opened"
                return
        unfinished = await self.guard(lambda s: s.audit_mark_unfinished())
        if unfinished:
            log.warning("%d action(s) were cut short when pgrst-ops last stopped; /status shows them", unfinished)

    async def close_store(self) -> None:
        store, self.guard.store = self.guard.store, None
        if store is not None:
            await store.close()

    # Reads
    def target(self, env: str) -> Target | None:
        return self.targets.get(env)

    async def health(self, env: str | None) -> list[Checked] | None:
        """Probe now (and diagnose what failed): one environment, or all (None or ALL); None: unknown env."""
        if env is None or env == ALL:
            targets = list(self.targets.values())
        elif env in self.targets:
            targets = [self.targets[env]]
        else:
            return None
        return await check_environments(self.prober, targets, self.settings.recovery, self.projects)

    async def drift(self, env: str) -> DriftReport:
        rec = self.settings.recovery
        return await check_drift(
            self.http,
            self.targets[env],
            max_body_bytes=self.settings.monitor.drift_max_body_bytes,
            connect_timeout=rec.db_connect_timeout_s,
            command_timeout=rec.db_command_timeout_s,
            memory=self.guard,
        )

    async def status(self) -> StatusData:
        monitor = self.monitor
        since = datetime.now(UTC) - INTERRUPTED_SHOWN_FOR
        interrupted = await self.guard(lambda s: s.audit_log(5, status=AUDIT_INTERRUPTED, since=since)) or []
        return StatusData(
            states=list(monitor.states.values()),
            health=monitor.health,
            alive=monitor.alive,
            reloads_in_window={name: self.operator.reloads_in_window(name) for name in self.targets},
            open_incidents=open_summary(monitor),
            interrupted=interrupted,
        )

    def store_problem(self) -> str | None:
        """Why there is no incident log (None: the store is open)."""
        if self.guard.store is None:
            return self.guard.error or "the incident store is not open"
        return None

    async def incidents(self, env: str | None, limit: int) -> IncidentLog | None:
        """Recent incidents and the last 30 days' resolved ones; None: the store failed (`guard.error`)."""
        now = datetime.now(UTC)
        recent = await self.guard(lambda s: s.recent_incidents(env, limit))
        month = await self.guard(lambda s: s.resolved_since(now - timedelta(days=30)))
        if recent is None or month is None:
            return None
        return IncidentLog(recent, month, now)

    def incident_env(self, incident_id: int) -> str | None:
        """The environment whose open alert is this incident (None: resolved or unknown)."""
        states = self.monitor.states.values()
        return next((s.name for s in states if s.alert and s.alert.incident_id == incident_id), None)

    @staticmethod
    def silence_length(text: str) -> float:
        """Seconds of a silence written like 30m, 2h, 1h30m; ValueError says what is wrong."""
        return parse_duration(text)

    # Changing actions
    async def acknowledge(self, incident_id: int, actor: str) -> str:
        return await self.monitor.acknowledge(incident_id, actor)

    async def silence(self, env: str, duration_s: float, reason: str, actor: str) -> Silence:
        return await self.monitor.silence(env, duration_s, reason, actor)

    async def unsilence(self, env: str, actor: str) -> bool:
        return await self.monitor.unsilence(env, actor)

    async def retry(self, incident_id: int, env: str, who: str) -> RecoveryResult | Interrupted | str:
        """The alert's Retry reload, audited and tracked (a stop interrupts it); a str: nothing was done."""
        actor = f"{who} (Retry reload)"
        with self.inflight.track(f"Retry reload of {env} by {who}") as action:
            return await self._audited(
                action,
                actor,
                "retry reload",
                env,
                lambda on_step: self.monitor.retry_reload(incident_id, actor, on_step),
            )

    async def reload(
        self, env: str, actor: str, on_step: StepListener, action: Action, *, force: bool = False
    ) -> RecoveryResult | Interrupted:
        """/reload: the operator's recovery, audited; a joined run (someone else's) is recorded once, by it."""
        audit_id = await self.monitor.audit_begin(actor, "reload", env)
        result = await action.until_interrupted(
            self.operator.recover(self.targets[env], actor=actor, on_step=self._noting(action, on_step), force=force)
        )
        if result is None:
            await self.monitor.audit_end(audit_id, action.interruption, interrupted=True)
            return Interrupted(action.interruption)
        if result.actor == actor:
            self.monitor.record_reload(result, audited=True)
            await self.monitor.audit_end(audit_id, str(result.outcome))
        else:
            await self.monitor.audit_end(audit_id, f"{result.outcome} (joined the run of {result.actor})")
        return result

    async def escalate(self, env: str, result: RecoveryResult) -> None:
        """A reload that could not help opens the incident and posts the CRITICAL alert (once)."""
        if result.outcome is Outcome.ESCALATED:
            await self.monitor.open_alert(env, result.report_after, result)

    @staticmethod
    def _noting(action: Action, on_step: StepListener | None = None) -> StepListener:
        def noted(step: RecoveryStep) -> None:
            if step.kind is StepKind.NOTIFY:
                action.notify_sent = True
            if on_step is not None:
                on_step(step)

        return noted

    async def _audited(
        self,
        action: Action,
        actor: str,
        what: str,
        env: str,
        run: Callable[[StepListener], Awaitable[RecoveryResult | str]],
    ) -> RecoveryResult | Interrupted | str:
        audit_id = await self.monitor.audit_begin(actor, what, env)
        result = await action.until_interrupted(run(self._noting(action)))
        if result is None:
            await self.monitor.audit_end(audit_id, action.interruption, interrupted=True)
            return Interrupted(action.interruption)
        await self.monitor.audit_end(audit_id, result if isinstance(result, str) else str(result.outcome))
        return result
