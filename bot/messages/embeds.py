"""Embed payloads (plain dicts) for /health, /status, /reload and /drift: what is wrong, since when, what next.

Each message says a cause and its fix once, marks states only with ✅ ❌ ⚠️, cuts text at a word boundary
(never mid-word) and stays within Discord's limits by choosing what to show, not by clipping at the end.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from bot.config import AlertRoute
from bot.core.classify import CheckKind
from bot.core.diagnosis import Diagnosis, Finding
from bot.core.drift import DriftReport
from bot.core.incident import EnvState, MonitorHealth
from bot.core.project import ProjectState, project_line
from bot.core.recovery import Outcome, reason_without_cause
from bot.core.report import CheckResult, EnvReport
from bot.core.verdicts import Verdict, info, worst
from bot.messages.alert import (
    DESCRIPTION_MAX,
    EMBED_TOTAL_MAX,
    FIELD_NAME_MAX,
    FIELD_VALUE_MAX,
    FIELDS_MAX,
    clip,
    fit_embed,
    format_duration,
)
from bot.messages.routing import route_text

NEUTRAL_COLOUR = 0x95A5A6
OK, FAILED, WARNING = "✅", "❌", "⚠️"
# What the builders aim at: Discord's 6,000 characters per message, less room for what a caller adds on top
# (/status's open incidents, a later line per environment such as where it alerts).
MESSAGE_BUDGET = EMBED_TOTAL_MAX - 300
LINE_MAX = 400  # one cause, fix or reason line: enough for an ALTER ROLE, short enough to read at a glance


def verdict_words(verdict: Verdict) -> str:
    return info(verdict).words


def mark(verdict: Verdict) -> str:
    """✅ healthy, ⚠️ a fault a reload fixes, ❌ anything else."""
    return info(verdict).emoji


def join_within(lines: Sequence[str], limit: int, more: str = "… and {n} more") -> str:
    """Whole lines, as many as fit in `limit` characters, then how many were left out."""
    shown: list[str] = []
    size = 0  # of the shown lines, each with the newline that follows it
    for i, line in enumerate(lines):
        left = len(lines) - i - 1
        tail = len(more.format(n=left)) + 1 if left else 0
        if size + len(line) + tail <= limit:
            shown.append(line)
            size += len(line) + 1
            continue
        if shown:
            shown.append(more.format(n=len(lines) - i))  # it fits: the line before kept room for it
        else:  # even the first line is too long: cut it at a word
            shown.append(clip(line, max(1, limit - tail)))
            if left:
                shown.append(more.format(n=left))
        break
    return "\n".join(shown)


def names_within(names: Sequence[str], limit: int) -> str:
    """Names joined by commas, as many as fit in `limit` characters, then how many more there are."""
    shown: list[str] = []
    for i, name in enumerate(names):
        tail = f" and {len(names) - i - 1} more" if i < len(names) - 1 else ""
        if len(", ".join([*shown, name])) + len(tail) > limit:
            return ", ".join(shown) + f" and {len(names) - i} more"
        shown.append(name)
    return ", ".join(shown)


def field(name: str, value: str, *, inline: bool = False) -> dict[str, Any]:
    return {"name": clip(name, FIELD_NAME_MAX), "value": clip(value or "—", FIELD_VALUE_MAX), "inline": inline}


def field_size(f: Mapping[str, Any]) -> int:
    return len(f["name"]) + len(f["value"])


def rel(ts: datetime | None) -> str:
    return f"<t:{int(ts.timestamp())}:R>" if ts else "never"


def cause_text(finding: Finding) -> str:
    return f"{finding.title}: {finding.evidence}"


def problem_lines(report: EnvReport, diagnosis: Diagnosis | None, *, main: Finding | None = None) -> list[str]:
    """An unhealthy environment's cause in one line and its fix once; the verdict's own when no cause is known.

    `main` overrides the diagnosis's main cause (e.g. the pre-flight's blocker when it refused the reload).
    """
    cause = main or (diagnosis.cause if diagnosis else None)
    if cause is not None and diagnosis is not None:
        lines = [f"**Cause:** {clip(cause_text(cause), LINE_MAX)}"]
        others = [f.title for f in diagnosis.findings if f is not cause][:2]
        if others:
            lines.append(f"**Also found:** {clip('; '.join(others), 200)}")
        lines.append(f"**Fix:** {clip(cause.fix, LINE_MAX)}")
        return lines
    why = report.explanation
    if diagnosis is not None and diagnosis.error:
        why += f" The database could not be read for a cause: {diagnosis.error}."
    elif diagnosis is not None:
        why += " No cause found in the database."
    return [f"**Why:** {clip(why, LINE_MAX)}", f"**Fix:** {clip(report.next_step, LINE_MAX)}"]


def diagnosis_lines(diagnosis: Diagnosis | None) -> list[str]:
    """The cause and its fix, once (nothing without a diagnosis)."""
    return [] if diagnosis is None else problem_lines(diagnosis.report, diagnosis)


def _answer(check: CheckResult) -> str:
    if check.status is None:
        return check.detail
    return f"{check.status} {check.code}" if check.code else str(check.status)


def _latency(checks: Sequence[CheckResult]) -> str:
    low, high = min(c.latency_ms for c in checks), max(c.latency_ms for c in checks)
    return f"{low:.0f} ms" if round(low) == round(high) else f"{low:.0f}–{high:.0f} ms"


def failing_check_lines(report: EnvReport) -> list[str]:
    """The failing checks (those with the same answer on one line), then how many pass."""
    groups: dict[str, list[CheckResult]] = {}
    for c in report.checks:
        if not c.ok:
            groups.setdefault(_answer(c), []).append(c)
    lines = [
        f"{FAILED} {clip(', '.join(c.label for c in checks), 200)}: `{clip(answer, 120)}` · {_latency(checks)}"
        for answer, checks in groups.items()
    ]
    passing = sum(c.ok for c in report.checks)
    if passing:
        lines.append(f"{OK} {passing} other check{' passes' if passing == 1 else 's pass'}")
    return lines


def healthy_line(report: EnvReport) -> str:
    limited = " (auth-limited: some checks got 401/403, data not verified)" if report.auth_limited else ""
    return f"{OK} **{report.env.upper()}** healthy{limited} · {report.duration_ms:.0f} ms"


def env_block(report: EnvReport, diagnosis: Diagnosis | None = None, project: ProjectState | None = None) -> str:
    """One environment for /health: a line when healthy; else its failing checks, the cause and the fix, and
    the Supabase project's status and services when it was asked."""
    if report.healthy:
        return healthy_line(report)
    supabase = project_line(project)
    lines = [
        *failing_check_lines(report),
        *problem_lines(report, diagnosis),
        *([clip(supabase, LINE_MAX)] if supabase else []),
    ]
    return join_within(lines, FIELD_VALUE_MAX)


