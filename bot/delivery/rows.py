"""The outbox's rows in memory: their kinds, the handle of a post not delivered yet, and a row's retry state.

May import bot.core only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.core.records import OutboxRow

# kinds of row
POST = "post"  # a new channel message (CRITICAL alert with buttons, a line, a reminder reply)
EDIT = "edit"  # edit a message we sent earlier (resolved, acknowledged)

PENDING = "pending"  # the handle of a post not delivered yet: {"pending": nonce}


def pending_handle(nonce: str) -> dict[str, str]:
    return {PENDING: nonce}


def pending_nonce(handle: Any) -> str | None:
    return handle.get(PENDING) if isinstance(handle, dict) else None


def landed(result: dict[str, Any] | None) -> bool:
    """A result naming a real message (not skipped, superseded or failed)."""
    return result is not None and bool(result.get("message_id") or result.get("webhook_message_id"))


@dataclass
class QueuedRow:
    """A row waiting in its environment's queue, with its retry state (in memory: a restart retries at once)."""

    row: OutboxRow
    failures: int = 0
    next_at: float = 0.0
    result: dict[str, Any] | None = None
    finished: bool = False
    in_flight: bool = False  # being sent now: an edit of it waits behind it instead of changing it
