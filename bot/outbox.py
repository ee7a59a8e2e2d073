"""The durable outbox: every outgoing alert, edit and line is written to the store before it is sent.

A row is marked sent once Discord confirmed it (the message id is kept). A failed send stays pending and is
retried (here, by the periodic flush, and after a restart); the transport sends channel messages with the
row's nonce and `enforce_nonce`, so a send that reached Discord but whose confirmation was lost (timeout,
crash) is not posted a second time. When the store is unavailable, messages are still sent (in memory only).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from bot.store import OutboxRow, Store, StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")

# kinds of row
POST = "post"  # a new channel message (CRITICAL alert with buttons, a line, a reminder reply)
EDIT = "edit"  # edit a message we sent earlier (resolved, acknowledged)

MAX_ATTEMPTS = 20  # then the row is given up (logged as an error), never silently


class DeliveryError(Exception):
    """A send that did not happen. transient: try again later (5xx, 429, timeout, network)."""

    def __init__(self, message: str, *, transient: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after


class Transport(Protocol):
    async def deliver(
        self, env: str, kind: str, payload: dict[str, Any], meta: dict[str, Any], nonce: str
    ) -> dict[str, Any] | None:
        """Send one row; return where it landed ({"channel_id", "message_id"} or {"webhook_message_id"})."""


class StoreGuard:
    """Runs store calls; each distinct failure is logged clearly once, and the caller gets None (goes on in memory).

    `error` (shown in /status) is the last problem; it clears after a minute without failures.
    """

    CLEAR_AFTER_S = 60.0

    def __init__(self, store: Store | None) -> None:
        self.store = store
        self.error: str | None = None
        self._error_at = 0.0
        self._logged: set[str] = set()

    @property
    def available(self) -> bool:
        return self.store is not None

    async def __call__(self, call: Callable[[Store], Awaitable[T]]) -> T | None:
        if self.store is None:
            return None
        try:
            result = await call(self.store)
        except StoreError as err:
            text = str(err)
            if text not in self._logged:
                self._logged.add(text)
                log.error("%s: incidents continue in memory only (probing and alerting go on)", text)
            self.error, self._error_at = text, time.monotonic()
            return None
        if self.error is not None and time.monotonic() - self._error_at > self.CLEAR_AFTER_S:
            log.warning("incident store works again (last problem: %s)", self.error)
            self.error = None
        return result


class Outbox:
    def __init__(
        self,
        guard: StoreGuard,
        transport: Transport,
        *,
        timeout_s: float = 15.0,
        attempts: int = 3,
        backoff_s: float = 0.5,
    ) -> None:
        self.guard = guard
        self.transport = transport
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._memory: list[OutboxRow] = []  # rows that could not be written (store down), retried in memory
        self._flush_lock = asyncio.Lock()
        self._inflight: set[int] = set()  # rows being sent by send(): flush() leaves them alone

    async def send(
        self, env: str, kind: str, payload: dict[str, Any], meta: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """Write, send (with retries), mark sent. Returns where it landed, or None if it is still pending."""
        meta = meta or {}
        nonce = uuid.uuid4().hex[:25]  # Discord's nonce limit is 25 characters
        row_id = await self.guard(lambda s: s.outbox_add(env, kind, payload, meta, nonce))
        row = OutboxRow(row_id or 0, env, kind, payload, meta, nonce, 0, None, None)
        self._inflight.add(row.id)
        try:
            result, done = await self._attempt(row, self.attempts)
        finally:
            self._inflight.discard(row.id)
        if not done and row_id is None:
            self._memory.append(row)
        return result

    async def _attempt(self, row: OutboxRow, attempts: int) -> tuple[dict[str, Any] | None, bool]:
        """(result, finished): finished is False when the row should be tried again later."""
        for attempt in range(1, attempts + 1):
            if row.id:
                await self.guard(lambda s: s.outbox_attempt(row.id))
            row.attempts += 1
            try:
                result = await asyncio.wait_for(
                    self.transport.deliver(row.env, row.kind, row.payload, row.meta, row.nonce), self.timeout_s
                )
            except TimeoutError:
                error = DeliveryError(f"no answer from Discord within {self.timeout_s:g} s", transient=True)
            except DeliveryError as err:
                error = err
            except Exception as err:  # a bug or an unexpected answer: give the row up loudly, never crash the caller
                log.exception("sending %s %s for %s failed", row.kind, row.id, row.env)
                error = DeliveryError(f"{type(err).__name__}", transient=False)
            else:
                if row.id:
                    await self._mark(row.id, result or {})
                return result, True
            if not error.transient or row.attempts >= MAX_ATTEMPTS:
                log.error("%s %s for %s given up after %d attempts: %s", row.kind, row.id, row.env, row.attempts, error)
                if row.id:
                    await self._mark(row.id, {"failed": str(error)})
                return None, True
            log.warning("%s for %s not delivered (attempt %d): %s", row.kind, row.env, row.attempts, error)
            if attempt < attempts:
                await asyncio.sleep(error.retry_after or self.backoff_s * attempt)
        return None, False

    async def _mark(self, row_id: int, result: dict[str, Any]) -> None:
        await self.guard(lambda s: s.outbox_sent(row_id, result))

    async def flush(
        self, on_delivered: Callable[[OutboxRow, dict[str, Any] | None], Awaitable[None]] | None = None
    ) -> int:
        """Send every pending row once more (after a restart, and periodically). Returns how many landed."""
        async with self._flush_lock:
            rows = await self.guard(lambda s: s.outbox_pending()) or []
            rows += self._memory
            self._memory = []
            delivered = 0
            for row in rows:
                if row.id and row.id in self._inflight:
                    continue
                result, done = await self._attempt(row, 1)
                if not done:
                    if not row.id:
                        self._memory.append(row)
                    continue
                delivered += 1
                if on_delivered is not None:
                    with contextlib.suppress(Exception):
                        await on_delivered(row, result)
            return delivered
