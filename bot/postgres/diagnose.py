"""Diagnosis: why an environment broke, and whether a reload can help, read from the database catalog.

The probe sees the API; this module sees PostgreSQL through the environment's DSN and answers what the
API cannot tell: is a "not in the schema cache" object really in the database (stale) or genuinely
missing; why the schema cache cannot load (PGRST002); will a NOTIFY be heard; and would a reload now make
things worse (pre-flight). Every finding carries the evidence and the fix to run.

This module holds the SQL and reads the rows; what they mean is judged by the pure rules of
bot/core/stale.py (the objects) and bot/core/causes.py (the causes, and the order findings are told in).

Without pg_read_all_stats the monitoring role cannot see other sessions' queries or wait events; the
checks that need them report "unknown" rather than guess.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence

import asyncpg

from bot.config import ProbeTable, Target
from bot.core.causes import (
    ConnectionUse,
    catalog_privilege_findings,
    connection_findings,
    effective_settings,
    held_lock_findings,
    listener_findings,
    lock_wait_findings,
    missing_schema_findings,
    needs_schema_load_estimate,
    order_findings,
    queue_findings,
    role_missing_finding,
    role_setting_findings,
    schema_load_estimate_ms,
)
from bot.core.diagnosis import Diagnosis, Finding
from bot.core.report import CheckResult, EnvReport
from bot.core.stale import (
    ObjectState,
    StaleTarget,
    add_finding,
    judge_object,
    object_where,
    refine_report,
    stale_target,
)
from bot.core.verdicts import Verdict
from bot.postgres.connect import DatabaseError, connect, listener_status, postgrest_session
from bot.postgres.privileges import (
    API_RELATION,
    COLUMN_USABLE,
    FUNCTION_USABLE,
    RELATION_USABLE,
    SCHEMA_USAGE,
    UNREADABLE_CATALOGS_SQL,
    WHOLE_TABLE,
    api_roles_cte,
)
from bot.postgres.relationships import refine_embed

# Catalogs PostgREST's schema queries read; a revoked SELECT on one of them makes every reload fail.
SCHEMA_CATALOGS = (
    "pg_namespace",
    "pg_class",
    "pg_attribute",
    "pg_attrdef",
    "pg_type",
    "pg_proc",
    "pg_constraint",
    "pg_index",
    "pg_description",
    "pg_inherits",
    "pg_depend",
    "pg_rewrite",
    "pg_enum",
    "pg_roles",
)


# -- catalog lookups ------------------------------------------------------------------------------
# One schema, one name, the API roles as parameters; usability by the one rule (bot/postgres/privileges.py).
_TABLE_SQL = f"""
with {api_roles_cte("$3")}
select bool_or({RELATION_USABLE}) as usable, bool_or({SCHEMA_USAGE}) as schema_usable,
       bool_or({WHOLE_TABLE}) as whole
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
cross join api_roles r
where c.relname = $1 and n.nspname = $2 and {API_RELATION}
group by c.oid
"""
# Without any API role in the database the lookup above has no row: whether the relation exists is asked apart.
_RELATION_EXISTS_SQL = """
select (select p.relname from pg_inherits i join pg_class p on p.oid = i.inhparent where i.inhrelid = c.oid limit 1)
       as partition_of
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where c.relname = $1 and n.nspname = $2 and c.relkind in ('r', 'v', 'm', 'f', 'p')
"""
_COLUMN_SQL = f"""
with {api_roles_cte("$3")}
select a.attname as name, bool_or({COLUMN_USABLE}) as usable
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
cross join api_roles r
where c.relname = $1 and n.nspname = $2 and {API_RELATION}
group by 1
"""
_FUNCTION_SQL = f"""
with {api_roles_cte("$3")}
select bool_or({FUNCTION_USABLE}) as usable, bool_or({SCHEMA_USAGE}) as schema_usable
from pg_proc p
join pg_namespace n on n.oid = p.pronamespace
cross join api_roles r
where p.proname = $1 and n.nspname = $2
"""
_FUNCTION_EXISTS_SQL = """
select exists (select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
               where p.proname = $1 and n.nspname = $2)
