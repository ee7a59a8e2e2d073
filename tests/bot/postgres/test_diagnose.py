"""Diagnosis against a real PostgreSQL + PostgREST: each cause reproduced, then named with its fix."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from aiohttp import web

from bot.core.causes import SCHEMA_LOAD_BASE_MS, first_words, schema_load_estimate_ms, statement_timeout_too_low
from bot.core.diagnosis import Diagnosis
from bot.core.listener import ListenerState
from bot.core.verdicts import Verdict
from bot.postgres.connect import listen_pattern, listener_status, listening
from bot.postgres.diagnose import diagnose
from bot.postgrest.probe import Prober
from bot.postgrest.requests import make_http_client
from tests.conftest import build_settings, targets_for
from tests.support.localhttp import LocalServer


async def probe_and_diagnose(stack, *, environ=None, **overrides) -> Diagnosis:
    settings = build_settings({"env": stack.env_config(**overrides)})
    (target,) = targets_for(settings, {**stack.env_vars, **(environ or {})}, need_dsn=True)
    async with make_http_client() as client:
        report = await Prober(client).probe(target)
    return await diagnose(target, report, connect_timeout=3, command_timeout=5)


def causes(diagnosis: Diagnosis) -> list[str]:
    return [f.cause for f in diagnosis.findings]


async def test_healthy_environment_has_no_findings(make_stack):
    diagnosis = await probe_and_diagnose(make_stack())
    assert diagnosis.verdict is Verdict.HEALTHY and diagnosis.findings == ()
    assert diagnosis.listener is not None and diagnosis.listener.state is ListenerState.PRESENT
    assert diagnosis.queue_usage == 0


@pytest.mark.parametrize(
    ("setup_sql", "overrides", "verdict", "cause", "names"),
    [
        (
            "CREATE TABLE public.orders (id int); GRANT SELECT ON public.orders TO anon, authenticated;",
            {"probe_tables": ["orders"]},
            Verdict.STALE_SCHEMA_CACHE,
            "stale_object",
            "public.orders exists",
        ),
        ("", {"probe_tables": ["orders"]}, Verdict.MISSING_IN_DATABASE, "missing_in_database", "orders"),
        (
            "ALTER TABLE public.judgments ADD COLUMN verdict text;",
            {"probe_tables": [{"name": "judgments", "columns": ["verdict"]}]},
            Verdict.STALE_SCHEMA_CACHE,
            "stale_object",
            "public.judgments.verdict",
        ),
        (
            "",
            {"probe_tables": [{"name": "judgments", "columns": ["verdict"]}]},
            Verdict.MISSING_IN_DATABASE,
            "missing_in_database",
            "public.judgments.verdict",
        ),
        (
            "CREATE FUNCTION public.fresh() RETURNS int LANGUAGE sql AS 'select 2';",
            {"probe_functions": ["fresh"]},
            Verdict.STALE_SCHEMA_CACHE,
            "stale_object",
            "public.fresh()",
        ),
        ("", {"probe_functions": ["fresh"]}, Verdict.MISSING_IN_DATABASE, "missing_in_database", "fresh()"),
        (
            "CREATE TABLE public.secrets (id int);",
            {"probe_tables": ["secrets"]},
            Verdict.NOT_GRANTED,
            "not_granted",
            "GRANT SELECT ON public.secrets TO anon, authenticated",
        ),
    ],
    ids=[
        "new granted table is stale",
        "absent table is missing",
        "new column is stale",
        "absent column is missing",
        "new function is stale",
        "absent function is missing",
        "ungranted new table is a permission problem, not stale",
    ],
)
async def test_stale_or_missing_is_decided_by_the_catalog(make_stack, setup_sql, overrides, verdict, cause, names):
    stack = make_stack()
    if setup_sql:
        stack.sql(setup_sql)
    diagnosis = await probe_and_diagnose(stack, **overrides)
    assert diagnosis.verdict is verdict, diagnosis.report.explanation
    assert diagnosis.findings[0].cause == cause
    assert names in diagnosis.findings[0].line()


async def test_missing_table_explanation_says_migration_not_applied(make_stack):
    diagnosis = await probe_and_diagnose(make_stack(), probe_tables=["orders"])
    assert "migration not applied" in diagnosis.report.explanation
    assert not any(f.blocks_reload for f in diagnosis.findings)


async def test_pending_tiny_statement_timeout_is_found_before_it_breaks_anything(make_stack):
    stack = make_stack(extra_env={"PGRST_DB_POOL": "1"})
    stack.sql("CREATE TABLE public.orders (id int); GRANT SELECT ON public.orders TO anon;")
    stack.sql(f"ALTER ROLE authenticator IN DATABASE {stack.db} SET statement_timeout = '5ms'")
    diagnosis = await probe_and_diagnose(stack, probe_tables=["orders"])
    assert diagnosis.verdict is Verdict.STALE_SCHEMA_CACHE
    (blocker,) = diagnosis.blockers
    assert blocker.cause == "role_setting" and "pending" in blocker.evidence
    assert "statement_timeout=5ms" in blocker.evidence
    assert f"ALTER ROLE authenticator IN DATABASE {stack.db} RESET statement_timeout" in blocker.fix


async def test_applied_tiny_statement_timeout_is_named_as_the_cause_of_pgrst002(make_stack):
    stack = make_stack(steady_pgrst002=True)
    stack.sql(f"ALTER ROLE authenticator IN DATABASE {stack.db} SET statement_timeout = '1ms'")
    stack.notify()
    await stack.wait_for_code("PGRST002")
    diagnosis = await probe_and_diagnose(stack)
    assert diagnosis.verdict is Verdict.SCHEMA_CACHE_UNAVAILABLE
    assert diagnosis.findings[0].cause == "role_setting"
    assert "applied" in diagnosis.findings[0].evidence
    assert diagnosis.headline.startswith("statement_timeout too low for authenticator")


async def test_sane_statement_timeout_is_not_reported(make_stack):
    stack = make_stack()
    stack.sql(f"ALTER ROLE authenticator IN DATABASE {stack.db} SET statement_timeout = '8s'")
    stack.sql("CREATE TABLE public.orders (id int); GRANT SELECT ON public.orders TO anon;")
    diagnosis = await probe_and_diagnose(stack, probe_tables=["orders"])
    assert "role_setting" not in causes(diagnosis) and diagnosis.blockers == []


async def test_revoked_catalog_privilege_is_named_with_the_grant_to_run(make_stack):
    stack = make_stack()
    stack.sql("REVOKE SELECT ON pg_catalog.pg_proc FROM PUBLIC")
    try:
        stack.notify()
        await asyncio.sleep(0.5)
        diagnosis = await probe_and_diagnose(stack)
    finally:
        stack.sql("GRANT SELECT ON pg_catalog.pg_proc TO PUBLIC")
    assert diagnosis.verdict is Verdict.SCHEMA_CACHE_UNAVAILABLE
    assert diagnosis.findings[0].cause == "catalog_privilege"
    assert "GRANT SELECT ON pg_catalog.pg_proc TO PUBLIC" in diagnosis.findings[0].fix


async def test_dropped_exposed_schema_is_named(make_stack):
    stack = make_stack()
    diagnosis = await probe_and_diagnose(stack, exposed_schemas=["public", "api"])
    assert "missing_schema" in causes(diagnosis)
    (finding,) = [f for f in diagnosis.findings if f.cause == "missing_schema"]
    assert "api" in finding.evidence and "CREATE SCHEMA api" in finding.fix


@pytest.mark.parametrize("application_name", [None, "postgrest"], ids=["default db-uri", "supabase db-uri"])
async def test_migration_holding_a_lock_names_the_blocking_pid_and_application(make_stack, application_name):
    stack = make_stack(application_name=application_name)
    stack.sql("CREATE VIEW public.recent AS SELECT * FROM public.judgments; GRANT SELECT ON public.recent TO anon;")
    stack.notify()
    migration = await asyncpg.connect(
        stack.dsn("postgres", stack.cluster.superuser_password), server_settings={"application_name": "migrate.sh"}
    )
    try:
        tx = migration.transaction()
        await tx.start()
        await migration.execute("LOCK TABLE public.recent IN ACCESS EXCLUSIVE MODE")
        stack.notify()
        await asyncio.sleep(0.5)
        diagnosis = await probe_and_diagnose(stack, probe_tables=[], probe_root=False)
        blocker_pid = migration.get_server_pid()
        await tx.rollback()
    finally:
        await migration.close()
    (finding,) = [f for f in diagnosis.findings if f.cause == "lock_wait"]
    assert f"PID {blocker_pid} (migrate.sh" in finding.evidence
    assert "LOCK TABLE public.recent …" in finding.evidence and "for " in finding.evidence
    assert f"pg_cancel_backend({blocker_pid})" in finding.fix and finding.blocks_reload


async def test_disabled_channel_says_why_no_notify_would_be_heard(make_stack):
    stack = make_stack(channel_enabled=False)
    stack.sql("CREATE TABLE public.orders (id int); GRANT SELECT ON public.orders TO anon;")
    diagnosis = await probe_and_diagnose(stack, probe_tables=["orders"])
    (finding,) = [f for f in diagnosis.findings if f.cause == "no_listener"]
    assert "channel is disabled" in finding.evidence and finding.blocks_reload


async def test_a_listener_that_only_calls_itself_postgrest_is_not_postgrest(make_stack):
    # Another program (or another project's PostgREST under its own role) on the channel: the name proves nothing,
    # and a NOTIFY it hears does not reload this PostgREST, whose channel is disabled.
    stack = make_stack(channel_enabled=False)
    stack.sql("CREATE TABLE public.orders (id int); GRANT SELECT ON public.orders TO anon;")
    impostor = await asyncpg.connect(stack.dsn(), server_settings={"application_name": "PostgREST 12.0.2"})
    try:
        await impostor.execute(f'LISTEN "{stack.channel}"')
        diagnosis = await probe_and_diagnose(stack, probe_tables=["orders"])
    finally:
        await impostor.close()
    assert diagnosis.listener is not None and diagnosis.listener.state is ListenerState.ABSENT
    (finding,) = [f for f in diagnosis.findings if f.cause == "no_listener"]
    assert "PostgREST 12.0.2 (user ops, from 127.0.0.1), not PostgREST" in finding.evidence, finding.evidence
    assert finding.blocks_reload


async def test_the_bots_own_listener_is_never_taken_for_postgrest(make_stack):
    # The catalog watch LISTENs on PostgREST's channel as the ops role. With PostgREST gone from the database, that
    # session must not read as "someone listens, maybe PostgREST": the reload would be heard by nobody.
    stack = make_stack()
    stack.postgrest.stop()
    own, other = await asyncpg.connect(stack.dsn()), await asyncpg.connect(stack.dsn())
    try:
        async with listening(own, stack.channel, lambda *_: None):
            status = await listener_status(other, stack.channel, "authenticator")
            assert status.state is ListenerState.ABSENT, status.detail
            assert "no session of authenticator is connected" in status.detail
            assert status.listeners == 0
            foreign = await asyncpg.connect(stack.dsn())  # the same LISTEN from a session that is not ours
            try:
                await foreign.execute(f'LISTEN "{stack.channel}"')
                status = await listener_status(other, stack.channel, "authenticator")
            finally:
                await foreign.close()
            assert status.state is ListenerState.PRESENT and status.listeners == 1, status.detail
    finally:
        await own.close()
        await other.close()


async def test_admin_port_alone_answering_is_not_an_api_that_answers(make_stack):
    # A PostgREST 12.2+ admin port (/live, /ready, /metrics) answers while PostgREST itself is gone from the
    # database: no admin check, /metrics included, may count as "the API answers".
    stack = make_stack()
    stack.postgrest.stop()

    async def admin(request: web.Request) -> web.Response:
        if request.path == "/metrics":
            return web.Response(text="pgrst_db_pool_available 0.0\n", content_type="text/plain")
        return web.Response(status=200 if request.path == "/live" else 503)

    async with LocalServer.catch_all(admin) as admin_url:
        diagnosis = await probe_and_diagnose(stack, admin_url=admin_url)
    assert {c.name for c in diagnosis.report.checks if c.status is not None} == {"live", "ready", "metrics"}
    (finding,) = [f for f in diagnosis.findings if f.cause == "no_listener"]
    assert finding.evidence.startswith("PostgREST has no connection to the database"), finding.evidence


async def test_monitoring_role_without_stats_gets_unknown_not_a_wrong_answer(make_stack):
    stack = make_stack(channel_enabled=True, monitor_user="monitor")
    stack.sql("CREATE TABLE public.orders (id int); GRANT SELECT ON public.orders TO anon;")
    diagnosis = await probe_and_diagnose(stack, probe_tables=["orders"])
    assert diagnosis.listener is not None and diagnosis.listener.state is ListenerState.UNKNOWN
    assert "no_listener" not in causes(diagnosis)
    assert diagnosis.verdict is Verdict.STALE_SCHEMA_CACHE and diagnosis.blockers == []


async def test_role_at_its_connection_limit_blocks_the_reload(make_stack):
    stack = make_stack()
    used = int(stack.sql("select count(*) from pg_stat_activity where usename = 'authenticator'").strip())
    stack.sql(f"ALTER ROLE authenticator CONNECTION LIMIT {used}")
    try:
        stack.sql("CREATE TABLE public.orders (id int); GRANT SELECT ON public.orders TO anon;")
        diagnosis = await probe_and_diagnose(stack, probe_tables=["orders"])
    finally:
        stack.sql("ALTER ROLE authenticator CONNECTION LIMIT -1")
    (finding,) = [f for f in diagnosis.findings if f.cause == "connection_limit"]
    assert "rolconnlimit" in finding.evidence and finding.blocks_reload


async def test_without_a_dsn_diagnosis_says_it_cannot_read_the_catalog(make_stack):
    stack = make_stack()
    settings = build_settings({"env": stack.env_config(database_dsn=None)})
    (target,) = targets_for(settings, {})
    async with make_http_client() as client:
        report = await Prober(client).probe(target)
    diagnosis = await diagnose(target, report, connect_timeout=1, command_timeout=1)
    assert diagnosis.error and "no database DSN" in diagnosis.headline


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("ALTER ROLE x PASSWORD 'hunter2'", "ALTER ROLE x …"),
        ("  -- migrate\n  LOCK TABLE public.t IN ACCESS EXCLUSIVE MODE", "LOCK TABLE public.t …"),
        ("UPDATE t SET secret = $$x$$", "UPDATE t SET …"),
        ("SELECT 'a b c' FROM t", "SELECT FROM t …"),
        ("<insufficient privilege>", "(query hidden: grant the monitoring role pg_read_all_stats)"),
    ],
)
def test_blocking_query_is_cut_to_its_first_words_without_literals(query, expected):
    assert first_words(query) == expected


async def test_cached_table_no_api_role_may_read_is_not_granted_not_healthy(make_stack):
    stack = make_stack()
    stack.sql("CREATE TABLE public.orders (id int primary key);")
    stack.notify()
    await asyncio.sleep(0.5)  # cached now: OPTIONS answers 200, GET answers 401 42501
    diagnosis = await probe_and_diagnose(stack, probe_tables=["orders"])
    assert diagnosis.verdict is Verdict.NOT_GRANTED
    assert "GRANT SELECT ON public.orders TO anon, authenticated" in diagnosis.findings[0].fix


async def test_table_granted_to_another_api_role_is_only_auth_limited(make_stack):
    stack = make_stack()
    stack.sql("CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO authenticated;")
    stack.notify()
    await asyncio.sleep(0.5)
    diagnosis = await probe_and_diagnose(stack, probe_tables=["orders"])
    assert diagnosis.verdict is Verdict.HEALTHY and diagnosis.report.auth_limited


async def test_lock_held_before_the_notify_makes_the_preflight_refuse(make_stack):
    stack = make_stack()
    stack.sql("CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;")
    migration = await asyncpg.connect(
        stack.dsn("postgres", stack.cluster.superuser_password), server_settings={"application_name": "migrate.sh"}
    )
    try:
        tx = migration.transaction()
        await tx.start()
        await migration.execute("ALTER TABLE public.judgments ADD COLUMN verdict text")
        diagnosis = await probe_and_diagnose(stack, probe_tables=["orders"], probe_root=False)
        pid = migration.get_server_pid()
        await tx.rollback()
    finally:
        await migration.close()
    (blocker,) = diagnosis.blockers
    assert blocker.cause == "lock_held" and f"PID {pid} (migrate.sh" in blocker.evidence
    assert "public.judgments" in blocker.evidence and "ALTER TABLE public.judgments …" in blocker.evidence


async def test_short_lock_timeout_alone_does_not_block_a_reload(make_stack):
    stack = make_stack()
    stack.sql(f"ALTER ROLE authenticator IN DATABASE {stack.db} SET lock_timeout = '500ms'")
    stack.sql("CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;")
    diagnosis = await probe_and_diagnose(stack, probe_tables=["orders"])
    assert diagnosis.blockers == [] and diagnosis.verdict is Verdict.STALE_SCHEMA_CACHE


def test_schema_load_estimate_is_never_below_the_measured_reload():
    assert schema_load_estimate_ms(proxy_ms=0.6, measured_reload_ms=None) == SCHEMA_LOAD_BASE_MS + 21
    assert schema_load_estimate_ms(proxy_ms=0.6, measured_reload_ms=900.0) == 900.0  # a slow environment
    assert schema_load_estimate_ms(proxy_ms=40.0, measured_reload_ms=165.0) > 165.0  # the catalog grew since


@pytest.mark.parametrize(
    ("limit_ms", "estimate_ms", "too_low"),
    [
        (30, 165, True),  # ~20 tables: breaks at 20 ms, passes at 30 ms only on an idle machine
        (494, 165, True),  # within 3x
        (495, 165, False),
        (8000, 165, False),  # Supabase's authenticator default
        (8000, 2900, True),  # a huge catalog: 8 s is within 3x of its reload
        (0, 165, False),  # 0 = no timeout
    ],
)
def test_statement_timeout_is_refused_within_3x_of_the_schema_load(limit_ms, estimate_ms, too_low):
    assert statement_timeout_too_low(limit_ms, estimate_ms) is too_low


@pytest.mark.parametrize("channel", ["pgrst", "pg.rst", 'we"ird chan', "Kanal-ü#~(1)"])
async def test_listen_pattern_matches_that_channel_and_no_other_in_postgresql(pg_cluster, channel):
    conn = await asyncpg.connect(pg_cluster.dsn())
    try:

        async def listens(query: str) -> bool:
            return bool(await conn.fetchval("select $1 ~ $2", query, listen_pattern(channel)))

        quoted = '"' + channel.replace('"', '""') + '"'
        assert await listens(f"LISTEN {quoted}") and await listens(f"  listen {quoted};")
        assert not await listens(f'LISTEN "{channel}x"') and not await listens(f"NOTIFY {quoted}")
        assert not await listens('LISTEN "pgXrst"')  # a dot in a channel name is a dot, not any character
    finally:
        await conn.close()


async def test_a_schema_postgrest_serves_per_the_supabase_api_that_does_not_exist_is_named(make_stack):
    stack = make_stack()
    settings = build_settings({"env": stack.env_config(probe_tables=["orders"])})
    (target,) = targets_for(settings, stack.env_vars, need_dsn=True)
    async with make_http_client() as client:
        report = await Prober(client).probe(target)
    diagnosis = await diagnose(target, report, connect_timeout=3, command_timeout=5, served_schemas=["gone"])
    (finding,) = [f for f in diagnosis.findings if f.cause == "missing_schema"]
    assert finding.evidence.startswith("PostgREST's db_schema (Supabase API) lists gone")
    assert "CREATE SCHEMA gone" in finding.fix
    plain = await diagnose(target, report, connect_timeout=3, command_timeout=5)
    assert "missing_schema" not in causes(plain)  # exposed_schemas alone: public exists
