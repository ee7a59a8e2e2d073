"""Incident domain logic without Discord: resolutions, maintenance windows, flap detection, message payloads.

The monitor owns the lifecycle (open, act, resolve); this module holds the rules and the wording.
"""

from __future__ import annotations

import copy
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.config import WEEKDAYS, MaintenanceWindow
from bot.messages.alert import CONTENT_MAX, fit_embed, format_duration, truncate
from bot.store.sqlite import Incident

# resolutions
AUTO_RECOVERED = "auto_recovered"
MANUAL_RELOAD = "manual_reload"
RECOVERED_BY_ITSELF = "recovered_by_itself"
AFTER_RESTART = "after_restart"

RESOLUTION_TEXT = {
    AUTO_RECOVERED: "auto-recovered by a schema reload",
    MANUAL_RELOAD: "fixed by a manual reload",
    RECOVERED_BY_ITSELF: "recovered by itself",
    AFTER_RESTART: "recovered after a restart",
}

# triggers
MONITOR, RELOAD, CLI = "monitor", "reload", "cli"

ACK_COLOUR = 0xE67E22
FLAPPING_COLOUR = 0x9B59B6


def line(text: str) -> dict[str, Any]:
    return {"content": truncate(text, CONTENT_MAX), "allowed_mentions": {"parse": []}}


def t(ts: datetime, style: str = "f") -> str:
    return f"<t:{int(ts.timestamp())}:{style}>"


# -- maintenance windows ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ActiveWindow:
    window: MaintenanceWindow
    starts: datetime
    ends: datetime


def active_window(windows: Sequence[MaintenanceWindow], at: datetime) -> ActiveWindow | None:
    """The maintenance window covering `at`, if any (weekly, in the window's own time zone, DST-aware)."""
    for window in windows:
        tz = ZoneInfo(window.timezone)
        local = at.astimezone(tz)
        hour, minute = (int(x) for x in window.start.split(":"))
        target = WEEKDAYS.index(window.weekday)
        # the window could have started this week or (if it is long) up to 7 days ago
        for days_back in range(0, 8):
            day = (local - timedelta(days=days_back)).date()
            if day.weekday() != target:
                continue
            starts = datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)
            ends = starts + timedelta(minutes=window.duration_min)
            if starts <= local < ends:
                return ActiveWindow(window, starts.astimezone(UTC), ends.astimezone(UTC))
    return None


# -- flapping -----------------------------------------------------------------------------------------
class FlapDetector:
    """Counts healthy <-> unhealthy flips; more than `flips` within `window_s` is flapping."""

    def __init__(self, flips: int, window_s: float) -> None:
        self.flips = flips
        self.window = timedelta(seconds=window_s)
        self._times: deque[datetime] = deque()
        self._last: bool | None = None

    def record(self, healthy: bool, at: datetime) -> None:
        if self._last is not None and healthy != self._last:
            self._times.append(at)
        self._last = healthy
        self._trim(at)

    def _trim(self, at: datetime) -> None:
        while self._times and at - self._times[0] > self.window:
            self._times.popleft()

    def count(self, at: datetime) -> int:
        self._trim(at)
        return len(self._times)

    def flapping(self, at: datetime) -> bool:
        return self.count(at) > self.flips

    def stable(self, at: datetime) -> bool:
        """No flip within the window."""
        return self.count(at) == 0


# -- payloads -----------------------------------------------------------------------------------------
def acknowledged_payload(payload: dict[str, Any], actor: str, at: datetime) -> dict[str, Any]:
    """The CRITICAL alert with "Acknowledged by …" on top; reminders stop."""
    edited = copy.deepcopy(payload)
    note = f"👀 Acknowledged by {actor} {t(at, 'R')}. Reminders stopped."
    edited["content"] = truncate(f"{note}\n{payload.get('content') or ''}", CONTENT_MAX)
    edited["allowed_mentions"] = {"parse": []}  # an edit must not ping the role again
    if edited.get("embeds"):
        embed = edited["embeds"][0]
        embed["color"] = ACK_COLOUR
        fields = embed.get("fields", [])
        embed["fields"] = [{"name": "Acknowledged", "value": f"by {actor} at {t(at)}", "inline": False}, *fields]
        edited["embeds"][0] = fit_embed(embed)
    return edited