"""


async def _object_state(
    conn: asyncpg.Connection, kind: str, schema: str, name: str, roles: list[str], where: str
) -> ObjectState:
    """Exists in that schema (and only there), as an object PostgREST serves? Usable by one of the API roles?"""
    if kind == "function":
        row = await conn.fetchrow(_FUNCTION_SQL, name, schema, roles)
        if row is None or row["usable"] is None:
            # No such function, or no API role exists in the database (then nobody may use it).
            return ObjectState(bool(await conn.fetchval(_FUNCTION_EXISTS_SQL, name, schema)), False, where)
        return ObjectState(True, bool(row["usable"]), where, schema_usable=bool(row["schema_usable"]))
    row = await conn.fetchrow(_TABLE_SQL, name, schema, roles)
    if row is None:
        found = await conn.fetchrow(_RELATION_EXISTS_SQL, name, schema)
        if found is not None and found["partition_of"] is not None:
            return ObjectState(False, False, where, partition_of=str(found["partition_of"]))
        return ObjectState(found is not None, False, where)  # absent, or no API role exists in the database
    return ObjectState(True, bool(row["usable"]), where, bool(row["schema_usable"]), bool(row["whole"]))


async def _refine_check(
    conn: asyncpg.Connection, target: Target, check: CheckResult, stale: StaleTarget
) -> tuple[CheckResult, Finding]:
    """Look the object behind a stale-looking check up in the catalog, in its own schema, and say which it is."""
    env = target.config
    if check.code == "PGRST200" and isinstance(stale.probe, ProbeTable):
        # An embed in the probe's select: the foreign keys decide (bot/postgres/relationships.py).
        embed = await refine_embed(conn, target, check, stale.probe)
        if embed is not None:
            finding = Finding(embed.cause, embed.title, embed.evidence, embed.fix)
            return dataclasses.replace(check, verdict=embed.verdict, detail=embed.detail), finding
    roles, kind, probe = env.api_roles, stale.kind, stale.probe
    schema, name = probe.schema_in(env), probe.name
    lookup = "function" if kind == "function" else "table"
    state = await _object_state(conn, lookup, schema, name, roles, object_where(kind, schema, name))
    columns = None
    if state.exists and kind == "column" and isinstance(probe, ProbeTable):
        columns = {r["name"]: bool(r["usable"]) for r in await conn.fetch(_COLUMN_SQL, name, schema, roles)}
    return judge_object(
        check, stale, state, columns, schema=schema, roles=roles, env=target.name, channel=env.notify_channel
    )


# -- why PGRST002? --------------------------------------------------------------------------------
_ROLE_SETTINGS_SQL = """
select s.setdatabase <> 0 as per_database, s.setrole <> 0 as per_role, unnest(s.setconfig) as setting
from pg_db_role_setting s
where s.setrole in (0, (select oid from pg_roles where rolname = $1))
  and s.setdatabase in (0, (select oid from pg_database where datname = current_database()))
  and not (s.setrole = 0 and s.setdatabase = 0)
