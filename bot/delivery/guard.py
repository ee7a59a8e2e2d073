"""The guard around every store call of the delivery and the desk: a failing store is logged once, then lived with.

May import bot.store and bot.observe.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from bot.store import IncidentStore, StoreError

if TYPE_CHECKING:  # the CLI guards its store too, and needs no metrics library for that
    from bot.observe import Metrics

log = logging.getLogger("bot.delivery.outbox")  # the name its lines have always had

T = TypeVar("T")


class StoreGuard:
    """Runs store calls; each distinct failure is logged clearly once, and the caller gets None (goes on in memory).

    `error` (shown in /status) is the last problem; it clears after a minute without failures.
    """

    CLEAR_AFTER_S = 60.0

    def __init__(self, store: IncidentStore | None, metrics: Metrics | None = None) -> None:
        self.store = store
        self.metrics = metrics
        self.error: str | None = None
        self._error_at = 0.0
        self._logged: set[str] = set()

    @property
    def available(self) -> bool:
        return self.store is not None

    async def __call__(self, call: Callable[[IncidentStore], Awaitable[T]]) -> T | None:
        if self.store is None:
            return None
        try:
            result = await call(self.store)
        except StoreError as err:
            if self.metrics is not None:
                self.metrics.store_error()
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
