"""The fixed vocabulary of verdicts, with what each means for an operator and what to do next."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    HEALTHY = "healthy"
    STALE_SCHEMA_CACHE = "stale_schema_cache"
    MISSING_IN_DATABASE = "missing_in_database"
    NOT_GRANTED = "not_granted"
    SCHEMA_CACHE_UNAVAILABLE = "schema_cache_unavailable"
    DATABASE_UNREACHABLE = "database_unreachable"
    POSTGREST_DOWN = "postgrest_down"
    TIMEOUT = "timeout"
    AUTH_REJECTED = "auth_rejected"
    UNEXPECTED = "unexpected"
    PROJECT_PAUSED = "project_paused"


@dataclass(frozen=True)
class VerdictInfo:
    emoji: str  # a status mark only: ✅ healthy, ⚠️ a reload fixes it, ❌ anything else
    colour: int  # Discord embed colour
    severity: int  # the worst check decides the environment's verdict
    summary: str
    next_step: str
    reload_helps: bool
    why_no_reload: str = ""
    words: str = ""  # what is wrong, in a few words (alert titles, one line per environment)


VERDICT_INFO: dict[Verdict, VerdictInfo] = {
    Verdict.HEALTHY: VerdictInfo(
        "✅",
        0x2ECC71,
        0,
        "PostgREST answers and its schema cache serves the probed objects.",
        "Nothing to do.",
        reload_helps=False,
        words="healthy",
    ),
    Verdict.STALE_SCHEMA_CACHE: VerdictInfo(
        "⚠️",
        0xF1C40F,
        1,
        "PostgREST's schema cache is older than the database (objects created or changed since the last reload).",
        "Send a schema reload: `/reload` or `pgrst-ops fix --env <env>` (NOTIFY fixes this).",
        reload_helps=True,
        words="stale schema cache",
    ),
    Verdict.MISSING_IN_DATABASE: VerdictInfo(
        "❌",
        0xE67E22,
        2,
        "Missing in the database: the object the API was asked for does not exist (migration not applied or "
        "wrong name).",
        "Apply the migration that creates it (or fix the name in the app / probe config); a reload cannot help.",
        reload_helps=False,
        why_no_reload="the object does not exist in the database, so a fresh cache would not have it either",
        words="missing in the database",
    ),
    Verdict.NOT_GRANTED: VerdictInfo(
        "❌",
        0xE67E22,
        2,
        "The object exists but the API roles have no grant on it (Supabase no longer auto-grants new tables): "
        "a permission problem, not a stale cache.",
        "GRANT the needed privileges to the API roles (anon, authenticated), then reload.",
        reload_helps=False,
        why_no_reload="the API roles may not use the object; a reload alone does not grant it",
        words="not granted to the API roles",
    ),
    Verdict.UNEXPECTED: VerdictInfo(
        "❌",
        0xE67E22,
        3,
        "The API answered in a way PostgREST does not (gateway error page, non-JSON, unknown error or huge body).",
        "Open the URL yourself and read the gateway and PostgREST logs; check rest_url in the config.",
        reload_helps=False,
        why_no_reload="the answer does not come from a stale schema cache",
        words="unexpected answer",
    ),
    Verdict.AUTH_REJECTED: VerdictInfo(
        "❌",
        0xE67E22,
        4,
        "The API key we sent was rejected, so the checks could not see the data.",
        "Fix the API key secret the config names (rotated or expired key); this is not a schema cache problem.",
        reload_helps=False,
        why_no_reload="the API key is rejected; the schema cache is not the problem",
        words="API key rejected",
    ),
    Verdict.SCHEMA_CACHE_UNAVAILABLE: VerdictInfo(
        "❌",
        0xE74C3C,
        5,
        "PostgREST cannot load its schema cache (PGRST002): its schema query fails on every attempt.",
        "Find the cause in the database: authenticator role settings (pg_db_role_setting, e.g. a tiny "
        "statement_timeout), a migration holding a lock, a revoked catalog privilege or a dropped exposed "
        "schema. PostgREST recovers by itself within a second once the cause is gone; restart the project "
        "if it does not.",
        reload_helps=False,
        why_no_reload="NOTIFY cannot fix PGRST002: PostgREST already retries the schema load in a loop",
        words="schema cache cannot load (PGRST002)",
    ),
    Verdict.DATABASE_UNREACHABLE: VerdictInfo(
        "❌",
        0xE74C3C,
        6,
        "PostgREST is up but cannot reach PostgreSQL (down, restarting, paused or out of connections).",
        "Check the database: is it up, paused, or at its connection limit? Restart the project if it stays down.",
        reload_helps=False,
        why_no_reload="PostgREST's listener is down with its database connection, so a NOTIFY is not heard",
        words="database unreachable",
    ),
    Verdict.TIMEOUT: VerdictInfo(
        "❌",
        0xE74C3C,
        7,
        "No answer within the timeout: the project may be paused, overloaded, or the network path broken.",
        "Check the dashboard (is the project paused?) and the network path; restart the project if it stays "
        "unreachable.",
        reload_helps=False,
        why_no_reload="the API does not answer at all; a reload cannot make it answer",
        words="no answer (timeout)",
    ),
    Verdict.POSTGREST_DOWN: VerdictInfo(
        "❌",
        0x992D22,
        8,
        "Connection refused: the PostgREST process is not running.",
        "Restart PostgREST (self-hosted) or the project from the dashboard.",
        reload_helps=False,
        why_no_reload="PostgREST is not running, so nothing listens for the NOTIFY",
        words="PostgREST down",
    ),
    Verdict.PROJECT_PAUSED: VerdictInfo(
        "❌",
        0x992D22,
        9,
        "The Supabase project is paused: nothing answers until it is restored.",
        "Restore the project: Restore project in the dashboard, or `POST /v1/projects/<ref>/restore` with a "
        "token that has projects:write; it takes a few minutes.",
        reload_helps=False,
        why_no_reload="the project is paused: PostgREST and its database are not running",
        words="project paused",
    ),
}


def info(verdict: Verdict) -> VerdictInfo:
    return VERDICT_INFO[verdict]


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    return max(verdicts, key=lambda v: VERDICT_INFO[v].severity, default=Verdict.HEALTHY)
