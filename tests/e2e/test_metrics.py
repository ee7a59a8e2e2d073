"""/metrics, /healthz and /readyz of the bot as the composition root serves them: the fake Discord, a real
PostgREST and PostgreSQL, scraped over HTTP and read with Prometheus' own parser."""

from __future__ import annotations

import contextlib

import discord

from bot.app import serve_bot
from tests.e2e.conftest import running_bot
from tests.support.localhttp import get, until
from tests.support.prom import Samples, samples_of, value

STALE_TABLE = "CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;"
LISTEN = {"host": "127.0.0.1", "port": 0}  # any free port: the listener says which


async def scrape(port: int) -> Samples:
    status, text = await get(port, "/metrics")
    assert status == 200
    return samples_of(text)


async def test_an_outage_shows_in_the_verdict_probe_time_alerts_and_open_incidents(fake, make_stack):
    stack = make_stack()
    envs = {"prod": stack.env_config(auto_recover=False)}
    async with running_bot(fake, envs, stack.env_vars, metrics=LISTEN) as bot, serve_bot(bot) as endpoints:
        assert endpoints is not None and endpoints.port
        port, monitor = endpoints.port, bot.services.monitor
        assert await get(port, "/healthz") == (200, "ok\n")
        assert await get(port, "/readyz") == (200, "ready\n")
        await monitor.check("prod")
        healthy = await scrape(port)
        stack.postgrest.stop()
        await monitor.check("prod")
        await monitor.check("prod")
        await fake.wait_for_message(fake.ops_channel_id, lambda m: "CRITICAL" in m.embed_text(), 15)
        await bot.sink.outbox.settle()
        down = await scrape(port)
        stack.postgrest.start()
        await monitor.check("prod")
        await fake.wait_for(lambda: len(fake.channel_messages(fake.ops_channel_id)) == 2)
        await bot.sink.outbox.settle()
        back = await scrape(port)
    assert value(healthy, "pgrst_ops_verdict", env="prod", verdict="healthy") == 1
    assert value(healthy, "pgrst_ops_verdict", env="prod", verdict="postgrest_down") == 0
    assert value(healthy, "pgrst_ops_probe_duration_seconds_count", env="prod") == 1
    assert 0 < (value(healthy, "pgrst_ops_probe_duration_seconds_sum", env="prod") or 0) < 10
    assert value(healthy, "pgrst_ops_open_incidents", env="prod") == 0
    assert value(healthy, "pgrst_ops_leader") == 1

    assert value(down, "pgrst_ops_verdict", env="prod", verdict="postgrest_down") == 1
    assert value(down, "pgrst_ops_verdict", env="prod", verdict="healthy") == 0
    assert value(down, "pgrst_ops_checks_total", env="prod", verdict="postgrest_down") == 2
    assert value(down, "pgrst_ops_alerts_total", env="prod", kind="critical") == 1
    assert value(down, "pgrst_ops_open_incidents", env="prod") == 1
    assert value(down, "pgrst_ops_outbox_backlog") == 0

    assert value(back, "pgrst_ops_verdict", env="prod", verdict="healthy") == 1
    assert value(back, "pgrst_ops_checks_total", env="prod", verdict="healthy") == 2
    assert value(back, "pgrst_ops_alerts_total", env="prod", kind="resolved") == 1
    assert value(back, "pgrst_ops_alerts_total", env="prod", kind="critical") == 1  # exactly one CRITICAL
    assert value(back, "pgrst_ops_open_incidents", env="prod") == 0


async def test_discord_refusing_a_post_is_counted_by_status(fake, make_stack, monkeypatch):
    stack = make_stack()
    monkeypatch.setenv("TEST_HOOK", fake.incoming_webhook_url)
    fake.deny_channel(fake.ops_channel_id)  # 403 on every post: the CRITICAL goes through the webhook
    envs = {"prod": stack.env_config(auto_recover=False)}
    top = {"discord": {"webhook_url": {"env": "TEST_HOOK"}}, "metrics": LISTEN}
    async with running_bot(fake, envs, stack.env_vars, **top) as bot, serve_bot(bot) as endpoints:
        assert endpoints is not None
        stack.postgrest.stop()
        await bot.services.monitor.check("prod")
        await bot.services.monitor.check("prod")
        await bot.sink.outbox.settle()
        samples = await scrape(endpoints.port)
    assert len(fake.webhook_posts) == 1 and "CRITICAL" in str(fake.webhook_posts[0])
    assert value(samples, "pgrst_ops_discord_errors_total", status="403") == 1
    assert value(samples, "pgrst_ops_alerts_total", env="prod", kind="critical") == 1


