"""Embed payloads (plain dicts) for /health, /status and /reload: what is wrong, since when, what next."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from bot.config import AlertRoute
from bot.core.classify import CheckKind
from bot.core.diagnosis import Diagnosis
from bot.core.drift import DriftReport
from bot.core.incident import EnvState, MonitorHealth
from bot.core.recovery import Outcome, RecoveryResult
from bot.core.report import EnvReport
from bot.core.verdicts import Verdict, info, worst
from bot.messages.alert import FIELDS_MAX, check_line, fit_embed, format_duration, truncate
from bot.messages.routing import route_text

NEUTRAL_COLOUR = 0x95A5A6


def rel(ts: datetime | None) -> str:
    return f"<t:{int(ts.timestamp())}:R>" if ts else "never"


def diagnosis_lines(diagnosis: Diagnosis | None) -> list[str]:
    if diagnosis is None:
        return []
    if diagnosis.error:
        return [f"🩺 cause unknown: {diagnosis.error}"]
    cause = diagnosis.cause
    if cause is None:
        return ["🩺 no cause found in the database"]
    lines = [f"🩺 **Cause:** {cause.title}: {cause.evidence}", f"🛠️ **Fix:** {cause.fix}"]
    lines += [f"➕ also: {f.title}" for f in diagnosis.findings[1:3]]
    return lines


def env_block(report: EnvReport, diagnosis: Diagnosis | None = None) -> str:
    lines = [check_line(c) for c in report.checks]
    if not report.healthy:
        lines.append(f"**Why:** {report.explanation}")
        cause = diagnosis_lines(diagnosis)
        lines += cause
        if not (diagnosis and diagnosis.cause):
            lines.append(f"**Next:** {report.next_step}")  # with a cause, its 🛠️ fix is the next step
    elif report.auth_limited:
        lines.append("ℹ️ auth-limited: some checks got 401/403 (PostgREST is up; data not verified)")
    return "\n".join(lines)


def health_embeds(
    reports: Sequence[EnvReport], diagnoses: Mapping[str, Diagnosis] | None = None
) -> list[dict[str, Any]]:
    """One embed per 25 environments (Discord allows 10 embeds per message); diagnosed reports replace probes."""
    diagnoses = diagnoses or {}
    reports = [diagnoses[r.env].report if r.env in diagnoses else r for r in reports]
    overall = worst(r.verdict for r in reports)
    unhealthy = [r.env for r in reports if not r.healthy]
    summary = (
        f"{info(overall).emoji} {len(unhealthy)} of {len(reports)} unhealthy: {', '.join(unhealthy)}"
        if unhealthy
        else f"✅ all {len(reports)} healthy"
    )
    embeds = []
    for start in range(0, len(reports), FIELDS_MAX):
        chunk = reports[start : start + FIELDS_MAX]
        embed = {
            "title": "PostgREST health" if start == 0 else "PostgREST health (continued)",
            "description": summary if start == 0 else "",
            "color": info(worst(r.verdict for r in chunk)).colour,
            "fields": [
                {
                    "name": f"{info(r.verdict).emoji} {r.env.upper()} — {r.verdict}",
                    "value": env_block(r, diagnoses.get(r.env)),
                    "inline": False,
                }
                for r in chunk
            ],
            "timestamp": max(r.checked_at for r in chunk).isoformat(),
            "footer": {"text": "pgrst-ops /health · fresh probe"},
        }
        embeds.append(fit_embed(embed))
    return embeds[:10]


def status_embed(
    states: Sequence[EnvState],
    health: MonitorHealth,
    *,
    monitor_alive: bool,
    reloads_in_window: dict[str, int],
    alert_routes: Mapping[str, AlertRoute] | None = None,
) -> dict[str, Any]:
    """From the monitor's memory, not a fresh probe: verdict, since when, last check, reload, alert."""
    known = [s.verdict for s in states if s.verdict is not None]
    fields = []
    for s in states:
        if s.verdict is None or s.last_report is None:
            fields.append({"name": f"⏳ {s.name.upper()}", "value": "not checked yet", "inline": False})
            continue
        report = s.last_report
        version = report.server_version or "PostgREST version not reported (a gateway may hide the Server header)"
        lines = [
            f"since {rel(s.since)} · last check {rel(report.checked_at)} ({report.duration_ms:.0f} ms) · {version}",
        ]
        metrics = next((c.message for c in report.checks if c.kind is CheckKind.METRICS and c.message), None)
        if metrics:
            lines.append(f"admin /metrics: {metrics}")
        if not report.healthy:
            lines.append(f"**Why:** {report.explanation}")
            lines += diagnosis_lines(s.diagnosis)[:2]
            if not (s.diagnosis and s.diagnosis.cause):
                lines.append(f"**Next:** {report.next_step}")
        if s.last_reload:
            r = s.last_reload
            tth = f", healthy after {r.time_to_healthy_ms:.0f} ms" if r.time_to_healthy_ms is not None else ""
            why = f": {r.reason}" if r.reason and r.outcome is Outcome.ESCALATED else ""
            lines.append(f"last reload {rel(r.at)} by {r.actor}: {r.outcome}{tth}{why}")
            if r.kpis:
                lines.append("KPIs: " + " · ".join(k.line() for k in r.kpis))
        if s.drift is not None:
            mark = DRIFT_MARKS[str(s.drift.status)][0]
            lines.append(f"{mark} drift {rel(s.drift.checked_at)}: {s.drift.summary}")
        if s.schema_version is not None:
            v = s.schema_version
            mark = "✅" if v.compatible else ("❓" if str(v.status) == "unknown" else "❌")
            lines.append(f"{mark} schema version {v.status}: {v.message}")
        if reloads_in_window.get(s.name):
            lines.append(f"reloads in the cap window: {reloads_in_window[s.name]}")
        if s.alert:
            lines.append(f"🚨 open alert since {rel(s.alert.opened_at)}")
        lines += [route_text(alert_routes[s.name])] if alert_routes and s.name in alert_routes else []
        fields.append({"name": f"{info(s.verdict).emoji} {s.name.upper()} — {s.verdict}", "value": "\n".join(lines)})
    uptime = format_duration((datetime.now(UTC) - health.started_at).total_seconds())
    sweep = (
        f"{health.last_sweep_ms:.0f} ms {rel(health.last_sweep_at)}" if health.last_sweep_ms is not None else "none yet"
    )
    bot_line = (
        f"monitor {'✅ running' if monitor_alive else '❌ stopped'} · last check {sweep} · "
        f"uptime {uptime} · pgrst-ops {health.version}"
    )
    colour = info(worst(known)).colour if known else NEUTRAL_COLOUR
    return fit_embed(
        {
            "title": "PostgREST status (monitor)",
            "description": bot_line,
            "color": colour,
            "fields": fields[:FIELDS_MAX],
            "footer": {"text": "from the monitor's last checks; /health probes now"},
        }
    )


