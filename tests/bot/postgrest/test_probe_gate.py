"""The Prober's gate (at most PROBES_AT_ONCE environments start at once): hung environments cannot hold back a
healthy one for their whole budget, and each environment's budget starts when its checks do."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from bot.config import parse_settings, resolve_targets
from bot.core.verdicts import Verdict
from bot.postgrest.probe import PROBES_AT_ONCE, Prober
from bot.postgrest.requests import make_http_client
from tests.support.localhttp import LocalServer

BUDGET_S = 3.0


@contextlib.asynccontextmanager
async def hung_origins(handler: Any, count: int) -> AsyncIterator[list[str]]:
    """`count` ports of one server: an origin per environment, as distinct projects are (one origin's own
    connection cap would otherwise be what makes them wait)."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    urls = []
    try:
        for _ in range(count):
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            urls.append(f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}")  # type: ignore[union-attr]
        yield urls
    finally:
        await runner.cleanup()


async def test_hung_environments_do_not_hold_back_a_healthy_one() -> None:
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response([])

    async def answer(request: web.Request) -> web.Response:
        return web.json_response([], headers={"Server": "postgrest/12.0.2"})

    hung = PROBES_AT_ONCE + 6
    async with hung_origins(hang, hung) as slow, LocalServer.catch_all(answer) as fine:
        timeouts = {"connect_s": 1, "read_s": 5, "total_s": BUDGET_S}
        envs = {f"hung{i}": {"rest_url": url, "timeouts": timeouts} for i, url in enumerate(slow)}
        envs["fine"] = {"rest_url": fine, "probe_tables": ["judgments"]}
        targets = resolve_targets(parse_settings({"environments": envs}), need_dsn=False)
        try:
            async with make_http_client() as client:
                prober = Prober(client)
                started = time.perf_counter()
                tasks = {t.name: asyncio.create_task(prober.probe(t)) for t in targets}  # the hung ones first
                healthy = await asyncio.wait_for(tasks["fine"], 30)
                healthy_after = time.perf_counter() - started
                reports = await asyncio.wait_for(asyncio.gather(*tasks.values()), 60)
        finally:
            release.set()
    assert healthy.verdict is Verdict.HEALTHY
    assert healthy_after < BUDGET_S, f"the healthy environment waited {healthy_after:.1f} s behind hung ones"
    hung_reports = [r for r in reports if r.env != "fine"]
    assert {r.verdict for r in hung_reports} == {Verdict.TIMEOUT}
    # Those that queued at the gate still had their whole budget once their checks started.
    assert min(r.duration_ms for r in hung_reports) >= BUDGET_S * 1000 * 0.95
