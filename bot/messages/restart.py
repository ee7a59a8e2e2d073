"""What a restart says: the line on the alert as it goes, the replies to the person who asked, the CLI lines.

Pure builders. The alert keeps one restart line at the top of its description, replaced at each phase (sent,
restarting, coming up, healthy after N s, failed, timed out), and the fact that a restart is running (its
Restart button is then disabled), under the alert's private facts (bot/messages/alert.py).
"""

from __future__ import annotations

import copy
from typing import Any

from bot.core.restart import Phase, Progress
from bot.messages.alert import ALERT_CHARS_MAX, FACTS, clip, fit_budget, format_duration

RESTART_LINE_MAX = 300
REASON_MAX = 200  # the modal's limit, and the audit's
RESTART_MARK = "Restart "  # the restart line starts with this; a new phase replaces it


def phase_words(progress: Progress) -> str:
    took = format_duration(progress.elapsed_s)
    if progress.phase is Phase.SENT:
        return "sent to Supabase, waiting for the project to go down"
    if progress.phase is Phase.RESTARTING:
        return f"restarting ({took})"
    if progress.phase is Phase.COMING_UP:
        return f"coming up ({took})"
    if progress.phase is Phase.HEALTHY:
        return f"healthy after {took}"
    if progress.phase is Phase.FAILED:
        return f"failed: {progress.detail or 'the Management API refused it'}"
    return f"not healthy after {took}: restart it from the dashboard, or contact Supabase support"


def restart_line(progress: Progress, actor: str, reason: str) -> str:
    """`Restart by alice ("stuck after deploy"): restarting (40 s)`, with ✅ or ❌ once it is over."""
    mark = {Phase.HEALTHY: "✅ ", Phase.FAILED: "❌ ", Phase.TIMED_OUT: "❌ "}.get(progress.phase, "")
    said = f' ("{clip(reason, 80)}")' if reason else ""
    return clip(f"{mark}{RESTART_MARK}by {actor}{said}: {phase_words(progress)}", RESTART_LINE_MAX)


def _is_restart_line(line: str) -> bool:
    return any(line.startswith(prefix + RESTART_MARK + "by ") for prefix in ("", "✅ ", "❌ "))


def with_restart(payload: dict[str, Any], progress: Progress, actor: str, reason: str) -> dict[str, Any]:
    """The alert with its restart line for this phase (the previous one replaced); its Restart button is
    disabled while the restart runs and offered again once it failed or timed out."""
    edited = copy.deepcopy(payload)
    embeds = edited.get("embeds") or []
    if embeds:
        embed = embeds[0]
        lines = [line for line in str(embed.get("description") or "").split("\n") if not _is_restart_line(line)]
        embed["description"] = clip("\n".join([restart_line(progress, actor, reason), *lines]), 4096)
        embeds[0] = fit_budget(embed, ALERT_CHARS_MAX - len(str(edited.get("content") or "")))
    known = dict(edited.get(FACTS) or {})
    known["restarting"] = not progress.phase.done
    edited[FACTS] = known
    return edited


def restart_refused(env: str, why: str) -> str:
    return f"❌ Restart of {env.upper()} not sent: {why}."


def restart_started(env: str) -> str:
    return f"✅ Restart of {env.upper()} sent. The alert follows it; `/health {env}` shows the state."


def restart_finished(env: str, progress: Progress) -> str:
    if progress.phase is Phase.HEALTHY:
        return f"✅ {env.upper()} is healthy again, {format_duration(progress.elapsed_s)} after the restart."
    return f"❌ Restart of {env.upper()}: {phase_words(progress)}."


def restart_interrupted(env: str) -> str:
    return (
        f"⚠️ pgrst-ops stopped while following the restart of {env.upper()}: the restart was sent; "
        "check the project on the dashboard."
    )


def cli_progress_line(env: str, progress: Progress) -> str:
    return f"{env}: restart {phase_words(progress)}"
