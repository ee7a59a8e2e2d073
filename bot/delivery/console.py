"""Console mode: the monitor without Discord. Alerts print to stdout and go to the webhook if configured."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any, TextIO

import httpx
from pydantic import SecretStr

from bot.delivery.outbox import EDIT, POST, DeliveryError, Outbox, StoreGuard, pending_nonce
from bot.delivery.webhook import post_webhook


def payload_text(payload: dict[str, Any]) -> str:
    """A plain-text rendering of a Discord message payload, for terminals and logs."""
    parts = [payload.get("content") or ""]
    for embed in payload.get("embeds", []):
        parts.append(embed.get("title", ""))
        parts.append(embed.get("description", ""))
        for field in embed.get("fields", []):
            parts.append(f"{field['name']}:\n  " + field["value"].replace("\n", "\n  "))
    return DISCORD_TIMESTAMP.sub(_utc, "\n".join(p for p in parts if p))


# Discord renders <t:1700000000:R> in the reader's time zone; a terminal shows UTC instead.
DISCORD_TIMESTAMP = re.compile(r"<t:(\d+)(?::[tTdDfFR])?>")


def _utc(match: re.Match[str]) -> str:
    return datetime.fromtimestamp(int(match.group(1)), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class RateLimiter:
    """Discord's webhook limits (about 5 posts per 2 s and 30 per minute per channel): callers queue, in order."""

    def __init__(self, limits: tuple[tuple[int, float], ...] = ((5, 2.0), (30, 60.0))) -> None:
        self.limits = limits
        self._sent: deque[float] = deque()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:  # FIFO: a queued post is never overtaken, never dropped
            while True:
                now = time.monotonic()
                longest = max(window for _, window in self.limits)
                while self._sent and now - self._sent[0] >= longest:
                    self._sent.popleft()
                wait = 0.0
                for count, window in self.limits:
                    recent = [t for t in self._sent if now - t < window]
                    if len(recent) >= count:
                        wait = max(wait, recent[-count] + window - now)
                if wait <= 0:
                    self._sent.append(now)
                    return
                await asyncio.sleep(wait)


class WebhookFallback:
    """Posts payloads to the Discord webhook when one is configured, queued under its rate limits.

    A failed post raises DeliveryError (transient or not, as post_webhook found); the outbox logs it once.
    """

    def __init__(self, client: httpx.AsyncClient, url: SecretStr | None, limiter: RateLimiter | None = None) -> None:
        self.client = client
        self.url = url
        self.limiter = limiter or RateLimiter()

    async def post(self, payload: dict[str, Any], *, edit_message_id: str | None = None) -> str | None:
        """The webhook message's id; None when no webhook is configured."""
        if self.url is None:
            return None
        await self.limiter.acquire()
        result = await post_webhook(self.client, self.url, payload, edit_message_id=edit_message_id)
        if not result.ok:
            raise DeliveryError(result.detail, transient=not result.permanent)
        return result.message_id or edit_message_id


class WebhookTransport:
    """Outbox rows to the webhook (console mode). Without a webhook there is nothing to deliver."""

    def __init__(self, webhook: WebhookFallback) -> None:
        self.webhook = webhook

    async def deliver(
        self, env: str, kind: str, payload: dict[str, Any], meta: dict[str, Any], nonce: str
    ) -> dict[str, Any] | None:
        if self.webhook.url is None:
            return {}
        if kind == EDIT:
            target = meta.get("target") or {}
            if not target.get("webhook_message_id"):
                return {}
            message_id = await self.webhook.post(payload, edit_message_id=str(target["webhook_message_id"]))
        else:
            message_id = await self.webhook.post(payload)
        return {"webhook_message_id": message_id} if message_id else {}


class ConsoleSink:
    """Prints every message at once; the webhook copy goes through the durable outbox."""

    def __init__(self, webhook: WebhookFallback, out: TextIO | None = None, guard: StoreGuard | None = None) -> None:
        self.webhook = webhook
        self.out = out or sys.stdout
        self.outbox = Outbox(guard or StoreGuard(None), WebhookTransport(webhook))

    def _print(self, kind: str, env: str, payload: dict[str, Any]) -> None:
        self.out.write(f"\n[{kind}] {env}\n{payload_text(payload)}\n")
        self.out.flush()

    async def post_alert(
        self, env: str, payload: dict[str, Any], *, restart_url: str | None, incident_id: int | None = None
    ) -> Any:
        self._print("CRITICAL", env, payload)
        result = await self.outbox.send(env, POST, payload, {"alert": True, "incident_id": incident_id})
        return result if result and (result.get("webhook_message_id") or pending_nonce(result)) else None

    async def edit_alert(
        self,
        env: str,
        handle: Any,
        payload: dict[str, Any],
        *,
        restart_url: str | None = None,
        incident_id: int | None = None,
    ) -> None:
        self._print("UPDATE", env, payload)
        if handle:
            await self.outbox.send(env, EDIT, payload, {"target": handle, "alert": True})

    async def resolve_alert(self, env: str, handle: Any, payload: dict[str, Any]) -> None:
        if handle:  # the final edit: a copy not delivered yet is dropped, its resolved line goes out instead
            await self.outbox.send(env, EDIT, payload, {"target": handle, "alert": False})

    async def post_line(self, env: str, payload: dict[str, Any], *, reply_to: Any = None) -> None:
        self._print("INFO", env, payload)
        await self.outbox.send(env, POST, payload)

    def status_change(self, env: str, old: str | None, new: str, explanation: str) -> None:
        self.out.write(json.dumps({"env": env, "from": old, "to": new, "why": explanation}, ensure_ascii=False) + "\n")
        self.out.flush()
