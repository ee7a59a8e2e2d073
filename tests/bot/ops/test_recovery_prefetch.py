"""The recovery opens its database connection while the first probe runs: unused, it is closed, and a database
that cannot be reached matters only when the connection is needed (real PostgreSQL + PostgREST)."""

from __future__ import annotations

import asyncio
import gc
import time
import warnings

from aiohttp import web

from bot.core.recovery import Outcome
from bot.ops.recovery import RecoveryOperator
from bot.postgrest.probe import Prober
from bot.postgrest.requests import make_http_client
from tests.conftest import build_settings, targets_for
from tests.support.localhttp import LocalServer
from tests.support.pgstack import made_up_password, url_dsn


async def recover(stack, environ=None, **env_overrides):
    settings = build_settings({"env": stack.env_config(**env_overrides)})
    (target,) = targets_for(settings, {**stack.env_vars, **(environ or {})}, need_dsn=True)
    async with make_http_client() as client:
        return await RecoveryOperator(Prober(client), settings.recovery).recover(target)


def our_sessions(stack) -> int:
    """Sessions the operator's role (ops) holds in the stack's database, as PostgreSQL lists them."""
    return int(stack.sql(f"SELECT count(*) FROM pg_stat_activity WHERE usename = 'ops' AND datname = '{stack.db}'"))


async def no_session_left(stack, within_s: float = 20) -> None:
    """A closed connection's backend leaves pg_stat_activity a moment after the client is done with it."""
    deadline = time.monotonic() + within_s
    while our_sessions(stack):
        assert time.monotonic() < deadline, "the recovery's connection is still open"
        await asyncio.sleep(0.05)


async def slow_healthy_postgrest(request: web.Request) -> web.Response:
    await asyncio.sleep(0.5)  # the connection is open long before the probe is done
    return web.json_response([], headers={"Server": "postgrest/12.0.2"})


async def test_a_healthy_environment_leaves_no_connection_open(make_stack):
    stack = make_stack()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):  # the probe is done first: the connection is still being opened
            result = await recover(stack)
            assert result.outcome is Outcome.ALREADY_HEALTHY and not result.notify_sent
        async with LocalServer.catch_all(slow_healthy_postgrest) as slow:
            for _ in range(2):  # the connection is open first
                result = await recover(stack, rest_url=slow, admin_url=None)
                assert result.outcome is Outcome.ALREADY_HEALTHY and not result.notify_sent
                assert result.diagnosis is None and result.listener is None
        gc.collect()  # a connection dropped without close() says so here (asyncpg's ResourceWarning)
    await no_session_left(stack)
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


async def test_an_unreachable_database_does_not_matter_while_healthy_and_is_the_reason_when_stale(make_stack):
    stack = make_stack()
    refused = {
        f"DSN_{stack.db.upper()}": url_dsn("ops", made_up_password(), "127.0.0.1", 1, stack.db)
    }  # nothing listens
    healthy = await recover(stack, refused)
    assert healthy.outcome is Outcome.ALREADY_HEALTHY and healthy.reason is None

    stack.sql("CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;")
    stale = await recover(stack, refused, probe_tables=["orders"])
    assert stale.outcome is Outcome.ESCALATED and not stale.notify_sent
    assert "refused" in (stale.reason or ""), stale.reason
    recovered = await recover(stack, probe_tables=["orders"])  # the real DSN: the same connection does the work
    assert recovered.outcome is Outcome.RECOVERED, recovered.reason
    await no_session_left(stack)
