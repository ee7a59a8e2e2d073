"""The store side of the incident desk: incident rows, their actions, reloads and the audit log.

An incident row is opened in one place (`open_incident_row`), whether the monitor opens it, logs an outage it
fixed by itself, or `pgrst-ops fix` records its run. The store may be down: writes go through the StoreGuard.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from bot.config import (
    Settings,
    Target,
)
from bot.core.incident import (
    EnvState,
    OpenAlert,
    ReloadRecord,
    first_signal,
    handle_columns,
    reattached,
)
from bot.core.incidents import AUTO_RECOVERED, CLI, MANUAL_RELOAD, MONITOR
from bot.core.kpi import breaches
from bot.core.records import AUDIT_DONE, AUDIT_INTERRUPTED, Incident, Silence
from bot.core.recovery import Outcome, RecoveryResult
from bot.core.report import EnvReport
from bot.core.verdicts import Verdict
from bot.delivery.guard import StoreGuard
from bot.delivery.sink import AlertSink
from bot.messages.alert import build_info_line
from bot.store import IncidentStore, StoreError, open_store, store_in_use, store_label

T = TypeVar("T")

log = logging.getLogger(__name__)


async def open_incident_row(
    store: IncidentStore,
    env: str,
    report: EnvReport,
    *,
    opened_at: datetime,
    trigger: str,
    verdict: Verdict | None = None,
) -> Incident:
    """The one place an incident row is opened: its first signal is the report's first failing check."""
    status, code = first_signal(report)
    shown = str(verdict or report.verdict)
    return await store.open_incident(env, opened_at=opened_at, verdict=shown, status=status, code=code, trigger=trigger)


class IncidentLog:
    """The desk's state and its store side: incident rows, actions, reloads, the audit log."""

    def __init__(
        self,
        settings: Settings,
        targets: dict[str, Target],
        states: dict[str, EnvState],
        sink: AlertSink,
        guard: StoreGuard,
    ) -> None:
        self.settings = settings
        self.targets = targets
        self.states = states
        self.sink = sink
        self.guard = guard
        self.silences: dict[str, Silence] = {}
        self.network_down_since: datetime | None = None
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.background: set[asyncio.Task[Any]] = set()
        self._memory_ids = itertools.count(10**15)  # incident ids while the store is unavailable

    def spawn(self, coro: Awaitable[Any]) -> None:
        """Work nobody waits for (audit rows, KPI lines); a stop gives it the shutdown grace."""
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def _db(self, call: Callable[[IncidentStore], Awaitable[T]]) -> T | None:
        return await self.guard(call)

    async def _update(self, alert: OpenAlert, **fields: Any) -> None:
        if alert.stored:
            await self._db(lambda s: s.update_incident(alert.incident_id, **fields))

    async def _action(self, alert: OpenAlert, actor: str, kind: str, detail: str = "") -> None:
        if alert.stored:
            await self._db(lambda s: s.add_action(alert.incident_id, actor, kind, detail))

    # -- after a restart --------------------------------------------------------------------------
    async def reattach(self) -> None:
        """Re-attach open incidents to their messages and reload silences."""
        for incident in await self._db(lambda s: s.open_incidents()) or []:
            state = self.states.get(incident.env)
            if state is None or state.alert is not None:
                continue
            state.alert = reattached(incident)
            state.unhealthy_since = incident.opened_at
            log.info("re-attached open incident #%s of %s", incident.id, incident.env)
        for silence in await self._db(lambda s: s.active_silences()) or []:
            if silence.env in self.states:
                self.silences[silence.env] = silence

    async def delivered(self, row: Any, result: dict[str, Any] | None) -> None:
        """A CRITICAL landed later (in the background, or replayed): remember its message, to edit it later."""
        incident_id = row.meta.get("incident_id")
        if row.kind == "post" and incident_id and result and handle_columns(result):
            await self._db(lambda s: s.update_incident(int(incident_id), **handle_columns(result)))
            for state in self.states.values():
                if state.alert is not None and state.alert.incident_id == incident_id:
                    state.alert.handle = result

    # -- reloads and the audit log ----------------------------------------------------------------
    async def auto_recovered(self, state: EnvState, report: EnvReport, result: RecoveryResult) -> None:
        """An outage the monitor fixed by itself: one line, and an incident in the log (no CRITICAL)."""
        opened = state.unhealthy_since or report.checked_at
        incident = await self._db(lambda s: open_incident_row(s, state.name, report, opened_at=opened, trigger=MONITOR))
        if incident is not None:
            await self._db(lambda s: s.add_action(incident.id, "auto", "notify", f"outcome {result.outcome}"))
            await self._db(
                lambda s: s.update_incident(incident.id, resolved_at=result.finished_at, resolution=AUTO_RECOVERED)
            )
        line = build_info_line(
            state.name,
            f"✅ Auto-recovered: {report.verdict} fixed by a schema reload, healthy "
            f"{result.time_to_healthy_ms:.0f} ms after the NOTIFY.",
        )
        await self.sink.post_line(state.name, line)

    def record_reload(self, result: RecoveryResult, *, audited: bool = False) -> None:
        """`audited`: the caller wrote the audit row itself (at the start, completed at the end)."""
        state = self.states[result.env]
        if result.notify_sent or result.outcome is not Outcome.ALREADY_HEALTHY:
            state.last_reload = ReloadRecord(
                result.actor, result.outcome, result.finished_at, result.time_to_healthy_ms, result.reason, result.kpis
            )
        breached = breaches(result.kpis)
        if breached:  # the runbook's KPIs: a warning, not a CRITICAL
            text = f"⚠️ {result.env.upper()} reload KPI above its alert threshold: " + "; ".join(
                k.line().removeprefix("⚠️ ") for k in breached
            )
            self.spawn(self.sink.post_line(result.env, build_info_line(result.env, text)))
        alert = state.alert
        if alert is not None and result.outcome is Outcome.RECOVERED:
            alert.resolution_hint = AUTO_RECOVERED if result.actor == "auto" else MANUAL_RELOAD
        if result.actor != "auto" and not audited:
            self.spawn(self._db(lambda s: s.audit(result.actor, "reload", result.env, str(result.outcome))))
        if alert is not None and alert.stored and (result.notify_sent or result.actor != "auto"):
            detail = f"outcome {result.outcome}" + (f": {result.reason}" if result.reason else "")
            self.spawn(self._db(lambda s: s.add_action(alert.incident_id, result.actor, "reload", detail)))

    def audit(self, actor: str, action: str, env: str, outcome: str) -> None:
        """An audit entry, written in the background (the store is never in a command's way)."""
        self.spawn(self._db(lambda s: s.audit(actor, action, env, outcome)))

    async def audit_begin(self, actor: str, action: str, env: str) -> int | None:
        """The intent of a changing action, before it runs; None when the store is unavailable."""
        return await self._db(lambda s: s.audit_begin(actor, action, env))

    async def audit_end(self, row_id: int | None, outcome: str, *, interrupted: bool = False) -> None:
        if row_id is not None:
            status = AUDIT_INTERRUPTED if interrupted else AUDIT_DONE
            await self._db(lambda s: s.audit_end(row_id, outcome, status=status))


