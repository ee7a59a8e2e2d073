"""The bot's drift remembers each run in its incident store: a table dropped behind the cache's back is found."""

from __future__ import annotations

import asyncio

from tests.e2e.conftest import running_bot

ORDERS = "CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;"


async def test_dropped_table_that_is_no_probe_is_found_by_the_monitor_and_reloaded(fake, make_stack):
    stack = make_stack()
    stack.sql(ORDERS)
    stack.notify()
    async with running_bot(fake, {"dev": stack.env_config()}, stack.env_vars) as bot:
        monitor = bot.services.monitor
        for _ in range(30):  # until the reload above is in the cache: this run is remembered
            if (await monitor.slow_check("dev")).in_sync:
                break
            await asyncio.sleep(0.1)
        stack.sql("DROP TABLE public.orders")
        found = await monitor.slow_check("dev")
        line = await fake.wait_for_message(fake.ops_channel_id, lambda m: "drift" in (m.content or ""), 15)
        drift = await fake.invoke_slash("drift", user_id=fake.user_ids["carol"], options={"env": "dev"})
        await drift.wait_acked()
        await drift.wait_for(lambda r: r.followups, 15)
    assert found.extra_in_api.tables == ("public.orders",) and found.memory_used, found.summary
    assert line.content.startswith("✅ DEV schema drift fixed by a reload") and "public.orders" in line.content
    assert monitor.states["dev"].drift is not None and monitor.states["dev"].drift.in_sync
    embed = drift.followups[0].embeds[0]
    assert embed["title"] == "✅ Schema drift DEV: in_sync", embed
