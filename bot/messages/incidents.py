"""Incident domain logic without Discord: resolutions, maintenance windows, flap detection, message payloads.

The monitor owns the lifecycle (open, act, resolve); this module holds the rules and the wording.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from bot.config import AlertRoute
from bot.core.incidents import ActiveWindow, mttr_by_env
from bot.core.records import Incident
from bot.messages.alert import CONTENT_MAX, FACTS, clip, facts, fit_embed, format_duration
from bot.messages.routing import route_text

ACK_COLOUR = 0xE67E22
FLAPPING_COLOUR = 0x9B59B6


def line(text: str) -> dict[str, Any]:
    return {"content": clip(text, CONTENT_MAX), "allowed_mentions": {"parse": []}}


def t(ts: datetime, style: str = "f") -> str:
    return f"<t:{int(ts.timestamp())}:{style}>"


# -- payloads -----------------------------------------------------------------------------------------
def acknowledged_payload(payload: dict[str, Any], actor: str, at: datetime) -> dict[str, Any]:
    """The CRITICAL alert taken: "Acknowledged by X, T" in the embed, its Acknowledge button disabled, no ping."""
    edited = copy.deepcopy(payload)
    edited["content"] = clip(
        f"Acknowledged by {actor} {t(at, 'R')}; reminders stopped.\n{payload.get('content') or ''}", CONTENT_MAX
    )
    edited["allowed_mentions"] = {"parse": []}  # an edit must not ping the role again
    if edited.get("embeds"):
        embed = edited["embeds"][0]
        embed["color"] = ACK_COLOUR
        embed["description"] = f"Acknowledged by {actor}, {t(at)}\n{embed.get('description', '')}"
        edited["embeds"][0] = fit_embed(embed)
    edited[FACTS] = {**facts(payload), "acknowledged_by": actor, "acknowledged_at": at.isoformat()}
    return edited


def reminder_line(env: str, opened_at: datetime, at: datetime, verdict: str) -> dict[str, Any]:
    elapsed = format_duration((at - opened_at).total_seconds())
    return line(
        f"Reminder: PostgREST {env.upper()} has been down for {elapsed} ({verdict}, since {t(opened_at, 't')}) "
        "and nobody has acknowledged it. Press **Acknowledge** on the alert to take it, or **Silence 1h**."
    )


def flapping_alert(env: str, flips: int, window_s: float, at: datetime, alert_role_id: int | None) -> dict[str, Any]:
    window = format_duration(window_s)
    embed = {
        "title": f"⚠️ FLAPPING · {env.upper()}: PostgREST keeps going up and down",
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
        FACTS: {"env": env, "cause": f"flapping: {flips} flips in {window}", "retry": False},
    }
    return payload


def network_lost_line(envs: Sequence[str], since: datetime, alert_role_id: int | None = None) -> dict[str, Any]:
    text = (
        f"Every environment ({', '.join(e.upper() for e in envs)}) fails with timeouts or connection errors "
        f"since {t(since, 't')}: **the bot itself may have lost its network**, rather than "
        f"{len(envs)} outage{'s' if len(envs) != 1 else ''}. "
        "Check the bot host's network, DNS and proxy (if they are fine, every project really is down: check the "
        "dashboards). Per-environment alerts are held until one answers."
    )
    if alert_role_id is None:
        return line(text)
    # Someone must look either way: ping once (this line replaces N CRITICAL pings).
    return {
        "content": clip(f"<@&{alert_role_id}> {text}", CONTENT_MAX),
        "allowed_mentions": {"parse": [], "roles": [str(alert_role_id)]},
    }


def network_back_line(since: datetime, at: datetime) -> dict[str, Any]:
    return line(
        f"Network is back: an environment answers again after {format_duration((at - since).total_seconds())}. "
        "Environments still failing will alert as usual."
    )


def silenced_line(env: str, until: datetime, reason: str, actor: str) -> dict[str, Any]:
    return line(
        f"{env.upper()} silenced by {actor} until {t(until)} ({t(until, 'R')}): {reason}. "
        f"Probes go on; alerts are held. `/unsilence {env}` ends it early."
    )


def silence_expired_line(env: str, reason: str, actor: str, still_down: bool) -> dict[str, Any]:
    tail = "It is still unhealthy: the held alert follows." if still_down else "It is healthy; alerts are live again."
    return line(f"Silence on {env.upper()} ended (set by {actor}: {reason}). {tail}")


def unsilenced_line(env: str, actor: str, still_down: bool) -> dict[str, Any]:
    tail = "It is still unhealthy: the held alert follows." if still_down else "Alerts are live again."
    return line(f"{env.upper()} unsilenced by {actor}. {tail}")


def maintenance_line(env: str, window: ActiveWindow) -> dict[str, Any]:
    return line(
        f"{env.upper()} is in its maintenance window ({window.window.reason}) until {t(window.ends)}: "
        "probes go on, alerts are held."
    )


def maintenance_over_line(env: str, still_down: bool) -> dict[str, Any]:
    tail = "It is still unhealthy: the held alert follows." if still_down else "It is healthy; alerts are live again."
    return line(f"Maintenance window of {env.upper()} is over. {tail}")


def incident_line(incident: Incident, at: datetime) -> str:
    head = f"`#{incident.id}` **{incident.env.upper()}** {t(incident.opened_at, 'f')} · {incident.verdict}"
    if incident.status is not None or incident.code:
        head += f" ({' '.join(str(x) for x in (incident.status, incident.code) if x is not None)})"
    head += f" · trigger {incident.trigger}"
    if incident.resolved_at is not None:
        tail = f"✅ {incident.resolution or 'resolved'} after {format_duration(incident.duration_s or 0)}"
    else:
        tail = f"❌ open for {format_duration((at - incident.opened_at).total_seconds())}"
        if incident.silenced:
            tail += " (held)"
    if incident.flapping:
        tail += " · flapping"
    if incident.acknowledged_by:
        tail += f" · ack {incident.acknowledged_by}"
    return f"{head}\n  {tail}"


def incidents_embed(
    incidents: Sequence[Incident],
    last_30d: Sequence[Incident],
    env: str | None,
    at: datetime,
    alert_routes: Mapping[str, AlertRoute] | None = None,
) -> dict[str, Any]:
    lines = [incident_line(i, at) for i in incidents] or ["No incidents recorded."]
    lines += [f"**{n.upper()}** {route_text(r)}" for n, r in (alert_routes or {}).items() if env in (None, n)]
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
            "description": clip("\n".join(lines), 4000),
            "color": 0x3498DB,
            "fields": fields[:25],
            "footer": {"text": "pgrst-ops incident log · durations from opened to resolved"},
        }
    )
