"""Stale, missing or not granted: what the catalog says about an object the API did not serve (pure rules).

Which configured object a failing check is about (and which column, from PGRST204/42703 messages), and,
from what the catalog showed of it (ObjectState, its columns), the refined verdict and the finding with
its fix. Imports only bot.core and bot.config; the lookups are in bot/postgres/diagnose.py.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from bot.config import EnvironmentConfig, ProbeFunction, ProbeTable
from bot.core.diagnosis import Finding
from bot.core.identifiers import display_part, qualified_sql, quote_ident
from bot.core.report import CheckResult, EnvReport, summarise
from bot.core.verdicts import Verdict

_PGRST204_PATTERNS = (
    re.compile(r"Column '([^']+)' of relation '([^']+)' does not exist"),  # 12.0.2
    re.compile(r"Could not find the '([^']+)' column of '([^']+)'"),  # 12.2+
)


_42703_PATTERN = re.compile(r'column (?:"?[\w$]+"?\.)?"?([\w$]+)"? does not exist')


@dataclass(frozen=True)
class ObjectState:
    exists: bool  # as an object PostgREST serves, in that schema
    usable: bool  # by one of the API roles (the rule of bot/postgres/privileges.py)
    where: str  # the qualified name, as the config writes it
    schema_usable: bool = True  # USAGE on the schema for one of the API roles
    whole: bool = True  # a table privilege, not only column grants
    partition_of: str | None = None  # exists, but as a partition PostgREST does not serve


def grant_fix(kind: str, schema: str, name: str, state: ObjectState, roles: list[str], env: str) -> str:
    """The GRANT to run, every identifier quoted as SQL needs."""
    who = ", ".join(quote_ident(r) for r in roles)
    usage = "" if state.schema_usable else f"GRANT USAGE ON SCHEMA {quote_ident(schema)} TO {who}; "
    if kind == "function":
        return f"`{usage}GRANT EXECUTE ON FUNCTION {qualified_sql(schema, name)} TO {who};` then `/reload {env}`"
    return (
        f"`{usage}GRANT SELECT ON {qualified_sql(schema, name)} TO {who};` (add INSERT/UPDATE/DELETE as the app "
        f"needs), then `/reload {env}`"
    )


def columns_named(check: CheckResult, configured: list[str]) -> list[str]:
    """The column the API's error names (PGRST204 of 12.0.2 or 12.2+, or 42703), else the configured ones."""
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
class StaleTarget:
    """The configured object behind a failing check, and what of it to look up."""

    kind: str  # table, column or function
    probe: ProbeTable | ProbeFunction


def stale_target(check: CheckResult, env: EnvironmentConfig) -> StaleTarget | None:
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
        return StaleTarget("function" if prefix == "rpc" else "table", probe)
    if check.verdict is Verdict.STALE_SCHEMA_CACHE or check.code in ("42703", "42P01"):
        if prefix in ("cache", "data"):
            return StaleTarget("column" if check.code == "42703" else "table", probe)
        if prefix == "columns":
            return StaleTarget("column", probe)
        if prefix == "rpc":
            return StaleTarget("function", probe)
    return None


def refine_report(report: EnvReport, checks: list[CheckResult]) -> EnvReport:
    """The report with re-classified checks; verdict and explanation recomputed the usual way."""
    refined = summarise(report.env, checks, report.checked_at, report.duration_ms)
    return dataclasses.replace(refined, server_version=report.server_version or refined.server_version)


def object_where(kind: str, schema: str, name: str) -> str:
    """The qualified name as the config writes it; a function with its ()."""
    return f"{display_part(schema)}.{display_part(name)}" + ("()" if kind == "function" else "")


def add_finding(findings: list[Finding], finding: Finding) -> None:
    """The data and the cache check of one table: one finding; each GRANT to run is listed."""
    if all((f.cause, f.title, f.fix) != (finding.cause, finding.title, finding.fix) for f in findings):
        findings.append(finding)


