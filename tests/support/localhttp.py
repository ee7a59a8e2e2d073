"""A throwaway aiohttp server on a free loopback port (for tests that need a misbehaving peer), a GET and a poll for
local listeners, and the bot as a real process."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import aiohttp
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


async def get(port: int, path: str) -> tuple[int, str]:
    """One GET to a local listener: (status, text)."""
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as resp:
        return resp.status, await resp.text()


async def until(fetch, ok):  # type: ignore[no-untyped-def]
    """Ask again (an HTTP endpoint has no event to wait on) until `ok(answer)`, for up to 10 s; that answer."""
    async with asyncio.timeout(10):
        while True:
            answer = await fetch()
            if ok(answer):
                return answer
            await asyncio.sleep(0.05)


async def start_bot(
    config: Path, *args: str, env: dict[str, str], stdout: int = asyncio.subprocess.PIPE
) -> asyncio.subprocess.Process:
    """`python -m bot --config CONFIG ARGS` as a real process (stderr piped: its log)."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "--config", str(config), *args, stdout=stdout, stderr=asyncio.subprocess.PIPE, env=env
    )  # fmt: skip
