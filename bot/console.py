"""Console mode: the monitor without Discord. Alerts print to stdout and go to the webhook if configured."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, TextIO

import httpx
from pydantic import SecretStr

from bot.webhook import post_webhook

log = logging.getLogger(__name__)


def payload_text(payload: dict[str, Any]) -> str:
    """A plain-text rendering of a Discord message payload, for terminals and logs."""
    parts = [payload.get("content") or ""]
    for embed in payload.get("embeds", []):
        parts.append(embed.get("title", ""))
        parts.append(embed.get("description", ""))
        for field in embed.get("fields", []):
            parts.append(f"{field['name']}:\n  " + field["value"].replace("\n", "\n  "))
    return "\n".join(p for p in parts if p)


class WebhookFallback:
    """Posts payloads to the Discord webhook when one is configured; never raises."""

    def __init__(self, client: httpx.AsyncClient, url: SecretStr | None) -> None:
        self.client = client
        self.url = url

    async def post(self, payload: dict[str, Any], *, edit_message_id: str | None = None) -> str | None:
        if self.url is None:
            return None
        result = await post_webhook(self.client, self.url, payload, edit_message_id=edit_message_id)
        if not result.ok:
            log.warning("webhook post failed: %s", result.detail)
            return None
        return result.message_id or edit_message_id


class ConsoleSink:
    def __init__(self, webhook: WebhookFallback, out: TextIO | None = None) -> None:
        self.webhook = webhook
        self.out = out or sys.stdout

    def _print(self, kind: str, env: str, payload: dict[str, Any]) -> None:
        self.out.write(f"\n[{kind}] {env}\n{payload_text(payload)}\n")
        self.out.flush()

    async def post_alert(self, env: str, payload: dict[str, Any], *, restart_url: str | None) -> Any:
        self._print("CRITICAL", env, payload)
        return await self.webhook.post(payload)

    async def resolve_alert(self, env: str, handle: Any, payload: dict[str, Any]) -> None:
        if handle is not None:
            await self.webhook.post(payload, edit_message_id=str(handle))

    async def post_line(self, env: str, payload: dict[str, Any]) -> None:
        self._print("INFO", env, payload)
        await self.webhook.post(payload)

    def status_change(self, env: str, old: str | None, new: str, explanation: str) -> None:
        self.out.write(json.dumps({"env": env, "from": old, "to": new, "why": explanation}, ensure_ascii=False) + "\n")
        self.out.flush()
