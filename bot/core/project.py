"""The Supabase project's own state, as the Management API reports it, and what it means for a verdict (pure).

A probe sees only the API: a paused project answers with timeouts, a restarting one refuses connections. The
project's status (`GET /v1/projects/{ref}`), its services' health (`GET .../health`) and PostgREST's settings
(`GET .../postgrest`) say why. The rules here turn (probe report, project state) into the refined verdict, say
when a project in transition holds the alert, compare PostgREST's db_schema with the configured exposed
schemas, and word the one line /health, /status and the alert show. No I/O: the clock comes from the caller.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.core.report import EnvReport
from bot.core.verdicts import Verdict, info

HEALTHY = "ACTIVE_HEALTHY"
# The project is not running and will not come back by itself: restore it.
PAUSED = frozenset({"INACTIVE", "PAUSED", "PAUSING"})
# The project is on its way up: failures are expected for a few minutes, an alert would only be noise.
IN_TRANSITION = frozenset({"COMING_UP", "RESTARTING", "RESTORING", "UPGRADING", "RESIZING"})
SERVICES = ("rest", "db", "pooler")


@dataclass(frozen=True)
class ServiceHealth:
    """One service of the project as `GET /v1/projects/{ref}/health` reports it."""

    name: str
    healthy: bool
    status: str
    error: str | None = None


@dataclass(frozen=True)
class PostgrestSettings:
    """PostgREST's settings as `GET /v1/projects/{ref}/postgrest` reports them."""

    db_schema: tuple[str, ...]
    db_extra_search_path: tuple[str, ...] = ()
    max_rows: int | None = None
    db_pool: int | None = None


@dataclass(frozen=True)
class ProjectState:
    """What the Management API said of the project, or why it could not be asked (`error`)."""

    ref: str
    status: str | None  # None: unknown (the API could not be read)
    services: tuple[ServiceHealth, ...] = ()
    error: str | None = None
    fetched_at: datetime | None = None
    # When the current transition (RESTARTING, COMING_UP, ...) was first seen: the hold's deadline counts from it.
    transition_since: datetime | None = None

    @property
    def paused(self) -> bool:
        return self.status in PAUSED

    @property
    def in_transition(self) -> bool:
        return self.status in IN_TRANSITION


def split_schemas(value: str | None) -> tuple[str, ...]:
    """`"public, storage"` as PostgREST's db-schemas setting holds it, as names (empty parts dropped)."""
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def carried_transition(previous: ProjectState | None, status: str | None, now: datetime) -> datetime | None:
    """Since when the project has been in transition: kept from the previous state while it still is."""
    if status not in IN_TRANSITION:
        return None
    if previous is not None and previous.in_transition and previous.transition_since is not None:
        return previous.transition_since
    return now


def refine(report: EnvReport, project: ProjectState | None) -> EnvReport:
    """A failing report of a paused project is `project_paused`: the probe's timeout or refusal is its symptom."""
    if report.healthy or project is None or not project.paused:
        return report
    meta = info(Verdict.PROJECT_PAUSED)
    explanation = f"{meta.summary} (Management API status {project.status}; the probe saw {report.verdict})"
    next_step = meta.next_step.replace("<ref>", project.ref)
    return dataclasses.replace(report, verdict=Verdict.PROJECT_PAUSED, explanation=explanation, next_step=next_step)


def transition_hold(project: ProjectState | None, now: datetime, hold_s: float) -> str | None:
    """Why an alert waits: the project is restarting or coming up, and the deadline has not passed yet."""
    if project is None or not project.in_transition or project.transition_since is None or hold_s <= 0:
        return None
    until = project.transition_since + timedelta(seconds=hold_s)
    if now >= until:
        return None
    return f"Supabase project is {project.status} (since <t:{int(project.transition_since.timestamp())}:R>): held until it is up or <t:{int(until.timestamp())}:t>"


def service_text(service: ServiceHealth) -> str:
    mark = "✅" if service.healthy else "❌"
    shown = "" if service.healthy else f" {service.status}"
    return f"{mark} {service.name}{shown}"


def project_line(project: ProjectState | None) -> str | None:
    """One line: the project's status and its services (rest, db, pooler); None when nothing is known."""
    if project is None:
        return None
    if project.status is None:
        return f"⚠️ Supabase project {project.ref}: state unknown ({project.error or 'not asked yet'})"
    mark = "✅" if project.status == HEALTHY else "❌"
    parts = [f"{mark} Supabase project {project.status}"]
    parts += [service_text(s) for s in project.services]
    if project.error:
        parts.append(f"⚠️ {project.error}")
    return " · ".join(parts)


def schema_mismatch(exposed: Sequence[str], settings: PostgrestSettings | None) -> str | None:
    """PostgREST's db_schema against the config's exposed_schemas (order matters: the first is the default)."""
    if settings is None or tuple(exposed) == settings.db_schema:
        return None
    served = ", ".join(settings.db_schema) or "(none)"
    configured = ", ".join(exposed)
    missing = [s for s in settings.db_schema if s not in exposed]
    extra = [s for s in exposed if s not in settings.db_schema]
    why = []
    if missing:
        why.append(f"not in exposed_schemas: {', '.join(missing)}")
    if extra:
        why.append(f"not served by PostgREST: {', '.join(extra)}")
    if not why:
        why.append("same schemas in another order (the first is the default schema)")
    return f"PostgREST's db_schema is {served}, exposed_schemas says {configured} ({'; '.join(why)})"


def served_only(exposed: Sequence[str], settings: PostgrestSettings | None) -> list[str]:
    """Schemas PostgREST serves (per the API) that the config does not list: the diagnosis checks them too."""
    if settings is None:
        return []
    return [s for s in settings.db_schema if s not in exposed]
