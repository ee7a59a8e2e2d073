"""Schema drift against a real PostgreSQL 15 + PostgREST 12.0.2: catalog vs what the API serves."""

from __future__ import annotations

import asyncio
import io
import json

import httpx
import pytest
from aiohttp import web

from bot.cli import main
from bot.core.drift import DriftMethod, DriftObjects, DriftReport, DriftStatus, cap_names
from bot.delivery.guard import StoreGuard
from bot.ops.drift import check_drift
from bot.postgrest.requests import UNPRODUCIBLE_ACCEPT, make_http_client
from bot.store.sqlite import Store
from tests.conftest import build_settings, targets_for, write_config
from tests.support.localhttp import LocalServer

METHODS = ["auto", "probe"]


async def drift(stack, *, env_overrides=None, environ=None, max_body_bytes=256 * 1024, **kw) -> DriftReport:
    env = stack.env_config(**(env_overrides or {})) if stack is not None else env_overrides
    settings = build_settings({"env": env})
    (target,) = targets_for(settings, {**(stack.env_vars if stack else {}), **(environ or {})}, need_dsn=True)
    async with make_http_client() as client:
        return await check_drift(
            client, target, max_body_bytes=max_body_bytes, connect_timeout=3, command_timeout=3, **kw
        )


async def drift_after_reload(stack, **kw) -> DriftReport:
    """NOTIFY, then re-check until in sync (a reload takes ~0.2 s here) or 3 s passed."""
    stack.notify()
    report = await drift(stack, **kw)
    for _ in range(30):
        if report.in_sync:
            break
        await asyncio.sleep(0.1)
        report = await drift(stack, **kw)
    return report


async def test_fresh_stack_is_in_sync_via_the_openapi_root(make_stack):
    report = await drift(make_stack())
    assert report.status is DriftStatus.IN_SYNC, report.summary
    assert report.in_sync and not report.stale
    assert report.method is DriftMethod.OPENAPI
    assert report.compared == {"tables": 1, "columns": 2, "functions": 1, "relationships": 0}
    assert not report.missing_in_api and not report.extra_in_api and not report.ungranted
    assert report.summary.startswith("in sync: 1 tables, 2 columns, 1 functions")
    assert report.next_step == "nothing to do"
    assert json.loads(json.dumps(report.to_json()))["status"] == "in_sync"


STALE_CASES = [
    (
        "new granted table",
        "CREATE TABLE public.orders (id int primary key, total int); GRANT SELECT ON public.orders TO anon;",
        DriftObjects(tables=("public.orders",)),
    ),
    (
        "new column",
        "ALTER TABLE public.judgments ADD COLUMN verdict text, ADD COLUMN score int;",
        DriftObjects(columns=("public.judgments.score", "public.judgments.verdict")),
    ),
    (
        "new function with arguments",
        "CREATE FUNCTION public.add(a int, b int) RETURNS int LANGUAGE sql AS 'select a + b';",
        DriftObjects(functions=("public.add",)),
    ),
    (
        "new function without arguments",
        "CREATE FUNCTION public.fresh() RETURNS int LANGUAGE sql AS 'select 2';",
        DriftObjects(functions=("public.fresh",)),
    ),
    (
        "new function taking the whole json body",
        "CREATE FUNCTION public.ingest(json) RETURNS int LANGUAGE sql AS 'select 1';",
        DriftObjects(functions=("public.ingest",)),
    ),
]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("ddl", "expected"), [c[1:] for c in STALE_CASES], ids=[c[0] for c in STALE_CASES])
async def test_object_created_without_reload_is_missing_in_api_until_a_reload(make_stack, method, ddl, expected):
    stack = make_stack()
    stack.sql(ddl)
    report = await drift(stack, method=method)
    assert report.status is DriftStatus.STALE, report.summary
    assert report.stale and not report.in_sync
    assert report.missing_in_api == expected
    assert not report.extra_in_api and not report.ungranted and not report.unverified
    assert report.method is (DriftMethod.PROBE if method == "probe" else DriftMethod.OPENAPI)
    assert report.summary.startswith("stale schema cache, a reload helps: missing in API:")
    assert "reload" in report.next_step
    after = await drift_after_reload(stack, method=method)
    assert after.in_sync, after.summary


