"""The CRITICAL alert the runbook shows, as a Discord message payload (plain dict, within Discord's limits).

Pure: the bot and a plain webhook post use the same payload. The role ping goes in `content` with
`allowed_mentions` naming only that role, because mentions inside embeds never notify anyone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.config import EnvironmentConfig
from bot.core.diagnosis import Diagnosis, Finding
from bot.core.incidents import RESOLUTION_TEXT
from bot.core.project import ProjectState, project_line
from bot.core.recovery import RecoveryResult, reason_without_cause
from bot.core.report import CheckResult, EnvReport
from bot.core.verdicts import Verdict, info

# Discord's embed limits.
TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELDS_MAX = 25
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_MAX = 2048
EMBED_TOTAL_MAX = 6000
CONTENT_MAX = 2000

CRITICAL_COLOUR = 0xE74C3C
# What an on-call engineer reads in one glance on a phone: the whole CRITICAL stays within these.
ALERT_FIELDS_MAX = 8
ALERT_CHARS_MAX = 1800
FAILING_CHECKS_SHOWN = 5

# Facts about an alert that its later edits need (acknowledged, resolved, its buttons); kept in the stored
# payload, never sent (`outgoing` drops them; discord.py's send arguments never include them).
FACTS = "pgrst_ops"

RESTART_STEP = "Restart the project (Restart project button below); it takes about 2-3 minutes"
CHECK_AGAIN_STEP = "Check again: `/health {env}` or `pgrst-ops check --env {env}`"


@dataclass(frozen=True)
class AlertButtons:
    """The alert's own buttons: Acknowledge (disabled once taken), Silence 1h, and Retry reload where it helps."""

    retry: bool = True
    acknowledged: bool = False
    restart: bool = False  # a Restart project button (the project's token can restart it), not only the link
    restarting: bool = False  # a restart is being followed: its button is disabled


def facts(payload: dict[str, Any]) -> dict[str, Any]:
    return dict(payload.get(FACTS) or {})


def alert_buttons(payload: dict[str, Any]) -> AlertButtons:
    """What the alert's buttons are now (an alert stored before the facts existed gets all three)."""
    known = facts(payload)
    return AlertButtons(
        retry=bool(known.get("retry", True)),
        acknowledged=bool(known.get("acknowledged_by")),
        restart=bool(known.get("restart")),
        restarting=bool(known.get("restarting")),
    )


