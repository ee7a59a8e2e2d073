"""Console mode: the monitor without Discord. Alerts print to stdout and go to the webhook if configured."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from bot.delivery.outbox import Outbox, StoreGuard, pending_nonce
from bot.delivery.sink import OutboxSink
from bot.delivery.webhook import WebhookFallback, WebhookTransport
from bot.messages.console_text import payload_text


class ConsoleSink(OutboxSink):
    """Prints every message at once; the webhook copy goes through the durable outbox."""

    def __init__(self, webhook: WebhookFallback, out: TextIO | None = None, guard: StoreGuard | None = None) -> None:
        self.webhook = webhook
        self.out = out or sys.stdout
        self.outbox = Outbox(guard or StoreGuard(None), WebhookTransport(webhook), background=False)

    def _print(self, kind: str, env: str, payload: dict[str, Any]) -> None:
        self.out.write(f"\n[{kind}] {env}\n{payload_text(payload)}\n")
        self.out.flush()

    def shown(self, kind: str, env: str, payload: dict[str, Any]) -> None:
        self._print(kind, env, payload)

    def handle_of(self, result: dict[str, Any] | None) -> Any:
        return result if result and (result.get("webhook_message_id") or pending_nonce(result)) else None

    def status_change(self, env: str, old: str | None, new: str, explanation: str) -> None:
        self.out.write(json.dumps({"env": env, "from": old, "to": new, "why": explanation}, ensure_ascii=False) + "\n")
        self.out.flush()
