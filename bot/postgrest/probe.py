"""Probe each environment's REST API concurrently and reduce what it sees to one verdict.

Every check has its own httpx timeout and every environment a total budget, so one hung environment
reports `timeout` on time and never delays the others.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from bot.config import EnvironmentConfig, EnvSecrets, Target
from bot.core.classify import (
    CheckKind,
    Classification,
    TransportFailure,
    classify_response,
    classify_transport_failure,
)
from bot.core.identifiers import columns_param_part, url_encoded
from bot.core.report import CheckResult, EnvReport, summarise
from bot.postgrest.requests import (
    UNPRODUCIBLE_ACCEPT,
    UndecodableBody,
    build_request,
    read_profile,
    request_timeout,
    send,
    write_profile,
)

# Characters of a select list kept readable in the URL (PostgREST decodes the rest as usual).
SELECT_SAFE = ",()*:!.-_~"


@dataclass(frozen=True)
class CheckSpec:
    name: str
    label: str
    kind: CheckKind
    method: str
    url: str
    send_key: bool = True
    json_body: Any = None
    extra_headers: dict[str, str] = field(default_factory=dict)


def plan_checks(env: EnvironmentConfig) -> list[CheckSpec]:
    """The checks for one environment: admin live/ready, root, and per table data + cache checks."""
    base = env.rest_base
    specs: list[CheckSpec] = []
    if env.admin_base:
        specs.append(CheckSpec("live", "Admin /live", CheckKind.LIVE, "GET", f"{env.admin_base}/live", send_key=False))
        specs.append(
            CheckSpec("ready", "Admin /ready", CheckKind.READY, "GET", f"{env.admin_base}/ready", send_key=False)
        )
        # 12.2+: schema cache loads (ok / failed) and the pool, as evidence; 12.0.2 answers 404 (not available).
        specs.append(
            CheckSpec(
                "metrics",
                "Admin /metrics",
                CheckKind.METRICS,
                "GET",
                f"{env.admin_base}/metrics",
                send_key=False,
                extra_headers={"Accept": "text/plain"},
            )
        )
    if env.probe_root:
        # OPTIONS, not GET: GET / makes PostgREST build the whole OpenAPI document (11.5 MB, 1.5-1.8 s at 5,000
        # tables), HEAD / still 30-80 ms; OPTIONS / answers from the loaded cache in ~2 ms at any size,
        # and 503 PGRST002 like every request while the cache cannot load (bench/README.md, "Root check").
        specs.append(CheckSpec("root", "Root (/)", CheckKind.ROOT, "OPTIONS", f"{base}/"))
    for table in env.probe_tables:
        shown, path = table.display(env), f"{base}/{url_encoded(table.name)}"
        # Always name the schema: the probe then asks for exactly what the diagnosis looks up, whatever the
        # order of db-schemas, and a schema PostgREST does not serve answers 406 PGRST106 instead of a wrong table.
        reads = read_profile(table.schema_in(env))
        specs.append(
            CheckSpec(
                f"data:{shown}",
                f"Data ({shown})",
                CheckKind.DATA,
                "GET",
                f"{path}?select={quote(table.select, safe=SELECT_SAFE)}&limit=1",
                extra_headers=reads,
            )
        )
        specs.append(
            CheckSpec(f"cache:{shown}", f"Cache ({shown})", CheckKind.CACHE, "OPTIONS", path, extra_headers=reads)
        )
        if table.columns:
            # An empty insert names the columns: PostgREST checks them against its cache and writes nothing.
            columns = quote(",".join(columns_param_part(c) for c in table.columns), safe=",")
            specs.append(
                CheckSpec(
                    f"columns:{shown}",
                    f"Columns ({shown})",
                    CheckKind.COLUMNS,
                    "POST",
                    f"{path}?columns={columns}",
                    json_body=[],
                    # Refused after the column lookup (415 PGRST107): not even statement triggers run.
                    # A write picks its schema by Content-Profile (Accept-Profile alone would probe the default one).
                    extra_headers={
                        "Prefer": "return=minimal",
                        "Accept": UNPRODUCIBLE_ACCEPT,
                        **write_profile(table.schema_in(env)),
                    },
                )
            )
    for function in env.probe_functions:
        # GET with the required arguments (empty) and a media type PostgREST cannot produce: it looks the function
        # up in its cache (404 PGRST202 when missing), then refuses to negotiate (415 PGRST107): nothing runs.
        # A GET picks its schema by Accept-Profile, as reads do.
        shown = function.display(env)
        query = "?" + "&".join(f"{url_encoded(a)}=" for a in function.args) if function.args else ""
        specs.append(
            CheckSpec(
                f"rpc:{shown}",
                f"RPC ({shown})",
                CheckKind.RPC,
                "GET",
                f"{base}/rpc/{url_encoded(function.name)}{query}",
                extra_headers={"Accept": UNPRODUCIBLE_ACCEPT, **read_profile(function.schema_in(env))},
            )
        )
    return specs


def _transport_failure(err: httpx.HTTPError) -> TransportFailure:
    if isinstance(err, httpx.DecodingError):
        return TransportFailure.UNDECODABLE
    if isinstance(err, httpx.TimeoutException):
        return TransportFailure.TIMEOUT
    if isinstance(err, httpx.ConnectError):
        cause: BaseException | None = err
        while cause is not None:
            if isinstance(cause, ConnectionRefusedError) or getattr(cause, "errno", None) == errno.ECONNREFUSED:
                return TransportFailure.REFUSED
            if isinstance(cause, socket.gaierror):
                return TransportFailure.DNS
            cause = cause.__cause__ or cause.__context__
        text = str(err).lower()
        if "refused" in text:
            return TransportFailure.REFUSED
        if "name or service not known" in text or "nodename nor servname" in text:
            return TransportFailure.DNS
        return TransportFailure.OTHER
    if isinstance(err, httpx.RemoteProtocolError | httpx.ReadError):
        return TransportFailure.PROTOCOL
    return TransportFailure.OTHER


# At most this many environments start their checks at once, and one that has not finished within
# GATE_HOLD_S gives its place up (a hung environment never holds the others back longer). Without it, the first
# sweep of 2,000 environments queued 6,000 requests on the one event loop for seconds, and that queue, not the
# servers, read as timeouts (bench/README.md "Many environments"). The budgets start once through the gate.
PROBES_AT_ONCE = 256
GATE_HOLD_S = 1.0


@dataclass
class _Plan:
    env: EnvironmentConfig
    secrets: EnvSecrets
    specs: list[CheckSpec]
    requests: dict[str, httpx.Request] = field(default_factory=dict)  # by check name, built on first use


class Prober:
    def __init__(self, client: httpx.AsyncClient, *, max_body_bytes: int = 256 * 1024) -> None:
        self._client = client
        self._max_body = max_body_bytes
        self._gate = asyncio.Semaphore(PROBES_AT_ONCE)
        # Per environment: its plan and each check's request, built once and sent as they are every probe
        # (building them was a third of a check's CPU); made again when the config or secrets object changes.
        self._plans: dict[str, _Plan] = {}

    @property
    def client(self) -> httpx.AsyncClient:
        """The shared client, for other API readers (drift) that must use the same pools and limits."""
        return self._client

    def _plan(self, target: Target) -> _Plan:
        plan = self._plans.get(target.name)
        if plan is None or plan.env is not target.config or plan.secrets is not target.secrets:
            plan = self._plans[target.name] = _Plan(target.config, target.secrets, plan_checks(target.config))
        return plan

    async def _run_check(self, spec: CheckSpec, plan: _Plan) -> CheckResult:
        env = plan.env
        key = plan.secrets.api_key if spec.send_key else None
        started = time.perf_counter()
        status: int | None = None
        resp_headers: dict[str, str] = {}
        try:
            request = plan.requests.get(spec.name)
            if request is None:
                request = plan.requests[spec.name] = build_request(
                    self._client,
                    spec.method,
                    spec.url,
                    api_key=key,
                    timeout=request_timeout(env.timeouts),
                    headers=spec.extra_headers,
                    json=spec.json_body,
                )
            answer = await send(self._client, request, self._max_body)
            status, resp_headers = answer.status, answer.headers
            cls = classify_response(
                spec.kind, status, resp_headers, answer.body, sent_key=key is not None, truncated=answer.truncated
            )
        except UndecodableBody as err:  # an answer came: its status is evidence, its body is not readable
            status = err.status
            failure = _transport_failure(err)
            cls = classify_transport_failure(
                spec.kind, failure, env.timeouts.read_s, content_encoding=err.content_encoding
            )
        except httpx.HTTPError as err:
            cls = classify_transport_failure(spec.kind, _transport_failure(err), env.timeouts.read_s)
        return self._result(spec, cls, status, resp_headers, (time.perf_counter() - started) * 1000)

    @staticmethod
    def _result(
        spec: CheckSpec, cls: Classification, status: int | None, headers: dict[str, str], latency_ms: float
    ) -> CheckResult:
        return CheckResult(
            name=spec.name,
            label=spec.label,
            kind=spec.kind,
            method=spec.method,
            url=spec.url,
            status=status,
            code=cls.code,
            message=cls.message,
            detail=cls.detail,
            retry_after=headers.get("retry-after"),
            latency_ms=latency_ms,
            server=headers.get("server"),
            verdict=cls.verdict,
            auth_limited=cls.auth_limited,
        )

    async def probe(self, target: Target, only: Collection[str] = ()) -> EnvReport:
        """All checks of one environment at once, or only the planned checks named in `only` (a re-check),
        bounded by the environment's total budget."""
        name, env = target.name, target.config
        plan = self._plan(target)
        # A selection that names no planned check runs them all: an empty report must never read as healthy.
        specs = [s for s in plan.specs if s.name in only] or plan.specs
        budget = env.timeouts.total_s
        async with self._gate:
            checked_at = datetime.now(UTC)
            started = time.perf_counter()
            tasks = [asyncio.create_task(self._run_check(s, plan)) for s in specs]
            _, pending = await asyncio.wait(tasks, timeout=min(budget, GATE_HOLD_S))
        if pending:  # a slow environment: the rest of its budget without holding a place
            _, pending = await asyncio.wait(pending, timeout=max(0.0, budget - (time.perf_counter() - started)))
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        results: list[CheckResult] = []
        for spec, task in zip(specs, tasks, strict=True):
            if task not in pending and not task.cancelled() and task.exception() is None:
                results.append(task.result())
            else:
                elapsed = (time.perf_counter() - started) * 1000
                cls = classify_transport_failure(spec.kind, TransportFailure.TIMEOUT, env.timeouts.total_s)
                results.append(self._result(spec, cls, None, {}, elapsed))
        return summarise(name, results, checked_at, (time.perf_counter() - started) * 1000)

    async def probe_many(self, targets: Iterable[Target]) -> list[EnvReport]:
        return list(await asyncio.gather(*(self.probe(t) for t in targets)))
