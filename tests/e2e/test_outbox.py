"""The durable outbox: Discord 5xx, 429, timeouts and a crash between write and send end in exactly one message."""

from __future__ import annotations

import asyncio
import contextlib
import io

import httpx
from pydantic import SecretStr

from bot.delivery.console import ConsoleSink
from bot.delivery.guard import StoreGuard
from bot.delivery.outbox import FALLBACK_AFTER_S, MAX_RETRY_S, retry_delay, use_fallback
from bot.delivery.webhook import RateLimiter, WebhookFallback
from bot.store.sqlite import Store
from tests.e2e.conftest import running_bot

MESSAGES = r"/channels/\d+/messages$"
OUTAGE_S = 30 * 60


class FakeClock:
    """The outbox's clock and sleep: minutes of retries pass in milliseconds."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds
        await asyncio.sleep(0)


class Outage:
    """The bot's own transport, while the fake Discord answers 503 to every message request until `until`."""

    def __init__(self, inner, fake, clock: FakeClock, until: float) -> None:
        self.inner, self.fake, self.clock, self.until = inner, fake, clock, until

    async def deliver(self, env, kind, payload, meta, nonce):
        if self.clock() < self.until:
            self.fake.fail_next("*", r"/channels/\d+/messages", status=503)
        return await self.inner.deliver(env, kind, payload, meta, nonce)


def discord_down_for(bot, fake, seconds: float) -> FakeClock:
    outbox = bot.sink.outbox
    clock = FakeClock()
    outbox.clock, outbox.sleep = clock, clock.sleep
    outbox.transport = Outage(outbox.transport, fake, clock, seconds)
    return clock


async def run_for(bot, clock: FakeClock, until: float, schedule: dict[float, list[tuple[str, str]]]) -> None:
    """Post the scheduled lines at their fake time; the monitor's periodic flush every 30 s in between."""
    while clock.t < until:
        for at in [at for at in schedule if at <= clock.t]:
            for env, text in schedule.pop(at):
                await bot.sink.post_line(env, {"content": text})
        await bot.services.monitor.flush_outbox()
        clock.t += 30


SCHEDULE = {
    0: [("prod", "prod 1"), ("staging", "staging 1")],
    300: [("prod", "prod 2")],
    720: [("staging", "staging 2")],
    1200: [("prod", "prod 3"), ("prod", "prod 4")],
}


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
        await fake.wait_for(lambda: len(criticals(fake)) == 1, what="the retried post")
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
    # Arrival times: the limiter paces sends (2 per 0.5 s, 4 per 2 s), and on a loaded machine one arrival can
    # lag its send by 0.2 s or more. Without the limiter all six arrive within a few milliseconds, so these
    # bounds (half the windows and more) still tell the two apart.
    times = [r.time for r in fake.requests_to("POST", r"/webhooks/")]
    assert all(times[i + 2] - times[i] >= 0.25 for i in range(len(times) - 2))
    assert all(times[i + 4] - times[i] >= 1.5 for i in range(len(times) - 4))


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
    assert "  CRITICAL  prod\n" in out.getvalue()
    (message,) = fake.channel_messages(fake.ops_channel_id)  # one post despite the failures, then edited
    assert str(message.id) == handle["webhook_message_id"] and message.content == "✅ resolved"
    assert pending == 0


def test_retries_back_off_to_a_cap_and_only_posts_fall_back():
    assert [retry_delay(n) for n in (1, 2, 3, 4, 5, 50)] == [5, 10, 20, 40, MAX_RETRY_S, MAX_RETRY_S]
    assert retry_delay(1, retry_after=30) == 30 and retry_delay(1, retry_after=10_000) == MAX_RETRY_S
    assert not use_fallback("post", None, 1000) and not use_fallback("post", 0, FALLBACK_AFTER_S - 1)
    assert use_fallback("post", 0, FALLBACK_AFTER_S) and not use_fallback("edit", 0, 10 * FALLBACK_AFTER_S)


async def test_discord_down_for_30_minutes_every_message_lands_once_in_order(fake, make_stack, tmp_path):
    stack = make_stack()
    db = tmp_path / "incidents.db"
    envs = {"prod": stack.env_config(), "staging": stack.env_config()}
    async with running_bot(fake, envs, stack.env_vars, incidents={"store_path": str(db)}) as bot:
        clock = discord_down_for(bot, fake, OUTAGE_S)
        await run_for(bot, clock, OUTAGE_S, dict(SCHEDULE))
        failed = len(fake.requests_to("POST", MESSAGES))
        assert not fake.channel_messages(fake.ops_channel_id) and await unsent(db) == 6
        await run_for(bot, clock, OUTAGE_S + 2 * MAX_RETRY_S, {})  # Discord is back
        attempts = await bot.services.store.call(
            lambda: bot.services.store.conn.execute("SELECT max(attempts) FROM outbox").fetchone()[0]
        )
    contents = [m.content for m in fake.channel_messages(fake.ops_channel_id)]
    assert sorted(contents) == sorted(t for lines in SCHEDULE.values() for _, t in lines)  # each exactly once
    assert [c for c in contents if c.startswith("prod")] == ["prod 1", "prod 2", "prod 3", "prod 4"]
    assert [c for c in contents if c.startswith("staging")] == ["staging 1", "staging 2"]
    assert failed > 20 and attempts > 20  # the old limit (20 attempts) would have dropped the first ones
    assert await unsent(db) == 0