def reload_embed(
    env: str, lines: Sequence[str], *, result: RecoveryResult | None, actor: str, interrupted: str | None = None
) -> dict[str, Any]:
    """The /reload message as it progresses, and finally as an audit line (or what a shutdown cut short)."""
    if interrupted is not None:
        at = datetime.now(UTC)
        stopped: dict[str, Any] = {
            "title": f"🛑 {env.upper()} reload {interrupted}",
            "description": truncate("\n".join([*lines[-14:], f"🛑 {interrupted}"]), 4000),
            "color": info(Verdict.SCHEMA_CACHE_UNAVAILABLE).colour,
            "fields": [{"name": "Audit", "value": f"{actor} · {env} · {interrupted} · {at:%Y-%m-%d %H:%M:%S} UTC"}],
            "timestamp": at.isoformat(),
        }
        return fit_embed(stopped)
    if result is None:
        title, colour = f"🔄 Reloading {env.upper()} schema cache…", NEUTRAL_COLOUR
    elif result.outcome is Outcome.RECOVERED:
        title, colour = (
            f"✅ {env.upper()} healthy after {result.time_to_healthy_ms:.0f} ms",
            info(Verdict.HEALTHY).colour,
        )
    elif result.outcome is Outcome.ALREADY_HEALTHY:
        title, colour = f"✅ {env.upper()} already healthy: no reload sent", info(Verdict.HEALTHY).colour
    else:
        title, colour = f"❌ {env.upper()} escalated", info(Verdict.SCHEMA_CACHE_UNAVAILABLE).colour
    description = "\n".join(lines[-15:])
    embed: dict[str, Any] = {"title": title, "description": truncate(description, 4000), "color": colour}
    if result is not None:
        audit = f"{actor} · {env} · {result.outcome} · {result.finished_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
        fields = [{"name": "Audit", "value": audit, "inline": False}]
        if result.forced:
            fields.append({"name": "Forced", "value": "sent despite the pre-flight findings", "inline": False})
        if result.kpis:
            fields.append({"name": "KPIs", "value": "\n".join(k.line() for k in result.kpis), "inline": False})
        if result.outcome is Outcome.ESCALATED:
            fields.append({"name": "Reason", "value": result.reason or "—", "inline": False})
            cause = diagnosis_lines(result.diagnosis)
            if cause:
                fields.append({"name": "Diagnosis", "value": "\n".join(cause), "inline": False})
            next_step = result.diagnosis.next_step if result.diagnosis else result.report_after.next_step
            fields.append({"name": "Next step", "value": next_step, "inline": False})
        embed["fields"] = fields
        embed["timestamp"] = result.finished_at.isoformat()
    return fit_embed(embed)


DRIFT_MARKS = {"in_sync": ("✅", 0x2ECC71), "stale": ("⚠️", 0xF1C40F), "unknown": ("❓", NEUTRAL_COLOUR)}


def drift_embed(report: DriftReport) -> dict[str, Any]:
    """/drift: what the database has that PostgREST does not serve (and the reverse), and what to do."""
    mark, colour = DRIFT_MARKS[str(report.status)]
    fields = []
    for title, objects in (
        ("Missing in the API (a reload helps)", report.missing_in_api),
        ("Served but gone from the database (a reload helps)", report.extra_in_api),
        ("Not granted to the API roles (GRANT; a reload cannot help)", report.ungranted),
    ):
        if objects:
            fields.append({"name": title, "value": objects.describe(limit=30), "inline": False})
    if report.notes:
        fields.append({"name": "Notes", "value": "\n".join(f"• {n}" for n in report.notes[:5]), "inline": False})
    fields.append({"name": "Next step", "value": report.next_step, "inline": False})
    return fit_embed(
        {
            "title": f"{mark} Schema drift {report.env.upper()}: {report.status}",
            "description": report.summary,
            "color": colour,
            "fields": fields,
            "timestamp": report.checked_at.isoformat(),
            "footer": {"text": f"pgrst-ops /drift · {report.requests} requests · {report.duration_ms:.0f} ms"},
        }
    )
