"""The durable outbox: every outgoing alert, edit and line is written to the store before it is sent.

A row is marked sent once Discord confirmed it (the message id is kept). The transport sends channel messages
with the row's nonce and `enforce_nonce`, so a send that reached Discord but whose confirmation was lost
(timeout, crash) is not posted a second time. When the store is unavailable, rows are kept in memory.

Nothing is given up while it matters:
- per environment, rows go out in the order they were written: the oldest undelivered row blocks the later
  ones, so an environment's later message never overtakes an earlier one;
- a transient failure (5xx, 429, timeout, network) is retried with capped backoff for as long as it takes; only
  a permanent one (a request Discord refuses) is given up, with one error line;
- once the ops channel has kept failing for two minutes, a post it refuses goes through the fallback transport
  (the webhook), if any; the channel is still tried first, so its recovery ends the detour;
- an undelivered post is superseded: an edit of it replaces its payload, and its final edit (resolved, buttons
  removed: `meta["alert"] is False`) drops it and its replies, so an incident that was resolved before
  anyone could see its CRITICAL ends as its one short "resolved" line.

Until a post lands its handle is `{"pending": nonce}`; edits and replies naming it are resolved at delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from bot.core.lease import Fence, always_leading
from bot.core.records import OutboxRow
from bot.delivery.folding import EditFolding
from bot.delivery.guard import StoreGuard
from bot.delivery.rows import EDIT, POST, QueuedRow, landed, pending_handle, pending_nonce
from bot.redact import scrub_payload

log = logging.getLogger(__name__)


FIRST_RETRY_S = 5.0
MAX_RETRY_S = 60.0  # capped: once Discord is back, a waiting alert goes out within a minute
FALLBACK_AFTER_S = 120.0  # once the channel has failed this long, posts it refuses go through the webhook
REMEMBERED_ROWS = 10_000  # finished nonces kept in memory (never sent twice, edits of them resolved)


class DeliveryError(Exception):
    """A send that did not happen. transient: try again later (5xx, 429, timeout, network)."""

    def __init__(
        self, message: str, *, transient: bool, retry_after: float | None = None, timed_out: bool = False
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after
        self.timed_out = timed_out  # no answer: the message may have landed all the same


class Transport(Protocol):
    async def deliver(
        self, env: str, kind: str, payload: dict[str, Any], meta: dict[str, Any], nonce: str
    ) -> dict[str, Any] | None:
        """Send one row; return where it landed ({"channel_id", "message_id"} or {"webhook_message_id"})."""


OnDelivered = Callable[[OutboxRow, dict[str, Any] | None], Awaitable[None]]


# -- decisions (pure) ----------------------------------------------------------------------------------
def retry_delay(failures: int, retry_after: float | None = None) -> float:
    """Seconds to wait after `failures` consecutive transient failures: doubling from 5 s, capped at 60 s."""
    backoff = min(MAX_RETRY_S, FIRST_RETRY_S * 2 ** max(0, failures - 1))
    return max(backoff, min(retry_after or 0.0, MAX_RETRY_S))


def use_fallback(kind: str, failing_since: float | None, now: float) -> bool:
    """Once the channel kept failing: only new posts, the webhook cannot edit a channel message."""
    return kind == POST and failing_since is not None and now - failing_since >= FALLBACK_AFTER_S


class Outbox(EditFolding):
    def __init__(
        self,
        guard: StoreGuard,
        transport: Transport,
        *,
        timeout_s: float = 15.0,
        attempts: int = 3,
        backoff_s: float = 0.5,
        fallback: Transport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        background: bool = True,
    ) -> None:
        self.guard = guard
        self.transport = transport
        self.fallback = fallback
        self.timeout_s = timeout_s
        self.attempts = attempts  # tries of a fresh send before it is left to the periodic flush
        self.backoff_s = backoff_s
        self.clock = clock
        self.sleep = sleep
        self.on_delivered: OnDelivered | None = None  # told when a row other than the caller's own lands
        self.fence: Fence = always_leading  # a replica that lost the leader lease sends nothing (rows stay stored)
        self.envs: frozenset[str] | None = None  # replicas: leader groups share a store, each adopts its own rows
        self._queues: dict[str, list[QueuedRow]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._flush_lock = asyncio.Lock()
        self._finished: OrderedDict[str, dict[str, Any] | None] = OrderedDict()  # nonce -> result
        self._channel_failing_since: float | None = None  # the primary transport's current streak of failures
        self._falling_back = False
        # Delivery runs in a task per environment, so the caller (the monitor, holding that environment's check
        # lock) never waits for Discord; `background=False` sends inline, for callers that want the result.
        self.background = background
        self._drainers: dict[str, asyncio.Task[None]] = {}
        self._more: set[str] = set()  # environments that got rows while their drainer was running

    def _lock(self, env: str) -> asyncio.Lock:
        return self._locks.setdefault(env, asyncio.Lock())

    async def send(
        self, env: str, kind: str, payload: dict[str, Any], meta: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """Write, send (after the environment's older rows), mark sent.

        Returns where it landed; `{"pending": nonce}` while it waits (use it as a handle); None when there is
        nothing to wait for (given up, or an edit folded into its undelivered post).
        """
        meta = dict(meta or {})
        payload = scrub_payload(payload)
        nonce = uuid.uuid4().hex[:25]  # Discord's nonce limit is 25 characters
        row_id: int | None = None
        if kind == POST:
            # Written before waiting behind the environment's older rows: a stop while an older send hangs
            # must not lose this one (it goes out at the next start).
            row_id = await self.guard(lambda s: s.outbox_add(env, kind, payload, meta, nonce))
        if self.background:
            if kind == EDIT:
                if await self._fold(env, payload, meta):
                    return None
                row_id = await self.guard(lambda s: s.outbox_add(env, kind, payload, meta, nonce))
            self._queues.setdefault(env, []).append(
                QueuedRow(OutboxRow(row_id or 0, env, kind, payload, meta, nonce, 0, None, None))
            )
            self._kick(env)
            return pending_handle(nonce) if kind == POST else None
        async with self._lock(env):
            if kind == EDIT:
                if await self._fold(env, payload, meta):
                    return None  # folded into its undelivered post, which is not in flight (the lock is ours)
                row_id = await self.guard(lambda s: s.outbox_add(env, kind, payload, meta, nonce))
            item = QueuedRow(OutboxRow(row_id or 0, env, kind, payload, meta, nonce, 0, None, None))
            self._queues.setdefault(env, []).append(item)
            await self._drain(env, self.attempts, due_only=False, own=item)
        if item.finished:
            return item.result if landed(item.result) or kind == EDIT else None
        return pending_handle(nonce)

    def _kick(self, env: str) -> None:
        """Make sure the environment's drainer runs (one per environment keeps its rows in order)."""
        task = self._drainers.get(env)
        if task is not None and not task.done():
            self._more.add(env)
            return
        self._drainers[env] = asyncio.create_task(self._drain_in_background(env), name=f"outbox:{env}")

    async def _drain_in_background(self, env: str) -> None:
        try:
            while True:
                self._more.discard(env)
                async with self._lock(env):
                    await self._drain(env, self.attempts, due_only=False)
                if env not in self._more:
                    return
        except asyncio.CancelledError:
            raise
        except Exception:  # never lose the drainer silently: the periodic flush retries what is left
            log.exception("outbox delivery for %s failed", env)

    async def settle(self) -> None:
        """Wait until every environment's drainer is done (what is left waits for the periodic flush)."""
        while running := self.in_flight():
            await asyncio.gather(*running, return_exceptions=True)

    def waiting(self) -> int:
        """Rows not delivered yet (in memory: what this process still has to send)."""
        return sum(len(queue) for queue in self._queues.values())

    def in_flight(self) -> set[asyncio.Task[None]]:
        """The running drainers (a stop gives them its grace, then cuts them short: rows stay stored)."""
        return {t for t in self._drainers.values() if not t.done()}

    async def flush(self, on_delivered: OnDelivered | None = None) -> int:
        """Send what is due (after a restart, and periodically), oldest first per environment; how many landed."""
        if on_delivered is not None:
            self.on_delivered = on_delivered
        async with self._flush_lock:
            self._adopt(await self.guard(lambda s: s.outbox_pending()) or [])
            delivered = 0
            for env in list(self._queues):
                async with self._lock(env):
                    delivered += await self._drain(env, 1, due_only=True)
            return delivered

    def _adopt(self, stored: list[OutboxRow]) -> None:
        """Rows the store has and this run does not (a previous run's): they are older, so they go first."""
        known = set(self._finished) | {i.row.nonce for q in self._queues.values() for i in q}
        older: dict[str, list[QueuedRow]] = {}
        for row in stored:
            if row.nonce not in known and (self.envs is None or row.env in self.envs):
                older.setdefault(row.env, []).append(QueuedRow(row))
        for env, items in older.items():
            self._queues[env] = items + self._queues.get(env, [])

    async def _drain(self, env: str, tries: int, *, due_only: bool, own: QueuedRow | None = None) -> int:
        """Send the environment's queue in order until a row stays pending. Call with the env's lock held."""
        queue = self._queues.get(env, [])
        delivered = 0
        while queue:
            item = queue[0]
            if due_only and item.next_at > self.clock():
                break
            if not await self._try(item, tries):
                break
            if item in queue:  # an edit may have superseded it while it waited between tries
                queue.remove(item)
            if landed(item.result):
                delivered += 1
                if item is not own and self.on_delivered is not None:
                    with contextlib.suppress(Exception):
                        await self.on_delivered(item.row, item.result)
        if not queue:
            self._queues.pop(env, None)
        return delivered

    async def _try(self, item: QueuedRow, tries: int) -> bool:
        """Deliver one row: True when it is finished (landed, skipped, superseded or given up), False: later.

        The row is in flight only while a request is out: an edit arriving then queues behind it. At any other
        moment an edit folds into it, and its final edit supersedes it (checked before every request).
        """
        try:
            return await self._attempts(item, tries)
        finally:
            item.in_flight = False

    async def _attempts(self, item: QueuedRow, tries: int) -> bool:
        row = item.row
        for attempt in range(1, tries + 1):
            if row.kind == POST:
                await self._absorb_queued_edits(item)
            if item.finished:  # superseded by its final edit while it waited
                return True
            meta = await self._resolve_handles(row.meta)
            if meta is None:
                await self._finish(item, {"skipped": "the message to edit was never delivered"})
                return True
            if row.id:
                await self.guard(lambda s: s.outbox_attempt(row.id))
            if item.finished:  # superseded during the store writes above
                return True
            if not self.fence():  # asked right before the request: the row waits for the new leader
                return False
            row.attempts += 1
            item.in_flight = True
            result, error = await self._deliver(self.transport, row, meta)
            item.in_flight = False
            now = self.clock()
            if error is None:
                if self._channel_failing_since is not None:
                    log.info("the ops channel takes messages again")
                self._channel_failing_since, self._falling_back = None, False
            elif error.transient:
                self._channel_failing_since = self._channel_failing_since or now
                # Not after a timeout: that send may have landed, and only the channel recognises its nonce.
                if not error.timed_out and self.fallback is not None:
                    if use_fallback(row.kind, self._channel_failing_since, now):
                        item.in_flight = True
                        result, error = await self._via_fallback(self.fallback, row, meta, error)
                        item.in_flight = False
            if error is None:
                await self._finish(item, result or {})
                return True
            if not error.transient:
                log.error("%s %s for %s given up after %d attempts: %s", row.kind, row.id, row.env, row.attempts, error)
                await self._finish(item, {"failed": str(error)})
                return True
            item.failures += 1
            item.next_at = now + retry_delay(item.failures, error.retry_after)
            if item.failures == 1 or item.failures % 10 == 0:  # a long outage logs a line now and then, not each try
                log.warning(
                    "%s for %s not delivered (attempt %d, retrying until it is): %s",
                    row.kind,
                    row.env,
                    row.attempts,
                    error,
                )
            if attempt < tries:
                await self.sleep(error.retry_after or self.backoff_s * attempt)
        return False

    async def _via_fallback(
        self, fallback: Transport, row: OutboxRow, meta: dict[str, Any], channel_error: DeliveryError
    ) -> tuple[dict[str, Any] | None, DeliveryError | None]:
        """The post through the webhook; a webhook that refuses for good is not used again."""
        if not self._falling_back:
            self._falling_back = True
            log.warning(
                "the ops channel keeps failing (%s): posts go through the webhook until it works", channel_error
            )
        result, error = await self._deliver(fallback, row, meta)
        if error is not None and not error.transient:
            log.error("the webhook fallback refused a post (%s): messages wait for the ops channel", error)
            self.fallback = None
            return None, channel_error
        return result, error

    async def _deliver(
        self, transport: Transport, row: OutboxRow, meta: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, DeliveryError | None]:
        try:
            result = await asyncio.wait_for(
                transport.deliver(row.env, row.kind, row.payload, meta, row.nonce), self.timeout_s
            )
        except TimeoutError:
            return None, DeliveryError(f"no answer within {self.timeout_s:g} s", transient=True, timed_out=True)
        except DeliveryError as err:
            return None, err
        except Exception as err:  # a bug or an unexpected answer: give the row up loudly, never crash the caller
            log.exception("sending %s %s for %s failed", row.kind, row.id, row.env)
            return None, DeliveryError(f"{type(err).__name__}", transient=False)
        return result, None

    async def _resolve_handles(self, meta: dict[str, Any]) -> dict[str, Any] | None:
        """Pending handles in `target` / `reply_to` replaced by where the post landed; None: nothing to edit."""
        for key in ("target", "reply_to"):
            nonce = pending_nonce(meta.get(key))
            if nonce is None:
                continue
            result = self._finished.get(nonce)
            if result is None:
                result = await self._stored_result(nonce)
            if landed(result):
                meta = {**meta, key: result}
            elif key == "reply_to":
                meta = {k: v for k, v in meta.items() if k != key}  # a plain post, without the reference
            else:
                return None
        return meta

    async def _stored_result(self, nonce: str) -> dict[str, Any] | None:
        return await self.guard(lambda s: s.outbox_result(nonce))

    async def _finish(self, item: QueuedRow, result: dict[str, Any]) -> None:
        item.finished, item.result = True, result
        self._finished[item.row.nonce] = result
        while len(self._finished) > REMEMBERED_ROWS:
            self._finished.popitem(last=False)
        if item.row.id:
            await self.guard(lambda s: s.outbox_sent(item.row.id, result))
