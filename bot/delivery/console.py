"""Console mode: the monitor without Discord. What it says goes to one stream (stdout), as it happens.

Text by default: plain lines (no Markdown), times in one format, colour only when the stream is a terminal and
NO_COLOR is not set. With `--log-format json` every line is one JSON object instead; the two never mix. Alerts
also go to the webhook when one is configured, through the durable outbox.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from bot.delivery.guard import StoreGuard
from bot.delivery.outbox import Outbox
from bot.delivery.rows import pending_nonce
from bot.delivery.sink import OutboxSink
from bot.delivery.webhook import WebhookFallback, WebhookTransport
from bot.messages.console_text import Palette, json_event, message_block, payload_text, verdict_line
from bot.redact import scrub

TEXT, JSON = "text", "json"


def wants_colour(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set to anything (https://no-color.org) or the
    terminal says it has none (TERM=dumb)."""
    environ = os.environ if environ is None else environ
    if environ.get("NO_COLOR") or environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (OSError, ValueError):  # a closed or detached stream
        return False


class ConsoleSink(OutboxSink):
    """Prints every message and verdict at once; the webhook copy goes through the durable outbox."""

    def __init__(
        self,
        webhook: WebhookFallback,
        out: TextIO | None = None,
        guard: StoreGuard | None = None,
        *,
        log_format: str = TEXT,
        colour: bool | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.webhook = webhook
        self.out = out or sys.stdout
        self.outbox = Outbox(guard or StoreGuard(None), WebhookTransport(webhook), background=False)
        self.log_format = log_format
        self.palette = Palette() if (wants_colour(self.out) if colour is None else colour) else Palette.plain()
        self.clock = clock or (lambda: datetime.now(UTC))

    def write(self, line: str) -> None:
        self.out.write(scrub(line) + "\n")
        self.out.flush()

    def say(self, event: str, text: str, **fields: Any) -> None:
        """A line of the console's own (start, schedule): the text, or its JSON event with the same facts."""
        if self.log_format == JSON:
            self.write(json_event(event, self.clock(), text=text, **fields))
        else:
            self.write(text)

    def shown(self, kind: str, env: str, payload: dict[str, Any]) -> None:
        at = self.clock()
        if self.log_format == JSON:
            self.write(json_event("message", at, kind=kind, env=env, text=payload_text(payload)))
        else:  # a blank line first: a message is a block of its own among the one-line verdicts
            self.write("\n" + message_block(kind, env, payload, at, self.palette))

    def handle_of(self, result: dict[str, Any] | None) -> Any:
        return result if result and (result.get("webhook_message_id") or pending_nonce(result)) else None

    def status_change(self, env: str, old: str | None, new: str, explanation: str) -> None:
        at = self.clock()
        if self.log_format == JSON:
            self.write(json_event("verdict", at, env=env, **{"from": old, "to": new, "why": explanation}))
        else:
            self.write(verdict_line(env, old, new, explanation, at, self.palette))
