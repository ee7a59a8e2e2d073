"""Incidents end to end: the fake Discord, real PostgREST/PostgreSQL, and the SQLite store on disk.

What an operator sees: how many messages, which text, which buttons; what the incident log says.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from bot.store.sqlite import Store
from tests.bot.test_cli import acli
from tests.conftest import write_config
from tests.e2e.conftest import running_bot

STALE_TABLE = "CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;"


def store_cfg(tmp_path, **extra):
    return {"store_path": str(tmp_path / "incidents.db"), **extra}


def ops(fake):
    return fake.channel_messages(fake.ops_channel_id)


def criticals(fake):
    """Messages that were posted as a CRITICAL alert (whatever they say now)."""
    return [m for m in ops(fake) if "CRITICAL" in str(m.history[0])]


def said(text):
    """Predicate for InteractionRecord.wait_for: one of its messages contains text."""
    return lambda r: any(text in (m.content or "") for m in r.messages)


async def read_incidents(path):
    store = await Store(path).open()
    try:
        return await store.recent_incidents(limit=50)
    finally:
        await store.close()


async def open_alert(fake, bot, env="prod"):
    monitor = bot.services.monitor
    await monitor.check(env)
    await monitor.check(env)
    return await fake.wait_for_message(fake.ops_channel_id, lambda m: "CRITICAL" in m.embed_text(), 10)


async def test_restart_mid_incident_edits_the_same_message_on_recovery(fake, make_stack, tmp_path):
    stack = make_stack()
    envs = {"prod": stack.env_config(auto_recover=False)}
    stack.postgrest.stop()
    async with running_bot(fake, envs, stack.env_vars, incidents=store_cfg(tmp_path)) as bot:
        alert = await open_alert(fake, bot)
        assert [b["label"] for b in alert.buttons()] == [
            "Acknowledge",
            "Silence 1h",
            "Restart project",
        ]  # no reload: down

    async with running_bot(fake, envs, stack.env_vars, incidents=store_cfg(tmp_path)) as bot:
        assert bot.services.monitor.states["prod"].alert is not None  # re-attached from the store
        for _ in range(3):
            await bot.services.monitor.check("prod")  # still down after the restart: no second CRITICAL
        await asyncio.sleep(0.2)
        assert len(ops(fake)) == 1
    stack.postgrest.start()  # recovers while the bot is down

    async with running_bot(fake, envs, stack.env_vars, incidents=store_cfg(tmp_path)) as bot:
        await bot.services.monitor.check("prod")
        await fake.wait_for(lambda: len(ops(fake)) == 2, 10)
        await bot.services.monitor.check("prod")
        await asyncio.sleep(0.2)
    posts = ops(fake)
    assert len(posts) == 2 and posts[0].id == alert.id  # no second CRITICAL: the same message was edited
    edited, line = posts
    assert edited.embeds[0]["title"] == "✅ RESOLVED · PROD: PostgREST healthy again" and not edited.buttons()
    assert "Resolution: recovered by itself" in edited.embed_text() and not edited.content
    assert line.content.startswith("✅ PostgREST PROD resolved after") and "recovered by itself" in line.content
    (incident,) = await read_incidents(tmp_path / "incidents.db")
    assert incident.resolution == "recovered_by_itself" and incident.message_id == alert.id
    assert (incident.verdict, incident.trigger) == ("postgrest_down", "monitor")


async def test_ack_button_records_who_and_stops_reminders(fake, make_stack, tmp_path):
    stack = make_stack()
    envs = {"prod": stack.env_config(auto_recover=False)}
    stack.postgrest.stop()
    cfg = store_cfg(tmp_path, reminder_interval_s=60)
    async with running_bot(fake, envs, stack.env_vars, incidents=cfg) as bot:
        monitor = bot.services.monitor
        alert = await open_alert(fake, bot)
        real_now = monitor.now
        monitor.now = lambda: real_now() + timedelta(seconds=61)  # a reminder is due
        await monitor.check("prod")
        reminder = await fake.wait_for_message(fake.ops_channel_id, lambda m: "Reminder" in (m.content or ""))
        assert reminder.message_reference["message_id"] == str(alert.id)  # a reply to the alert
        assert "down for" in reminder.content and "nobody has acknowledged" in reminder.content

        (ack_id,) = [b["custom_id"] for b in alert.buttons() if b.get("label") == "Acknowledge"]
        denied = await fake.click_button(alert, ack_id, user_id=fake.user_ids["mallory"])
        await denied.wait_acked()
        assert denied.ephemeral and "needs the **ops** role" in denied.original.content
        click = await fake.click_button(alert, ack_id, user_id=fake.user_ids["bob"])
        await click.wait_for(said("You acknowledged"))
        await fake.wait_for(lambda: "Acknowledged by Bob" in (fake.message(alert.id).content or ""))

        before = len(ops(fake))
        monitor.now = lambda: real_now() + timedelta(seconds=183)  # two more intervals
        await monitor.check("prod")
        await monitor.check("prod")
        await bot.sink.outbox.settle()
        after = len(ops(fake))
        taken = fake.message(alert.id)  # edited in place later: keep what it showed now
        buttons = {b["label"]: dict(b) for b in taken.buttons()}
        taken_text = taken.embeds[0]["description"]
        stack.postgrest.start()
        await stack.wait_for_code("first judgment")
        monitor.now = real_now
        await monitor.check("prod")
        await fake.wait_for(lambda: "RESOLVED" in fake.message(alert.id).embed_text())
        await bot.sink.outbox.settle()
    assert not click.errors and "You acknowledged" in click.messages[-1].content
    assert after == before  # no reminder once acknowledged
    assert buttons["Acknowledged"].get("disabled") and "Acknowledge" not in buttons  # taken: cannot be pressed
    assert not buttons["Silence 1h"].get("disabled")  # still actionable
    assert taken_text.startswith("Acknowledged by Bob, <t:")
    resolved = fake.message(alert.id)
    assert "Acknowledged by Bob" in resolved.embeds[0]["description"] and not resolved.buttons()
    resolved_lines = [m for m in ops(fake) if "resolved" in (m.content or "").lower()]
    assert len(resolved_lines) == 1 and resolved_lines[0].id != alert.id  # exactly one resolved line
    (incident,) = await read_incidents(tmp_path / "incidents.db")
    assert incident.acknowledged_by == "Bob" and incident.acknowledged_at is not None


async def test_silence_holds_alerts_and_its_expiry_is_announced(fake, make_stack, tmp_path):
    stack = make_stack()
    envs = {"prod": stack.env_config(auto_recover=False)}
    async with running_bot(fake, envs, stack.env_vars, incidents=store_cfg(tmp_path)) as bot:
        monitor = bot.services.monitor
        assert fake.command("silence")["options"][2]["name"] == "reason"
        assert fake.command("silence")["options"][2]["required"]
        refused = await fake.invoke_slash(
            "silence", user_id=fake.user_ids["mallory"], options={"env": "prod", "duration": "1h", "reason": "deploy"}
        )
        await refused.wait_acked()
        assert refused.ephemeral and "needs the **ops** role" in refused.original.content
        record = await fake.invoke_slash(
            "silence", user_id=fake.user_ids["bob"], options={"env": "prod", "duration": "1h", "reason": "migration"}
        )
        await record.wait_for(said("silenced until"))
        announce = await fake.wait_for_message(fake.ops_channel_id, lambda m: "silenced by Bob" in (m.content or ""))
        assert "migration" in announce.content and "/unsilence prod" in announce.content

        stack.postgrest.stop()
        for _ in range(3):
            await monitor.check("prod")  # probes go on ...
        await bot.sink.outbox.settle()  # everything handed over has been delivered
        assert not criticals(fake) and monitor.states["prod"].alert.held  # ... alerts are held

        status = await fake.invoke_slash("status", user_id=fake.user_ids["carol"])
        await status.wait_acked()
        opened = status.original.embeds[0]["fields"][0]
        assert opened["name"] == "Open incidents" and "alert held" in opened["value"] and "silenced" in opened["value"]

        real_now = monitor.now
        monitor.now = lambda: real_now() + timedelta(hours=2)  # the silence runs out
        await monitor.check("prod")
        expired = await fake.wait_for_message(
            fake.ops_channel_id, lambda m: "Silence on PROD ended" in (m.content or "")
        )
        alert = await fake.wait_for_message(fake.ops_channel_id, lambda m: "CRITICAL" in m.embed_text())
        await monitor.check("prod")
        await asyncio.sleep(0.2)
    assert "still unhealthy" in expired.content and "set by Bob: migration" in expired.content
    assert len(criticals(fake)) == 1 and alert.buttons()
    store = await Store(tmp_path / "incidents.db").open()
    try:
        audit = [(a.actor, a.action, a.env) for a in await store.audit_log()]
    finally:
        await store.close()
    assert ("Bob", "silence", "prod") in audit


async def test_maintenance_window_holds_alerts_until_it_ends(fake, make_stack):
    stack = make_stack()
    start = datetime.now(UTC) - timedelta(minutes=1)
    window = {
        "weekday": start.strftime("%a").lower(),
        "start": start.strftime("%H:%M"),
        "duration_min": 60,
        "timezone": "UTC",
        "reason": "Sunday upgrade",
    }
    envs = {"prod": stack.env_config(auto_recover=False, maintenance=[window])}
    async with running_bot(fake, envs, stack.env_vars) as bot:
        monitor = bot.services.monitor
        stack.postgrest.stop()
        for _ in range(3):
            await monitor.check("prod")
        notice = await fake.wait_for_message(fake.ops_channel_id, lambda m: "maintenance window" in (m.content or ""))
        await asyncio.sleep(0.2)
        assert not criticals(fake) and len(ops(fake)) == 1
        real_now = monitor.now
        monitor.now = lambda: real_now() + timedelta(hours=2)
        await monitor.check("prod")
        over = await fake.wait_for_message(fake.ops_channel_id, lambda m: "is over" in (m.content or ""))
        await fake.wait_for(lambda: len(criticals(fake)) == 1)
    assert "Sunday upgrade" in notice.content and "alerts are held" in notice.content
    assert "still unhealthy" in over.content


async def test_a_flapping_environment_gets_one_alert_until_it_is_stable(fake, make_stack):
    stack = make_stack()
    envs = {"prod": stack.env_config(auto_recover=False)}
    flaps = {"flap_flips": 2, "flap_window_s": 600}
    async with running_bot(
        fake, envs, stack.env_vars, monitor={"failure_threshold": 1}, incidents={"store_path": ":memory:", **flaps}
    ) as bot:
        monitor = bot.services.monitor
        await monitor.check("prod")
        for _ in range(3):
            stack.postgrest.stop()
            await monitor.check("prod")
            stack.postgrest.start()
            await monitor.check("prod")
        await asyncio.sleep(0.3)
        during = len(ops(fake))
        flapping = [m for m in ops(fake) if "FLAPPING" in str(m.history[0])]
        assert len(flapping) == 1 and "flapping" in (flapping[0].content or "")
        assert monitor.states["prod"].alert is not None  # stays open while it flips
        real_now = monitor.now
        monitor.now = lambda: real_now() + timedelta(hours=1)  # no flip for the whole window: stable
        await monitor.check("prod")
        await fake.wait_for(lambda: len(ops(fake)) == during + 1)
        await monitor.check("prod")
        await asyncio.sleep(0.2)
    # first outage: CRITICAL + resolved line; then ONE flapping alert (not 2 more CRITICALs + lines) + its line
    assert during == 3 and len(criticals(fake)) == 1
    assert flapping[0].embeds[0]["title"].startswith("✅ RESOLVED") and not flapping[0].buttons()
    lines = [m for m in ops(fake) if not m.embeds and (m.content or "").startswith("✅ PostgREST PROD resolved")]
    assert len(lines) == 2


async def test_when_every_environment_is_unreachable_the_bot_says_it_may_have_lost_the_network(fake, make_stack):
    a, b = make_stack(), make_stack()
    envs = {"dev": a.env_config(auto_recover=False), "prod": b.env_config(auto_recover=False)}
    async with running_bot(fake, envs, {**a.env_vars, **b.env_vars}) as bot:
        monitor = bot.services.monitor
        a.postgrest.stop()
        b.postgrest.stop()
        for _ in range(3):
            await monitor.check("dev")
            await monitor.check("prod")
        await bot.sink.outbox.settle()  # everything handed over has been delivered
        assert not criticals(fake)
        (lost,) = ops(fake)
        a.postgrest.start()
        await monitor.check("dev")
        back = await fake.wait_for_message(fake.ops_channel_id, lambda m: "Network is back" in (m.content or ""))
        await monitor.check("prod")
        alert = await fake.wait_for_message(fake.ops_channel_id, lambda m: "CRITICAL" in m.embed_text())
    assert "may have lost its network" in lost.content and "DEV" in lost.content and "PROD" in lost.content
    assert back.content.startswith("Network is back")
    assert "PROD" in alert.content and len(criticals(fake)) == 1


async def test_retry_reload_button_fixes_a_stale_cache_and_resolves_the_incident(fake, make_stack, tmp_path):
    stack = make_stack()
    stack.sql(STALE_TABLE)
    envs = {"prod": stack.env_config(probe_tables=["orders"], auto_recover=False)}
    async with running_bot(fake, envs, stack.env_vars, incidents=store_cfg(tmp_path)) as bot:
        alert = await open_alert(fake, bot)
        (retry,) = [b["custom_id"] for b in alert.buttons() if b.get("label") == "Retry reload"]
        click = await fake.click_button(alert, retry, user_id=fake.user_ids["bob"])
        await click.wait_for(said("healthy after"), 15)
        await fake.wait_for(lambda: "RESOLVED" in fake.message(alert.id).embed_text(), 10)
        await fake.wait_for(lambda: len(ops(fake)) == 2)
        edited, line = ops(fake)
        record = await fake.invoke_slash("incidents", user_id=fake.user_ids["carol"], options={"env": "prod"})
        await record.wait_for(lambda r: any(m.embeds for m in r.messages), 10)
    assert not edited.buttons() and "Resolution: fixed by a manual reload" in edited.embed_text()
    assert "fixed by a manual reload" in line.content
    embed = next(m for m in record.messages if m.embeds).embeds[0]
    assert "manual_reload" in embed["description"] and "PROD" in embed["description"]
    assert "stale_schema_cache" in embed["description"] and "(404" in embed["description"]
    (mttr,) = embed["fields"]
    assert mttr["name"] == "MTTR 30 days · PROD" and "over 1 incident" in mttr["value"]
    (incident,) = await read_incidents(tmp_path / "incidents.db")
    assert incident.resolution == "manual_reload"


async def test_a_broken_store_never_stops_alerting(fake, make_stack, tmp_path):
    path = tmp_path / "broken.db"
    path.write_bytes(b"garbage, not sqlite" * 500)
    stack = make_stack()
    envs = {"prod": stack.env_config(auto_recover=False)}
    stack.postgrest.stop()
    async with running_bot(fake, envs, stack.env_vars, incidents={"store_path": str(path)}) as bot:
        alert = await open_alert(fake, bot)
        (ack_id,) = [b["custom_id"] for b in alert.buttons() if b.get("label") == "Acknowledge"]
        click = await fake.click_button(alert, ack_id, user_id=fake.user_ids["bob"])
        await click.wait_for(said("You acknowledged"))
        await fake.wait_for(lambda: "Acknowledged by Bob" in (fake.message(alert.id).content or ""))
        status = await fake.invoke_slash("status", user_id=fake.user_ids["carol"])
        await status.wait_acked()
        incidents = await fake.invoke_slash("incidents", user_id=fake.user_ids["carol"])
        await incidents.wait_acked()
    assert len(criticals(fake)) == 1 and alert.buttons()[-1]["label"] == "Restart project"
    assert "could not be opened" in str(status.original.embeds[0]["fields"][0])
    assert incidents.ephemeral and "No incident log" in incidents.original.content


async def test_reload_and_buttons_are_in_the_audit_log_and_protected_retry_asks_for_reload(fake, make_stack, tmp_path):
    stack = make_stack()
    stack.sql(STALE_TABLE)
    envs = {"prod": stack.env_config(probe_tables=["orders"], auto_recover=False, protected=True)}
    async with running_bot(fake, envs, stack.env_vars, incidents=store_cfg(tmp_path)) as bot:
        alert = await open_alert(fake, bot)
        (retry,) = [b["custom_id"] for b in alert.buttons() if b.get("label") == "Retry reload"]
        click = await fake.click_button(alert, retry, user_id=fake.user_ids["alice"])
        await click.wait_acked()
        assert click.ephemeral and "is protected: use `/reload prod`" in click.original.content
        assert bot.services.operator.reloads_in_window("prod") == 0
        record = await fake.invoke_slash("reload", user_id=fake.user_ids["alice"], options={"env": "prod"})
        await record.wait_acked()
        confirm = await fake.click_button(
            record.original, record.original.buttons()[0]["custom_id"], user_id=fake.user_ids["alice"]
        )
        await confirm.wait_acked()
        await record.wait_for(lambda r: "Audit" in str(r.original.embeds), 15)
        await asyncio.sleep(0.3)
        await bot.services.monitor.check("prod")
        await fake.wait_for(lambda: "RESOLVED" in fake.message(alert.id).embed_text(), 10)
    store = await Store(tmp_path / "incidents.db").open()
    try:
        audit = [(a.actor, a.action, a.env, a.outcome) for a in await store.audit_log()]
        (incident,) = await store.recent_incidents()
        actions = [(actor, kind) for _, actor, kind, _ in await store.actions(incident.id)]
    finally:
        await store.close()
    assert ("Alice (/reload)", "reload", "prod", "recovered") in audit
    assert incident.resolution == "manual_reload"
    assert actions[0] == ("monitor", "opened") and ("Alice (/reload)", "reload") in actions
    assert actions[-1] == ("monitor", "resolved")


async def test_silence_button_holds_reminders_and_unsilence_announces_it(fake, make_stack, tmp_path):
    stack = make_stack()
    envs = {"prod": stack.env_config(auto_recover=False)}
    stack.postgrest.stop()
    async with running_bot(fake, envs, stack.env_vars, incidents=store_cfg(tmp_path, reminder_interval_s=60)) as bot:
        monitor = bot.services.monitor
        alert = await open_alert(fake, bot)
        (silence_id,) = [b["custom_id"] for b in alert.buttons() if b.get("label") == "Silence 1h"]
        click = await fake.click_button(alert, silence_id, user_id=fake.user_ids["bob"])
        await click.wait_for(said("silenced for 1 h 0 min"))
        line = await fake.wait_for_message(fake.ops_channel_id, lambda m: "silenced by Bob" in (m.content or ""))
        real_now = monitor.now
        monitor.now = lambda: real_now() + timedelta(seconds=61)  # a reminder would be due, but for the silence
        await monitor.check("prod")
        await asyncio.sleep(0.2)
        assert not [m for m in ops(fake) if "Reminder" in (m.content or "")]  # held while silenced
        record = await fake.invoke_slash("unsilence", user_id=fake.user_ids["bob"], options={"env": "prod"})
        await record.wait_for(said("unsilenced"))
        back = await fake.wait_for_message(fake.ops_channel_id, lambda m: "unsilenced by Bob" in (m.content or ""))
        await monitor.check("prod")
        reminder = await fake.wait_for_message(fake.ops_channel_id, lambda m: "Reminder" in (m.content or ""))
    assert "Silence button on incident #1" in line.content and "Alerts are live again" not in back.content
    assert "still unhealthy" in back.content and reminder.message_reference["message_id"] == str(alert.id)
    assert len(criticals(fake)) == 1


async def test_a_store_failing_mid_run_is_reported_and_alerts_still_go_out(fake, make_stack, tmp_path, caplog):
    stack = make_stack()
    envs = {"prod": stack.env_config(auto_recover=False)}
    async with running_bot(fake, envs, stack.env_vars, incidents=store_cfg(tmp_path)) as bot:
        await bot.services.monitor.check("prod")
        await bot.services.store.call(lambda: bot.services.store.conn.execute("DROP TABLE incident_actions"))
        stack.postgrest.stop()
        alert = await open_alert(fake, bot)
        stack.postgrest.start()
        await bot.services.monitor.check("prod")
        await fake.wait_for(lambda: len(ops(fake)) == 2)
        status = await fake.invoke_slash("status", user_id=fake.user_ids["carol"])
        await status.wait_acked()
    assert "RESOLVED" in alert.embed_text() and ops(fake)[1].content.startswith("✅ PostgREST PROD resolved")
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR" and "incident store" in r.getMessage()]
    assert len(errors) == 1 and "no such table" in errors[0] and "in memory only" in errors[0]
    assert "no such table" in str(status.original.embeds[0]["fields"][0])


async def test_cli_fix_runs_are_in_the_incident_log_and_the_monitor_takes_an_open_one_over(fake, make_stack, tmp_path):
    stack = make_stack()
    stack.sql("CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;")
    envs = {"prod": stack.env_config(probe_tables=["orders"], auto_recover=False)}
    incidents = store_cfg(tmp_path)
    config = write_config(tmp_path / "c.yaml", envs, incidents=incidents)
    async with running_bot(fake, envs, stack.env_vars, incidents=incidents) as bot:
        fixed = await acli(config, "fix", "--env", "prod", "--no-alert", env=stack.env_vars)
        assert fixed.returncode == 0 and "Incident log: incident #1 recorded (resolved: manual_reload)" in fixed.stdout
        stack.postgrest.stop()
        down = await acli(config, "fix", "--env", "prod", "--no-alert", env=stack.env_vars)
        assert down.returncode == 1 and "incident #2 opened" in down.stdout
        monitor = bot.services.monitor
        await monitor.check("prod")
        await monitor.check("prod")
        await fake.wait_for_message(fake.ops_channel_id, lambda m: "CRITICAL" in m.embed_text(), 10)
        assert monitor.states["prod"].alert is not None and monitor.states["prod"].alert.incident_id == 2
    logged = await read_incidents(tmp_path / "incidents.db")
    by_id = {i.id: i for i in logged}
    assert set(by_id) == {1, 2}  # the monitor took #2 over instead of opening a third
    assert by_id[1].trigger == "cli" and by_id[1].resolution == "manual_reload"
    assert by_id[2].trigger == "cli" and by_id[2].message_id is not None
