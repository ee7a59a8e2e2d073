"""One check of an environment, written once: probe PostgREST, then read the catalog about what failed.

The CLI's `check`, `/health` and the monitor all go through here, so they see the same refined report: the
catalog may re-classify a check (stale vs missing in the database vs not granted). Imports the PostgREST
prober, the database diagnosis and the Supabase project watch (asked only when a probe fails, plus a slow
refresh while healthy); knows nothing of Discord or of the CLI's output.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.core.project import ProjectState, refine, served_only
from bot.core.report import EnvReport, unreachable
from bot.core.verdicts import Verdict

if TYPE_CHECKING:  # a healthy `pgrst-ops check` never builds a diagnosis: not imported for it (~12 ms)
    from bot.config import RecoveryConfig, Target
    from bot.core.diagnosis import Diagnosis
    from bot.postgrest.probe import Prober
    from bot.supabase.watch import ProjectWatch


@dataclass(frozen=True)
class Checked:
    """A probe's report, refined by the diagnosis when there is one."""

    report: EnvReport
    diagnosis: Diagnosis | None = None
    project: ProjectState | None = None  # the Supabase project's state, when it was asked


async def diagnose_failure(
    target: Target,
    report: EnvReport,
    recovery: RecoveryConfig,
    *,
    measured_reload_ms: float | None = None,
    skip_unreachable: bool = False,
    served_schemas: Sequence[str] = (),
) -> Diagnosis | None:
    """The diagnosis of an unhealthy report, or None (healthy, no DSN, or nothing answered when skipped)."""
    if report.healthy or target.secrets.database_dsn is None:
        return None
    if skip_unreachable and unreachable(report):  # no HTTP answer at all: likely our own network, no point
        return None
    from bot.postgres.diagnose import diagnose  # asyncpg: `pgrst-ops check` without a DSN never loads it

    return await diagnose(
        target,
        report,
        connect_timeout=recovery.db_connect_timeout_s,
        command_timeout=recovery.db_command_timeout_s,
        measured_reload_ms=measured_reload_ms,
        served_schemas=served_schemas,
    )


async def with_project(
    projects: ProjectWatch | None, target: Target, report: EnvReport
) -> tuple[EnvReport, ProjectState | None]:
    """The report refined by the project's state (a paused project is `project_paused`), and that state."""
    if projects is None or not projects.watches(target.name):
        return report, None
    project = await projects.state(target.name, healthy=report.healthy)
    return refine(report, project), project


async def served_schemas(projects: ProjectWatch | None, target: Target) -> list[str]:
    """Schemas PostgREST serves per the Management API that exposed_schemas does not list (for PGRST002)."""
    if projects is None or not projects.watches(target.name):
        return []
    return served_only(target.config.exposed_schemas, await projects.postgrest_settings(target.name))


async def config_note(projects: ProjectWatch | None, target: Target) -> str | None:
    """PostgREST's db_schema (Supabase API) against exposed_schemas: the mismatch, logged when it changes."""
    if projects is None or not projects.watches(target.name):
        return None
    return await projects.config_check(target)


async def check_environment(
    prober: Prober, target: Target, recovery: RecoveryConfig, projects: ProjectWatch | None = None
) -> Checked:
    report, project = await with_project(projects, target, await prober.probe(target))
    if report.verdict is Verdict.PROJECT_PAUSED:  # nothing runs: the catalog cannot be read
        return Checked(report, None, project)
    served = await served_schemas(projects, target) if not report.healthy else []
    diagnosis = await diagnose_failure(target, report, recovery, served_schemas=served)
    return Checked(diagnosis.report if diagnosis is not None else report, diagnosis, project)


async def check_environments(
    prober: Prober, targets: Sequence[Target], recovery: RecoveryConfig, projects: ProjectWatch | None = None
) -> list[Checked]:
    """Every environment concurrently: a hung one never delays the others' reports."""
    return list(await asyncio.gather(*(check_environment(prober, t, recovery, projects) for t in targets)))
