"""Restarting a Supabase project on a person's word (pure): when it is refused, and how a restart is followed.

A restart is never automatic and never repeated on its own: each one is asked for by a person with the
environment's reload role, confirmed (a reason, and the environment's name on a protected one), then sent once.
It is then followed phase by phase from the project's status (Management API) and the probe: sent, restarting,
coming up, healthy, or it failed or ran out of time. These rules take what was read and the elapsed time; the
caller (bot/ops/restart.py) does the I/O and keeps the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bot.core.project import HEALTHY, IN_TRANSITION, PAUSED

# Seconds after the restart was accepted before "still healthy, nothing changed" counts as done.
SETTLE_S = 20.0


class Phase(StrEnum):
    SENT = "sent"  # the API accepted the restart; the project has not said it is restarting yet
    RESTARTING = "restarting"
    COMING_UP = "coming up"
    HEALTHY = "healthy"  # the project says ACTIVE_HEALTHY and PostgREST answers healthy
    FAILED = "failed"  # the API refused or failed the restart (nothing more happens)
    TIMED_OUT = "timed out"  # not healthy within the deadline

    @property
    def done(self) -> bool:
        return self in (Phase.HEALTHY, Phase.FAILED, Phase.TIMED_OUT)


@dataclass(frozen=True)
class Progress:
    """Where a restart stands: its phase, seconds since it was sent, the project's last status."""

    phase: Phase
    elapsed_s: float
    status: str | None = None
    detail: str | None = None  # why it failed, or what the probe still sees


def refusal(
    *,
    can_restart: bool,
    status: str | None,
    running: bool,
    protected: bool,
    confirmed_name: str | None,
    env: str,
    reason: str,
) -> str | None:
    """Why this restart must not be sent (None: send it). `confirmed_name` is what the person typed."""
    if not can_restart:
        return (
            f"{env.upper()} has no Supabase project with an access token in the config "
            "(`supabase: {project_ref, access_token}`): restart it from the dashboard"
        )
    if running:
        return f"a restart of {env.upper()} is already being followed: wait for it to finish"
    if status in PAUSED:
        return f"the project is {status}: it is paused, restore it instead of restarting"
    if status in IN_TRANSITION:
        return f"the project is already {status}: wait for it to come up"
    if not reason.strip():
        return "give a reason: it goes in the audit log and on the alert"
    if protected and (confirmed_name or "").strip().lower() != env.lower():
        return f"{env.upper()} is protected: type its name ({env}) to confirm the restart"
    return None


def next_phase(current: Phase, status: str | None, probe_healthy: bool, elapsed_s: float, deadline_s: float) -> Phase:
    """The phase after one look at the project (`status`, None: unknown) and the probe.

    Right after the restart is sent, Supabase may still say ACTIVE_HEALTHY and PostgREST may still answer from
    before: healthy counts only once the restart was seen happening (a transition status or a failing probe),
    or after SETTLE_S without either (a restart so quick nothing saw it)."""
    if current.done:
        return current
    up = probe_healthy and status in (HEALTHY, None)
    if up and (current is not Phase.SENT or elapsed_s >= SETTLE_S):
        return Phase.HEALTHY
    if elapsed_s >= deadline_s:
        return Phase.TIMED_OUT
    if status == "RESTARTING":
        return Phase.RESTARTING
    if status in IN_TRANSITION:
        return Phase.COMING_UP
    if current is Phase.SENT and not probe_healthy:
        return Phase.RESTARTING  # PostgREST is not answering healthy: the restart is under way
    return current
