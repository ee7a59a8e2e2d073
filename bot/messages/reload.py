"""The /reload message: live progress lines, then the outcome with the cause and fix once, and an audit line.

Pure, like the other builders; shares the /health and /status line helpers of embeds.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bot.core.diagnosis import Finding
from bot.core.recovery import Outcome, RecoveryResult
from bot.core.verdicts import Verdict, info
from bot.messages.alert import (
    DESCRIPTION_MAX,
    fit_embed,
)
from bot.messages.embeds import FAILED, NEUTRAL_COLOUR, OK, WARNING, field, join_within, problem_lines, verdict_words


def reload_embed(
    env: str, lines: Sequence[str], *, result: RecoveryResult | None, actor: str, interrupted: str | None = None
) -> dict[str, Any]:
    """The /reload message: live progress lines, then the outcome with the cause and fix once, and an audit line.

    `lines` are the progress lines (replies.reload_lines); with `interrupted`, what a shutdown cut short.
    """
    env_shown = env.upper()
    if interrupted is not None:
        at = datetime.now(UTC)
        stopped: dict[str, Any] = {
            "title": f"{WARNING} {env_shown} reload {interrupted}",
            "description": join_within([*lines[-14:], f"{WARNING} {interrupted}"], DESCRIPTION_MAX),
            "color": info(Verdict.SCHEMA_CACHE_UNAVAILABLE).colour,
            "fields": [field("Audit", f"{actor} · {env} · {interrupted} · {at:%Y-%m-%d %H:%M:%S} UTC")],
            "timestamp": at.isoformat(),
        }
        return fit_embed(stopped)
    if result is None:
        title, colour = f"Reloading {env_shown} schema cache…", NEUTRAL_COLOUR
    elif result.outcome is Outcome.RECOVERED:
        title, colour = (
            f"{OK} {env_shown} healthy after {result.time_to_healthy_ms:.0f} ms",
            info(Verdict.HEALTHY).colour,
        )
    elif result.outcome is Outcome.ALREADY_HEALTHY:
        title, colour = f"{OK} {env_shown} already healthy: no reload sent", info(Verdict.HEALTHY).colour
    else:
        title = f"{FAILED} {env_shown} escalated: {verdict_words(result.verdict_after)}"
        colour = info(Verdict.SCHEMA_CACHE_UNAVAILABLE).colour
    embed: dict[str, Any] = {"title": title, "description": join_within(lines[-15:], DESCRIPTION_MAX), "color": colour}
    if result is not None:
        fields = []
        if result.outcome is Outcome.ESCALATED:
            fields += _problem_fields(result)
        if result.kpis:
            fields.append(field("KPIs", "\n".join(k.line() for k in result.kpis)))
        audit = f"{actor} · {env} · {result.outcome} · {result.finished_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
        if result.forced:
            audit += " · forced despite the pre-flight findings"
        fields.append(field("Audit", audit))
        embed["fields"] = fields
        embed["timestamp"] = result.finished_at.isoformat()
    return fit_embed(embed)


def escalation_cause(result: RecoveryResult) -> Finding | None:
    """The cause an escalated /reload shows with its fix: the pre-flight's blocker when it refused the reload."""
    diagnosis = result.diagnosis
    if result.outcome is not Outcome.ESCALATED or diagnosis is None:
        return None
    if result.refused_by_preflight and diagnosis.blockers:
        return diagnosis.blockers[0]
    return diagnosis.cause


def _problem_fields(result: RecoveryResult) -> list[dict[str, Any]]:
    """An escalation's cause and fix, once."""
    fields = []
    for line in problem_lines(result.report_after, result.diagnosis, main=escalation_cause(result)):
        label, _, text = line.removeprefix("**").partition(":** ")
        fields.append(field(label, text))
    return fields
