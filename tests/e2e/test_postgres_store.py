"""The bot with its incidents in PostgreSQL (`incidents.store: {env: ...}`): a CRITICAL, a restart that re-attaches
it from the store, and the recovery that edits the same message and posts one resolved line; the incident,
its message and its resolution are in the store's schema."""

from __future__ import annotations

import logging

from tests.e2e.conftest import running_bot
from tests.support.tcpproxy import TcpProxy

STORE_VAR = "PGRST_OPS_E2E_STORE_DSN"


def ops(fake):
    return fake.channel_messages(fake.ops_channel_id)


async def test_a_critical_and_its_resolution_live_in_the_postgresql_store(fake, make_stack, monkeypatch):
    stack = make_stack()
    stack.sql(f"GRANT CREATE ON DATABASE {stack.db} TO ops")  # the store's schema beside the monitored tables
    monkeypatch.setenv(STORE_VAR, stack.dsn("ops"))
    envs = {"prod": stack.env_config(auto_recover=False)}
    incidents = {"store": {"env": STORE_VAR}}
    stack.postgrest.stop()
    async with running_bot(fake, envs, stack.env_vars, incidents=incidents) as bot:
        assert bot.services.guard.store is not None and bot.services.guard.error is None
        await bot.services.monitor.check("prod")
        await bot.services.monitor.check("prod")
        alert = await fake.wait_for_message(fake.ops_channel_id, lambda m: "CRITICAL" in m.embed_text(), 10)
        await bot.sink.outbox.settle()
        await fake.wait_for(lambda: "t" in stack.sql("SELECT message_id IS NOT NULL FROM pgrst_ops.incidents"), 10)

    stack.postgrest.start()
    async with running_bot(fake, envs, stack.env_vars, incidents=incidents) as bot:
        assert bot.services.monitor.states["prod"].alert is not None  # re-attached from the PostgreSQL store
        await bot.services.monitor.check("prod")
        await fake.wait_for(lambda: len(ops(fake)) == 2, 10)
        await bot.services.monitor.check("prod")  # healthy again: nothing more to say
        await bot.sink.outbox.settle()
    posts = ops(fake)
    assert len(posts) == 2 and posts[0].id == alert.id  # the same CRITICAL was edited, no second one
    edited, line = posts
    assert edited.embeds[0]["title"] == "✅ RESOLVED · PROD: PostgREST healthy again" and not edited.buttons()
    assert line.content.startswith("✅ PostgREST PROD resolved after")
    rows = stack.sql(
        "SELECT env, verdict, trigger, message_id, resolution, resolved_at IS NOT NULL FROM pgrst_ops.incidents;"
        "SELECT count(*) FROM pgrst_ops.outbox WHERE sent_at IS NULL"
    )
    assert rows.splitlines() == [f"prod|postgrest_down|monitor|{alert.id}|recovered_by_itself|t", "0"]


async def test_a_postgresql_store_cut_mid_run_is_reported_without_its_dsn_and_alerts_still_go_out(
    fake, make_stack, monkeypatch, caplog
):
    stack = make_stack()
    stack.sql(f"GRANT CREATE ON DATABASE {stack.db} TO ops")
    envs = {"prod": stack.env_config(auto_recover=False)}
    password = stack.cluster.ops_password
    async with TcpProxy(stack.cluster.host, stack.cluster.port) as proxy:
        dsn = stack.cluster.dsn("ops", dbname=stack.db, host=proxy.host, port=proxy.port)
        monkeypatch.setenv(STORE_VAR, dsn)
        async with running_bot(fake, envs, stack.env_vars, incidents={"store": {"env": STORE_VAR}}) as bot:
            await bot.services.monitor.check("prod")
            await proxy.cut()  # the store's database is gone from here on
            stack.postgrest.stop()
            await bot.services.monitor.check("prod")
            await bot.services.monitor.check("prod")
            alert = await fake.wait_for_message(fake.ops_channel_id, lambda m: "CRITICAL" in m.embed_text(), 10)
            status = await fake.invoke_slash("status", user_id=fake.user_ids["carol"])
            await status.wait_acked()
            await proxy.restore()
            stack.postgrest.start()
            await bot.services.monitor.check("prod")
            await fake.wait_for(lambda: "RESOLVED" in fake.message(alert.id).embed_text(), 10)
            await bot.sink.outbox.settle()
    criticals = [m for m in ops(fake) if "CRITICAL" in str(m.history[0])]
    lines = [m for m in ops(fake) if (m.content or "").startswith("✅ PostgREST PROD resolved")]
    assert [m.id for m in criticals] == [alert.id] and "RESOLVED" in fake.message(alert.id).embed_text()
    assert len(lines) == 1  # exactly one resolved line
    shown = str(status.original.embeds[0]["fields"][0])
    assert f"the PostgreSQL store (environment variable {STORE_VAR}): " in shown, shown
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR" and "PostgreSQL store" in r.getMessage()]
    assert errors and all("in memory only" in e for e in errors), errors
    noise = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("asyncpg")]
    assert noise == [], noise  # the store's own line says it; the driver adds no traceback per retry
    for text in (shown, *errors):
        assert password not in text and "postgresql://" not in text, text
