"""A recovery's rules and result: what the operator (bot/ops/recovery.py) decides, as pure functions.

Whether a reload can help, the pre-flight's refusal, the reload cap, which checks to re-check and when, the deadline,
and the one function that builds a RecoveryResult. Time comes in as arguments (the operator's clocks);
nothing here sleeps, connects or reads a clock. Imports only bot.core and bot.config.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from bot.config import RecoveryConfig
from bot.core.classify import ADMIN_KINDS, CheckKind
from bot.core.diagnosis import Diagnosis, Finding
from bot.core.kpi import KpiSample, api_latency_ms, reload_kpis
from bot.core.report import EnvReport
from bot.core.verdicts import Verdict, info


class Outcome(StrEnum):
    ALREADY_HEALTHY = "already_healthy"
    RECOVERED = "recovered"
    ESCALATED = "escalated"


class StepKind(StrEnum):
    PROBE = "probe"
    DIAGNOSIS = "diagnosis"
    DECISION = "decision"
    LISTENER = "listener"
    NOTIFY = "notify"
    RECHECK = "recheck"
    DONE = "done"


@dataclass(frozen=True)
class RecoveryStep:
    kind: StepKind
    message: str
    elapsed_ms: float
    report: EnvReport | None = None


StepListener = Callable[[RecoveryStep], None]


@dataclass(frozen=True)
class RecoveryResult:
    env: str
    outcome: Outcome
    verdict_before: Verdict
    verdict_after: Verdict
    notify_sent: bool
    notify_ms: float | None
    time_to_healthy_ms: float | None
    attempts: int
    reason: str | None
    listener: str | None
    report_before: EnvReport
    report_after: EnvReport
    started_at: datetime
    finished_at: datetime
    actor: str
    steps: tuple[RecoveryStep, ...]
    diagnosis: Diagnosis | None = None
    refused_by_preflight: bool = False  # a NOTIFY would have made things worse; `force` overrides
    forced: bool = False
    kpis: tuple[KpiSample, ...] = ()

    @property
    def ok(self) -> bool:
        return self.outcome is not Outcome.ESCALATED

    def to_json(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "outcome": str(self.outcome),
            "verdict_before": str(self.verdict_before),
            "verdict_after": str(self.verdict_after),
            "notify_sent": self.notify_sent,
            "notify_ms": None if self.notify_ms is None else round(self.notify_ms, 2),
            "time_to_healthy_ms": None if self.time_to_healthy_ms is None else round(self.time_to_healthy_ms, 1),
            "attempts": self.attempts,
            "reason": self.reason,
            "listener": self.listener,
            # The version the environment reports (Server header), from the last probe that saw one.
            "server_version": self.report_after.server_version or self.report_before.server_version,
            "actor": self.actor,
            "started_at": self.started_at.isoformat(timespec="milliseconds"),
            "finished_at": self.finished_at.isoformat(timespec="milliseconds"),
            "explanation": self.report_after.explanation,
            "next_step": self.report_after.next_step,
            "checks_after": [c.to_json() for c in self.report_after.checks],
            "diagnosis": None if self.diagnosis is None else self.diagnosis.to_json(),
            "refused_by_preflight": self.refused_by_preflight,
            "forced": self.forced,
            "kpis": [k.to_json() for k in self.kpis],
        }


# A reason names its cause by appending ". Cause: <headline>"; messages that show the cause on its own cut it off.
CAUSE_IN_REASON = ". Cause: "


def reason_without_cause(reason: str, findings: Sequence[Finding] = ()) -> str:
    """A reason without the diagnosis appended to it, and the findings it quotes named by their title only."""
    reason = reason.split(CAUSE_IN_REASON, 1)[0]
    for finding in findings:
        reason = reason.replace(finding.line(), finding.title)
    return reason


# -- whether to reload ----------------------------------------------------------------------------
def no_reload_reason(report: EnvReport, diagnosis: Diagnosis | None = None) -> str | None:
    """Why a reload cannot help this (refined) report, or None when it can; the cause found, if any."""
    meta = info(report.verdict)
    if meta.reload_helps:
        return None
    reason = f"{report.verdict}: a reload cannot help ({meta.why_no_reload})"
    if diagnosis is not None and diagnosis.findings:
        reason += f"{CAUSE_IN_REASON}{diagnosis.headline}"
    return reason


def no_dsn_reason(report: EnvReport, env: str) -> str:
    """Without a DSN nothing is sent; say so, unless the verdict alone shows a reload would not help anyway."""
    return no_reload_reason(report) or f"no database DSN configured for {env}: cannot send the reload NOTIFY"


def preflight_refusal(blockers: Sequence[Finding], *, force: bool, env: str) -> str | None:
    """The pre-flight's refusal of the NOTIFY (None: send it): blockers refuse it unless the reload is forced."""
    if not blockers or force:
        return None
    return (
        "pre-flight refused the NOTIFY: "
        + "; ".join(b.line() for b in blockers)
        + f". Fix that first, or force the reload: /reload {env} force:true "
        f"(CLI: pgrst-ops fix --env {env} --force)"
    )


