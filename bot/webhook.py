"""Post a message payload to a Discord webhook, honouring 429 retry_after; the URL never leaks.

A 4xx other than 429 is permanent (wrong or deleted webhook, a payload Discord refuses): it is not retried.
5xx, 429, timeouts and network errors are retried here, then by the outbox.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

from bot.redact import register, scrub, scrub_payload

log = logging.getLogger(__name__)

MAX_RETRY_AFTER_S = 30.0


@dataclass(frozen=True)
class WebhookResult:
    ok: bool
    status: int | None
    detail: str
    message_id: str | None = None
    permanent: bool = False  # trying again cannot help (4xx other than 429, malformed URL)


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
    edit_message_id: str | None = None,
) -> WebhookResult:
    """POST with ?wait=true so Discord confirms (or PATCH a message it sent); retry 429, 5xx, timeouts."""
    raw = url.get_secret_value()
    register(raw)  # the URL and its token part are scrubbed from every log line and message from now on
    payload = scrub_payload(payload)
    base, _, query = raw.partition("?")
    if edit_message_id is not None:
        method, target = "PATCH", f"{base.rstrip('/')}/messages/{edit_message_id}" + (f"?{query}" if query else "")
    else:
        method, target = "POST", raw + ("&" if "?" in raw else "?") + "wait=true"
    last = WebhookResult(False, None, "not sent")
    for attempt in range(1, attempts + 1):
        try:
            response = await client.request(method, target, json=payload, timeout=timeout_s)
        except httpx.HTTPError as err:
            last = WebhookResult(False, None, f"webhook unreachable ({type(err).__name__})")
            await asyncio.sleep(0.5 * attempt)
            continue
        except (httpx.InvalidURL, ValueError, TypeError) as err:
            # Their text quotes the URL, which is the secret: name the problem only.
            return WebhookResult(False, None, f"webhook URL is malformed ({type(err).__name__})", permanent=True)
        if 200 <= response.status_code < 300:
            try:
                message_id = str(response.json().get("id")) if response.content else None
            except (ValueError, AttributeError):
                message_id = None
            return WebhookResult(True, response.status_code, "delivered", message_id)
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
        # Proxies echo the request path (the token) in their errors: scrubbed.
        detail = scrub(f"webhook rejected the post: HTTP {response.status_code} {message}".strip(), (raw,))
        return WebhookResult(False, response.status_code, detail, permanent=True)
    return last
