"""Restart from Discord, end to end: the fake Discord, a real PostgreSQL and PostgREST, and the local fake of the
Management API whose restart really stops and starts that PostgREST (tests/support/supabase_api.py)."""

from __future__ import annotations

from bot.core.records import AUDIT_INTERRUPTED
from bot.store.sqlite import Store
from tests.e2e.conftest import running_bot
from tests.support.prom import samples_of, value
from tests.support.supabase_api import REF, TOKEN, FakeManagementApi, restarts_postgrest

STALE_TABLE = "CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;"
RESTART_ID = "pgrst:incident:restart:{}"
ALICE = "Restart by Alice"


def restart_env(stack, api: FakeManagementApi, **overrides):
    supabase = {"project_ref": REF, "access_token": {"env": "SB_TOKEN"}, "api_url": api.url, "restart_poll_s": 0.2}
    env = stack.env_config(probe_tables=["orders"], reload_role="ops-prod", supabase=supabase, **overrides)
    return {"prod": env}, {**stack.env_vars, "SB_TOKEN": TOKEN}


def ephemeral_text(record) -> str:
    return " ".join(m.content or "" for m in [record.original, *record.followups] if m is not None)


async def critical_alert(fake, monitor):
    await monitor.check("prod")
    await monitor.check("prod")
    return await fake.wait_for_message(fake.ops_channel_id, lambda m: "CRITICAL" in m.embed_text(), 10)


async def test_a_stale_cache_nobody_hears_is_restarted_from_the_alert_and_resolves_after_restart(fake, make_stack, api):
    stack = make_stack(channel_enabled=False)  # PostgREST does not LISTEN: a NOTIFY cannot help
    stack.sql(STALE_TABLE)
    api.on_restart = restarts_postgrest(stack.postgrest, down_s=1.0)  # several looks see it down
    envs, environ = restart_env(stack, api, protected=True)
    async with running_bot(fake, envs, environ) as bot:
        alert = await critical_alert(fake, bot.services.monitor)
        incident_id = bot.services.monitor.states["prod"].alert.incident_id
        button = RESTART_ID.format(incident_id)
        assert [b["label"] for b in alert.buttons() if b.get("custom_id") == button] == ["Restart project"]
        assert not [b for b in alert.buttons() if b.get("style") == 5]  # the button replaces the link

        bob = await fake.click_button(alert, button, user_id=fake.user_ids["bob"])  # ops, not ops-prod
        await bob.wait_acked()
        assert "Restart project needs the **ops-prod** role" in ephemeral_text(bob)
        assert not [cb for cb in bob.callbacks if cb["type"] == 9]  # no modal for him

        alice = fake.user_ids["alice"]
        click = await fake.click_button(alert, button, user_id=alice)
        await click.wait_acked()
        (modal,) = [cb["data"] for cb in click.callbacks if cb["type"] == 9]
        inputs = [c["components"][0]["custom_id"] for c in modal["components"]]
        assert inputs == ["reason", "confirm"]  # prod is protected: its name is typed to confirm

        wrong = await fake.submit_modal(click, {"reason": "stale, nobody listens", "confirm": "dev"})
        await wrong.wait_for(lambda r: bool(r.followups), 10)
        assert "type its name (prod) to confirm" in ephemeral_text(wrong)
        assert api.calls("POST", "/restart") == []

        again = await fake.click_button(alert, button, user_id=alice)  # a refused modal is closed: ask anew
        await again.wait_acked()
        submit = await fake.submit_modal(again, {"reason": "stale, nobody listens", "confirm": "prod"})
        await submit.wait_for(lambda r: any("healthy again" in (m.content or "") for m in r.followups), 30)
        monitor = bot.services.monitor
        assert monitor.states["prod"].alert is None  # resolved by the restart's follow, not by a later check
        await bot.sink.outbox.settle()
        posted = fake.channel_messages(fake.ops_channel_id)
        audit = await bot.services.guard(lambda s: s.audit_log(10))
        actions = await bot.services.guard(lambda s: s.actions(incident_id))

    assert len(api.calls("POST", "/restart")) == 1
    assert "Restart of PROD sent" in ephemeral_text(submit)
    edited = fake.message(alert.id)
    texts = [str(version) for version in edited.history]
    descriptions = [v["embeds"][0].get("description", "") for v in edited.history]
    phases = [
        line.split(": ", 1)[1].split(" (")[0] for d in descriptions if (line := d.split("\n")[0]).startswith(ALICE)
    ]
    # Each phase once, in order (coming up may pass between two looks on a fast machine); then the resolved card.
    assert phases[:2] == ["sent to Supabase, waiting for the project to go down", "restarting"]
    assert phases in (phases[:2], [*phases[:2], "coming up"])
    final = edited.embeds[0]
    assert final["title"].startswith("✅ RESOLVED · PROD")
    assert "Resolution: recovered after a restart: healthy" in final["description"]
    assert "after the restart by Alice" in final["description"]
    assert not edited.buttons()
    resolved_lines = [m for m in posted if "resolved after" in (m.content or "")]
    assert len(resolved_lines) == 1 and "recovered after a restart" in resolved_lines[0].content
    assert len([m for m in posted if "CRITICAL" in str(m.history[0])]) == 1
    (entry,) = [a for a in audit if a.action == "restart" and "refused" not in a.outcome]
    assert entry.actor == "Alice (Restart button)" and entry.outcome.startswith("healthy after")
    assert any(kind == "restart" and detail == "stale, nobody listens" for _, _, kind, detail in actions)
    assert TOKEN not in str(texts) and TOKEN not in str(audit)


