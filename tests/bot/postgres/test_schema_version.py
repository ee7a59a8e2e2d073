"""Schema version guard: the runbook's compatibility rules, and the database side on a real PostgreSQL."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from bot.config import SchemaVersionGuard
from bot.core.schema_version import VersionStatus, compare_versions
from bot.postgres.connect import connect
from bot.postgres.schema_version import MIGRATIONS_TABLE, check_schema_version, check_target_schema_version
from tests.conftest import build_settings, targets_for

C, RUN, CONFLICT, UNKNOWN = (
    VersionStatus.COMPATIBLE,
    VersionStatus.RUN_MIGRATIONS,
    VersionStatus.CONFLICT,
    VersionStatus.UNKNOWN,
)

# (case, app expects, database has, status, words the message must carry)
VERSION_CASES = [
    ("runbook: exact match", "1.0.0", "1.0.0", C, "both at 1.0.0"),
    ("runbook: database newer", "1.0.0", "1.1.0", C, "newer"),
    ("runbook: app newer", "1.1.0", "1.0.0", RUN, "run the migrations"),
    ("runbook: major mismatch, database ahead", "1.0.0", "2.0.0", CONFLICT, "major version mismatch"),
    ("major mismatch, app ahead", "2.0.0", "1.9.9", CONFLICT, "major version mismatch"),
    ("v prefix on the app side", "v1.2.3", "1.2.3", C, "both at"),
    ("v prefix on the database side", "1.2.3", "v1.2.4", C, "newer"),
    ("minor compared as a number, not as text", "1.10.0", "1.9.0", RUN, "run the migrations"),
    ("patch newer in the database", "1.2.3", "1.2.10", C, "newer"),
    ("pre-release sorts before its release", "1.0.0-rc.1", "1.0.0", C, "newer"),
    ("release expected, database on its pre-release", "1.0.0", "1.0.0-rc.1", RUN, "run the migrations"),
    ("surrounding blanks ignored", " 1.0.0 ", "1.0.0\n", C, "both at"),
    ("timestamps equal", "20260101120000", "20260101120000", C, "both at 20260101120000"),
    ("timestamp: database newer", "20260101120000", "20260301000000", C, "newer"),
    ("timestamp: app newer", "20260301000000", "20260101120000", RUN, "run the migrations"),
    ("timestamps compared as numbers", "999", "1000", C, "newer"),
    ("semver against a timestamp", "1.0.0", "20260101120000", UNKNOWN, "cannot compare"),
    ("garbage app version", "banana", "1.0.0", UNKNOWN, "cannot read the app's schema version 'banana'"),
    ("garbage database version", "1.0.0", "v1.x", UNKNOWN, "cannot read the database's schema version 'v1.x'"),
    ("two-part version is not semver", "1.0", "1.0.0", UNKNOWN, "expected semver such as 1.2.3"),
    ("empty database version", "1.0.0", "", UNKNOWN, "cannot read the database's schema version ''"),
]


@pytest.mark.parametrize(
    ("app", "db", "status", "words"), [c[1:] for c in VERSION_CASES], ids=[c[0] for c in VERSION_CASES]
)
def test_compare_versions_follows_the_runbook(app, db, status, words):
    verdict = compare_versions(app, db)
    assert verdict.status is status, verdict.message
    assert words in verdict.message
    assert verdict.compatible is (status is C)
    assert "\n" not in verdict.message


def test_conflict_never_advises_just_running_migrations():
    message = compare_versions("1.0.0", "2.0.0").message
    assert "running migrations alone will not reconcile" in message


MIGRATIONS_SQL = f"""
CREATE SCHEMA supabase_migrations;
CREATE TABLE {MIGRATIONS_TABLE} (version text PRIMARY KEY);
GRANT USAGE ON SCHEMA supabase_migrations TO ops;
GRANT SELECT ON {MIGRATIONS_TABLE} TO ops;
"""


async def guard_report(stack, guard: dict, environ: dict | None = None):
    async with connect(SecretStr(stack.dsn("ops")), connect_timeout=3, command_timeout=3) as conn:
        return await check_schema_version(conn, SchemaVersionGuard(**guard), environ or {}, query_timeout_s=3)


@pytest.mark.parametrize(
    ("expected", "status"),
    [("20260301000000", C), ("20260401000000", RUN), ("20260101120000", C)],
    ids=["same as the newest migration", "app expects a migration not applied", "database ahead"],
)
async def test_newest_supabase_migration_is_the_database_version(make_stack, expected, status):
    stack = make_stack()
    stack.sql(MIGRATIONS_SQL + f"INSERT INTO {MIGRATIONS_TABLE} VALUES ('20260101120000'), ('20260301000000');")
    report = await guard_report(stack, {"expected": expected})
    assert report.status is status, report.message
    assert report.db_version == "20260301000000"
    assert report.app_version == expected
    assert (report.app_source, report.db_source) == ("config", MIGRATIONS_TABLE)
    assert json.loads(json.dumps(report.to_json()))["status"] == str(status)


async def test_migration_numbers_of_different_lengths_compare_as_numbers(make_stack):
    stack = make_stack()
    stack.sql(MIGRATIONS_SQL + f"INSERT INTO {MIGRATIONS_TABLE} VALUES ('999'), ('1000'), ('0998');")
    report = await guard_report(stack, {"expected": "1000"})
    assert report.db_version == "1000" and report.status is C, report.message


async def test_configured_query_and_expected_version_from_the_environment(make_stack):
    stack = make_stack()
    stack.sql(
        "CREATE TABLE public.bot_config (config_key text PRIMARY KEY, config_value jsonb);"
        """INSERT INTO public.bot_config VALUES ('schema_version', '{"version": "2.0.0", "migration": "0002"}');"""
        "GRANT SELECT ON public.bot_config TO ops;"
    )
    guard = {
        "expected_env": "APP_SCHEMA_VERSION",
        "query": "select config_value->>'version' from public.bot_config where config_key = 'schema_version'",
    }
    report = await guard_report(stack, guard, {"APP_SCHEMA_VERSION": "1.0.0"})
    assert report.status is CONFLICT, report.message
    assert (report.app_version, report.db_version) == ("1.0.0", "2.0.0")
    assert report.app_source == "environment variable APP_SCHEMA_VERSION"
    assert report.db_source == "configured query"
    assert "app: environment variable APP_SCHEMA_VERSION; database: configured query" == report.source


async def test_environment_variable_overrides_the_configured_expected_version(make_stack):
    stack = make_stack()
    guard = {"expected": "1.0.0", "expected_env": "APP_SCHEMA_VERSION", "query": "select '1.1.0'"}
    overridden = await guard_report(stack, guard, {"APP_SCHEMA_VERSION": "1.2.0"})
    assert overridden.status is RUN and overridden.app_version == "1.2.0"
    fallback = await guard_report(stack, guard, {})
    assert fallback.status is C and fallback.app_source == "config"


UNKNOWN_CASES = [
    ("no migrations table", "", {"expected": "1.0.0"}, {}, f"{MIGRATIONS_TABLE} does not exist"),
    ("empty migrations table", MIGRATIONS_SQL, {"expected": "1.0.0"}, {}, "records no migration yet"),
    (
        "migrations table the monitoring role may not read",
        MIGRATIONS_SQL + f"REVOKE SELECT ON {MIGRATIONS_TABLE} FROM ops;",
        {"expected": "1.0.0"},
        {},
        f"cannot read {MIGRATIONS_TABLE} (42501",
    ),
    (
        "missing environment variable",
        "",
        {"expected_env": "APP_SCHEMA_VERSION", "query": "select '1.0.0'"},
        {},
        "environment variable APP_SCHEMA_VERSION is not set",
    ),
    (
        "failing configured query",
        "",
        {"expected": "1.0.0", "query": "select v from nowhere"},
        {},
        "query failed (42P01",
    ),
    ("configured query without rows", "", {"expected": "1.0.0", "query": "select 1 where false"}, {}, "no rows"),
    ("configured query returning null", "", {"expected": "1.0.0", "query": "select null"}, {}, "is empty"),
    ("unparsable database version", "", {"expected": "1.0.0", "query": "select 'latest'"}, {}, "'latest'"),
]


@pytest.mark.parametrize(
    ("setup", "guard", "environ", "words"), [c[1:] for c in UNKNOWN_CASES], ids=[c[0] for c in UNKNOWN_CASES]
)
async def test_what_cannot_be_read_is_unknown_with_the_reason(make_stack, setup, guard, environ, words):
    stack = make_stack()
    if setup:
        stack.sql(setup)
    report = await guard_report(stack, guard, environ)
    assert report.status is UNKNOWN and not report.compatible
    assert report.message.startswith("unknown: ")
    assert words in report.message, report.message


async def test_target_without_a_guard_has_no_report_and_a_bad_dsn_is_unknown_without_secrets(make_stack):
    stack = make_stack()
    stack.sql(MIGRATIONS_SQL + f"INSERT INTO {MIGRATIONS_TABLE} VALUES ('20260101120000');")
    guard = {"expected": "20260101120000"}
    env_var = next(iter(stack.env_vars))

    async def for_target(env_overrides, environ):
        settings = build_settings({"env": stack.env_config(**env_overrides)})
        (target,) = targets_for(settings, {**stack.env_vars, **environ}, need_dsn=True)
        return await check_target_schema_version(target, environ, connect_timeout=3, command_timeout=3)

    assert await for_target({}, {}) is None
    ok = await for_target({"schema_version": guard}, {})
    assert ok is not None and ok.status is C, ok
    bad = await for_target({"schema_version": guard}, {env_var: stack.dsn("ops", password="wrong-pass-xyz")})
    assert bad is not None and bad.status is UNKNOWN
    assert "rejected the login" in bad.message
    assert "wrong-pass-xyz" not in json.dumps(bad.to_json())
