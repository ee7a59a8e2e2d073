"""The CRITICAL alert the runbook shows, as a Discord message payload (plain dict, within Discord's limits).

Pure: the bot and a plain webhook post use the same payload. The role ping goes in `content` with
`allowed_mentions` naming only that role, because mentions inside embeds never notify anyone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bot.config import EnvironmentConfig
from bot.core.diagnosis import Diagnosis
from bot.core.recovery import RecoveryResult
from bot.core.report import CheckResult, EnvReport
from bot.core.verdicts import info

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

RECOVERY_STEPS = (
    "Open the dashboard restart page (link above) → Restart project",
    "Wait for the restart to complete (about 2-3 minutes)",
    "Run the health check again: `/health` or `pgrst-ops check --env {env}`",
)
TROUBLESHOOTING_STEPS = (
    "Dashboard → Database: is the project paused, or at its connection limit?",
    "Check for recent migrations or role changes (ALTER ROLE authenticator SET …)",
    "Read the PostgREST / API logs for the failing schema query",
    "If a restart does not help, contact support with the checks below",
)


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_line(check: CheckResult) -> str:
    """One check for Discord: mark, label, `status code` (or what went wrong), latency."""
    status = str(check.status) if check.status is not None else check.detail
    code = f" {check.code}" if check.code else ""
    mark = "✅" if check.ok else "❌"
    return f"{mark} {check.label}: `{status}{code}` · {check.latency_ms:.0f} ms"


def numbered_steps(steps: tuple[str, ...], env: str) -> str:
    return "\n".join(f"{i}. {s.format(env=env)}" for i, s in enumerate(steps, 1))


def fit_embed(embed: dict[str, Any]) -> dict[str, Any]:
    """Clip every part to Discord's limits, dropping trailing fields if the total would exceed 6000."""
    embed = dict(embed)
    if "title" in embed:
        embed["title"] = truncate(embed["title"], TITLE_MAX)
    if "description" in embed:
        embed["description"] = truncate(embed["description"], DESCRIPTION_MAX)
    fields = [
        {
            **f,
            "name": truncate(f["name"], FIELD_NAME_MAX),
            "value": truncate(f["value"] or "—", FIELD_VALUE_MAX),
        }
        for f in embed.get("fields", [])[:FIELDS_MAX]
    ]
    if "footer" in embed:
        embed["footer"] = {**embed["footer"], "text": truncate(embed["footer"]["text"], FOOTER_MAX)}

    def total(fs: list[dict[str, Any]]) -> int:
        size = len(embed.get("title", "")) + len(embed.get("description", ""))
        size += len(embed.get("footer", {}).get("text", ""))
        return size + sum(len(f["name"]) + len(f["value"]) for f in fs)

    while fields and total(fields) > EMBED_TOTAL_MAX:
        fields.pop()
    if fields or "fields" in embed:
        embed["fields"] = fields
    return embed


