"""The HTTP listener for Prometheus and orchestrators: `/metrics`, `/healthz` and `/readyz` (aiohttp's web server).

`/healthz` answers 200 whenever its handler runs: the event loop answers, which is what a liveness probe or the
image's HEALTHCHECK asks. `/readyz` asks the composition root's readiness check (the leader: connected to Discord
and the incident store; a standby replica: the store's database reachable) and answers 200, or 503 with the
short reason in plain text; with replicas its body names the role ("ready: standby"). The composition root
(bot/app.py) starts it in both modes when the config has a `metrics` section and stops it on shutdown.
Imports aiohttp, prometheus_client, bot.observe and bot.redact (a reason never shows a secret).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from bot.observe import Metrics
from bot.redact import scrub

log = logging.getLogger("pgrst_ops")

# None when ready, else why not (one short line, shown to whoever asks: no secrets, no details beyond it).
Readiness = Callable[[], Awaitable[str | None]]

READY_TIMEOUT_S = 5.0  # a store that hangs makes the bot not ready, never a hung probe


class Endpoints:
    def __init__(self, metrics: Metrics, ready: Readiness, role: Callable[[], str] | None = None) -> None:
        self.metrics = metrics
        self.ready = ready
        self.role = role  # replicas: "leader" or "standby", shown in /readyz's body
        self._runner: web.AppRunner | None = None
        self.port: int | None = None  # the bound port (the configured one, or the one chosen for port 0)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        return app

    async def start(self, host: str, port: int) -> None:
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1]) if runner.addresses else port
        log.info("metrics and health endpoints on http://%s:%d (/metrics, /healthz, /readyz)", host, self.port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        body = self.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        try:
            reason = await asyncio.wait_for(self.ready(), READY_TIMEOUT_S)
        except TimeoutError:
            reason = f"readiness check took longer than {READY_TIMEOUT_S:g} s"
        if reason is not None:
            return web.Response(status=503, text=f"not ready: {scrub(reason)[:300]}\n")
        return web.Response(text=f"ready: {self.role()}\n" if self.role is not None else "ready\n")
