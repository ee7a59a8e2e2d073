"""Short replies of the slash commands and buttons: silences, Retry reload, /reload's progress lines, /status extras.

Pure text and payload builders over bot.core types; they import bot.core and bot.messages only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.core.records import AuditEntry
from bot.core.recovery import Outcome, RecoveryResult, RecoveryStep, StepKind
from bot.messages.alert import FIELD_VALUE_MAX, FIELDS_MAX, fit_embed, format_duration, truncate

STEP_ICONS = {
    StepKind.PROBE: "🔎",
    StepKind.DIAGNOSIS: "🩺",
    StepKind.DECISION: "🛑",
    StepKind.LISTENER: "👂",
    StepKind.NOTIFY: "📣",
    StepKind.RECHECK: "⏳",
    StepKind.DONE: "🏁",
}


def step_line(step: RecoveryStep) -> str:
    return f"{STEP_ICONS[step.kind]} {step.message}"


def silenced_by_button(env: str, duration_s: float, until: datetime) -> str:
    return (
        f"🔕 {env.upper()} silenced for {format_duration(duration_s)} (until "
        f"<t:{int(until.timestamp())}:t>). `/unsilence {env}` ends it early."
    )


def silenced(env: str, until: datetime) -> str:
    return (
        f"🔕 {env.upper()} silenced until <t:{int(until.timestamp())}:f>. Alerts are held, probes go on; "
        f"the channel was told. `/unsilence {env}` ends it early."
    )


def silence_too_long(longest_s: float) -> str:
    return f"❓ At most {format_duration(longest_s)}: a longer silence hides real outages. Use a shorter one."


def unsilenced(env: str, ended: bool) -> str:
    return f"🔔 {env.upper()} unsilenced." if ended else f"{env.upper()} was not silenced: nothing to do."


def already_resolved(incident_id: int) -> str:
    return f"Incident #{incident_id} is already resolved: nothing to do. `/incidents` shows it."


def protected_retry(env: str) -> str:
    return f"⚠️ {env.upper()} is protected: use `/reload {env}`, which asks you to confirm first."


def no_incident_log(why: str) -> str:
    return f"⚠️ No incident log: {why}. Check `incidents.store_path` in the config and the bot's log."


def store_failed(error: str | None) -> str:
    return f"⚠️ The incident store failed: {error}. Details in the log."


def retry_interrupted(env: str, how: str) -> str:
    return f"🛑 Retry reload of {env.upper()} {how}."


def retry_outcome(env: str, result: RecoveryResult | str) -> str:
    """The Retry reload button's answer (a str: the monitor's own answer, nothing was done)."""
    if isinstance(result, str):
        return result
    if result.outcome is Outcome.RECOVERED:
        return f"✅ Reload sent: {env.upper()} healthy after {result.time_to_healthy_ms:.0f} ms."
    if result.outcome is Outcome.ALREADY_HEALTHY:
        return f"✅ {env.upper()} is already healthy: no reload sent; the incident is resolved."
    return f"❌ The reload did not fix {env.upper()}: {result.reason}. Next: {result.report_after.next_step}"


def interrupted_line(entry: AuditEntry) -> str:
    return f"🛑 {entry.actor} · {entry.env or '—'} · {entry.outcome} · <t:{int(entry.at.timestamp())}:R>"


def with_status_extras(
    embed: dict[str, Any], open_incidents: list[str], interrupted: list[AuditEntry]
) -> dict[str, Any]:
    """/status's embed with the open incidents (and silences), then actions a stop cut short, on top."""
    if open_incidents:
        field = {"name": "Open incidents", "value": truncate("\n".join(open_incidents), FIELD_VALUE_MAX)}
        embed = fit_embed({**embed, "fields": [field, *embed.get("fields", [])][:FIELDS_MAX]})
    if interrupted:  # after a restart: what may need a look
        field = {
            "name": "Interrupted actions",
            "value": truncate("\n".join(map(interrupted_line, interrupted)), FIELD_VALUE_MAX),
        }
        embed = fit_embed({**embed, "fields": [field, *embed.get("fields", [])][:FIELDS_MAX]})
    return embed