async def test_functions_that_already_ran_are_never_executed_by_the_check(make_stack):
    stack = make_stack()
    stack.sql(
        "CREATE TABLE public.calls (fn text); GRANT INSERT ON public.calls TO anon, authenticated;"
        "CREATE FUNCTION public.touch(a int) RETURNS int LANGUAGE sql AS 'insert into public.calls values (''t''); select 1';"
        "CREATE FUNCTION public.touch_body(json) RETURNS int LANGUAGE sql AS 'insert into public.calls values (''b''); select 1';"
    )
    stack.notify()
    await asyncio.sleep(0.5)
    for method in METHODS:
        report = await drift(stack, method=method)
        assert report.in_sync, report.summary
        assert report.compared["functions"] == 3
    assert stack.sql("select count(*) from public.calls").strip() == "0"


async def test_dropped_column_still_cached_is_extra_in_api(make_stack):
    stack = make_stack()
    stack.sql("ALTER TABLE public.judgments DROP COLUMN title")
    report = await drift(stack)
    assert report.status is DriftStatus.STALE, report.summary
    assert report.extra_in_api == DriftObjects(columns=("public.judgments.title",))
    assert not report.missing_in_api
    assert "served but gone from the database: columns public.judgments.title" in report.summary
    assert (await drift_after_reload(stack)).in_sync


@pytest.mark.parametrize("method", METHODS)
async def test_dropped_probe_table_still_cached_is_extra_in_api(make_stack, method):
    stack = make_stack()
    stack.sql("DROP TABLE public.judgments")
    report = await drift(stack, method=method)
    assert report.status is DriftStatus.STALE, report.summary
    assert report.extra_in_api == DriftObjects(tables=("public.judgments",))
    after = await drift_after_reload(stack, method=method)
    assert after.in_sync, after.summary
    assert any("public.judgments exists neither in the database nor in the API" in n for n in after.notes)


async def test_dropped_probe_function_still_cached_is_extra_in_api(make_stack):
    stack = make_stack()
    stack.sql("DROP FUNCTION public.ping()")
    report = await drift(stack, env_overrides={"probe_functions": ["ping"]})
    assert report.extra_in_api == DriftObjects(functions=("public.ping",)), report.summary
    after = await drift_after_reload(stack, env_overrides={"probe_functions": ["ping"]})
    assert after.in_sync, after.summary


UNGRANTED_CASES = [
    ("table without grants", "CREATE TABLE public.secret (id int);", DriftObjects(tables=("public.secret",))),
    (
        "table granted to a role that is not an API role",
        "CREATE ROLE reporting NOLOGIN; CREATE TABLE public.report (id int); GRANT SELECT ON public.report TO reporting;",
        DriftObjects(tables=("public.report",)),
    ),
    (
        "function whose EXECUTE was revoked",
        "CREATE FUNCTION public.admin_only() RETURNS int LANGUAGE sql AS 'select 1';"
        "REVOKE EXECUTE ON FUNCTION public.admin_only() FROM PUBLIC;",
        DriftObjects(functions=("public.admin_only",)),
    ),
    (
        "schema without USAGE for the API roles",
        "CREATE SCHEMA hidden; CREATE TABLE hidden.t (id int); GRANT SELECT ON hidden.t TO anon;",
        DriftObjects(),  # not exposed: not compared at all
    ),
]


@pytest.mark.parametrize(("ddl", "expected"), [c[1:] for c in UNGRANTED_CASES], ids=[c[0] for c in UNGRANTED_CASES])
async def test_ungranted_objects_are_a_permission_problem_not_a_stale_cache(make_stack, ddl, expected):
    stack = make_stack()
    stack.sql(ddl)
    stack.notify()  # the cache knows them: only the grants are missing
    await asyncio.sleep(0.5)
    report = await drift(stack)
    assert report.ungranted == expected
    assert report.in_sync and not report.stale, report.summary
    if expected:
        assert "ungranted (no API role may use them, GRANT them)" in report.summary
        assert "GRANT" in report.next_step and "NOTIFY" not in report.next_step


