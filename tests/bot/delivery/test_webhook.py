"""Webhook posts: delivered once, 429 honoured, failures described without the URL (a secret)."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
import sys
import tracemalloc

import httpx
from aiohttp import web
from pydantic import SecretStr

from bot.delivery.console import ConsoleSink
from bot.delivery.guard import StoreGuard
from bot.delivery.webhook import WebhookFallback, post_webhook
from bot.redact import install_log_filter
from bot.store.sqlite import Store
from tests.conftest import write_config
from tests.support.gzipbomb import GzipBomb, Hit, gzip_bomb_server
from tests.support.localhttp import LocalServer

SECRET = "tok-Zq9secret"


async def test_malformed_or_unreachable_url_never_leaks_the_url():
    async with httpx.AsyncClient() as client:
        for url in (
            f"http://[bad{SECRET}/api/webhooks/1/x",
            f"http://127.0.0.1:1/api/webhooks/1/{SECRET}",
            f"nope://{SECRET}",
        ):
            result = await post_webhook(client, SecretStr(url), {"content": "x"}, attempts=1)
            assert not result.ok and SECRET not in result.detail, result.detail


TOKEN = "tok-Echo9pathSECRET"


class EchoingWebhook:
    """A webhook endpoint behind a proxy that echoes the request path in its errors; answers from a script."""

    def __init__(self, *answers: int | str) -> None:
        self.answers = list(answers)
        self.requests: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(request.path_qs)
        answer = self.answers.pop(0) if self.answers else 200
        if answer == "hang":
            await asyncio.sleep(1)
            answer = 200
        if answer == 200:
            return web.json_response({"id": "77"})
        if answer == 429:
            return web.json_response({"message": "rate limited", "retry_after": 0.05}, status=429)
        return web.json_response({"message": f"no route for {request.path_qs}"}, status=int(answer))


async def test_a_404_that_echoes_the_token_is_given_up_after_one_attempt_and_never_logged(tmp_path, caplog):
    hook = EchoingWebhook(404)
    store = await Store(tmp_path / "incidents.db").open()
    caplog.set_level(logging.DEBUG)
    install_log_filter()  # as at start: on the root logger's handlers, here pytest's capture handler
    try:
        async with LocalServer.catch_all(hook.handle) as base, httpx.AsyncClient() as client:
            url = SecretStr(f"{base}/api/webhooks/123/{TOKEN}")
            sink = ConsoleSink(WebhookFallback(client, url), io.StringIO(), StoreGuard(store))
            handle = await sink.post_alert("prod", {"content": "PostgREST PROD is down"}, restart_url=None)
            await sink.outbox.flush()
        pending = await store.outbox_count(unsent_only=True)
    finally:
        await store.close()
    assert len(hook.requests) == 1 and TOKEN in hook.requests[0]  # the server did see it; one attempt only
    assert handle is None and pending == 0  # given up, not left to retry
    assert TOKEN not in caplog.text and all(TOKEN not in r.getMessage() for r in caplog.records)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "HTTP 404" in errors[0] and "given up" in errors[0]


async def test_5xx_429_and_timeouts_are_retried_until_the_post_lands():
    hook = EchoingWebhook(500, 429, "hang", 503)
    async with LocalServer.catch_all(hook.handle) as base, httpx.AsyncClient() as client:
        url = SecretStr(f"{base}/api/webhooks/123/{TOKEN}")
        result = await post_webhook(client, url, {"content": "x"}, timeout_s=0.3, attempts=5)
        hook.answers = [502]
        failed = await post_webhook(client, url, {"content": "x"}, attempts=1)
    assert result.ok and result.message_id == "77" and len(hook.requests) == 6
    assert not failed.ok and not failed.permanent  # left to the outbox to try again


async def test_the_bot_at_start_keeps_the_token_out_of_its_log(make_stack, tmp_path):
    """`python -m bot` (console mode): the CRITICAL's webhook copy meets the echoing 404 once, and stderr is clean."""
    stack = make_stack()
    stack.postgrest.stop()
    hook = EchoingWebhook(*[404] * 5)
    async with LocalServer.catch_all(hook.handle) as base:
        config = write_config(
            tmp_path / "c.yaml",
            {"prod": stack.env_config(auto_recover=False)},
            monitor={"interval_s": 1, "failure_threshold": 1},
            incidents={"store_path": str(tmp_path / "incidents.db")},
            discord={"webhook_url": {"env": "OPS_HOOK"}},
        )
        env = {k: v for k, v in os.environ.items() if k != "DISCORD_TOKEN"}
        env |= stack.env_vars | {"OPS_HOOK": f"{base}/api/webhooks/123/{TOKEN}"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "--config", str(config), stderr=asyncio.subprocess.PIPE, env=env
        )
        stderr = ""
        try:
            async with asyncio.timeout(20):
                while "given up" not in stderr:
                    line = await proc.stderr.readline()
                    assert line, f"exited early: {stderr}"
                    stderr += line.decode()
            await asyncio.sleep(1.5)  # another check: the open incident posts nothing new
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 10)
        stderr += (await proc.stderr.read()).decode()
    assert len(hook.requests) == 1 and TOKEN in hook.requests[0]
    assert "HTTP 404 no route for /api/webhooks/123/***" in stderr and TOKEN not in stderr


async def test_a_webhook_answering_a_gzip_bomb_is_read_only_up_to_the_cap():
    """A hostile endpoint answers 200 with 256 MiB of zeros in 256 KB of gzip: the post holds no more than a few MB of it."""
    bomb = GzipBomb(256 * 1024 * 1024)
    hits: list[Hit] = []
    async with gzip_bomb_server(bomb, hits=hits) as url, httpx.AsyncClient() as client:
        tracemalloc.start()
        try:
            result = await post_webhook(client, SecretStr(f"{url}/api/webhooks/1/{TOKEN}"), {"content": "x"})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert (result.ok, result.status, result.message_id) == (True, 200, None)  # delivered; no id in a bomb
    assert len(hits) == 1 and hits[0][2].get("Accept-Encoding") == "gzip, deflate"
    assert peak < 40 * 1024 * 1024, f"peak {peak / 1024 / 1024:.0f} MB while reading the answer"
