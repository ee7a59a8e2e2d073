"""The incident desk: carries out what bot/core/incident.py decides, and owns every incident write and message.

Opening an incident (the monitor's, a flapping one, an auto-recovered one in the log), posting, editing,
holding and releasing its alert, reminders, acknowledging, silencing and resolving all happen here, so the
store and the channel always agree. The store may be down: writes go through the StoreGuard and the desk
keeps going with in-memory ids. Knows nothing of Discord: messages go to an AlertSink.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from bot.config import (
    Target,
)
from bot.core.diagnosis import Diagnosis
from bot.core.incident import (
    EnvState,
    OpenAlert,
    chores,
    handle_columns,
    hold_reason,
    restart_asked,
    unreachable_everywhere,
)
from bot.core.incidents import AFTER_RESTART, CLI, MONITOR, RELOAD, active_window
from bot.core.project import transition_hold
from bot.core.records import Silence
from bot.core.recovery import RecoveryResult
from bot.core.report import EnvReport, unreachable
from bot.core.restart import Phase, Progress
from bot.messages import incidents as inc
from bot.messages.alert import build_critical_alert, build_resolved_alert, facts, format_duration
from bot.messages.restart import with_restart
from bot.messages.routing import with_pings
from bot.observe import CRITICAL, FLAPPING, REMINDER, RESOLVED, Metrics
from bot.ops.incident_log import IncidentLog, open_incident_row

log = logging.getLogger(__name__)


class IncidentDesk(IncidentLog):
    """Opens, posts, holds, reminds, acknowledges, silences and resolves: the incident's whole lifecycle."""

    metrics: Metrics  # given by the monitor, which builds the desk

    def record_reload(self, result: RecoveryResult, *, audited: bool = False) -> None:
        super().record_reload(result, audited=audited)
        self.metrics.reloaded(result.env, result.outcome, result.time_to_healthy_ms)

    # -- opening, posting, resolving --------------------------------------------------------------
    def hold_reason(self, name: str) -> str | None:
        now = self.now()
        window = active_window(self.targets[name].config.maintenance, now)
        return hold_reason(self.silences.get(name), window, self.network_down_since, now, self.project_hold(name))

    def project_hold(self, name: str) -> str | None:
        """A restarting or coming-up Supabase project holds the alert until it is up or the deadline passes."""
        supabase = self.targets[name].config.supabase
        hold_s = supabase.transition_hold_s if supabase is not None else 0.0
        return transition_hold(self.states[name].project, self.now(), hold_s)

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
            alert_role_id=self.settings.alert_route(name).mention_id,
            diagnosis=diagnosis,
            project=state.project,
        )
        found = diagnosis or (result.diagnosis if result is not None else None)
        # Marked open before any await: a concurrent check must not post a second one.
        alert = OpenAlert(
            since,
            report.verdict,
            None,
            payload,
            restart_url=restart_link(target),
            trigger=RELOAD if result is not None and result.actor != "auto" else MONITOR,
            restart_asked=restart_asked(
                after_recovery=result is not None, verdict=report.verdict, cause_found=bool(found and found.findings)
            ),
        )
        state.alert = alert
        state.unhealthy_since = since
        await self._open_incident(state, report, "escalated" if result is not None else "opened")
        await self._post_unless_held(state)
        return True

    async def flapping(self, state: EnvState, now: datetime) -> None:
        """Too many flips: the open alert becomes the flapping alert, or one is opened."""
        assert state.flaps is not None
        flips = state.flaps.count(now)
        window = self.settings.incidents.flap_window_s
        payload = inc.flapping_alert(state.name, flips, window, now, self.settings.alert_route(state.name).mention_id)
        alert = state.alert
        if alert is not None:
            if alert.acknowledged_by:  # still taken: the flapping alert keeps who has it, and no active Acknowledge
                taken = facts(alert.payload).get("acknowledged_at")
                payload = inc.acknowledged_payload(
                    payload, alert.acknowledged_by, datetime.fromisoformat(taken) if taken else now
                )
            alert.flapping = True
            alert.payload = payload
            await self._update(alert, flapping=True, alert_payload=payload)
            await self._action(alert, "monitor", "flapping", f"{flips} flips")
            self.metrics.alerted(state.name, FLAPPING)
            if alert.handle:
                await self.sink.edit_alert(
                    state.name, alert.handle, payload, restart_url=alert.restart_url, incident_id=alert.incident_id
                )
            return
        report = state.last_report
        assert report is not None
        alert = OpenAlert(now, report.verdict, None, payload, restart_url=restart_link(self.targets[state.name]))
        alert.flapping = True
        state.alert = alert
        await self._open_incident(state, report, "flapping")
        await self._post_unless_held(state, say_why=False)

    async def _post_unless_held(self, state: EnvState, *, say_why: bool = True) -> None:
        alert = state.alert
        assert alert is not None
        hold = self.hold_reason(state.name)
        if hold is None:
            await self._post(state)
            return
        alert.held = True
        await self._update(alert, silenced=True)
        if say_why:
            await self._action(alert, "monitor", "held", hold)

    async def _open_incident(self, state: EnvState, report: EnvReport, kind: str) -> None:
        alert = state.alert
        assert alert is not None
        # A `pgrst-ops fix` run on this machine may have opened the incident already: take it over.
        opened = await self._db(lambda s: s.open_incidents()) or []
        adopted = next((i for i in opened if i.env == state.name and i.trigger == CLI and not i.message_id), None)
        if adopted is not None:
            alert.opened_at, alert.trigger = min(alert.opened_at, adopted.opened_at), CLI
        incident = adopted or await self._db(
            lambda s: open_incident_row(s, state.name, report, opened_at=alert.opened_at, trigger=alert.trigger)
        )
        if incident is None:  # the store is down: an in-memory id keeps the buttons working until a restart
            alert.incident_id = next(self._memory_ids)
            return
        alert.incident_id, alert.stored = incident.id, True
        await self._update(alert, alert_payload=alert.payload, flapping=alert.flapping)
        await self._action(alert, "monitor", kind, report.explanation)

    async def _post(self, state: EnvState) -> None:
        alert = state.alert
        assert alert is not None
        alert.handle = await self.sink.post_alert(
            state.name, alert.payload, restart_url=alert.restart_url, incident_id=alert.incident_id or None
        )
        self.metrics.alerted(state.name, FLAPPING if alert.flapping else CRITICAL)
        if alert.handle:
            await self._update(alert, **handle_columns(alert.handle))

    async def resolve(self, state: EnvState, resolution: str) -> None:
        """Close the incident: edit the alert to resolved (no buttons) and post exactly one resolved line."""
        alert = state.alert
        if alert is None:
            return
        state.alert = None
        resolved_at = datetime.now(UTC)
        state.unhealthy_since = None
        await self._update(alert, resolved_at=resolved_at, resolution=resolution, silenced=False)
        await self._action(alert, "monitor", "resolved", resolution)
        if not alert.payload.get("embeds"):
            return
        resolved, line = build_resolved_alert(
            state.name,
            alert.payload,
            alert.opened_at,
            resolved_at,
            resolution=resolution,
            acknowledged_by=alert.acknowledged_by,
            resolution_detail=restart_detail(alert, resolution, resolved_at),
        )
        if alert.handle:
            await self.sink.resolve_alert(state.name, alert.handle, resolved)
        if not alert.held:  # an alert nobody saw (silenced) needs no "resolved" line
            await self.sink.post_line(state.name, line)
            self.metrics.alerted(state.name, RESOLVED)

    # -- holds: the bot's own network, silences, maintenance; reminders ---------------------------
    async def network(self, report: EnvReport) -> None:
        if len(self.states) < 2:
            return
        if self.network_down_since is None:
            if not unreachable(report):  # this one answered: not down everywhere (no walk over every state)
                return
            states = list(self.states.values())
            if unreachable_everywhere([s.last_report for s in states]):
                since = min(s.unhealthy_since or report.checked_at for s in states)
                self.network_down_since = since
                for channel_id, envs in self._envs_by_channel().items():  # once per channel, its envs, its pings
                    pings = [r for e in envs if (r := self.settings.alert_route(e).mention_id) is not None]
                    line = with_pings(inc.network_lost_line(envs, since), pings)
                    await self.sink.post_line("*", line, channel_id=channel_id)
        elif not unreachable(report):
            since, self.network_down_since = self.network_down_since, None
            for channel_id in self._envs_by_channel():
                await self.sink.post_line("*", inc.network_back_line(since, self.now()), channel_id=channel_id)

    def _envs_by_channel(self) -> dict[int | None, list[str]]:
        by_channel: dict[int | None, list[str]] = {}
        for name in self.states:
            by_channel.setdefault(self.settings.alert_route(name).channel_id, []).append(name)
        return by_channel

    async def housekeeping(self, state: EnvState) -> None:
        """After each check: silence expiry, maintenance start/end, held alerts, reminders."""
        name, now, alert = state.name, self.now(), state.alert
        still_down = state.last_report is not None and not state.last_report.healthy
        silence = self.silences.get(name)
        window = active_window(self.targets[name].config.maintenance, now)
        due = chores(
            state,
            silence=silence,
            window=window,
            network_down_since=self.network_down_since,
            reminder_interval_s=self.settings.incidents.reminder_interval_s,
            now=now,
            project_hold=self.project_hold(name),
        )
        if due.silence_expired and silence is not None:
            del self.silences[name]
            await self._db(lambda s: s.end_silence(name))
            await self.sink.post_line(name, inc.silence_expired_line(name, silence.reason, silence.actor, still_down))
        if due.maintenance_started and window is not None:
            state.in_maintenance = True
            await self.sink.post_line(name, inc.maintenance_line(name, window))
        elif due.maintenance_ended:
            state.in_maintenance = False
            await self.sink.post_line(name, inc.maintenance_over_line(name, still_down))
        if alert is None:
            return
        if due.release_held:
            alert.held = False
            await self._update(alert, silenced=False)
            await self._action(alert, "monitor", "released", "hold ended; alert posted")
            await self._post(state)
        elif due.remind:
            alert.last_reminder_at = now
            await self._update(alert, last_reminder_at=now)
            await self._action(alert, "monitor", "reminder", "")
            verdict = str(state.verdict or alert.verdict)
            await self.sink.post_line(
                name, inc.reminder_line(name, alert.opened_at, now, verdict), reply_to=alert.handle
            )
            self.metrics.alerted(name, REMINDER)

    # -- people's actions (buttons and commands) --------------------------------------------------
    def find(self, incident_id: int) -> EnvState | None:
        for state in self.states.values():
            if state.alert is not None and state.alert.incident_id == incident_id:
                return state
        return None

    async def acknowledge(self, incident_id: int, actor: str) -> str:
        """Record who took the incident, stop reminders, show it on the alert. Returns the reply for the user."""
        state = self.find(incident_id)
        if state is None or state.alert is None:
            return f"Incident #{incident_id} is already resolved (or unknown): nothing to acknowledge."
        alert = state.alert
        if alert.acknowledged_by:
            return f"Incident #{incident_id} was already acknowledged by {alert.acknowledged_by}."
        at = self.now()
        alert.acknowledged_by = actor
        alert.payload = inc.acknowledged_payload(alert.payload, actor, at)
        await self._update(alert, acknowledged_by=actor, acknowledged_at=at, alert_payload=alert.payload)
        await self._action(alert, actor, "ack")
        await self._db(lambda s: s.audit(actor, "acknowledge", state.name, f"incident #{incident_id}"))
        if alert.handle:
            await self.sink.edit_alert(
                state.name, alert.handle, alert.payload, restart_url=alert.restart_url, incident_id=incident_id
            )
        return f"You acknowledged incident #{incident_id} ({state.name.upper()}). Reminders stopped."

    async def restart_progress(self, incident_id: int, progress: Progress, actor: str, reason: str) -> None:
        """A restart of this incident's project moved on: its line on the alert, and the incident's record.

        Once Supabase accepted it, the incident resolves as after_restart whoever sees it healthy first."""
        state = self.find(incident_id)
        if state is None or state.alert is None:
            return
        alert = state.alert
        if progress.phase is Phase.SENT:
            alert.restart_by, alert.restart_sent_at = actor, datetime.now(UTC)
            alert.resolution_hint = AFTER_RESTART
            await self._action(alert, actor, "restart", reason)
        elif progress.phase.done:
            await self._action(alert, actor, "restart", str(progress.phase))
        alert.payload = with_restart(alert.payload, progress, actor, reason)
        await self._update(alert, alert_payload=alert.payload)
        if alert.handle and progress.phase is not Phase.HEALTHY:  # healthy: the resolved card replaces it
            await self.sink.edit_alert(
                state.name, alert.handle, alert.payload, restart_url=alert.restart_url, incident_id=incident_id
            )

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
        """End a silence (the caller runs housekeeping next, under the environment's lock)."""
        if self.silences.pop(env, None) is None:
            return False
        await self._db(lambda s: s.end_silence(env))
        await self._db(lambda s: s.audit(actor, "unsilence", env, "ok"))
        still_down = self.states[env].alert is not None
        await self.sink.post_line(env, inc.unsilenced_line(env, actor, still_down))
        return True


def restart_detail(alert: OpenAlert, resolution: str, resolved_at: datetime) -> str | None:
    """How long the project took to be healthy after the restart someone sent (None: no restart)."""
    if resolution != AFTER_RESTART or alert.restart_sent_at is None:
        return None
    took = format_duration((resolved_at - alert.restart_sent_at).total_seconds())
    return f"healthy {took} after the restart by {alert.restart_by}"


def restart_link(target: Target) -> str | None:
    restart = target.config.restart_url or target.config.dashboard_url
    return str(restart) if restart else None