async def record_incident(settings: Settings, result: RecoveryResult) -> str | None:
    """Write the run to the bot's incident log (trigger `cli`): its PostgreSQL store, or its SQLite file when that
    exists on this machine.

    A CI runner without the bot's SQLite file gets no stray database file: nothing is created here.
    """
    if not await store_in_use(settings.incidents):
        return None
    store = await open_store(settings.incidents)
    if store is None:
        return f"not recorded: {store_label(settings.incidents)} cannot be opened (see the log)"
    try:
        await store.audit(result.actor, "fix", result.env, str(result.outcome))
        if result.outcome is Outcome.ALREADY_HEALTHY:
            return "audit entry written (already healthy: no incident)"
        incident = await open_incident_row(
            store,
            result.env,
            result.report_before,
            opened_at=result.started_at,
            trigger=CLI,
            verdict=result.verdict_before,
        )
        detail = f"outcome {result.outcome}" + (f": {result.reason}" if result.reason else "")
        await store.add_action(incident.id, result.actor, "reload" if result.notify_sent else "escalated", detail)
        if result.outcome is Outcome.RECOVERED:
            await store.update_incident(incident.id, resolved_at=result.finished_at, resolution=MANUAL_RELOAD)
            return f"incident #{incident.id} recorded (resolved: {MANUAL_RELOAD})"
        return f"incident #{incident.id} opened; the bot's monitor takes it over and resolves it"
    except StoreError as err:
        return f"not recorded: {err}"
    finally:
        await store.close()


async def record_audit(settings: Settings, actor: str, action: str, env: str, outcome: str) -> str | None:
    """One audit row for a CLI action (a restart) in the bot's store, where `record_incident` would write."""
    if not await store_in_use(settings.incidents):
        return None
    store = await open_store(settings.incidents)
    if store is None:
        return f"not recorded: {store_label(settings.incidents)} cannot be opened (see the log)"
    try:
        await store.audit(actor, action, env, outcome)
        return "audit entry written"
    except StoreError as err:
        return f"not recorded: {err}"
    finally:
        await store.close()
