"""Post a message payload to a Discord webhook, honouring 429 retry_after; the URL never leaks.

A 4xx other than 429 is permanent (wrong or deleted webhook, a payload Discord refuses): it is not retried.
5xx, 429, timeouts and network errors are retried here, then by the outbox. Answers are read through the
capped reader: a hostile endpoint (or proxy) cannot make the bot hold more than MAX_ANSWER_BYTES of it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

from bot.delivery.outbox import DeliveryError
from bot.delivery.rows import EDIT
from bot.httpread import CappedAnswer, send_capped
from bot.messages.alert import outgoing
from bot.redact import register, scrub, scrub_payload

log = logging.getLogger(__name__)

MAX_RETRY_AFTER_S = 30.0
# Discord answers a message object (a few KB, embeds included) or a short error: far below this.
MAX_ANSWER_BYTES = 256 * 1024


@dataclass(frozen=True)
class WebhookResult:
    ok: bool
    status: int | None
    detail: str
    message_id: str | None = None
    permanent: bool = False  # trying again cannot help (4xx other than 429, malformed URL)


def _answer_json(answer: CappedAnswer) -> dict[str, Any]:
    """The answer's JSON object; {} when it is not one (or was cut at the cap)."""
    if answer.truncated or not answer.body:
        return {}
    try:
        value = json.loads(answer.body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _retry_after(answer: CappedAnswer) -> float:
    try:
        value = float(_answer_json(answer).get("retry_after", 0))
    except (ValueError, TypeError):
        value = 0.0
    if not value:
        try:
            value = float(answer.headers.get("retry-after", "1"))
        except ValueError:
            value = 1.0
    return min(max(value, 0.0), MAX_RETRY_AFTER_S)


async def post_webhook(
    client: httpx.AsyncClient,
    url: SecretStr,
    payload: dict[str, Any],
    *,
    timeout_s: float = 10.0,
    attempts: int = 3,
    edit_message_id: str | None = None,
) -> WebhookResult:
    """POST with ?wait=true so Discord confirms (or PATCH a message it sent); retry 429, 5xx, timeouts."""
    raw = url.get_secret_value()
    register(raw)  # the URL and its token part are scrubbed from every log line and message from now on
    payload = scrub_payload(outgoing(payload))
    base, _, query = raw.partition("?")
    if edit_message_id is not None:
        method, target = "PATCH", f"{base.rstrip('/')}/messages/{edit_message_id}" + (f"?{query}" if query else "")
    else:
        method, target = "POST", raw + ("&" if "?" in raw else "?") + "wait=true"
    last = WebhookResult(False, None, "not sent")
    for attempt in range(1, attempts + 1):
        try:
            request = client.build_request(method, target, json=payload, timeout=timeout_s)
            answer = await send_capped(client, request, MAX_ANSWER_BYTES)
        except httpx.HTTPError as err:
            last = WebhookResult(False, None, f"webhook unreachable ({type(err).__name__})")
            await asyncio.sleep(0.5 * attempt)
            continue
        except (httpx.InvalidURL, ValueError, TypeError) as err:
            # Their text quotes the URL, which is the secret: name the problem only.
            return WebhookResult(False, None, f"webhook URL is malformed ({type(err).__name__})", permanent=True)
        if 200 <= answer.status < 300:
            message_id = _answer_json(answer).get("id")
            return WebhookResult(True, answer.status, "delivered", str(message_id) if message_id else None)
        if answer.status == 429:
            wait = _retry_after(answer)
            last = WebhookResult(False, 429, f"rate limited by Discord (retry after {wait:g} s)")
            await asyncio.sleep(wait)
            continue
        if answer.status >= 500:
            last = WebhookResult(False, answer.status, f"Discord error {answer.status}")
            await asyncio.sleep(0.5 * attempt)
            continue
        message = str(_answer_json(answer).get("message", ""))[:200]
        # Proxies echo the request path (the token) in their errors: scrubbed.
        detail = scrub(f"webhook rejected the post: HTTP {answer.status} {message}".strip(), (raw,))
        return WebhookResult(False, answer.status, detail, permanent=True)
    return last


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