"""
# A stand-in for PostgREST's columns query over the same catalog: its time scales with the catalog size.
_SCHEMA_PROXY_SQL = """
select count(*), count(distinct d.adrelid)
from pg_attribute a
join pg_class c on c.oid = a.attrelid
join pg_namespace n on n.oid = c.relnamespace
left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
left join pg_description e on e.objoid = c.oid
where n.nspname = any($1::text[]) and a.attnum > 0 and not a.attisdropped
"""


async def _estimate_schema_load_ms(
    conn: asyncpg.Connection, schemas: list[str], measured_reload_ms: float | None
) -> float:
    started = time.perf_counter()
    await conn.fetchrow(_SCHEMA_PROXY_SQL, schemas)
    proxy_ms = (time.perf_counter() - started) * 1000
    return schema_load_estimate_ms(proxy_ms, measured_reload_ms)


async def _role_setting_findings(
    conn: asyncpg.Connection, target: Target, cache_down: bool, report: EnvReport, measured_reload_ms: float | None
) -> list[Finding]:
    role = target.config.authenticator_role
    settings = effective_settings(await conn.fetch(_ROLE_SETTINGS_SQL, role))
    if not settings:
        return []
    estimate = None
    if needs_schema_load_estimate(settings):
        estimate = await _estimate_schema_load_ms(conn, target.config.exposed_schemas, measured_reload_ms)
    return role_setting_findings(
        settings,
        report,
        role=role,
        database=await conn.fetchval("select current_database()"),
        cache_down=cache_down,
        estimate_ms=estimate,
        measured_reload_ms=measured_reload_ms,
    )


async def _catalog_privilege_findings(conn: asyncpg.Connection, target: Target) -> list[Finding]:
    role = target.config.authenticator_role
    if not await conn.fetchval("select exists (select 1 from pg_roles where rolname = $1)", role):
        return [role_missing_finding(role)]
    rows = await conn.fetch(UNREADABLE_CATALOGS_SQL, role, list(SCHEMA_CATALOGS))
    return catalog_privilege_findings(role, [r["t"] for r in rows])


_MISSING_SCHEMAS_SQL = (
    "select s from unnest($1::text[]) s where not exists (select 1 from pg_namespace where nspname = s)"
)


async def _schema_findings(conn: asyncpg.Connection, target: Target, served: Sequence[str] = ()) -> list[Finding]:
    rows = await conn.fetch(_MISSING_SCHEMAS_SQL, target.config.exposed_schemas)
    findings = missing_schema_findings([r["s"] for r in rows])
    if served:  # PostgREST's own db_schema (Supabase Management API) names schemas the config does not
        rows = await conn.fetch(_MISSING_SCHEMAS_SQL, list(served))
        findings += missing_schema_findings([r["s"] for r in rows], source="PostgREST's db_schema (Supabase API)")
    return findings


_LOCK_WAIT_SQL = f"""
select w.pid as waiter, b.pid as blocker, b.application_name, b.usename::text as usename, b.query,
       extract(epoch from now() - coalesce(b.xact_start, b.query_start)) as held_s,
       (select string_agg(distinct l.mode, ', ') from pg_locks l where l.pid = b.pid and l.granted
          and l.locktype = 'relation') as modes,
       (select string_agg(distinct l.relation::regclass::text, ', ') from pg_locks l
          where l.pid = b.pid and l.granted and l.locktype = 'relation'
            and l.mode in ('AccessExclusiveLock', 'ExclusiveLock', 'ShareRowExclusiveLock')) as relations
from pg_stat_activity w
cross join lateral unnest(pg_blocking_pids(w.pid)) as bp(pid)
join pg_stat_activity b on b.pid = bp.pid
where {postgrest_session("w", "$1")} and w.datname = current_database()
  and exists (select 1 from pg_locks l where l.pid = w.pid and not l.granted)
"""


_HELD_LOCK_SQL = f"""
select l.pid, a.application_name, a.usename::text as usename, a.query,
       extract(epoch from now() - coalesce(a.xact_start, a.query_start)) as held_s,
       string_agg(distinct n.nspname || '.' || c.relname, ', ') as relations
from pg_locks l
join pg_class c on c.oid = l.relation
join pg_namespace n on n.oid = c.relnamespace
left join pg_stat_activity a on a.pid = l.pid
where l.granted and l.locktype = 'relation' and l.mode = 'AccessExclusiveLock'
  and l.database = (select oid from pg_database where datname = current_database())
  and n.nspname = any($1::text[]) and l.pid <> pg_backend_pid()
  and not coalesce({postgrest_session("a", "$2")}, false)
group by 1, 2, 3, 4, 5
"""


async def _lock_findings(conn: asyncpg.Connection, target: Target) -> list[Finding]:
    role = target.config.authenticator_role
    rows = await conn.fetch(_LOCK_WAIT_SQL, role)
    if not rows:
        # Nothing waits yet, but a migration holding an exclusive lock in an exposed schema would make the
        # next reload wait (and requests with it): say so before sending one.
        return held_lock_findings(await conn.fetch(_HELD_LOCK_SQL, target.config.exposed_schemas, role))
    return lock_wait_findings(rows)


_CONNECTIONS_SQL = """
select (select rolconnlimit from pg_roles where rolname = $1) as role_limit,
       (select count(*) from pg_stat_activity where usename = $1) as role_used,
       current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int
         as server_limit,
       (select count(*) from pg_stat_activity where backend_type = 'client backend') as server_used