def forced_note(blockers: Sequence[Finding], actor: str) -> str | None:
    """The step that records a forced reload over the pre-flight's blockers (None when nothing was overridden)."""
    if not blockers:
        return None
    return f"forced by {actor} despite: " + "; ".join(b.title for b in blockers)


# -- the reload cap -------------------------------------------------------------------------------
class ReloadWindow:
    """The reloads of one environment in the last `window_s` seconds, on the caller's monotonic clock."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()

    def count(self, now: float) -> int:
        horizon = now - self.window_s
        while self._times and self._times[0] < horizon:
            self._times.popleft()
        return len(self._times)

    def record(self, now: float) -> None:
        self._times.append(now)


def cap_reason(reloads: int, config: RecoveryConfig, env: str) -> str | None:
    """Why the cap refuses another reload (None: below it): something keeps breaking the cache."""
    if reloads < config.max_reloads:
        return None
    return (
        f"reload limit reached: {reloads} reloads in the last {config.reload_window_s / 60:g} min for "
        f"{env}; something keeps breaking the cache (repeated migrations, an event "
        "trigger?). Investigate before reloading again"
    )


@dataclass(frozen=True)
class ReloadDecision:
    """What to do with a diagnosed, unhealthy environment: reload, or finish with `outcome` and `reason`."""

    reload: bool
    outcome: Outcome | None = None  # when not reloading
    reason: str | None = None
    step: str | None = None  # a DECISION step to show first
    refused: bool = False  # the pre-flight refused the NOTIFY


def decide_reload(
    report: EnvReport, diagnosis: Diagnosis, *, reloads: int, config: RecoveryConfig, force: bool, actor: str
) -> ReloadDecision:
    """The decision on the refined view: healthy after all, a fault no reload fixes, the cap, the pre-flight."""
    if report.healthy:
        # e.g. a 42501 on a table another API role may read: auth-limited, nothing to reload.
        return ReloadDecision(False, Outcome.ALREADY_HEALTHY)
    reason = no_reload_reason(report, diagnosis)
    if reason is not None:
        return ReloadDecision(False, Outcome.ESCALATED, reason, step=f"no reload: {reason}")
    reason = cap_reason(reloads, config, diagnosis.env)
    if reason is not None:
        return ReloadDecision(False, Outcome.ESCALATED, reason)
    reason = preflight_refusal(diagnosis.blockers, force=force, env=diagnosis.env)
    if reason is not None:
        return ReloadDecision(False, Outcome.ESCALATED, reason, step=reason, refused=True)
    return ReloadDecision(True, step=forced_note(diagnosis.blockers, actor))


def drift_refusal(*, has_dsn: bool, running: bool, reloads: int, config: RecoveryConfig) -> str | None:
    """Why a drift reload is not sent before the catalog is read (None: read it and run the pre-flight)."""
    if not has_dsn:
        return "no database DSN: cannot send the reload"
    if running:
        return "a recovery of this environment is already running"
    if reloads >= config.max_reloads:
        return f"reload limit reached ({reloads} in the window)"
    return None


def drift_preflight_refusal(blockers: Sequence[Finding]) -> str | None:
    """A drift reload is never forced: any blocker refuses it."""
    if not blockers:
        return None
    return "pre-flight refused the NOTIFY: " + "; ".join(b.line() for b in blockers)


def connection_failed_reason(err: Exception, *, notified: bool) -> str:
    if notified:
        return f"the database connection failed after the NOTIFY: {err}"
    return f"cannot send the reload: {err}"


# -- the re-checks after the NOTIFY ---------------------------------------------------------------
# PostgREST reloads a 20-table schema in ~70 ms and 5,000 tables in ~0.7-0.9 s (bench/floor_bench.py). Poll
# densely while the smallest schemas land, then pause a fixed share of the time elapsed, so the reload is seen
# at most ~RELATIVE_PACE late at any schema size (~25 ms at 5,000 tables on a busy machine), with at most a few
# hundred cheap requests.
DENSE_POLL_S = 0.005
DENSE_WINDOW_S = 0.2
RELATIVE_PACE = 0.02
MAX_RECHECKS = 300

# Checks PostgREST answers from its schema cache without running SQL (a lookup, then a refusal or the headers).
CACHE_LOOKUP_KINDS = (CheckKind.CACHE, CheckKind.RPC, CheckKind.COLUMNS)
# The cheapest check first: what stands in when nothing specific was stale. The root is OPTIONS / (no document).
CHEAPEST_FIRST = (*CACHE_LOOKUP_KINDS, CheckKind.READY, CheckKind.LIVE, CheckKind.ROOT, CheckKind.DATA)


def recheck_plan(report: EnvReport) -> frozenset[str]:
    """The checks to re-run after the NOTIFY, from the refined report the reload was decided on.

    The checks that saw a stale object, since those are what the reload is for; when nothing specific was stale
    (everything failing, timeouts), the single cheapest check. Empty only for a report without checks (then the
    whole probe). Once these are healthy, the operator confirms with one whole probe, which is cheap: its root
    check is OPTIONS /, not the OpenAPI document.
    """
    stale = [c.name for c in report.checks if c.verdict is Verdict.STALE_SCHEMA_CACHE and c.kind not in ADMIN_KINDS]
    if stale:
        return frozenset(stale)
    ranked = [c for c in report.checks if c.kind in CHEAPEST_FIRST]
    # Prefer a failing one: it is what has to come back.
    ranked.sort(key=lambda c: (c.ok, CHEAPEST_FIRST.index(c.kind)))
    return frozenset(c.name for c in ranked[:1])


def recheck_deadline_s(config: RecoveryConfig, retries: int | None = None, delay_s: float | None = None) -> float:
    """The runbook's re-check budget, retries x delay; an unset (or zero) override takes the config's."""
    return (retries or config.retries) * (delay_s or config.delay_s)


@dataclass(frozen=True)
class PollSchedule:
    """When to re-check after the NOTIFY: every dense_s at first, then a `pace` share of the time elapsed.

    Bounded three ways: the deadline, max_s between re-checks, and max_rechecks in all.
    """

    deadline_s: float
    max_s: float = 1.0
    dense_s: float = DENSE_POLL_S
    dense_window_s: float = DENSE_WINDOW_S
    pace: float = RELATIVE_PACE
    max_rechecks: int = MAX_RECHECKS

    @classmethod
    def of(cls, config: RecoveryConfig, deadline_s: float) -> PollSchedule:
        return cls(deadline_s, max_s=config.max_backoff_ms / 1000)

    def pause_s(self, elapsed_s: float) -> float:
        """The pause before the next re-check, `elapsed_s` after the NOTIFY."""
        if elapsed_s < self.dense_window_s:
            return self.dense_s
        return min(self.max_s, max(self.dense_s, elapsed_s * self.pace))

    def wait_s(self, elapsed_s: float, rechecks: int) -> float | None:
        """How long to wait before the next re-check, or None: stop (the deadline came after at least one
        re-check, or max_rechecks were made)."""
        if rechecks >= self.max_rechecks:
            return None
        pause = self.pause_s(elapsed_s)
        if rechecks and elapsed_s + pause > self.deadline_s:
            return None
        return max(0.0, min(pause, self.deadline_s - elapsed_s))


# Re-checks in a row, and for how long, with a fault a reload cannot fix: the reload did not help, or caused it.
# The span keeps dense polling from escalating on two answers a few milliseconds apart.
UNFIXABLE_STREAK_LIMIT = 2
UNFIXABLE_FOR_S = 0.1


def unfixable_streak(streak: int, verdict: Verdict) -> int:
    """The run of re-checks in a row whose fault a reload cannot fix, after one more re-check."""
    return 0 if info(verdict).reload_helps else streak + 1


def turned_unfixable(streak: int, unfixable_for_s: float) -> bool:
    """Give up: `streak` re-checks in a row, over `unfixable_for_s` seconds, saw a fault no reload fixes."""
    return streak >= UNFIXABLE_STREAK_LIMIT and unfixable_for_s >= UNFIXABLE_FOR_S


def turned_unfixable_reason(verdict: Verdict) -> str:
    reason = f"after the NOTIFY the environment turned {verdict}: {info(verdict).summary}"
    if verdict is Verdict.SCHEMA_CACHE_UNAVAILABLE:
        # A pending authenticator setting applies at reload.
        reason += " The reload itself may have applied a bad role setting"
    return reason


def timed_out_reason(verdict: Verdict, deadline_s: float, attempts: int) -> str:
    return f"still {verdict} {deadline_s:g} s after the NOTIFY ({attempts} re-checks): the reload did not take effect"


# -- after an escalation --------------------------------------------------------------------------
def not_applied_finding(channel: str, diagnosis: Diagnosis) -> Finding:
    state = diagnosis.listener.state if diagnosis.listener else "unknown"
    return Finding(
        "reload_not_applied",
        "the reload was not applied",
        f"the objects exist and the NOTIFY was sent, but PostgREST still serves the old cache (listener: {state})",
        f"check that PostgREST listens on '{channel}' (db-channel-enabled, db-channel, no "
        "transaction pooler in its db-uri; grant the monitoring role pg_read_all_stats to see it), then restart "
        "PostgREST / the project",
    )


def explain_escalation(result: RecoveryResult, after: Diagnosis, channel: str) -> RecoveryResult:
    """The escalated result with what the reload ran into (a setting it applied, a lock it waits on)."""
    if after.error is not None:
        return result
    if after.report.verdict is Verdict.STALE_SCHEMA_CACHE:
        # Still stale although the NOTIFY went out: the reload never reached PostgREST.
        after = dataclasses.replace(after, findings=(not_applied_finding(channel, after), *after.findings))
    reason = result.reason or ""
    if after.findings:
        reason += f"{CAUSE_IN_REASON}{after.headline}"
    return dataclasses.replace(result, diagnosis=after, reason=reason, report_after=after.report)


# -- the result -----------------------------------------------------------------------------------
def done_message(outcome: Outcome, reason: str | None, tth_ms: float | None, attempts: int) -> str:
    """The last step of a recovery, as the progress display shows it."""
    if outcome is Outcome.ESCALATED:
        return f"escalated: {reason}"
    if outcome is Outcome.RECOVERED:
        return f"healthy {tth_ms:.0f} ms after the NOTIFY ({attempts} re-checks)"
    return "already healthy: nothing to do"


def build_result(
    config: RecoveryConfig,
    outcome: Outcome,
    *,
    env: str,
    before: EnvReport,
    after: EnvReport,
    started_at: datetime,
    finished_at: datetime,
    actor: str,
    steps: Sequence[RecoveryStep] = (),
    diagnosis: Diagnosis | None = None,
    reason: str | None = None,
    notify_ms: float | None = None,
    tth_ms: float | None = None,
    attempts: int = 0,
    listener: str | None = None,
    refused: bool = False,
    force: bool = False,
) -> RecoveryResult:
    """The one way a RecoveryResult is made: its KPIs, `forced` and `notify_sent` follow from what happened."""
    # The API's latency counts only once a re-check saw it healthy after the NOTIFY.
    confirmed = outcome is Outcome.RECOVERED and tth_ms is not None
    api_ms = api_latency_ms(after) if confirmed else None
    return RecoveryResult(
        env=env,
        outcome=outcome,
        verdict_before=before.verdict,
        verdict_after=after.verdict,
        notify_sent=notify_ms is not None,
        notify_ms=notify_ms,
        time_to_healthy_ms=tth_ms,
        attempts=attempts,
        reason=reason,
        listener=listener,
        report_before=before,
        report_after=after,
        started_at=started_at,
        finished_at=finished_at,
        actor=actor,
        steps=tuple(steps),
        diagnosis=diagnosis,
        refused_by_preflight=refused,
        forced=force and notify_ms is not None,
        kpis=reload_kpis(config.kpi, notify_ms=notify_ms, reload_ms=tth_ms, api_after_ms=api_ms),
    )
