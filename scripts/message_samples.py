"""Realistic inputs for every message kind, built with the real core functions (reports, causes, results).

The preview page (scripts/preview.py) renders the real builders on these, and the size tests of
tests/bot/messages hold the builders to their limits on them. The texts come from the real rules (the
verdict table, the cause finders), so a change of wording shows up here as it will in Discord.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bot.config import EnvironmentConfig
from bot.core.causes import RoleSetting, listener_findings, role_setting_findings
from bot.core.classify import CheckKind
from bot.core.diagnosis import Diagnosis, Finding
from bot.core.listener import ListenerState, ListenerStatus
from bot.core.recovery import Outcome, RecoveryResult, no_reload_reason, preflight_refusal
from bot.core.report import CheckResult, EnvReport, summarise
from bot.core.verdicts import Verdict

AT = datetime(2026, 12, 2, 3, 4, 2, tzinfo=UTC)
SERVER = "postgrest/12.0.2"
PGRST002 = "503 PGRST002 Could not query the database for the schema cache. Retrying."


def env_config(name: str = "prod", *, project_token: bool = False) -> EnvironmentConfig:
    """The environment; `project_token`: it names its Supabase project with a token (the restart is a button)."""
    supabase = {"supabase": {"project_ref": f"{name}refabcdefghijklmn"[:20]}} if project_token else {}
    return EnvironmentConfig.model_validate(
        {
            "rest_url": f"https://{name}ref.supabase.co/rest/v1",
            "dashboard_url": f"https://supabase.com/dashboard/project/{name}ref",
            "restart_url": f"https://supabase.com/dashboard/project/{name}ref/settings/general",
            "probe_tables": ["profiles", "orders"],
            **supabase,
        }
    )


def check(
    name: str,
    label: str,
    kind: CheckKind,
    verdict: Verdict,
    status: int | None,
    code: str | None = None,
    detail: str = "",
    latency_ms: float = 38.0,
) -> CheckResult:
    method = {CheckKind.CACHE: "OPTIONS", CheckKind.COLUMNS: "POST"}.get(kind, "GET")
    return CheckResult(
        name=name,
        label=label,
        kind=kind,
        method=method,
        url=f"https://prodref.supabase.co/rest/v1/{name.split(':')[-1]}",
        status=status,
        code=code,
        message=None,
        detail=detail or (f"{status} {code or 'OK'}" if status is not None else "no answer"),
        retry_after="0" if code == "PGRST002" else None,
        latency_ms=latency_ms,
        server=SERVER if status is not None else None,
        verdict=verdict,
        auth_limited=False,
    )


def healthy_checks() -> list[CheckResult]:
    ok = Verdict.HEALTHY
    return [
        check("root", "Root (/)", CheckKind.ROOT, ok, 200, latency_ms=41),
        check("data:profiles", "Data (profiles)", CheckKind.DATA, ok, 200, latency_ms=35),
        check("cache:profiles", "Cache (profiles)", CheckKind.CACHE, ok, 200, latency_ms=22),
        check("data:orders", "Data (orders)", CheckKind.DATA, ok, 200, latency_ms=33),
        check("cache:orders", "Cache (orders)", CheckKind.CACHE, ok, 200, latency_ms=21),
    ]


def report(env: str, checks: list[CheckResult], at: datetime = AT) -> EnvReport:
    return summarise(env, checks, at, 180.0)


def healthy(env: str) -> EnvReport:
    return report(env, healthy_checks())


def pgrst002(env: str = "prod") -> EnvReport:
    down = Verdict.SCHEMA_CACHE_UNAVAILABLE
    return report(
        env,
        [
            check("root", "Root (/)", CheckKind.ROOT, down, 503, "PGRST002", PGRST002),
            check("data:profiles", "Data (profiles)", CheckKind.DATA, down, 503, "PGRST002", PGRST002),
            check("cache:profiles", "Cache (profiles)", CheckKind.CACHE, down, 503, "PGRST002", PGRST002),
            check("data:orders", "Data (orders)", CheckKind.DATA, down, 503, "PGRST002", PGRST002),
            check("cache:orders", "Cache (orders)", CheckKind.CACHE, down, 503, "PGRST002", PGRST002),
            check("live", "Admin /live", CheckKind.LIVE, Verdict.HEALTHY, 200),
        ],
    )


def stale(env: str = "prod") -> EnvReport:
    checks = healthy_checks()
    checks[4] = check(
        "cache:orders", "Cache (orders)", CheckKind.CACHE, Verdict.STALE_SCHEMA_CACHE, 404, None, "404 {}"
    )
    return report(env, checks)


def down(env: str = "prod") -> EnvReport:
    dead = Verdict.POSTGREST_DOWN
    return report(
        env,
        [
            check("root", "Root (/)", CheckKind.ROOT, dead, None, None, "connection refused", 2),
            check("data:profiles", "Data (profiles)", CheckKind.DATA, dead, None, None, "connection refused", 1),
            check("live", "Admin /live", CheckKind.LIVE, dead, None, None, "connection refused", 1),
        ],
    )


def statement_timeout_finding(seen: EnvReport, estimate_ms: float = 140.0) -> Finding:
    """What the real rule says of a 1 ms statement_timeout set for the authenticator in this database."""
    settings = {"statement_timeout": RoleSetting("1ms", per_role=True, per_database=True)}
    (finding,) = role_setting_findings(
        settings,
        seen,
        role="authenticator",
        database="postgres",
        cache_down=True,
        estimate_ms=estimate_ms,
        measured_reload_ms=None,
    )
    return finding


def statement_timeout_diagnosis(env: str = "prod") -> Diagnosis:
    """PGRST002 because the authenticator's statement_timeout is 1 ms: the cause the runbook names first."""
    seen = pgrst002(env)
    return Diagnosis(env, seen, (statement_timeout_finding(seen),))


