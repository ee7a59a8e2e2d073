"""The leader lease on a real PostgreSQL: one winner, takeover when the leader's session ends, the fence at once."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import pytest
from pydantic import SecretStr

from bot.config import ConfigError
from bot.core.lease import LeaseTiming, Role
from bot.postgres.lease import LeaderLease
from tests.conftest import build_settings
from tests.support.pgstack import made_up_password, url_dsn

TIMING = LeaseTiming(lease_s=3, retry_s=0.1)


@pytest.fixture
def group() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"  # its own lock key: tests never elect against each other


def lease(pg_cluster, group: str, timing: LeaseTiming = TIMING) -> LeaderLease:
    return LeaderLease(SecretStr(pg_cluster.dsn("postgres")), timing, group)


async def wait_until(predicate, within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def backend_pid(pg_cluster, group_lease: LeaderLease) -> int:
    conn = await asyncpg.connect(pg_cluster.dsn("postgres"))
    try:
        return int(
            await conn.fetchval(
                "select pid from pg_locks where locktype = 'advisory' and granted"
                " and ((classid::bigint << 32) | objid::bigint) = $1",
                group_lease.key,
            )
        )
    finally:
        await conn.close()


async def terminate(pg_cluster, pid: int) -> None:
    conn = await asyncpg.connect(pg_cluster.dsn("postgres"))
    try:
        assert await conn.fetchval("select pg_terminate_backend($1)", pid)
    finally:
        await conn.close()


async def test_of_two_replicas_only_one_wins_and_the_other_waits(pg_cluster, group):
    first, second = lease(pg_cluster, group), lease(pg_cluster, group)
    stop = asyncio.Event()
    try:
        assert await first.try_once()
        assert not await second.try_once() and not await second.try_once()
        assert first.leading() and not second.leading()
        assert (first.role, second.role) == (Role.LEADER, Role.STANDBY)
        assert second.unready() is None  # a standby whose database answers is ready
        assert first.state.epoch is not None
        standby = asyncio.create_task(second.acquire(stop))
        await asyncio.sleep(0.5)  # several attempts of the standby (retry_s 0.1) while the leader holds it
        assert not standby.done() and await first.confirm()
        await first.close()  # a clean stop releases the lock at once
        assert await asyncio.wait_for(standby, 5)
        assert second.leading() and second.state.epoch == first.state.epoch + 1  # a new generation
    finally:
        stop.set()
        await first.close()
        await second.close()


async def test_terminating_the_leaders_backend_fences_it_at_once_and_the_standby_takes_over(pg_cluster, group):
    first, second = lease(pg_cluster, group), lease(pg_cluster, group)
    stop = asyncio.Event()
    try:
        assert await first.try_once()
        holding = asyncio.create_task(first.hold())
        standby = asyncio.create_task(second.acquire(stop))
        pid = await backend_pid(pg_cluster, first)
        killed_at = time.monotonic()
        await terminate(pg_cluster, pid)
        # the connection's end is noticed as it happens, not at the next check (lease_s/3 = 1 s away)
        await wait_until(lambda: not first.leading(), within_s=0.9)
        fenced_s = time.monotonic() - killed_at
        assert await asyncio.wait_for(standby, 5) and second.leading()
        takeover_s = time.monotonic() - killed_at
        print(f"\nbackend terminated: fenced after {fenced_s * 1000:.0f} ms, standby leads after {takeover_s:.2f} s")
        reason = await asyncio.wait_for(holding, 5)
        assert first.role is Role.LOST and first.lost.is_set()
        assert reason == "the lease's database connection closed"
        assert fenced_s < 0.9 and takeover_s < TIMING.lease_s, (fenced_s, takeover_s)
        assert not await first.try_once()  # a lost replica never leads again in this process
    finally:
        stop.set()
        await first.close()
        await second.close()


async def test_the_server_releases_a_silent_leaders_lock_after_release_s(pg_cluster, group):
    """A leader that stopped checking (a frozen process, a cut network) keeps its TCP session; the server's
    idle_session_timeout ends it, and the fence had closed before."""
    first, second = lease(pg_cluster, group), lease(pg_cluster, group)
    stop = asyncio.Event()
    try:
        assert await first.try_once()  # and never confirms again: hold() is not running
        won_at = time.monotonic()
        standby = asyncio.create_task(second.acquire(stop))
        assert await asyncio.wait_for(standby, TIMING.lease_s + 5)
        takeover_s = time.monotonic() - won_at
        print(f"\ntakeover of a silent leader (lease_s {TIMING.lease_s:g}): {takeover_s:.2f} s after its last query")
        assert not first.leading()  # its own fence closed at 2/3 of lease_s, before the takeover
        assert TIMING.release_s <= takeover_s < TIMING.lease_s + 1.0, takeover_s
    finally:
        stop.set()
        await first.close()
        await second.close()


async def test_a_standby_with_an_unreachable_database_is_not_ready_and_says_why(pg_cluster, group):
    password = made_up_password()
    dead = LeaderLease(SecretStr(url_dsn("u", password, "127.0.0.1", 9, "db")), TIMING, group)
    assert not await dead.try_once()
    reason = dead.unready()
    assert reason is not None and reason.startswith("standby: incident store unreachable (")
    assert "127.0.0.1:9" in reason and password not in reason


async def test_two_leader_groups_on_one_database_each_elect_their_own_leader(pg_cluster, group):
    settings = build_settings({"dev": {"rest_url": "http://127.0.0.1:9"}}, incidents={"leader_group": f"{group}-eu"})
    eu, eu_too = lease(pg_cluster, settings.incidents.leader_group), lease(pg_cluster, f"{group}-eu")
    us = lease(pg_cluster, f"{group}-us")
    try:
        assert await eu.try_once() and await us.try_once()  # different keys: both lead
        assert not await eu_too.try_once()  # the same group: one leader
        assert eu.key != us.key and eu.state.epoch == us.state.epoch == 1  # each group counts its own epochs
    finally:
        for each in (eu, eu_too, us):
            await each.close()


def test_leader_group_defaults_to_default_and_takes_a_plain_name():
    assert build_settings({"dev": {"rest_url": "http://127.0.0.1:9"}}).incidents.leader_group == "default"
    with pytest.raises(ConfigError, match=r"incidents.leader_group: a plain name: letters, digits"):
        build_settings({"dev": {"rest_url": "http://127.0.0.1:9"}}, incidents={"leader_group": "eu prod"})