def resolution_note(payload: dict[str, Any], resolution: str) -> dict[str, Any]:
    """Add the resolution to a resolved alert payload (from escalation.build_resolved_alert)."""
    edited = copy.deepcopy(payload)
    text = RESOLUTION_TEXT.get(resolution, resolution)
    edited["content"] = truncate(f"{edited.get('content') or ''} · {text}", CONTENT_MAX)
    if edited.get("embeds"):
        embed = edited["embeds"][0]
        kept = [f for f in embed.get("fields", []) if f.get("name") != "Acknowledged"][:24]
        embed["fields"] = [{"name": "Resolution", "value": f"`{resolution}`: {text}", "inline": False}, *kept]
        edited["embeds"][0] = fit_embed(embed)
    return edited


def reminder_line(env: str, opened_at: datetime, at: datetime, verdict: str) -> dict[str, Any]:
    elapsed = format_duration((at - opened_at).total_seconds())
    return line(
        f"⏰ Reminder: PostgREST {env.upper()} has been down for {elapsed} ({verdict}, since {t(opened_at, 't')}) "
        "and nobody has acknowledged it. Press **Acknowledge** on the alert to take it, or **Silence 1h**."
    )


def flapping_alert(env: str, flips: int, window_s: float, at: datetime, alert_role_id: int | None) -> dict[str, Any]:
    window = format_duration(window_s)
    embed = {
        "title": "🔁 FLAPPING: PostgREST keeps going up and down",
        "description": (
            f"**Environment:** {env.upper()}\n**Flips:** {flips} in the last {window} (since {t(at, 't')})\n\n"
            "Alerts for each flip are suppressed; this alert stays open until the environment is stable "
            f"(no flip for {window})."
        ),
        "color": FLAPPING_COLOUR,
        "fields": [
            {
                "name": "Next step",
                "value": "Look for a restart loop, connection-limit or pooler problems, or a failing health check "
                "upstream (load balancer). `/health` shows the current state.",
                "inline": False,
            }
        ],
        "timestamp": at.isoformat(),
        "footer": {"text": f"pgrst-ops · {env}"},
    }
    mention = f"<@&{alert_role_id}> " if alert_role_id is not None else ""
    payload: dict[str, Any] = {
        "content": f"{mention}PostgREST {env.upper()} is flapping",
        "embeds": [fit_embed(embed)],
        "allowed_mentions": {"parse": [], "roles": [str(alert_role_id)] if alert_role_id is not None else []},
    }
    return payload


def network_lost_line(envs: Sequence[str], since: datetime, alert_role_id: int | None = None) -> dict[str, Any]:
    text = (
        f"🌐 Every environment ({', '.join(e.upper() for e in envs)}) fails with timeouts or connection errors "
        f"since {t(since, 't')}: **the bot itself may have lost its network**, rather than {len(envs)} outages. "
        "Check the bot host's network, DNS and proxy (if they are fine, every project really is down: check the "
        "dashboards). Per-environment alerts are held until one answers."
    )
    if alert_role_id is None:
        return line(text)
    # Someone must look either way: ping once (this line replaces N CRITICAL pings).
    return {
        "content": truncate(f"<@&{alert_role_id}> {text}", CONTENT_MAX),
        "allowed_mentions": {"parse": [], "roles": [str(alert_role_id)]},
    }


def network_back_line(since: datetime, at: datetime) -> dict[str, Any]:
    return line(
        f"🌐 Network is back: an environment answers again after {format_duration((at - since).total_seconds())}. "
        "Environments still failing will alert as usual."
    )


def silenced_line(env: str, until: datetime, reason: str, actor: str) -> dict[str, Any]:
    return line(
        f"🔕 {env.upper()} silenced by {actor} until {t(until)} ({t(until, 'R')}): {reason}. "
        f"Probes go on; alerts are held. `/unsilence {env}` ends it early."
    )


