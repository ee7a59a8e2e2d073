"""Detection in seconds with the default monitor settings, on real PostgreSQL 15 and PostgREST 12.

A table created behind PostgREST's back (no NOTIFY, no event trigger) is served within seconds, fixed by the
catalog watch (not the 60 s probe); a reload someone else sends needs no action; PGRST002 alerts at the
liveness and confirm pace; the watch survives its database restarting.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from bot.app import build_bot
from bot.chat.bot import PgrstOpsBot
from bot.config import resolve_targets
from bot.postgrest.requests import make_http_client
from tests.conftest import SCHEMA_SQL, Stack, build_settings
from tests.fakediscord import FakeDiscord
from tests.support.pgstack import STEADY_PGRST002, NotifyCounter, PgCluster, PostgrestServer

DEFAULTS: dict[str, Any] = {}  # no monitor section: the shipped defaults (60 s probe, threshold 2)
NEW_TABLE = "CREATE TABLE public.invoices (id int primary key, total int); GRANT SELECT ON public.invoices TO anon;"


@contextlib.asynccontextmanager
async def monitoring(
    fake: FakeDiscord, envs: dict[str, dict[str, Any]], environ: dict[str, str], **top: Any
) -> AsyncIterator[PgrstOpsBot]:
    """The bot with its monitor loops running, on the default monitor settings unless `top` says otherwise."""
    settings = build_settings(
        envs,
        discord={"guild_ids": [fake.guild_id], "ops_channel_id": fake.ops_channel_id, "ops_role": "ops",
                 "alert_role_id": fake.role_ids["oncall"]},
        incidents={"store_path": ":memory:"},
        **top,
    )  # fmt: skip
    assert (settings.monitor.interval_s == 60 and settings.monitor.failure_threshold == 2) or top
    targets = resolve_targets(settings, environ=environ)
    async with make_http_client(t.config for t in targets) as http:
        bot = build_bot(settings, targets, http, autostart_monitor=True, guild_ready_timeout=0.05)
        async with fake.run_bot(bot):
            yield bot


async def watching(bot: PgrstOpsBot, env: str = "dev") -> None:
    """The catalog watch is connected, and the drift loop's first run (at start) is over: it would otherwise see
    the same new table and say so in its own words."""
    monitor = bot.services.monitor
    await until(lambda: monitor.catalog_watch.connected(env), 15, "the catalog watch connected")
    await until(lambda: monitor.states[env].drift is not None, 30, "the first drift check done")


async def until(predicate: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        assert time.monotonic() < deadline, f"not within {within_s} s: {what}"
        await asyncio.sleep(0.02)


async def served_within(url: str, within_s: float) -> float:
    """Seconds until OPTIONS `url` answers 200."""
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=2) as client:
        while (await client.options(url)).status_code != 200:
            assert time.monotonic() - started < within_s, f"{url} not served within {within_s} s"
            await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_a_table_created_behind_postgrests_back_is_served_within_seconds(fake, make_stack):
    stack = make_stack()
    async with NotifyCounter(stack.dsn(), stack.channel) as notifies:
        async with monitoring(fake, {"dev": stack.env_config()}, stack.env_vars) as bot:
            watch = bot.services.monitor.catalog_watch
            await watching(bot)
            stack.sql(NEW_TABLE)  # no NOTIFY: PostgREST does not know
            elapsed = await served_within(f"{stack.postgrest.url}/invoices", 8)
            await until(lambda: bool(watch.fixes), 10, "the fix recorded")
            line = await fake.wait_for_message(fake.ops_channel_id, lambda m: "invoices" in (m.content or ""), 10)
        assert await notifies.reloads() == 1  # the watch's one reload, nothing else
    # The mechanism: the catalog watch fixed it, long before the 60 s probe would have run again.
    assert elapsed < 8
    [fix] = watch.fixes
    assert (fix.env, fix.objects, fix.outcome) == ("dev", "public.invoices", "fixed")
    assert line.content.startswith("✅ DEV: public.invoices changed in the database without a schema reload")
    assert not line.mention_roles and not line.allowed_mentions.get("roles")  # an information line pings nobody
    assert bot.services.operator.reloads_in_window("dev") == 1


async def test_a_reload_sent_by_someone_else_needs_no_action(fake, make_stack):
    stack = make_stack()
    async with NotifyCounter(stack.dsn(), stack.channel) as notifies:
        async with monitoring(fake, {"dev": stack.env_config()}, stack.env_vars) as bot:
            watch = bot.services.monitor.catalog_watch
            await watching(bot)
            stack.sql(f"BEGIN; {NEW_TABLE} NOTIFY {stack.channel}, 'reload schema'; COMMIT;")
            await served_within(f"{stack.postgrest.url}/invoices", 8)
            # The positive signal: the watch looked at the change once the reload had time to land.
            await until(lambda: bool(watch.checks), 15, "the watch checked the change")
        assert await notifies.reloads() == 1  # the migration's own NOTIFY only
    assert list(watch.checks) == [("dev", "public.invoices", "")] and not watch.fixes


async def test_pgrst002_alerts_at_the_fast_pace_and_resolves_within_seconds(fake, make_stack):
    stack = make_stack(steady_pgrst002=True)
    envs = {"prod": stack.env_config()}
    async with monitoring(fake, envs, stack.env_vars) as bot:
        monitor = bot.services.monitor
        await until(lambda: monitor.states["prod"].verdict is not None, 15, "the first check")
        assert monitor.states["prod"].last_report.healthy
        stack.sql(f"ALTER ROLE authenticator IN DATABASE {stack.db} SET statement_timeout = '1ms'")
        stack.notify()
        await stack.wait_for_code("PGRST002")
        broken = time.monotonic()
        alert = await fake.wait_for_message(fake.ops_channel_id, lambda m: "CRITICAL" in m.embed_text(), 30)
        alerted_s = time.monotonic() - broken
        alert_text = alert.embed_text()  # the message is edited into its resolved form later
        stack.sql(f"ALTER ROLE authenticator IN DATABASE {stack.db} RESET statement_timeout")
        stack.notify()
        await served_within(f"{stack.postgrest.url}/judgments", 30)
        healed = time.monotonic()
        await fake.wait_for_message(
            fake.ops_channel_id, lambda m: (m.content or "").startswith("✅ PostgREST PROD resolved"), 30
        )
        resolved_s = time.monotonic() - healed
        await bot.services.monitor.sink.outbox.settle()
    # 60 s probes with threshold 2 took 60-120 s; a liveness check every 5 s and a confirm after 1 s take seconds.
    assert "PGRST002" in alert_text and "statement_timeout" in alert_text, alert_text
    assert alerted_s < 20, alerted_s
    assert resolved_s < 20, resolved_s
    alerts = [m for m in fake.channel_messages(fake.ops_channel_id) if m.embeds]
    assert [m.id for m in alerts] == [alert.id]  # exactly one alert, edited to resolved


@pytest.fixture
def own_cluster():
    """A cluster of its own: the test restarts it."""
    cluster = PgCluster()
    cluster.start()
    yield cluster
    cluster.destroy()


async def test_the_watch_survives_its_database_restarting(fake, own_cluster):
    own_cluster.sql("CREATE DATABASE restart")
    own_cluster.psql(SCHEMA_SQL, dbname="restart")
    uri = own_cluster.dsn("authenticator", dbname="restart")
    server = PostgrestServer(own_cluster, channel="pgrst_restart", extra_env={"PGRST_DB_URI": uri, **STEADY_PGRST002})
    server.start()
    stack = Stack(own_cluster, "restart", "pgrst_restart", server)
    stack.env_vars["DSN_RESTART"] = stack.dsn("ops")
    try:
        async with monitoring(fake, {"dev": stack.env_config()}, stack.env_vars) as bot:
            watch = bot.services.monitor.catalog_watch
            await watching(bot)
            own_cluster.stop()
            down = time.monotonic()
            await until(lambda: not watch.connected("dev"), 15, "the watch saw the database go")
            own_cluster.start()
            await until(lambda: watch.connected("dev"), 45, "the watch reconnected")
            outage_s = time.monotonic() - down
            attempts = watch.attempts("dev")
            await served_within(f"{server.url}/judgments", 30)  # PostgREST is back too
            stack.sql(NEW_TABLE)
            await served_within(f"{server.url}/invoices", 8)
            # PostgREST may still reload by itself after reconnecting (its listener's reconnect does), in which
            # case the watch finds the table served; either way it saw the change made after the restart.
            await until(lambda: any(c[1] == "public.invoices" for c in watch.checks), 10, "the change checked")
        assert all(f.outcome == "fixed" for f in watch.fixes), watch.fixes
        # Retried with a growing pause (1, 2, 4 ... s), not in a spin.
        assert attempts <= outage_s + 3, (attempts, outage_s)
    finally:
        server.destroy()


async def test_without_auto_recover_the_watch_says_what_is_stale_and_sends_nothing(fake, make_stack):
    stack = make_stack()
    async with NotifyCounter(stack.dsn(), stack.channel) as notifies:
        async with monitoring(fake, {"dev": stack.env_config(auto_recover=False)}, stack.env_vars) as bot:
            watch = bot.services.monitor.catalog_watch
            await watching(bot)
            stack.sql(NEW_TABLE)
            line = await fake.wait_for_message(fake.ops_channel_id, lambda m: "invoices" in (m.content or ""), 10)
        assert await notifies.reloads() == 0
    assert line.content == (
        "⚠️ DEV: changed in the database without a schema reload and not served: public.invoices. "
        "Reload with `/reload dev` (auto_recover is off)."
    )
    assert [f.outcome for f in watch.fixes] == ["auto_recover off"]
