"""The one client of Supabase's Management API: project status, service health, PostgREST settings, restart.

Every call goes through the bot's one shared httpx client with its own timeout and a bounded body read
(bot/httpread.py), after the token's rate limiter: Supabase allows about 60 requests a minute per user and then
answers 429 for the rest of the minute, so we stay below that on our own and, after a 429, send nothing until
its Retry-After has passed. Failures are one ManagementError whose `kind` says what to do: `auth` (the token
lacks the scope), `rate_limited` (wait `retry_after_s`), `server` (5xx: reported, never retried blindly),
`network` and `answer` (not what the API documents).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import httpx
from pydantic import SecretStr

from bot.core.project import SERVICES, PostgrestSettings, ServiceHealth, split_schemas
from bot.httpread import send_capped

USER_AGENT = "pgrst-ops/0.1 (+project state)"
# Per request: connect, read, write and pool; the whole call (slow drip included) within CALL_BUDGET_S.
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=10.0, write=10.0, pool=5.0)
CALL_BUDGET_S = 15.0
# Answers are a few hundred bytes; a project list or an error page never needs more than this.
MAX_BODY_BYTES = 256 * 1024
# Below Supabase's ~60 a minute, leaving room for the dashboard and the CLI sharing the same user.
REQUESTS_PER_MINUTE = 50
# A Retry-After we cannot read (or none with the 429): Supabase blocks the rest of the minute.
DEFAULT_RETRY_AFTER_S = 60.0
MAX_RETRY_AFTER_S = 3600.0

READ_SCOPE = "projects:read"
WRITE_SCOPE = "projects:write"


class ManagementError(Exception):
    """A Management API call that did not succeed; the message is for the operator (never holds the token)."""

    AUTH = "auth"
    RATE_LIMITED = "rate_limited"
    SERVER = "server"
    NETWORK = "network"
    ANSWER = "answer"

    def __init__(self, message: str, *, kind: str, status: int | None = None, retry_after_s: float | None = None):
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retry_after_s = retry_after_s


class RateLimiter:
    """A sliding minute of requests for one token, and the block a 429 imposes."""

    def __init__(self, per_minute: int = REQUESTS_PER_MINUTE, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._sent: deque[float] = deque()
        self._blocked_until = 0.0

    def wait_s(self) -> float:
        """Seconds until one more request may go (0: now)."""
        now = self.clock()
        while self._sent and now - self._sent[0] >= 60.0:
            self._sent.popleft()
        wait = max(0.0, self._blocked_until - now)
        if len(self._sent) >= self.per_minute:
            wait = max(wait, 60.0 - (now - self._sent[0]))
        return wait

    def take(self) -> None:
        self._sent.append(self.clock())

    def block(self, seconds: float) -> None:
        self._blocked_until = max(self._blocked_until, self.clock() + seconds)


# One limiter per token, whichever environments share it: the limit is Supabase's per user.
_limiters: dict[str, RateLimiter] = {}


def limiter_for(token: SecretStr) -> RateLimiter:
    key = hashlib.sha256(token.get_secret_value().encode()).hexdigest()
    return _limiters.setdefault(key, RateLimiter())


def retry_after_s(value: str | None) -> float:
    """Retry-After in seconds (a number; an HTTP date or nonsense counts as the default minute)."""
    try:
        seconds = float(value) if value is not None else DEFAULT_RETRY_AFTER_S
    except ValueError:
        seconds = DEFAULT_RETRY_AFTER_S
    if seconds != seconds or seconds < 0:  # NaN or negative
        seconds = DEFAULT_RETRY_AFTER_S
    return min(seconds, MAX_RETRY_AFTER_S)


def _scope_hint(scope: str) -> str:
    return f"the Supabase access token lacks access to this project ({READ_SCOPE} / {WRITE_SCOPE}; this call needs {scope})"


class ManagementClient:
    """Calls for one API base and token; `http` is the bot's shared client (bot/postgrest/requests.py)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        api_base: str,
        token: SecretStr,
        *,
        limiter: RateLimiter | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        budget_s: float = CALL_BUDGET_S,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.http = http
        self.api_base = api_base.rstrip("/")
        self._token = token
        self.limiter = limiter or limiter_for(token)
        self.timeout = timeout
        self.budget_s = budget_s
        self.max_body_bytes = max_body_bytes

    # -- the documented calls --------------------------------------------------------------------
    async def project_status(self, ref: str) -> str:
        """`GET /v1/projects/{ref}`: the status (ACTIVE_HEALTHY, COMING_UP, RESTARTING, INACTIVE, ...)."""
        data = await self._call("GET", f"/v1/projects/{ref}", scope=READ_SCOPE)
        status = data.get("status") if isinstance(data, dict) else None
        if not isinstance(status, str) or not status:
            raise ManagementError("the project answer has no status", kind=ManagementError.ANSWER, status=200)
        return status[:40]

    async def service_health(self, ref: str, services: Sequence[str] = SERVICES) -> tuple[ServiceHealth, ...]:
        """`GET /v1/projects/{ref}/health?services=...`: each service's health, in the order asked."""
        params = httpx.QueryParams([("services", s) for s in services])  # services=rest&services=db&...
        data = await self._call("GET", f"/v1/projects/{ref}/health", scope=READ_SCOPE, params=params)
        if not isinstance(data, list):
            raise ManagementError("the health answer is not a list", kind=ManagementError.ANSWER, status=200)
        found = []
        for item in data:
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                status = str(item.get("status") or "UNKNOWN")[:40]
                error = item.get("error")
                found.append(
                    ServiceHealth(
                        item["name"][:20],
                        bool(item.get("healthy", status == "ACTIVE_HEALTHY")),
                        status,
                        str(error)[:200] if error else None,
                    )
                )
        order = {name: i for i, name in enumerate(services)}
        return tuple(sorted(found, key=lambda s: order.get(s.name, len(order))))

    async def postgrest_settings(self, ref: str) -> PostgrestSettings:
        """`GET /v1/projects/{ref}/postgrest`: db_schema, db_extra_search_path, max_rows, db_pool."""
        data = await self._call("GET", f"/v1/projects/{ref}/postgrest", scope=READ_SCOPE)
        if not isinstance(data, dict) or not isinstance(data.get("db_schema"), str):
            raise ManagementError("the PostgREST answer has no db_schema", kind=ManagementError.ANSWER, status=200)
        max_rows, pool = data.get("max_rows"), data.get("db_pool")
        return PostgrestSettings(
            split_schemas(data["db_schema"]),
            split_schemas(
                data.get("db_extra_search_path") if isinstance(data.get("db_extra_search_path"), str) else ""
            ),
            max_rows if isinstance(max_rows, int) and not isinstance(max_rows, bool) else None,
            pool if isinstance(pool, int) and not isinstance(pool, bool) else None,
        )

    async def restart(self, ref: str, *, wait_up_to_s: float = 0.0) -> None:
        """`POST /v1/projects/{ref}/restart` (projects:write). Never retried here: the caller decides."""
        await self._call("POST", f"/v1/projects/{ref}/restart", scope=WRITE_SCOPE, wait_up_to_s=wait_up_to_s)

    async def restore(self, ref: str, *, wait_up_to_s: float = 0.0) -> None:
        """`POST /v1/projects/{ref}/restore` (projects:write): a paused project comes back."""
        await self._call("POST", f"/v1/projects/{ref}/restore", scope=WRITE_SCOPE, wait_up_to_s=wait_up_to_s)

    # -- one call --------------------------------------------------------------------------------
    async def _call(
        self,
        method: str,
        path: str,
        *,
        scope: str,
        params: httpx.QueryParams | None = None,
        wait_up_to_s: float = 0.0,
    ) -> Any:
        wait = self.limiter.wait_s()
        if wait > wait_up_to_s:
            raise ManagementError(
                f"Management API rate limit: next request allowed in {wait:.0f} s",
                kind=ManagementError.RATE_LIMITED,
                retry_after_s=wait,
            )
        if wait > 0:
            await asyncio.sleep(wait)
        self.limiter.take()
        request = self.http.build_request(
            method,
            self.api_base + path,
            params=params,
            headers={
                "Authorization": f"Bearer {self._token.get_secret_value()}",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            },
            timeout=self.timeout,
        )
        try:
            async with asyncio.timeout(self.budget_s):
                answer = await send_capped(self.http, request, self.max_body_bytes)
        except TimeoutError:
            raise ManagementError(
                f"the Management API did not answer within {self.budget_s:g} s", kind=ManagementError.NETWORK
            ) from None
        except httpx.TimeoutException:
            raise ManagementError("the Management API did not answer in time", kind=ManagementError.NETWORK) from None
        except httpx.HTTPError as err:
            raise ManagementError(
                f"the Management API could not be reached ({type(err).__name__})", kind=ManagementError.NETWORK
            ) from None
        status = answer.status
        if status in (401, 403):
            why = "rejected (invalid or expired)" if status == 401 else "refused"
            raise ManagementError(
                f"{status}: token {why}: {_scope_hint(scope)}", kind=ManagementError.AUTH, status=status
            )
        if status == 429:
            seconds = retry_after_s(answer.headers.get("retry-after"))
            self.limiter.block(seconds)
            raise ManagementError(
                f"429: Management API rate limit reached, retry in {seconds:.0f} s",
                kind=ManagementError.RATE_LIMITED,
                status=429,
                retry_after_s=seconds,
            )
        if status >= 500:
            raise ManagementError(
                f"{status}: Supabase's Management API failed (not retried)", kind=ManagementError.SERVER, status=status
            )
        if not 200 <= status < 300:
            raise ManagementError(
                f"{status}: unexpected answer for {method} {path}", kind=ManagementError.ANSWER, status=status
            )
        if answer.truncated:
            raise ManagementError(
                f"the answer is larger than {self.max_body_bytes} bytes: not read",
                kind=ManagementError.ANSWER,
                status=status,
            )
        if not answer.body.strip():
            return None
        try:
            return json.loads(answer.body)
        except ValueError:
            raise ManagementError("the answer is not JSON", kind=ManagementError.ANSWER, status=status) from None
