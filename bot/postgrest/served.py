"""What PostgREST serves: the OpenAPI root and the per-object lookups of the drift check.

Each lookup asks the schema cache about one object (a relation, columns, a function, a foreign key) and
answers served, absent or unknown; how PostgREST 12 answers each request is told in bot/ops/drift.py.
ServedApi implements bot.core.drift.ServedLookup, so the comparison itself stays pure. Requests are built and
sent by bot/postgrest/requests.py; may import httpx and bot.core, nothing of bot/ops or bot/postgres.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from bot.config import Target
from bot.core.classify import proxy_status_code
from bot.core.drift import Presence
from bot.core.foreign_keys import ForeignKey, embed_select
from bot.core.identifiers import columns_param_part, url_encoded
from bot.postgrest.requests import (
    JSON_ACCEPT,
    UNPRODUCIBLE_ACCEPT,
    build_request,
    read_profile,
    request_timeout,
    send,
    write_profile,
)

OPENAPI_ACCEPT = "application/openapi+json, application/json;q=0.9"
PROBE_CONCURRENCY = 8


# PostgREST's rule (SchemaCache.hs): a function with unnamed arguments is callable only through a single
# unnamed argument of one of these types, sent as the whole request body.
UNNAMED_ARG_BODY = {"json": "application/json", "jsonb": "application/json", "text": "text/plain", "xml": "text/xml"}


@dataclass(frozen=True)
class _Answer:
    status: int | None
    code: str | None
    body: bytes
    truncated: bool
    failure: str | None  # transport failure, already worded

    @property
    def label(self) -> str:
        if self.failure:
            return self.failure
        return f"HTTP {self.status}" + (f" {self.code}" if self.code else "")


def _code_of(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    code = data.get("code") if isinstance(data, dict) else None
    return str(code) if code is not None else None


def _undecided(answer: _Answer) -> bool:
    """No answer about the schema cache: transport trouble, server errors, auth or request-parsing refusals.

    PGRST1xx are request errors raised before the cache lookup, except PGRST107 (media type), which PostgREST
    raises after it; PGRST3xx are JWT errors. An answer over the body cap is not PostgREST's (its answers to
    these probes are tiny): a gateway page or a gzip bomb says nothing about the cache.
    """
    if answer.failure or answer.status is None or answer.status >= 500 or answer.truncated:
        return True
    code = answer.code or ""
    return code.startswith("PGRST3") or (code.startswith("PGRST1") and code != "PGRST107")


class ServedApi:
    """Requests to one environment's REST API: key headers, timeouts, a body cap, bounded concurrency."""

    def __init__(self, client: httpx.AsyncClient, target: Target, max_body_bytes: int) -> None:
        env = target.config
        self._client = client
        self._base = env.rest_base
        self._max_body = max_body_bytes
        self._timeout = request_timeout(env.timeouts)
        self._api_key = target.secrets.api_key
        self._slots = asyncio.Semaphore(PROBE_CONCURRENCY)
        self.requests = 0
        self.undecided_answer: str | None = None  # the first answer that said nothing about the cache

    def undecided(self, answer: _Answer) -> bool:
        if _undecided(answer):
            self.undecided_answer = self.undecided_answer or answer.label
            return True
        return False

    async def send(
        self,
        method: str,
        path: str,
        *,
        schema: str,
        accept: str = JSON_ACCEPT,
        params: dict[str, str] | None = None,
        content: bytes | None = None,
        content_type: str | None = None,
        cap: int = 8192,
    ) -> _Answer:
        # GET/HEAD/OPTIONS pick the schema by Accept-Profile, writes by Content-Profile: send both.
        headers = {"Accept": accept, **read_profile(schema), **write_profile(schema)}
        if content_type:
            headers |= {"Content-Type": content_type, "Prefer": "return=minimal"}
        async with self._slots:
            self.requests += 1
            try:
                request = build_request(
                    self._client,
                    method,
                    f"{self._base}{path}",
                    api_key=self._api_key,
                    timeout=self._timeout,
                    headers=headers,
                    params=params,
                    content=content,
                )
                answer = await send(self._client, request, min(cap, self._max_body))
            except httpx.TimeoutException:
                return _Answer(None, None, b"", False, f"no answer within {self._timeout.read:g} s")
            except httpx.HTTPError as err:
                return _Answer(None, None, b"", False, f"request failed ({type(err).__name__})")
        code = _code_of(answer.body) or proxy_status_code(answer.headers)
        return _Answer(answer.status, code, answer.body, answer.truncated, None)

    # The lookups the comparison asks for (bot.core.drift.ServedLookup).

    async def relation(self, schema: str, name: str) -> Presence:
        return _relation_presence(self, await self.send("OPTIONS", f"/{url_encoded(name)}", schema=schema))

    async def missing_columns(self, schema: str, table: str, columns: Sequence[str]) -> tuple[list[str], bool]:
        return await _missing_columns(self, schema, table, columns)

    async def function(self, schema: str, name: str, required: Sequence[str], unnamed: str | None) -> Presence:
        return await _function_served(self, schema, name, required, unnamed)

    async def relationship(self, fk: ForeignKey) -> Presence:
        return await _relationship_served(self, fk)


@dataclass(frozen=True)
class OpenApiView:
    """One schema's OpenAPI document reduced to relations and their columns, or why it cannot be used."""

    relations: dict[str, frozenset[str]] | None
    fallback_reason: str | None = None  # readable as a reason to probe object by object
    fatal: str | None = None  # the API itself is not answering: probes would fail too