def silence_expired_line(env: str, reason: str, actor: str, still_down: bool) -> dict[str, Any]:
    tail = "It is still unhealthy: the held alert follows." if still_down else "It is healthy; alerts are live again."
    return line(f"🔔 Silence on {env.upper()} ended (set by {actor}: {reason}). {tail}")


def unsilenced_line(env: str, actor: str, still_down: bool) -> dict[str, Any]:
    tail = "It is still unhealthy: the held alert follows." if still_down else "Alerts are live again."
    return line(f"🔔 {env.upper()} unsilenced by {actor}. {tail}")


def maintenance_line(env: str, window: ActiveWindow) -> dict[str, Any]:
    return line(
        f"🛠️ {env.upper()} is in its maintenance window ({window.window.reason}) until {t(window.ends)}: "
        "probes go on, alerts are held."
    )


def maintenance_over_line(env: str, still_down: bool) -> dict[str, Any]:
    tail = "It is still unhealthy: the held alert follows." if still_down else "It is healthy; alerts are live again."
    return line(f"🛠️ Maintenance window of {env.upper()} is over. {tail}")


# -- /incidents ---------------------------------------------------------------------------------------
def mttr_by_env(incidents: Sequence[Incident]) -> dict[str, tuple[float, int]]:
    """Mean time to recovery (seconds) and count of resolved incidents, per environment."""
    sums: dict[str, list[float]] = {}
    for incident in incidents:
        if incident.duration_s is not None:
            sums.setdefault(incident.env, []).append(incident.duration_s)
    return {env: (sum(values) / len(values), len(values)) for env, values in sums.items()}


def incident_line(incident: Incident, at: datetime) -> str:
    head = f"`#{incident.id}` **{incident.env.upper()}** {t(incident.opened_at, 'f')} · {incident.verdict}"
    if incident.status is not None or incident.code:
        head += f" ({' '.join(str(x) for x in (incident.status, incident.code) if x is not None)})"
    head += f" · trigger {incident.trigger}"
    if incident.resolved_at is not None:
        tail = f"✅ {incident.resolution or 'resolved'} after {format_duration(incident.duration_s or 0)}"
    else:
        tail = f"🚨 open for {format_duration((at - incident.opened_at).total_seconds())}"
        if incident.silenced:
            tail += " (held)"
    if incident.flapping:
        tail += " · flapping"
    if incident.acknowledged_by:
        tail += f" · ack {incident.acknowledged_by}"
    return f"{head}\n  {tail}"


def incidents_embed(
    incidents: Sequence[Incident], last_30d: Sequence[Incident], env: str | None, at: datetime
) -> dict[str, Any]:
    lines = [incident_line(i, at) for i in incidents] or ["No incidents recorded."]
    mttr = mttr_by_env(last_30d)
    fields = [
        {
            "name": f"MTTR 30 days · {name.upper()}",
            "value": f"{format_duration(mean)} over {count} incident{'s' if count != 1 else ''}",
            "inline": True,
        }
        for name, (mean, count) in sorted(mttr.items())
        if env is None or name == env
    ]
    if not fields:
        fields = [{"name": "MTTR 30 days", "value": "no resolved incident in the last 30 days", "inline": False}]
    return fit_embed(
        {
            "title": f"Incidents{' · ' + env.upper() if env else ''}",
            "description": truncate("\n".join(lines), 4000),
            "color": 0x3498DB,
            "fields": fields[:25],
            "footer": {"text": "pgrst-ops incident log · durations from opened to resolved"},
        }
    )


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """'90s', '30m', '2h', '1h30m', '1d' -> seconds; ValueError with the accepted forms otherwise."""
    cleaned = text.strip().lower().replace(" ", "")
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhdw])", cleaned)
    if not parts or "".join(n + u for n, u in parts) != cleaned:
        raise ValueError(f"cannot read the duration {text[:20]!r}: use e.g. 30m, 2h, 1h30m, 1d")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError("the duration must be more than 0")
    return seconds
