"""One check of an environment, written once: probe PostgREST, then read the catalog about what failed.

The CLI's `check`, `/health` and the monitor all go through here, so they see the same refined report: the
catalog may re-classify a check (stale vs missing in the database vs not granted). Imports the PostgREST
prober and the database diagnosis; knows nothing of Discord or of the CLI's output.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from bot.config import RecoveryConfig, Target
from bot.core.diagnosis import Diagnosis
from bot.core.report import EnvReport, unreachable
from bot.postgres.diagnose import diagnose
from bot.postgrest.probe import Prober


@dataclass(frozen=True)
class Checked:
    """A probe's report, refined by the diagnosis when there is one."""

    report: EnvReport
    diagnosis: Diagnosis | None = None


async def diagnose_failure(
    target: Target,
    report: EnvReport,
    recovery: RecoveryConfig,
    *,
    measured_reload_ms: float | None = None,
    skip_unreachable: bool = False,
) -> Diagnosis | None:
    """The diagnosis of an unhealthy report, or None (healthy, no DSN, or nothing answered when skipped)."""
    if report.healthy or target.secrets.database_dsn is None:
        return None
    if skip_unreachable and unreachable(report):  # no HTTP answer at all: likely our own network, no point
        return None
    return await diagnose(
        target,
        report,
        connect_timeout=recovery.db_connect_timeout_s,
        command_timeout=recovery.db_command_timeout_s,
        measured_reload_ms=measured_reload_ms,
    )


async def check_environment(prober: Prober, target: Target, recovery: RecoveryConfig) -> Checked:
    report = await prober.probe(target)
    diagnosis = await diagnose_failure(target, report, recovery)
    return Checked(diagnosis.report if diagnosis is not None else report, diagnosis)


async def check_environments(prober: Prober, targets: Sequence[Target], recovery: RecoveryConfig) -> list[Checked]:
    """Every environment concurrently: a hung one never delays the others' reports."""
    return list(await asyncio.gather(*(check_environment(prober, t, recovery) for t in targets)))