async def read_openapi(api: ServedApi, schema: str, max_body_bytes: int) -> OpenApiView:
    answer = await api.send("GET", "/", schema=schema, accept=OPENAPI_ACCEPT, cap=max_body_bytes)
    if answer.failure or (answer.status is not None and answer.status >= 500):
        return OpenApiView(None, fatal=f"the API does not answer ({answer.label})")
    if answer.code == "PGRST106":
        return OpenApiView(
            None,
            fatal=f"PostgREST does not serve schema '{schema}' (PGRST106): exposed_schemas does not match its db-schemas",
        )
    if answer.truncated:
        return OpenApiView(None, f"the OpenAPI root is larger than {max_body_bytes} bytes")
    if answer.status != 200:
        return OpenApiView(None, f"the OpenAPI root answered {answer.label}")
    try:
        doc = json.loads(answer.body)
    except (ValueError, UnicodeDecodeError):
        return OpenApiView(None, "the OpenAPI root is not JSON")
    definitions = doc.get("definitions") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or "paths" not in doc or not isinstance(definitions, dict | None):
        return OpenApiView(None, "the root is not an OpenAPI document")
    relations: dict[str, frozenset[str]] = {}
    for name, spec in (definitions or {}).items():
        props = spec.get("properties") if isinstance(spec, dict) else None
        relations[str(name)] = frozenset(props) if isinstance(props, dict) else frozenset()
    return OpenApiView(relations)


def _relation_presence(api: ServedApi, answer: _Answer) -> Presence:
    if api.undecided(answer):
        return Presence.UNKNOWN
    if answer.status == 404:
        # 12.x answers `{}` with no code, v13+ PGRST205; any other 404 is not PostgREST's cache talking
        # (a wrong URL behind a gateway must not turn every table into "missing").
        return Presence.ABSENT if answer.code == "PGRST205" or answer.body.strip() == b"{}" else Presence.UNKNOWN
    return Presence.SERVED if answer.status is not None and answer.status < 300 else Presence.UNKNOWN


def _lookup_presence(api: ServedApi, answer: _Answer, *, missing_code: str) -> Presence:
    """A column or function lookup: `missing_code` while the cache lacks it; proof of a passed lookup otherwise.

    Passed: 415/406 PGRST107 (our unproducible media type), 300 PGRST201/203 (ambiguous), a PostgreSQL
    SQLSTATE (the request reached the database), or a success. A bare 401/403 from a gateway proves nothing.
    """
    code = answer.code or ""
    if code == missing_code:
        return Presence.ABSENT
    if api.undecided(answer) or answer.status is None:
        return Presence.UNKNOWN
    if answer.status < 300 or code in ("PGRST107", "PGRST201", "PGRST203") or (code and not code.startswith("PGRST")):
        return Presence.SERVED
    api.undecided_answer = api.undecided_answer or answer.label
    return Presence.UNKNOWN


async def _columns_presence(api: ServedApi, schema: str, table: str, columns: Sequence[str]) -> Presence:
    """Whether every named column is in the cache: an empty insert PostgREST refuses before running it."""
    answer = await api.send(
        "POST",
        f"/{url_encoded(table)}",
        schema=schema,
        accept=UNPRODUCIBLE_ACCEPT,
        params={"columns": ",".join(columns_param_part(c) for c in columns)},
        content=b"[]",
        content_type="application/json",
    )
    return _lookup_presence(api, answer, missing_code="PGRST204")


async def _missing_columns(api: ServedApi, schema: str, table: str, columns: Sequence[str]) -> tuple[list[str], bool]:
    """The columns missing from the cache (PGRST204 names only the first one, so bisect), and if any was undecided."""
    if not columns:
        return [], False
    presence = await _columns_presence(api, schema, table, columns)
    if presence is Presence.SERVED:
        return [], False
    if presence is Presence.UNKNOWN:
        return [], True
    if len(columns) == 1:
        return list(columns), False
    middle = len(columns) // 2
    (left, left_unknown), (right, right_unknown) = await asyncio.gather(
        _missing_columns(api, schema, table, columns[:middle]),
        _missing_columns(api, schema, table, columns[middle:]),
    )
    return left + right, left_unknown or right_unknown


async def _function_served(
    api: ServedApi, schema: str, name: str, required: Sequence[str], unnamed: str | None
) -> Presence:
    if unnamed is not None:
        # Called through the body; PostgREST refuses the media type before running it.
        answer = await api.send(
            "POST",
            f"/rpc/{url_encoded(name)}",
            schema=schema,
            accept=UNPRODUCIBLE_ACCEPT,
            content=b"{}" if unnamed in ("json", "jsonb") else b"",
            content_type=UNNAMED_ARG_BODY.get(unnamed, "application/octet-stream"),
        )
    else:
        # GET: should a future PostgREST run it after all, it runs read-only.
        answer = await api.send(
            "GET",
            f"/rpc/{url_encoded(name)}",
            schema=schema,
            accept=UNPRODUCIBLE_ACCEPT,
            params=dict.fromkeys(required, ""),
        )
    return _lookup_presence(api, answer, missing_code="PGRST202")


async def _relationship_served(api: ServedApi, fk: ForeignKey) -> Presence:
    """Embed exactly this foreign key; the unproducible Accept stops PostgREST after the relationship lookup."""
    answer = await api.send(
        "GET",
        f"/{url_encoded(fk.table)}",
        schema=fk.schema,
        accept=UNPRODUCIBLE_ACCEPT,
        params={"select": embed_select(fk), "limit": "0"},
    )
    return _lookup_presence(api, answer, missing_code="PGRST200")