def build_critical_alert(
    env_name: str,
    env: EnvironmentConfig,
    report: EnvReport,
    *,
    result: RecoveryResult | None = None,
    since: datetime | None = None,
    alert_role_id: int | None = None,
    diagnosis: Diagnosis | None = None,
) -> dict[str, Any]:
    """The CRITICAL message: what is wrong, since when, what was tried, and what to do next."""
    diagnosis = diagnosis or (result.diagnosis if result else None)
    verdict = report.verdict
    meta = info(verdict)
    since = since or (result.started_at if result else report.checked_at)
    status = "Automated recovery failed" if result and result.notify_sent else "Automated recovery cannot fix this"
    if result and result.refused_by_preflight:
        status = "Reload refused by the pre-flight check (it would not help or would make things worse)"
    cause = diagnosis.cause if diagnosis else None
    action = (
        "Fix the cause below; restart the project only if that does not help" if cause else "Manual project restart"
    )
    restart = str(env.restart_url) if env.restart_url else (str(env.dashboard_url) if env.dashboard_url else None)
    lines = [
        f"**Environment:** {env_name.upper()}",
        f"**Status:** {status}",
        f"**Action required:** {action}",
        f"**Since:** <t:{int(since.timestamp())}:R> ({since.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC)",
    ]
    if restart:
        lines.append(f"**Restart:** {restart}")
    fields: list[dict[str, Any]] = [
        {"name": "Verdict", "value": f"{meta.emoji} `{verdict}`", "inline": True},
    ]
    if report.server_version:
        fields.append({"name": "Server", "value": report.server_version, "inline": True})
    fields.append({"name": "Diagnosis", "value": report.explanation, "inline": False})
    if cause is not None:
        fields.append({"name": f"🩺 Cause: {cause.title}", "value": cause.evidence, "inline": False})
        fields.append({"name": "🛠️ Fix", "value": cause.fix, "inline": False})
        if diagnosis is not None and len(diagnosis.findings) > 1:
            more = "\n".join(f"• {f.title}" for f in diagnosis.findings[1:4])
            fields.append({"name": "Also found", "value": more, "inline": False})
    elif diagnosis is not None and diagnosis.error:
        fields.append({"name": "🩺 Cause", "value": f"unknown: {diagnosis.headline}", "inline": False})
    if result is not None and result.refused_by_preflight:
        fields.append(
            {
                "name": "Force the reload anyway",
                "value": f"`/reload {env_name} force:true` or `pgrst-ops fix --env {env_name} --force`",
                "inline": False,
            }
        )
    if result is not None:
        tried = (
            f"NOTIFY sent ({result.notify_ms:.0f} ms), {result.attempts} re-checks"
            if result.notify_ms is not None
            else "no NOTIFY sent"
        )
        fields.append({"name": "What was tried", "value": f"{tried}\nReason: {result.reason}", "inline": False})
    if env.dashboard_url:
        fields.append({"name": "Dashboard", "value": str(env.dashboard_url), "inline": False})
    if cause is not None:
        # A restart would not fix a named cause, and can make it worse (it applies a pending role setting).
        fields.append({"name": "Next step", "value": cause.fix, "inline": False})
        fields.append(
            {
                "name": "Only if the fix does not help",
                "value": "Restart the project (link above), then run `/health` again",
                "inline": False,
            }
        )
    else:
        fields.append({"name": "Next step", "value": meta.next_step, "inline": False})
        fields.append({"name": "Recovery steps", "value": numbered_steps(RECOVERY_STEPS, env_name), "inline": False})
        fields.append(
            {"name": "Troubleshooting", "value": numbered_steps(TROUBLESHOOTING_STEPS, env_name), "inline": False}
        )
    fields.append({"name": "Last checks", "value": "\n".join(check_line(c) for c in report.checks), "inline": False})
    embed: dict[str, Any] = {
        "title": "🔥 CRITICAL: PostgREST unhealthy",
        "description": "\n".join(lines),
        "color": CRITICAL_COLOUR,
        "fields": fields,
        "timestamp": report.checked_at.isoformat(),
        "footer": {"text": f"pgrst-ops · {env_name}"},
    }
    if restart:
        embed["url"] = restart
    payload: dict[str, Any] = {"embeds": [fit_embed(embed)]}
    headline = (
        f"PostgREST {env_name.upper()} is unhealthy ({verdict}): {cause.title}"
        if cause
        else f"PostgREST {env_name.upper()} is down: manual restart needed"
    )
    if alert_role_id is not None:
        payload["content"] = truncate(f"<@&{alert_role_id}> {headline}", CONTENT_MAX)
        payload["allowed_mentions"] = {"parse": [], "roles": [str(alert_role_id)]}
    else:
        payload["content"] = truncate(headline, CONTENT_MAX)
        payload["allowed_mentions"] = {"parse": []}
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
    env_name: str, alert_payload: dict[str, Any], started: datetime, resolved_at: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The CRITICAL alert edited to resolved, and the short "resolved after N min" line to post."""
    duration = format_duration((resolved_at - started).total_seconds())
    original = alert_payload["embeds"][0]
    embed = {
        **original,
        "title": "✅ RESOLVED: PostgREST healthy again",
        "color": RESOLVED_COLOUR,
        "description": (
            f"**Environment:** {env_name.upper()}\n**Down for:** {duration} "
            f"(<t:{int(started.timestamp())}:t> → <t:{int(resolved_at.timestamp())}:t>)\n\n"
            + original.get("description", "")
        ),
    }
    edited: dict[str, Any] = {
        "content": f"✅ PostgREST {env_name.upper()} resolved after {duration}",
        "embeds": [fit_embed(embed)],
        "allowed_mentions": {"parse": []},
    }
    line = build_info_line(env_name, f"✅ PostgREST {env_name.upper()} resolved after {duration}.")
    return edited, line


def build_info_line(env_name: str, text: str) -> dict[str, Any]:
    return {"content": truncate(text, CONTENT_MAX), "allowed_mentions": {"parse": []}}
