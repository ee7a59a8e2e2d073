"""The cached view of each environment's Supabase project: status and service health, PostgREST's settings.

Asked when a probe fails (a fresh answer, at most `unhealthy_cache_s` old) and now and then while healthy (for
/status, `healthy_cache_s`), once at a time per environment: with two calls per refresh, a failing environment
costs at most 4 requests a minute, and the token's rate limiter (management.py) caps what many environments
sharing one token may send. A failed call is remembered as an unknown state for the same time, so an API that
is down is not asked again at every check.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from bot.config import SupabaseConfig, Target
from bot.core.project import PostgrestSettings, ProjectState, carried_transition, schema_mismatch
from bot.supabase.management import ManagementClient, ManagementError

log = logging.getLogger(__name__)


@dataclass
class _Project:
    config: SupabaseConfig
    client: ManagementClient
    state: ProjectState | None = None
    settings: PostgrestSettings | None = None
    settings_at: datetime | None = None
    settings_error: str | None = None
    mismatch_logged: str | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class ProjectWatch:
    """Every configured environment's project, behind the cache; environments without `supabase` are skipped."""

    def __init__(self, projects: dict[str, _Project], clock: Callable[[], datetime] | None = None) -> None:
        self._projects = projects
        self.now = clock or (lambda: datetime.now(UTC))

    @classmethod
    def build(cls, http: httpx.AsyncClient, targets: Iterable[Target]) -> ProjectWatch | None:
        """A watch over the targets that name a project and a token; None when none does."""
        projects = {
            t.name: _Project(
                t.config.supabase, ManagementClient(http, t.config.supabase.api_base, t.secrets.supabase_token)
            )
            for t in targets
            if t.config.supabase is not None and t.secrets.supabase_token is not None
        }
        return cls(projects) if projects else None

    def watches(self, env: str) -> bool:
        return env in self._projects

    def client(self, env: str) -> ManagementClient | None:
        """The environment's client (the restart action uses it), None without a project."""
        project = self._projects.get(env)
        return project.client if project else None

    def ref(self, env: str) -> str:
        """The environment's project ref (KeyError without a project)."""
        return self._projects[env].config.project_ref

    def cached(self, env: str) -> ProjectState | None:
        project = self._projects.get(env)
        return project.state if project else None

    def forget(self, env: str) -> None:
        """Drop the cached state: the next ask goes to the API (after a restart was sent, say)."""
        project = self._projects.get(env)
        if project is not None and project.state is not None:
            project.state = ProjectState(project.state.ref, None, transition_since=project.state.transition_since)

    def _fresh(self, state: ProjectState | None, within_s: float) -> bool:
        return (
            state is not None
            and state.fetched_at is not None
            and (self.now() - state.fetched_at).total_seconds() < within_s
        )

    async def state(self, env: str, *, healthy: bool) -> ProjectState | None:
        """The project's state, fresh enough for a failing probe (`healthy=False`) or for /status."""
        project = self._projects.get(env)
        if project is None:
            return None
        cfg = project.config
        within = cfg.healthy_cache_s if healthy else cfg.unhealthy_cache_s
        if self._fresh(project.state, within):
            return project.state
        async with project.lock:  # one refresh at a time; a concurrent caller gets its result
            if not self._fresh(project.state, within):
                project.state = await self._fetch(project)
            return project.state

    async def _fetch(self, project: _Project) -> ProjectState:
        ref, now, previous = project.config.project_ref, self.now(), project.state
        try:
            status = await project.client.project_status(ref)
        except ManagementError as err:
            log.warning("Supabase project %s: status unknown: %s", ref, err)
            if (
                previous is not None
                and previous.status is not None
                and self._fresh(previous, project.config.healthy_cache_s)
            ):
                # The last known state, said to be old: a flaky API must not end a restart's hold early.
                return dataclasses.replace(previous, error=f"not refreshed: {err}", fetched_at=now)
            return ProjectState(ref, None, error=str(err), fetched_at=now)
        since = carried_transition(previous, status, now)
        try:
            services = await project.client.service_health(ref)
        except ManagementError as err:
            log.warning("Supabase project %s: service health unknown: %s", ref, err)
            return ProjectState(
                ref, status, error=f"service health unknown: {err}", fetched_at=now, transition_since=since
            )
        return ProjectState(ref, status, services, fetched_at=now, transition_since=since)

    async def postgrest_settings(self, env: str) -> PostgrestSettings | None:
        """PostgREST's settings (cached for `healthy_cache_s`); None when unknown."""
        project = self._projects.get(env)
        if project is None:
            return None
        async with project.lock:
            at = project.settings_at
            if at is None or (self.now() - at).total_seconds() >= project.config.healthy_cache_s:
                project.settings_at = self.now()
                try:
                    project.settings, project.settings_error = (
                        await project.client.postgrest_settings(project.config.project_ref),
                        None,
                    )
                except ManagementError as err:
                    project.settings_error = str(err)
                    log.warning("Supabase project %s: PostgREST settings unknown: %s", project.config.project_ref, err)
            return project.settings

    async def config_check(self, target: Target) -> str | None:
        """PostgREST's db_schema against exposed_schemas: the mismatch (logged as a warning), or None."""
        project = self._projects.get(target.name)
        if project is None:
            return None
        mismatch = schema_mismatch(target.config.exposed_schemas, await self.postgrest_settings(target.name))
        if mismatch and mismatch != project.mismatch_logged:  # once at start, and again only when it changes
            log.warning("%s: %s: update exposed_schemas (or PostgREST's settings)", target.name, mismatch)
        project.mismatch_logged = mismatch
        return mismatch
