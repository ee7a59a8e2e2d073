"""The restart rules (bot/core/restart.py): when a restart is refused, and each phase of following one."""

from __future__ import annotations

import pytest

from bot.core.restart import SETTLE_S, Phase, next_phase, refusal

DEADLINE = 600.0


def refused(**given):
    args = {
        "can_restart": True,
        "status": "ACTIVE_HEALTHY",
        "running": False,
        "protected": False,
        "confirmed_name": None,
        "env": "prod",
        "reason": "stale after deploy",
        **given,
    }
    return refusal(**args)


def test_a_confirmed_restart_with_a_reason_may_go():
    assert refused() is None
    assert refused(protected=True, confirmed_name=" PROD ") is None  # the name, whatever its case and spaces


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ({"can_restart": False}, "no Supabase project with an access token"),
        ({"running": True}, "already being followed"),
        ({"status": "INACTIVE"}, "restore it instead"),
        ({"status": "RESTARTING"}, "already RESTARTING"),
        ({"status": "COMING_UP"}, "already COMING_UP"),
        ({"reason": "  "}, "give a reason"),
        ({"protected": True, "confirmed_name": "dev"}, "type its name (prod)"),
        ({"protected": True, "confirmed_name": None}, "type its name (prod)"),
    ],
)
def test_what_refuses_a_restart(given, words):
    assert words in (refused(**given) or "")


def test_an_unknown_project_status_does_not_refuse():
    assert refused(status=None) is None  # the API may be what is down; the POST says so if it is


def test_a_restart_is_followed_through_its_phases():
    phase = Phase.SENT
    phase = next_phase(phase, "ACTIVE_HEALTHY", False, 1.0, DEADLINE)
    assert phase is Phase.RESTARTING  # PostgREST stopped answering healthy: under way
    phase = next_phase(phase, "RESTARTING", False, 5.0, DEADLINE)
    assert phase is Phase.RESTARTING
    phase = next_phase(phase, "COMING_UP", False, 40.0, DEADLINE)
    assert phase is Phase.COMING_UP
    phase = next_phase(phase, "COMING_UP", True, 80.0, DEADLINE)
    assert phase is Phase.COMING_UP  # PostgREST answers, the project is not up yet
    assert next_phase(phase, "ACTIVE_HEALTHY", True, 95.0, DEADLINE) is Phase.HEALTHY


def test_healthy_right_after_sending_is_not_yet_the_restart():
    assert next_phase(Phase.SENT, "ACTIVE_HEALTHY", True, 1.0, DEADLINE) is Phase.SENT
    assert next_phase(Phase.SENT, "ACTIVE_HEALTHY", True, SETTLE_S, DEADLINE) is Phase.HEALTHY


def test_the_probe_alone_ends_it_when_the_api_cannot_be_read():
    assert next_phase(Phase.COMING_UP, None, True, 60.0, DEADLINE) is Phase.HEALTHY


def test_not_healthy_by_the_deadline_times_out_and_stays_over():
    assert next_phase(Phase.COMING_UP, "COMING_UP", False, DEADLINE, DEADLINE) is Phase.TIMED_OUT
    assert next_phase(Phase.TIMED_OUT, "ACTIVE_HEALTHY", True, DEADLINE + 5, DEADLINE) is Phase.TIMED_OUT
    assert next_phase(Phase.FAILED, "ACTIVE_HEALTHY", True, 1, DEADLINE) is Phase.FAILED
