"""Issue 4 in the running bot: the monitor's alerts carry the diagnosis, KPI breaches warn, drift is watched."""

from __future__ import annotations

from tests.e2e.conftest import running_bot

STALE_TABLE = "CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;"


async def test_monitor_alert_for_a_missing_table_names_the_migration_not_a_restart(fake, make_stack):
    stack = make_stack()
    envs = {"prod": stack.env_config(probe_tables=["orders"], auto_recover=False)}
    async with running_bot(fake, envs, stack.env_vars) as bot:
        monitor = bot.services.monitor
        await monitor.check("prod")
        await monitor.check("prod")
        alert = await fake.wait_for_message(fake.ops_channel_id, lambda m: "CRITICAL" in m.embed_text(), 10)
    assert monitor.states["prod"].verdict == "missing_in_database"
    fields = {f["name"]: f["value"] for f in alert.embeds[0]["fields"]}
    assert "public.orders does not exist" in fields["Cause: table missing in the database"]
    assert "apply the migration" in fields["Fix"] and fields["Fix"].count("restart") == 1  # only as the fallback
    assert "table missing in the database" in alert.content


async def test_reload_kpi_breach_posts_a_warning_not_a_critical(fake, make_stack):
    stack = make_stack()
    stack.sql(STALE_TABLE)
    kpi = {"notify_alert_ms": 0.001, "notify_target_ms": 0.0005}
    envs = {"dev": stack.env_config(probe_tables=["orders"])}
    async with running_bot(fake, envs, stack.env_vars, recovery={"kpi": kpi}) as bot:
        record = await fake.invoke_slash("reload", user_id=fake.user_ids["bob"], options={"env": "dev"})
        warning = await fake.wait_for_message(fake.ops_channel_id, lambda m: "KPI" in (m.content or ""), 15)
        await record.wait_for(lambda r: r.original is not None and "Audit" in str(r.original.embeds), 15)
        await bot.services.monitor.check("dev")
        status = await fake.invoke_slash("status", user_id=fake.user_ids["carol"])
        await status.wait_acked()
        assert bot.services.monitor.states["dev"].last_reload is not None
    assert warning.content.startswith("⚠️ DEV reload KPI above its alert threshold: NOTIFY execution")
    assert not warning.embeds  # a warning line, not a CRITICAL embed
    reload_fields = {f["name"]: f["value"] for f in record.original.embeds[0]["fields"]}
    assert "NOTIFY execution" in reload_fields["KPIs"] and "Reload latency" in reload_fields["KPIs"]
    dev = next(f for f in status.original.embeds[0]["fields"] if f["name"].startswith("✅ DEV"))
    assert "KPIs: ⚠️ NOTIFY execution" in dev["value"]


async def test_drift_outside_the_probed_tables_is_reloaded_by_the_monitor(fake, make_stack):
    stack = make_stack()
    async with running_bot(fake, {"dev": stack.env_config()}, stack.env_vars) as bot:
        monitor = bot.services.monitor
        first = await monitor.slow_check("dev")
        assert first.in_sync, first.summary
        stack.sql(STALE_TABLE)  # not a probed table: the probe stays healthy
        await monitor.check("dev")
        assert monitor.states["dev"].verdict == "healthy"
        await monitor.slow_check("dev")
        line = await fake.wait_for_message(fake.ops_channel_id, lambda m: "drift" in (m.content or ""), 15)
        assert monitor.states["dev"].drift is not None and monitor.states["dev"].drift.in_sync
    assert line.content == "✅ DEV schema drift fixed by a reload: tables public.orders."


async def test_drift_without_auto_recover_says_what_to_reload_and_status_shows_version(fake, make_stack):
    stack = make_stack()
    stack.sql(
        STALE_TABLE + "CREATE SCHEMA supabase_migrations;"
        "CREATE TABLE supabase_migrations.schema_migrations (version text primary key);"
        "INSERT INTO supabase_migrations.schema_migrations VALUES ('20261101000000');"
        "GRANT USAGE ON SCHEMA supabase_migrations TO ops; GRANT SELECT ON ALL TABLES IN SCHEMA supabase_migrations TO ops;"
    )
    envs = {"dev": stack.env_config(auto_recover=False, schema_version={"expected": "20261120000000"})}
    async with running_bot(fake, envs, stack.env_vars) as bot:
        monitor = bot.services.monitor
        await monitor.check("dev")
        await monitor.slow_check("dev")
        line = await fake.wait_for_message(fake.ops_channel_id, lambda m: "drift" in (m.content or ""), 10)
        status = await fake.invoke_slash("status", user_id=fake.user_ids["carol"])
        await status.wait_acked()
    assert "Reload with `/reload dev`" in line.content and "public.orders" in line.content
    dev = next(f for f in status.original.embeds[0]["fields"] if "DEV" in f["name"])
    assert "⚠️ drift" in dev["value"] and "public.orders" in dev["value"]
    assert "❌ schema version run_migrations" in dev["value"]


async def test_fixing_the_named_cause_resolves_without_claiming_a_restart(fake, make_stack):
    stack = make_stack(steady_pgrst002=True)
    stack.sql(f"ALTER ROLE authenticator IN DATABASE {stack.db} SET statement_timeout = '1ms'")
    stack.notify()
    await stack.wait_for_code("PGRST002")
    async with running_bot(fake, {"prod": stack.env_config()}, stack.env_vars) as bot:
        monitor = bot.services.monitor
        await monitor.check("prod")
        await monitor.check("prod")
        alert = await fake.wait_for_message(fake.ops_channel_id, lambda m: "CRITICAL" in m.embed_text(), 10)
        assert alert.embed_text().count("RESET statement_timeout") == 1  # the fix, once
        stack.sql(f"ALTER ROLE authenticator IN DATABASE {stack.db} RESET statement_timeout")
        await stack.wait_for_code("first judgment")
        await monitor.check("prod")
        line = await fake.wait_for_message(fake.ops_channel_id, lambda m: "resolved after" in (m.content or ""), 10)
    assert "recovered by itself" in line.content and "restart" not in line.content
