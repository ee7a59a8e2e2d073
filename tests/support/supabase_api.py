"""A local fake of Supabase's Management API: the documented paths, status values and errors, on a free port.

Paths: `GET /v1/projects/{ref}` (status), `GET /v1/projects/{ref}/health?services=rest,db,pooler` (either
`services=a,b` or `services=a&services=b`), `GET /v1/projects/{ref}/postgrest`, `POST /v1/projects/{ref}/restart`
and `POST /v1/projects/{ref}/restore`. Errors: 401 for a missing or unknown token, 403 for a token without the
scope (projects:read to read, projects:write to restart or restore), 404 for an unknown project, 429 with
Retry-After once a token sent more than `rate_limit` requests in a minute (then every call is refused for the
rest of that minute, as Supabase does), and any status on demand (`fail_next`). A test sets the state: each
project's status, its services' health and PostgREST's settings; `on_restart` / `on_restore` let a test wire the
actions to a real PostgREST (stop it, start it, then say ACTIVE_HEALTHY).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.localhttp import LocalServer

HEALTHY = "ACTIVE_HEALTHY"
# The project and token of the `api` fixture (tests/conftest.py): a made-up token, not shaped like a real one.
REF = "abcdefghijklmnopqrst"
TOKEN = "sbp_fake_test_token_for_the_fake_api"
KNOWN_SERVICES = ("auth", "db", "db_postgres_user", "pooler", "realtime", "rest", "storage", "pg_bouncer")
READ, WRITE = "projects:read", "projects:write"
ALL_SCOPES = frozenset({READ, WRITE})


@dataclass
class FakeProject:
    ref: str
    status: str = HEALTHY
    services: dict[str, str] = field(default_factory=lambda: dict.fromkeys(("rest", "db", "pooler"), HEALTHY))
    service_errors: dict[str, str] = field(default_factory=dict)
    postgrest: dict[str, Any] = field(
        default_factory=lambda: {
            "db_schema": "public",
            "db_extra_search_path": "public, extensions",
            "max_rows": 1000,
            "db_pool": None,
        }
    )

    def set_status(self, status: str, **services: str) -> None:
        """The project's status; each service follows it unless given (`rest="UNHEALTHY"`)."""
        self.status = status
        for name in self.services:
            self.services[name] = services.get(name, status)


Hook = Callable[[FakeProject], Awaitable[None] | None]


def restarts_postgrest(postgrest: Any, *, down_s: float = 0.3) -> Hook:
    """An `on_restart` hook that really restarts a local PostgREST (tests/support/pgstack.py PostgrestServer):
    RESTARTING while it is stopped, COMING_UP while it starts, ACTIVE_HEALTHY once its admin /ready says 200."""

    async def restart(project: FakeProject) -> None:
        await asyncio.to_thread(postgrest.stop)
        await asyncio.sleep(down_s)
        project.set_status("COMING_UP")
        postgrest.start(wait=False)  # spawned from the loop's thread, so it dies with the test run
        await asyncio.to_thread(postgrest.wait_ready)
        project.set_status(HEALTHY)

    return restart


@dataclass
class _Failure:
    status: int
    count: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)


