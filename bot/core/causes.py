"""Causes from the catalog: what the rows diagnose.py read mean (pure rules, no I/O).

Why the schema cache cannot load (role settings, catalog privileges, a dropped schema), what a reload
would run into (locks, connection limits, a full notification queue, nobody listening), and the order
the findings are told in. Each rule takes plain values or rows (mappings) and returns Findings with their
evidence and fix. Imports only bot.core; the SQL that reads the rows is in bot/postgres/diagnose.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.core.classify import ADMIN_KINDS
from bot.core.diagnosis import Finding
from bot.core.identifiers import quote_ident
from bot.core.listener import ListenerState, ListenerStatus
from bot.core.report import EnvReport

Row = Mapping[str, Any]

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
TIMEOUT_SETTINGS = ("statement_timeout", "lock_timeout")


# -- why PGRST002? --------------------------------------------------------------------------------
def timeout_ms(value: str) -> float | None:
    """A PostgreSQL duration setting in ms (no unit: ms), or None when it does not read as one."""
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


def first_words(query: str | None, words: int = 3) -> str:
    """The start of a statement for a message, without literals (they may hold secrets)."""
    if not query or query.startswith("<insufficient"):
        return "(query hidden: grant the monitoring role pg_read_all_stats)"
    text = re.sub(r"--[^\n]*|/\*.*?\*/", " ", query, flags=re.S)
    text = re.sub(r"'(?:[^']|'')*'|\$(\w*)\$.*?\$\1\$", "'…'", text, flags=re.S)  # literals may hold secrets
    tokens = [t for t in text.split() if not any(q in t for q in "'\"$")]
    return " ".join(tokens[:words]) + " …"


@dataclass(frozen=True)
class RoleSetting:
    """One setting of pg_db_role_setting as it applies to the authenticator: value and how specific it is."""

    value: str
    per_role: bool
    per_database: bool

    @property
    def rank(self) -> int:
        # Most specific wins: role+database, then role, then database.
        return 2 * self.per_role + self.per_database


def effective_settings(rows: Iterable[Row]) -> dict[str, RoleSetting]:
    """The settings a new authenticator session gets, from rows of (setting 'name=value', per_role, per_database)."""
    settings: dict[str, RoleSetting] = {}
    for row in rows:
        name, _, value = str(row["setting"]).partition("=")
        setting = RoleSetting(value, bool(row["per_role"]), bool(row["per_database"]))
        if name not in settings or setting.rank > settings[name].rank:
            settings[name] = setting
    return settings


def _limit_ms(settings: Mapping[str, RoleSetting], name: str) -> float | None:
    """The timeout in ms when it is set to a limit (not unset, not 0, not unreadable)."""
    limit = timeout_ms(settings[name].value) if name in settings else None
    return limit or None


def needs_schema_load_estimate(settings: Mapping[str, RoleSetting]) -> bool:
    """Only a statement_timeout is judged against the schema-load time (which costs a query to estimate)."""
    return _limit_ms(settings, "statement_timeout") is not None


def role_setting_findings(
    settings: Mapping[str, RoleSetting],
    report: EnvReport,
    *,
    role: str,
    database: str,
    cache_down: bool,
    estimate_ms: float | None,
    measured_reload_ms: float | None,
) -> list[Finding]:
    """Timeouts set for the authenticator that break (or would break, at the next reload) the schema load."""
    findings: list[Finding] = []
    for name in TIMEOUT_SETTINGS:
        limit = _limit_ms(settings, name)
        if limit is None:
            continue
        if name == "statement_timeout" and (estimate_ms is None or not statement_timeout_too_low(limit, estimate_ms)):
            continue
        if name == "lock_timeout" and (limit >= 1000 or not cache_down):
            continue  # a short lock_timeout only matters while a lock is in the way (then the cache is down)
        findings.append(
            _role_setting_finding(
                name, settings[name], report, role, database, cache_down, estimate_ms, measured_reload_ms
            )
        )
    return findings


def _role_setting_finding(
    name: str,
    setting: RoleSetting,
    report: EnvReport,
    role: str,
    database: str,
    cache_down: bool,
    estimate: float | None,
    measured_reload_ms: float | None,
) -> Finding:
    rank, value = setting.rank, setting.value
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
    basis = "the last measured reload here" if measured_reload_ms and estimate == measured_reload_ms else "estimated"
    what = (
        f"within {STATEMENT_TIMEOUT_MARGIN:g}× of the ~{estimate:.0f} ms a schema reload takes here ({basis})"
        if estimate is not None and name == "statement_timeout"
        else "so short that any lock makes the schema query fail"
    )
    return Finding(
        "role_setting",
        f"{name} too low for {role}",
        f"pg_db_role_setting sets {name}={value} {scope_text}, {what} ({when})",
        fix + " PostgREST then recovers by itself within a second",
        blocks_reload=name == "statement_timeout",
    )


def role_missing_finding(role: str) -> Finding:
    return Finding(
        "role_missing",
        f"role {role} does not exist",
        f"pg_roles has no {role}; configure authenticator_role to the role PostgREST logs in as",
        "set authenticator_role in the config (or create the role)",
    )


def catalog_privilege_findings(role: str, revoked: Sequence[str]) -> list[Finding]:
    """Catalogs of PostgREST's schema query the authenticator may not read: every reload fails on them."""
    if not revoked:
        return []
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