def no_listener_diagnosis(env: str = "prod") -> Diagnosis:
    """A stale cache, and PostgREST connected but not listening: a NOTIFY cannot help."""
    seen = stale(env)
    listener = ListenerStatus(ListenerState.ABSENT, 0, 3, "3 PostgREST sessions, none LISTENs on pgrst")
    findings = listener_findings(listener, seen, role="authenticator", channel="pgrst")
    return Diagnosis(env, seen, tuple(findings), listener=listener)


def escalated(before: EnvReport, diagnosis: Diagnosis | None, *, refused: bool = False) -> RecoveryResult:
    """What the operator returns when it gives up: refused by the pre-flight, a reload that cannot help, or
    a NOTIFY that did not fix it."""
    cannot_help = no_reload_reason(before, diagnosis)
    notified = not refused and cannot_help is None
    if refused and diagnosis is not None:
        reason = preflight_refusal(diagnosis.blockers, force=False, env=before.env)
    else:
        reason = cannot_help or f"still {before.verdict} after 3 re-checks within 5 s"
    return RecoveryResult(
        env=before.env,
        outcome=Outcome.ESCALATED,
        verdict_before=before.verdict,
        verdict_after=before.verdict,
        notify_sent=notified,
        notify_ms=4.0 if notified else None,
        time_to_healthy_ms=None,
        attempts=3 if notified else 0,
        reason=reason,
        listener="present",
        report_before=before,
        report_after=before,
        started_at=before.checked_at - timedelta(seconds=6),
        finished_at=before.checked_at,
        actor="auto",
        steps=(),
        diagnosis=diagnosis,
        refused_by_preflight=refused,
    )


def scenarios() -> dict[str, dict[str, Any]]:
    """The CRITICAL alerts an operator meets, by name: the builder's keyword arguments for each."""
    cause = statement_timeout_diagnosis()
    deaf = no_listener_diagnosis()
    return {
        "PGRST002, cause found": {"report": cause.report, "diagnosis": cause, "result": escalated(pgrst002(), cause)},
        "stale, nobody listens (reload refused)": {
            "report": deaf.report,
            "diagnosis": deaf,
            "result": escalated(stale(), deaf, refused=True),
        },
        "PostgREST down, no cause known": {"report": down(), "diagnosis": None, "result": None},
    }
