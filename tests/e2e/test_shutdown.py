"""The bot as a real process (`python -m bot` via bench/bot_process.py): start-up refusals and a clean stop.

SIGTERM arrives while a forced /reload re-checks a cache whose reload hangs on a lock held here, so the
re-checks would go on for half a minute: the bot waits its grace period, then the message and the audit
row say what happened, and after a restart /status still shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from bot.core.records import AUDIT_INTERRUPTED
from bot.store.sqlite import Store
from tests.conftest import write_config
from tests.e2e.test_incidents import STALE_TABLE

ROOT = Path(__file__).resolve().parents[2]


class BotProcess:
    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    async def wait_log(self, needle: str, within_s: float = 20) -> None:
        deadline = time.monotonic() + within_s
        while needle not in self.text():
            if self.proc.returncode is not None or time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not in the bot's log:\n{self.text()[-3000:]}")
            await asyncio.sleep(0.05)

    async def wait(self, within_s: float = 30) -> int:
        return await asyncio.wait_for(self.proc.wait(), within_s)


@contextlib.asynccontextmanager
async def bot_process(
    fake, config: Path, environ: dict[str, str], name: str = "bot", *, console: bool = False
) -> AsyncIterator[BotProcess]:
    """The bot on the fake Discord; `console`: `python -m bot` without a token (console mode, stdout in the log)."""
    log = config.with_name(f"{name}.log")
    if console:
        command = ["-m", "bot", "--config", str(config)]
        env = {k: v for k, v in {**os.environ, **environ}.items() if k != "DISCORD_TOKEN"}
    else:
        command = ["-m", "bench.bot_process", fake.url, "--config", str(config)]
        env = {**os.environ, **environ, "DISCORD_TOKEN": "fake-bot-token"}
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *command,
            cwd=ROOT,
            env=env,
            stdout=err if console else asyncio.subprocess.DEVNULL,
            stderr=err,
        )
    bot = BotProcess(proc, log)
    try:
        yield bot
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def served(stack, table: str, within_s: float = 10) -> None:
    """Wait until PostgREST's cache has the table (OPTIONS answers 200, not 404)."""
    async with httpx.AsyncClient(timeout=2) as client:
        deadline = time.monotonic() + within_s
        while (await client.options(f"{stack.postgrest.url}/{table}")).status_code != 200:
            if time.monotonic() > deadline:
                raise AssertionError(f"PostgREST does not serve {table} after {within_s} s")
            await asyncio.sleep(0.05)


async def test_a_role_name_matching_two_roles_stops_the_start_naming_the_key(fake, tmp_path):
    fake.create_role("ops")  # Discord allows a second role with the same name
    discord = {"guild_ids": [fake.guild_id], "ops_channel_id": fake.ops_channel_id, "ops_role": "ops"}
    config = write_config(tmp_path / "c.yaml", {"dev": {"rest_url": "http://127.0.0.1:9"}}, discord=discord)
    async with bot_process(fake, config, {}) as bot:
        code = await bot.wait()
    lines = bot.text().strip().splitlines()
    assert code == 2 and lines[-1].startswith(
        f"pgrst-ops: configuration error: discord.ops_role: 2 roles are named 'ops' in guild {fake.guild_id}"
    )
    assert "Traceback" not in bot.text() and not fake.commands.get(fake.guild_id)  # nothing was registered


async def test_a_guild_the_bot_is_not_in_stops_the_start(fake, tmp_path):
    discord = {"guild_ids": [fake.guild_id, 123456789012345678]}
    config = write_config(tmp_path / "c.yaml", {"dev": {"rest_url": "http://127.0.0.1:9"}}, discord=discord)
    async with bot_process(fake, config, {}) as bot:
        code = await bot.wait()
    assert code == 2 and "Traceback" not in bot.text()
    assert bot.text().strip().splitlines()[-1] == (
        "pgrst-ops: configuration error: discord.guild_ids: the bot cannot see guild 123456789012345678 "
        "(not invited there, or a wrong id)"
    )


