"""The incident state machine without I/O: each transition on its own, with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.config import MaintenanceWindow
from bot.core.classify import CheckKind
from bot.core.incident import (
    EnvState,
    Next,
    OpenAlert,
    Policy,
    chores,
    decide,
    hold_reason,
    record_report,
    resolution_for,
    restart_asked,
    unreachable_everywhere,
)
from bot.core.incidents import (
    AFTER_RESTART,
    AUTO_RECOVERED,
    MANUAL_RELOAD,
    RECOVERED_BY_ITSELF,
    ActiveWindow,
    FlapDetector,
)
from bot.core.records import Silence
from bot.core.report import CheckResult, EnvReport, summarise
from bot.core.verdicts import Verdict

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
POLICY = Policy(failure_threshold=2, success_threshold=2)


def report(verdict: Verdict, at: datetime = T0, *, status: int | None = 404) -> EnvReport:
    healthy = verdict is Verdict.HEALTHY
    check = CheckResult(
        name="data:orders",
        label="orders",
        kind=CheckKind.DATA,
        method="GET",
        url="http://api/orders",
        status=200 if healthy else status,
        code=None if healthy else "PGRST205",
        message=None,
        detail="ok" if healthy else "not in the schema cache",
        retry_after=None,
        latency_ms=5.0,
        server=None,
        verdict=verdict,
        auth_limited=False,
    )
    return summarise("prod", [check], at, 5.0)


def state(**kw: object) -> EnvState:
    return EnvState("prod", flaps=FlapDetector(flips=4, window_s=600), **kw)  # type: ignore[arg-type]


def alert(**kw: object) -> OpenAlert:
    return OpenAlert(T0, Verdict.STALE_SCHEMA_CACHE, {"message_id": 1, "channel_id": 2}, {}, **kw)  # type: ignore[arg-type]


def observe(s: EnvState, verdict: Verdict, at: datetime = T0) -> Next:
    r = report(verdict, at)
    record_report(s, r)
    assert s.flaps is not None
    s.flaps.record(r.healthy, at)
    return decide(s, r, at, POLICY).next


# -- streaks and the threshold ---------------------------------------------------------------------
def test_one_failure_below_the_threshold_waits():
    assert observe(state(), Verdict.STALE_SCHEMA_CACHE) is Next.WAIT


def test_the_threshold_of_failures_acts():
    s = state()
    observe(s, Verdict.STALE_SCHEMA_CACHE)
    assert observe(s, Verdict.STALE_SCHEMA_CACHE, T0 + timedelta(seconds=60)) is Next.ACT


def test_an_open_incident_is_not_acted_on_again():
    s = state(alert=alert())
    observe(s, Verdict.STALE_SCHEMA_CACHE)
    assert observe(s, Verdict.STALE_SCHEMA_CACHE, T0 + timedelta(seconds=60)) is Next.WAIT


def test_a_healthy_check_resets_the_failure_streak():
    s = state()
    observe(s, Verdict.STALE_SCHEMA_CACHE)
    observe(s, Verdict.HEALTHY, T0 + timedelta(seconds=60))
    assert (s.fail_streak, s.ok_streak) == (0, 1)
    assert observe(s, Verdict.STALE_SCHEMA_CACHE, T0 + timedelta(seconds=120)) is Next.WAIT


def test_the_outage_starts_at_its_first_failing_check():
    s = state()
    observe(s, Verdict.STALE_SCHEMA_CACHE, T0)
    observe(s, Verdict.STALE_SCHEMA_CACHE, T0 + timedelta(seconds=60))
    assert s.unhealthy_since == T0 and s.since == T0


def test_a_verdict_change_is_reported_once():
    s = state()
    assert record_report(s, report(Verdict.HEALTHY)) is True
    assert record_report(s, report(Verdict.HEALTHY, T0 + timedelta(seconds=1))) is False


# -- resolving ------------------------------------------------------------------------------------
def test_healthy_without_an_incident_waits():
    assert observe(state(), Verdict.HEALTHY) is Next.WAIT


def test_an_incident_resolves_after_the_success_threshold():
    s = state(alert=alert())
    assert observe(s, Verdict.HEALTHY, T0) is Next.WAIT
    assert observe(s, Verdict.HEALTHY, T0 + timedelta(seconds=60)) is Next.RESOLVE


def test_a_restored_incident_resolves_after_one_good_check_as_recovered_by_itself():
    s = state(alert=alert(restored=True))
    r = report(Verdict.HEALTHY)
    record_report(s, r)
    decision = decide(s, r, T0, POLICY)
    assert decision.next is Next.RESOLVE and decision.resolution == RECOVERED_BY_ITSELF


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"resolution_hint": AUTO_RECOVERED}, AUTO_RECOVERED),
        ({"resolution_hint": MANUAL_RELOAD}, MANUAL_RELOAD),
        ({"restart_asked": True}, AFTER_RESTART),
        ({"flapping": True}, RECOVERED_BY_ITSELF),
        ({}, RECOVERED_BY_ITSELF),
    ],
    ids=["auto reload", "manual reload", "after the restart it asked for", "flapping", "by itself"],
)
def test_the_resolution_names_what_fixed_it(kw, expected):
    assert resolution_for(alert(**kw), ok_streak=2, success_threshold=2, flaps_stable=True) == expected


def test_a_flapping_incident_stays_open_until_the_flips_stop():
    assert resolution_for(alert(flapping=True), ok_streak=5, success_threshold=2, flaps_stable=False) is None


# -- flapping -------------------------------------------------------------------------------------
def test_flips_within_the_window_open_one_flapping_alert():
    s = state()
    verdicts = [Verdict.HEALTHY, Verdict.STALE_SCHEMA_CACHE] * 3
    nexts = [observe(s, v, T0 + timedelta(seconds=10 * i)) for i, v in enumerate(verdicts)]
    assert Next.FLAPPING in nexts


def test_an_alert_already_flapping_is_not_opened_again():
    s = state(alert=alert(flapping=True))
    verdicts = [Verdict.HEALTHY, Verdict.STALE_SCHEMA_CACHE] * 3
    nexts = [observe(s, v, T0 + timedelta(seconds=10 * i)) for i, v in enumerate(verdicts)]
    assert Next.FLAPPING not in nexts


# -- holds ----------------------------------------------------------------------------------------
def silence(until: datetime) -> Silence:
    return Silence("prod", until, "migration", "alice", T0)


def test_an_active_silence_holds_the_alert_and_names_who():
    assert hold_reason(silence(T0 + timedelta(hours=1)), None, None, T0) == "silenced by alice: migration"


def test_an_expired_silence_holds_nothing():
    assert hold_reason(silence(T0), None, None, T0) is None


def test_a_maintenance_window_holds_the_alert():
    window = ActiveWindow(MaintenanceWindow(weekday="tue", start="03:00", duration_min=60), T0, T0 + timedelta(hours=1))
    assert hold_reason(None, window, None, T0) == "maintenance window: scheduled maintenance"


def test_the_bots_own_network_loss_holds_the_alert():
    assert "lost its network" in (hold_reason(None, None, T0, T0) or "")


def test_network_loss_needs_every_environment_without_any_answer():
    nothing = report(Verdict.TIMEOUT, status=None)
    assert unreachable_everywhere([nothing, nothing])
    assert not unreachable_everywhere([nothing, report(Verdict.TIMEOUT, status=504)])
    assert not unreachable_everywhere([nothing, report(Verdict.HEALTHY)])


# -- chores after a check ---------------------------------------------------------------------------
def run_chores(s: EnvState, *, now: datetime = T0, sil: Silence | None = None, interval: float = 900) -> object:
    return chores(s, silence=sil, window=None, network_down_since=None, reminder_interval_s=interval, now=now)


def test_a_held_alert_is_released_when_its_silence_expires():
    due = run_chores(state(alert=alert(held=True)), sil=silence(T0))
    assert due.silence_expired and due.release_held  # type: ignore[attr-defined]


def test_a_held_alert_stays_held_while_silenced():
    due = run_chores(state(alert=alert(held=True)), sil=silence(T0 + timedelta(hours=1)))
    assert not due.release_held and not due.remind  # type: ignore[attr-defined]


def test_a_reminder_is_due_after_its_interval_and_not_before():
    s = state(alert=alert())
    assert not run_chores(s, now=T0 + timedelta(seconds=899)).remind  # type: ignore[attr-defined]
    assert run_chores(s, now=T0 + timedelta(seconds=900)).remind  # type: ignore[attr-defined]


def test_an_acknowledged_incident_gets_no_reminder():
    s = state(alert=alert(acknowledged_by="alice"))
    assert not run_chores(s, now=T0 + timedelta(hours=2)).remind  # type: ignore[attr-defined]


def test_reminders_off_means_none():
    assert not run_chores(state(alert=alert()), now=T0 + timedelta(days=1), interval=0).remind  # type: ignore[attr-defined]


def test_maintenance_start_and_end_are_each_said_once():
    window = ActiveWindow(MaintenanceWindow(weekday="tue", start="03:00", duration_min=60), T0, T0 + timedelta(hours=1))
    s = state()
    started = chores(s, silence=None, window=window, network_down_since=None, reminder_interval_s=0, now=T0)
    assert started.maintenance_started and not started.maintenance_ended
    s.in_maintenance = True
    again = chores(s, silence=None, window=window, network_down_since=None, reminder_interval_s=0, now=T0)
    assert not again.maintenance_started
    over = chores(s, silence=None, window=None, network_down_since=None, reminder_interval_s=0, now=T0)
    assert over.maintenance_ended


# -- what the alert asks for ------------------------------------------------------------------------
def test_a_named_cause_asks_for_its_fix_not_a_restart():
    assert not restart_asked(after_recovery=True, verdict=Verdict.SCHEMA_CACHE_UNAVAILABLE, cause_found=True)


def test_a_failed_reload_without_a_cause_asks_for_a_restart():
    assert restart_asked(after_recovery=True, verdict=Verdict.STALE_SCHEMA_CACHE, cause_found=False)


def test_a_reloadable_fault_before_any_reload_asks_for_the_reload_first():
    assert not restart_asked(after_recovery=False, verdict=Verdict.STALE_SCHEMA_CACHE, cause_found=False)