"""


async def _connection_findings(conn: asyncpg.Connection, target: Target, report: EnvReport) -> list[Finding]:
    role = target.config.authenticator_role
    row = await conn.fetchrow(_CONNECTIONS_SQL, role)
    assert row is not None
    use = ConnectionUse(row["role_limit"], int(row["role_used"]), int(row["server_limit"]), int(row["server_used"]))
    return connection_findings(use, report, role=role)


# -- entry points ---------------------------------------------------------------------------------
async def refine_with(conn: asyncpg.Connection, target: Target, report: EnvReport) -> tuple[EnvReport, list[Finding]]:
    """The report with every stale-looking check looked up in the catalog: one cheap lookup per check.

    The view every decision is taken on: a 42501 on a table another API role may read is auth-limited, a
    "not in the cache" is stale, missing or not granted. Healthy checks cost nothing.
    """
    findings: list[Finding] = []
    checks = list(report.checks)
    for i, check in enumerate(checks):
        stale = stale_target(check, target.config)
        if stale is not None:
            checks[i], finding = await _refine_check(conn, target, check, stale)
            add_finding(findings, finding)
    if not findings:
        return report, findings
    return refine_report(report, checks), findings


async def diagnose_with(
    conn: asyncpg.Connection,
    target: Target,
    report: EnvReport,
    *,
    measured_reload_ms: float | None = None,
    served_schemas: Sequence[str] = (),
) -> Diagnosis:
    """Everything the catalog can tell about an unhealthy (or about to be reloaded) environment.

    `measured_reload_ms` is the last NOTIFY-to-fresh time of this environment, when one was measured: the
    pre-flight never judges a pending statement_timeout against less.
    """
    refined, findings = await refine_with(conn, target, report)
    # Causes first: they explain the symptoms above.
    cache_down = refined.verdict is Verdict.SCHEMA_CACHE_UNAVAILABLE
    causes = await _role_setting_findings(conn, target, cache_down, refined, measured_reload_ms)
    causes += await _catalog_privilege_findings(conn, target)
    causes += await _lock_findings(conn, target)
    causes += await _schema_findings(conn, target, served_schemas)
    causes += await _connection_findings(conn, target, refined)
    config = target.config
    listener = await listener_status(conn, config.notify_channel, config.authenticator_role)
    causes += listener_findings(listener, refined, role=config.authenticator_role, channel=config.notify_channel)
    queue_usage = float(await conn.fetchval("select pg_notification_queue_usage()"))
    causes += queue_findings(queue_usage)
    ordered = order_findings(causes, findings, cache_down=cache_down)
    return Diagnosis(target.name, refined, ordered, listener, queue_usage)


async def diagnose(
    target: Target,
    report: EnvReport,
    *,
    connect_timeout: float,
    command_timeout: float,
    measured_reload_ms: float | None = None,
    served_schemas: Sequence[str] = (),
) -> Diagnosis:
    """Open a connection with timeouts and diagnose; never raises for database trouble.

    `served_schemas`: schemas PostgREST serves (per the Supabase Management API) beyond exposed_schemas."""
    dsn = target.secrets.database_dsn
    if dsn is None:
        return Diagnosis(target.name, report, error="no database DSN configured: cannot read the catalog")
    budget_s = connect_timeout + 3 * command_timeout  # a dozen quick queries; one slow catalog must not hang us
    try:
        async with asyncio.timeout(budget_s):
            async with connect(dsn, connect_timeout=connect_timeout, command_timeout=command_timeout) as conn:
                return await diagnose_with(
                    conn, target, report, measured_reload_ms=measured_reload_ms, served_schemas=served_schemas
                )
    except DatabaseError as err:
        return Diagnosis(target.name, report, error=str(err))
    except TimeoutError:
        return Diagnosis(target.name, report, error=f"the catalog did not answer within {budget_s:g} s")
