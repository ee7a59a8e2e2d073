"""The bot, built by the real factory, running in-process against the fake Discord and real PostgREST."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.app import build_bot
from bot.chat.bot import COGS, PgrstOpsBot
from bot.config import resolve_targets
from bot.postgrest.requests import make_http_client
from tests.conftest import build_settings
from tests.fakediscord import FakeDiscord


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake:
        yield fake


@contextlib.asynccontextmanager
async def running_bot(
    fake: FakeDiscord, envs: dict[str, dict[str, Any]], environ: dict[str, str], **top: Any
) -> AsyncIterator[PgrstOpsBot]:
    discord_cfg = {
        "guild_ids": [fake.guild_id],
        "ops_channel_id": fake.ops_channel_id,
        "ops_role": "ops",
        "alert_role_id": fake.role_ids["oncall"],
        **top.pop("discord", {}),
    }
    cogs = top.pop("cogs", COGS)
    monitor_cfg = {"interval_s": 3600, "failure_threshold": 2, "success_threshold": 1, **top.pop("monitor", {})}
    incidents = top.pop("incidents", {})
    named = "store" in incidents or "store_path" in incidents  # given under either name, never both
    top["incidents"] = incidents if named else {"store": ":memory:", **incidents}
    settings = build_settings(envs, discord=discord_cfg, monitor=monitor_cfg, **top)
    targets = resolve_targets(settings, environ=environ)
    async with make_http_client(t.config for t in targets) as http:
        bot = build_bot(settings, targets, http, cogs=cogs, autostart_monitor=False, guild_ready_timeout=0.05)
        async with fake.run_bot(bot):
            yield bot
