"""The one builder of PostgREST requests: the shared client, key and profile headers, timeouts, the capped send.

Every request pgrst-ops sends to a PostgREST API (the probes of bot/postgrest/probe.py, the served-object
lookups of bot/postgrest/served.py) is built and sent here, so the headers PostgREST and Supabase's gateway
read are written once. May import httpx, bot.config and bot.httpread (the generic bounded reader, which the
Discord webhook uses too); nothing of bot/ops, bot/chat or bot/postgres.
"""

from __future__ import annotations

import functools
import ssl
import weakref
from collections.abc import Iterable
from http.cookiejar import CookieJar

import httpx
from pydantic import SecretStr

from bot.config import EnvironmentConfig, Timeouts
from bot.httpread import ACCEPT_ENCODING, CappedAnswer, UndecodableBody, send_capped
from bot.postgrest.transport import PER_ORIGIN_LIMITS, OriginPools

__all__ = [
    "JSON_ACCEPT",
    "PER_ORIGIN_LIMITS",
    "UNPRODUCIBLE_ACCEPT",
    "USER_AGENT",
    "CappedAnswer",
    "OriginPools",
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
    """The process's one verifying SSL context (httpx's defaults: certifi's CA bundle), loaded on the first
    https origin: plain-HTTP origins load no certificates."""
    return httpx.create_ssl_context()


# The default headers of a client `make_http_client` made (httpx's, with our User-Agent).
_CLIENT_HEADERS = {
    "Accept": "*/*",
    "Accept-Encoding": ACCEPT_ENCODING,
    "Connection": "keep-alive",
    "User-Agent": USER_AGENT,
}
# The transport of each client `make_http_client` made, for `send` and `build_request`.
_TRANSPORTS: weakref.WeakKeyDictionary[httpx.AsyncClient, OriginPools] = weakref.WeakKeyDictionary()


class NoCookies(CookieJar):
    """A jar that keeps nothing: no PostgREST, gateway or webhook cookie is needed, and parsing every answer's
    headers for cookies was 6 % of a sweep's CPU."""

    def extract_cookies(self, response: object, request: object) -> None:
        return None

    def add_cookie_header(self, request: object) -> None:
        return None


def make_http_client(envs: Iterable[EnvironmentConfig] = ()) -> httpx.AsyncClient:
    """The one shared client: no redirects (a redirect is itself a finding), explicit timeouts, no cookies, and
    one transport whose cost does not grow with the number of environments (bot/postgrest/transport.py).

    `envs` is accepted for the callers that name their environments; pools are made on first use, so a
    configured environment that is never asked costs nothing.
    """
    del envs
    transport = OriginPools(PER_ORIGIN_LIMITS, shared_ssl_context)
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(10.0, connect=5.0),
        transport=transport,
        cookies=NoCookies(),
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
    )
    _TRANSPORTS[client] = transport
    return client


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
    values = {"Accept": JSON_ACCEPT, **(headers or {}), "Accept-Encoding": ACCEPT_ENCODING, **auth_headers(api_key)}
    if client not in _TRANSPORTS:
        return client.build_request(
            method, url, headers=utf8_headers(values), params=params, json=json, content=content, timeout=timeout
        )
    # A client made here has no base URL, cookies or other defaults than these: written at once, as httpx's
    # merging would (which costs more than sending the request).
    merged = utf8_headers(_CLIENT_HEADERS)
    merged.update(utf8_headers(values))  # by name, whatever its case
    return httpx.Request(
        method,
        url,
        headers=merged,
        params=params,
        json=json,
        content=content,
        extensions={"timeout": timeout.as_dict()},
    )


async def send(client: httpx.AsyncClient, request: httpx.Request, cap: int) -> CappedAnswer:
    """Send and read at most `cap` decoded bytes (bot/httpread.py). Raises httpx.HTTPError like `client.send`,
    UndecodableBody when an answer came whose body cannot be decoded.

    A client made by `make_http_client` sends straight through its transport: the client's own layers (auth,
    redirects, cookies, event hooks) have nothing to do for it, and cost as much CPU as the request itself."""
    pools = _TRANSPORTS.get(client)
    if pools is None:
        return await send_capped(client, request, cap)
    return await pools.send_capped(request, cap)
