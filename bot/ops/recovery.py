"""The recovery operator: probe, refine, decide whether a reload can help, NOTIFY, re-check, or escalate.

The runbook's flow with what a real PostgREST needs: no NOTIFY for faults it cannot fix, a listener check
first, one recovery per environment at a time, and a cap on reloads so the tool never becomes a storm.
The rules are pure functions in bot/core/recovery.py; this module does the I/O they decide on (probe,
catalog, NOTIFY, sleeps) and keeps the per-environment state (running flights, reload window, measured reload).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
from pydantic import SecretStr

from bot.config import RecoveryConfig, Target
from bot.core.diagnosis import Diagnosis
from bot.core.recovery import (
    Outcome,
    PollSchedule,
    RecoveryResult,
    RecoveryStep,
    ReloadWindow,
    StepKind,
    StepListener,
    build_result,
    connection_failed_reason,
    decide_reload,
    done_message,
    drift_preflight_refusal,
    drift_refusal,
    explain_escalation,
    no_dsn_reason,
    recheck_deadline_s,
    recheck_plan,
    timed_out_reason,
    turned_unfixable,
    turned_unfixable_reason,
    unfixable_streak,
)
from bot.core.report import CheckResult, EnvReport
from bot.core.stale import refine_report
from bot.postgres.connect import DatabaseError, connect, send_reload
from bot.postgres.diagnose import diagnose, diagnose_with, refine_with
from bot.postgrest.probe import Prober

log = logging.getLogger(__name__)


@dataclass
class _Flight:
    """One running recovery and everyone waiting on it."""

    task: asyncio.Task[RecoveryResult] | None = None
    listeners: list[StepListener] = field(default_factory=list)
    steps: list[RecoveryStep] = field(default_factory=list)
    force: bool = False


@dataclass
class _Run:
    """One recovery as it goes: the steps it shows, and what its result is built from."""

    target: Target
    flight: _Flight
    config: RecoveryConfig
    actor: str
    force: bool
    timer: Callable[[], float]
    now: Callable[[], datetime]
    started_at: datetime
    t0: float
    before: EnvReport | None = None  # the first probe, then its refined view: every decision is taken on it
    diagnosis: Diagnosis | None = None
    listener: str | None = None
    notify_ms: float | None = None

    def emit(self, kind: StepKind, message: str, report: EnvReport | None = None) -> None:
        step = RecoveryStep(kind, message, (self.timer() - self.t0) * 1000, report)
        self.flight.steps.append(step)
        for listener in list(self.flight.listeners):
            _call(listener, step)

    def diagnosed(self, diagnosis: Diagnosis) -> None:
        self.diagnosis, self.before = diagnosis, diagnosis.report
        self.emit(StepKind.DIAGNOSIS, f"diagnosis: {diagnosis.report.verdict}; {diagnosis.headline}", self.before)
        if diagnosis.listener is not None:
            self.emit(StepKind.LISTENER, diagnosis.listener.detail)
            self.listener = str(diagnosis.listener.state)

    def finish(
        self,
        outcome: Outcome,
        after: EnvReport,
        *,
        reason: str | None = None,
        tth_ms: float | None = None,
        attempts: int = 0,
        refused: bool = False,
    ) -> RecoveryResult:
        self.emit(StepKind.DONE, done_message(outcome, reason, tth_ms, attempts), after)
        assert self.before is not None
        return build_result(
            self.config,
            outcome,
            env=self.target.name,
            before=self.before,
            after=after,
            started_at=self.started_at,
            finished_at=self.now(),
            actor=self.actor,
            steps=self.flight.steps,
            diagnosis=self.diagnosis,
            reason=reason,
            notify_ms=self.notify_ms,
            tth_ms=tth_ms,
            attempts=attempts,
            listener=self.listener,
            refused=refused,
            force=self.force,
        )


async def _discard(opening: asyncio.Task[tuple[AsyncExitStack, asyncpg.Connection]]) -> None:
    """A connection opened ahead that was not needed: stop opening it, or close it; its error is not one."""
    if not opening.done():
        opening.cancel()
    await asyncio.wait({opening})  # never raises what the task raised; our own cancellation still goes through
    if opening.cancelled() or opening.exception() is not None:
        return
    stack, _ = opening.result()
    await stack.aclose()


def _utcnow() -> datetime:
    return datetime.now(UTC)


class RecoveryOperator:
    def __init__(
        self,
        prober: Prober,
        config: RecoveryConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        timer: Callable[[], float] = time.perf_counter,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        """`clock` dates reloads for the cap, `timer` measures steps and the re-check deadline, `now` stamps results."""
        self._prober = prober
        self._config = config
        self._clock, self._timer, self._now = clock, timer, now
        self._flights: dict[str, _Flight] = {}
        self._reloads: dict[str, ReloadWindow] = {}
        self._measured_reload_ms: dict[str, float] = {}

    def reloads_in_window(self, env: str) -> int:
        return self._window(env).count(self._clock())

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
            deadline_s = recheck_deadline_s(self._config, retries, delay_s)
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
        started_at = self._now()
        report = await self._prober.probe(target)
        diagnosis: Diagnosis | None = None

        def result(outcome: Outcome, reason: str | None = None, notify_ms: float | None = None) -> RecoveryResult:
            refused = diagnosis is not None and bool(diagnosis.blockers) and notify_ms is None
            return build_result(
                self._config, outcome, env=target.name, before=report, after=report, started_at=started_at,
                finished_at=self._now(), actor=actor, diagnosis=diagnosis, reason=reason, notify_ms=notify_ms,
                refused=refused,
            )  # fmt: skip

        dsn = target.secrets.database_dsn
        running, reloads = target.name in self._flights, self.reloads_in_window(target.name)
        refusal = drift_refusal(has_dsn=dsn is not None, running=running, reloads=reloads, config=self._config)
        if refusal is not None or dsn is None:
            return result(Outcome.ESCALATED, refusal)
        try:
            async with self._connect(dsn) as conn:
                measured = self.measured_reload_ms(target.name)
                diagnosis = await diagnose_with(conn, target, report, measured_reload_ms=measured)
                report = diagnosis.report
                refusal = drift_preflight_refusal(diagnosis.blockers)
                if refusal is not None:
                    return result(Outcome.ESCALATED, refusal)
                notify_ms = await send_reload(conn, target.config.notify_channel)
        except DatabaseError as err:
            return result(Outcome.ESCALATED, f"cannot send the reload: {err}")
        self._window(target.name).record(self._clock())
        return result(Outcome.RECOVERED, notify_ms=notify_ms)

    def _forget(self, env: str, flight: _Flight, _task: object = None) -> None:
        if self._flights.get(env) is flight:
            del self._flights[env]

    def _window(self, env: str) -> ReloadWindow:
        return self._reloads.setdefault(env, ReloadWindow(self._config.reload_window_s))

    def _connect(self, dsn: SecretStr) -> AbstractAsyncContextManager[asyncpg.Connection]:
        config = self._config
        return connect(dsn, connect_timeout=config.db_connect_timeout_s, command_timeout=config.db_command_timeout_s)

    async def _run(self, target: Target, flight: _Flight, deadline_s: float, actor: str, force: bool) -> RecoveryResult:
        run = _Run(
            target, flight, self._config, actor, force,
            timer=self._timer, now=self._now, started_at=self._now(), t0=self._timer(),
        )  # fmt: skip
        dsn = target.secrets.database_dsn
        # The connection opens while the first probe runs (the login is the database's work, the probe
        # PostgREST's): ~10-25 ms less before the NOTIFY. Unused (healthy), it is closed; a failure to open it
        # counts only where the connection is needed, as before.
        opening = asyncio.create_task(self._open(dsn)) if dsn is not None else None
        try:
            run.before = before = await self._prober.probe(target)
            run.emit(StepKind.PROBE, f"probe: {before.verdict}", before)
            if before.healthy:
                # The catalog re-reads only unhealthy checks: a healthy probe is already its own refined view.
                return run.finish(Outcome.ALREADY_HEALTHY, before)
            if opening is None:
                return run.finish(Outcome.ESCALATED, before, reason=no_dsn_reason(before, target.name))
            try:
                opened, opening = opening, None
                connection, conn = await opened
                async with connection:
                    result = await self._decide_and_reload(conn, run, deadline_s)
            except DatabaseError as err:
                run.listener = None  # as the result always said: a failed connection reports no listener
                reason = connection_failed_reason(err, notified=run.notify_ms is not None)
                assert run.before is not None
                return run.finish(Outcome.ESCALATED, run.before, reason=reason)
        finally:
            if opening is not None:
                await _discard(opening)
        return await self._after_reload(run, result) if result.notify_sent else result

    async def _open(self, dsn: SecretStr) -> tuple[AsyncExitStack, asyncpg.Connection]:
        """An open connection and the stack that closes it (and turns errors inside it into DatabaseError)."""
        stack = AsyncExitStack()
        conn = await stack.enter_async_context(self._connect(dsn))
        return stack, conn

    async def _decide_and_reload(self, conn: asyncpg.Connection, run: _Run, deadline_s: float) -> RecoveryResult:
        target = run.target
        # Read the catalog first: stale or missing? why PGRST002? would a reload be heard, or hurt?
        assert run.before is not None
        measured = self.measured_reload_ms(target.name)
        run.diagnosed(await diagnose_with(conn, target, run.before, measured_reload_ms=measured))
        assert run.diagnosis is not None
        decision = decide_reload(
            run.diagnosis.report,
            run.diagnosis,
            reloads=self.reloads_in_window(target.name),
            config=self._config,
            force=run.force,
            actor=run.actor,
        )
        if decision.step is not None:
            run.emit(StepKind.DECISION, decision.step)
        if not decision.reload:
            assert decision.outcome is not None
            return run.finish(decision.outcome, run.diagnosis.report, reason=decision.reason, refused=decision.refused)
        channel = target.config.notify_channel
        run.notify_ms = await send_reload(conn, channel)
        notified_at = self._timer()
        self._window(target.name).record(self._clock())
        run.listener = run.listener or "unknown"
        run.emit(StepKind.NOTIFY, f"NOTIFY {channel} 'reload schema' sent in {run.notify_ms:.1f} ms")
        # Re-checks are refined on this same connection, so they are judged like the first probe.
        return await self._poll(conn, run, PollSchedule.of(self._config, deadline_s), notified_at)

    async def _poll(
        self, conn: asyncpg.Connection, run: _Run, schedule: PollSchedule, notified_at: float
    ) -> RecoveryResult:
        """Re-check only what was stale (recheck_plan), densely at first; once that is healthy, confirm with one
        whole probe (its root check is OPTIONS /, so it never costs PostgREST the OpenAPI document)."""
        assert run.before is not None
        plan = recheck_plan(run.before)
        attempts, streak, unfixable_since = 0, 0, 0.0
        seen: _Refinements = {}
        report: EnvReport | None = None
        while (wait := schedule.wait_s(self._timer() - notified_at, attempts)) is not None:
            await asyncio.sleep(wait)
            attempts += 1
            report, since_ms = await self._recheck(conn, run, attempts, notified_at, seen, plan)
            if report.healthy and plan:
                # The stale objects are served: the reload landed then. One whole probe says nothing else broke.
                attempts += 1
                healthy_ms = since_ms
                report, since_ms = await self._recheck(conn, run, attempts, notified_at, seen)
                if report.healthy:
                    since_ms = healthy_ms
                else:
                    plan = recheck_plan(report)
            if report.healthy:
                return run.finish(Outcome.RECOVERED, report, tth_ms=since_ms, attempts=attempts)
            # Stop burning the budget once the reload clearly did not help, or caused the fault.
            streak = unfixable_streak(streak, report.verdict)
            if streak == 1:
                unfixable_since = since_ms
            if turned_unfixable(streak, (since_ms - unfixable_since) / 1000):
                reason = turned_unfixable_reason(report.verdict)
                return run.finish(Outcome.ESCALATED, report, reason=reason, attempts=attempts)
        assert report is not None
        reason = timed_out_reason(report.verdict, schedule.deadline_s, attempts)
        return run.finish(Outcome.ESCALATED, report, reason=reason, attempts=attempts)

    async def _recheck(
        self,
        conn: asyncpg.Connection,
        run: _Run,
        attempt: int,
        notified_at: float,
        seen: _Refinements,
        only: frozenset[str] = frozenset(),
    ) -> tuple[EnvReport, float]:
        """One re-check (the checks in `only`, or all), refined by the catalog, shown as a step; with its time
        since the NOTIFY."""
        report = await self._prober.probe(run.target, only)
        since_ms = (self._timer() - notified_at) * 1000
        report, note = await self._refined(conn, run.target, report, seen)
        names = [c.name for c in report.checks]
        scope = "whole probe" if not only else ", ".join(names) if len(names) <= 2 else f"{len(names)} checks"
        run.emit(StepKind.RECHECK, f"re-check {attempt} (+{since_ms:.0f} ms, {scope}): {report.verdict}{note}", report)
        return report, since_ms

    async def _refined(
        self, conn: asyncpg.Connection, target: Target, report: EnvReport, seen: _Refinements
    ) -> tuple[EnvReport, str]:
        """A re-check as the catalog sees it (bounded; on trouble the raw report, and a note saying so).

        An answer this recovery already refined (same check, status and code) is judged as it was then, without
        another catalog lookup: dense polling would otherwise query the user's database every few milliseconds.
        The catalog is read again whenever an answer changes, and once more if the recovery escalates.
        """
        if report.healthy:
            return report, ""
        known = [c if c.ok else seen.get(_answer(c)) for c in report.checks]
        if all(k is not None for k in known):
            checks = [
                dataclasses.replace(k, latency_ms=c.latency_ms) for k, c in zip(known, report.checks, strict=True) if k
            ]
            return refine_report(report, checks), ""
        try:
            async with asyncio.timeout(self._config.db_command_timeout_s):
                refined, _ = await refine_with(conn, target, report)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as err:
            log.warning("%s: re-check not refined by the catalog (%s)", target.name, type(err).__name__)
            return report, " (not refined: the catalog lookup failed)"
        for raw, judged in zip(report.checks, refined.checks, strict=True):
            if not raw.ok:
                seen[_answer(raw)] = judged
        return refined, ""

    async def _after_reload(self, run: _Run, result: RecoveryResult) -> RecoveryResult:
        """Remember how long a reload took here; for an escalation, say what the reload ran into."""
        env = run.target.name
        if result.outcome is Outcome.RECOVERED and result.time_to_healthy_ms is not None:
            self._measured_reload_ms[env] = result.time_to_healthy_ms
        if result.outcome is not Outcome.ESCALATED:
            return result
        after = await diagnose(
            run.target,
            result.report_after,
            connect_timeout=self._config.db_connect_timeout_s,
            command_timeout=self._config.db_command_timeout_s,
            measured_reload_ms=self.measured_reload_ms(env),
        )
        return explain_escalation(result, after, run.target.config.notify_channel)


# A re-check answer as the catalog refined it, by (check, status, code): see RecoveryOperator._refined.
_Refinements = dict[tuple[str, int | None, str | None], CheckResult]


def _answer(check: CheckResult) -> tuple[str, int | None, str | None]:
    return check.name, check.status, check.code


def _call(listener: StepListener, step: RecoveryStep) -> None:
    try:
        listener(step)
    except Exception:  # a broken progress display must never stop a recovery
        log.exception("recovery step listener failed")
