"""Realistic inputs for the /health, /status and /reload builders: what a real probe, diagnosis and reload produce.

Used by the builders' size tests (tests/bot/messages) and by the preview page (scripts/preview.py), like
scripts/message_samples.py for the alerts.

The texts are the ones bot/core writes (role-setting finding, PGRST002 details, step messages), so size limits
measured on them hold for real messages. Pure data: no network, no Discord.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.config import RecoveryConfig
from bot.core.classify import CheckKind
from bot.core.diagnosis import Diagnosis, Finding
from bot.core.incident import EnvState, OpenAlert, ReloadRecord
from bot.core.recovery import (
    Outcome,
    RecoveryResult,
    RecoveryStep,
    StepKind,
    build_result,
    done_message,
    no_reload_reason,
    preflight_refusal,
)
from bot.core.report import CheckResult, EnvReport, summarise
from bot.core.verdicts import Verdict
from scripts.message_samples import statement_timeout_finding

NOW = datetime(2026, 12, 2, 1, 50, tzinfo=UTC)
PGRST002 = "Could not query the database for the schema cache. Retrying."


def check(
    name: str,
    label: str,
    kind: CheckKind,
    *,
    status: int | None = 200,
    code: str | None = None,
    detail: str = "200",
    verdict: Verdict = Verdict.HEALTHY,
    latency_ms: float = 14.0,
    message: str | None = None,
) -> CheckResult:
    return CheckResult(
        name=name,
        label=label,
        kind=kind,
        method="GET",
        url=f"http://api.internal/{name}",
        status=status,
        code=code,
        message=message,
        detail=detail,
        retry_after=None,
        latency_ms=latency_ms,
        server="postgrest/12.0.2",
        verdict=verdict,
        auth_limited=False,
    )


def healthy_report(env: str, latency_ms: float = 14.0) -> EnvReport:
    """The five checks of an environment with an admin port and one probe table."""
    checks = [
        check("live", "Admin /live", CheckKind.LIVE, latency_ms=latency_ms / 3),
        check("ready", "Admin /ready", CheckKind.READY, latency_ms=latency_ms / 3),
        check("root", "Root (/)", CheckKind.ROOT, latency_ms=latency_ms),
        check("data:public.judgments", "Data (public.judgments)", CheckKind.DATA, latency_ms=latency_ms),
        check("cache:public.judgments", "Cache (public.judgments)", CheckKind.CACHE, latency_ms=latency_ms),
    ]
    return summarise(env, checks, NOW, latency_ms * 2.5)


def pgrst002_report(env: str = "prod") -> EnvReport:
    down = {
        "status": 503,
        "code": "PGRST002",
        "detail": f"503 PGRST002 {PGRST002}",
        "verdict": Verdict.SCHEMA_CACHE_UNAVAILABLE,
        "message": PGRST002,
    }
    checks = [
        check("live", "Admin /live", CheckKind.LIVE, latency_ms=3),
        check(
            "ready",
            "Admin /ready",
            CheckKind.READY,
            status=503,
            detail="503 not ready: schema cache or database connection still loading (or, before 12.2, failed)",
            verdict=Verdict.SCHEMA_CACHE_UNAVAILABLE,
            latency_ms=4,
        ),
        check("root", "Root (/)", CheckKind.ROOT, latency_ms=21, **down),  # type: ignore[arg-type]
        check("data:public.judgments", "Data (public.judgments)", CheckKind.DATA, latency_ms=19, **down),  # type: ignore[arg-type]
        check("cache:public.judgments", "Cache (public.judgments)", CheckKind.CACHE, latency_ms=18, **down),  # type: ignore[arg-type]
    ]
    return summarise(env, checks, NOW, 61.0)


def stale_report(env: str = "dev") -> EnvReport:
    checks = [
        check("root", "Root (/)", CheckKind.ROOT),
        check(
            "data:public.orders",
            "Data (public.orders)",
            CheckKind.DATA,
            status=404,
            code="PGRST205",
            detail="404 PGRST205 Could not find the table 'public.orders' in the schema cache",
            verdict=Verdict.STALE_SCHEMA_CACHE,
        ),
        check(
            "cache:public.orders",
            "Cache (public.orders)",
            CheckKind.CACHE,
            status=404,
            detail="404 table not in the schema cache",
            verdict=Verdict.STALE_SCHEMA_CACHE,
        ),
    ]
    return summarise(env, checks, NOW, 40.0)


# From the real rule (not a copy of its wording): the finding a 1 ms statement_timeout gives.
ROLE_SETTING = statement_timeout_finding(pgrst002_report(), estimate_ms=180.0)
LOCK_HELD = Finding(
    "lock_held",
    "a migration holds an exclusive lock",
    "PID 4242 (psql, user postgres) holds AccessExclusiveLock on public.recent for 3 min: BEGIN; LOCK TABLE "
    "public.recent IN ACCESS EXCLUSIVE MODE; a reload now would wait behind it",
    "let that transaction commit first (then reload), or cancel it: `SELECT pg_cancel_backend(4242);`",
    blocks_reload=True,
)
STALE_OBJECT = Finding(
    "stale_object",
    "schema cache is stale",
    "public.orders exists in the database and the API roles may use it, but PostgREST's cache does not have it "
    "(404 PGRST205)",
    "send a schema reload: `/reload dev` (`NOTIFY pgrst, 'reload schema'`)",
)


def pgrst002_diagnosis(env: str = "prod") -> Diagnosis:
    return Diagnosis(env, pgrst002_report(env), findings=(ROLE_SETTING, LOCK_HELD))


def stale_diagnosis(env: str = "dev") -> Diagnosis:
    return Diagnosis(env, stale_report(env), findings=(STALE_OBJECT,))


def step(kind: StepKind, message: str, ms: float, report: EnvReport | None = None) -> RecoveryStep:
    return RecoveryStep(kind, message, ms, report)


def recovery_config() -> RecoveryConfig:
    return RecoveryConfig()


def escalated_reload(env: str = "prod") -> RecoveryResult:
    """/reload on PGRST002: the operator's real steps and reason (no NOTIFY: a reload cannot help)."""
    diagnosis = pgrst002_diagnosis(env)
    report = diagnosis.report
    reason = no_reload_reason(report, diagnosis)
    assert reason is not None
    steps = [
        step(StepKind.PROBE, f"probe: {report.verdict}", 70, report),
        step(StepKind.DIAGNOSIS, f"diagnosis: {report.verdict}; {diagnosis.headline}", 95, report),
        step(StepKind.LISTENER, "PostgREST listens on 'pgrst' (1 session)", 96),
        step(StepKind.DECISION, f"no reload: {reason}", 96),
        step(StepKind.DONE, done_message(Outcome.ESCALATED, reason, None, 0), 97, report),
    ]
    return build_result(
        recovery_config(), Outcome.ESCALATED, env=env, before=report, after=report, started_at=NOW,
        finished_at=NOW + timedelta(milliseconds=97), actor="Alice (/reload)", steps=steps, diagnosis=diagnosis,
        reason=reason, listener="listening",
    )  # fmt: skip


