"""The project's own state (Supabase Management API) and what it does to a verdict, an alert's hold, /status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.core.incident import hold_reason
from bot.core.project import (
    PostgrestSettings,
    ProjectState,
    ServiceHealth,
    carried_transition,
    project_line,
    refine,
    schema_mismatch,
    served_only,
    split_schemas,
    transition_hold,
)
from bot.core.verdicts import Verdict, info
from scripts import message_samples

AT = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)


def project(status: str | None, **kw) -> ProjectState:
    return ProjectState("abcdefghijklmnopqrst", status, fetched_at=AT, **kw)


@pytest.mark.parametrize("status", ["INACTIVE", "PAUSED", "PAUSING"])
def test_a_paused_project_turns_a_timeout_into_project_paused(status: str) -> None:
    report = message_samples.down()
    refined = refine(report, project(status))
    assert refined.verdict is Verdict.PROJECT_PAUSED and not refined.healthy
    assert status in refined.explanation and str(report.verdict) in refined.explanation
    assert "POST /v1/projects/abcdefghijklmnopqrst/restore" in refined.next_step
    assert refined.checks == report.checks  # the evidence stays what the probe saw


@pytest.mark.parametrize("status", ["ACTIVE_HEALTHY", "RESTARTING", "COMING_UP", None])
def test_other_states_leave_the_probe_verdict(status: str | None) -> None:
    report = message_samples.down()
    assert refine(report, project(status)) is report
    assert refine(report, None) is report


def test_a_healthy_probe_is_never_refined_even_if_the_api_says_paused() -> None:
    report = message_samples.healthy("prod")
    assert report.healthy and refine(report, project("INACTIVE")) is report


def test_project_paused_is_a_failure_that_no_reload_fixes() -> None:
    meta = info(Verdict.PROJECT_PAUSED)
    assert meta.emoji == "❌" and not meta.reload_helps and meta.why_no_reload and meta.words == "project paused"
    assert "restore" in meta.next_step.lower()


def test_a_restarting_project_holds_the_alert_until_the_deadline() -> None:
    restarting = project("RESTARTING", transition_since=AT)
    hold = transition_hold(restarting, AT + timedelta(minutes=9), 600)
    assert hold is not None and "RESTARTING" in hold
    assert transition_hold(restarting, AT + timedelta(minutes=10), 600) is None  # deadline passed: post it
    assert transition_hold(project("ACTIVE_HEALTHY"), AT, 600) is None
    assert transition_hold(project("INACTIVE"), AT, 600) is None  # paused: alert at once
    assert transition_hold(restarting, AT, 0) is None  # hold turned off


def test_the_project_hold_comes_after_silences_maintenance_and_the_network() -> None:
    assert hold_reason(None, None, None, AT, "Supabase project is RESTARTING") == "Supabase project is RESTARTING"
    assert hold_reason(None, None, AT, AT, "Supabase project is RESTARTING").startswith("every environment")
    assert hold_reason(None, None, None, AT) is None


def test_the_transition_start_is_kept_while_the_project_stays_in_transition() -> None:
    first = carried_transition(None, "RESTARTING", AT)
    assert first == AT
    earlier = project("RESTARTING", transition_since=AT)
    assert carried_transition(earlier, "COMING_UP", AT + timedelta(minutes=2)) == AT  # restart → coming up: same
    assert carried_transition(earlier, "ACTIVE_HEALTHY", AT) is None
    assert carried_transition(project("ACTIVE_HEALTHY"), "COMING_UP", AT + timedelta(minutes=5)) == AT + timedelta(
        minutes=5
    )


def test_one_line_says_the_status_and_each_service() -> None:
    state = project(
        "ACTIVE_UNHEALTHY",
        services=(
            ServiceHealth("rest", False, "UNHEALTHY", "connection refused"),
            ServiceHealth("db", True, "ACTIVE_HEALTHY"),
            ServiceHealth("pooler", True, "ACTIVE_HEALTHY"),
        ),
    )
    line = project_line(state)
    assert line == "❌ Supabase project ACTIVE_UNHEALTHY · ❌ rest UNHEALTHY · ✅ db · ✅ pooler"
    assert "\n" not in line
    unknown = project_line(ProjectState("abcdefghijklmnopqrst", None, error="401: token rejected"))
    assert unknown is not None and unknown.startswith("⚠️") and "401" in unknown
    assert project_line(None) is None


def test_db_schema_against_exposed_schemas() -> None:
    same = PostgrestSettings(split_schemas("public, storage"))
    assert same.db_schema == ("public", "storage")
    assert schema_mismatch(["public", "storage"], same) is None
    assert schema_mismatch(["public"], None) is None  # unknown: nothing to say
    more = schema_mismatch(["public"], PostgrestSettings(("public", "api")))
    assert more is not None and "not in exposed_schemas: api" in more
    fewer = schema_mismatch(["public", "api"], PostgrestSettings(("public",)))
    assert fewer is not None and "not served by PostgREST: api" in fewer
    order = schema_mismatch(["api", "public"], PostgrestSettings(("public", "api")))
    assert order is not None and "another order" in order
    assert served_only(["public"], PostgrestSettings(("public", "api", "gone"))) == ["api", "gone"]
