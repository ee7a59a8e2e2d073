"""Probes that name their schema, against a real PostgREST 12 serving several schemas (db-schemas).

PostgREST picks the schema of a read by `Accept-Profile` and of a write by `Content-Profile`; an unqualified name
is looked up in the first of db-schemas only. Schema names PostgREST serves include `تست` and
`SPECIAL "@/\\#~_-` (both from PostgREST's own test fixtures).
"""

from __future__ import annotations

import asyncio
import json
import re

import httpx

from bot.core.diagnosis import Diagnosis
from bot.core.identifiers import quote_ident
from bot.core.verdicts import Verdict
from bot.ops.drift import check_drift
from bot.postgres.diagnose import diagnose
from bot.postgrest.probe import Prober
from bot.postgrest.requests import make_http_client, utf8_headers
from tests.bot.test_cli import acli
from tests.conftest import build_settings, targets_for, write_config

SPECIAL = 'SPECIAL "@/\\#~_-'
ARABIC = "تست"


def with_schemas(make_stack, schemas: list[str]):
    return make_stack(extra_env={"PGRST_DB_SCHEMAS": ",".join(schemas)})


async def reload_until_served(stack, schema: str, table: str) -> None:
    """NOTIFY, then wait for the positive signal: OPTIONS on the table answers 200 in that schema."""
    stack.notify()
    async with httpx.AsyncClient(timeout=2) as client:
        for _ in range(100):
            answer = await client.options(
                f"{stack.postgrest.url}/{table}", headers=utf8_headers({"Accept-Profile": schema})
            )
            if answer.status_code == 200:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"{schema}.{table} not served after a reload")


def grants(schema: str, *objects: str) -> str:
    s = quote_ident(schema)
    sql = f"CREATE SCHEMA {s}; GRANT USAGE ON SCHEMA {s} TO anon, authenticated;"
    for obj in objects:
        sql += f"CREATE TABLE {s}.{obj} (id int primary key, title text); GRANT SELECT, INSERT ON {s}.{obj} TO anon;"
    return sql


async def probe_and_diagnose(stack, **overrides) -> Diagnosis:
    settings = build_settings({"env": stack.env_config(**overrides)})
    (target,) = targets_for(settings, stack.env_vars, need_dsn=True)
    async with make_http_client() as client:
        report = await Prober(client).probe(target)
    return await diagnose(target, report, connect_timeout=3, command_timeout=5)


async def test_objects_only_in_the_second_exposed_schema_are_healthy(make_stack):
    stack = with_schemas(make_stack, ["public", "extra"])
    stack.sql(
        grants("extra", "only_here")
        + "CREATE FUNCTION extra.add(a int, b int) RETURNS int LANGUAGE sql AS 'select a + b';"
        + "GRANT EXECUTE ON FUNCTION extra.add(int, int) TO anon;"
    )
    await reload_until_served(stack, "extra", "only_here")
    diagnosis = await probe_and_diagnose(
        stack,
        exposed_schemas=["public", "extra"],
        probe_tables=["judgments", {"name": "extra.only_here", "columns": ["title"]}],
        probe_functions=["extra.add(a, b)"],
    )
    report = diagnosis.report
    assert report.verdict is Verdict.HEALTHY, report.explanation
    checks = {c.name: (c.status, c.code) for c in report.checks}
    # Qualified only outside the default schema; every probe answered from the second schema's cache.
    assert checks["data:judgments"] == (200, None)
    assert checks["data:extra.only_here"] == (200, None) and checks["cache:extra.only_here"] == (200, None)
    assert checks["columns:extra.only_here"] == (415, "PGRST107")
    assert checks["rpc:extra.add"] == (415, "PGRST107")


async def test_stale_table_in_the_second_schema_is_stale_and_fix_recovers_it(make_stack, tmp_path):
    stack = with_schemas(make_stack, ["public", "extra"])
    stack.sql(grants("extra", "seed"))
    await reload_until_served(stack, "extra", "seed")
    # After the last reload: a new table in the second schema, and one that exists only in public.
    stack.sql("CREATE TABLE extra.fresh (id int primary key); GRANT SELECT ON extra.fresh TO anon;")
    stack.sql("CREATE TABLE public.elsewhere (id int); GRANT SELECT ON public.elsewhere TO anon;")
    env = stack.env_config(exposed_schemas=["public", "extra"], probe_tables=["extra.fresh"])

    diagnosis = await probe_and_diagnose(stack, **{k: env[k] for k in ("exposed_schemas", "probe_tables")})
    assert diagnosis.verdict is Verdict.STALE_SCHEMA_CACHE
    assert "extra.fresh exists in the database" in diagnosis.findings[0].evidence

    # The diagnosis looks in the probe's schema only, and the evidence names it.
    elsewhere = await probe_and_diagnose(stack, exposed_schemas=["public", "extra"], probe_tables=["extra.elsewhere"])
    assert elsewhere.verdict is Verdict.MISSING_IN_DATABASE
    assert "extra.elsewhere does not exist in schema extra" in elsewhere.findings[0].evidence

    config = write_config(tmp_path / "c.yaml", {"prod": env})
    proc = await acli(config, "fix", "--env", "prod", "--json", env=stack.env_vars)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["outcome"] == "recovered" and doc["verdict_before"] == "stale_schema_cache" and doc["notify_sent"]