def refused_reload(env: str = "dev") -> RecoveryResult:
    """/reload refused by the pre-flight: stale cache, but a 1 ms statement_timeout would break it."""
    stale = stale_diagnosis(env)
    diagnosis = Diagnosis(env, stale.report, findings=(STALE_OBJECT, ROLE_SETTING))
    report = diagnosis.report
    reason = preflight_refusal(diagnosis.blockers, force=False, env=env)
    assert reason is not None
    steps = [
        step(StepKind.PROBE, f"probe: {report.verdict}", 40, report),
        step(StepKind.DIAGNOSIS, f"diagnosis: {report.verdict}; {diagnosis.headline}", 66, report),
        step(StepKind.LISTENER, "PostgREST listens on 'pgrst' (1 session)", 67),
        step(StepKind.DECISION, reason, 67),
        step(StepKind.DONE, done_message(Outcome.ESCALATED, reason, None, 0), 68, report),
    ]
    return build_result(
        recovery_config(), Outcome.ESCALATED, env=env, before=report, after=report, started_at=NOW,
        finished_at=NOW + timedelta(milliseconds=68), actor="Alice (/reload)", steps=steps, diagnosis=diagnosis,
        reason=reason, listener="listening", refused=True,
    )  # fmt: skip


def recovered_reload(env: str = "dev") -> RecoveryResult:
    diagnosis = stale_diagnosis(env)
    before, after = diagnosis.report, healthy_report(env)
    steps = [
        step(StepKind.PROBE, f"probe: {before.verdict}", 40, before),
        step(StepKind.DIAGNOSIS, f"diagnosis: {before.verdict}; {diagnosis.headline}", 66, before),
        step(StepKind.LISTENER, "PostgREST listens on 'pgrst' (1 session)", 67),
        step(StepKind.NOTIFY, "NOTIFY pgrst 'reload schema' sent in 1.3 ms", 69),
        step(StepKind.RECHECK, f"re-check 1 (+101 ms): {before.verdict}", 170, before),
        step(StepKind.RECHECK, f"re-check 2 (+204 ms): {before.verdict}", 273, before),
        step(StepKind.RECHECK, "re-check 3 (+309 ms): healthy", 378, after),
        step(StepKind.DONE, done_message(Outcome.RECOVERED, None, 309, 3), 378, after),
    ]
    return build_result(
        recovery_config(), Outcome.RECOVERED, env=env, before=before, after=after, started_at=NOW,
        finished_at=NOW + timedelta(milliseconds=378), actor="Bob (/reload)", steps=steps, diagnosis=diagnosis,
        notify_ms=1.3, tth_ms=309, attempts=3, listener="listening",
    )  # fmt: skip


def unhealthy_state(env: str = "prod") -> EnvState:
    """What /status knows of an environment down with PGRST002 whose /reload escalated."""
    diagnosis = pgrst002_diagnosis(env)
    reload = escalated_reload(env)
    last = ReloadRecord(reload.actor, reload.outcome, reload.finished_at, None, reload.reason, reload.kpis)
    alert = OpenAlert(NOW - timedelta(minutes=4), Verdict.SCHEMA_CACHE_UNAVAILABLE, None, {})
    return EnvState(
        env,
        verdict=diagnosis.verdict,
        since=NOW - timedelta(minutes=5),
        unhealthy_since=NOW - timedelta(minutes=5),
        last_report=diagnosis.report,
        fail_streak=4,
        last_reload=last,
        alert=alert,
        diagnosis=diagnosis,
    )


def healthy_state(env: str, latency_ms: float = 14.0) -> EnvState:
    report = healthy_report(env, latency_ms)
    return EnvState(env, verdict=report.verdict, since=NOW - timedelta(hours=3), last_report=report, ok_streak=9)


ENV_NAMES = ("prod", "staging", "dev", "qa")
