"""The recovery's rules without I/O: whether a reload helps, the pre-flight, the cap, the schedule, the result."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta

import pytest

from bot.config import RecoveryConfig
from bot.core.classify import CheckKind
from bot.core.diagnosis import Diagnosis, Finding
from bot.core.listener import ListenerState, ListenerStatus
from bot.core.recovery import (
    MAX_RECHECKS,
    RELATIVE_PACE,
    Outcome,
    PollSchedule,
    RecoveryResult,
    ReloadWindow,
    build_result,
    cap_reason,
    connection_failed_reason,
    decide_reload,
    done_message,
    drift_preflight_refusal,
    drift_refusal,
    explain_escalation,
    no_dsn_reason,
    no_reload_reason,
    preflight_refusal,
    recheck_deadline_s,
    recheck_plan,
    timed_out_reason,
    turned_unfixable,
    turned_unfixable_reason,
    unfixable_streak,
)
from bot.core.report import CheckResult, EnvReport, summarise
from bot.core.verdicts import Verdict

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CONFIG = RecoveryConfig()
LOCK = Finding("lock_held", "a migration holds an exclusive lock", "PID 7 holds it", "cancel it", blocks_reload=True)
NOTE = Finding("lock_timeout", "a note", "evidence", "fix")


def check(verdict: Verdict, *, latency_ms: float = 12.0, kind: CheckKind = CheckKind.DATA) -> CheckResult:
    healthy = verdict is Verdict.HEALTHY
    return CheckResult(
        name="data:orders",
        label="orders",
        kind=kind,
        method="GET",
        url="http://api/orders",
        status=200 if healthy else 404,
        code=None if healthy else "PGRST205",
        message=None,
        detail="ok" if healthy else "not in the schema cache",
        retry_after=None,
        latency_ms=latency_ms,
        server=None,
        verdict=verdict,
        auth_limited=False,
    )


def report(verdict: Verdict, *, latency_ms: float = 12.0) -> EnvReport:
    return summarise("prod", [check(verdict, latency_ms=latency_ms)], T0, 5.0)


def diagnosis(verdict: Verdict, *findings: Finding) -> Diagnosis:
    return Diagnosis("prod", report(verdict), findings)


def decide(verdict: Verdict, *findings: Finding, reloads: int = 0, force: bool = False):
    d = diagnosis(verdict, *findings)
    return decide_reload(d.report, d, reloads=reloads, config=CONFIG, force=force, actor="alice")


# -- whether a reload can help --------------------------------------------------------------------
def test_a_stale_cache_is_one_a_reload_can_help():
    assert no_reload_reason(report(Verdict.STALE_SCHEMA_CACHE)) is None


@pytest.mark.parametrize(
    "verdict", [Verdict.MISSING_IN_DATABASE, Verdict.NOT_GRANTED, Verdict.SCHEMA_CACHE_UNAVAILABLE]
)
def test_a_fault_no_reload_fixes_says_so_with_the_verdict(verdict):
    reason = no_reload_reason(report(verdict))
    assert reason is not None and reason.startswith(f"{verdict}: a reload cannot help (")


def test_no_reload_reason_names_the_cause_found():
    missing = Finding("missing_in_database", "table missing", "public.orders does not exist", "apply the migration")
    reason = no_reload_reason(report(Verdict.MISSING_IN_DATABASE), diagnosis(Verdict.MISSING_IN_DATABASE, missing))
    assert reason is not None and reason.endswith(
        ". Cause: table missing: public.orders does not exist. Fix: apply the migration"
    )


def test_without_a_dsn_a_reloadable_fault_asks_for_one():
    assert no_dsn_reason(report(Verdict.STALE_SCHEMA_CACHE), "prod") == (
        "no database DSN configured for prod: cannot send the reload NOTIFY"
    )


def test_without_a_dsn_an_unreloadable_fault_says_a_reload_would_not_help():
    assert "a reload cannot help" in no_dsn_reason(report(Verdict.NOT_GRANTED), "prod")


# -- the decision ---------------------------------------------------------------------------------
def test_a_refined_healthy_report_needs_no_reload():
    decision = decide(Verdict.HEALTHY)
    assert not decision.reload and decision.outcome is Outcome.ALREADY_HEALTHY and decision.step is None


def test_a_stale_cache_without_blockers_is_reloaded():
    decision = decide(Verdict.STALE_SCHEMA_CACHE, NOTE)
    assert decision.reload and decision.step is None and not decision.refused


def test_an_unreloadable_fault_escalates_with_a_decision_step():
    decision = decide(Verdict.MISSING_IN_DATABASE)
    assert not decision.reload and decision.outcome is Outcome.ESCALATED
    assert decision.step == f"no reload: {decision.reason}"


def test_preflight_blockers_refuse_the_notify_with_the_force_hint():
    decision = decide(Verdict.STALE_SCHEMA_CACHE, LOCK)
    assert not decision.reload and decision.refused and decision.outcome is Outcome.ESCALATED
    assert decision.reason == decision.step
    assert decision.reason.startswith("pre-flight refused the NOTIFY: " + LOCK.line())
    assert "/reload prod force:true" in decision.reason and "pgrst-ops fix --env prod --force" in decision.reason


def test_force_reloads_despite_blockers_and_records_who_forced_it():
    decision = decide(Verdict.STALE_SCHEMA_CACHE, LOCK, force=True)
    assert decision.reload and decision.step == f"forced by alice despite: {LOCK.title}"


def test_findings_that_do_not_block_never_refuse():
    assert preflight_refusal([], force=False, env="prod") is None


def test_the_cap_refuses_before_the_preflight_is_asked():
    decision = decide(Verdict.STALE_SCHEMA_CACHE, LOCK, reloads=CONFIG.max_reloads)
    assert not decision.reload and not decision.refused and decision.step is None
    assert decision.reason is not None and decision.reason.startswith(
        "reload limit reached: 3 reloads in the last 10 min"
    )


# -- the reload cap -------------------------------------------------------------------------------
def test_cap_allows_reloads_below_the_limit_and_refuses_at_it():
    assert cap_reason(CONFIG.max_reloads - 1, CONFIG, "prod") is None
    assert cap_reason(CONFIG.max_reloads, CONFIG, "prod") is not None


def test_reload_window_counts_only_reloads_inside_the_window():
    window = ReloadWindow(600)
    for at in (0.0, 100.0, 500.0):
        window.record(at)
    assert window.count(500.0) == 3
    assert window.count(650.0) == 2  # the reload at 0 s is older than 600 s
    assert window.count(1101.0) == 0


def test_reload_window_keeps_a_reload_exactly_window_seconds_old():
    window = ReloadWindow(600)
    window.record(0.0)
    assert window.count(600.0) == 1


# -- the re-check schedule and deadline -----------------------------------------------------------
def test_deadline_is_retries_times_delay_with_the_config_as_default():
    assert recheck_deadline_s(CONFIG) == CONFIG.retries * CONFIG.delay_s
    assert recheck_deadline_s(CONFIG, retries=2, delay_s=0.5) == 1.0
    assert recheck_deadline_s(CONFIG, retries=0) == CONFIG.retries * CONFIG.delay_s  # 0 means unset


def test_schedule_polls_densely_while_small_schemas_reload():
    schedule = PollSchedule(deadline_s=9.0)
    # PostgREST reloads 20 tables in ~70 ms: a 50 ms first wait alone was most of that again.
    assert schedule.wait_s(elapsed_s=0.0, rechecks=0) == pytest.approx(0.005)
    assert schedule.pause_s(0.19) == pytest.approx(0.005)


def test_schedule_then_pauses_a_share_of_the_time_elapsed_up_to_the_maximum():
    schedule = PollSchedule(deadline_s=60.0, max_s=1.0)
    assert schedule.pause_s(0.8) == pytest.approx(0.8 * schedule.pace)  # seen at most ~2% late
    assert schedule.pause_s(1.5) <= 0.05  # 5,000 tables on a busy machine (reload ~1.5 s): within 50 ms of it
    assert schedule.pause_s(50.0) == 1.0
    pauses = [schedule.pause_s(t / 10) for t in range(600)]
    assert pauses == sorted(pauses)


def test_schedule_of_config_reads_the_maximum_pause_in_milliseconds():
    schedule = PollSchedule.of(RecoveryConfig(max_backoff_ms=2000), deadline_s=3.0)
    assert (schedule.max_s, schedule.deadline_s) == (2.0, 3.0)


def test_schedule_waits_at_most_until_the_deadline():
    schedule = PollSchedule(deadline_s=3.0)
    assert schedule.wait_s(elapsed_s=0.0, rechecks=0) == pytest.approx(0.005)
    assert schedule.wait_s(elapsed_s=2.99, rechecks=0) == pytest.approx(0.01)  # not the 0.12 s pause


def test_schedule_rechecks_once_even_past_the_deadline_then_stops():
    schedule = PollSchedule(deadline_s=3.0)
    assert schedule.wait_s(elapsed_s=5.0, rechecks=0) == 0.0
    assert schedule.wait_s(elapsed_s=2.99, rechecks=1) is None


def test_schedule_stops_after_its_maximum_number_of_rechecks():
    schedule = PollSchedule(deadline_s=600.0, max_rechecks=10)
    assert schedule.wait_s(elapsed_s=0.1, rechecks=9) is not None
    assert schedule.wait_s(elapsed_s=0.1, rechecks=10) is None


def simulate(schedule: PollSchedule, cost_s: float = 0.0) -> list[float]:
    """The re-check times a whole budget gives when every re-check takes `cost_s`."""
    elapsed, at = 0.0, []
    while (wait := schedule.wait_s(elapsed, len(at))) is not None:
        elapsed += wait + cost_s
        at.append(round(elapsed, 4))
    return at


def test_simulated_recheck_times_are_dense_first_then_spaced_out_and_bounded():
    at = simulate(PollSchedule(deadline_s=9.0, max_s=1.0))
    gaps = [b - a for a, b in itertools.pairwise(at)]
    assert len([t for t in at if t <= 0.2]) == 40  # every 5 ms while a small schema reloads
    assert max(gaps) <= 9.0 * RELATIVE_PACE + 1e-9 and at[-1] <= 9.0
    assert len(at) <= MAX_RECHECKS and len(at) < 250  # the whole 9 s budget: ~230 cheap requests per object
    # Wherever the reload lands after the dense window, the next re-check follows within ~2% of the time.
    for landed in (0.22, 0.7, 0.86, 2.0):
        seen = next(t for t in at if t >= landed)
        assert seen - landed <= max(0.005, landed * RELATIVE_PACE) + 1e-9


def test_the_default_budget_never_exceeds_the_recheck_bound():
    at = simulate(PollSchedule(deadline_s=600.0, max_s=0.01))
    assert len(at) == MAX_RECHECKS


# -- which checks to re-run after the NOTIFY ------------------------------------------------------
def named(name: str, kind: CheckKind, verdict: Verdict) -> CheckResult:
    return dataclasses.replace(check(verdict, kind=kind), name=name)


def whole(*checks: CheckResult) -> EnvReport:
    return summarise("prod", list(checks), T0, 5.0)


HEALTHY_BASE = (
    named("live", CheckKind.LIVE, Verdict.HEALTHY),
    named("ready", CheckKind.READY, Verdict.HEALTHY),
    named("metrics", CheckKind.METRICS, Verdict.HEALTHY),
    named("root", CheckKind.ROOT, Verdict.HEALTHY),
    named("data:public.judgments", CheckKind.DATA, Verdict.HEALTHY),
    named("cache:public.judgments", CheckKind.CACHE, Verdict.HEALTHY),
)


def test_rechecks_look_only_at_the_stale_objects_never_the_root():
    stale = whole(
        *HEALTHY_BASE,
        named("data:public.orders", CheckKind.DATA, Verdict.HEALTHY),  # 12.x: GET still answers 200
        named("cache:public.orders", CheckKind.CACHE, Verdict.STALE_SCHEMA_CACHE),
        named("columns:public.judgments", CheckKind.COLUMNS, Verdict.STALE_SCHEMA_CACHE),
        named("rpc:public.fresh()", CheckKind.RPC, Verdict.STALE_SCHEMA_CACHE),
    )
    assert recheck_plan(stale) == {"cache:public.orders", "columns:public.judgments", "rpc:public.fresh()"}


def test_a_stale_data_check_is_rechecked_when_it_is_what_saw_the_object():
    stale = whole(*HEALTHY_BASE, named("data:public.orders", CheckKind.DATA, Verdict.STALE_SCHEMA_CACHE))
    assert recheck_plan(stale) == {"data:public.orders"}


def test_with_nothing_specific_stale_one_cheap_check_stands_in_not_the_root():
    down = [dataclasses.replace(c, verdict=Verdict.TIMEOUT) for c in HEALTHY_BASE if c.kind is not CheckKind.METRICS]
    assert recheck_plan(whole(*down)) == {"cache:public.judgments"}
    no_tables = [c for c in down if c.kind not in (CheckKind.DATA, CheckKind.CACHE)]
    assert recheck_plan(whole(*no_tables)) == {"ready"}
    # A failing check is preferred over a cheaper healthy one: it is what has to come back.
    mixed = whole(*HEALTHY_BASE[:4], named("data:public.orders", CheckKind.DATA, Verdict.UNEXPECTED))
    assert recheck_plan(mixed) == {"data:public.orders"}


def test_a_report_without_checks_plans_the_whole_probe():
    assert recheck_plan(whole()) == frozenset()


def test_two_unfixable_rechecks_in_a_row_are_a_streak_a_reloadable_one_resets_it():
    streak = unfixable_streak(0, Verdict.SCHEMA_CACHE_UNAVAILABLE)
    assert streak == 1 and unfixable_streak(streak, Verdict.SCHEMA_CACHE_UNAVAILABLE) == 2
    assert unfixable_streak(streak, Verdict.STALE_SCHEMA_CACHE) == 0


def test_dense_rechecks_give_up_only_after_the_fault_lasted():
    assert not turned_unfixable(2, unfixable_for_s=0.005)  # two answers 5 ms apart: maybe a moment
    assert not turned_unfixable(1, unfixable_for_s=1.0)
    assert turned_unfixable(2, unfixable_for_s=0.1) and turned_unfixable(20, unfixable_for_s=0.2)


def test_turning_unavailable_after_the_notify_suspects_a_role_setting():
    assert "may have applied a bad role setting" in turned_unfixable_reason(Verdict.SCHEMA_CACHE_UNAVAILABLE)
    assert "role setting" not in turned_unfixable_reason(Verdict.NOT_GRANTED)


def test_timed_out_reason_names_the_budget_and_the_rechecks():
    assert timed_out_reason(Verdict.STALE_SCHEMA_CACHE, 9.0, 14) == (
        "still stale_schema_cache 9 s after the NOTIFY (14 re-checks): the reload did not take effect"
    )


# -- drift reloads and connection trouble ---------------------------------------------------------
def test_drift_reload_refusals_in_order():
    ok = {"has_dsn": True, "running": False, "reloads": 0, "config": CONFIG}
    assert drift_refusal(**ok) is None
    assert drift_refusal(**{**ok, "has_dsn": False, "running": True}) == "no database DSN: cannot send the reload"
    assert drift_refusal(**{**ok, "running": True}) == "a recovery of this environment is already running"
    assert drift_refusal(**{**ok, "reloads": 3}) == "reload limit reached (3 in the window)"


def test_a_drift_reload_is_refused_by_any_blocker():
    assert drift_preflight_refusal([]) is None
    assert drift_preflight_refusal([LOCK]) == "pre-flight refused the NOTIFY: " + LOCK.line()


def test_connection_failure_says_whether_the_notify_went_out():
    assert connection_failed_reason(OSError("reset"), notified=False) == "cannot send the reload: reset"
    assert "after the NOTIFY" in connection_failed_reason(OSError("reset"), notified=True)


# -- the result -----------------------------------------------------------------------------------
def result(outcome: Outcome, after: EnvReport, **kw) -> RecoveryResult:
    return build_result(
        CONFIG,
        outcome,
        env="prod",
        before=report(Verdict.STALE_SCHEMA_CACHE),
        after=after,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=1),
        actor="alice",
        **kw,
    )


def test_recovered_result_carries_the_notify_the_reload_time_and_the_api_latency():
    r = result(Outcome.RECOVERED, report(Verdict.HEALTHY, latency_ms=30.0), notify_ms=1.5, tth_ms=180.0, attempts=4)
    assert r.ok and r.notify_sent and r.time_to_healthy_ms == 180.0 and r.attempts == 4
    assert r.verdict_before is Verdict.STALE_SCHEMA_CACHE and r.verdict_after is Verdict.HEALTHY
    assert [(k.key, k.value_ms) for k in r.kpis] == [("notify", 1.5), ("reload", 180.0), ("api_after_reload", 30.0)]
    assert not r.forced and not r.refused_by_preflight


def test_a_recovered_drift_reload_without_a_recheck_has_no_api_latency():
    r = result(Outcome.RECOVERED, report(Verdict.STALE_SCHEMA_CACHE), notify_ms=1.5)
    assert [k.key for k in r.kpis] == ["notify"]


def test_escalated_result_without_a_notify_is_not_ok_and_has_no_kpis():
    r = result(Outcome.ESCALATED, report(Verdict.STALE_SCHEMA_CACHE), reason="pre-flight refused", refused=True)
    assert not r.ok and not r.notify_sent and r.refused_by_preflight and r.kpis == ()
    assert r.to_json()["reason"] == "pre-flight refused"


def test_already_healthy_result_is_ok_and_sent_nothing():
    r = result(Outcome.ALREADY_HEALTHY, report(Verdict.HEALTHY))
    assert r.ok and not r.notify_sent and r.kpis == () and r.steps == ()


def test_forced_only_when_the_forced_notify_was_sent():
    assert result(Outcome.RECOVERED, report(Verdict.HEALTHY), notify_ms=1.0, tth_ms=5.0, force=True).forced
    assert not result(Outcome.ESCALATED, report(Verdict.STALE_SCHEMA_CACHE), force=True).forced


def test_done_message_per_outcome():
    assert done_message(Outcome.ESCALATED, "cap", None, 0) == "escalated: cap"
    assert done_message(Outcome.RECOVERED, None, 181.4, 3) == "healthy 181 ms after the NOTIFY (3 re-checks)"
    assert done_message(Outcome.ALREADY_HEALTHY, None, None, 0) == "already healthy: nothing to do"


def test_an_escalation_still_stale_after_the_notify_says_the_reload_was_not_applied():
    listener = ListenerStatus(ListenerState.ABSENT, 0, 1, "nobody listens")
    after = Diagnosis("prod", report(Verdict.STALE_SCHEMA_CACHE), (), listener)
    escalated = result(Outcome.ESCALATED, report(Verdict.STALE_SCHEMA_CACHE), reason="still stale", notify_ms=1.0)
    explained = explain_escalation(escalated, after, "pgrst")
    assert explained.diagnosis is not None and explained.diagnosis.findings[0].cause == "reload_not_applied"
    assert "(listener: absent)" in explained.diagnosis.findings[0].evidence
    assert "listens on 'pgrst'" in explained.diagnosis.findings[0].fix
    assert explained.reason is not None and explained.reason.startswith(
        "still stale. Cause: the reload was not applied"
    )


def test_an_escalation_whose_diagnosis_failed_is_left_as_it_was():
    escalated = result(Outcome.ESCALATED, report(Verdict.STALE_SCHEMA_CACHE), reason="still stale")
    failed = Diagnosis("prod", report(Verdict.STALE_SCHEMA_CACHE), error="connection refused")
    assert explain_escalation(escalated, failed, "pgrst") is escalated