async def test_new_ungranted_table_without_reload_is_not_reported_as_stale(make_stack):
    stack = make_stack()
    stack.sql("CREATE TABLE public.fresh_secret (id int);")
    report = await drift(stack)
    assert report.ungranted == DriftObjects(tables=("public.fresh_secret",))
    assert not report.missing_in_api and report.in_sync, report.summary


async def test_table_only_the_authenticated_role_may_use_is_confirmed_served_although_anon_cannot_see_it(make_stack):
    # The OpenAPI root filters by the requesting role (anon here, no key): the absence is confirmed per object.
    stack = make_stack()
    stack.sql("CREATE TABLE public.members (id int, name text); GRANT SELECT ON public.members TO authenticated;")
    stale = await drift(stack)
    assert stale.missing_in_api == DriftObjects(tables=("public.members",)), stale.summary
    after = await drift_after_reload(stack)
    assert after.in_sync and after.method is DriftMethod.OPENAPI, after.summary
    assert after.compared["tables"] == 2


async def test_new_column_of_a_table_hidden_from_the_openapi_role_is_found_per_object(make_stack):
    stack = make_stack()
    stack.sql("CREATE TABLE public.members (id int); GRANT SELECT ON public.members TO authenticated;")
    stack.notify()
    await asyncio.sleep(0.5)
    stack.sql("ALTER TABLE public.members ADD COLUMN a text, ADD COLUMN b text, ADD COLUMN c text;")
    report = await drift(stack)
    assert report.missing_in_api == DriftObjects(columns=tuple(f"public.members.{c}" for c in "abc")), report.summary


@pytest.mark.parametrize(
    ("case", "stack_env", "max_body", "reason"),
    [
        ("openapi disabled", {"PGRST_OPENAPI_MODE": "disabled"}, 256 * 1024, "the OpenAPI root answered HTTP 404"),
        ("root over the body cap", {}, 1024, "the OpenAPI root is larger than 1024 bytes"),
    ],
)
async def test_unreadable_root_falls_back_to_per_object_probes(make_stack, case, stack_env, max_body, reason):
    stack = make_stack(extra_env=stack_env)
    stack.sql(
        "CREATE TABLE public.orders (id int); GRANT SELECT ON public.orders TO anon;"
        "ALTER TABLE public.judgments ADD COLUMN verdict text;"
    )
    report = await drift(stack, max_body_bytes=max_body)
    assert report.method is DriftMethod.PROBE
    assert report.missing_in_api == DriftObjects(tables=("public.orders",), columns=("public.judgments.verdict",))
    assert report.notes and report.notes[0].startswith(reason), report.notes
    assert "per-object probes" in report.summary


async def test_many_missing_columns_are_found_by_bisection_with_few_requests(make_stack):
    stack = make_stack()
    stack.sql("CREATE TABLE public.wide (" + ", ".join(f"c{i:02} int" for i in range(40)) + ");")
    stack.sql("GRANT SELECT ON public.wide TO anon;")
    stack.notify()
    await asyncio.sleep(0.5)
    stack.sql("ALTER TABLE public.wide ADD COLUMN z1 int, ADD COLUMN z2 int;")
    report = await drift(stack, method="probe")
    assert report.missing_in_api.columns == ("public.wide.z1", "public.wide.z2")
    assert report.requests < 30, report.requests


async def test_no_dsn_is_unknown_never_in_sync(make_stack):
    stack = make_stack()
    report = await drift(stack, env_overrides={"database_dsn": None})
    assert report.status is DriftStatus.UNKNOWN and not report.in_sync and not report.stale
    assert "no database DSN" in (report.error or "")
    assert report.summary.startswith("drift unknown:")


async def test_unreadable_database_is_unknown_without_leaking_the_dsn(make_stack):
    stack = make_stack()
    env_var = next(iter(stack.env_vars))
    bad_dsn = stack.dsn("ops", password="wrong-pass-xyz")
    report = await drift(stack, environ={env_var: bad_dsn})
    assert report.status is DriftStatus.UNKNOWN and not report.in_sync
    assert "cannot read the catalog" in (report.error or "")
    assert "wrong-pass-xyz" not in json.dumps(report.to_json())