async def test_reloads_by_outcome_and_time_to_healthy_after_an_auto_recovery_and_a_reload(fake, make_stack):
    stack = make_stack()
    stack.sql(STALE_TABLE)
    envs = {"dev": stack.env_config(probe_tables=["orders"])}
    async with running_bot(fake, envs, stack.env_vars, metrics=LISTEN) as bot, serve_bot(bot) as endpoints:
        assert endpoints is not None
        monitor = bot.services.monitor
        await monitor.check("dev")
        await monitor.check("dev")  # the threshold: the monitor reloads by itself
        await fake.wait_for_message(fake.ops_channel_id, lambda m: "Auto-recovered" in (m.content or ""), 15)
        record = await fake.invoke_slash("reload", user_id=fake.user_ids["bob"], options={"env": "dev"})
        await record.wait_for(lambda r: r.original is not None and "Audit" in str(r.original.embeds), 15)
        samples = await scrape(endpoints.port)
    assert value(samples, "pgrst_ops_reloads_total", env="dev", outcome="recovered") == 1
    assert value(samples, "pgrst_ops_reloads_total", env="dev", outcome="already_healthy") == 1  # Bob's /reload
    assert value(samples, "pgrst_ops_reloads_total", env="dev", outcome="escalated") == 0
    assert value(samples, "pgrst_ops_time_to_healthy_seconds_count", env="dev") == 1
    assert 0 < (value(samples, "pgrst_ops_time_to_healthy_seconds_sum", env="dev") or 0) < 30
    assert value(samples, "pgrst_ops_alerts_total", env="dev", kind="auto_recovered") == 1
    assert value(samples, "pgrst_ops_alerts_total", env="dev", kind="critical") == 0
    assert value(samples, "pgrst_ops_verdict", env="dev", verdict="healthy") == 1


async def test_readyz_is_503_with_the_reason_while_the_store_is_unavailable(fake, make_stack, tmp_path):
    stack = make_stack()
    envs = {"prod": stack.env_config(auto_recover=False)}
    incidents = {"store_path": str(tmp_path / "incidents.db")}
    async with (
        running_bot(fake, envs, stack.env_vars, metrics=LISTEN, incidents=incidents) as bot,
        serve_bot(bot) as endpoints,
    ):
        assert endpoints is not None
        ready = await get(endpoints.port, "/readyz")
        store = bot.services.store
        await store.call(lambda: store.conn.close())  # the database goes away under the running bot
        broken = await get(endpoints.port, "/readyz")
        samples = await scrape(endpoints.port)
        alive = await get(endpoints.port, "/healthz")
    assert ready == (200, "ready\n")
    status, text = broken
    assert status == 503 and text.startswith("not ready: incident store") and "closed database" in text
    assert (value(samples, "pgrst_ops_store_errors_total") or 0) >= 1
    assert alive == (200, "ok\n")  # alive, only not ready


async def test_readyz_is_503_when_the_store_cannot_be_opened(fake, make_stack, tmp_path):
    path = tmp_path / "broken.db"
    path.write_bytes(b"garbage, not sqlite" * 500)
    stack = make_stack()
    envs = {"prod": stack.env_config(auto_recover=False)}
    incidents = {"store_path": str(path)}
    async with (
        running_bot(fake, envs, stack.env_vars, metrics=LISTEN, incidents=incidents) as bot,
        serve_bot(bot) as endpoints,
    ):
        assert endpoints is not None
        status, text = await get(endpoints.port, "/readyz")
    assert status == 503 and "could not be opened" in text


async def test_no_metrics_section_no_listener(fake, make_stack):
    stack = make_stack()
    async with running_bot(fake, {"prod": stack.env_config()}, stack.env_vars) as bot, serve_bot(bot) as endpoints:
        assert endpoints is None


async def test_readyz_is_503_once_the_gateway_connection_is_lost(fake, make_stack):
    stack = make_stack()
    # Discord ends the session for good (4004: no reconnect); the bot's run may end with that error on the way out.
    with contextlib.suppress(discord.errors.ConnectionClosed):
        async with (
            running_bot(fake, {"prod": stack.env_config()}, stack.env_vars, metrics=LISTEN) as bot,
            serve_bot(bot) as endpoints,
        ):
            assert endpoints is not None
            connected = await get(endpoints.port, "/readyz")
            for session in list(fake.gateway_sessions):
                await session.ws.close(code=4004, message=b"Authentication failed.")
            lost = await until(lambda: get(endpoints.port, "/readyz"), lambda a: a[0] != 200)
            alive = await get(endpoints.port, "/healthz")
    assert connected == (200, "ready\n")
    assert lost == (503, "not ready: not connected to the Discord gateway\n")
    assert alive == (200, "ok\n")  # alive, only not ready
