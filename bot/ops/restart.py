"""Restart a Supabase project through the Management API, then follow it until PostgREST is healthy again.

Two plain async functions do the I/O: `send_restart` (one POST; a 429 waits as told when that is short, a
401/403/5xx is reported, never retried) and `follow_restart` (the project's status and a probe every `poll_s`,
each look judged by bot/core/restart.py, each new phase reported). Both the bot (`bot/ops/facade.py`) and the
CLI (`pgrst-ops restart`) use them; the bot also edits the alert as the restart goes and resolves it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bot.config import Settings, Target
from bot.core.incidents import AFTER_RESTART
from bot.core.report import EnvReport
from bot.core.restart import Phase, Progress, next_phase, refusal
from bot.ops.inflight import Action, InFlight, Interrupted
from bot.postgrest.probe import Prober
from bot.postgrest.requests import make_http_client
from bot.supabase.management import ManagementClient, ManagementError
from bot.supabase.watch import ProjectWatch

if TYPE_CHECKING:
    from bot.ops.monitor import Monitor

log = logging.getLogger(__name__)

# A 429 on the restart itself: wait its Retry-After when it is this short, else report it.
MAX_RATE_LIMIT_WAIT_S = 30.0

INTERRUPTED = "interrupted by shutdown after the restart was sent"

ProgressListener = Callable[[Progress], Awaitable[None] | None]


async def send_restart(client: ManagementClient, ref: str) -> str | None:
    """POST the restart once (again only after a short 429); None when accepted, else why not.

    The 429's Retry-After blocks the token's limiter; the second call waits that out itself (up to
    MAX_RATE_LIMIT_WAIT_S), so a longer one is reported instead of waited for."""
    for last in (False, True):
        try:
            await client.restart(ref, wait_up_to_s=MAX_RATE_LIMIT_WAIT_S)
            return None
        except ManagementError as err:
            short_429 = err.kind == ManagementError.RATE_LIMITED and (err.retry_after_s or 0) <= MAX_RATE_LIMIT_WAIT_S
            if last or not short_429:
                return str(err)
            log.warning("restart of project %s: %s; sending it again once that has passed", ref, err)
    raise AssertionError("unreachable")  # the second round always returns


async def _notify(listener: ProgressListener | None, progress: Progress) -> None:
    if listener is None:
        return
    result = listener(progress)
    if result is not None:
        await result


async def follow_restart(
    client: ManagementClient,
    ref: str,
    probe: Callable[[], Awaitable[EnvReport]],
    *,
    poll_s: float,
    deadline_s: float,
    on_progress: ProgressListener | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[Progress, EnvReport | None]:
    """From an accepted restart to healthy, failed or timed out; every new phase goes to `on_progress`.

    Returns the last progress and the last probe report (the healthy one that ends the incident)."""
    started = clock()
    progress, report = Progress(Phase.SENT, 0.0), None
    await _notify(on_progress, progress)
    while not progress.phase.done:
        await asyncio.sleep(poll_s)
        try:
            status = await client.project_status(ref)
        except ManagementError as err:  # the API is not the restart: keep following with the probe alone
            log.info("project %s status unknown while restarting: %s", ref, err)
            status = None
        report = await probe()
        elapsed = clock() - started
        phase = next_phase(progress.phase, status, report.healthy, elapsed, deadline_s)
        if phase is not progress.phase:
            progress = Progress(phase, elapsed, status, None if report.healthy else report.explanation)
            await _notify(on_progress, progress)
    return progress, report


async def restart_once(
    settings: Settings, target: Target, reason: str, on_progress: ProgressListener | None = None
) -> tuple[Progress, str]:
    """One restart from the command line (confirmed by --yes): refused, failed, or followed to its end; with the
    outcome in the words of the audit log."""
    name, supabase = target.name, target.config.supabase
    assert supabase is not None
    async with make_http_client([target.config]) as client:
        projects = ProjectWatch.build(client, [target])
        assert projects is not None
        management, ref = projects.client(name), projects.ref(name)
        assert management is not None
        state = await projects.state(name, healthy=False)
        status = state.status if state else None
        why = refusal(
            can_restart=True,
            status=status,
            running=False,
            protected=False,
            confirmed_name=None,
            env=name,
            reason=reason,
        )
        if why is not None:
            return Progress(Phase.FAILED, 0.0, detail=f"not sent: {why}"), f"refused: {why}"
        failed = await send_restart(management, ref)
        if failed is not None:
            return Progress(Phase.FAILED, 0.0, detail=failed), f"failed: {failed}"
        prober = Prober(client, max_body_bytes=settings.max_body_bytes)
        progress, _ = await follow_restart(
            management,
            ref,
            lambda: prober.probe(target),
            poll_s=supabase.restart_poll_s,
            deadline_s=supabase.restart_deadline_s,
            on_progress=on_progress,
        )
    return progress, f"{progress.phase} after {progress.elapsed_s:.0f} s"


class Restarts:
    """The bot's restarts: refused or sent, followed, shown on the alert, audited, and the incident resolved.

    One at a time per environment, and each asked for anew: nothing here retries a restart or starts one itself.
    """

    def __init__(self, monitor: Monitor, projects: ProjectWatch | None, inflight: InFlight) -> None:
        self.monitor = monitor
        self.projects = projects
        self.inflight = inflight  # a stop lets a followed restart end its answer and audit row
        self.running: set[str] = set()

    def can_restart(self, env: str) -> bool:
        return self.projects is not None and self.projects.client(env) is not None

    async def refusal(self, env: str, reason: str, confirmed_name: str | None) -> str | None:
        """Why a restart of `env` must not be sent now (None: it may)."""
        state = await self.projects.state(env, healthy=False) if self.projects is not None else None
        return refusal(
            can_restart=self.can_restart(env),
            status=state.status if state is not None else None,
            running=env in self.running,
            protected=self.monitor.targets[env].config.protected,
            confirmed_name=confirmed_name,
            env=env,
            reason=reason,
        )

    async def restart(
        self,
        env: str,
        who: str,
        via: str,
        reason: str,
        *,
        confirmed_name: str | None = None,
        on_progress: ProgressListener | None = None,
    ) -> Progress | Interrupted | str:
        """Refused (the text: nothing was sent), or sent and followed to its final progress, audited; Interrupted
        when a stop cut the following short (the restart was sent)."""
        actor = f"{who} ({via})"
        why = await self.refusal(env, reason, confirmed_name)
        if why is not None:
            self.monitor.audit(actor, "restart", env, f"refused: {why}")
            self.monitor.metrics.restarted(env, "refused")
            return why
        self.running.add(env)
        try:
            with self.inflight.track(f"restart of {env} by {who}") as action:
                audit_id = await self.monitor.audit_begin(actor, "restart", env)
                followed = await self._send_and_follow(env, who, reason, action, on_progress)
                if followed is None:
                    await self.monitor.audit_end(audit_id, INTERRUPTED, interrupted=True)
                    self.monitor.metrics.restarted(env, "interrupted")
                    return Interrupted(INTERRUPTED)
                self.monitor.metrics.restarted(env, str(followed.phase).replace(" ", "_"))
                outcome = f"{followed.phase} after {followed.elapsed_s:.0f} s"
                if followed.phase is Phase.FAILED:
                    outcome = f"failed: {followed.detail}"
                await self.monitor.audit_end(audit_id, outcome)
                return followed
        finally:
            self.running.discard(env)

    async def _send_and_follow(
        self, env: str, who: str, reason: str, action: Action, on_progress: ProgressListener | None
    ) -> Progress | None:
        assert self.projects is not None
        client, ref = self.projects.client(env), self.projects.ref(env)
        target = self.monitor.targets[env]
        supabase = target.config.supabase
        assert client is not None and supabase is not None
        alert = self.monitor.incident_for(env)
        incident_id = alert.incident_id if alert is not None else None

        async def noted(progress: Progress) -> None:
            if incident_id is not None:
                await self.monitor.desk.restart_progress(incident_id, progress, who, reason)
            await _notify(on_progress, progress)

        failed = await send_restart(client, ref)
        if failed is not None:
            progress = Progress(Phase.FAILED, 0.0, detail=failed)
            await noted(progress)
            return progress
        self.projects.forget(env)  # the next look asks the API again
        followed = await action.until_interrupted(
            follow_restart(
                client,
                ref,
                lambda: self.monitor.prober.probe(target),
                poll_s=supabase.restart_poll_s,
                deadline_s=supabase.restart_deadline_s,
                on_progress=noted,
            )
        )
        if followed is None:
            return None
        progress, report = followed
        if progress.phase is Phase.HEALTHY and incident_id is not None and report is not None:
            await self.monitor.resolve_with(env, incident_id, report, AFTER_RESTART)
        return progress
