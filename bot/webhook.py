"""Post a message payload to a Discord webhook, honouring 429 retry_after; the URL never leaks."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

log = logging.getLogger(__name__)

MAX_RETRY_AFTER_S = 30.0


@dataclass(frozen=True)
class WebhookResult:
    ok: bool
    status: int | None
    detail: str


def _retry_after(response: httpx.Response) -> float:
    try:
        value = float(response.json().get("retry_after", 0))
    except (ValueError, AttributeError):
        value = 0.0
    if not value:
        try:
            value = float(response.headers.get("retry-after", "1"))
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
) -> WebhookResult:
    """POST with ?wait=true so Discord confirms; retry 429 (after retry_after), 5xx and timeouts."""
    raw = url.get_secret_value()
    target = raw + ("&" if "?" in raw else "?") + "wait=true"
    last = WebhookResult(False, None, "not sent")
    for attempt in range(1, attempts + 1):
        try:
            response = await client.post(target, json=payload, timeout=timeout_s)
        except httpx.HTTPError as err:
            last = WebhookResult(False, None, f"webhook unreachable ({type(err).__name__})")
            await asyncio.sleep(0.5 * attempt)
            continue
        if 200 <= response.status_code < 300:
            return WebhookResult(True, response.status_code, "delivered")
        if response.status_code == 429:
            wait = _retry_after(response)
            last = WebhookResult(False, 429, f"rate limited by Discord (retry after {wait:g} s)")
            await asyncio.sleep(wait)
            continue
        if response.status_code >= 500:
            last = WebhookResult(False, response.status_code, f"Discord error {response.status_code}")
            await asyncio.sleep(0.5 * attempt)
            continue
        try:
            message = str(response.json().get("message", ""))[:200]
        except ValueError:
            message = ""
        detail = f"webhook rejected the post: HTTP {response.status_code} {message}".strip()
        return WebhookResult(False, response.status_code, detail.replace(raw, "<webhook>"))
    return last
