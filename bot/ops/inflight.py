"""What the bot is in the middle of, so that a stop (SIGTERM/SIGINT) lets it finish or says it was cut short.

A command that changes something runs inside `InFlight.track()`. On stop, `drain()` refuses new work, waits
up to the grace period, then interrupts what is left: each action's `until_interrupted()` returns None and
its owner edits its message and completes its audit row as interrupted, within FINALIZE_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

FINALIZE_S = 5.0  # time an interrupted action gets to edit its message and write its audit row


@dataclass(frozen=True)
class Interrupted:
    """A changing action a stop cut short; `how` says what had been done (e.g. whether the NOTIFY went out)."""

    how: str


@dataclass(eq=False)
class Action:
    what: str  # "/reload dev by Bob", for the log
    task: asyncio.Task[object]
    notify_sent: bool = False  # set by the owner when the recovery reports its NOTIFY
    asking: bool = False  # waiting for a person (Confirm): a stop interrupts it at once, without a grace period
    interrupted: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def interruption(self) -> str:
        """The final state, in the words the message and the audit row use."""
        when = "after NOTIFY sent" if self.notify_sent else "before NOTIFY"
        return f"interrupted by shutdown {when}"

    async def until_interrupted(self, work: Awaitable[T]) -> T | None:
        """The work's result, or None when a shutdown interrupts it first (the work is then cancelled)."""
        job = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self.interrupted.wait())
        try:
            await asyncio.wait({job, stop}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            job.cancel()
            raise
        finally:
            stop.cancel()
        if job.done() and not job.cancelled():
            return job.result()
        if not self.interrupted.is_set():  # cancelled by someone else: not ours to report
            raise asyncio.CancelledError
        job.cancel()  # (a recovery cancelled by the shutdown's abort ends here too)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await job
        return None


class InFlight:
    def __init__(self) -> None:
        self.stopping = False
        self._actions: set[Action] = set()

    @contextlib.contextmanager
    def track(self, what: str) -> Iterator[Action]:
        task = asyncio.current_task()
        assert task is not None
        action = Action(what, task)
        self._actions.add(action)
        try:
            yield action
        finally:
            self._actions.discard(action)

    @property
    def running(self) -> list[Action]:
        return list(self._actions)

    async def drain(self, grace_s: float, abort: Callable[[], None]) -> list[Action]:
        """Stop taking work, let running actions finish within grace_s, interrupt the rest. Returns those."""
        self.stopping = True
        actions = self.running
        for action in actions:
            if action.asking:
                action.interrupted.set()
        working = [a for a in actions if not a.asking]
        if working:
            log.info("stopping: waiting up to %g s for %s", grace_s, "; ".join(a.what for a in working))
            await asyncio.wait({a.task for a in working}, timeout=grace_s)
        late = [a for a in actions if not a.task.done() or a.interrupted.is_set()]
        for action in late:
            action.interrupted.set()
        abort()  # nothing more is sent to a database once the grace period is over
        if late:
            _, stuck = await asyncio.wait({a.task for a in late}, timeout=FINALIZE_S)
            for task in stuck:
                task.cancel()
            for action in late:
                log.warning("stopped: %s was %s", action.what, action.interruption)
        elif actions:
            log.info("stopping: every action finished within the grace period")
        return late
