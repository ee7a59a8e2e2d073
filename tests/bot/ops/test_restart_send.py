"""Sending a restart (bot/ops/restart.py send_restart) against the local fake of the Management API: accepted
once, a short 429 waited out and sent once more, a long one and a 5xx reported and never retried."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from bot.ops.restart import send_restart
from bot.postgrest.requests import make_http_client
from bot.supabase.management import ManagementClient, RateLimiter
from tests.support.supabase_api import REF, TOKEN


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with make_http_client() as client:
        yield client


def client_for(http, api) -> ManagementClient:
    return ManagementClient(http, api.url, SecretStr(TOKEN), limiter=RateLimiter())


async def test_an_accepted_restart_is_sent_once(http, api):
    assert await send_restart(client_for(http, api), REF) is None
    assert len(api.calls("POST", "/restart")) == 1


async def test_a_server_error_is_reported_and_not_retried(http, api):
    api.fail_next(503)
    why = await send_restart(client_for(http, api), REF)
    assert why is not None and why.startswith("503") and "not retried" in why
    assert len(api.calls("POST", "/restart")) == 1


async def test_a_short_rate_limit_is_waited_out_then_sent_once_more(http, api):
    api.fail_next(429, body='{"message": "Too many requests"}', headers={"Retry-After": "1"})
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await send_restart(client_for(http, api), REF) is None
    assert loop.time() - started >= 0.9  # it waited as told
    assert len(api.calls("POST", "/restart")) == 2


async def test_a_long_rate_limit_is_reported_without_waiting(http, api):
    api.rate_limit = 0  # every request is over the limit: Retry-After is the rest of the minute
    why = await send_restart(client_for(http, api), REF)
    assert why is not None and why.startswith("429") and "retry in 60 s" in why
    assert len(api.calls("POST", "/restart")) == 1
