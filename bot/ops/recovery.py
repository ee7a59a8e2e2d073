"""The recovery operator: probe, decide whether a reload can help, NOTIFY, re-check fast, or escalate.

The runbook's flow with what a real PostgREST needs: no NOTIFY for faults it cannot fix, a listener check
first, one recovery per environment at a time, and a cap on reloads so the tool never becomes a storm.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bot.config import RecoveryConfig, Target
from bot.core.diagnosis import Diagnosis, Finding
from bot.core.kpi import api_latency_ms, reload_kpis
from bot.core.recovery import Outcome, RecoveryResult, RecoveryStep, StepKind, StepListener
from bot.core.report import EnvReport
from bot.core.verdicts import Verdict, info
from bot.postgres.connect import DatabaseError, connect, send_reload
from bot.postgres.diagnose import diagnose, diagnose_with, refine_with
from bot.postgrest.probe import Prober

log = logging.getLogger(__name__)

# Poll at this pace while a reload usually lands (0.1-1 s), then back off towards max_backoff_ms.
FAST_POLL_WINDOW_S = 2.0


@dataclass
class _Flight:
    """One running recovery and everyone waiting on it."""

    task: asyncio.Task[RecoveryResult] | None = None
    listeners: list[StepListener] = field(default_factory=list)
    steps: list[RecoveryStep] = field(default_factory=list)
    force: bool = False


class RecoveryOperator:
    def __init__(self, prober: Prober, config: RecoveryConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._prober = prober
        self._config = config
        self._clock = clock
        self._flights: dict[str, _Flight] = {}
        self._reloads: dict[str, deque[float]] = {}
        self._measured_reload_ms: dict[str, float] = {}

    def reloads_in_window(self, env: str) -> int:
        return len(self._prune(env))

    def measured_reload_ms(self, env: str) -> float | None:
        """NOTIFY to fresh of this environment's last successful reload: the pre-flight's schema-load floor."""
        return self._measured_reload_ms.get(env)

    async def recover(
        self,
        target: Target,
        *,
        retries: int | None = None,
        delay_s: float | None = None,
        actor: str = "cli",
        on_step: StepListener | None = None,
        force: bool = False,
    ) -> RecoveryResult:
        """Run (or join) the recovery of one environment. Never raises for database or HTTP trouble.

        `force` sends the NOTIFY even when the pre-flight found it would break the cache or not be heard.
        """
        flight = self._flights.get(target.name)
        if flight is not None and force and not flight.force and flight.task is not None:
            # A forced reload must not silently become the running unforced one: wait for it, then run ours.
            await asyncio.wait({flight.task})
            flight = None
        if flight is None:
            flight = _Flight(force=force)
            self._flights[target.name] = flight
            if on_step:
                flight.listeners.append(on_step)
            deadline_s = (retries or self._config.retries) * (delay_s or self._config.delay_s)
            flight.task = asyncio.create_task(self._run(target, flight, deadline_s, actor, force))
            flight.task.add_done_callback(functools.partial(self._forget, target.name, flight))
        elif on_step:
            for step in flight.steps:  # a late joiner sees what already happened
                _call(on_step, step)
            flight.listeners.append(on_step)
        assert flight.task is not None
        # shield: one impatient caller cancelling must not abort the recovery others wait on.
        return await asyncio.shield(flight.task)

    def abort_all(self) -> None:
        """Shutdown: cancel every running recovery (its waiters see CancelledError); nothing more is sent."""
        for flight in self._flights.values():
            if flight.task is not None:
                flight.task.cancel()

    async def reload_for_drift(self, target: Target, *, actor: str) -> RecoveryResult:
        """Send one reload for objects the probe does not cover (found by the drift check); the caller re-checks.

        Same rules as a recovery: one at a time per environment, the reload cap, and the pre-flight.
        """
        started_at = datetime.now(UTC)
        report = await self._prober.probe(target)

        def result(outcome: Outcome, *, reason: str | None = None, notify_ms: float | None = None) -> RecoveryResult:
            return RecoveryResult(
                env=target.name,
                outcome=outcome,
                verdict_before=report.verdict,
                verdict_after=report.verdict,
                notify_sent=notify_ms is not None,
                notify_ms=notify_ms,
                time_to_healthy_ms=None,
                attempts=0,
                reason=reason,
                listener=None,
                report_before=report,
                report_after=report,
                started_at=started_at,
                finished_at=datetime.now(UTC),
                actor=actor,
                steps=(),
                diagnosis=diagnosis,
                refused_by_preflight=bool(blockers) and notify_ms is None,
                kpis=reload_kpis(self._config.kpi, notify_ms=notify_ms, reload_ms=None, api_after_ms=None),
            )

        diagnosis: Diagnosis | None = None
        blockers: list[Any] = []
        dsn = target.secrets.database_dsn
        if dsn is None:
            return result(Outcome.ESCALATED, reason="no database DSN: cannot send the reload")
        if target.name in self._flights:
            return result(Outcome.ESCALATED, reason="a recovery of this environment is already running")
        reloads = self._prune(target.name)
        if len(reloads) >= self._config.max_reloads:
            return result(Outcome.ESCALATED, reason=f"reload limit reached ({len(reloads)} in the window)")
        try:
            async with connect(
                dsn,
                connect_timeout=self._config.db_connect_timeout_s,
                command_timeout=self._config.db_command_timeout_s,
            ) as conn:
                diagnosis = await diagnose_with(
                    conn, target, report, measured_reload_ms=self.measured_reload_ms(target.name)
                )
                report = diagnosis.report
                blockers = diagnosis.blockers
                if blockers:
                    reason = "pre-flight refused the NOTIFY: " + "; ".join(b.line() for b in blockers)
                    return result(Outcome.ESCALATED, reason=reason)
                notify_ms = await send_reload(conn, target.config.notify_channel)
        except DatabaseError as err:
            return result(Outcome.ESCALATED, reason=f"cannot send the reload: {err}")
        reloads.append(self._clock())
        return result(Outcome.RECOVERED, notify_ms=notify_ms)

    def _forget(self, env: str, flight: _Flight, _task: object = None) -> None:
        if self._flights.get(env) is flight:
            del self._flights[env]

    def _prune(self, env: str) -> deque[float]:
        times = self._reloads.setdefault(env, deque())
        horizon = self._clock() - self._config.reload_window_s
        while times and times[0] < horizon:
            times.popleft()
        return times

    async def _run(self, target: Target, flight: _Flight, deadline_s: float, actor: str, force: bool) -> RecoveryResult:
        started_at = datetime.now(UTC)
        t0 = time.perf_counter()

        def emit(kind: StepKind, message: str, report: EnvReport | None = None) -> None:
            step = RecoveryStep(kind, message, (time.perf_counter() - t0) * 1000, report)
            flight.steps.append(step)
            for listener in list(flight.listeners):
                _call(listener, step)

        diagnosis: Diagnosis | None = None

        def finish(
            outcome: Outcome,
            after: EnvReport,
            *,
            reason: str | None = None,
            notify_ms: float | None = None,
            tth_ms: float | None = None,
            attempts: int = 0,
            listener: str | None = None,
            refused: bool = False,
        ) -> RecoveryResult:
            if outcome is Outcome.ESCALATED:
                emit(StepKind.DONE, f"escalated: {reason}", after)
            elif outcome is Outcome.RECOVERED:
                emit(StepKind.DONE, f"healthy {tth_ms:.0f} ms after the NOTIFY ({attempts} re-checks)", after)
            else:
                emit(StepKind.DONE, "already healthy: nothing to do", after)
            api_ms = api_latency_ms(after) if outcome is Outcome.RECOVERED else None
            return RecoveryResult(
                env=target.name,
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
                finished_at=datetime.now(UTC),
                actor=actor,
                steps=tuple(flight.steps),
                diagnosis=diagnosis,
                refused_by_preflight=refused,
                forced=force and notify_ms is not None,
                kpis=reload_kpis(self._config.kpi, notify_ms=notify_ms, reload_ms=tth_ms, api_after_ms=api_ms),
            )

        before = await self._prober.probe(target)
        emit(StepKind.PROBE, f"probe: {before.verdict}", before)
        if before.healthy:
            # The catalog re-reads only unhealthy checks: a healthy probe is already its own refined view.
            return finish(Outcome.ALREADY_HEALTHY, before)

        dsn = target.secrets.database_dsn
        if dsn is None:
            meta = info(before.verdict)
            if not meta.reload_helps:
                reason = f"{before.verdict}: a reload cannot help ({meta.why_no_reload})"
            else:
                reason = f"no database DSN configured for {target.name}: cannot send the reload NOTIFY"
            return finish(Outcome.ESCALATED, before, reason=reason)

        channel = target.config.notify_channel
        notify_ms: float | None = None
        try:
            async with connect(
                dsn,
                connect_timeout=self._config.db_connect_timeout_s,
                command_timeout=self._config.db_command_timeout_s,
            ) as conn:
                # Read the catalog first: stale or missing? why PGRST002? would a reload be heard, or hurt?
                diagnosis = await diagnose_with(
                    conn, target, before, measured_reload_ms=self.measured_reload_ms(target.name)
                )
                before = diagnosis.report  # every decision below is taken on the refined view
                emit(StepKind.DIAGNOSIS, f"diagnosis: {before.verdict}; {diagnosis.headline}", before)
                if diagnosis.listener is not None:
                    emit(StepKind.LISTENER, diagnosis.listener.detail)
                listener = str(diagnosis.listener.state) if diagnosis.listener else None
                if before.healthy:
                    # e.g. a 42501 on a table another API role may read: auth-limited, nothing to reload.
                    return finish(Outcome.ALREADY_HEALTHY, before, listener=listener)

                meta = info(before.verdict)
                if not meta.reload_helps:
                    reason = f"{before.verdict}: a reload cannot help ({meta.why_no_reload})"
                    if diagnosis.findings:
                        reason += f". Cause: {diagnosis.headline}"
                    emit(StepKind.DECISION, f"no reload: {reason}")
                    return finish(Outcome.ESCALATED, before, reason=reason, listener=listener)

                reloads = self._prune(target.name)
                if len(reloads) >= self._config.max_reloads:
                    window_min = self._config.reload_window_s / 60
                    reason = (
                        f"reload limit reached: {len(reloads)} reloads in the last {window_min:g} min for "
                        f"{target.name}; something keeps breaking the cache (repeated migrations, an event "
                        "trigger?). Investigate before reloading again"
                    )
                    return finish(Outcome.ESCALATED, before, reason=reason, listener=listener)

                blockers = diagnosis.blockers
                if blockers and not force:
                    reason = (
                        "pre-flight refused the NOTIFY: "
                        + "; ".join(b.line() for b in blockers)
                        + f". Fix that first, or force the reload: /reload {target.name} force:true "
                        f"(CLI: pgrst-ops fix --env {target.name} --force)"
                    )
                    emit(StepKind.DECISION, reason)
                    return finish(Outcome.ESCALATED, before, reason=reason, listener=listener, refused=True)
                if blockers:
                    emit(StepKind.DECISION, f"forced by {actor} despite: " + "; ".join(b.title for b in blockers))
                notify_ms = await send_reload(conn, channel)
                notified_at = time.perf_counter()
                reloads.append(self._clock())
                emit(StepKind.NOTIFY, f"NOTIFY {channel} 'reload schema' sent in {notify_ms:.1f} ms")
                # Re-checks are refined on this same connection, so they are judged like the first probe.
                result = await self._poll(
                    target, conn, deadline_s, notified_at, notify_ms, listener or "unknown", emit, finish
                )
        except DatabaseError as err:
            if notify_ms is None:
                return finish(Outcome.ESCALATED, before, reason=f"cannot send the reload: {err}")
            reason = f"the database connection failed after the NOTIFY: {err}"
            return finish(Outcome.ESCALATED, before, reason=reason, notify_ms=notify_ms)
        if result.outcome is Outcome.RECOVERED and result.time_to_healthy_ms is not None:
            self._measured_reload_ms[target.name] = result.time_to_healthy_ms
        if result.outcome is Outcome.ESCALATED:
            # Say what the reload ran into (a setting it applied, a lock it waits on), not only that it failed.
            after = await diagnose(
                target,
                result.report_after,
                connect_timeout=self._config.db_connect_timeout_s,
                command_timeout=self._config.db_command_timeout_s,
                measured_reload_ms=self.measured_reload_ms(target.name),
            )
            if after.error is None:
                if after.report.verdict is Verdict.STALE_SCHEMA_CACHE:
                    # Still stale although the NOTIFY went out: the reload never reached PostgREST.
                    after = dataclasses.replace(after, findings=(_not_applied(target, after), *after.findings))
                reason = result.reason or ""
                if after.findings:
                    reason += f". Cause: {after.headline}"
                result = dataclasses.replace(result, diagnosis=after, reason=reason, report_after=after.report)
        return result

    async def _refined(self, conn: asyncpg.Connection, target: Target, report: EnvReport) -> tuple[EnvReport, str]:
        """A re-check as the catalog sees it (bounded; on trouble the raw report, and a note saying so)."""
        if report.healthy:
            return report, ""
        try:
            async with asyncio.timeout(self._config.db_command_timeout_s):
                refined, _ = await refine_with(conn, target, report)
            return refined, ""
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as err:
            log.warning("%s: re-check not refined by the catalog (%s)", target.name, type(err).__name__)
            return report, " (not refined: the catalog lookup failed)"

    async def _poll(
        self,
        target: Target,
        conn: asyncpg.Connection,
        deadline_s: float,
        notified_at: float,
        notify_ms: float,
        listener: str,
        emit: Callable[..., None],
        finish: Callable[..., RecoveryResult],
    ) -> RecoveryResult:
        first = self._config.first_backoff_ms / 1000
        cap = self._config.max_backoff_ms / 1000
        backoff = first
        attempts = 0
        unfixable_streak = 0
        report: EnvReport | None = None
        while True:
            elapsed = time.perf_counter() - notified_at
            if elapsed + backoff > deadline_s and report is not None:
                break
            await asyncio.sleep(max(0.0, min(backoff, deadline_s - elapsed)))
            attempts += 1
            report = await self._prober.probe(target)
            since_ms = (time.perf_counter() - notified_at) * 1000
            report, note = await self._refined(conn, target, report)
            emit(StepKind.RECHECK, f"re-check {attempts} (+{since_ms:.0f} ms): {report.verdict}{note}", report)
            if report.healthy:
                return finish(
                    Outcome.RECOVERED,
                    report,
                    notify_ms=notify_ms,
                    tth_ms=since_ms,
                    attempts=attempts,
                    listener=listener,
                )
            # Two re-checks in a row with a fault a reload cannot fix: the reload did not help, or caused it
            # (a pending authenticator setting applies at reload). Stop burning the budget.
            unfixable_streak = 0 if info(report.verdict).reload_helps else unfixable_streak + 1
            if unfixable_streak >= 2:
                reason = f"after the NOTIFY the environment turned {report.verdict}: {info(report.verdict).summary}"
                if report.verdict is Verdict.SCHEMA_CACHE_UNAVAILABLE:
                    reason += " The reload itself may have applied a bad role setting"
                return finish(
                    Outcome.ESCALATED,
                    report,
                    reason=reason,
                    notify_ms=notify_ms,
                    attempts=attempts,
                    listener=listener,
                )
            if time.perf_counter() - notified_at > FAST_POLL_WINDOW_S:
                backoff = min(cap, backoff * 1.5)
        assert report is not None
        reason = (
            f"still {report.verdict} {deadline_s:g} s after the NOTIFY ({attempts} re-checks): "
            "the reload did not take effect"
        )
        return finish(
            Outcome.ESCALATED,
            report,
            reason=reason,
            notify_ms=notify_ms,
            attempts=attempts,
            listener=listener,
        )


def _not_applied(target: Target, diagnosis: Diagnosis) -> Finding:
    state = diagnosis.listener.state if diagnosis.listener else "unknown"
    return Finding(
        "reload_not_applied",
        "the reload was not applied",
        f"the objects exist and the NOTIFY was sent, but PostgREST still serves the old cache (listener: {state})",
        f"check that PostgREST listens on '{target.config.notify_channel}' (db-channel-enabled, db-channel, no "
        "transaction pooler in its db-uri; grant the monitoring role pg_read_all_stats to see it), then restart "
        "PostgREST / the project",
    )


def _call(listener: StepListener, step: RecoveryStep) -> None:
    try:
        listener(step)
    except Exception:  # a broken progress display must never stop a recovery
        log.exception("recovery step listener failed")
