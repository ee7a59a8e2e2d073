"""Short replies of the slash commands and buttons: silences, Retry reload, /reload's progress lines, /status extras.

Pure text and payload builders over bot.core types; they import bot.core and bot.messages only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.core.diagnosis import Finding
from bot.core.records import AuditEntry
from bot.core.recovery import Outcome, RecoveryResult, RecoveryStep, StepKind, reason_without_cause
from bot.messages.alert import FIELDS_MAX, clip, fit_embed, format_duration
from bot.messages.embeds import FAILED, LINE_MAX, OK, WARNING, join_within, verdict_words
from bot.messages.reload import escalation_cause

# The operator's step messages (bot/ops/recovery.py) that carry a diagnosis or a reason.
DIAGNOSIS_PREFIX = "diagnosis: {verdict}; "
NO_RELOAD_PREFIX = "no reload: "
ESCALATED_PREFIX = "escalated: "
NO_CAUSE_HEADLINES = ("no cause found in the database", "diagnosis unavailable:")


def _cause_title(headline: str) -> str | None:
    """The finding's title in a diagnosis headline ("title: evidence. Fix: fix"); None when no cause was found."""
    if headline.startswith(NO_CAUSE_HEADLINES):
        return None
    return headline.split(": ", 1)[0]


def reload_lines(steps: Sequence[RecoveryStep], result: RecoveryResult | None = None) -> list[str]:
    """/reload's progress, one line per step, the re-checks on one line updated in place.

    The cause is told in full once: on the diagnosis line while the reload runs, and in the result's own fields
    once it is done (then the diagnosis line names it at most). Later lines name it by its title only, and the
    escalation's reason is not repeated when it is the decision's.
    """
    final_cause = escalation_cause(result) if result is not None else None
    findings = result.diagnosis.findings if result is not None and result.diagnosis is not None else ()
    titles: dict[str, str] = {f.line(): f.title for f in findings}
    lines: list[str] = []
    decision: tuple[int, str] | None = None  # the decision line's index and its reason

    def short(text: str) -> str:
        return clip(reason_without_cause(text, findings), LINE_MAX)

    for step in steps:
        if step.kind is StepKind.RECHECK and lines and lines[-1].startswith("re-check"):
            lines[-1] = clip(step.message, LINE_MAX)
        elif step.kind is StepKind.PROBE and step.report is not None:
            lines.append(f"probe: {verdict_words(step.report.verdict)}")
        elif step.kind is StepKind.DIAGNOSIS and step.report is not None:
            lines.append(_diagnosis_line(step, result, final_cause, titles))
        elif step.kind is StepKind.LISTENER:
            lines.append(f"listener: {clip(step.message, 200)}")
        elif step.kind is StepKind.DECISION:
            reason = short(step.message.removeprefix(NO_RELOAD_PREFIX))
            decision = (len(lines), reason)
            lines.append(short(step.message))
        elif step.kind is StepKind.DONE:
            done_mark = OK if step.report is not None and step.report.healthy else FAILED
            reason = short(step.message.removeprefix(ESCALATED_PREFIX))
            if decision is not None and step.message.startswith(ESCALATED_PREFIX) and decision[1] == reason:
                lines[decision[0]] = f"{done_mark} {lines[decision[0]]}"  # escalated for the reason just given
            else:
                lines.append(f"{done_mark} {short(step.message)}")
        else:
            lines.append(clip(step.message, LINE_MAX))
    return lines


def step_line(step: RecoveryStep) -> str:
    """One step on its own, as /reload shows it."""
    return reload_lines([step])[0]


