"""Webhook posts: delivered once, 429 honoured, failures described without the URL (a secret)."""

from __future__ import annotations

import httpx
from pydantic import SecretStr

from bot.webhook import post_webhook

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
