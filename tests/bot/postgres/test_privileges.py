"""One rule for "an API role may use this object": the diagnosis (/health, fix) and drift agree on it.

Real PostgreSQL and PostgREST 12: table or column privileges, partitions, EXECUTE, schema USAGE.
"""

from __future__ import annotations

import asyncio

import pytest

from bot.core.catalog import Access, relation_access
from bot.core.diagnosis import Diagnosis
from bot.core.drift import DriftReport
from bot.core.verdicts import Verdict
from bot.ops.drift import check_drift
from bot.postgres.diagnose import diagnose
from bot.postgres.privileges import api_roles_cte
from bot.postgrest.probe import Prober
from bot.postgrest.requests import make_http_client
from tests.conftest import build_settings, targets_for


@pytest.mark.parametrize(
    ("usable", "columns", "usable_columns", "expected"),
    [
        (False, ["id", "ssn"], [], Access.NONE),
        (True, ["id", "ssn"], ["id"], Access.RESTRICTED),
        (True, ["id", "ssn"], ["id", "ssn"], Access.FULL),
        (True, [], [], Access.FULL),  # a relation without columns, granted as a whole
    ],
)
def test_relation_access_from_the_catalog_answers(usable, columns, usable_columns, expected):
    assert relation_access(usable, columns, usable_columns) is expected


def test_api_roles_only_take_a_query_parameter():
    assert "rolname = any($3::text[])" in api_roles_cte("$3")
    with pytest.raises(ValueError):
        api_roles_cte("'anon'")


async def both_views(stack, **overrides) -> tuple[Diagnosis, DriftReport]:
    settings = build_settings({"env": stack.env_config(**overrides)})
    (target,) = targets_for(settings, stack.env_vars, need_dsn=True)
    async with make_http_client() as client:
        report = await Prober(client).probe(target)
        drift = await check_drift(client, target, max_body_bytes=1 << 20, connect_timeout=3, command_timeout=3)
    return await diagnose(target, report, connect_timeout=3, command_timeout=5), drift


async def reload_and_wait(stack, table: str) -> None:
    stack.notify()
    for _ in range(100):
        diagnosis, _ = await both_views(stack, probe_tables=[{"name": table, "select": "id"}])
        if diagnosis.verdict is Verdict.HEALTHY:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{table} not served after a reload")


async def test_a_table_granted_per_column_is_stale_for_both_then_restricted_by_design(make_stack):
    stack = make_stack()
    stack.sql("CREATE TABLE public.people (id int primary key, ssn text); GRANT SELECT (id) ON public.people TO anon;")
    # New since the last reload: both say a reload helps (before: not_granted in /health, fine in /drift).
    diagnosis, drift = await both_views(stack, probe_tables=[{"name": "people", "select": "id"}])
    assert diagnosis.verdict is Verdict.STALE_SCHEMA_CACHE, diagnosis.headline
    assert drift.missing_in_api.tables == ("public.people",) and not drift.ungranted

    await reload_and_wait(stack, "people")
    diagnosis, drift = await both_views(stack, probe_tables=[{"name": "people", "select": "id"}])
    assert diagnosis.verdict is Verdict.HEALTHY and drift.in_sync, drift.summary
    # Restricted by design: its own class, never an "ungranted" notice to act on.
    assert not drift.ungranted
    assert drift.restricted.tables == ("public.people",) and drift.restricted.columns == ("public.people.ssn",)
    assert "restricted by design (granted column by column): public.people" in drift.summary
    assert drift.to_json()["restricted_by_design"]["tables"] == ["public.people"]

    # A probe whose select asks for a column the roles may not read: healthy, auth-limited, said plainly.
    star, _ = await both_views(stack, probe_tables=["people"])
    assert star.verdict is Verdict.HEALTHY and star.report.auth_limited
    assert star.findings[0].cause == "restricted_by_design"


async def test_ungranted_objects_are_not_granted_for_both(make_stack):
    stack = make_stack()
    stack.sql(
        "CREATE SCHEMA extra; CREATE TABLE extra.no_usage (id int); GRANT SELECT ON extra.no_usage TO anon;"
        "CREATE TABLE public.no_grant (id int);"
    )
    stack.postgrest.extra_env["PGRST_DB_SCHEMAS"] = "public,extra"
    stack.postgrest.stop()
    stack.postgrest.start()
    # New since the start (404 PGRST202): an RPC probe asks the catalog only then (a cached function answers
    # 415 PGRST107 whatever its grants, as PostgREST caches every function).
    stack.sql(
        "CREATE FUNCTION public.no_execute() RETURNS int LANGUAGE sql AS 'select 1';"
        "REVOKE EXECUTE ON FUNCTION public.no_execute() FROM PUBLIC;"
    )
    overrides = {
        "exposed_schemas": ["public", "extra"],
        "probe_tables": ["no_grant", "extra.no_usage"],
        "probe_functions": ["no_execute"],
    }
    diagnosis, drift = await both_views(stack, **overrides)
    assert diagnosis.verdict is Verdict.NOT_GRANTED
    by_check = {c.name: c.verdict for c in diagnosis.report.checks}
    assert by_check["data:no_grant"] is by_check["data:extra.no_usage"] is Verdict.NOT_GRANTED
    assert by_check["rpc:no_execute"] is Verdict.NOT_GRANTED
    fixes = " ".join(f.fix for f in diagnosis.findings)
    assert "GRANT USAGE ON SCHEMA extra TO anon, authenticated; GRANT SELECT ON extra.no_usage" in fixes
    assert "GRANT EXECUTE ON FUNCTION public.no_execute TO anon, authenticated;" in fixes
    assert set(drift.ungranted.tables) == {"public.no_grant", "extra.no_usage"}
    assert drift.ungranted.functions == ("public.no_execute",)


async def test_a_partition_is_not_an_api_relation_anywhere(make_stack):
    stack = make_stack()
    stack.sql(
        "CREATE TABLE public.events (id int, k int) PARTITION BY RANGE (k);"
        "CREATE TABLE public.events_0 PARTITION OF public.events FOR VALUES FROM (0) TO (10);"
        "GRANT SELECT ON public.events, public.events_0 TO anon;"
    )
    await reload_and_wait(stack, "events")
    diagnosis, drift = await both_views(stack, probe_tables=["events", "events_0"])
    # PostgREST 12 caches the partitioned table only: even with a fresh cache the partition answers OPTIONS 404.
    assert diagnosis.verdict is Verdict.MISSING_IN_DATABASE
    assert diagnosis.findings[0].cause == "partition_not_served"
    assert "public.events_0 is a partition of public.events" in diagnosis.findings[0].evidence
    assert drift.in_sync, drift.summary
    assert "public.events_0" not in drift.ungranted.tables + drift.restricted.tables + drift.missing_in_api.tables
