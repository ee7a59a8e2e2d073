"""The one builder of PostgREST requests: the shared client, key and profile headers, timeouts, the capped send.

Every request pgrst-ops sends to a PostgREST API (the probes of bot/postgrest/probe.py, the served-object
lookups of bot/postgrest/served.py) is built and sent here, so the headers PostgREST and Supabase's gateway
read are written once. May import httpx, bot.config and bot.httpread (the generic bounded reader, which the
Discord webhook uses too); nothing of bot/ops, bot/chat or bot/postgres.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Iterable

import httpx
from pydantic import SecretStr

from bot.config import EnvironmentConfig, Timeouts
from bot.httpread import CappedAnswer, UndecodableBody, send_capped

__all__ = [
    "JSON_ACCEPT",
    "UNPRODUCIBLE_ACCEPT",
    "USER_AGENT",
    "CappedAnswer",
    "UndecodableBody",
    "auth_headers",
    "build_request",
    "make_http_client",
    "read_profile",
    "request_timeout",
    "send",
    "utf8_headers",
    "write_profile",
]

USER_AGENT = "pgrst-ops/0.1 (+health probe)"
JSON_ACCEPT = "application/json"
# A media type no PostgREST produces: requests are looked up in the schema cache, then refused (PGRST107)
# before any SQL runs.
UNPRODUCIBLE_ACCEPT = "application/x-pgrst-ops-probe"


def utf8_headers(values: dict[str, str]) -> httpx.Headers:
    """Request headers whose values may be non-ASCII: a profile header names the schema, which PostgREST reads
    as UTF-8 (`Accept-Profile: تست`); httpx would refuse a non-ASCII str."""
    return httpx.Headers(values, encoding="utf-8")


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """The process's one verifying SSL context (httpx's defaults: certifi's CA bundle)."""
    return httpx.create_ssl_context()


# For http:// origins: httpx builds a context for every transport; this one loads no certificates.
_NO_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
_NO_TLS.check_hostname = False
_NO_TLS.verify_mode = ssl.CERT_NONE

PER_ORIGIN_LIMITS = httpx.Limits(max_connections=16, max_keepalive_connections=8)


class OriginPools(httpx.AsyncBaseTransport):
    """The client's one transport: a small connection pool per origin, made on its first request.

    Why not httpx's mounts: httpx finds a mounted transport by scanning every mount on every request (155 us
    per request at 1,000 origins), while this is one dict lookup whatever the number of environments. Why a
    pool per origin and not one shared pool: one environment can never use up the connections another needs,
    and httpcore's pool bookkeeping, which grows with the cube of the connections in one pool, stays cheap
    (bench/README.md). Every https origin shares one SSL context; plain-HTTP origins load no certificates.
    """

    def __init__(self, limits: httpx.Limits = PER_ORIGIN_LIMITS) -> None:
        self.limits = limits
        self._pools: dict[tuple[bytes, bytes, int | None], httpx.AsyncHTTPTransport] = {}

    @property
    def origins(self) -> int:
        """How many origins have a pool (one per origin asked so far)."""
        return len(self._pools)

    def _pool(self, url: httpx.URL) -> httpx.AsyncHTTPTransport:
        key = (url.raw_scheme, url.raw_host, url.port)
        pool = self._pools.get(key)
        if pool is None:
            tls = shared_ssl_context() if url.scheme == "https" else _NO_TLS
            pool = self._pools[key] = httpx.AsyncHTTPTransport(limits=self.limits, verify=tls)
        return pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._pool(request.url).handle_async_request(request)

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()


def make_http_client(envs: Iterable[EnvironmentConfig] = ()) -> httpx.AsyncClient:
    """The one shared client: no redirects (a redirect is itself a finding), explicit timeouts, and one
    transport whose cost does not grow with the number of environments (`OriginPools`).

    `envs` is accepted for the callers that name their environments; pools are made on first use, so a
    configured environment that is never asked costs nothing.
    """
    del envs
    return httpx.AsyncClient(
        timeout=httpx.Timeout(10.0, connect=5.0),
        transport=OriginPools(),
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
    )


def auth_headers(api_key: SecretStr | None) -> dict[str, str]:
    """The key as Supabase's gateway and PostgREST read it: `apikey` and a Bearer token (none without a key)."""
    if api_key is None:
        return {}
    key = api_key.get_secret_value()
    return {"apikey": key, "Authorization": f"Bearer {key}"}


def request_timeout(t: Timeouts) -> httpx.Timeout:
    """One request's httpx timeout from an environment's `timeouts`."""
    return httpx.Timeout(connect=t.connect_s, read=t.read_s, write=t.read_s, pool=t.connect_s)


def read_profile(schema: str) -> dict[str, str]:
    """GET, HEAD and OPTIONS pick their schema by Accept-Profile."""
    return {"Accept-Profile": schema}


def write_profile(schema: str) -> dict[str, str]:
    """POST, PATCH, PUT and DELETE pick their schema by Content-Profile (Accept-Profile alone is ignored)."""
    return {"Content-Profile": schema}


def build_request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    api_key: SecretStr | None,
    timeout: httpx.Timeout,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    json: object = None,
    content: bytes | None = None,
) -> httpx.Request:
    """One request: JSON accepted unless `headers` say otherwise, the key headers when a key is given."""
    values = utf8_headers({"Accept": JSON_ACCEPT, **(headers or {})})
    values.update(auth_headers(api_key))
    return client.build_request(method, url, headers=values, params=params, json=json, content=content, timeout=timeout)


async def send(client: httpx.AsyncClient, request: httpx.Request, cap: int) -> CappedAnswer:
    """Send and read at most `cap` decoded bytes (bot/httpread.py). Raises httpx.HTTPError like `client.send`,
    UndecodableBody when an answer came whose body cannot be decoded."""
    return await send_capped(client, request, cap)
