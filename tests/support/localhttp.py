"""A throwaway aiohttp server on a free loopback port, for tests that need a misbehaving peer."""

from __future__ import annotations

from typing import Any

from aiohttp import web


class LocalServer:
    """`async with LocalServer(app) as base_url:`; or LocalServer.catch_all(handler) for every path."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.runner: web.AppRunner | None = None

    @classmethod
    def catch_all(cls, handler: Any) -> LocalServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        return cls(app)

    async def __aenter__(self) -> str:
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