async def test_stopped_postgrest_is_unknown(make_stack):
    stack = make_stack()
    stack.postgrest.stop()
    report = await drift(stack)
    assert report.status is DriftStatus.UNKNOWN and not report.in_sync
    assert "does not answer" in (report.error or "")


async def test_schema_cache_unavailable_pgrst002_is_unknown(make_stack):
    stack = make_stack(steady_pgrst002=True)
    stack.sql(f"ALTER ROLE authenticator IN DATABASE {stack.db} SET statement_timeout = '1ms'")
    stack.notify()
    await stack.wait_for_code("PGRST002")
    report = await drift(stack)
    assert report.status is DriftStatus.UNKNOWN
    assert "503 PGRST002" in (report.error or ""), report.error


async def test_exposed_schema_postgrest_does_not_serve_is_unknown(make_stack):
    stack = make_stack()
    stack.sql("CREATE SCHEMA api; GRANT USAGE ON SCHEMA api TO anon;")
    report = await drift(stack, env_overrides={"exposed_schemas": ["public", "api"]})
    assert report.status is DriftStatus.UNKNOWN
    assert "does not serve schema 'api' (PGRST106)" in (report.error or "")


async def test_api_role_missing_from_the_database_is_noted(make_stack):
    stack = make_stack()
    report = await drift(stack, env_overrides={"api_roles": ["anon", "web_user"]}, method="probe")
    assert report.in_sync, report.summary
    assert any("web_user" in n for n in report.notes)


async def test_anonymous_access_disabled_without_a_key_is_unknown_not_in_sync(make_stack):
    stack = make_stack(extra_env={"PGRST_DB_ANON_ROLE": ""})
    report = await drift(stack)
    assert report.status is not DriftStatus.IN_SYNC, report.summary
    assert report.status is DriftStatus.UNKNOWN
    assert report.unverified == ("public.judgments", "public.ping")
    assert "(first answer: HTTP 401 PGRST302)" in report.summary


GATEWAY_ANSWERS = [
    ("plain 404", 404, b"Not Found", "application/octet-stream"),
    ("gateway 401 without a code", 401, b'{"message": "Invalid API key"}', "application/json"),
    ("gateway 403 without a code", 403, b'{"message": "forbidden"}', "application/json"),
]


@pytest.mark.parametrize(
    ("status", "body", "ctype"), [g[1:] for g in GATEWAY_ANSWERS], ids=[g[0] for g in GATEWAY_ANSWERS]
)
async def test_answers_that_are_not_postgrest_never_make_objects_missing_or_in_sync(make_stack, status, body, ctype):
    stack = make_stack()
    stack.sql("ALTER TABLE public.judgments ADD COLUMN verdict text;")

    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body, content_type=ctype)

    async with LocalServer.catch_all(handler) as url:
        report = await drift(stack, env_overrides={"rest_url": url})
    assert report.status is DriftStatus.UNKNOWN, report.summary
    assert not report.missing_in_api and not report.extra_in_api
    assert report.unverified == ("public.judgments", "public.ping")
    assert f"HTTP {status}" in (report.unclear_answer or "")


def test_summary_caps_long_lists_and_stays_on_one_line():
    names = tuple(f"public.t{i:02}" for i in range(17))
    assert cap_names(names) == "public.t00, public.t01, public.t02, public.t03, public.t04 and 12 more"
    objects = DriftObjects.of(tables=reversed(names), functions=["public.f"])
    assert objects.tables == names  # sorted
    assert objects.describe() == f"tables {cap_names(names)}; functions public.f"
    assert objects.count == 18


# ---------------------------------------------------------------------------------------------- drift memory


@pytest.fixture
async def memory(tmp_path):
    store = await Store(tmp_path / "incidents.db").open()
    yield StoreGuard(store)
    await store.close()


async def remembered(memory: StoreGuard, env: str = "env") -> set[tuple[str, str, str, str]]:
    assert memory.store is not None
    return {(o.kind, o.schema, o.name, o.part) for o in await memory.store.drift_memory(env)}


