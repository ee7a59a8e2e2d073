"""The clean stop's bookkeeping, without Discord: finish within the grace period, or end as interrupted."""

from __future__ import annotations

import asyncio

from bot.ops.inflight import InFlight


async def owner(inflight: InFlight, work_s: float, *, notify_after_s: float | None = None) -> str:
    """What a command does: run its work under track(), and say how it ended."""
    with inflight.track("/reload dev by Bob") as action:

        async def work() -> str:
            if notify_after_s is not None:
                await asyncio.sleep(notify_after_s)
                action.notify_sent = True
            await asyncio.sleep(work_s)
            return "recovered"

        result = await action.until_interrupted(work())
        return action.interruption if result is None else result


async def test_an_action_that_ends_within_the_grace_period_keeps_its_result():
    inflight = InFlight()
    aborted = []
    task = asyncio.create_task(owner(inflight, 0.05))
    await asyncio.sleep(0)
    assert [a.what for a in inflight.running] == ["/reload dev by Bob"]
    interrupted = await inflight.drain(2.0, lambda: aborted.append(True))
    assert await task == "recovered" and interrupted == [] and inflight.stopping and aborted == [True]


async def test_an_action_past_the_grace_period_is_interrupted_and_says_whether_the_notify_went_out(caplog):
    inflight = InFlight()
    before = asyncio.create_task(owner(inflight, 60))
    after = asyncio.create_task(owner(inflight, 60, notify_after_s=0.01))
    await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    interrupted = await inflight.drain(0.2, lambda: None)
    took = loop.time() - started
    assert len(interrupted) == 2 and 0.2 <= took < 1.0
    assert await before == "interrupted by shutdown before NOTIFY"
    assert await after == "interrupted by shutdown after NOTIFY sent"
    assert inflight.running == []
    assert caplog.text.count("stopped: /reload dev by Bob was interrupted by shutdown") == 2


async def test_a_cancellation_that_is_not_a_shutdown_is_not_reported_as_one():
    inflight = InFlight()
    task = asyncio.create_task(owner(inflight, 60))
    await asyncio.sleep(0.01)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    else:
        raise AssertionError("the cancellation was swallowed")
    assert inflight.running == []
