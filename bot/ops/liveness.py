"""The cheap liveness check between full probes, and each environment's probe cadence (bot/core/watch.py).

The liveness check is the probe's root check alone (`OPTIONS /`: ~2 ms for PostgREST at any schema size, and
503 PGRST002 like every request while its cache cannot load), or the first probe table's cache check when the
root check is off. It only decides whether the full probe runs now: it records nothing itself. `probe_loop` is
each environment's loop, which the monitor starts.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from typing import TYPE_CHECKING

from bot.config import Settings, Target
from bot.core.incident import EnvState
from bot.core.watch import Cadence, Probe, Standing, next_probe, standing
from bot.postgrest.probe import Prober, plan_checks

if TYPE_CHECKING:
    from bot.ops.monitor import Monitor

log = logging.getLogger(__name__)


def liveness_check(target: Target) -> str | None:
    """The name of the planned check the liveness check runs, or None when there is no cheap one."""
    names = [spec.name for spec in plan_checks(target.config)]
    if "root" in names:
        return "root"
    return next((n for n in names if n.startswith("cache:")), None)


def cadence_for(settings: Settings, target: Target) -> Cadence:
    mon = settings.monitor
    own = target.config.liveness_interval_s
    liveness = mon.liveness_interval_s if own is None else own
    if liveness_check(target) is None:
        liveness = 0.0
    return Cadence(mon.interval_s, liveness, mon.confirm_interval_s)


def standing_of(settings: Settings, state: EnvState) -> Standing:
    mon = settings.monitor
    healthy = None if state.last_report is None else state.last_report.healthy
    return standing(
        healthy,
        alert_open=state.alert is not None,
        fail_streak=state.fail_streak,
        ok_streak=state.ok_streak,
        failure_threshold=mon.failure_threshold,
        success_threshold=mon.success_threshold,
    )


async def alive(prober: Prober, target: Target) -> bool:
    """The cheap check answered as a healthy PostgREST does (bounded by the environment's total budget)."""
    check = liveness_check(target)
    if check is None:
        return False
    report = await prober.probe(target, only=[check])
    return report.healthy


async def probe_loop(monitor: Monitor, name: str, *, wait_first: bool = False) -> None:
    """One environment's loop: the full probe on its interval, the cheap liveness check in between, thresholds
    counted at the confirm pace (bot/core/watch.py next_probe); `wait_first`: check_all has just probed. The
    first full probe after the start's comes within one interval, at the environment's phase (`phase_s`)."""
    # Each environment's full probes keep their own phase of the interval: loops started together would
    # otherwise probe every environment in the same instant each interval (2,000 at once: seconds of work).
    last_full = time.monotonic() - phase_s(name, monitor.settings.monitor.interval_s)
    if not wait_first:
        await monitor.checked(name)
    while True:
        target = monitor.targets[name]
        state = standing_of(monitor.settings, monitor.states[name])
        kind, wait = next_probe(cadence_for(monitor.settings, target), state, time.monotonic() - last_full)
        await asyncio.sleep(wait)
        if kind is Probe.LIVENESS and await _alive(monitor.prober, target):
            continue
        last_full = time.monotonic()
        await monitor.checked(name)


def phase_s(name: str, interval_s: float) -> float:
    """Where in the interval an environment's full probes fall, the same at every start: [0, interval_s)."""
    return zlib.crc32(name.encode()) / 2**32 * interval_s


async def _alive(prober: Prober, target: Target) -> bool:
    try:
        return await alive(prober, target)
    except asyncio.CancelledError:
        raise
    except Exception:  # the full probe says what is wrong
        log.exception("liveness check of %s failed", target.name)
        return False