async def test_the_bot_without_guild_ids_refuses_to_start(fake, tmp_path):
    config = write_config(tmp_path / "c.yaml", {"dev": {"rest_url": "http://127.0.0.1:9"}})
    async with bot_process(fake, config, {}) as bot:
        code = await bot.wait()
    assert code == 2 and "Traceback" not in bot.text()
    assert (
        bot.text()
        .strip()
        .splitlines()[-1]
        .startswith(
            "pgrst-ops: configuration error: discord.guild_ids: required when the bot runs with a Discord token"
        )
    )
    assert not fake.gateway_sessions  # it never connected


async def test_sigterm_during_a_slow_reload_ends_the_message_and_the_audit_as_interrupted(fake, make_stack, tmp_path):
    stack = make_stack()
    stack.sql("CREATE VIEW public.recent AS SELECT * FROM public.judgments; GRANT SELECT ON public.recent TO anon;")
    stack.notify()  # the view is in the cache; reading its definition at the next reload takes a lock on it
    await served(stack, "recent")  # that reload is over before the table below is created (else not stale)
    stack.sql(STALE_TABLE)
    store_path = tmp_path / "incidents.db"
    config = write_config(
        tmp_path / "c.yaml",
        {"prod": stack.env_config(probe_tables=["orders"], auto_recover=False)},
        discord={
            "guild_ids": [fake.guild_id],
            "ops_channel_id": fake.ops_channel_id,
            "ops_role": "ops",
            "shutdown_grace_s": 1,
        },
        recovery={"retries": 10, "delay_s": 3},  # 30 s of re-checks while the reload hangs
        monitor={"interval_s": 3600, "drift_interval_s": 0},
        incidents={"store_path": str(store_path)},
    )
    alice = fake.user_ids["alice"]
    # A migration holding a lock: PostgREST's reload waits behind it, the cache stays stale.
    locker = await asyncpg.connect(stack.cluster.dsn("postgres", dbname=stack.db))
    try:
        await locker.execute("BEGIN; LOCK TABLE public.recent IN ACCESS EXCLUSIVE MODE")
        async with bot_process(fake, config, stack.env_vars, "first") as bot:
            await bot.wait_log("connected as")
            # the pre-flight refuses a NOTIFY that would queue behind the lock: force it, and confirm
            record = await fake.invoke_slash("reload", user_id=alice, options={"env": "prod", "force": True})
            await record.wait_for(lambda r: r.original is not None and bool(r.original.buttons()), 15)
            confirm = await fake.click_button(record.original, record.original.buttons()[0]["custom_id"], user_id=alice)
            await confirm.wait_acked()
            await record.wait_for(
                lambda r: "re-check" in str(r.original.embeds) or "Audit" in str(r.original.embeds), 20
            )
            assert "Audit" not in str(record.original.embeds), record.original.embeds  # still re-checking
            assert "'reload schema' sent in" in str(record.original.embeds)
            stopped_at = time.monotonic()
            bot.proc.send_signal(signal.SIGTERM)
            code = await bot.wait()
            stop_s = time.monotonic() - stopped_at
        final = record.original.embeds[0]
        store = await Store(store_path).open()
        try:
            (entry,) = await store.audit_log()
        finally:
            await store.close()
        assert code == 0 and stop_s < 10, (code, stop_s)
        assert final["title"] == "⚠️ PROD reload interrupted by shutdown after NOTIFY sent"
        assert "interrupted by shutdown after NOTIFY sent" in final["fields"][0]["value"]
        assert "stopped: /reload prod by Alice was interrupted by shutdown after NOTIFY sent" in bot.text()
        assert (entry.actor, entry.action, entry.env) == ("Alice (/reload force)", "reload", "prod")
        assert (entry.status, entry.outcome) == (AUDIT_INTERRUPTED, "interrupted by shutdown after NOTIFY sent")
        assert entry.finished_at is not None

        async with bot_process(fake, config, stack.env_vars, "second") as again:
            await again.wait_log("connected as")
            status = await fake.invoke_slash("status", user_id=fake.user_ids["carol"])
            await status.wait_for(lambda r: r.original is not None and bool(r.original.embeds), 10)
            again.proc.send_signal(signal.SIGTERM)
            assert await again.wait() == 0
        fields = {f["name"]: f["value"] for f in status.original.embeds[0]["fields"]}
        assert (
            "Alice (/reload force) · prod · interrupted by shutdown after NOTIFY sent" in fields["Interrupted actions"]
        )
    finally:
        await locker.close()