async def test_a_channel_that_keeps_failing_hands_posts_to_the_webhook_in_order(
    fake, make_stack, tmp_path, monkeypatch
):
    stack = make_stack()
    monkeypatch.setenv("OPS_HOOK", fake.incoming_webhook_url)
    envs = {"prod": stack.env_config(), "staging": stack.env_config()}
    db = tmp_path / "incidents.db"
    cfg = {"store_path": str(db)}
    async with running_bot(
        fake, envs, stack.env_vars, incidents=cfg, discord={"webhook_url": {"env": "OPS_HOOK"}}
    ) as bot:
        clock = discord_down_for(bot, fake, OUTAGE_S)
        schedule = dict(SCHEDULE)
        await run_for(bot, clock, FALLBACK_AFTER_S - 30, schedule)
        assert not fake.webhook_posts  # a short hiccup is waited out on the channel
        await run_for(bot, clock, OUTAGE_S, schedule)
        assert await unsent(db) == 0  # all out during the outage, none waited for its end
        posted = [p["content"] for p in fake.webhook_posts]
        await run_for(bot, clock, OUTAGE_S + 60, {OUTAGE_S: [("prod", "prod 5")]})  # the channel works again
    assert sorted(posted) == sorted(t for lines in SCHEDULE.values() for _, t in lines)
    assert [c for c in posted if c.startswith("prod")] == ["prod 1", "prod 2", "prod 3", "prod 4"]
    messages = fake.channel_messages(fake.ops_channel_id)
    assert [m.content for m in messages] == [*posted, "prod 5"]  # nothing twice
    assert len(fake.webhook_posts) == len(posted) and not messages[-1].webhook_id  # back on the channel


async def test_an_incident_resolved_before_discord_came_back_posts_only_its_resolved_line(fake, make_stack, tmp_path):
    stack = make_stack()
    stack.postgrest.stop()
    db = tmp_path / "incidents.db"
    envs = {"prod": stack.env_config(auto_recover=False)}
    async with running_bot(fake, envs, stack.env_vars, incidents={"store_path": str(db)}) as bot:
        clock = discord_down_for(bot, fake, 600)
        monitor = bot.services.monitor
        await monitor.check("prod")
        await monitor.check("prod")  # the CRITICAL: Discord answers 503, it waits in the outbox
        await fake.wait_for(lambda: len(fake.requests_to("POST", MESSAGES)) >= 1, what="a refused post")
        assert not fake.channel_messages(fake.ops_channel_id)
        stack.postgrest.start()
        await stack.wait_for_code("first judgment")  # PostgREST answers again
        await monitor.check("prod")  # resolved while the CRITICAL was never seen
        await run_for(bot, clock, 600 + 2 * MAX_RETRY_S, {})
        (incident,) = await bot.services.store.recent_incidents("prod")
    (line,) = fake.channel_messages(fake.ops_channel_id)
    assert line.content.startswith("✅ PostgREST PROD resolved after") and not line.embeds
    assert incident.resolved_at is not None and await unsent(db) == 0


async def test_an_alert_acknowledged_while_undelivered_goes_out_once_acknowledged_then_resolves(
    fake, make_stack, tmp_path
):
    stack = make_stack()
    stack.postgrest.stop()
    envs = {"prod": stack.env_config(auto_recover=False)}
    async with running_bot(fake, envs, stack.env_vars, incidents={"store_path": str(tmp_path / "i.db")}) as bot:
        clock = discord_down_for(bot, fake, 600)
        monitor = bot.services.monitor
        await monitor.check("prod")
        await monitor.check("prod")  # the CRITICAL waits in the outbox
        incident_id = monitor.incident_for("prod").incident_id
        await monitor.acknowledge(incident_id, "alice")  # an edit of a message nobody has seen yet
        await run_for(bot, clock, 600 + 2 * MAX_RETRY_S, {})
        (alert,) = fake.channel_messages(fake.ops_channel_id)
        assert "Acknowledged by alice" in alert.content and "CRITICAL" in alert.embed_text()
        assert alert.edits == 0 and {b["custom_id"] for b in alert.buttons() if "custom_id" in b}
        stack.postgrest.start()
        await stack.wait_for_code("first judgment")
        await monitor.check("prod")  # the alert landed: resolving edits it, as always
        await fake.wait_for(
            lambda: "RESOLVED" in alert.embed_text() and len(fake.channel_messages(alert.channel_id)) == 2
        )
    assert len(fake.requests_to("POST", MESSAGES)) > 3 and alert.edits == 1


async def test_a_line_waiting_behind_a_hung_send_is_kept_when_the_bot_stops(fake, make_stack, tmp_path):
    stack = make_stack()
    db = tmp_path / "incidents.db"
    envs = {"prod": stack.env_config()}
    fake.fail_next("POST", MESSAGES, hang=True)
    async with running_bot(fake, envs, stack.env_vars, incidents={"store_path": str(db)}) as bot:
        first = asyncio.create_task(bot.sink.post_line("prod", {"content": "line one"}))
        await fake.wait_for(lambda: not fake._fail_rules, what="the first post hangs")
        second = asyncio.create_task(bot.sink.post_line("prod", {"content": "line two"}))
        for _ in range(100):  # the second waits behind the first: its row must already be on disk
            if await unsent(db) == 2:
                break
            await asyncio.sleep(0.05)
        assert await unsent(db) == 2
        for task in (first, second):  # the stop cuts both short
            task.cancel()
        await asyncio.gather(first, second, return_exceptions=True)
    fake.release_hangs()
    async with running_bot(fake, envs, stack.env_vars, incidents={"store_path": str(db)}):
        await fake.wait_for(lambda: len(fake.channel_messages(fake.ops_channel_id)) == 2, 10)
    assert [m.content for m in fake.channel_messages(fake.ops_channel_id)] == ["line one", "line two"]
    assert await unsent(db) == 0