def judge_object(
    check: CheckResult,
    stale: StaleTarget,
    state: ObjectState,
    columns: dict[str, bool] | None,
    *,
    schema: str,
    roles: list[str],
    env: str,
    channel: str,
) -> tuple[CheckResult, Finding]:
    """The check re-classified by what the catalog showed, and the finding saying which it is.

    `columns` (name -> usable by an API role) is read only for a column check on an existing table.
    """
    kind, name = stale.kind, stale.probe.name
    missing, ungranted, present = _lacking(check, stale, state, columns)
    answered = f"{check.status} {check.code or '{}'}"
    who = ", ".join(roles)

    if state.partition_of is not None:
        finding = Finding(
            "partition_not_served",
            "a partition is not an API relation",
            f"{state.where} is a partition of {display_part(schema)}.{display_part(state.partition_of)}; PostgREST "
            f"caches only the partitioned table, so it answers {answered} for the partition even with a fresh cache",
            f"probe (and query) {display_part(state.partition_of)} instead; a reload cannot help",
        )
        verdict, detail = Verdict.MISSING_IN_DATABASE, f"{state.where} is a partition, which PostgREST does not serve"
    elif missing:
        what = ", ".join(missing)
        finding = Finding(
            "missing_in_database",
            f"{kind} missing in the database",
            f"{what} does not exist in schema {display_part(schema)}; the API answered {answered}",
            "apply the migration that creates it, or fix the name in the app / probe config; a reload cannot help",
        )
        verdict, detail = Verdict.MISSING_IN_DATABASE, f"{what} does not exist in the database"
    elif ungranted:
        what = ", ".join(ungranted)
        lacking = "USAGE on its schema" if not state.schema_usable else "a grant on it"
        finding = Finding(
            "not_granted",
            f"{kind} exists but the API roles may not use it",
            f"{what} exists, but none of {who} has {lacking} (Supabase no longer auto-grants new tables)",
            grant_fix("function" if kind == "function" else "table", schema, name, state, roles, env),
        )
        verdict, detail = Verdict.NOT_GRANTED, f"{what} exists but is not granted to {who}"
    elif check.code == "42501":
        return _auth_limited(check, state, present, who)
    else:
        finding = Finding(
            "stale_object",
            "schema cache is stale",
            f"{present} exists in the database and the API roles may use it, but PostgREST's cache does not "
            f"have it ({answered})",
            f"send a schema reload: `/reload {env}` (`NOTIFY {channel}, 'reload schema'`)",
        )
        verdict, detail = Verdict.STALE_SCHEMA_CACHE, f"{check.detail}; {present} exists in the database (stale)"
    return dataclasses.replace(check, verdict=verdict, detail=detail), finding


def _lacking(
    check: CheckResult, stale: StaleTarget, state: ObjectState, columns: dict[str, bool] | None
) -> tuple[list[str], list[str], str]:
    """What of the object is missing, what no API role may use, and how to name what is there."""
    probe = stale.probe
    if not state.exists:
        return [state.where], [], state.where
    if columns is not None and isinstance(probe, ProbeTable):
        wanted = columns_named(check, probe.columns) or probe.columns
        missing = [f"{state.where}.{display_part(c)}" for c in wanted if c not in columns]
        ungranted = [f"{state.where}.{display_part(c)}" for c in wanted if c in columns and not columns[c]]
        return missing, ungranted, ", ".join(f"{state.where}.{display_part(c)}" for c in wanted) or state.where
    return [], ([] if state.usable else [state.where]), state.where


def _auth_limited(check: CheckResult, state: ObjectState, present: str, who: str) -> tuple[CheckResult, Finding]:
    """A 42501 on an object some API role may use: limited by the grants on purpose, nothing to reload."""
    if not state.whole:
        # Granted column by column: PostgREST serves the granted columns; the probe asked for others.
        finding = Finding(
            "restricted_by_design",
            "only some columns are granted (restricted by design)",
            f"{present} is granted to {who} column by column; the probe's select names a column they may not read",
            "nothing to fix if that is intended; otherwise set the probe's select to granted columns",
        )
        detail = f"permission denied for a column; {present} is granted by column (auth-limited)"
    else:
        # Some API role may use it, just not the probe key's: nothing is wrong with the cache or the grants.
        finding = Finding(
            "key_role_not_granted",
            "the probe key's role may not read it",
            f"{present} is granted to one of {who}, but not to the role of the configured API key",
            "nothing to fix if that is intended; otherwise probe with a key whose role has the grant",
        )
        detail = f"permission denied for the key's role; {present} is granted to another API role (auth-limited)"
    return dataclasses.replace(check, verdict=Verdict.HEALTHY, detail=detail, auth_limited=True), finding
