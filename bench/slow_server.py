"""Local servers for the sweep benchmark: /<delay>/... answers `[]` after <delay> seconds, on each port given."""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.match_info["delay"]))
    return web.json_response([], headers={"Server": "postgrest/12.0.2"})


async def serve(ports: list[int]) -> None:
    app = web.Application()
    app.router.add_route("*", "/{delay}/{tail:.*}", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    for port in ports:  # one port per environment: distinct origins, as 100 real projects would be
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    await asyncio.Event().wait()


def main() -> None:
    asyncio.run(serve([int(p) for p in sys.argv[1:]]))


if __name__ == "__main__":
    main()