async def in_sync_after_reload(stack, **kw) -> DriftReport:
    report = await drift_after_reload(stack, **kw)
    assert report.in_sync, report.summary
    return report


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("ddl", "drop", "expected"),
    [
        (
            "CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;",
            "DROP TABLE public.orders",
            DriftObjects(tables=("public.orders",)),
        ),
        (
            "CREATE TABLE public.base (id int); CREATE VIEW public.recent AS SELECT id FROM public.base;"
            "GRANT SELECT ON public.recent TO anon;",
            "DROP VIEW public.recent",
            DriftObjects(tables=("public.recent",)),
        ),
        (
            "CREATE FUNCTION public.add(a int, b int) RETURNS int LANGUAGE sql AS 'select a + b';",
            "DROP FUNCTION public.add(int, int)",
            DriftObjects(functions=("public.add",)),
        ),
    ],
    ids=["table", "view", "function with arguments"],
)
async def test_dropped_object_that_is_not_a_probe_is_found_through_the_drift_memory(
    make_stack, memory, method, ddl, drop, expected
):
    stack = make_stack()
    stack.sql(ddl)
    await in_sync_after_reload(stack, method=method, memory=memory)  # remembered by the last of these runs
    stack.sql(drop)
    report = await drift(stack, method=method, memory=memory)
    assert report.status is DriftStatus.STALE, report.summary
    assert report.extra_in_api == expected and not report.missing_in_api
    assert report.memory_used and report.to_json()["memory_used"]
    assert "served but gone from the database" in report.summary and "reload" in report.next_step
    assert (await drift(stack, method=method, memory=memory)).extra_in_api == expected  # still remembered
    await in_sync_after_reload(stack, method=method, memory=memory)
    names = {name for _, _, name, _ in await remembered(memory)}
    assert not names & {"orders", "recent", "add"}  # gone from the cache too: forgotten


async def test_without_the_store_a_dropped_table_stays_unseen_and_the_report_says_why(make_stack):
    stack = make_stack()
    stack.sql("CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;")
    await in_sync_after_reload(stack)
    stack.sql("DROP TABLE public.orders")
    report = await drift(stack)
    assert report.in_sync and not report.memory_used, report.summary  # today's blind spot, named
    assert any(n.startswith("no drift memory (the incident store is not available here)") for n in report.notes)


async def test_first_run_with_memory_remembers_what_the_api_should_serve(make_stack, memory):
    stack = make_stack()
    report = await drift(stack, memory=memory)
    assert report.in_sync and not report.memory_used
    assert any(n.startswith("first run with drift memory") for n in report.notes)
    assert await remembered(memory) == {
        ("relation", "public", "judgments", ""),
        ("column", "public", "judgments", "id"),
        ("column", "public", "judgments", "title"),
        ("function", "public", "ping", ""),
    }
    again = await drift(stack, memory=memory)
    assert again.memory_used and not any("drift memory" in n for n in again.notes)


async def test_dropped_column_answers_pgrst107_while_cached_and_pgrst204_once_the_cache_is_fresh(make_stack):
    # The wire behaviour `drift --per-object` relies on, on the real PostgREST 12.0.2.
    stack = make_stack()
    stack.sql("ALTER TABLE public.judgments DROP COLUMN title")
    headers = {"Accept": UNPRODUCIBLE_ACCEPT, "Content-Type": "application/json", "Prefer": "return=minimal"}
    async with httpx.AsyncClient(base_url=stack.postgrest.url, timeout=5) as client:
        cached = await client.post("/judgments", params={"columns": "title"}, content=b"[]", headers=headers)
        assert (cached.status_code, cached.json()["code"]) == (415, "PGRST107")
        stack.notify()
        for _ in range(50):
            fresh = await client.post("/judgments", params={"columns": "title"}, content=b"[]", headers=headers)
            if fresh.status_code != 415:
                break
            await asyncio.sleep(0.1)
        assert (fresh.status_code, fresh.json()["code"]) == (400, "PGRST204")
    assert stack.sql("select count(*) from public.judgments").strip() == "2"  # nothing inserted


