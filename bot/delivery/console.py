"""Console mode: the monitor without Discord. Alerts print to stdout and go to the webhook if configured."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from bot.delivery.outbox import EDIT, POST, Outbox, StoreGuard, pending_nonce
from bot.delivery.webhook import WebhookFallback, WebhookTransport
from bot.messages.console_text import payload_text


class ConsoleSink:
    """Prints every message at once; the webhook copy goes through the durable outbox."""

    def __init__(self, webhook: WebhookFallback, out: TextIO | None = None, guard: StoreGuard | None = None) -> None:
        self.webhook = webhook
        self.out = out or sys.stdout
        self.outbox = Outbox(guard or StoreGuard(None), WebhookTransport(webhook), background=False)

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
