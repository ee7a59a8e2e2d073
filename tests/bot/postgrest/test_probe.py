"""The probe engine against a real PostgREST 12 (and local misbehaving servers)."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web

from bot.core.verdicts import Verdict
from bot.postgrest.probe import Prober
from bot.postgrest.requests import make_http_client
from tests.conftest import build_settings, targets_for
from tests.support.localhttp import LocalServer
from tests.support.pgstack import HungHttpServer, PgCluster, PostgrestServer


async def probe_one(env_config: dict, environ: dict | None = None, **top):
    settings = build_settings({"env": env_config}, **top)
    (target,) = targets_for(settings, environ or {})
    async with make_http_client() as client:
        return await Prober(client, max_body_bytes=settings.max_body_bytes).probe(target)


def by_status(report):
    return {c.name: (c.status, c.code) for c in report.checks}


async def test_healthy_postgrest_reports_every_check(make_stack):
    stack = make_stack()
    report = await probe_one(stack.env_config(probe_functions=["ping"]))
    assert report.verdict is Verdict.HEALTHY, report.explanation
    names = ["live", "ready", "metrics", "root", "data:judgments", "cache:judgments", "rpc:ping"]
    assert [c.name for c in report.checks] == names
    assert all(c.status == 200 for c in report.checks if c.name not in ("rpc:ping", "metrics"))
    assert by_status(report)["rpc:ping"] == (415, "PGRST107")  # found in the cache, never called
    assert report.server_version is not None and report.server_version.startswith("postgrest/12")
    assert all(c.latency_ms > 0 for c in report.checks)


async def test_new_table_is_stale_although_get_still_answers_200(make_stack):
    stack = make_stack()
    stack.sql("CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;")
    report = await probe_one(stack.env_config(probe_tables=["orders"]))
    by_name = {c.name: c for c in report.checks}
    assert by_name["data:orders"].status == 200  # PostgreSQL resolves the name: GET cannot see staleness
    assert by_name["cache:orders"].status == 404
    assert report.verdict is Verdict.STALE_SCHEMA_CACHE
    assert "Cache (orders)" in report.explanation and "reload" in report.next_step.lower()


async def test_new_column_is_stale_via_the_empty_insert(make_stack):
    stack = make_stack()
    stack.sql("ALTER TABLE public.judgments ADD COLUMN verdict text")
    report = await probe_one(
        stack.env_config(probe_tables=[{"name": "judgments", "select": "id", "columns": ["title", "verdict"]}])
    )
    assert report.verdict is Verdict.STALE_SCHEMA_CACHE
    columns = next(c for c in report.checks if c.name == "columns:judgments")
    assert columns.status == 400 and columns.code == "PGRST204"
    assert stack.sql("select count(*) from public.judgments").strip() == "2"  # the check wrote nothing


async def test_new_function_is_stale(make_stack):
    stack = make_stack()
    stack.sql(
        "CREATE FUNCTION public.fresh() RETURNS int LANGUAGE sql AS 'select 2'; GRANT EXECUTE ON FUNCTION public.fresh() TO anon;"
    )
    report = await probe_one(stack.env_config(probe_functions=["fresh"]))
    assert report.verdict is Verdict.STALE_SCHEMA_CACHE, report.explanation


async def test_function_with_arguments_is_found_without_running_it_and_columns_insert_nothing(make_stack):
    stack = make_stack()
    side_effects = (
        "CREATE TABLE public.calls (n int);"
        "CREATE FUNCTION public.add(a int, b int) RETURNS int LANGUAGE sql VOLATILE AS "
        "'insert into public.calls values (1); select a + b';"
        "GRANT EXECUTE ON FUNCTION public.add(int, int) TO anon;"
        "CREATE FUNCTION public.count_call() RETURNS trigger LANGUAGE plpgsql AS "
        "'begin insert into public.calls values (2); return null; end';"
        "CREATE TRIGGER judged AFTER INSERT ON public.judgments FOR EACH STATEMENT EXECUTE FUNCTION public.count_call();"
    )
    stack.sql(side_effects)
    stack.notify()
    await asyncio.sleep(0.5)
    env = stack.env_config(probe_functions=["add(a, b)"], probe_tables=[{"name": "judgments", "columns": ["title"]}])
    report = await probe_one(env)
    assert report.verdict is Verdict.HEALTHY, report.explanation
    assert by_status(report)["rpc:add"] == (415, "PGRST107")
    assert by_status(report)["columns:judgments"] == (415, "PGRST107")
    assert stack.sql("select count(*) from public.calls").strip() == "0"  # neither the function nor a trigger ran


async def test_pgrst002_is_schema_cache_unavailable(make_stack):
    stack = make_stack(steady_pgrst002=True)
    stack.sql(f"ALTER ROLE authenticator IN DATABASE {stack.db} SET statement_timeout = '1ms'")
    stack.notify()  # the reload applies the setting: the reload itself is the outage
    await stack.wait_for_code("PGRST002")
    report = await probe_one(stack.env_config())
    assert report.verdict is Verdict.SCHEMA_CACHE_UNAVAILABLE, report.explanation
    data = next(c for c in report.checks if c.name == "data:judgments")
    assert data.status == 503 and data.code == "PGRST002" and data.retry_after == "0"
    assert "statement_timeout" in report.next_step


async def test_stopped_postgrest_is_down_within_the_timeout(make_stack):
    stack = make_stack()
    stack.postgrest.stop()
    started = time.perf_counter()
    report = await probe_one(stack.env_config())
    assert report.verdict is Verdict.POSTGREST_DOWN
    assert time.perf_counter() - started < 2


async def test_bad_key_is_auth_rejected_and_no_key_is_auth_limited(make_stack):
    stack = make_stack(extra_env={"PGRST_DB_ANON_ROLE": ""})
    rejected = await probe_one(stack.env_config(api_key={"env": "K"}), {"K": "not-a-jwt"})
    assert rejected.verdict is Verdict.AUTH_REJECTED
    assert any(c.code == "PGRST301" for c in rejected.checks)
    limited = await probe_one(stack.env_config())
    assert limited.verdict is Verdict.HEALTHY and limited.auth_limited
    assert "auth-limited" in limited.explanation.lower()


async def test_key_is_sent_as_apikey_and_bearer_and_never_in_the_url():
    seen: list[dict] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(
            {
                "apikey": request.headers.get("apikey"),
                "auth": request.headers.get("Authorization"),
                "url": str(request.url),
            }
        )
        return web.json_response([], headers={"Server": "postgrest/12.0.2"})

    async with LocalServer.catch_all(handler) as url:
        report = await probe_one({"rest_url": url, "probe_tables": ["t"], "api_key": {"env": "K"}}, {"K": "s3cr3t-key"})
    assert report.healthy
    assert seen and all(s["apikey"] == "s3cr3t-key" and s["auth"] == "Bearer s3cr3t-key" for s in seen)
    assert all("s3cr3t" not in s["url"] for s in seen)
    assert "s3cr3t" not in str(report.to_json())


BAD_ANSWERS = [
    (
        "html gateway page",
        502,
        {"Content-Type": "text/html"},
        b"<html><body><h1>502 Bad Gateway</h1></body></html>",
        "HTML",
    ),
    ("non-json 200", 200, {"Content-Type": "text/plain"}, b"ok", "non-JSON"),
    ("huge body", 200, {"Content-Type": "application/json"}, b"[" + b'{"id":1},' * 2_000_000 + b"{}]", "too large"),
]


@pytest.mark.parametrize(
    ("status", "headers", "body", "expected"), [b[1:] for b in BAD_ANSWERS], ids=[b[0] for b in BAD_ANSWERS]
)
async def test_malformed_answers_are_unexpected(status, headers, body, expected):
    async def handler(request: web.Request) -> web.Response:
        if request.method in ("HEAD", "OPTIONS"):
            return web.Response(status=200)
        return web.Response(status=status, body=body, headers=headers)

    async with LocalServer.catch_all(handler) as url:
        report = await probe_one({"rest_url": url, "probe_tables": ["t"]})
    assert report.verdict is Verdict.UNEXPECTED
    assert expected in report.explanation


async def test_truncated_answer_is_unexpected():
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n[{"id":')
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        report = await probe_one({"rest_url": f"http://127.0.0.1:{port}", "probe_tables": ["t"]})
    finally:
        server.close()
    assert report.verdict is Verdict.UNEXPECTED
    assert "truncated" in report.explanation


async def test_hung_environment_does_not_delay_the_others(make_stack):
    stack = make_stack()
    async with HungHttpServer() as hung:
        settings = build_settings(
            {
                "good": stack.env_config(),
                "hung": {
                    "rest_url": hung.url,
                    "probe_tables": ["judgments"],
                    "timeouts": {"read_s": 1.5, "total_s": 1.5},
                },
            }
        )
        targets = targets_for(settings, stack.env_vars)
        async with make_http_client() as client:
            prober = Prober(client)
            started = time.perf_counter()
            good_task = asyncio.create_task(prober.probe(targets[0]))
            hung_task = asyncio.create_task(prober.probe(targets[1]))
            good = await good_task
            good_done = time.perf_counter() - started
            hung_report = await hung_task
            total = time.perf_counter() - started
    assert good.healthy and good_done < 1.0
    assert hung_report.verdict is Verdict.TIMEOUT
    assert 1.4 <= total < 2.5


@pytest.fixture(scope="module")
def lonely_cluster():
    """A cluster of its own: this module stops it."""
    cluster = PgCluster()
    cluster.start()
    yield cluster
    cluster.destroy()


async def test_stopped_postgresql_is_database_unreachable(lonely_cluster):
    server = PostgrestServer(lonely_cluster)
    server.start()
    try:
        lonely_cluster.stop()
        report = None
        for _ in range(20):
            report = await probe_one(
                {"rest_url": server.url, "admin_url": server.admin_url, "probe_tables": ["judgments"]}
            )
            if report.verdict is not Verdict.HEALTHY:
                break
            await asyncio.sleep(0.1)
        assert report is not None and report.verdict is Verdict.DATABASE_UNREACHABLE, report.explanation
        assert "database" in report.next_step.lower()
    finally:
        lonely_cluster.start()
        server.destroy()


def test_probes_name_their_schema_the_way_postgrest_reads_it():
    from bot.postgrest.probe import plan_checks

    settings = build_settings(
        {
            "env": {
                "rest_url": "http://api.example/rest/v1",
                "probe_root": False,
                "exposed_schemas": ["public", "تست", 'SPECIAL "@/\\#~_-'],
                "probe_tables": [
                    {"name": "judgments", "select": "id,title", "columns": ["title"]},
                    {"name": '"SPECIAL ""@/\\#~_-"."odd/name#1"', "columns": ["a b"]},
                ],
                "probe_functions": ["تست.add(a, b)"],
            }
        }
    )
    specs = {s.name: s for s in plan_checks(settings.environments["env"])}
    odd = '"SPECIAL ""@/\\#~_-".odd/name#1'  # quoted only where the notation needs it
    assert list(specs) == [
        "data:judgments",
        "cache:judgments",
        "columns:judgments",
        f"data:{odd}",
        f"cache:{odd}",
        f"columns:{odd}",
        "rpc:تست.add",
    ]
    # Reads (GET, OPTIONS) and the RPC lookup (a GET) choose the schema by Accept-Profile, the empty insert by
    # Content-Profile; the default schema is named too, so the probe asks for exactly what the diagnosis reads.
    assert specs["data:judgments"].extra_headers == {"Accept-Profile": "public"}
    assert specs["cache:judgments"].extra_headers == {"Accept-Profile": "public"}
    assert specs["columns:judgments"].extra_headers["Content-Profile"] == "public"
    assert "Accept-Profile" not in specs["columns:judgments"].extra_headers
    assert specs[f"data:{odd}"].extra_headers == {"Accept-Profile": 'SPECIAL "@/\\#~_-'}
    assert specs["rpc:تست.add"].extra_headers["Accept-Profile"] == "تست"
    # Path segments percent-encoded; quoted column names in ?columns=.
    assert specs["data:judgments"].url == "http://api.example/rest/v1/judgments?select=id,title&limit=1"
    assert specs[f"cache:{odd}"].url == "http://api.example/rest/v1/odd%2Fname%231"
    assert specs[f"columns:{odd}"].url == "http://api.example/rest/v1/odd%2Fname%231?columns=%22a%20b%22"
    assert specs["rpc:تست.add"].url == "http://api.example/rest/v1/rpc/add?a=&b="
    assert specs[f"data:{odd}"].label == f"Data ({odd})" and specs["data:judgments"].label == "Data (judgments)"
