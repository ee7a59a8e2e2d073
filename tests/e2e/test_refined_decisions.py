"""Issue 9 in the running bot: auto-recovery and /reload decide on the catalog-refined view, like `fix`.

A probe table only `authenticated` may read answers the keyless probe 401 42501; that is auth-limited, not
broken, so neither the monitor nor /reload may escalate because of it.
"""

from __future__ import annotations

from tests.bot.ops.test_recovery import auth_limited_table, wait_cached
from tests.e2e.conftest import running_bot
from tests.support.pgstack import NotifyCounter

STALE_TABLE = "CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;"


def criticals(fake) -> list:
    return [m for m in fake.channel_messages(fake.ops_channel_id) if "CRITICAL" in (m.content or m.embed_text())]


async def prepared(make_stack, *, stale: bool):
    stack = make_stack()
    auth_limited_table(stack)
    await wait_cached(stack, "members")
    if stale:
        stack.sql(STALE_TABLE)
    return stack


async def test_auto_recovery_with_an_auth_limited_probe_table_recovers_without_a_critical(fake, make_stack):
    stack = await prepared(make_stack, stale=True)
    envs = {"dev": stack.env_config(probe_tables=["members", "orders"])}
    async with NotifyCounter(stack.dsn(), stack.channel) as notifies:
        async with running_bot(fake, envs, stack.env_vars) as bot:
            monitor = bot.services.monitor
            await monitor.check("dev")
            await monitor.check("dev")
            line = await fake.wait_for_message(fake.ops_channel_id, lambda m: "Auto-recovered" in (m.content or ""))
            assert monitor.states["dev"].verdict == "healthy"
        assert await notifies.reloads() == 1
    assert line.content.startswith("✅ Auto-recovered: stale_schema_cache fixed by a schema reload")
    assert criticals(fake) == []


async def test_monitor_with_only_an_auth_limited_probe_table_stays_healthy_and_sends_nothing(fake, make_stack):
    stack = await prepared(make_stack, stale=False)
    envs = {"dev": stack.env_config(probe_tables=["members", "judgments"])}
    async with NotifyCounter(stack.dsn(), stack.channel) as notifies:
        async with running_bot(fake, envs, stack.env_vars) as bot:
            monitor = bot.services.monitor
            await monitor.check("dev")
            await monitor.check("dev")
            status = await fake.invoke_slash("status", user_id=fake.user_ids["carol"])
            await status.wait_acked()
            assert monitor.states["dev"].verdict == "healthy" and monitor.states["dev"].last_report.auth_limited
        assert await notifies.reloads() == 0
    assert criticals(fake) == []


async def test_reload_with_an_auth_limited_probe_table_recovers_with_one_notify(fake, make_stack):
    stack = await prepared(make_stack, stale=True)
    envs = {"dev": stack.env_config(probe_tables=["members", "orders"])}
    async with NotifyCounter(stack.dsn(), stack.channel) as notifies:
        async with running_bot(fake, envs, stack.env_vars):
            record = await fake.invoke_slash("reload", user_id=fake.user_ids["bob"], options={"env": "dev"})
            await record.wait_for(lambda r: r.original is not None and "Audit" in str(r.original.embeds), 15)
        assert await notifies.reloads() == 1
    embed = record.original.embeds[0]
    assert embed["title"].startswith("✅ DEV healthy after "), embed
    assert "recovered" in next(f["value"] for f in embed["fields"] if f["name"] == "Audit")
    assert criticals(fake) == []


async def test_reload_with_only_an_auth_limited_probe_table_is_already_healthy(fake, make_stack):
    stack = await prepared(make_stack, stale=False)
    envs = {"dev": stack.env_config(probe_tables=["members", "judgments"])}
    async with NotifyCounter(stack.dsn(), stack.channel) as notifies:
        async with running_bot(fake, envs, stack.env_vars):
            record = await fake.invoke_slash("reload", user_id=fake.user_ids["bob"], options={"env": "dev"})
            await record.wait_for(lambda r: r.original is not None and "Audit" in str(r.original.embeds), 15)
        assert await notifies.reloads() == 0
    assert record.original.embeds[0]["title"] == "✅ DEV already healthy: no reload sent"
    assert criticals(fake) == []
