"""Probes against PostgREST versions the tests cannot run: a local server answering as PostgREST 14 does.

The answers are PostgREST's documented behaviour (changelog, errors page, admin server and observability
docs); 12.0.2, the version that runs here, is checked too where it differs.
"""

from __future__ import annotations

import json

from aiohttp import web

from bot.core.verdicts import Verdict
from bot.postgrest.probe import Prober
from bot.postgrest.requests import make_http_client
from tests.conftest import build_settings, targets_for
from tests.support.localhttp import LocalServer

SERVER = "postgrest/14.1"
METRICS = """# TYPE pgrst_schema_cache_loads_total counter
pgrst_schema_cache_loads_total{status="FAIL"} 12.0
pgrst_schema_cache_loads_total{status="SUCCESS"} 1.0
pgrst_schema_cache_query_time_seconds 0.25
pgrst_db_pool_available 10.0
pgrst_db_pool_waiting 0.0
pgrst_db_pool_max 10.0
"""


def error(status: int, code: str, *, body: bool = True) -> web.Response:
    text = json.dumps({"code": code, "details": None, "hint": None, "message": "m"}) if body else ""
    headers = {"Server": SERVER, "Proxy-Status": f"PostgREST; error={code}"}
    return web.Response(status=status, text=text, content_type="application/json", headers=headers)


def postgrest_14(*, ready: int, cached: set[str], schema_cache: bool = True) -> web.Application:
    """Main API and admin port on one server (paths do not clash here), as PostgREST 14 answers."""

    async def handle(request: web.Request) -> web.Response:
        path = request.path
        if path == "/live":
            return web.Response(status=200, headers={"Server": SERVER})
        if path == "/ready":
            return web.Response(status=ready, headers={"Server": SERVER})
        if path == "/metrics":
            return web.Response(text=METRICS, content_type="text/plain", headers={"Server": SERVER})
        if not schema_cache:
            return error(503, "PGRST002", body=request.method != "HEAD")
        if path.lstrip("/") not in cached:
            return error(404, "PGRST205", body=request.method != "OPTIONS")  # the code in the header only
        return web.json_response([], headers={"Server": SERVER})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def probe(url: str, **overrides):
    env = {"rest_url": url, "admin_url": url, "probe_root": False, "probe_tables": ["orders"], **overrides}
    settings = build_settings({"env": env})
    (target,) = targets_for(settings, {})
    async with make_http_client() as client:
        return await Prober(client).probe(target)


async def test_table_missing_from_a_v14_cache_is_stale_from_pgrst205_even_without_a_body():
    async with LocalServer(postgrest_14(ready=200, cached=set())) as url:
        report = await probe(url)
    checks = {c.name: c for c in report.checks}
    assert report.verdict is Verdict.STALE_SCHEMA_CACHE, report.explanation
    assert (checks["data:orders"].status, checks["data:orders"].code) == (404, "PGRST205")
    assert (checks["cache:orders"].status, checks["cache:orders"].code) == (404, "PGRST205")  # from Proxy-Status
    assert report.server_version == SERVER


async def test_v14_ready_500_is_a_failed_schema_cache_load_with_the_metrics_as_evidence():
    async with LocalServer(postgrest_14(ready=500, cached={"orders"}, schema_cache=False)) as url:
        report = await probe(url)
    checks = {c.name: c for c in report.checks}
    assert report.verdict is Verdict.SCHEMA_CACHE_UNAVAILABLE
    assert "failed to load" in checks["ready"].detail
    metrics = checks["metrics"]
    assert metrics.ok and metrics.message == (
        "schema cache loads 1 ok, 12 failed; last schema query 250 ms; pool 10/10 free, 0 waiting"
    )
    assert metrics.to_json()["detail"].startswith("200 schema cache loads 1 ok, 12 failed")


async def test_v14_ready_503_is_still_loading():
    async with LocalServer(postgrest_14(ready=503, cached={"orders"})) as url:
        report = await probe(url)
    ready = next(c for c in report.checks if c.name == "ready")
    assert report.verdict is Verdict.SCHEMA_CACHE_UNAVAILABLE and "still loading" in ready.detail


async def test_healthy_v14_reports_its_version_and_metrics():
    async with LocalServer(postgrest_14(ready=200, cached={"orders"})) as url:
        report = await probe(url)
    assert report.verdict is Verdict.HEALTHY, report.explanation
    assert report.to_json()["server_version"] == SERVER


async def test_metrics_of_postgrest_12_0_2_are_not_available_never_an_error(make_stack):
    stack = make_stack()
    settings = build_settings({"env": stack.env_config()})
    (target,) = targets_for(settings, stack.env_vars)
    async with make_http_client() as client:
        report = await Prober(client).probe(target)
    metrics = next(c for c in report.checks if c.name == "metrics")
    assert report.verdict is Verdict.HEALTHY, report.explanation
    assert metrics.status == 404 and metrics.ok and "not available (PostgREST before 12.2)" in metrics.detail


async def test_an_unreachable_admin_port_is_not_made_worse_by_the_metrics_check():
    async with LocalServer(postgrest_14(ready=200, cached={"orders"})) as url:
        report = await probe(url, admin_url="http://127.0.0.1:9")
    checks = {c.name: c for c in report.checks}
    assert checks["metrics"].ok and "not read" in checks["metrics"].detail
    # Refused on the admin port alone, with the API answering: a config problem, not a dead PostgREST.
    assert report.verdict is Verdict.UNEXPECTED
