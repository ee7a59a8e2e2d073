"""Read the database's schema version (a table, a function or Supabase's migration history) and judge it with the rules in bot/core/schema_version.py."""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg
from pydantic import SecretStr

from bot.config import SchemaVersionGuard, Target
from bot.core.schema_version import SchemaVersionReport, VersionStatus, compare_versions, expected_version
from bot.postgres.connect import DatabaseError, connect

MIGRATIONS_TABLE = "supabase_migrations.schema_migrations"
# Digit strings of different lengths compare as numbers: longer is newer, then lexical order.
_LATEST_MIGRATION_SQL = f"select version from {MIGRATIONS_TABLE} order by length(version) desc, version desc limit 1"


async def _database_version(
    conn: asyncpg.Connection, guard: SchemaVersionGuard, query_timeout_s: float | None
) -> tuple[str | None, str, str | None]:
    """(version, where it came from, problem)."""
    if guard.query:
        source = "configured query"
        try:
            row = await conn.fetchrow(guard.query, timeout=query_timeout_s)
        except asyncpg.PostgresError as err:
            return None, source, f"the configured schema version query failed ({err.sqlstate}: {err})"
        if row is None or len(row) == 0:
            return None, source, "the configured schema version query returned no rows"
        value = row[0]
    else:
        source = MIGRATIONS_TABLE
        try:
            exists = await conn.fetchval(
                f"select to_regclass('{MIGRATIONS_TABLE}') is not null", timeout=query_timeout_s
            )
            if not exists:
                return (
                    None,
                    source,
                    f"{MIGRATIONS_TABLE} does not exist (migrations not applied with the Supabase CLI?): "
                    "set schema_version.query to read the version elsewhere",
                )
            value = await conn.fetchval(_LATEST_MIGRATION_SQL, timeout=query_timeout_s)
        except asyncpg.PostgresError as err:
            return None, source, f"cannot read {MIGRATIONS_TABLE} ({err.sqlstate}: {err})"
        if value is None:
            return None, source, f"{MIGRATIONS_TABLE} records no migration yet"
    if value is None or not str(value).strip():
        return None, source, f"the database's schema version ({source}) is empty"
    return str(value).strip(), source, None


async def check_schema_version(
    conn: asyncpg.Connection,
    guard: SchemaVersionGuard,
    environ: Mapping[str, str],
    *,
    query_timeout_s: float | None = None,
) -> SchemaVersionReport:
    """Compare the app's expected version with the database's. Raises only for connection trouble."""
    app, app_source, app_problem = expected_version(guard, environ)
    db, db_source, db_problem = await _database_version(conn, guard, query_timeout_s)
    problem = app_problem or db_problem
    if problem:
        return SchemaVersionReport(VersionStatus.UNKNOWN, app, db, app_source, db_source, f"unknown: {problem}")
    assert app is not None and db is not None
    verdict = compare_versions(app, db)
    message = verdict.message if verdict.status is not VersionStatus.UNKNOWN else f"unknown: {verdict.message}"
    return SchemaVersionReport(verdict.status, app, db, app_source, db_source, message)


async def check_target_schema_version(
    target: Target, environ: Mapping[str, str], *, connect_timeout: float, command_timeout: float
) -> SchemaVersionReport | None:
    """The guard for one environment over its own connection; None when it has no guard. Never raises."""
    guard = target.config.schema_version
    if guard is None:
        return None
    dsn: SecretStr | None = target.secrets.database_dsn
    if dsn is None:
        app, app_source, _ = expected_version(guard, environ)
        source = "configured query" if guard.query else MIGRATIONS_TABLE
        return SchemaVersionReport(
            VersionStatus.UNKNOWN, app, None, app_source, source, "unknown: no database DSN for this environment"
        )
    try:
        async with connect(dsn, connect_timeout=connect_timeout, command_timeout=command_timeout) as conn:
            return await check_schema_version(conn, guard, environ, query_timeout_s=command_timeout)
    except DatabaseError as err:
        app, app_source, _ = expected_version(guard, environ)
        source = "configured query" if guard.query else MIGRATIONS_TABLE
        return SchemaVersionReport(VersionStatus.UNKNOWN, app, None, app_source, source, f"unknown: {err}")
