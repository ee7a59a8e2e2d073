"""The monitor: probe every environment on its interval, act after N failures, alert once, resolve once.

Every outage is an incident in the store (opened, actions, acknowledged, resolved with a resolution).
Alerts are held while an environment is silenced, in a maintenance window, or while every environment
fails at once (the bot's own network). Flapping environments get one alert. After a restart, open
incidents are re-attached to their messages. A store failure never stops probing or alerting.

Knows nothing of Discord: alerts go to an AlertSink (the Discord channel, or the console + webhook).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from bot import __version__
from bot.config import Settings, Target
from bot.core.diagnosis import Diagnosis
from bot.core.drift import DriftReport
from bot.core.incidents import (
    AFTER_RESTART,
    AUTO_RECOVERED,
    CLI,
    MANUAL_RELOAD,
    MONITOR,
    RECOVERED_BY_ITSELF,
    RELOAD,
    RESOLUTION_TEXT,
    FlapDetector,
    active_window,
)
from bot.core.kpi import KpiSample, breaches
from bot.core.records import AUDIT_DONE, AUDIT_INTERRUPTED, Incident, Silence
from bot.core.recovery import Outcome, RecoveryResult, StepListener
from bot.core.report import EnvReport, unreachable
from bot.core.schema_version import SchemaVersionReport
from bot.core.verdicts import Verdict, info
from bot.delivery.outbox import StoreGuard
from bot.messages import incidents as inc
from bot.messages.alert import build_critical_alert, build_info_line, build_resolved_alert
from bot.ops.check import diagnose_failure
from bot.ops.drift import check_drift
from bot.ops.recovery import RecoveryOperator
from bot.postgres.schema_version import check_target_schema_version
from bot.postgrest.probe import Prober
from bot.store import IncidentStore

T = TypeVar("T")

log = logging.getLogger(__name__)


class AlertSink(Protocol):
    """Where the monitor's messages go. Each method must not raise for delivery problems.

    A handle is a plain dict ({"channel_id", "message_id"} or {"webhook_message_id"}), kept in the store.
    """

    async def post_alert(
        self, env: str, payload: dict[str, Any], *, restart_url: str | None, incident_id: int | None = None
    ) -> Any:
        """Post a CRITICAL alert (with its buttons when incident_id is known); return a handle, or None."""

    async def edit_alert(
        self,
        env: str,
        handle: Any,
        payload: dict[str, Any],
        *,
        restart_url: str | None = None,
        incident_id: int | None = None,
    ) -> None:
        """Edit an open alert (acknowledged, flapping), keeping its buttons."""

    async def resolve_alert(self, env: str, handle: Any, payload: dict[str, Any]) -> None:
        """Turn the alert into its resolved form and remove its buttons."""

    async def post_line(self, env: str, payload: dict[str, Any], *, reply_to: Any = None) -> None:
        """Post a short notice (auto-recovered, resolved, reminder as a reply to the alert)."""

    def status_change(self, env: str, old: str | None, new: str, explanation: str) -> None:
        """A verdict changed (console mode prints it; the bot logs it)."""


@dataclass
class ReloadRecord:
    actor: str
    outcome: Outcome
    at: datetime
    time_to_healthy_ms: float | None
    reason: str | None
    kpis: tuple[KpiSample, ...] = ()


@dataclass
class OpenAlert:
    """The open incident of an environment (posted, or held while silenced)."""

    opened_at: datetime
    verdict: Verdict
    handle: Any
    payload: dict[str, Any]
    incident_id: int = 0  # the store's id; with the store down, an in-memory id (stored=False)
    stored: bool = False
    restart_url: str | None = None
    trigger: str = MONITOR
    acknowledged_by: str | None = None
    last_reminder_at: datetime | None = None
    held: bool = False  # not posted yet: silenced, maintenance, or the bot's network is down
    flapping: bool = False
    restored: bool = False  # re-attached after a restart
    resolution_hint: str | None = None  # set by a reload that fixed it
    restart_asked: bool = False  # the alert asked for a manual restart


@dataclass
class EnvState:
    name: str
    verdict: Verdict | None = None  # None until the first probe
    since: datetime | None = None  # when the current verdict started
    unhealthy_since: datetime | None = None  # first failing check of the current outage
    last_report: EnvReport | None = None
    fail_streak: int = 0
    ok_streak: int = 0
    last_reload: ReloadRecord | None = None
    alert: OpenAlert | None = None
    flaps: FlapDetector | None = None
    in_maintenance: bool = False
    diagnosis: Diagnosis | None = None  # of the last unhealthy check
    drift: DriftReport | None = None  # the last drift check (slow loop)
    schema_version: SchemaVersionReport | None = None


@dataclass
class MonitorHealth:
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    last_sweep_at: datetime | None = None
    last_sweep_ms: float | None = None
    running: bool = False
    version: str = __version__


def handle_from(incident: Incident) -> Any:
    if incident.message_id is None:
        return None
    if incident.channel_id == 0:
        return {"webhook_message_id": str(incident.message_id)}
    return {"channel_id": incident.channel_id, "message_id": incident.message_id}


def handle_columns(handle: Any) -> dict[str, Any]:
    if isinstance(handle, dict) and "message_id" in handle:
        return {"channel_id": int(handle["channel_id"]), "message_id": int(handle["message_id"])}
    if isinstance(handle, dict) and handle.get("webhook_message_id"):
        return {"channel_id": 0, "message_id": int(handle["webhook_message_id"])}
    return {}


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
    ) -> None:
        self.settings = settings
        self.targets = {t.name: t for t in targets}
        self.prober = prober
        self.operator = operator
        self.sink = sink
        self.guard = guard or StoreGuard(store)
        cfg = settings.incidents
        self.states = {t.name: EnvState(t.name, flaps=FlapDetector(cfg.flap_flips, cfg.flap_window_s)) for t in targets}
        self.silences: dict[str, Silence] = {}
        self.network_down_since: datetime | None = None
        self.health = MonitorHealth()
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)  # tests move the clock
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._locks = {t.name: asyncio.Lock() for t in targets}
        self._memory_ids = itertools.count(10**15)  # incident ids while the store is unavailable
        self._drift_notices: dict[str, str] = {}
        outbox = getattr(sink, "outbox", None)
        if outbox is not None:  # a post delivered later (in the background) is remembered on its incident
            outbox.on_delivered = self._delivered

    # -- the loop ---------------------------------------------------------------------------------
    def start(self) -> None:
        """One task per environment: a slow environment never delays another's checks."""
        self.health.running = True
        self._tasks = [asyncio.create_task(self._loop(name), name=f"monitor:{name}") for name in self.targets]
        self._tasks.append(asyncio.create_task(self._outbox_loop(), name="monitor:outbox"))
        if self.settings.monitor.drift_interval_s > 0:
            self._tasks += [
                asyncio.create_task(self._slow_loop(name), name=f"monitor:drift:{name}")
                for name, target in self.targets.items()
                if target.secrets.database_dsn is not None
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
        pending = set(self._background) | (outbox.in_flight() if outbox is not None else set())
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

    async def _loop(self, name: str) -> None:
        interval = self.settings.monitor.interval_s
        while True:
            started = time.monotonic()
            try:
                await self.check(name)
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad sweep must not kill the monitor
                log.exception("monitor check of %s failed", name)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def _slow_loop(self, name: str) -> None:
        """Drift and the schema version guard: heavier than a probe, so on their own slower interval."""
        while True:
            try:
                await self.slow_check(name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("drift check of %s failed", name)
            await asyncio.sleep(self.settings.monitor.drift_interval_s)

    async def slow_check(self, name: str) -> DriftReport:
        """Compare catalog and API; a stale drift (objects that exist) takes the recovery path."""
        target, state, rec = self.targets[name], self.states[name], self.settings.recovery
        if target.config.schema_version is not None:
            state.schema_version = await check_target_schema_version(
                target, os.environ, connect_timeout=rec.db_connect_timeout_s, command_timeout=rec.db_command_timeout_s
            )
        drift = await self._check_drift(target)
        state.drift = drift
        if drift.stale and not (state.alert or self.hold_reason(name)):
            await self._drift_recovery(target, drift)
        elif drift.ungranted:
            text = (
                f"🔒 {name.upper()}: objects no API role may use (a permission problem, not a stale cache): "
                f"{drift.ungranted.describe()}. GRANT them to {', '.join(target.config.api_roles)} if the API "
                "should serve them."
            )
            await self._drift_notice(name, text)
        return drift

    async def _check_drift(self, target: Target) -> DriftReport:
        rec = self.settings.recovery
        return await check_drift(
            self.prober.client,
            target,
            max_body_bytes=self.settings.monitor.drift_max_body_bytes,
            connect_timeout=rec.db_connect_timeout_s,
            command_timeout=rec.db_command_timeout_s,
            memory=self.guard,
        )

    async def _drift_notice(self, name: str, text: str) -> None:
        """Drift notices once per distinct finding: the slow loop must not repeat the same line every run."""
        if self._drift_notices.get(name) == text:
            return
        self._drift_notices[name] = text
        await self.sink.post_line(name, build_info_line(name, text))

    async def _drift_recovery(self, target: Target, drift: DriftReport) -> None:
        """Objects exist but PostgREST does not serve them: reload (auto_recover), re-check, else warn."""
        name = target.name
        what = drift.summary
        if not target.config.auto_recover:
            text = f"⚠️ {name.upper()} schema drift: {what}. Reload with `/reload {name}` (auto_recover is off)."
            await self._drift_notice(name, text)
            return
        result = await self.operator.reload_for_drift(target, actor="auto (drift)")
        self.record_reload(result)
        rec = self.settings.recovery
        after = drift
        if result.notify_sent:
            deadline = time.monotonic() + rec.deadline_s
            while time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                after = await self._check_drift(target)
                if not after.stale:
                    break
            self.states[name].drift = after
        if result.notify_sent and not after.stale:
            text = f"🔧 {name.upper()} schema drift fixed by a reload: {drift.missing_in_api.describe() or what}."
        else:
            why = result.reason or f"still stale after the reload: {after.summary}"
            text = f"⚠️ {name.upper()} schema drift not fixed: {why}"
        await self._drift_notice(name, text)

    async def _outbox_loop(self) -> None:
        """Unsent messages (Discord down for longer than the retries) go out as soon as Discord is back."""
        while True:
            await asyncio.sleep(self.settings.incidents.outbox_retry_s)
            try:
                await self.flush_outbox()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox flush failed")

    async def flush_outbox(self) -> None:
        outbox = getattr(self.sink, "outbox", None)
        if outbox is not None:
            await outbox.flush(self._delivered)

    async def _delivered(self, row: Any, result: dict[str, Any] | None) -> None:
        """A replayed CRITICAL landed: remember its message so it is edited later, not re-posted."""
        incident_id = row.meta.get("incident_id")
        if row.kind == "post" and incident_id and result and handle_columns(result):
            await self._db(lambda s: s.update_incident(int(incident_id), **handle_columns(result)))
            for state in self.states.values():
                if state.alert is not None and state.alert.incident_id == incident_id:
                    state.alert.handle = result

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _db(self, call: Callable[[IncidentStore], Awaitable[T]]) -> T | None:
        return await self.guard(call)

    # -- restart ----------------------------------------------------------------------------------
    async def restore(self) -> None:
        """After a restart: send what was left in the outbox, re-attach open incidents, reload silences."""
        await self.flush_outbox()
        for incident in await self._db(lambda s: s.open_incidents()) or []:
            state = self.states.get(incident.env)
            if state is None or state.alert is not None:
                continue
            state.alert = OpenAlert(
                opened_at=incident.opened_at,
                verdict=Verdict(incident.verdict)
                if incident.verdict in Verdict.__members__.values()
                else Verdict.UNEXPECTED,
                handle=handle_from(incident),
                payload=incident.alert_payload or {},
                incident_id=incident.id,
                stored=True,
                trigger=incident.trigger,
                acknowledged_by=incident.acknowledged_by,
                last_reminder_at=incident.last_reminder_at,
                held=incident.silenced,
                flapping=incident.flapping,
                restored=True,
            )
            state.unhealthy_since = incident.opened_at
            log.info("re-attached open incident #%s of %s", incident.id, incident.env)
        for silence in await self._db(lambda s: s.active_silences()) or []:
            if silence.env in self.states:
                self.silences[silence.env] = silence

    # -- one check --------------------------------------------------------------------------------
    async def check(self, name: str) -> EnvState:
        async with self._locks[name]:
            started = time.perf_counter()
            report = await self.prober.probe(self.targets[name])
            self._note_sweep(started)
            state = self.states[name]
            state.diagnosis = await self._diagnose(name, report)
            if state.diagnosis is not None:
                report = state.diagnosis.report  # stale confirmed, or missing / not granted
            self._record(state, report)
            now = self.now()
            assert state.flaps is not None
            state.flaps.record(report.healthy, now)
            await self._network(report)
            if state.flaps.flapping(now):
                await self._flapping(state, now)
            elif report.healthy:
                await self._maybe_resolve(state)
            elif state.fail_streak >= self.settings.monitor.failure_threshold and state.alert is None:
                await self._act(state, report)
            await self._housekeeping(state)
            return state

    async def _diagnose(self, name: str, report: EnvReport) -> Diagnosis | None:
        return await diagnose_failure(
            self.targets[name],
            report,
            self.settings.recovery,
            measured_reload_ms=self.operator.measured_reload_ms(name),
            skip_unreachable=True,
        )

    def _note_sweep(self, started: float) -> None:
        self.health.last_sweep_at = datetime.now(UTC)
        self.health.last_sweep_ms = (time.perf_counter() - started) * 1000

    def _record(self, state: EnvState, report: EnvReport) -> None:
        if state.verdict is not report.verdict:
            self.sink.status_change(state.name, state.verdict, report.verdict, report.explanation)
            state.since = report.checked_at
        if report.healthy:
            state.ok_streak += 1
            state.fail_streak = 0
            if state.alert is None:
                state.unhealthy_since = None
        else:
            state.fail_streak += 1
            state.ok_streak = 0
            state.unhealthy_since = state.unhealthy_since or report.checked_at
        state.verdict = report.verdict
        state.last_report = report

    async def _act(self, state: EnvState, report: EnvReport) -> None:
        target = self.targets[state.name]
        if target.config.auto_recover and info(report.verdict).reload_helps:
            result = await self.operator.recover(target, actor="auto")
            self.record_reload(result)
            if result.outcome is Outcome.RECOVERED:
                self._record(state, result.report_after)
                await self._log_auto_recovered(state, report, result)
                line = build_info_line(
                    state.name,
                    f"🔧 Auto-recovered: {report.verdict} fixed by a schema reload, healthy "
                    f"{result.time_to_healthy_ms:.0f} ms after the NOTIFY.",
                )
                await self.sink.post_line(state.name, line)
                return
            if result.outcome is Outcome.ALREADY_HEALTHY:
                self._record(state, result.report_after)
                return
            await self.open_alert(state.name, result.report_after, result)
            return
        await self.open_alert(state.name, report, None, diagnosis=state.diagnosis)

    async def _log_auto_recovered(self, state: EnvState, report: EnvReport, result: RecoveryResult) -> None:
        """An outage the monitor fixed by itself is still an incident in the log (no CRITICAL was posted)."""
        status, code = first_signal(report)
        opened = state.unhealthy_since or report.checked_at
        incident = await self._db(
            lambda s: s.open_incident(
                state.name, opened_at=opened, verdict=str(report.verdict), status=status, code=code, trigger=MONITOR
            )
        )
        if incident is None:
            return
        await self._db(lambda s: s.add_action(incident.id, "auto", "notify", f"outcome {result.outcome}"))
        await self._db(
            lambda s: s.update_incident(incident.id, resolved_at=result.finished_at, resolution=AUTO_RECOVERED)
        )

    # -- used by the monitor and by /reload ---------------------------------------------------------
    def record_reload(self, result: RecoveryResult, *, audited: bool = False) -> None:
        """`audited`: the caller wrote the audit row itself (at the start, completed at the end)."""
        if result.notify_sent or result.outcome is not Outcome.ALREADY_HEALTHY:
            self.states[result.env].last_reload = ReloadRecord(
                result.actor, result.outcome, result.finished_at, result.time_to_healthy_ms, result.reason, result.kpis
            )
        breached = breaches(result.kpis)
        if breached:  # the runbook's KPIs: a warning, not a CRITICAL
            text = f"⚠️ {result.env.upper()} reload KPI above its alert threshold: " + "; ".join(
                k.line().removeprefix("⚠️ ") for k in breached
            )
            self._spawn(self.sink.post_line(result.env, build_info_line(result.env, text)))
        alert = self.states[result.env].alert
        if alert is not None and result.outcome is Outcome.RECOVERED:
            alert.resolution_hint = AUTO_RECOVERED if result.actor == "auto" else MANUAL_RELOAD
        if result.actor != "auto" and not audited:
            self._spawn(self._db(lambda s: s.audit(result.actor, "reload", result.env, str(result.outcome))))
        if alert is not None and alert.stored and (result.notify_sent or result.actor != "auto"):
            detail = f"outcome {result.outcome}" + (f": {result.reason}" if result.reason else "")
            self._spawn(self._db(lambda s: s.add_action(alert.incident_id, result.actor, "reload", detail)))

    def audit(self, actor: str, action: str, env: str, outcome: str) -> None:
        """An audit entry, written in the background (the store is never in a command's way)."""
        self._spawn(self._db(lambda s: s.audit(actor, action, env, outcome)))

    async def audit_begin(self, actor: str, action: str, env: str) -> int | None:
        """The intent of a changing action, before it runs; None when the store is unavailable."""
        return await self._db(lambda s: s.audit_begin(actor, action, env))

    async def audit_end(self, row_id: int | None, outcome: str, *, interrupted: bool = False) -> None:
        if row_id is not None:
            status = AUDIT_INTERRUPTED if interrupted else AUDIT_DONE
            await self._db(lambda s: s.audit_end(row_id, outcome, status=status))

    async def open_alert(
        self, name: str, report: EnvReport, result: RecoveryResult | None, *, diagnosis: Diagnosis | None = None
    ) -> bool:
        """Open the incident and post the CRITICAL alert, unless one is already open (no repeats)."""
        state = self.states[name]
        if state.alert is not None:
            return False
        target = self.targets[name]
        since = state.unhealthy_since or report.checked_at
        payload = build_critical_alert(
            name,
            target.config,
            report,
            result=result,
            since=since,
            alert_role_id=self.settings.discord.alert_mention_id,
            diagnosis=diagnosis,
        )
        restart = target.config.restart_url or target.config.dashboard_url
        trigger = RELOAD if result is not None and result.actor != "auto" else MONITOR
        found = diagnosis or (result.diagnosis if result is not None else None)
        cause_found = bool(found and found.findings)
        # Mark it open before any await: a concurrent check must not post a second one.
        alert = OpenAlert(
            since,
            report.verdict,
            None,
            payload,
            restart_url=str(restart) if restart else None,
            trigger=trigger,
            # A named cause (e.g. a role setting) is fixed in the database, not by a restart.
            restart_asked=(result is not None or not info(report.verdict).reload_helps) and not cause_found,
        )
        state.alert = alert
        state.unhealthy_since = since
        await self._open_incident(state, report, "escalated" if result is not None else "opened")
        hold = self.hold_reason(name)
        if hold is not None:
            alert.held = True
            await self._incident_update(alert, silenced=True)
            await self._action(alert, "monitor", "held", hold)
            return True
        await self._post(state)
        return True

    async def _open_incident(self, state: EnvState, report: EnvReport, kind: str) -> None:
        alert = state.alert
        assert alert is not None
        status, code = first_signal(report)
        # A `pgrst-ops fix` run on this machine may have opened the incident already: take it over.
        opened = await self._db(lambda s: s.open_incidents()) or []
        adopted = next((i for i in opened if i.env == state.name and i.trigger == CLI and not i.message_id), None)
        if adopted is not None:
            alert.opened_at, alert.trigger = min(alert.opened_at, adopted.opened_at), CLI
        incident = adopted or await self._db(
            lambda s: s.open_incident(
                state.name,
                opened_at=alert.opened_at,
                verdict=str(report.verdict),
                status=status,
                code=code,
                trigger=alert.trigger,
            )
        )
        if incident is None:  # the store is down: an in-memory id keeps the buttons working until a restart
            alert.incident_id = next(self._memory_ids)
            return
        alert.incident_id, alert.stored = incident.id, True
        await self._incident_update(alert, alert_payload=alert.payload, flapping=alert.flapping)
        await self._action(alert, "monitor", kind, report.explanation)

    async def _incident_update(self, alert: OpenAlert, **fields: Any) -> None:
        if alert.stored:
            await self._db(lambda s: s.update_incident(alert.incident_id, **fields))

    async def _action(self, alert: OpenAlert, actor: str, kind: str, detail: str = "") -> None:
        if alert.stored:
            await self._db(lambda s: s.add_action(alert.incident_id, actor, kind, detail))

    async def _post(self, state: EnvState) -> None:
        alert = state.alert
        assert alert is not None
        alert.handle = await self.sink.post_alert(
            state.name, alert.payload, restart_url=alert.restart_url, incident_id=alert.incident_id or None
        )
        if alert.handle:
            await self._incident_update(alert, **handle_columns(alert.handle))

    async def _maybe_resolve(self, state: EnvState) -> None:
        alert = state.alert
        if alert is None:
            return
        needed = 1 if alert.restored else self.settings.monitor.success_threshold
        if state.ok_streak < needed:
            return
        now = self.now()
        if alert.flapping and state.flaps is not None and not state.flaps.stable(now):
            return
        if alert.resolution_hint:
            resolution = alert.resolution_hint
        elif alert.restored or alert.flapping:
            resolution = RECOVERED_BY_ITSELF
        elif alert.restart_asked:
            resolution = AFTER_RESTART
        else:
            resolution = RECOVERED_BY_ITSELF
        await self.resolve(state, resolution)

    async def resolve(self, state: EnvState, resolution: str) -> None:
        """Close the incident: edit the alert to resolved (no buttons) and post exactly one resolved line."""
        alert = state.alert
        if alert is None:
            return
        state.alert = None
        resolved_at = datetime.now(UTC)
        started = alert.opened_at
        state.unhealthy_since = None
        await self._incident_update(alert, resolved_at=resolved_at, resolution=resolution, silenced=False)
        await self._action(alert, "monitor", "resolved", resolution)
        if not alert.payload.get("embeds"):
            return
        resolved, line = build_resolved_alert(state.name, alert.payload, started, resolved_at)
        resolved = inc.resolution_note(resolved, resolution)
        line["content"] = line["content"].rstrip(".") + f" ({RESOLUTION_TEXT.get(resolution, resolution)})."
        if alert.handle:
            await self.sink.resolve_alert(state.name, alert.handle, resolved)
        if not alert.held:  # an alert nobody saw (silenced) needs no "resolved" line
            await self.sink.post_line(state.name, line)

    # -- holding: silences, maintenance windows, the bot's own network -------------------------------
    def hold_reason(self, name: str) -> str | None:
        now = self.now()
        silence = self.silences.get(name)
        if silence is not None and now < silence.until:
            return f"silenced by {silence.actor}: {silence.reason}"
        window = active_window(self.targets[name].config.maintenance, now)
        if window is not None:
            return f"maintenance window: {window.window.reason}"
        if self.network_down_since is not None:
            return "every environment is unreachable: the bot may have lost its network"
        return None

    async def _network(self, report: EnvReport) -> None:
        if len(self.states) < 2:
            return
        if self.network_down_since is None:
            states = list(self.states.values())
            if all(unreachable(s.last_report) for s in states):
                since = min(s.unhealthy_since or report.checked_at for s in states)
                self.network_down_since = since
                await self.sink.post_line(
                    "*", inc.network_lost_line(list(self.states), since, self.settings.discord.alert_mention_id)
                )
        elif not unreachable(report):
            since, self.network_down_since = self.network_down_since, None
            await self.sink.post_line("*", inc.network_back_line(since, self.now()))

    async def _flapping(self, state: EnvState, now: datetime) -> None:
        alert = state.alert
        if alert is not None and alert.flapping:
            return
        assert state.flaps is not None
        flips = state.flaps.count(now)
        window = self.settings.incidents.flap_window_s
        payload = inc.flapping_alert(state.name, flips, window, now, self.settings.discord.alert_mention_id)
        if alert is not None:  # an alert is already open: it becomes the flapping alert
            alert.flapping = True
            alert.payload = payload
            await self._incident_update(alert, flapping=True, alert_payload=payload)
            await self._action(alert, "monitor", "flapping", f"{flips} flips")
            if alert.handle:
                await self.sink.edit_alert(
                    state.name, alert.handle, payload, restart_url=alert.restart_url, incident_id=alert.incident_id
                )
            return
        report = state.last_report
        assert report is not None
        target = self.targets[state.name]
        restart = target.config.restart_url or target.config.dashboard_url
        alert = OpenAlert(now, report.verdict, None, payload, restart_url=str(restart) if restart else None)
        alert.flapping = True
        state.alert = alert
        await self._open_incident(state, report, "flapping")
        if self.hold_reason(state.name) is not None:
            alert.held = True
            await self._incident_update(alert, silenced=True)
            return
        await self._post(state)

    async def _housekeeping(self, state: EnvState) -> None:
        """After each check: silence expiry, maintenance start/end, held alerts, reminders."""
        name, now, alert = state.name, self.now(), state.alert
        still_down = state.last_report is not None and not state.last_report.healthy
        silence = self.silences.get(name)
        if silence is not None and now >= silence.until:
            del self.silences[name]
            await self._db(lambda s: s.end_silence(name))
            await self.sink.post_line(name, inc.silence_expired_line(name, silence.reason, silence.actor, still_down))
        window = active_window(self.targets[name].config.maintenance, now)
        if window is not None and not state.in_maintenance:
            state.in_maintenance = True
            await self.sink.post_line(name, inc.maintenance_line(name, window))
        elif window is None and state.in_maintenance:
            state.in_maintenance = False
            await self.sink.post_line(name, inc.maintenance_over_line(name, still_down))
        if alert is None:
            return
        held_by = self.hold_reason(name)
        if alert.held and held_by is None:
            alert.held = False
            await self._incident_update(alert, silenced=False)
            await self._action(alert, "monitor", "released", "hold ended; alert posted")
            await self._post(state)
            return
        interval = self.settings.incidents.reminder_interval_s
        if interval <= 0 or held_by is not None or alert.acknowledged_by or not alert.handle:
            return
        last = alert.last_reminder_at or alert.opened_at
        if now - last >= timedelta(seconds=interval):
            alert.last_reminder_at = now
            await self._incident_update(alert, last_reminder_at=now)
            await self._action(alert, "monitor", "reminder", "")
            verdict = str(state.verdict or alert.verdict)
            await self.sink.post_line(
                name, inc.reminder_line(name, alert.opened_at, now, verdict), reply_to=alert.handle
            )

    # -- operator actions (buttons and commands) ------------------------------------------------------
    def _find(self, incident_id: int) -> EnvState | None:
        for state in self.states.values():
            if state.alert is not None and state.alert.incident_id == incident_id:
                return state
        return None

    async def acknowledge(self, incident_id: int, actor: str) -> str:
        """Record who took the incident, stop reminders, show it on the alert. Returns the reply for the user."""
        state = self._find(incident_id)
        if state is None or state.alert is None:
            return f"Incident #{incident_id} is already resolved (or unknown): nothing to acknowledge."
        alert = state.alert
        if alert.acknowledged_by:
            return f"Incident #{incident_id} was already acknowledged by {alert.acknowledged_by}."
        at = self.now()
        alert.acknowledged_by = actor
        alert.payload = inc.acknowledged_payload(alert.payload, actor, at)
        await self._incident_update(alert, acknowledged_by=actor, acknowledged_at=at, alert_payload=alert.payload)
        await self._action(alert, actor, "ack")
        await self._db(lambda s: s.audit(actor, "acknowledge", state.name, f"incident #{incident_id}"))
        if alert.handle:
            await self.sink.edit_alert(
                state.name, alert.handle, alert.payload, restart_url=alert.restart_url, incident_id=incident_id
            )
        return f"👀 You acknowledged incident #{incident_id} ({state.name.upper()}). Reminders stopped."

    async def silence(self, env: str, duration_s: float, reason: str, actor: str) -> Silence:
        until = self.now() + timedelta(seconds=duration_s)
        silence = Silence(env, until, reason, actor, self.now())
        self.silences[env] = silence
        await self._db(lambda s: s.add_silence(env, until, reason, actor))
        await self._db(
            lambda s: s.audit(actor, "silence", env, f"until {until.isoformat(timespec='seconds')}: {reason}")
        )
        alert = self.states[env].alert
        if alert is not None:
            await self._action(alert, actor, "silence", reason)
        await self.sink.post_line(env, inc.silenced_line(env, until, reason, actor))
        return silence

    async def unsilence(self, env: str, actor: str) -> bool:
        silence = self.silences.pop(env, None)
        if silence is None:
            return False
        await self._db(lambda s: s.end_silence(env))
        await self._db(lambda s: s.audit(actor, "unsilence", env, "ok"))
        state = self.states[env]
        still_down = state.alert is not None
        await self.sink.post_line(env, inc.unsilenced_line(env, actor, still_down))
        async with self._locks[env]:
            await self._housekeeping(state)
        return True

    async def retry_reload(
        self, incident_id: int, actor: str, on_step: StepListener | None = None
    ) -> RecoveryResult | str:
        """The alert's Retry reload; the caller audits it (audit_begin / audit_end) and may be interrupted."""
        state = self._find(incident_id)
        if state is None:
            return f"Incident #{incident_id} is already resolved: no reload needed."
        result = await self.operator.recover(self.targets[state.name], actor=actor, on_step=on_step)
        self.record_reload(result, audited=True)
        if result.outcome is not Outcome.ESCALATED:
            async with self._locks[state.name]:
                self._record(state, result.report_after)
                if state.alert is not None and state.alert.incident_id == incident_id:
                    hint = MANUAL_RELOAD if result.outcome is Outcome.RECOVERED else RECOVERED_BY_ITSELF
                    await self.resolve(state, hint)
        return result

    def incident_for(self, env: str) -> OpenAlert | None:
        state = self.states.get(env)
        return state.alert if state else None


def first_signal(report: EnvReport) -> tuple[int | None, str | None]:
    """The failing check's HTTP status and PostgREST code (the incident's first signal)."""
    for check in report.checks:
        if check.verdict is not Verdict.HEALTHY:
            return check.status, check.code
    return None, None


def open_summary(monitor: Monitor) -> list[str]:
    """One line per open incident or active silence, for /status."""
    lines = []
    now = monitor.now()
    for state in monitor.states.values():
        alert = state.alert
        if alert is not None:
            ref = f"#{alert.incident_id}" if alert.stored else "(not stored)"
            parts = [f"🚨 **{state.name.upper()}** incident {ref} open since <t:{int(alert.opened_at.timestamp())}:R>"]
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
                f"🔕 **{state.name.upper()}** silenced until <t:{int(silence.until.timestamp())}:R> by "
                f"{silence.actor}: {silence.reason}"
            )
    if monitor.guard.error:
        lines.append(f"⚠️ {monitor.guard.error[:300]} (incidents are in memory only)")
    return lines
