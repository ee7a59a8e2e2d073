"""PostgREST's own reload of one NOTIFY, watched from a process of its own (so it takes no CPU from the one measured).

`python -m bench.floor_watch DSN CHANNEL URL`: LISTENs on CHANNEL, prints `ready`, and once the notification
arrives polls `OPTIONS URL` every 1 ms until it answers 200. Prints `<notified> <fresh>`: both on the system's
monotonic clock (time.perf_counter, CLOCK_MONOTONIC on Linux), so the parent can pair them with its own times.
"""

from __future__ import annotations

import asyncio
import sys
import time

import asyncpg
import httpx


async def main(dsn: str, channel: str, url: str) -> None:
    notified = asyncio.get_running_loop().create_future()
    conn = await asyncpg.connect(dsn)
    await conn.add_listener(channel, lambda *_: notified.done() or notified.set_result(time.perf_counter()))
    async with httpx.AsyncClient(timeout=30) as client:
        await client.options(url)  # connect now, not while timing
        print("ready", flush=True)
        at = await asyncio.wait_for(notified, 60)
        while (await client.options(url)).status_code != 200:
            await asyncio.sleep(0.001)
        fresh = time.perf_counter()
    await conn.close()
    print(f"{at} {fresh}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