async def test_per_object_drift_finds_dropped_but_cached_columns_through_the_memory(make_stack, memory):
    stack = make_stack()
    stack.sql("ALTER TABLE public.judgments ADD COLUMN a text, ADD COLUMN b text, ADD COLUMN c text")
    await in_sync_after_reload(stack, method="probe", memory=memory)
    stack.sql("ALTER TABLE public.judgments DROP COLUMN a, DROP COLUMN c")
    report = await drift(stack, method="probe", memory=memory)
    assert report.extra_in_api == DriftObjects(columns=("public.judgments.a", "public.judgments.c")), report.summary
    await in_sync_after_reload(stack, method="probe", memory=memory)
    assert ("column", "public", "judgments", "a") not in await remembered(memory)


async def test_an_unusable_store_falls_back_and_says_so(make_stack, tmp_path):
    stack = make_stack()
    store = await Store(tmp_path / "s.db").open()
    await store.close()  # every call now fails like a broken store
    report = await drift(stack, memory=StoreGuard(store))
    assert report.in_sync and not report.memory_used, report.summary
    assert any(n.startswith("drift memory unavailable (incident store") for n in report.notes), report.notes


def test_cli_drift_with_an_unset_dsn_variable_names_it(tmp_path, monkeypatch):
    monkeypatch.delenv("PGRST_OPS_TEST_UNSET_DSN", raising=False)
    env = {"rest_url": "http://127.0.0.1:9", "database_dsn": {"env": "PGRST_OPS_TEST_UNSET_DSN"}}
    config = write_config(tmp_path / "c.yaml", {"dev": env}, incidents={"store_path": str(tmp_path / "none.db")})
    out = io.StringIO()
    assert main(["--config", str(config), "drift"], out=out) == 1
    assert "environment variable PGRST_OPS_TEST_UNSET_DSN is not set or empty" in out.getvalue()
    assert not (tmp_path / "none.db").exists()  # no stray store file


# ---------------------------------------------------------------------------------------------- relationships

AUTHORS_BOOKS = """
CREATE TABLE public.authors (id int primary key, name text);
CREATE TABLE public.books (id int primary key, author_id int, title text);
GRANT SELECT ON public.authors, public.books TO anon;
"""
FK = "ALTER TABLE public.books ADD CONSTRAINT books_author_fk FOREIGN KEY (author_id) REFERENCES public.authors (id)"
RELATIONSHIP = "public.books→authors (books_author_fk)"


@pytest.mark.parametrize("method", METHODS)
async def test_new_foreign_key_missing_from_the_cache_is_found_by_embedding(make_stack, method):
    stack = make_stack()
    stack.sql(AUTHORS_BOOKS)
    await in_sync_after_reload(stack, method=method)
    stack.sql(FK)
    report = await drift(stack, method=method)
    assert report.status is DriftStatus.STALE, report.summary
    assert report.missing_in_api == DriftObjects(relationships=(RELATIONSHIP,))
    assert f"missing in API: relationships {RELATIONSHIP}" in report.summary
    after = await in_sync_after_reload(stack, method=method)
    assert after.compared["relationships"] == 1
    assert "1 relationships usable by the API roles are served" in after.summary


async def test_dropped_foreign_key_still_served_is_found_through_the_memory(make_stack, memory):
    stack = make_stack()
    stack.sql(AUTHORS_BOOKS + FK)
    await in_sync_after_reload(stack, memory=memory)
    stack.sql("ALTER TABLE public.books DROP CONSTRAINT books_author_fk")
    report = await drift(stack, memory=memory)
    assert report.extra_in_api == DriftObjects(relationships=(RELATIONSHIP,)), report.summary
    await in_sync_after_reload(stack, memory=memory)


async def test_foreign_keys_of_tables_missing_from_the_cache_are_not_reported_twice(make_stack):
    stack = make_stack()
    stack.sql(AUTHORS_BOOKS + FK)
    report = await drift(stack)
    assert report.missing_in_api == DriftObjects(tables=("public.authors", "public.books")), report.summary


