"""The Supabase project's own state in the bot's verdicts, end to end: the fake Discord, a real PostgREST and
PostgreSQL, and the local fake of the Management API (tests/support/supabase_api.py)."""

from __future__ import annotations

from datetime import timedelta

from tests.e2e.conftest import running_bot
from tests.support.supabase_api import REF, TOKEN, FakeManagementApi


def project_env(stack, api: FakeManagementApi, **supabase):
    supabase = {"project_ref": REF, "access_token": {"env": "SB_TOKEN"}, "api_url": api.url, **supabase}
    envs = {"prod": stack.env_config(auto_recover=False, supabase=supabase)}
    return envs, {**stack.env_vars, "SB_TOKEN": TOKEN}


def ops(fake):
    return fake.channel_messages(fake.ops_channel_id)


async def test_a_paused_project_alerts_project_paused_not_a_timeout(fake, make_stack, api):
    stack = make_stack()
    stack.postgrest.stop()  # a paused project: nothing answers
    api.projects[REF].set_status("INACTIVE")
    envs, environ = project_env(stack, api)
    async with running_bot(fake, envs, environ) as bot:
        monitor = bot.services.monitor
        await monitor.check("prod")
        await monitor.check("prod")
        alert = await fake.wait_for_message(fake.ops_channel_id, lambda m: "CRITICAL" in m.embed_text(), 10)
        health = await fake.invoke_slash("health", user_id=fake.user_ids["carol"], options={"env": "prod"})
        await health.wait_for(lambda r: bool(r.followups), 10)
        status = await fake.invoke_slash("status", user_id=fake.user_ids["carol"])
        await status.wait_acked()
        await bot.sink.outbox.settle()
        posted = ops(fake)
    embed = alert.embeds[0]
    assert embed["title"] == "CRITICAL · PROD: project paused"
    assert embed["footer"]["text"].startswith("pgrst-ops · prod · project_paused")
    text = alert.embed_text()
    assert "timeout" not in embed["footer"]["text"] and "postgrest_down" not in embed["footer"]["text"]
    assert f"POST /v1/projects/{REF}/restore" in text  # the next step: restore, not restart
    (supabase,) = [f["value"] for f in embed["fields"] if f["name"] == "Supabase"]
    assert supabase == "❌ Supabase project INACTIVE · ❌ rest INACTIVE · ❌ db INACTIVE · ❌ pooler INACTIVE"
    assert "is paused, restore it" in alert.content
    assert len([m for m in posted if "CRITICAL" in str(m.history[0])]) == 1
    (field,) = health.followups[0].embeds[0]["fields"]
    assert field["name"] == "❌ PROD — project paused" and "Supabase project INACTIVE" in field["value"]
    (prod,) = [f for f in status.original.embeds[0]["fields"] if "PROD —" in f["name"]]
    assert prod["name"] == "❌ PROD — project paused" and "Supabase project INACTIVE" in prod["value"]
    assert TOKEN not in str([m.history for m in posted]) and TOKEN not in str(prod)


async def test_a_restarting_project_holds_the_alert_until_it_is_up(fake, make_stack, api):
    stack = make_stack()
    stack.postgrest.stop()
    api.projects[REF].set_status("RESTARTING")
    envs, environ = project_env(stack, api)
    async with running_bot(fake, envs, environ) as bot:
        monitor = bot.services.monitor
        await monitor.check("prod")
        await monitor.check("prod")
        state = monitor.states["prod"]
        assert state.alert is not None and state.alert.held  # the incident is open, its alert waits
        assert "RESTARTING" in (monitor.hold_reason("prod") or "")
        api.projects[REF].set_status("COMING_UP")
        await monitor.check("prod")
        assert state.alert is not None and state.alert.held
        api.projects[REF].set_status("ACTIVE_HEALTHY")
        stack.postgrest.start()
        await monitor.check("prod")
        assert state.alert is None and state.verdict == "healthy"  # resolved: the positive signal
        await bot.sink.outbox.settle()
        assert ops(fake) == []  # no CRITICAL, and no "resolved" line for an alert nobody saw


async def test_a_project_that_stays_restarting_alerts_after_the_deadline(fake, make_stack, api):
    stack = make_stack()
    stack.postgrest.stop()
    api.projects[REF].set_status("RESTARTING")
    envs, environ = project_env(stack, api, transition_hold_s=600)
    async with running_bot(fake, envs, environ) as bot:
        monitor = bot.services.monitor
        await monitor.check("prod")
        await monitor.check("prod")
        assert monitor.states["prod"].alert is not None and monitor.states["prod"].alert.held
        real_now = monitor.now
        monitor.now = lambda: real_now() + timedelta(minutes=11)
        await monitor.check("prod")
        alert = await fake.wait_for_message(fake.ops_channel_id, lambda m: "CRITICAL" in m.embed_text(), 10)
    assert "postgrest_down" in alert.embeds[0]["footer"]["text"]
    (supabase,) = [f["value"] for f in alert.embeds[0]["fields"] if f["name"] == "Supabase"]
    assert supabase.startswith("❌ Supabase project RESTARTING")


async def test_postgrest_settings_that_differ_from_the_config_are_said(fake, make_stack, api, caplog):
    stack = make_stack()
    api.projects[REF].postgrest["db_schema"] = "public, gone"
    envs, environ = project_env(stack, api)
    envs["prod"]["probe_tables"] = ["judgments", "orders"]  # orders was never created: the diagnosis runs
    async with running_bot(fake, envs, environ) as bot:
        monitor = bot.services.monitor
        await monitor.check("prod")
        await monitor.check("prod")
        alert = await fake.wait_for_message(fake.ops_channel_id, lambda m: "CRITICAL" in m.embed_text(), 10)
        status = await fake.invoke_slash("status", user_id=fake.user_ids["carol"])
        await status.wait_acked()
    assert "PostgREST's db_schema is public, gone, exposed_schemas says public" in caplog.text
    assert caplog.text.count("db_schema is public, gone") == 1  # a start-up warning, not one per check
    (also,) = [f["value"] for f in alert.embeds[0]["fields"] if f["name"] == "Also found"]
    assert also == "- exposed schema does not exist"  # the served schema the database lacks, named
    state = bot.services.monitor.states["prod"]
    (finding,) = [f for f in state.diagnosis.findings if f.cause == "missing_schema"]
    assert finding.evidence.startswith("PostgREST's db_schema (Supabase API) lists gone")
    (prod,) = [f for f in status.original.embeds[0]["fields"] if "PROD —" in f["name"]]
    assert (
        "⚠️ PostgREST's db_schema is public, gone, exposed_schemas says public (not in exposed_schemas: gone)"
        in prod["value"]
    )
