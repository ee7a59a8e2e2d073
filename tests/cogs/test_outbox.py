"""The durable outbox: Discord 5xx, 429, timeouts and a crash between write and send end in exactly one message."""

from __future__ import annotations

import asyncio
import contextlib
import io

import httpx
from pydantic import SecretStr

from bot.console import ConsoleSink, RateLimiter, WebhookFallback
from bot.outbox import StoreGuard
from bot.store import Store
from tests.cogs.conftest import running_bot

MESSAGES = r"/channels/\d+/messages$"


def criticals(fake):
    return [m for m in fake.channel_messages(fake.ops_channel_id) if "CRITICAL" in str(m.history[0])]


async def unsent(path) -> int:
    store = await Store(path).open()
    try:
        return await store.outbox_count(unsent_only=True)
    finally:
        await store.close()


async def test_discord_503s_and_a_429_end_in_exactly_one_alert(fake, make_stack, tmp_path):
    stack = make_stack()
    stack.postgrest.stop()
    db = tmp_path / "incidents.db"
    fake.fail_next("POST", MESSAGES, status=503, times=2)
    fake.fail_next("POST", MESSAGES, retry_after=0.3)
    envs = {"prod": stack.env_config(auto_recover=False)}
    async with running_bot(fake, envs, stack.env_vars, incidents={"store_path": str(db)}) as bot:
        await bot.services.monitor.check("prod")
        await bot.services.monitor.check("prod")
        await asyncio.sleep(0.2)
    attempts = fake.requests_to("POST", MESSAGES)
    assert [r.status for r in attempts] == [503, 503, 429, 200]
    assert len({r.json["nonce"] for r in attempts}) == 1  # one row, one nonce, retried
    assert len(criticals(fake)) == 1 and len(fake.channel_messages(fake.ops_channel_id)) == 1
    assert await unsent(db) == 0


async def test_a_send_that_timed_out_but_landed_is_not_posted_twice(fake, make_stack, tmp_path):
    stack = make_stack()
    stack.postgrest.stop()
    fake.fail_next("POST", MESSAGES, hang=True)  # Discord takes the message but answers too late
    envs = {"prod": stack.env_config(auto_recover=False)}
    cfg = {"store_path": str(tmp_path / "incidents.db"), "send_timeout_s": 1}
    async with running_bot(fake, envs, stack.env_vars, incidents=cfg) as bot:
        await bot.services.monitor.check("prod")
        await bot.services.monitor.check("prod")  # attempt 1 times out, attempt 2 posts
        assert len(criticals(fake)) == 1
        fake.release_hangs()  # the first request now reaches Discord, with the same nonce
        await fake.wait_for(lambda: fake.nonce_repeats == 1)
    assert len(criticals(fake)) == 1 and len(fake.channel_messages(fake.ops_channel_id)) == 1


async def test_crash_between_write_and_send_ends_in_one_message_edited_on_recovery(fake, make_stack, tmp_path):
    stack = make_stack()
    stack.postgrest.stop()
    db = tmp_path / "incidents.db"
    envs = {"prod": stack.env_config(auto_recover=False)}
    fake.fail_next("POST", MESSAGES, hang=True)
    async with running_bot(fake, envs, stack.env_vars, incidents={"store_path": str(db)}) as bot:
        monitor = bot.services.monitor
        await monitor.check("prod")
        check = asyncio.create_task(monitor.check("prod"))  # posts the CRITICAL: the request hangs
        await fake.wait_for(lambda: len(fake.requests_to("POST", MESSAGES)) == 1)
        check.cancel()  # the bot dies before Discord answers
        with contextlib.suppress(asyncio.CancelledError):
            await check
    assert await unsent(db) == 1 and not criticals(fake)
    fake.release_hangs()  # ... but Discord did create the message
    await fake.wait_for(lambda: len(criticals(fake)) == 1)
    (alert,) = criticals(fake)

    async with running_bot(fake, envs, stack.env_vars, incidents={"store_path": str(db)}) as bot:
        await asyncio.sleep(0.2)
        assert fake.nonce_repeats == 1 and len(criticals(fake)) == 1  # the replay was recognised, not re-posted
        stack.postgrest.start()
        await bot.services.monitor.check("prod")
        await fake.wait_for(lambda: "RESOLVED" in fake.message(alert.id).embed_text(), 10)
        await fake.wait_for(lambda: len(fake.channel_messages(fake.ops_channel_id)) == 2)
    assert await unsent(db) == 0
    async with running_bot(fake, envs, stack.env_vars, incidents={"store_path": str(db)}):
        await asyncio.sleep(0.2)  # a third start sends nothing again
    assert len(fake.channel_messages(fake.ops_channel_id)) == 2 and len(fake.requests_to("POST", MESSAGES)) == 3


async def test_a_message_written_but_never_sent_goes_out_once_after_a_restart(fake, make_stack, tmp_path):
    stack = make_stack()
    db = tmp_path / "incidents.db"
    store = await Store(db).open()
    await store.outbox_add("prod", "post", {"content": "🔧 queued before the crash"}, {}, "crashnonce1")
    await store.close()
    envs = {"prod": stack.env_config()}
    for _ in range(2):
        async with running_bot(fake, envs, stack.env_vars, incidents={"store_path": str(db)}):
            await fake.wait_for(lambda: bool(fake.channel_messages(fake.ops_channel_id)))
            await asyncio.sleep(0.2)
    (message,) = fake.channel_messages(fake.ops_channel_id)
    assert message.content == "🔧 queued before the crash" and await unsent(db) == 0


async def test_webhook_posts_queue_under_discords_limits_and_none_is_dropped(fake):
    limiter = RateLimiter(((2, 0.5), (4, 2.0)))  # scaled-down 5 per 2 s / 30 per minute
    async with httpx.AsyncClient() as client:
        hook = WebhookFallback(client, SecretStr(fake.incoming_webhook_url), limiter)
        ids = await asyncio.gather(*(hook.post({"content": f"line {i}"}) for i in range(6)))
    assert all(ids) and [p["content"] for p in fake.webhook_posts] == [f"line {i}" for i in range(6)]
    times = [r.time for r in fake.requests_to("POST", r"/webhooks/")]
    assert all(times[i + 2] - times[i] >= 0.45 for i in range(len(times) - 2))
    assert all(times[i + 4] - times[i] >= 1.95 for i in range(len(times) - 4))


async def test_console_mode_webhook_copies_go_through_the_outbox(fake, tmp_path):
    db = tmp_path / "incidents.db"
    store = await Store(db).open()
    fake.fail_next("POST", r"/webhooks/", status=500, times=3)  # post_webhook's own 3 tries all fail
    out = io.StringIO()
    try:
        async with httpx.AsyncClient() as client:
            sink = ConsoleSink(WebhookFallback(client, SecretStr(fake.incoming_webhook_url)), out, StoreGuard(store))
            payload = {"content": "PostgREST PROD is down", "embeds": [{"title": "🔥 CRITICAL"}]}
            handle = await sink.post_alert("prod", payload, restart_url=None, incident_id=1)
            await sink.resolve_alert("prod", handle, {"content": "✅ resolved", "embeds": [{"title": "✅ RESOLVED"}]})
        pending = await store.outbox_count(unsent_only=True)
    finally:
        await store.close()
    assert "[CRITICAL] prod" in out.getvalue()
    (message,) = fake.channel_messages(fake.ops_channel_id)  # one post despite the failures, then edited
    assert str(message.id) == handle["webhook_message_id"] and message.content == "✅ resolved"
    assert pending == 0