async def test_schemas_named_in_arabic_and_with_special_characters_probe_diagnose_fix_and_drift(make_stack, tmp_path):
    schemas = ["public", ARABIC, SPECIAL]
    stack = with_schemas(make_stack, schemas)
    stack.sql(grants(ARABIC, "x") + grants(SPECIAL, "items"))
    stack.sql(
        f"CREATE FUNCTION {quote_ident(SPECIAL)}.echo(a int) RETURNS int LANGUAGE sql AS 'select a';"
        f"GRANT EXECUTE ON FUNCTION {quote_ident(SPECIAL)}.echo(int) TO anon;"
    )
    await reload_until_served(stack, SPECIAL, "items")
    quoted_special = '"SPECIAL ""@/\\#~_-"'
    probes = {
        "exposed_schemas": schemas,
        "probe_tables": [f"{ARABIC}.x", {"name": f"{quoted_special}.items", "columns": ["id", "title"]}],
        "probe_functions": [f"{quoted_special}.echo(a)"],
    }
    healthy = await probe_and_diagnose(stack, **probes)
    assert healthy.verdict is Verdict.HEALTHY, healthy.report.explanation
    assert {c.name for c in healthy.report.checks} >= {f"data:{ARABIC}.x", f"columns:{quoted_special}.items"}

    # Stale: a column added in the special schema, and a new table there; ungranted: a new table in تست.
    stack.sql(f"ALTER TABLE {quote_ident(SPECIAL)}.items ADD COLUMN verdict text;")
    stack.sql(f"CREATE TABLE {quote_ident(ARABIC)}.locked (id int);")
    stale_probes = {
        **probes,
        "probe_tables": [{"name": f"{quoted_special}.items", "columns": ["verdict"]}],
    }
    stale = await probe_and_diagnose(stack, **stale_probes)
    assert stale.verdict is Verdict.STALE_SCHEMA_CACHE, stale.report.explanation
    assert f"{quoted_special}.items.verdict exists in the database" in stale.findings[0].evidence

    locked = await probe_and_diagnose(stack, **{**probes, "probe_tables": [f"{ARABIC}.locked"]})
    assert locked.verdict is Verdict.NOT_GRANTED
    grant = re.search(r"`([^`]+)`", locked.findings[0].fix)
    assert grant is not None and f'ON "{ARABIC}".locked TO anon, authenticated;' in grant.group(1)

    settings = build_settings({"env": stack.env_config(**stale_probes)})
    (target,) = targets_for(settings, stack.env_vars, need_dsn=True)
    async with make_http_client() as client:
        drift = await check_drift(client, target, max_body_bytes=1 << 20, connect_timeout=3, command_timeout=3)
    assert f"{SPECIAL}.items.verdict" in drift.missing_in_api.columns, drift.summary
    assert f"{ARABIC}.locked" in drift.ungranted.tables

    stack.sql(grant.group(1))  # the fix text is valid SQL as written
    config = write_config(tmp_path / "c.yaml", {"prod": stack.env_config(**stale_probes)})
    proc = await acli(config, "fix", "--env", "prod", "--json", env=stack.env_vars)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["outcome"] == "recovered"
    after = await probe_and_diagnose(stack, **{**probes, "probe_tables": [f"{ARABIC}.locked"]})
    assert after.verdict is Verdict.HEALTHY, after.report.explanation


async def test_a_probe_schema_not_exposed_is_a_config_error_naming_the_key(make_stack, tmp_path):
    stack = make_stack()
    config = write_config(tmp_path / "c.yaml", {"prod": stack.env_config(probe_tables=["storage.objects"])})
    proc = await acli(config, "check")
    assert proc.returncode == 2
    assert "environments.prod: probe_tables.0: schema 'storage' is not in exposed_schemas (public)" in proc.stderr