class FakeManagementApi:
    """`async with FakeManagementApi(tokens={...}) as api:` then `api.url` is the api_url for the config."""

    def __init__(
        self,
        *,
        tokens: dict[str, frozenset[str]] | None = None,
        rate_limit: int = 60,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tokens = dict(tokens) if tokens is not None else {"sbp_fake_token_all_scopes": ALL_SCOPES}
        self.rate_limit = rate_limit
        self.clock = clock
        self.projects: dict[str, FakeProject] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path with query) of every request that came in
        self.delay_s = 0.0  # every answer waits this long first (timeouts)
        self.huge_body_bytes: int | None = None  # the next answers carry this many bytes of JSON (bounded reads)
        self.on_restart: Hook | None = None
        self.on_restore: Hook | None = None
        self._failures: list[_Failure] = []
        self._sent: dict[str, list[float]] = {}
        self._blocked_until: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: LocalServer | None = None
        self.url = ""

    # -- what a test sets -------------------------------------------------------------------------
    def add_project(self, ref: str, **fields: Any) -> FakeProject:
        project = FakeProject(ref, **fields)
        self.projects[ref] = project
        return project

    def fail_next(
        self,
        status: int = 500,
        *,
        count: int = 1,
        body: str = '{"message": "Internal error"}',
        headers: dict[str, str] | None = None,
    ) -> None:
        """The next `count` requests answer `status` (after the auth and rate-limit checks), with `headers`
        (a 429's Retry-After, say)."""
        self._failures.append(_Failure(status, count, body, dict(headers or {})))

    def calls(self, method: str, suffix: str = "") -> list[str]:
        """Paths of the requests with this method whose path (without the query) ends with `suffix`."""
        return [p for m, p in self.requests if m == method and p.split("?")[0].endswith(suffix)]

    # -- the server --------------------------------------------------------------------------------
    async def __aenter__(self) -> FakeManagementApi:
        app = web.Application()
        app.router.add_get("/v1/projects/{ref}", self._project)
        app.router.add_get("/v1/projects/{ref}/health", self._health)
        app.router.add_get("/v1/projects/{ref}/postgrest", self._postgrest)
        app.router.add_post("/v1/projects/{ref}/restart", self._restart)
        app.router.add_post("/v1/projects/{ref}/restore", self._restore)
        self._server = LocalServer(app)
        self.url = await self._server.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.__aexit__(*exc)

    # -- the rules every path shares -----------------------------------------------------------------
    async def _gate(self, request: web.Request, scope: str) -> FakeProject | web.Response:
        self.requests.append((request.method, request.path_qs))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        if token not in self.tokens:
            return web.json_response({"message": "Unauthorized"}, status=401)
        limited = self._rate_limited(token)
        if limited is not None:
            return limited
        if scope not in self.tokens[token]:
            return web.json_response({"message": f"Forbidden: the token lacks {scope}"}, status=403)
        for failure in self._failures:
            if failure.count > 0:
                failure.count -= 1
                return web.Response(
                    status=failure.status, text=failure.body, content_type="application/json", headers=failure.headers
                )
        project = self.projects.get(request.match_info["ref"])
        if project is None:
            return web.json_response({"message": "Project not found"}, status=404)
        return project

    def _rate_limited(self, token: str) -> web.Response | None:
        now = self.clock()
        blocked = self._blocked_until.get(token, 0.0)
        if now >= blocked:
            sent = [t for t in self._sent.get(token, []) if now - t < 60.0]
            sent.append(now)
            self._sent[token] = sent
            if len(sent) <= self.rate_limit:
                return None
            blocked = self._blocked_until[token] = now + 60.0  # the rest of the minute is refused
        retry = max(1, math.ceil(blocked - now))
        return web.json_response({"message": "Too many requests"}, status=429, headers={"Retry-After": str(retry)})

    def _json(self, data: Any) -> web.Response:
        if self.huge_body_bytes:
            return web.Response(text='{"pad": "' + "x" * self.huge_body_bytes + '"}', content_type="application/json")
        return web.json_response(data)

    def _run_hook(self, hook: Hook | None, project: FakeProject) -> None:
        if hook is None:
            return
        result = hook(project)
        if asyncio.iscoroutine(result):
            task: asyncio.Task[None] = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # -- the paths ---------------------------------------------------------------------------------
    async def _project(self, request: web.Request) -> web.Response:
        project = await self._gate(request, READ)
        if isinstance(project, web.Response):
            return project
        return self._json(
            {
                "id": project.ref,
                "ref": project.ref,
                "organization_id": "fake-org",
                "name": f"project {project.ref}",
                "region": "eu-central-1",
                "created_at": "2026-01-01T00:00:00Z",
                "status": project.status,
                "database": {"host": f"db.{project.ref}.supabase.co", "version": "15.8", "postgres_engine": "15"},
            }
        )

    async def _health(self, request: web.Request) -> web.Response:
        project = await self._gate(request, READ)
        if isinstance(project, web.Response):
            return project
        asked = [name for value in request.query.getall("services", []) for name in value.split(",") if name]
        unknown = [s for s in asked if s not in KNOWN_SERVICES]
        if not asked or unknown:
            return web.json_response({"message": f"services must be some of {', '.join(KNOWN_SERVICES)}"}, status=400)
        answer = []
        for name in asked:
            status = project.services.get(name, project.status)
            item: dict[str, Any] = {"name": name, "healthy": status == HEALTHY, "status": status}
            if name in project.service_errors:
                item["error"] = project.service_errors[name]
            answer.append(item)
        return self._json(answer)

    async def _postgrest(self, request: web.Request) -> web.Response:
        project = await self._gate(request, READ)
        if isinstance(project, web.Response):
            return project
        return self._json(dict(project.postgrest))

    async def _restart(self, request: web.Request) -> web.Response:
        project = await self._gate(request, WRITE)
        if isinstance(project, web.Response):
            return project
        project.set_status("RESTARTING")
        self._run_hook(self.on_restart, project)
        return web.json_response({})

    async def _restore(self, request: web.Request) -> web.Response:
        project = await self._gate(request, WRITE)
        if isinstance(project, web.Response):
            return project
        if project.status != "INACTIVE":
            return web.json_response({"message": "Project is not paused"}, status=400)
        project.set_status("RESTORING")
        self._run_hook(self.on_restore, project)
        return web.json_response({})