def _healthy_section(reports: Sequence[EnvReport], limit: int) -> str:
    """One line per healthy environment; when they do not fit, their names on one line."""
    lines = [healthy_line(r) for r in reports]
    if sum(len(line) + 1 for line in lines) <= limit:
        return "\n".join(lines)
    slowest = max(reports, key=lambda r: r.duration_ms)
    head = f"{OK} {len(reports)} healthy (slowest {slowest.env.upper()}, {slowest.duration_ms:.0f} ms): "
    return head + names_within([r.env.upper() for r in reports], limit - len(head))


HEALTH_FOOTER = "pgrst-ops /health · fresh probe"
MORE_UNHEALTHY_ROOM = 400  # kept free for the one-line-each list of the unhealthy ones that get no block


def health_embeds(
    reports: Sequence[EnvReport],
    diagnoses: Mapping[str, Diagnosis] | None = None,
    projects: Mapping[str, ProjectState] | None = None,
) -> list[dict[str, Any]]:
    """/health as one embed: unhealthy environments first, each with its failing checks, cause and fix; then a
    line per healthy one. Both groups keep the config's order; diagnosed reports replace the probes.

    It always fits one message: with many environments (30 or more) the healthy ones shrink to a list of names,
    and the unhealthy ones that get no block of their own are listed one line each.
    """
    diagnoses, projects = diagnoses or {}, projects or {}
    reports = [diagnoses[r.env].report if r.env in diagnoses else r for r in reports]
    bad = [r for r in reports if not r.healthy]
    good = [r for r in reports if r.healthy]
    if len(reports) == 1:
        title = f"PostgREST health: {reports[0].env.upper()} {'healthy' if good else 'unhealthy'}"
    elif bad:
        title = f"PostgREST health: {len(bad)} unhealthy, {len(good)} healthy"
    else:
        title = f"PostgREST health: all {len(good)} healthy"
    budget = MESSAGE_BUDGET - len(title) - len(HEALTH_FOOTER)
    description = _healthy_section(good, min(DESCRIPTION_MAX, budget // 3 if bad else budget))
    left = budget - len(description)
    fields: list[dict[str, Any]] = []
    for i, report in enumerate(bad):
        block = field(f"{mark(report.verdict)} {report.env.upper()} — {verdict_words(report.verdict)}", "")
        block["value"] = env_block(report, diagnoses.get(report.env), projects.get(report.env))
        room = MORE_UNHEALTHY_ROOM if i < len(bad) - 1 else 0
        if len(fields) >= FIELDS_MAX - 1 or field_size(block) + room > left:
            break
        fields.append(block)
        left -= field_size(block)
    rest = bad[len(fields) :]
    if rest:
        name = f"{len(rest)} more unhealthy"
        lines = [f"{mark(r.verdict)} **{r.env.upper()}** — {verdict_words(r.verdict)}" for r in rest]
        fields.append(field(name, join_within(lines, min(FIELD_VALUE_MAX, left - len(name)))))
    checked = [r.checked_at for r in reports]
    embed: dict[str, Any] = {
        "title": title,
        "color": info(worst(r.verdict for r in reports)).colour,
        "fields": fields,
        "footer": {"text": HEALTH_FOOTER},
    }
    if description:  # Discord refuses an empty one
        embed["description"] = description
    if checked:
        embed["timestamp"] = max(checked).isoformat()
    return [fit_embed(embed)]


def status_block(state: EnvState, reloads_in_window: int = 0) -> list[str]:
    """One environment for /status, from the monitor's memory: since when, the cause and fix once, the last
    reload, then the evidence (metrics, KPIs, drift, schema version) and the open alert."""
    report = state.last_report
    if state.verdict is None or report is None:
        return ["not checked yet"]
    version = report.server_version or "PostgREST version not reported"
    lines = [f"since {rel(state.since)} · checked {rel(report.checked_at)} in {report.duration_ms:.0f} ms · {version}"]
    if not report.healthy:
        lines += problem_lines(report, state.diagnosis)
    metrics = next((c.message for c in report.checks if c.kind is CheckKind.METRICS and c.message), None)
    if metrics:
        lines.append(f"admin /metrics: {clip(metrics, 200)}")
    if state.last_reload:
        r = state.last_reload
        tth = f", healthy after {r.time_to_healthy_ms:.0f} ms" if r.time_to_healthy_ms is not None else ""
        why = f": {reason_without_cause(r.reason)}" if r.reason and r.outcome is Outcome.ESCALATED else ""
        lines.append(clip(f"last reload {rel(r.at)} by {r.actor}: {r.outcome}{tth}{why}", LINE_MAX))
        if r.kpis:
            lines.append("KPIs: " + " · ".join(k.line() for k in r.kpis))
    supabase = project_line(state.project)
    if supabase:
        lines.append(clip(supabase, LINE_MAX))
    if state.postgrest_config:
        lines.append(clip(f"{WARNING} {state.postgrest_config}", LINE_MAX))
    if state.drift is not None:
        drift_mark = DRIFT_MARKS[str(state.drift.status)][0]
        lines.append(clip(f"{drift_mark} drift {rel(state.drift.checked_at)}: {state.drift.summary}", LINE_MAX))
    if state.schema_version is not None:
        v = state.schema_version
        version_mark = OK if v.compatible else (WARNING if str(v.status) == "unknown" else FAILED)
        lines.append(clip(f"{version_mark} schema version {v.status}: {v.message}", LINE_MAX))
    if reloads_in_window:
        lines.append(f"reloads in the cap window: {reloads_in_window}")
    if state.alert:
        lines.append(f"{FAILED} open alert since {rel(state.alert.opened_at)}")
    return lines


def _status_field(state: EnvState, reloads_in_window: int, route: AlertRoute | None = None) -> dict[str, Any]:
    where = [route_text(route)] if route is not None else []
    if state.verdict is None or state.last_report is None:
        return field(f"{state.name.upper()} — not checked yet", "\n".join(["the first check has not run yet", *where]))
    name = f"{mark(state.verdict)} {state.name.upper()} — {verdict_words(state.verdict)}"
    return field(name, join_within([*where, *status_block(state, reloads_in_window)], FIELD_VALUE_MAX))


def _quiet(state: EnvState) -> bool:
    """Healthy with nothing else to say: shown by name only when every environment cannot have its block."""
    return (
        state.verdict is Verdict.HEALTHY
        and state.alert is None
        and (state.drift is None or state.drift.in_sync)
        and (state.schema_version is None or state.schema_version.compatible)
        and state.postgrest_config is None
    )


QUIET_NAMES_ROOM = 600
LEFT_OUT_ROOM = 300
STATUS_EXTRAS_ROOM = 1300  # /status's open incidents and interrupted actions go on top (replies.with_status_extras)
STATUS_FIELDS_MAX = FIELDS_MAX - 2


def status_embed(
    states: Sequence[EnvState],
    health: MonitorHealth,
    *,
    monitor_alive: bool,
    reloads_in_window: dict[str, int],
    alert_routes: Mapping[str, AlertRoute] | None = None,
) -> dict[str, Any]:
    """From the monitor's memory, not a fresh probe: one block per environment, in the config's order.

    When they do not all fit one message, the healthy environments with nothing to report share one line.
    """
    uptime = format_duration((datetime.now(UTC) - health.started_at).total_seconds())
    sweep = (
        f"{health.last_sweep_ms:.0f} ms {rel(health.last_sweep_at)}" if health.last_sweep_ms is not None else "none yet"
    )
    bot_line = (
        f"monitor {OK + ' running' if monitor_alive else FAILED + ' stopped'} · last check {sweep} · "
        f"uptime {uptime} · pgrst-ops {health.version}"
    )
    footer = "from the monitor's last checks; /health probes now"
    budget = MESSAGE_BUDGET - STATUS_EXTRAS_ROOM - len(bot_line) - len(footer) - 40
    routes = alert_routes or {}
    fields = [_status_field(s, reloads_in_window.get(s.name, 0), routes.get(s.name)) for s in states]
    if len(fields) > STATUS_FIELDS_MAX or sum(map(field_size, fields)) > budget:
        fields = _compacted(states, fields, budget)
    known = [s.verdict for s in states if s.verdict is not None]
    colour = info(worst(known)).colour if known else NEUTRAL_COLOUR
    return fit_embed(
        {
            "title": "PostgREST status (monitor)",
            "description": bot_line,
            "color": colour,
            "fields": fields,
            "footer": {"text": footer},
        }
    )


def _compacted(states: Sequence[EnvState], fields: list[dict[str, Any]], budget: int) -> list[dict[str, Any]]:
    """The blocks of the environments worth a look, then the quiet healthy ones by name in one field."""
    quiet = [s.name.upper() for s in states if _quiet(s)]
    loud = [f for s, f in zip(states, fields, strict=True) if not _quiet(s)]
    room = budget - (QUIET_NAMES_ROOM if quiet else 0)
    kept: list[dict[str, Any]] = []
    for i, f in enumerate(loud):
        reserve = LEFT_OUT_ROOM if i < len(loud) - 1 else 0
        if len(kept) >= STATUS_FIELDS_MAX - 2 or field_size(f) + reserve > room:
            break
        kept.append(f)
        room -= field_size(f)
    left_out = [f["name"] for f in loud[len(kept) :]]
    if left_out:
        name = f"{len(left_out)} more (no room here)"
        kept.append(field(name, join_within(left_out, min(FIELD_VALUE_MAX, room - len(name)))))
    if quiet:
        name = f"{OK} {len(quiet)} healthy"
        kept.append(field(name, names_within(quiet, QUIET_NAMES_ROOM - len(name))))
    return kept


DRIFT_MARKS = {"in_sync": (OK, 0x2ECC71), "stale": (WARNING, 0xF1C40F), "unknown": (WARNING, NEUTRAL_COLOUR)}


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