async def test_slash_restart_follows_the_restart_in_its_answer(fake, make_stack, api):
    stack = make_stack(channel_enabled=False)
    api.on_restart = restarts_postgrest(stack.postgrest)
    envs, environ = restart_env(stack, api)
    stack.sql(STALE_TABLE)
    async with running_bot(fake, envs, environ) as bot:
        record = await fake.invoke_slash("restart", user_id=fake.user_ids["alice"], options={"env": "prod"})
        await record.wait_acked()
        (modal,) = [cb["data"] for cb in record.callbacks if cb["type"] == 9]
        assert [c["components"][0]["custom_id"] for c in modal["components"]] == ["reason"]  # not protected
        submit = await fake.submit_modal(record, {"reason": "deploy left it stale"})
        await submit.wait_for(lambda r: r.original is not None and "healthy again" in (r.original.content or ""), 30)
        scraped = samples_of(bot.services.monitor.metrics.exposition().decode())
    assert '✅ Restart by Alice ("deploy left it stale"): healthy after' in submit.original.content
    assert not submit.ephemeral
    assert len(api.calls("POST", "/restart")) == 1
    assert value(scraped, "pgrst_ops_restarts_total", env="prod", outcome="healthy") == 1
    assert value(scraped, "pgrst_ops_restarts_total", env="prod", outcome="failed") == 0


async def test_slash_restart_without_the_role_is_refused(fake, make_stack, api):
    stack = make_stack()
    envs, environ = restart_env(stack, api)
    async with running_bot(fake, envs, environ):
        record = await fake.invoke_slash("restart", user_id=fake.user_ids["bob"], options={"env": "prod"})
        await record.wait_acked()
    assert "/restart prod needs the **ops-prod** role" in ephemeral_text(record)
    assert not [cb for cb in record.callbacks if cb["type"] == 9] and api.calls("POST", "/restart") == []


async def test_a_token_without_projects_write_is_said_and_nothing_follows(fake, make_stack, api):
    stack = make_stack()
    api.tokens[TOKEN] = frozenset({"projects:read"})
    envs, environ = restart_env(stack, api)
    async with running_bot(fake, envs, environ):
        record = await fake.invoke_slash("restart", user_id=fake.user_ids["alice"], options={"env": "prod"})
        await record.wait_acked()
        submit = await fake.submit_modal(record, {"reason": "try it"})
        await submit.wait_for(lambda r: r.original is not None and "failed" in (r.original.content or ""), 10)
    assert "403" in submit.original.content and "projects:write" in submit.original.content
    assert TOKEN not in submit.original.content


async def test_a_stop_while_following_a_restart_says_so_and_audits_it_as_interrupted(fake, make_stack, api, tmp_path):
    stack = make_stack()

    def stays_restarting(project) -> None:  # Supabase takes its time: the follow is still going at the stop
        project.set_status("RESTARTING")

    api.on_restart = stays_restarting
    envs, environ = restart_env(stack, api)
    db = tmp_path / "incidents.db"
    cfg = {"discord": {"shutdown_grace_s": 0.5}, "incidents": {"store_path": str(db)}}
    async with running_bot(fake, envs, environ, **cfg) as bot:
        record = await fake.invoke_slash("restart", user_id=fake.user_ids["alice"], options={"env": "prod"})
        await record.wait_acked()
        submit = await fake.submit_modal(record, {"reason": "slow restart"})
        await submit.wait_for(lambda r: r.original is not None and "restarting" in (r.original.content or ""), 10)
        await bot.close()  # what SIGTERM leads to
        await submit.wait_for(lambda r: "stopped while following" in (r.original.content or ""), 10)
    store = await Store(db).open()
    try:
        (entry,) = [a for a in await store.audit_log() if a.action == "restart"]
    finally:
        await store.close()
    assert (entry.status, entry.outcome) == (AUDIT_INTERRUPTED, "interrupted by shutdown after the restart was sent")
    assert len(api.calls("POST", "/restart")) == 1