def missing_schema_findings(gone: Sequence[str], *, source: str = "db-schemas") -> list[Finding]:
    """Exposed schemas that no longer exist in the database; `source` names the list that holds them."""
    if not gone:
        return []
    return [
        Finding(
            "missing_schema",
            "exposed schema does not exist",
            f"{source} lists {', '.join(gone)}, which no longer exist(s) in the database "
            "(dropped or renamed by a migration)",
            f"recreate the schema ({'; '.join(f'CREATE SCHEMA {quote_ident(s)}' for s in gone)}) or remove it from PostgREST's "
            "db-schemas and restart PostgREST; then update exposed_schemas in the pgrst-ops config",
        )
    ]


# -- what would a reload run into? ----------------------------------------------------------------
MAX_LOCK_FINDINGS = 3


def _held_for(held_s: float | None) -> str:
    return f"for {held_s:.0f} s" if held_s is not None else "(duration hidden without pg_read_all_stats)"


def lock_wait_findings(rows: Sequence[Row]) -> list[Finding]:
    """PostgREST backends waiting on a lock (rows: waiter, blocker, application_name, usename, query, ...)."""
    findings = []
    for row in rows[:MAX_LOCK_FINDINGS]:
        app = row["application_name"] or "no application_name"
        on = f" on {row['relations']}" if row["relations"] else ""
        findings.append(
            Finding(
                "lock_wait",
                "schema reload blocked by a lock",
                f"PostgREST backend {row['waiter']} waits for a lock held by PID {row['blocker']} "
                f"({app}, user {row['usename'] or '?'}){on} {_held_for(row['held_s'])}: {first_words(row['query'])}",
                f"let that transaction finish, or cancel it: `SELECT pg_cancel_backend({row['blocker']});` "
                f"(`pg_terminate_backend({row['blocker']})` if it is idle in transaction); the reload then completes",
                blocks_reload=True,
            )
        )
    return findings


def held_lock_findings(rows: Sequence[Row]) -> list[Finding]:
    """Exclusive locks held in an exposed schema while nothing waits yet: the next reload would wait behind them."""
    return [_held_lock_finding(row) for row in rows[:MAX_LOCK_FINDINGS]]


def _held_lock_finding(row: Row) -> Finding:
    app = row["application_name"] or "no application_name"
    return Finding(
        "lock_held",
        "a migration holds an exclusive lock",
        f"PID {row['pid']} ({app}, user {row['usename'] or '?'}) holds AccessExclusiveLock on {row['relations']} "
        f"{_held_for(row['held_s'])}: {first_words(row['query'])}; a reload now would wait behind it",
        f"let that transaction commit first (then reload), or cancel it: `SELECT pg_cancel_backend({row['pid']});`",
        blocks_reload=True,
    )


@dataclass(frozen=True)
class ConnectionUse:
    """Connections in use against the limits: the authenticator's rolconnlimit (-1/None: none) and the server's."""

    role_limit: int | None
    role_used: int
    server_limit: int
    server_used: int


def connection_findings(use: ConnectionUse, report: EnvReport, *, role: str) -> list[Finding]:
    """The authenticator or the server near its connection limit: a reload may not get its pool back."""
    # PostgREST's own error names the limit it hit; our sample of pg_stat_activity may fall between retries.
    messages = " ".join((c.message or "").lower() for c in report.checks)
    api_role_limit = "too many connections for role" in messages
    api_server_limit = "too many clients" in messages or "remaining connection slots" in messages
    findings = []
    role_limit, role_used = use.role_limit, use.role_used
    if role_limit is not None and role_limit >= 0:
        role_full = role_used >= role_limit * CONNECTIONS_WARN_RATIO
        if role_full or api_role_limit:
            seen = "; PostgREST reports 'too many connections for role'" if api_role_limit else ""
            findings.append(
                Finding(
                    "connection_limit",
                    f"{role} is at its connection limit",
                    f"{role_used} of {role_limit} connections allowed for {role} are in use (rolconnlimit){seen}; "
                    "a reload reconnects PostgREST's pool and may not get a connection back",
                    f"`ALTER ROLE {quote_ident(role)} CONNECTION LIMIT {max(role_limit * 2, role_limit + 10)};` or "
                    "lower PostgREST's db-pool / close idle sessions",
                    blocks_reload=api_role_limit or role_used >= role_limit,
                )
            )
    if use.server_used >= use.server_limit * CONNECTIONS_WARN_RATIO or api_server_limit:
        findings.append(
            Finding(
                "connection_limit",
                "server is at max_connections",
                f"{use.server_used} of {use.server_limit} non-reserved connections are in use",
                "close idle sessions (pg_terminate_backend on idle ones), use a session pooler, or raise "
                "max_connections (restart needed)",
                blocks_reload=api_server_limit or use.server_used >= use.server_limit,
            )
        )
    return findings


# -- will a NOTIFY be heard? ----------------------------------------------------------------------
def listener_findings(listener: ListenerStatus, report: EnvReport, *, role: str, channel: str) -> list[Finding]:
    """Why a NOTIFY would not be heard, when no PostgREST session listens: told apart by who is connected."""
    if listener.state is not ListenerState.ABSENT:
        return []
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
            f"set db-channel-enabled=true and db-channel={channel} (or fix notify_channel in "
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


def queue_findings(usage: float) -> list[Finding]:
    """pg_notification_queue_usage() high enough that a NOTIFY may fail or never arrive."""
    if usage < QUEUE_USAGE_WARN:
        return []
    return [
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


# -- the order they are told in -------------------------------------------------------------------
def order_findings(causes: Sequence[Finding], objects: Sequence[Finding], *, cache_down: bool) -> tuple[Finding, ...]:
    """The headline is what matters most: the cause of a PGRST002, else what stops a reload, else the objects."""
    if cache_down:
        return (*causes, *objects)
    blocking = [f for f in causes if f.blocks_reload]
    return (*blocking, *objects, *(f for f in causes if not f.blocks_reload))
