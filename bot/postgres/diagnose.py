"""Diagnosis: why an environment broke, and whether a reload can help, read from the database catalog.

The probe sees the API; this module sees PostgreSQL through the environment's DSN and answers what the
API cannot tell: is a "not in the schema cache" object really in the database (stale) or genuinely
missing; why the schema cache cannot load (PGRST002); will a NOTIFY be heard; and would a reload now make
things worse (pre-flight). Every finding carries the evidence and the fix to run.

Without pg_read_all_stats the monitoring role cannot see other sessions' queries or wait events; the
checks that need them report "unknown" rather than guess.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from dataclasses import dataclass

import asyncpg

from bot.config import EnvironmentConfig, ProbeFunction, ProbeTable, Target
from bot.core.classify import ADMIN_KINDS
from bot.core.diagnosis import Diagnosis, Finding
from bot.core.identifiers import display_part, qualified_sql, quote_ident
from bot.core.listener import ListenerState, ListenerStatus
from bot.core.report import CheckResult, EnvReport, summarise
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
# Schema-load time (NOTIFY to a fresh cache) when this environment has no measured reload yet: a fixed part
# (notification, pool reconnect, the queries' own overhead) plus a multiple of our proxy query over the same
# catalog. Fitted so it is not below what real PostgREST 12 took: 157-168 ms at ~20 tables (proxy 0.6 ms),
# 280-295 ms at 1,000 tables (proxy 4 ms). 10x the proxy alone (6 ms at ~20 tables) was far below both.
SCHEMA_LOAD_BASE_MS = 150.0
SCHEMA_LOAD_FACTOR = 35.0
# A pending statement_timeout within this factor of the schema-load time is refused: at ~20 tables 20 ms
# already breaks the load and 30 ms passes only on an idle machine; a reload that hits it is an outage.
STATEMENT_TIMEOUT_MARGIN = 3.0
QUEUE_USAGE_WARN = 0.5
CONNECTIONS_WARN_RATIO = 0.9

_PGRST204_PATTERNS = (
    re.compile(r"Column '([^']+)' of relation '([^']+)' does not exist"),  # 12.0.2
    re.compile(r"Could not find the '([^']+)' column of '([^']+)'"),  # 12.2+
)
_42703_PATTERN = re.compile(r'column (?:"?[\w$]+"?\.)?"?([\w$]+)"? does not exist')


# -- catalog lookups ------------------------------------------------------------------------------
# One schema, one name, the API roles as parameters; usability by the one rule (bot/privileges.py).
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


@dataclass(frozen=True)
class ObjectState:
    exists: bool  # as an object PostgREST serves, in that schema
    usable: bool  # by one of the API roles (the rule of bot/privileges.py)
    where: str  # the qualified name, as the config writes it
    schema_usable: bool = True  # USAGE on the schema for one of the API roles
    whole: bool = True  # a table privilege, not only column grants
    partition_of: str | None = None  # exists, but as a partition PostgREST does not serve


def _grant_fix(kind: str, schema: str, name: str, state: ObjectState, roles: list[str], env: str) -> str:
    """The GRANT to run, every identifier quoted as SQL needs."""
    who = ", ".join(quote_ident(r) for r in roles)
    usage = "" if state.schema_usable else f"GRANT USAGE ON SCHEMA {quote_ident(schema)} TO {who}; "
    if kind == "function":
        return f"`{usage}GRANT EXECUTE ON FUNCTION {qualified_sql(schema, name)} TO {who};` then `/reload {env}`"
    return (
        f"`{usage}GRANT SELECT ON {qualified_sql(schema, name)} TO {who};` (add INSERT/UPDATE/DELETE as the app "
        f"needs), then `/reload {env}`"
    )


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


def _columns_named(check: CheckResult, configured: list[str]) -> list[str]:
    for pattern in _PGRST204_PATTERNS:
        match = pattern.search(check.message or "")
        if match:
            return [match.group(1)]
    if check.code == "42703":
        match = _42703_PATTERN.search(check.message or "")
        if match:
            return [match.group(1)]
    return configured


@dataclass(frozen=True)
class _StaleTarget:
    kind: str  # table, column or function
    probe: ProbeTable | ProbeFunction


def _stale_target(check: CheckResult, env: EnvironmentConfig) -> _StaleTarget | None:
    """The configured object a stale-looking (or permission-denied) check is about, and what of it to look up."""
    prefix, _, shown = check.name.partition(":")
    probe: ProbeTable | ProbeFunction | None
    if prefix == "rpc":
        probe = next((f for f in env.probe_functions if f.display(env) == shown), None)
    else:
        probe = next((t for t in env.probe_tables if t.display(env) == shown), None)
    if probe is None:
        return None
    if check.code == "42501" and prefix in ("data", "cache", "columns", "rpc"):
        return _StaleTarget("function" if prefix == "rpc" else "table", probe)
    if check.verdict is Verdict.STALE_SCHEMA_CACHE or check.code in ("42703", "42P01"):
        if prefix in ("cache", "data"):
            return _StaleTarget("column" if check.code == "42703" else "table", probe)
        if prefix == "columns":
            return _StaleTarget("column", probe)
        if prefix == "rpc":
            return _StaleTarget("function", probe)
    return None


async def _refine_check(
    conn: asyncpg.Connection, target: Target, check: CheckResult, stale: _StaleTarget
) -> tuple[CheckResult, Finding]:
    """Look the object behind a stale-looking check up in the catalog, in its own schema, and say which it is."""
    env = target.config
    if check.code == "PGRST200" and isinstance(stale.probe, ProbeTable):
        # An embed in the probe's select: the foreign keys decide (bot/relationships.py).
        embed = await refine_embed(conn, target, check, stale.probe)
        if embed is not None:
            finding = Finding(embed.cause, embed.title, embed.evidence, embed.fix)
            return dataclasses.replace(check, verdict=embed.verdict, detail=embed.detail), finding
    roles = env.api_roles
    kind, probe = stale.kind, stale.probe
    schema, name = probe.schema_in(env), probe.name
    where = f"{display_part(schema)}.{display_part(name)}" + ("()" if kind == "function" else "")
    state = await _object_state(conn, "function" if kind == "function" else "table", schema, name, roles, where)
    missing, ungranted, present = [], [], state.where
    if not state.exists:
        missing = [state.where]
    elif kind == "column" and isinstance(probe, ProbeTable):
        wanted = _columns_named(check, probe.columns) or probe.columns
        rows = {r["name"]: bool(r["usable"]) for r in await conn.fetch(_COLUMN_SQL, name, schema, roles)}
        missing = [f"{state.where}.{display_part(c)}" for c in wanted if c not in rows]
        ungranted = [f"{state.where}.{display_part(c)}" for c in wanted if c in rows and not rows[c]]
        present = ", ".join(f"{state.where}.{display_part(c)}" for c in wanted) or state.where
    elif not state.usable:
        ungranted = [state.where]

    if state.partition_of is not None:
        finding = Finding(
            "partition_not_served",
            "a partition is not an API relation",
            f"{state.where} is a partition of {display_part(schema)}.{display_part(state.partition_of)}; PostgREST "
            f"caches only the partitioned table, so it answers {check.status} {check.code or '{}'} for the "
            "partition even with a fresh cache",
            f"probe (and query) {display_part(state.partition_of)} instead; a reload cannot help",
        )
        verdict, detail = Verdict.MISSING_IN_DATABASE, f"{state.where} is a partition, which PostgREST does not serve"
    elif missing:
        what = ", ".join(missing)
        finding = Finding(
            "missing_in_database",
            f"{kind} missing in the database",
            f"{what} does not exist in schema {display_part(schema)}; the API answered "
            f"{check.status} {check.code or '{}'}",
            "apply the migration that creates it, or fix the name in the app / probe config; a reload cannot help",
        )
        verdict, detail = Verdict.MISSING_IN_DATABASE, f"{what} does not exist in the database"
    elif ungranted:
        what = ", ".join(ungranted)
        lacking = "USAGE on its schema" if not state.schema_usable else "a grant on it"
        finding = Finding(
            "not_granted",
            f"{kind} exists but the API roles may not use it",
            f"{what} exists, but none of {', '.join(roles)} has {lacking} (Supabase no longer auto-grants new tables)",
            _grant_fix("function" if kind == "function" else "table", schema, name, state, roles, target.name),
        )
        verdict, detail = Verdict.NOT_GRANTED, f"{what} exists but is not granted to {', '.join(roles)}"
    elif check.code == "42501" and not state.whole:
        # Granted column by column: PostgREST serves the granted columns; the probe asked for others.
        finding = Finding(
            "restricted_by_design",
            "only some columns are granted (restricted by design)",
            f"{present} is granted to {', '.join(roles)} column by column; the probe's select names a column "
            "they may not read",
            "nothing to fix if that is intended; otherwise set the probe's select to granted columns",
        )
        detail = f"permission denied for a column; {present} is granted by column (auth-limited)"
        return dataclasses.replace(check, verdict=Verdict.HEALTHY, detail=detail, auth_limited=True), finding
    elif check.code == "42501":
        # Some API role may use it, just not the probe key's: nothing is wrong with the cache or the grants.
        finding = Finding(
            "key_role_not_granted",
            "the probe key's role may not read it",
            f"{present} is granted to one of {', '.join(roles)}, but not to the role of the configured API key",
            "nothing to fix if that is intended; otherwise probe with a key whose role has the grant",
        )
        detail = f"permission denied for the key's role; {present} is granted to another API role (auth-limited)"
        return dataclasses.replace(check, verdict=Verdict.HEALTHY, detail=detail, auth_limited=True), finding
    else:
        finding = Finding(
            "stale_object",
            "schema cache is stale",
            f"{present} exists in the database and the API roles may use it, but PostgREST's cache does not "
            f"have it ({check.status} {check.code or '{}'})",
            f"send a schema reload: `/reload {target.name}` (`NOTIFY {env.notify_channel}, 'reload schema'`)",
        )
        verdict, detail = Verdict.STALE_SCHEMA_CACHE, f"{check.detail}; {present} exists in the database (stale)"
    return dataclasses.replace(check, verdict=verdict, detail=detail), finding


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


def _timeout_ms(value: str) -> float | None:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?\s*", value)
    if not match:
        return None
    number = float(match.group(1))
    scale = {"us": 0.001, "ms": 1, None: 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
    return number * scale[match.group(2)]


def schema_load_estimate_ms(proxy_ms: float, measured_reload_ms: float | None) -> float:
    """What a schema reload takes here: never below the last measured reload of this environment."""
    return max(SCHEMA_LOAD_BASE_MS + SCHEMA_LOAD_FACTOR * proxy_ms, measured_reload_ms or 0.0)


def statement_timeout_too_low(limit_ms: float, estimate_ms: float) -> bool:
    """Would this statement_timeout (0 = none) risk breaking the schema load estimated at `estimate_ms`?"""
    return 0 < limit_ms < STATEMENT_TIMEOUT_MARGIN * estimate_ms


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
    rows = await conn.fetch(_ROLE_SETTINGS_SQL, role)
    # Most specific wins: role+database, then role, then database.
    settings: dict[str, tuple[int, str]] = {}
    for row in rows:
        name, _, value = str(row["setting"]).partition("=")
        rank = 2 * bool(row["per_role"]) + bool(row["per_database"])
        if name not in settings or rank > settings[name][0]:
            settings[name] = (rank, value)
    findings: list[Finding] = []
    estimate: float | None = None
    for name in ("statement_timeout", "lock_timeout"):
        if name not in settings:
            continue
        rank, value = settings[name]
        limit = _timeout_ms(value)
        if limit is None or limit == 0:
            continue
        if name == "statement_timeout":
            estimate = await _estimate_schema_load_ms(conn, target.config.exposed_schemas, measured_reload_ms)
            if not statement_timeout_too_low(limit, estimate):
                continue
        if name == "lock_timeout" and (limit >= 1000 or not cache_down):
            continue  # a short lock_timeout only matters while a lock is in the way (then the cache is down)
        database = await conn.fetchval("select current_database()")
        scope = f" IN DATABASE {quote_ident(database)}" if rank % 2 else ""
        if rank < 2:
            scope_text = "for every role in this database (ALTER DATABASE)"
            fix = f"`ALTER DATABASE {quote_ident(database)} RESET {name};`"
        else:
            scope_text = f"for role {role}"
            fix = f"`ALTER ROLE {quote_ident(role)}{scope} RESET {name};`" + (
                " (or SET it to at least 8s, Supabase's default);" if name == "statement_timeout" else ";"
            )
        if cache_down:
            when = "applied: it is why the schema cache cannot load"
        elif any(c.code == "57014" for c in report.checks):
            when = "already cancelling requests on new connections (57014); the next reload applies it to all"
        else:
            when = "pending: the next reload reconnects PostgREST's pool and applies it"
        basis = (
            "the last measured reload here" if measured_reload_ms and estimate == measured_reload_ms else "estimated"
        )
        what = (
            f"within {STATEMENT_TIMEOUT_MARGIN:g}× of the ~{estimate:.0f} ms a schema reload takes here ({basis})"
            if estimate is not None and name == "statement_timeout"
            else "so short that any lock makes the schema query fail"
        )
        findings.append(
            Finding(
                "role_setting",
                f"{name} too low for {role}",
                f"pg_db_role_setting sets {name}={value} {scope_text}, {what} ({when})",
                fix + " PostgREST then recovers by itself within a second",
                blocks_reload=name == "statement_timeout",
            )
        )
    return findings


async def _catalog_privilege_findings(conn: asyncpg.Connection, target: Target) -> list[Finding]:
    role = target.config.authenticator_role
    if not await conn.fetchval("select exists (select 1 from pg_roles where rolname = $1)", role):
        return [
            Finding(
                "role_missing",
                f"role {role} does not exist",
                f"pg_roles has no {role}; configure authenticator_role to the role PostgREST logs in as",
                "set authenticator_role in the config (or create the role)",
            )
        ]
    rows = await conn.fetch(UNREADABLE_CATALOGS_SQL, role, list(SCHEMA_CATALOGS))
    if not rows:
        return []
    revoked = [r["t"] for r in rows]
    grants = "`" + " ".join(f"GRANT SELECT ON pg_catalog.{t} TO PUBLIC;" for t in revoked) + "`"
    return [
        Finding(
            "catalog_privilege",
            "catalog privilege revoked",
            f"{role} may not read pg_catalog.{', pg_catalog.'.join(revoked)}, so PostgREST's schema query fails",
            f"{grants} PostgREST then recovers by itself within a second",
            blocks_reload=True,
        )
    ]


async def _schema_findings(conn: asyncpg.Connection, target: Target) -> list[Finding]:
    schemas = target.config.exposed_schemas
    rows = await conn.fetch(
        "select s from unnest($1::text[]) s where not exists (select 1 from pg_namespace where nspname = s)",
        schemas,
    )
    if not rows:
        return []
    gone = [r["s"] for r in rows]
    return [
        Finding(
            "missing_schema",
            "exposed schema does not exist",
            f"db-schemas lists {', '.join(gone)}, which no longer exist(s) in the database "
            "(dropped or renamed by a migration)",
            f"recreate the schema ({'; '.join(f'CREATE SCHEMA {quote_ident(s)}' for s in gone)}) or remove it from PostgREST's "
            "db-schemas and restart PostgREST; then update exposed_schemas in the pgrst-ops config",
        )
    ]


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


def first_words(query: str | None, words: int = 3) -> str:
    """The start of a statement for a message, without literals (they may hold secrets)."""
    if not query or query.startswith("<insufficient"):
        return "(query hidden: grant the monitoring role pg_read_all_stats)"
    text = re.sub(r"--[^\n]*|/\*.*?\*/", " ", query, flags=re.S)
    text = re.sub(r"'(?:[^']|'')*'|\$(\w*)\$.*?\$\1\$", "'…'", text, flags=re.S)  # literals may hold secrets
    tokens = [t for t in text.split() if not any(q in t for q in "'\"$")]
    return " ".join(tokens[:words]) + " …"


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
        held = await conn.fetch(_HELD_LOCK_SQL, target.config.exposed_schemas, role)
        return [_held_lock_finding(row) for row in held[:3]]
    findings = []
    for row in rows[:3]:
        held = row["held_s"]
        held_text = f"for {held:.0f} s" if held is not None else "(duration hidden without pg_read_all_stats)"
        app = row["application_name"] or "no application_name"
        on = f" on {row['relations']}" if row["relations"] else ""
        findings.append(
            Finding(
                "lock_wait",
                "schema reload blocked by a lock",
                f"PostgREST backend {row['waiter']} waits for a lock held by PID {row['blocker']} "
                f"({app}, user {row['usename'] or '?'}){on} {held_text}: {first_words(row['query'])}",
                f"let that transaction finish, or cancel it: `SELECT pg_cancel_backend({row['blocker']});` "
                f"(`pg_terminate_backend({row['blocker']})` if it is idle in transaction); the reload then completes",
                blocks_reload=True,
            )
        )
    return findings


def _held_lock_finding(row: asyncpg.Record) -> Finding:
    held = row["held_s"]
    held_text = f"for {held:.0f} s" if held is not None else "(duration hidden without pg_read_all_stats)"
    app = row["application_name"] or "no application_name"
    return Finding(
        "lock_held",
        "a migration holds an exclusive lock",
        f"PID {row['pid']} ({app}, user {row['usename'] or '?'}) holds AccessExclusiveLock on {row['relations']} "
        f"{held_text}: {first_words(row['query'])}; a reload now would wait behind it",
        f"let that transaction commit first (then reload), or cancel it: `SELECT pg_cancel_backend({row['pid']});`",
        blocks_reload=True,
    )


async def _connection_findings(conn: asyncpg.Connection, target: Target, report: EnvReport) -> list[Finding]:
    role = target.config.authenticator_role
    # PostgREST's own error names the limit it hit; our sample of pg_stat_activity may fall between retries.
    messages = " ".join((c.message or "").lower() for c in report.checks)
    api_role_limit = "too many connections for role" in messages
    api_server_limit = "too many clients" in messages or "remaining connection slots" in messages
    row = await conn.fetchrow(
        """
        select (select rolconnlimit from pg_roles where rolname = $1) as role_limit,
               (select count(*) from pg_stat_activity where usename = $1) as role_used,
               current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int
                 as server_limit,
               (select count(*) from pg_stat_activity where backend_type = 'client backend') as server_used
        """,
        role,
    )
    assert row is not None
    findings = []
    role_limit, role_used = row["role_limit"], int(row["role_used"])
    limited = role_limit is not None and role_limit >= 0
    role_full = limited and role_used >= role_limit * CONNECTIONS_WARN_RATIO
    if role_full or (api_role_limit and limited):
        seen = "; PostgREST reports 'too many connections for role'" if api_role_limit else ""
        findings.append(
            Finding(
                "connection_limit",
                f"{role} is at its connection limit",
                f"{role_used} of {role_limit} connections allowed for {role} are in use (rolconnlimit){seen}; a "
                "reload reconnects PostgREST's pool and may not get a connection back",
                f"`ALTER ROLE {quote_ident(role)} CONNECTION LIMIT {max(role_limit * 2, role_limit + 10)};` or lower PostgREST's "
                "db-pool / close idle sessions",
                blocks_reload=api_role_limit or role_used >= role_limit,
            )
        )
    server_limit, server_used = int(row["server_limit"]), int(row["server_used"])
    if server_used >= server_limit * CONNECTIONS_WARN_RATIO or api_server_limit:
        findings.append(
            Finding(
                "connection_limit",
                "server is at max_connections",
                f"{server_used} of {server_limit} non-reserved connections are in use",
                "close idle sessions (pg_terminate_backend on idle ones), use a session pooler, or raise "
                "max_connections (restart needed)",
                blocks_reload=api_server_limit or server_used >= server_limit,
            )
        )
    return findings


# -- will a NOTIFY be heard? ----------------------------------------------------------------------
async def _listener_findings(target: Target, listener: ListenerStatus, report: EnvReport) -> list[Finding]:
    if listener.state is not ListenerState.ABSENT:
        return []
    role = target.config.authenticator_role
    api_answers = any(c.status is not None for c in report.checks if c.kind not in ADMIN_KINDS)
    if listener.pooled_backends:
        why, fix = (
            f"{listener.pooled_backends} session(s) of {role} come through a pooler (by their application_name), "
            "and none LISTENs: a transaction pooler (PgBouncer transaction mode, Supavisor :6543) drops LISTEN",
            "point PostgREST's db-uri at a direct or session-mode connection (port 5432), then restart it",
        )
    elif listener.postgrest_backends:
        others = "; ".join(s.describe() for s in listener.sessions[:3])
        others = f"; the channel's listener(s): {others}" if others else ""
        why, fix = (
            f"PostgREST is connected ({listener.postgrest_backends} session(s) of {role}) but none of its sessions "
            "LISTENs: the channel is disabled (db-channel-enabled=false) or PostgREST listens on another channel"
            + others,
            f"set db-channel-enabled=true and db-channel={target.config.notify_channel} (or fix notify_channel in "
            "the config), then restart PostgREST",
        )
    elif api_answers:
        why, fix = (
            f"the API answers but no session of {role} is connected to this database: the DSN points at another "
            "database, PostgREST logs in as another role (authenticator_role), or a pooler hides it",
            "check that database_dsn names the database PostgREST serves (same host, port and db name) and that "
            "authenticator_role is the role of PostgREST's db-uri",
        )
    else:
        why, fix = (
            "PostgREST has no connection to the database: it is down or reconnecting",
            "wait a few seconds and re-check; restart PostgREST / the project if it stays down",
        )
    return [Finding("no_listener", "a NOTIFY would not be heard", why, fix, blocks_reload=True)]


async def _queue_findings(conn: asyncpg.Connection) -> tuple[float | None, list[Finding]]:
    usage = float(await conn.fetchval("select pg_notification_queue_usage()"))
    if usage < QUEUE_USAGE_WARN:
        return usage, []
    return usage, [
        Finding(
            "notify_queue",
            "notification queue nearly full",
            f"pg_notification_queue_usage() = {usage:.0%}: a listening session stuck in a long transaction keeps "
            "old notifications from being freed, so new ones may fail or never arrive",
            "find the oldest listening session 'idle in transaction' in pg_stat_activity and end it "
            "(pg_terminate_backend); then reload",
            blocks_reload=usage >= 0.99,
        )
    ]


# -- entry points ---------------------------------------------------------------------------------
def refine_report(report: EnvReport, checks: list[CheckResult]) -> EnvReport:
    """The report with re-classified checks; verdict and explanation recomputed the usual way."""
    refined = summarise(report.env, checks, report.checked_at, report.duration_ms)
    return dataclasses.replace(refined, server_version=report.server_version or refined.server_version)


async def refine_with(conn: asyncpg.Connection, target: Target, report: EnvReport) -> tuple[EnvReport, list[Finding]]:
    """The report with every stale-looking check looked up in the catalog: one cheap lookup per check.

    The view every decision is taken on: a 42501 on a table another API role may read is auth-limited, a
    "not in the cache" is stale, missing or not granted. Healthy checks cost nothing.
    """
    findings: list[Finding] = []
    checks = list(report.checks)
    for i, check in enumerate(checks):
        stale = _stale_target(check, target.config)
        if stale is not None:
            checks[i], finding = await _refine_check(conn, target, check, stale)
            # The data and the cache check of one table: one finding; each GRANT to run is listed.
            if all((f.cause, f.title, f.fix) != (finding.cause, finding.title, finding.fix) for f in findings):
                findings.append(finding)
    if not findings:
        return report, findings
    return refine_report(report, checks), findings


async def diagnose_with(
    conn: asyncpg.Connection, target: Target, report: EnvReport, *, measured_reload_ms: float | None = None
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
    causes += await _schema_findings(conn, target)
    causes += await _connection_findings(conn, target, refined)
    listener = await listener_status(conn, target.config.notify_channel, target.config.authenticator_role)
    causes += await _listener_findings(target, listener, refined)
    queue_usage, queue = await _queue_findings(conn)
    causes += queue
    # The headline is what matters most: the cause of a PGRST002, else what stops a reload, else the objects.
    if cache_down:
        ordered = causes + findings
    else:
        ordered = [f for f in causes if f.blocks_reload] + findings + [f for f in causes if not f.blocks_reload]
    return Diagnosis(target.name, refined, tuple(ordered), listener, queue_usage)


async def diagnose(
    target: Target,
    report: EnvReport,
    *,
    connect_timeout: float,
    command_timeout: float,
    measured_reload_ms: float | None = None,
) -> Diagnosis:
    """Open a connection with timeouts and diagnose; never raises for database trouble."""
    dsn = target.secrets.database_dsn
    if dsn is None:
        return Diagnosis(target.name, report, error="no database DSN configured: cannot read the catalog")
    budget_s = connect_timeout + 3 * command_timeout  # a dozen quick queries; one slow catalog must not hang us
    try:
        async with asyncio.timeout(budget_s):
            async with connect(dsn, connect_timeout=connect_timeout, command_timeout=command_timeout) as conn:
                return await diagnose_with(conn, target, report, measured_reload_ms=measured_reload_ms)
    except DatabaseError as err:
        return Diagnosis(target.name, report, error=str(err))
    except TimeoutError:
        return Diagnosis(target.name, report, error=f"the catalog did not answer within {budget_s:g} s")