class FrozenServer:
    """Accepts connections and never answers, as a hung host does; `connected` is set at the first one."""

    def __init__(self) -> None:
        self.connected = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connected.set()
        await asyncio.Event().wait()


# Every KPI breached: each reload posts its warning line from a background task (not from the monitor's loop).
EVERY_KPI_BREACHED = {
    f"{what}_{level}_ms": 0.001 for what in ("notify", "reload", "api_after_reload") for level in ("target", "alert")
}


@pytest.mark.parametrize("console", [True, False], ids=["console mode", "bot mode"])
async def test_sigterm_with_a_send_stuck_on_a_frozen_endpoint_stops_within_the_grace_period(
    fake, make_stack, tmp_path, console
):
    """Before the bound, a background line stuck on a frozen webhook (or Discord) held the stop for 45 s."""
    stack = make_stack()
    stack.sql(STALE_TABLE)  # the monitor reloads at once, and the reload's KPI line is sent in the background
    frozen_webhook = FrozenServer()
    frozen = await asyncio.start_server(frozen_webhook.handle, "127.0.0.1", 0)
    port = frozen.sockets[0].getsockname()[1]
    discord: dict[str, Any] = {"shutdown_grace_s": 2}
    environ = dict(stack.env_vars)
    if console:
        discord["webhook_url"] = {"env": "FROZEN_WEBHOOK"}
        environ["FROZEN_WEBHOOK"] = f"http://127.0.0.1:{port}/api/webhooks/1/frozen-webhook-token"
    else:
        discord.update({"guild_ids": [fake.guild_id], "ops_channel_id": fake.ops_channel_id, "ops_role": "ops"})
        fake.fail_next("POST", r"/channels/\d+/messages$", hang=True, times=1000)  # Discord takes, never answers
    config = write_config(
        tmp_path / "c.yaml",
        {"prod": stack.env_config(probe_tables=["orders"])},
        discord=discord,
        recovery={"kpi": EVERY_KPI_BREACHED},
        monitor={"interval_s": 1, "drift_interval_s": 0},
        incidents={"store_path": str(tmp_path / "incidents.db")},
    )
    try:
        async with bot_process(fake, config, environ, console=console) as bot:
            if console:
                await bot.wait_log("reload KPI above its alert threshold")  # printed, then sent to the webhook
                await asyncio.wait_for(frozen_webhook.connected.wait(), 10)
            else:
                # polled: a hung request changes nothing the fake's own waiters are woken by
                deadline = time.monotonic() + 20
                while not any(
                    "reload KPI" in str(r.json) for r in fake.requests_to("POST", r"/channels/\d+/messages$")
                ):
                    assert time.monotonic() < deadline, bot.text()[-3000:]
                    await asyncio.sleep(0.05)
            stopped_at = time.monotonic()
            bot.proc.send_signal(signal.SIGTERM)
            code = await bot.wait(60)
            stop_s = time.monotonic() - stopped_at
    finally:
        frozen.close()
        fake.release_hangs()
    assert code == 0 and stop_s < 2 + 3, (stop_s, bot.text()[-3000:])
    assert "background send(s) or store write(s) not done within 2 s, cut short" in bot.text()
    store = await Store(tmp_path / "incidents.db").open()
    try:
        pending = await store.outbox_pending()
    finally:
        await store.close()
    assert any("reload KPI" in str(row.payload) for row in pending)  # not lost: sent at the next start