async def test_relationship_checks_are_bounded_per_run_and_reach_every_foreign_key_over_runs(
    make_stack, monkeypatch, memory
):
    monkeypatch.setattr("bot.core.drift_compare.MAX_RELATIONSHIP_CHECKS", 2)
    stack = make_stack()
    stack.sql(
        "CREATE TABLE public.hub (id int primary key); GRANT SELECT ON public.hub TO anon;"
        + "".join(
            f"CREATE TABLE public.s{i} (id int, hub_id int references public.hub (id)); GRANT SELECT ON public.s{i} TO anon;"
            for i in range(5)
        )
    )
    report = await in_sync_after_reload(stack, memory=memory)
    assert report.compared["relationships"] == 2
    assert "2 of 5 foreign keys checked by embedding (at most 2 per run)" in report.notes
    for _ in range(3):  # those no run has seen served go first: every one is reached
        assert (await drift(stack, memory=memory)).in_sync
    seen = {name for kind, _, name, _ in await remembered(memory) if kind == "relationship"}
    assert seen == {f"s{i}" for i in range(5)}


async def test_foreign_keys_between_names_that_need_quoting_are_embedded_correctly(make_stack):
    stack = make_stack()
    stack.sql(
        'CREATE TABLE public."my authors" (id int primary key); CREATE TABLE public."my books" (id int, "author id" int);'
        'GRANT SELECT ON public."my authors", public."my books" TO anon;'
    )
    await in_sync_after_reload(stack)
    stack.sql(
        'ALTER TABLE public."my books" ADD CONSTRAINT "fk 1" FOREIGN KEY ("author id") REFERENCES public."my authors" (id)'
    )
    report = await drift(stack)
    assert report.missing_in_api == DriftObjects(relationships=("public.my books→my authors (fk 1)",)), report.summary
    await in_sync_after_reload(stack)


async def test_cli_drift_uses_the_bots_store_when_it_exists_on_the_machine(make_stack, tmp_path, monkeypatch):
    stack = make_stack()
    for name, value in stack.env_vars.items():
        monkeypatch.setenv(name, value)
    stack.sql("CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;")
    await in_sync_after_reload(stack)
    store_path = tmp_path / "pgrst-ops.db"
    await (await Store(store_path).open()).close()  # the bot's store file
    config = write_config(tmp_path / "c.yaml", {"dev": stack.env_config()}, incidents={"store_path": str(store_path)})

    async def cli_drift() -> dict:
        out = io.StringIO()
        await asyncio.to_thread(main, ["--config", str(config), "drift", "--json"], out=out)
        return json.loads(out.getvalue())["environments"][0]

    first = await cli_drift()
    assert first["in_sync"] and "first run with drift memory" in " ".join(first["notes"])
    stack.sql("DROP TABLE public.orders")
    second = await cli_drift()
    assert second["extra_in_api"]["tables"] == ["public.orders"] and second["memory_used"], second["summary"]


async def test_per_object_drift_asks_about_names_with_url_characters_as_themselves(make_stack, memory):
    # `/`, `#`, `?`, `%` and spaces are legal in PostgreSQL names; unencoded they would cut the request path.
    stack = make_stack()
    stack.sql(
        'CREATE TABLE public."odd/name #1?%" (id int primary key, "a b" text);'
        'GRANT SELECT, INSERT ON public."odd/name #1?%" TO anon;'
        "CREATE FUNCTION public.\"fn/x?#%\"(a int) RETURNS int LANGUAGE sql AS 'select a';"
    )
    first = await in_sync_after_reload(stack, method="probe", memory=memory)
    assert first.compared["tables"] == 2 and first.compared["functions"] == 2
    stack.sql(
        'ALTER TABLE public."odd/name #1?%" ADD COLUMN "c?#%/d" text;'
        'CREATE TABLE public."new/t #?%" (id int); GRANT SELECT ON public."new/t #?%" TO anon;'
    )
    stale = await drift(stack, method="probe", memory=memory)
    assert stale.missing_in_api == DriftObjects(
        tables=("public.new/t #?%",), columns=("public.odd/name #1?%.c?#%/d",)
    ), stale.summary
    await in_sync_after_reload(stack, method="probe", memory=memory)
    stack.sql('DROP TABLE public."odd/name #1?%"; DROP FUNCTION public."fn/x?#%"(int)')
    dropped = await drift(stack, method="probe", memory=memory)
    assert dropped.extra_in_api == DriftObjects(tables=("public.odd/name #1?%",), functions=("public.fn/x?#%",)), (
        dropped.summary
    )
