"""The bot end to end: unmodified discord.py against the fake Discord, real PostgREST/PostgreSQL behind."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.e2e.conftest import running_bot
from tests.support.pgstack import HungHttpServer

STALE_TABLE = "CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;"


def bad_statement_timeout(stack) -> None:
    stack.sql(f"ALTER ROLE authenticator IN DATABASE {stack.db} SET statement_timeout = '1ms'")
    stack.notify()


async def test_commands_are_synced_to_the_guild_with_their_options(fake, make_stack):
    stack = make_stack()
    async with running_bot(fake, {"dev": stack.env_config()}, stack.env_vars):
        commands = {c["name"]: c for c in fake.commands[fake.guild_id]}
    assert set(commands) == {"health", "reload", "restart", "status", "drift", "incidents", "silence", "unsilence"}
    (restart_env,) = commands["restart"]["options"]
    assert restart_env["name"] == "env" and restart_env["required"] and restart_env["autocomplete"]
    (health_env,) = commands["health"]["options"]
    assert health_env["name"] == "env" and not health_env.get("required") and health_env["autocomplete"]
    reload_env, reload_force = commands["reload"]["options"]
    assert reload_env["name"] == "env" and reload_env["required"] and reload_env["autocomplete"]
    assert reload_force["name"] == "force" and not reload_force.get("required") and reload_force["type"] == 5
    assert not commands["status"].get("options")


async def test_env_autocompletes_from_the_config(fake, make_stack):
    stack = make_stack()
    envs = {"dev": stack.env_config(), "prod": stack.env_config(), "staging": stack.env_config()}
    async with running_bot(fake, envs, stack.env_vars):
        choices = await fake.autocomplete("health", user_id=fake.user_ids["carol"], focused="env", value="st")
    assert [c["value"] for c in choices] == ["staging"]


async def test_health_acks_at_once_while_an_environment_hangs(fake, make_stack):
    stack = make_stack()
    stale = make_stack()
    stale.sql(STALE_TABLE)
    async with HungHttpServer() as hung:
        envs = {
            "dev": stack.env_config(),
            "staging": stale.env_config(probe_tables=["orders"]),
            "qa": {"rest_url": hung.url, "probe_tables": ["judgments"], "timeouts": {"read_s": 2, "total_s": 2}},
        }
        async with running_bot(fake, envs, {**stack.env_vars, **stale.env_vars}):
            started = time.perf_counter()
            record = await fake.invoke_slash("health", user_id=fake.user_ids["carol"])
            await record.wait_acked()
            ack_s = time.perf_counter() - started
            await record.wait_for(
                lambda r: bool(r.followups) or (r.original is not None and bool(r.original.embeds)), 10
            )
    assert not record.errors
    assert ack_s < 0.5 and record.callbacks[0]["type"] == 5  # deferred before probing
    message = record.followups[0] if record.followups else record.original
    embed = message.embeds[0]
    assert embed["title"] == "PostgREST health: 2 unhealthy, 1 healthy"
    # the unhealthy ones in blocks of their own, in the config's order; the healthy one on one line
    assert [f["name"] for f in embed["fields"]] == ["⚠️ STAGING — stale schema cache", "❌ QA — no answer (timeout)"]
    stale_block, timeout_block = (f["value"] for f in embed["fields"])
    assert "Cache (orders): `404`" in stale_block and "**Fix:** send a schema reload" in stale_block
    assert stale_block.count("send a schema reload") == 1
    assert "**Why:**" in timeout_block and "paused" in timeout_block
    assert embed["description"].startswith("✅ **DEV** healthy · ") and "\n" not in embed["description"]
    assert [b["custom_id"] for b in message.buttons()] == ["pgrst:recheck:*"]


async def test_recheck_button_probes_again_and_edits_the_message(fake, make_stack):
    stack = make_stack()
    stack.sql(STALE_TABLE)
    async with running_bot(fake, {"dev": stack.env_config(probe_tables=["orders"])}, stack.env_vars):
        record = await fake.invoke_slash("health", user_id=fake.user_ids["carol"], options={"env": "dev"})
        await record.wait_for(lambda r: bool(r.followups) or (r.original is not None and bool(r.original.embeds)))
        message = record.followups[0] if record.followups else record.original
        assert "stale schema cache" in message.embeds[0]["fields"][0]["name"]
        stack.notify()
        await asyncio.sleep(0.5)
        click = await fake.click_button(message, "pgrst:recheck:dev", user_id=fake.user_ids["bob"])
        await click.wait_for(
            lambda r: fake.message(message.id).embeds[0]["title"] == "PostgREST health: DEV healthy", 10
        )
    assert not click.errors and click.callbacks[0]["type"] == 6


async def test_unknown_environment_is_a_clear_ephemeral_error(fake, make_stack):
    stack = make_stack()
    async with running_bot(fake, {"dev": stack.env_config()}, stack.env_vars):
        record = await fake.invoke_slash("reload", user_id=fake.user_ids["alice"], options={"env": "prdo"})
        await record.wait_acked()
    assert (
        record.ephemeral
        and "Unknown environment `prdo`" in record.original.content
        and "dev" in record.original.content
    )


@pytest.mark.parametrize(("user", "env", "role"), [("mallory", "dev", "ops"), ("bob", "prod", "ops-prod")])
async def test_reload_is_refused_without_the_role(fake, make_stack, user, env, role):
    stack = make_stack()
    stack.sql(STALE_TABLE)
    envs = {
        "dev": stack.env_config(probe_tables=["orders"]),
        "prod": stack.env_config(probe_tables=["orders"], reload_role="ops-prod"),
    }
    async with running_bot(fake, envs, stack.env_vars):
        record = await fake.invoke_slash("reload", user_id=fake.user_ids[user], options={"env": env})
        await record.wait_acked()
    assert record.ephemeral and f"needs the **{role}** role" in record.original.content
    assert stack.sql("select 1").strip() == "1"
    assert not fake.channel_messages(fake.ops_channel_id)


async def test_reload_of_a_stale_cache_reports_time_to_healthy_and_an_audit_line(fake, make_stack):
    stack = make_stack()
    stack.sql(STALE_TABLE)
    async with running_bot(fake, {"dev": stack.env_config(probe_tables=["orders"])}, stack.env_vars) as bot:
        record = await fake.invoke_slash("reload", user_id=fake.user_ids["bob"], options={"env": "dev"})
        await record.wait_for(
            lambda r: r.original is not None and bool(r.original.embeds) and "Audit" in str(r.original.embeds), 15
        )
        state = bot.services.monitor.states["dev"]
    embed = record.original.embeds[0]
    assert embed["title"].startswith("✅ DEV healthy after ") and embed["title"].endswith(" ms")
    assert "NOTIFY " in embed["description"] and "'reload schema' sent in" in embed["description"]
    # live progress: the deferred response was edited as the steps happened, before the outcome
    shown = [h["embeds"][0] for h in record.original.history if h.get("embeds")]
    progress = [e for e in shown if e["title"] == "Reloading DEV schema cache…"]
    assert progress and progress[0]["description"].startswith("probe: stale schema cache")
    assert shown[-1]["title"] == embed["title"] and shown.index(progress[0]) < len(shown) - 1
    audit = next(f["value"] for f in embed["fields"] if f["name"] == "Audit")
    assert "Bob" in audit and "recovered" in audit and "dev" in audit
    assert not record.errors and state.last_reload is not None and state.last_reload.actor.startswith("Bob")


async def test_protected_environment_needs_the_authors_confirmation(fake, make_stack):
    stack = make_stack()
    stack.sql(STALE_TABLE)
    envs = {"prod": stack.env_config(probe_tables=["orders"], protected=True)}
    alice, bob = fake.user_ids["alice"], fake.user_ids["bob"]
    async with running_bot(fake, envs, stack.env_vars, discord={"ops_role": "ops"}):
        # someone else clicks, then the author cancels: nothing is sent
        first = await fake.invoke_slash("reload", user_id=alice, options={"env": "prod"})
        await first.wait_acked()
        assert "is protected" in first.original.content
        intruder = await fake.click_button(first.original, first.original.buttons()[0]["custom_id"], user_id=bob)
        await intruder.wait_acked()
        assert intruder.ephemeral and "Only the person who asked" in intruder.original.content
        cancel = await fake.click_button(first.original, first.original.buttons()[1]["custom_id"], user_id=alice)
        await cancel.wait_acked()
        await first.wait_for(lambda r: "Cancelled by" in (r.original.content or ""))
        assert stack.sql("select count(*) from pg_stat_activity where query like 'select pg_notify%'").strip() == "0"

        # the author confirms: the reload runs and the message ends as an audit line
        third = await fake.invoke_slash("reload", user_id=alice, options={"env": "prod"})
        await third.wait_acked()
        confirm = await fake.click_button(third.original, third.original.buttons()[0]["custom_id"], user_id=alice)
        await confirm.wait_acked()
        await third.wait_for(lambda r: bool(r.original.embeds) and "Audit" in str(r.original.embeds), 15)
    assert third.original.embeds[0]["title"].startswith("✅ PROD healthy after")
    assert not (first.errors or third.errors or confirm.errors)


async def test_protected_reload_without_confirmation_times_out_and_sends_nothing(fake, make_stack):
    stack = make_stack()
    stack.sql(STALE_TABLE)
    envs = {"prod": stack.env_config(probe_tables=["orders"], protected=True)}
    async with running_bot(fake, envs, stack.env_vars, discord={"confirm_timeout_s": 0.5}) as bot:
        record = await fake.invoke_slash("reload", user_id=fake.user_ids["alice"], options={"env": "prod"})
        await record.wait_for(
            lambda r: r.original is not None and "No confirmation within" in (r.original.content or "")
        )
        assert bot.services.operator.reloads_in_window("prod") == 0
    assert not record.original.buttons() and not record.errors


async def test_reload_that_cannot_help_escalates_and_posts_the_critical_alert(fake, make_stack):
    stack = make_stack(steady_pgrst002=True)
    bad_statement_timeout(stack)
    await stack.wait_for_code("PGRST002")
    async with running_bot(fake, {"prod": stack.env_config()}, stack.env_vars):
        record = await fake.invoke_slash("reload", user_id=fake.user_ids["alice"], options={"env": "prod"})
        alert = await fake.wait_for_message(fake.ops_channel_id, lambda m: "CRITICAL" in m.embed_text(), 15)
        await record.wait_for(lambda r: bool(r.original.embeds) and "Audit" in str(r.original.embeds))
    final = record.original.embeds[0]
    assert final["title"] == "❌ PROD escalated: schema cache cannot load (PGRST002)"
    assert final["description"].count("cannot help") == 1
    text = "\n".join([final["description"], *(f["value"] for f in final["fields"])])
    assert text.count("RESET statement_timeout") == 1 and text.count("statement_timeout=1ms") == 1  # once each
    assert [f["name"] for f in final["fields"]][-1] == "Audit"
    oncall = fake.role_ids["oncall"]
    assert alert.content.startswith(f"<@&{oncall}>")
    assert [str(r) for r in alert.allowed_mentions["roles"]] == [str(oncall)] and not alert.allowed_mentions.get(
        "parse"
    )
    assert alert.mention_roles == [oncall] and not alert.mention_everyone
    *incident_buttons, link = alert.buttons()
    # No Retry reload: the bot itself says a reload cannot fix PGRST002.
    assert [b["label"] for b in incident_buttons] == ["Acknowledge", "Silence 1h"]
    assert link["style"] == 5 and link["url"] == "https://supabase.com/dashboard/project/testref/settings/general"
    text = alert.embed_text()
    assert "schema_cache_unavailable" in text and "Automated recovery cannot fix this" in text
    assert len([m for m in fake.channel_messages(fake.ops_channel_id) if "CRITICAL" in m.embed_text()]) == 1


async def test_monitor_alerts_once_and_resolves_once(fake, make_stack):
    stack = make_stack()
    async with running_bot(fake, {"prod": stack.env_config(auto_recover=False)}, stack.env_vars) as bot:
        monitor = bot.services.monitor
        await monitor.check("prod")
        stack.postgrest.stop()
        await monitor.check("prod")  # 1 failure: below the threshold
        await bot.sink.outbox.settle()  # delivery runs in its own task: wait until it has nothing left
        assert not fake.channel_messages(fake.ops_channel_id)
        await monitor.check("prod")  # 2 failures: alert
        await monitor.check("prod")  # still down: no repeat
        await monitor.check("prod")
        await bot.sink.outbox.settle()
        posts = fake.channel_messages(fake.ops_channel_id)
        assert len(posts) == 1 and "postgrest_down" in posts[0].embed_text()
        stack.postgrest.start()
        await monitor.check("prod")
        await fake.wait_for(lambda: len(fake.channel_messages(fake.ops_channel_id)) == 2)
        await monitor.check("prod")
        await bot.sink.outbox.settle()
        posts = fake.channel_messages(fake.ops_channel_id)
    assert len(posts) == 2
    alert, line = posts
    assert alert.embeds[0]["title"] == "✅ RESOLVED · PROD: PostgREST healthy again" and not alert.buttons()
    assert alert.embeds[0]["description"].startswith("Down for ") and not alert.content
    assert line.content.startswith("✅ PostgREST PROD resolved after")


async def test_monitor_auto_recovers_a_stale_cache_without_a_critical_alert(fake, make_stack):
    stack = make_stack()
    stack.sql(STALE_TABLE)
    async with running_bot(fake, {"dev": stack.env_config(probe_tables=["orders"])}, stack.env_vars) as bot:
        monitor = bot.services.monitor
        await monitor.check("dev")
        await monitor.check("dev")
        line = await fake.wait_for_message(fake.ops_channel_id)
        status = await fake.invoke_slash("status", user_id=fake.user_ids["carol"])
        await status.wait_acked()
    assert line.content.startswith("✅ Auto-recovered") and "CRITICAL" not in line.embed_text()
    assert monitor.states["dev"].verdict == "healthy"
    embed = status.original.embeds[0]
    assert "monitor" in embed["description"] and "uptime" in embed["description"]
    dev = embed["fields"][0]
    assert dev["name"] == "✅ DEV — healthy" and "last reload" in dev["value"] and "auto" in dev["value"]
    assert "· postgrest/12.0.2" in dev["value"]  # the version the environment reports (Server header)


async def test_channel_failure_falls_back_to_the_webhook(fake, make_stack, monkeypatch):
    stack = make_stack()
    monkeypatch.setenv("TEST_HOOK", fake.incoming_webhook_url)
    fake.deny_channel(fake.ops_channel_id)
    envs = {"prod": stack.env_config(auto_recover=False)}
    async with running_bot(fake, envs, stack.env_vars, discord={"webhook_url": {"env": "TEST_HOOK"}}) as bot:
        stack.postgrest.stop()
        await bot.services.monitor.check("prod")
        await bot.services.monitor.check("prod")
    assert len(fake.webhook_posts) == 1
    assert "CRITICAL" in str(fake.webhook_posts[0]) and "postgrest_down" in str(fake.webhook_posts[0])


async def test_a_broken_cog_does_not_stop_the_others(fake, make_stack):
    stack = make_stack()
    cogs = ("cogs.health", "cogs.no_such_cog", "cogs.status", "cogs.incidents")
    async with running_bot(fake, {"dev": stack.env_config()}, stack.env_vars, cogs=cogs) as bot:
        record = await fake.invoke_slash("status", user_id=fake.user_ids["carol"])
        await record.wait_acked()
    assert {c["name"] for c in fake.commands[fake.guild_id]} == {
        "health",
        "status",
        "incidents",
        "silence",
        "unsilence",
    }
    assert "cogs.no_such_cog" in bot.failed_cogs and not record.errors


async def test_health_names_the_cause_of_an_unhealthy_environment_and_its_fix(fake, make_stack):
    stack = make_stack()
    async with running_bot(fake, {"dev": stack.env_config(probe_tables=["orders"])}, stack.env_vars):
        record = await fake.invoke_slash("health", user_id=fake.user_ids["carol"], options={"env": "dev"})
        await record.wait_for(lambda r: bool(r.followups) or (r.original is not None and bool(r.original.embeds)), 10)
    message = record.followups[0] if record.followups else record.original
    (field,) = message.embeds[0]["fields"]
    # The API looked stale; the catalog says the table was never created.
    assert field["name"] == "❌ DEV — missing in the database"
    assert "**Cause:** table missing in the database" in field["value"]
    assert "apply the migration" in field["value"]


async def test_reload_refused_by_preflight_then_forced_with_confirmation(fake, make_stack):
    stack = make_stack(extra_env={"PGRST_DB_POOL": "1"})
    stack.sql(STALE_TABLE)
    stack.sql(f"ALTER ROLE authenticator IN DATABASE {stack.db} SET statement_timeout = '1ms'")
    alice = fake.user_ids["alice"]
    envs = {"dev": stack.env_config(probe_tables=["orders"])}
    # The forced reload applies the 1 ms setting and breaks the cache; it stops after two such re-checks. The
    # budget only matters when PostgREST is slow to reload on a busy machine (5 s, not 2 s: seen stale at 2 s).
    async with running_bot(fake, envs, stack.env_vars, recovery={"retries": 5, "delay_s": 1}) as bot:
        refused = await fake.invoke_slash("reload", user_id=alice, options={"env": "dev"})
        await refused.wait_for(lambda r: r.original is not None and "Audit" in str(r.original.embeds), 15)
        assert bot.services.operator.reloads_in_window("dev") == 0
        refusal = refused.original.embeds[0]
        fields = {f["name"]: f["value"] for f in refusal["fields"]}
        assert "pre-flight refused the NOTIFY" in refusal["description"] and "force:true" in refusal["description"]
        assert "statement_timeout=1ms" in fields["Cause"] and "RESET statement_timeout" in fields["Fix"]
        alert = await fake.wait_for_message(fake.ops_channel_id, lambda m: "CRITICAL" in m.embed_text(), 10)
        assert "Force the reload anyway" in alert.embed_text() and "refused by the pre-flight" in alert.embed_text()

        forced = await fake.invoke_slash("reload", user_id=alice, options={"env": "dev", "force": True})
        await forced.wait_acked()
        assert "**Force** a reload of **DEV**" in forced.original.content
        confirm = await fake.click_button(forced.original, forced.original.buttons()[0]["custom_id"], user_id=alice)
        await confirm.wait_acked()
        await forced.wait_for(lambda r: r.original is not None and "Audit" in str(r.original.embeds), 20)
        assert bot.services.operator.reloads_in_window("dev") == 1
    final = {f["name"]: f["value"] for f in forced.original.embeds[0]["fields"]}
    assert forced.original.embeds[0]["title"].startswith("❌ DEV escalated: ")
    assert "Alice (/reload force)" in final["Audit"] and "forced despite the pre-flight findings" in final["Audit"]
    assert "applied: it is why the schema cache cannot load" in final["Cause"]


async def test_drift_command_lists_the_missing_table_and_the_ungranted_one(fake, make_stack):
    stack = make_stack()
    stack.sql(STALE_TABLE + "CREATE TABLE public.audit (id int);")
    async with running_bot(fake, {"dev": stack.env_config()}, stack.env_vars):
        record = await fake.invoke_slash("drift", user_id=fake.user_ids["carol"], options={"env": "dev"})
        await record.wait_acked()
        await record.wait_for(lambda r: bool(r.followups) or (r.original is not None and bool(r.original.embeds)), 15)
    assert record.callbacks[0]["type"] == 5
    message = record.followups[0] if record.followups else record.original
    embed = message.embeds[0]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert embed["title"] == "⚠️ Schema drift DEV: stale"
    assert fields["Missing in the API (a reload helps)"] == "tables public.orders"
    assert fields["Not granted to the API roles (GRANT; a reload cannot help)"] == "tables public.audit"
