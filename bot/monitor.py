"""The monitor: probe every environment on its interval, act after N failures, alert once, resolve once.

Knows nothing of Discord: alerts go to an AlertSink (the Discord channel, or the console + webhook).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from bot import __version__
from bot.config import Settings, Target
from bot.escalation import build_critical_alert, build_info_line, build_resolved_alert
from bot.probe import EnvReport, Prober
from bot.recovery import Outcome, RecoveryOperator, RecoveryResult
from bot.verdicts import Verdict, info

log = logging.getLogger(__name__)


class AlertSink(Protocol):
    """Where the monitor's messages go. Each method must not raise for delivery problems."""

    async def post_alert(self, env: str, payload: dict[str, Any], *, restart_url: str | None) -> Any:
        """Post a CRITICAL alert; return a handle to edit it later (or None)."""

    async def resolve_alert(self, env: str, handle: Any, payload: dict[str, Any]) -> None:
        """Turn the alert into its resolved form."""

    async def post_line(self, env: str, payload: dict[str, Any]) -> None:
        """Post a short notice (auto-recovered, resolved after N min)."""

    def status_change(self, env: str, old: str | None, new: str, explanation: str) -> None:
        """A verdict changed (console mode prints it; the bot logs it)."""


@dataclass
class ReloadRecord:
    actor: str
    outcome: Outcome
    at: datetime
    time_to_healthy_ms: float | None
    reason: str | None


@dataclass
class OpenAlert:
    opened_at: datetime
    verdict: Verdict
    handle: Any
    payload: dict[str, Any]


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


@dataclass
class MonitorHealth:
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    last_sweep_at: datetime | None = None
    last_sweep_ms: float | None = None
    running: bool = False
    version: str = __version__


class Monitor:
    def __init__(
        self,
        settings: Settings,
        targets: list[Target],
        prober: Prober,
        operator: RecoveryOperator,
        sink: AlertSink,
    ) -> None:
        self.settings = settings
        self.targets = {t.name: t for t in targets}
        self.prober = prober
        self.operator = operator
        self.sink = sink
        self.states = {t.name: EnvState(t.name) for t in targets}
        self.health = MonitorHealth()
        self._tasks: list[asyncio.Task[None]] = []
        self._locks = {t.name: asyncio.Lock() for t in targets}

    # -- the loop ---------------------------------------------------------------------------------
    def start(self) -> None:
        """One task per environment: a slow environment never delays another's checks."""
        self.health.running = True
        self._tasks = [asyncio.create_task(self._loop(name), name=f"monitor:{name}") for name in self.targets]

    async def stop(self) -> None:
        self.health.running = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

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

    # -- one check --------------------------------------------------------------------------------
    async def check(self, name: str) -> EnvState:
        async with self._locks[name]:
            started = time.perf_counter()
            report = await self.prober.probe(self.targets[name])
            self._note_sweep(started)
            state = self.states[name]
            self._record(state, report)
            if report.healthy:
                await self._maybe_resolve(state)
            elif state.fail_streak >= self.settings.monitor.failure_threshold and state.alert is None:
                await self._act(state, report)
            return state

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
        await self.open_alert(state.name, report, None)

    # -- used by the monitor and by /reload ---------------------------------------------------------
    def record_reload(self, result: RecoveryResult) -> None:
        if result.notify_sent or result.outcome is not Outcome.ALREADY_HEALTHY:
            self.states[result.env].last_reload = ReloadRecord(
                result.actor, result.outcome, result.finished_at, result.time_to_healthy_ms, result.reason
            )

    async def open_alert(self, name: str, report: EnvReport, result: RecoveryResult | None) -> bool:
        """Post the CRITICAL alert unless one is already open for this environment (no repeats)."""
        state = self.states[name]
        if state.alert is not None:
            return False
        target = self.targets[name]
        since = state.unhealthy_since or report.checked_at
        payload = build_critical_alert(
            name, target.config, report, result=result, since=since, alert_role_id=self.settings.discord.alert_role_id
        )
        restart = target.config.restart_url or target.config.dashboard_url
        # Mark it open before posting: a concurrent check must not post a second one.
        state.alert = OpenAlert(datetime.now(UTC), report.verdict, None, payload)
        state.unhealthy_since = since
        state.alert.handle = await self.sink.post_alert(name, payload, restart_url=str(restart) if restart else None)
        return True

    async def _maybe_resolve(self, state: EnvState) -> None:
        alert = state.alert
        if alert is None or state.ok_streak < self.settings.monitor.success_threshold:
            return
        state.alert = None
        resolved_at = datetime.now(UTC)
        started = state.unhealthy_since or alert.opened_at
        state.unhealthy_since = None
        resolved, line = build_resolved_alert(state.name, alert.payload, started, resolved_at)
        await self.sink.resolve_alert(state.name, alert.handle, resolved)
        await self.sink.post_line(state.name, line)
