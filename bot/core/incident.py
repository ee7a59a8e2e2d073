"""The incident state machine, without I/O: what the monitor knows of each environment and what it decides.

`decide(state, report, now, policy)` says what a check's report leads to (wait, act, resolve, flapping);
`chores()` what is due after it (silence expiry, maintenance start and end, a held alert's release, a
reminder); `hold_reason()` why an alert is held. Every time comes from the caller's clock. The incident desk
(bot/ops/desk.py) carries the decisions out: store writes and messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from bot import __version__
from bot.core.diagnosis import Diagnosis
from bot.core.drift import DriftReport
from bot.core.incidents import AFTER_RESTART, MONITOR, RECOVERED_BY_ITSELF, ActiveWindow, FlapDetector
from bot.core.kpi import KpiSample
from bot.core.project import ProjectState
from bot.core.records import Incident, Silence
from bot.core.recovery import Outcome
from bot.core.report import EnvReport, unreachable
from bot.core.schema_version import SchemaVersionReport
from bot.core.verdicts import Verdict, info


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
    restart_by: str | None = None  # who restarted the project (Restart button or /restart), once it was sent
    restart_sent_at: datetime | None = None


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
    project: ProjectState | None = None  # the Supabase project, when configured and asked
    postgrest_config: str | None = None  # PostgREST's db_schema (Supabase API) differs from exposed_schemas


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


def first_signal(report: EnvReport) -> tuple[int | None, str | None]:
    """The failing check's HTTP status and PostgREST code (the incident's first signal)."""
    for check in report.checks:
        if check.verdict is not Verdict.HEALTHY:
            return check.status, check.code
    return None, None


def unreachable_everywhere(reports: list[EnvReport | None]) -> bool:
    """Every environment fails without any HTTP answer: the bot's own network is the likelier cause."""
    return all(unreachable(r) for r in reports)


class Next(StrEnum):
    """What a check's report leads to."""

    WAIT = "wait"  # nothing to do (healthy without an incident, or below the failure threshold)
    ACT = "act"  # the threshold is reached and no incident is open: recover, or alert
    RESOLVE = "resolve"  # healthy long enough: close the incident
    FLAPPING = "flapping"  # too many flips in the window: one flapping alert


@dataclass(frozen=True)
class Policy:
    """The monitor's thresholds (config `monitor`): failing checks before acting, good ones before resolving."""

    failure_threshold: int
    success_threshold: int


@dataclass(frozen=True)
class Decision:
    next: Next
    resolution: str | None = None  # with RESOLVE


def record_report(state: EnvState, report: EnvReport) -> bool:
    """Fold a report into the state (streaks, since, outage start); True when the verdict changed."""
    changed = state.verdict is not report.verdict
    if changed:
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
    return changed


def resolution_for(alert: OpenAlert, *, ok_streak: int, success_threshold: int, flaps_stable: bool) -> str | None:
    """How an open incident ends after enough good checks, or None while it must stay open."""
    needed = 1 if alert.restored else success_threshold
    if ok_streak < needed or (alert.flapping and not flaps_stable):
        return None
    if alert.resolution_hint:
        return alert.resolution_hint
    if alert.restored or alert.flapping:
        return RECOVERED_BY_ITSELF
    if alert.restart_asked:
        return AFTER_RESTART
    return RECOVERED_BY_ITSELF


def decide(state: EnvState, report: EnvReport, now: datetime, policy: Policy) -> Decision:
    """After `record_report` and the flap detector's record: what this check leads to."""
    flaps = state.flaps
    if flaps is not None and flaps.flapping(now):
        if state.alert is not None and state.alert.flapping:
            return Decision(Next.WAIT)
        return Decision(Next.FLAPPING)
    if report.healthy:
        if state.alert is None:
            return Decision(Next.WAIT)
        stable = flaps is None or flaps.stable(now)
        resolution = resolution_for(
            state.alert, ok_streak=state.ok_streak, success_threshold=policy.success_threshold, flaps_stable=stable
        )
        return Decision(Next.RESOLVE, resolution) if resolution else Decision(Next.WAIT)
    if state.fail_streak >= policy.failure_threshold and state.alert is None:
        return Decision(Next.ACT)
    return Decision(Next.WAIT)


def restart_asked(*, after_recovery: bool, verdict: Verdict, cause_found: bool) -> bool:
    """Whether the alert asks for a manual restart: a named cause (a role setting, a lock) is fixed in the
    database instead, and a verdict a reload can fix asks for the reload first."""
    return (after_recovery or not info(verdict).reload_helps) and not cause_found


def hold_reason(
    silence: Silence | None,
    window: ActiveWindow | None,
    network_down_since: datetime | None,
    now: datetime,
    project_hold: str | None = None,
) -> str | None:
    """Why an alert must not go out now: a silence, a maintenance window, the bot's own network, or the
    Supabase project restarting or coming up (`project_hold`, from bot/core/project.py transition_hold)."""
    if silence is not None and now < silence.until:
        return f"silenced by {silence.actor}: {silence.reason}"
    if window is not None:
        return f"maintenance window: {window.window.reason}"
    if network_down_since is not None:
        return "every environment is unreachable: the bot may have lost its network"
    return project_hold


@dataclass(frozen=True)
class Chores:
    """What is due after a check, in this order."""

    silence_expired: bool = False
    maintenance_started: bool = False
    maintenance_ended: bool = False
    release_held: bool = False  # the hold ended: post the alert now
    remind: bool = False


def chores(
    state: EnvState,
    *,
    silence: Silence | None,
    window: ActiveWindow | None,
    network_down_since: datetime | None,
    reminder_interval_s: float,
    now: datetime,
    project_hold: str | None = None,
) -> Chores:
    """Housekeeping after a check: an expired silence no longer holds the alert."""
    expired = silence is not None and now >= silence.until
    held_by = hold_reason(None if expired else silence, window, network_down_since, now, project_hold)
    alert = state.alert
    release = alert is not None and alert.held and held_by is None
    remind = False
    if alert is not None and not release and reminder_interval_s > 0 and held_by is None:
        if not alert.acknowledged_by and alert.handle:
            last = alert.last_reminder_at or alert.opened_at
            remind = now - last >= timedelta(seconds=reminder_interval_s)
    return Chores(
        silence_expired=expired,
        maintenance_started=window is not None and not state.in_maintenance,
        maintenance_ended=window is None and state.in_maintenance,
        release_held=release,
        remind=remind,
    )


def reattached(incident: Incident) -> OpenAlert:
    """An incident still open after a restart, as the monitor tracks it again (its message, its state)."""
    known = incident.verdict in Verdict.__members__.values()
    alert = OpenAlert(incident.opened_at, Verdict(incident.verdict) if known else Verdict.UNEXPECTED, None, {})
    alert.handle, alert.payload = handle_from(incident), incident.alert_payload or {}
    alert.incident_id, alert.stored, alert.trigger = incident.id, True, incident.trigger
    alert.acknowledged_by, alert.last_reminder_at = incident.acknowledged_by, incident.last_reminder_at
    alert.held, alert.flapping, alert.restored = incident.silenced, incident.flapping, True
    return alert