def _diagnosis_line(
    step: RecoveryStep, result: RecoveryResult | None, final_cause: Finding | None, titles: dict[str, str]
) -> str:
    assert step.report is not None
    verdict = step.report.verdict
    headline = step.message.removeprefix(DIAGNOSIS_PREFIX.format(verdict=verdict))
    shown = f"diagnosis: {verdict_words(verdict)}"
    title = titles.get(headline) or _cause_title(headline)
    if result is None or title is None:
        return f"{shown}; {clip(headline, 2 * LINE_MAX)}"  # while running, the only place the cause is told
    if final_cause is not None and final_cause.line() == headline:
        return f"{shown} (cause and fix below)"
    return f"{shown}; cause: {clip(title, 200)}"


def silenced_by_button(env: str, duration_s: float, until: datetime) -> str:
    return (
        f"{env.upper()} silenced for {format_duration(duration_s)} (until "
        f"<t:{int(until.timestamp())}:t>). `/unsilence {env}` ends it early."
    )


def silenced(env: str, until: datetime) -> str:
    return (
        f"{env.upper()} silenced until <t:{int(until.timestamp())}:f>. Alerts are held, probes go on; "
        f"the channel was told. `/unsilence {env}` ends it early."
    )


def silence_too_long(longest_s: float) -> str:
    return f"{WARNING} At most {format_duration(longest_s)}: a longer silence hides real outages. Use a shorter one."


def unsilenced(env: str, ended: bool) -> str:
    return f"{OK} {env.upper()} unsilenced." if ended else f"{env.upper()} was not silenced: nothing to do."


def already_resolved(incident_id: int) -> str:
    return f"Incident #{incident_id} is already resolved: nothing to do. `/incidents` shows it."


def protected_retry(env: str) -> str:
    return f"⚠️ {env.upper()} is protected: use `/reload {env}`, which asks you to confirm first."


def no_incident_log(why: str) -> str:
    return f"⚠️ No incident log: {why}. Check `incidents.store` in the config and the bot's log."


def store_failed(error: str | None) -> str:
    return f"⚠️ The incident store failed: {error}. Details in the log."


def retry_interrupted(env: str, how: str) -> str:
    return f"{WARNING} Retry reload of {env.upper()} {how}."


def retry_outcome(env: str, result: RecoveryResult | str) -> str:
    """The Retry reload button's answer (a str: the monitor's own answer, nothing was done)."""
    if isinstance(result, str):
        return result
    if result.outcome is Outcome.RECOVERED:
        return f"✅ Reload sent: {env.upper()} healthy after {result.time_to_healthy_ms:.0f} ms."
    if result.outcome is Outcome.ALREADY_HEALTHY:
        return f"✅ {env.upper()} is already healthy: no reload sent; the incident is resolved."
    reason = reason_without_cause(result.reason or "", result.diagnosis.findings if result.diagnosis else ())
    cause = escalation_cause(result)
    fix = cause.fix if cause else result.report_after.next_step
    return clip(f"{FAILED} The reload did not fix {env.upper()}: {reason}. Fix: {fix}", 2000)


def interrupted_line(entry: AuditEntry) -> str:
    return f"{WARNING} {entry.actor} · {entry.env or '—'} · {entry.outcome} · <t:{int(entry.at.timestamp())}:R>"


EXTRAS_MAX = 600  # each; embeds.status_embed keeps room for both (STATUS_EXTRAS_ROOM)


def with_status_extras(
    embed: dict[str, Any], open_incidents: list[str], interrupted: list[AuditEntry]
) -> dict[str, Any]:
    """/status's embed with the open incidents (and silences), then actions a stop cut short, on top."""
    if open_incidents:
        field = {"name": "Open incidents", "value": join_within(open_incidents, EXTRAS_MAX)}
        embed = fit_embed({**embed, "fields": [field, *embed.get("fields", [])][:FIELDS_MAX]})
    if interrupted:  # after a restart: what may need a look
        field = {
            "name": "Interrupted actions",
            "value": join_within([interrupted_line(e) for e in interrupted], EXTRAS_MAX),
        }
        embed = fit_embed({**embed, "fields": [field, *embed.get("fields", [])][:FIELDS_MAX]})
    return embed
