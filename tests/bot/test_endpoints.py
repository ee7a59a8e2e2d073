"""The HTTP listener (bot/endpoints.py) on a real socket: what Prometheus and an orchestrator's probes get."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot import endpoints as endpoints_module
from bot.core.verdicts import Verdict
from bot.endpoints import Endpoints
from bot.observe import Metrics
from bot.redact import register


async def get(endpoints: Endpoints, path: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{endpoints.port}{path}") as resp:
        return resp.status, resp.headers["Content-Type"], await resp.text()


async def test_metrics_healthz_and_readyz_answer_and_readyz_says_why_not():
    metrics = Metrics(["dev"])
    metrics.checked("dev", Verdict.HEALTHY, 12.0)
    register("hunter2-secret-password")
    reason: list[str | None] = [None]

    async def ready() -> str | None:
        return reason[0]

    endpoints = Endpoints(metrics, ready)
    await endpoints.start("127.0.0.1", 0)
    try:
        status, ctype, text = await get(endpoints, "/metrics")
        assert status == 200 and ctype.startswith("text/plain") and "version=" in ctype
        names = {f.name for f in text_string_to_metric_families(text)}
        assert {"pgrst_ops_checks", "pgrst_ops_probe_duration_seconds", "pgrst_ops_verdict"} <= names
        assert await get(endpoints, "/healthz") == (200, "text/plain; charset=utf-8", "ok\n")
        assert (await get(endpoints, "/readyz"))[::2] == (200, "ready\n")
        reason[0] = "incident store: password hunter2-secret-password rejected"
        status, _, text = await get(endpoints, "/readyz")
        assert status == 503 and text.startswith("not ready: incident store") and "hunter2" not in text
        assert (await get(endpoints, "/nope"))[0] == 404
    finally:
        await endpoints.stop()
    with pytest.raises(aiohttp.ClientConnectionError):  # stopped: the port is closed
        await get(endpoints, "/healthz")


async def test_a_hung_readiness_check_is_not_ready_instead_of_a_hung_probe(monkeypatch):
    monkeypatch.setattr(endpoints_module, "READY_TIMEOUT_S", 0.2)
    hang = asyncio.Event()

    async def ready() -> str | None:
        await hang.wait()
        return None

    endpoints = Endpoints(Metrics(), ready)
    await endpoints.start("127.0.0.1", 0)
    try:
        status, _, text = await get(endpoints, "/readyz")
        assert status == 503 and "took longer than 0.2 s" in text
        assert (await get(endpoints, "/healthz"))[0] == 200
    finally:
        hang.set()
        await endpoints.stop()
