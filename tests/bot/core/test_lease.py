"""The leader lease's rules without I/O: roles, the fence with an injected clock, the server's release times."""

from __future__ import annotations

from bot.core.lease import LeaseState, LeaseTiming, Role, lock_key, standby_unready

T = LeaseTiming(lease_s=15)


def leader(at: float = 100.0) -> LeaseState:
    state = LeaseState(T)
    state.won(at)
    return state


def test_a_standby_never_passes_the_fence():
    state = LeaseState(T)
    assert state.role is Role.STANDBY and not state.leading(0.0) and state.overdue(0.0) is None


def test_the_winner_leads_until_its_confirmation_is_too_old():
    state = leader(100.0)
    assert state.leading(100.0) and state.leading(109.9)
    assert not state.leading(110.0)  # 2/3 of lease_s after the winning attempt started
    assert state.overdue(110.0) == "no confirmation of the lease for 10 s"


def test_each_confirmation_extends_the_fence_from_when_it_started():
    state = leader(100.0)
    assert state.next_check_at() == 105.0
    state.confirmed(105.0)  # answered at 107: trust counts from the start, the server's idle clock is later
    assert state.leading(114.9) and not state.leading(115.0)
    state.confirmed(101.0)  # a late answer of an older check never moves it back
    assert state.confirmed_at == 105.0 and state.next_check_at() == 110.0


def test_a_lost_lease_stays_lost_and_keeps_its_first_reason():
    state = leader(100.0)
    assert state.lose("the lease check failed: timeout")
    assert not state.lose("the lease's database connection closed")  # not ended twice
    state.confirmed(101.0)
    state.won(101.0)  # a lost replica never leads again in this process
    assert state.role is Role.LOST and not state.leading(101.0)
    assert state.lost_reason == "the lease check failed: timeout"


def test_a_stale_leader_stops_before_the_server_can_release_its_lock():
    """The server drops a session release_s after its last query ended; that query started after the last
    confirmation started, so the fence closes at least lease_s/6 before any standby can win."""
    for lease_s in (2, 3, 15, 600):
        timing = LeaseTiming(lease_s)
        settings = timing.server_settings()
        released_ms = int(settings["idle_session_timeout"])
        assert timing.trusted_s + lease_s / 6 <= released_ms / 1000 <= lease_s
        assert int(settings["tcp_user_timeout"]) == lease_s * 1000
        assert int(settings["tcp_keepalives_idle"]) >= timing.trusted_s  # no keepalive drop while it trusts
        assert timing.check_every_s + timing.check_timeout_s <= timing.trusted_s + 1e-9  # one check can fail


def test_a_silent_leader_is_taken_over_within_lease_s_of_its_last_query():
    timing = LeaseTiming(15)  # the default: one standby attempt a second
    assert timing.server_settings()["idle_session_timeout"] == "14000"
    assert timing.release_s + timing.retry_s <= timing.lease_s


def test_lock_keys_are_stable_64_bit_and_differ_per_group():
    assert lock_key("default") == lock_key("default")
    assert lock_key("default") != lock_key("eu")
    assert all(-(2**63) <= lock_key(g) < 2**63 for g in ("default", "eu", "x" * 100))
    assert lock_key("default") == -9097588570002585231  # another version must elect in the same lock


def test_a_standby_is_ready_while_the_database_answers_its_attempts():
    assert standby_unready(T, 100.0, None, 104.0) is None
    assert standby_unready(T, 100.0, "refused", 106.0) == "standby: incident store unreachable (refused)"
    assert standby_unready(T, None, None, 0.0) == "standby: incident store unreachable (no answer yet)"