def outgoing(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload as Discord takes it (webhook JSON, console text): without the alert's private facts."""
    return {k: v for k, v in payload.items() if k != FACTS}


def check_line(check: CheckResult) -> str:
    """One check for Discord: mark, label, `status code` (or what went wrong), latency."""
    status = str(check.status) if check.status is not None else check.detail
    code = f" {check.code}" if check.code else ""
    mark = "✅" if check.ok else "❌"
    return f"{mark} {check.label}: `{status}{code}` · {check.latency_ms:.0f} ms"


def failing_checks(checks: tuple[CheckResult, ...], shown: int = FAILING_CHECKS_SHOWN) -> str:
    """The failing checks (at most `shown`), then how many pass: the passing ones say nothing at 3 a.m."""
    failing = [c for c in checks if not c.ok]
    lines = [check_line(c) for c in failing[:shown]]
    if len(failing) > shown:
        lines.append(f"… and {len(failing) - shown} more failing")
    passing = len(checks) - len(failing)
    if passing:
        lines.append(f"✅ {passing} other check{'s pass' if passing != 1 else ' passes'}")
    return "\n".join(lines) or "no checks ran"


def no_cause_steps(next_step: str, env: str) -> list[str]:
    """The verdict's next step, the restart (once: the verdict's own step may already say it), a re-check.

    A paused project is restored, not restarted: its step says so, and no restart is offered."""
    check_again = CHECK_AGAIN_STEP.format(env=env)
    if "restore" in next_step.lower():
        return [next_step, check_again]
    if "restart" in next_step.lower():
        return [next_step.rstrip(". ") + " (Restart project button below)", check_again]
    return [next_step, RESTART_STEP, check_again]


def numbered_steps(steps: tuple[str, ...], env: str) -> str:
    return "\n".join(f"{i}. {s.format(env=env)}" for i, s in enumerate(steps, 1))


def fit_embed(embed: dict[str, Any]) -> dict[str, Any]:
    """Clip every part to Discord's limits, dropping trailing fields if the total would exceed 6000."""
    embed = dict(embed)
    if "title" in embed:
        embed["title"] = clip(embed["title"], TITLE_MAX)
    if "description" in embed:
        embed["description"] = clip(embed["description"], DESCRIPTION_MAX)
    fields = [
        {
            **f,
            "name": clip(f["name"], FIELD_NAME_MAX),
            "value": clip(f["value"] or "—", FIELD_VALUE_MAX),
        }
        for f in embed.get("fields", [])[:FIELDS_MAX]
    ]
    if "footer" in embed:
        embed["footer"] = {**embed["footer"], "text": clip(embed["footer"]["text"], FOOTER_MAX)}
    while fields and embed_size({**embed, "fields": fields}) > EMBED_TOTAL_MAX:
        fields.pop()
    if fields or "fields" in embed:
        embed["fields"] = fields
    return embed


def payload_chars(payload: dict[str, Any]) -> int:
    """Everything a reader reads: the content line and every embed."""
    return len(payload.get("content") or "") + sum(embed_size(e) for e in payload.get("embeds", []))


def fit_budget(embed: dict[str, Any], budget: int) -> dict[str, Any]:
    """Shorten the longest parts (field values, then the description) until the embed is within `budget`."""
    embed = {**embed, "fields": [dict(f) for f in embed.get("fields", [])]}
    while embed_size(embed) > budget:
        over = embed_size(embed) - budget
        parts = [(len(f["value"]), i) for i, f in enumerate(embed["fields"])]
        parts.append((len(embed.get("description", "")), -1))
        longest, index = max(parts)
        if longest <= 80:
            break  # nothing left worth shortening; Discord's own limits still hold
        keep = max(80, longest - over)
        if index < 0:
            embed["description"] = clip(embed["description"], keep)
        else:
            embed["fields"][index]["value"] = clip(embed["fields"][index]["value"], keep)
    return embed


def reload_can_help(report: EnvReport, result: RecoveryResult | None, diagnosis: Diagnosis | None) -> bool:
    """Whether a Retry reload button makes sense: the verdict is one a reload fixes and nothing blocks it."""
    if not info(report.verdict).reload_helps:
        return False
    if result is not None and result.refused_by_preflight:
        return False
    return not (diagnosis is not None and diagnosis.blockers)


def _what_was_tried(result: RecoveryResult, cause: Finding | None) -> str:
    tried = (
        f"NOTIFY sent ({result.notify_ms:.0f} ms), {result.attempts} re-check{'s' if result.attempts != 1 else ''}"
        if result.notify_ms is not None
        else "no NOTIFY sent"
    )
    reason = reason_without_cause(result.reason or "")  # the cause has its own field
    why_not = info(result.verdict_after).why_no_reload
    if (cause is not None and (cause.fix in reason or cause.evidence in reason)) or (why_not and why_not in reason):
        reason = ""  # already said: in the cause's fields, or in the status line
    return f"{tried}: {reason}" if reason else tried


def build_critical_alert(
    env_name: str,
    env: EnvironmentConfig,
    report: EnvReport,
    *,
    result: RecoveryResult | None = None,
    since: datetime | None = None,
    alert_role_id: int | None = None,
    diagnosis: Diagnosis | None = None,
    project: ProjectState | None = None,
) -> dict[str, Any]:
    """The CRITICAL message: what is wrong, since when, what was tried, and the one thing to do next; with a
    Supabase project, its status and service health on one field."""
    diagnosis = diagnosis or (result.diagnosis if result else None)
    verdict = report.verdict
    meta = info(verdict)
    since = since or (result.started_at if result else report.checked_at)
    cause = diagnosis.cause if diagnosis else None
    if result is not None and result.refused_by_preflight:
        status = "Reload refused by the pre-flight check: it would not help, or would make things worse."
    elif result is not None and result.notify_sent:
        status = "Automated recovery failed: the reload did not fix it."
    else:
        status = f"Automated recovery cannot fix this: {meta.why_no_reload or 'a reload does not help'}."
    stamp = int(since.timestamp())
    description = "\n".join([status, f"Since <t:{stamp}:R> (<t:{stamp}:f>)", report.explanation])
    fields: list[dict[str, Any]] = []
    if cause is not None:
        fields.append({"name": f"Cause: {cause.title}", "value": cause.evidence, "inline": False})
        fallback = f"If that does not help: restart the project (button below), then `/health {env_name}`."
        fields.append({"name": "Fix", "value": f"{cause.fix}\n{fallback}", "inline": False})
        if diagnosis is not None and len(diagnosis.findings) > 1:
            more = "\n".join(f"- {f.title}" for f in diagnosis.findings[1:4])
            fields.append({"name": "Also found", "value": more, "inline": False})
    else:
        if diagnosis is not None and diagnosis.error:
            fields.append({"name": "Cause", "value": f"unknown: {diagnosis.headline}", "inline": False})
        step = meta.next_step.replace("<env>", env_name).replace("<ref>", project.ref if project else "<ref>")
        steps = "\n".join(f"{i}. {line}" for i, line in enumerate(no_cause_steps(step, env_name), 1))
        fields.append({"name": "Next steps", "value": steps, "inline": False})
    if result is not None and result.refused_by_preflight:
        force = f"`/reload {env_name} force:true` or `pgrst-ops fix --env {env_name} --force`"
        fields.append({"name": "Force the reload anyway", "value": force, "inline": False})
    if result is not None:
        fields.append({"name": "What was tried", "value": _what_was_tried(result, cause), "inline": False})
    fields.append({"name": "Failing checks", "value": failing_checks(report.checks), "inline": False})
    supabase = project_line(project)
    if supabase:
        fields.append({"name": "Supabase", "value": supabase, "inline": False})
    footer = f"pgrst-ops · {env_name} · {verdict}" + (f" · {report.server_version}" if report.server_version else "")
    if cause:
        headline = f"PostgREST {env_name.upper()} is unhealthy ({verdict}): {cause.title}"
    elif verdict is Verdict.PROJECT_PAUSED:
        headline = f"PostgREST {env_name.upper()} is down: the Supabase project is paused, restore it"
    else:
        headline = f"PostgREST {env_name.upper()} is down: manual restart needed"
    payload: dict[str, Any] = {}
    if alert_role_id is not None:
        payload["content"] = clip(f"<@&{alert_role_id}> {headline}", CONTENT_MAX)
        payload["allowed_mentions"] = {"parse": [], "roles": [str(alert_role_id)]}
    else:
        payload["content"] = clip(headline, CONTENT_MAX)
        payload["allowed_mentions"] = {"parse": []}
    embed: dict[str, Any] = {
        "title": f"CRITICAL · {env_name.upper()}: {meta.words}",
        "description": description,
        "color": CRITICAL_COLOUR,
        "fields": fields[:ALERT_FIELDS_MAX],
        "timestamp": report.checked_at.isoformat(),
        "footer": {"text": footer},
    }
    embed = fit_budget(fit_embed(embed), ALERT_CHARS_MAX - len(payload["content"]))
    payload["embeds"] = [embed]
    payload[FACTS] = {
        "env": env_name,
        "verdict": str(verdict),
        "cause": cause.title if cause else meta.words,
        "retry": reload_can_help(report, result, diagnosis),
        # With a Supabase project and its token, the restart is a button (a paused project is restored instead).
        "restart": env.supabase is not None and verdict is not Verdict.PROJECT_PAUSED,
    }
    return payload


RESOLVED_COLOUR = 0x2ECC71
INFO_COLOUR = 0x3498DB


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min" if not secs else f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def build_resolved_alert(
    env_name: str,
    alert_payload: dict[str, Any],
    started: datetime,
    resolved_at: datetime,
    *,
    resolution: str,
    acknowledged_by: str | None = None,
    resolution_detail: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The alert edited to a short resolved card (no instructions, no buttons), and the one resolved line;
    `resolution_detail` is said with the resolution ("healthy 95 s after alice's restart")."""
    duration = format_duration((resolved_at - started).total_seconds())
    known = facts(alert_payload)
    how = RESOLUTION_TEXT.get(resolution, resolution)
    if resolution_detail:
        how = f"{how}: {resolution_detail}"
    lines = [
        f"Down for {duration} (<t:{int(started.timestamp())}:t> → <t:{int(resolved_at.timestamp())}:t>)",
        f"Resolution: {how}",
    ]
    if known.get("cause"):
        lines.append(f"Cause: {known['cause']}")
    acknowledged_by = acknowledged_by or known.get("acknowledged_by")
    if acknowledged_by:
        lines.append(f"Acknowledged by {acknowledged_by}")
    original = (alert_payload.get("embeds") or [{}])[0]
    embed = {
        "title": f"✅ RESOLVED · {env_name.upper()}: PostgREST healthy again",
        "description": "\n".join(lines),
        "color": RESOLVED_COLOUR,
        "timestamp": resolved_at.isoformat(),
        "footer": original.get("footer") or {"text": f"pgrst-ops · {env_name}"},
    }
    # The content is emptied: the channel's one "resolved" line is the short line posted below.
    edited: dict[str, Any] = {"content": "", "embeds": [fit_embed(embed)], "allowed_mentions": {"parse": []}}
    edited[FACTS] = {**known, "resolution": resolution, "acknowledged_by": acknowledged_by, "restarting": False}
    line = build_info_line(env_name, f"✅ PostgREST {env_name.upper()} resolved after {duration} ({how}).")
    return edited, line


def build_info_line(env_name: str, text: str) -> dict[str, Any]:
    return {"content": clip(text, CONTENT_MAX), "allowed_mentions": {"parse": []}}


def clip(text: str, limit: int) -> str:
    """`text` in at most `limit` characters, cut at a word boundary and ended with "…" (an open code span closed)."""
    if len(text) <= limit:
        return text
    cut = text[: max(1, limit - 2)]
    boundary = max(cut.rfind(" "), cut.rfind("\n"))
    if boundary >= limit // 2:
        cut = cut[:boundary]
    cut = cut.rstrip(" \n,;:.(—-")
    if cut.count("`") % 2:
        cut += "`"
    return cut + "…"


def embed_size(embed: Mapping[str, Any]) -> int:
    """The characters Discord counts towards its 6,000 per message."""
    size = len(embed.get("title", "")) + len(embed.get("description", ""))
    size += len(embed.get("footer", {}).get("text", "")) + len(embed.get("author", {}).get("name", ""))
    return size + sum(len(f["name"]) + len(f["value"]) for f in embed.get("fields", []))
