"""Schema drift: what the database offers the API roles against what PostgREST actually serves.

The reload runbook's `check-schema-sync.sh` compared a count of `pg_tables` with the length of the OpenAPI
document: wrong on every axis (views, columns, functions, grants, schemas). This module compares object by
object, and only objects an API role may use, because:

- since 2026 Supabase no longer auto-grants new tables: an ungranted table is a permission problem that a
  reload cannot fix, so it is reported as `ungranted`, never as a stale cache;
- PostgREST caches every relation and column of the exposed schemas whatever the grants, so a cached but
  ungranted object is normal, not drift;
- a table granted column by column is served with those columns: `restricted` (by design), never `ungranted`.
  "May an API role use it" is the rule of bot/privileges.py, the one the diagnosis uses too.

What PostgREST 12 shows, measured on the real binary (see tests/bot/ops/test_drift.py):

- the OpenAPI root (`GET /`, one schema per `Accept-Profile`) lists the cached relations that the requesting
  role may use *now* (a live privilege query) with their cached columns: new relations and columns are absent
  until a reload, a dropped column stays, a dropped table vanishes at once;
- its `/rpc/...` paths come from a live query, not from the cache: useless for stale functions, so functions
  are always checked one by one: `GET /rpc/<fn>?<required args>` with an Accept type PostgREST cannot produce
  answers 415 PGRST107 when the function is cached (nothing runs: the lookup precedes negotiation) and
  404 PGRST202 when it is not. (`OPTIONS /rpc/<fn>` only finds functions callable without arguments.)
- `OPTIONS /<relation>` answers 404 (`{}`; v13+ PGRST205) while the relation is missing from the cache, and
  200 otherwise, whatever the grants;
- `POST /<relation>?columns=a,b` with `[]` answers 400 PGRST204 while a named column is missing from the cache;
  with the same unproducible Accept type PostgREST stops before inserting anything (415 PGRST107).

When the root cannot be read (401/403 from a gateway that refuses the key, a document over the body cap, not
JSON, OpenAPI disabled), every object is checked with those per-object requests instead.

Dropped objects leave no trace in the catalog and vanish from the OpenAPI root at once, so each run remembers
the API-visible objects in the incident store (drift memory) and the next run asks about those dropped since:
OPTIONS for relations, the RPC lookup for functions, the empty insert for columns (415 PGRST107 while the
column is still cached, 400 PGRST204 once the cache is fresh) and the embed for foreign keys
(bot/relationships.py). Without the store only the configured probe objects can be asked about.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

import asyncpg
import httpx

from bot.config import Target
from bot.core.classify import proxy_status_code
from bot.core.drift import DriftMethod, DriftObjects, DriftReport, DriftStatus
from bot.core.identifiers import columns_param_part, url_encoded
from bot.core.records import RememberedObject
from bot.delivery.outbox import StoreGuard
from bot.httpread import send_capped
from bot.postgres import privileges
from bot.postgres.connect import DatabaseError, connect
from bot.postgres.relationships import ForeignKey, embed_select, read_foreign_keys
from bot.postgrest.probe import auth_headers, request_timeout, utf8_headers

# A media type no PostgREST can produce: the request is looked up in the schema cache, then refused (PGRST107)
# before any SQL runs.
UNPRODUCIBLE_ACCEPT = "application/x-pgrst-ops-drift-probe"
OPENAPI_ACCEPT = "application/openapi+json, application/json;q=0.9"
PROBE_CONCURRENCY = 8
# PostgREST's rule (SchemaCache.hs): a function with unnamed arguments is callable only through a single
# unnamed argument of one of these types, sent as the whole request body.
UNNAMED_ARG_BODY = {"json": "application/json", "jsonb": "application/json", "text": "text/plain", "xml": "text/xml"}
# Per run: foreign keys checked by embedding, and remembered objects (dropped from the database since the last
# run) asked about again. The rest waits for the next run, and the report says so.
MAX_RELATIONSHIP_CHECKS = 200
MAX_VANISHED_CHECKS = 500


# ---------------------------------------------------------------------------------------------- catalog side


@dataclass(frozen=True)
class CatalogRelation:
    schema: str
    name: str
    usable: bool  # schema USAGE and a table or column privilege for at least one API role
    columns: tuple[str, ...]  # every column, in order
    usable_columns: frozenset[str]

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def access(self) -> privileges.Access:
        return privileges.relation_access(self.usable, self.columns, self.usable_columns)


@dataclass(frozen=True)
class CatalogFunction:
    schema: str
    name: str
    usable: bool  # schema USAGE and EXECUTE for at least one API role
    required_args: tuple[str, ...]  # named arguments without a default
    unnamed_arg_type: str | None  # the single unnamed argument's type, called through the body

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class Catalog:
    relations: tuple[CatalogRelation, ...]
    functions: tuple[CatalogFunction, ...]
    notes: tuple[str, ...]
    relationships: tuple[ForeignKey, ...] = ()  # foreign keys within one exposed schema


# Relations as PostgREST caches them (privileges.API_RELATION: partitions excluded), usability by the one rule.
_RELATIONS_SQL = f"""
with {privileges.api_roles_cte("$2")}
select n.nspname as schema, c.relname as name,
  exists (select 1 from api_roles r where {privileges.RELATION_USABLE}) as usable,
  coalesce(array_agg(a.attname::text order by a.attnum) filter (where a.attname is not null), '{{}}') as columns,
  coalesce(array_agg(a.attname::text) filter (where a.attname is not null and exists (
    select 1 from api_roles r where {privileges.COLUMN_USABLE}
  )), '{{}}') as usable_columns
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
left join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
where n.nspname = any($1::text[]) and {privileges.API_RELATION}
group by n.nspname, n.oid, c.relname, c.oid
order by 1, 2
"""

# Functions as PostgREST caches them (prokind 'f', not returning trigger, callable through the API: every
# input argument named, or a single unnamed one of a body type).
_FUNCTIONS_SQL = f"""
with {privileges.api_roles_cte("$2")},
args as (
  select p.oid,
    count(*) - count(arg.name) as unnamed,
    (array_agg(arg.type::regtype::text order by arg.idx))[1] as first_type,
    coalesce(array_agg(arg.name order by arg.idx)
      filter (where arg.name is not null and arg.name <> '' and arg.idx <= p.pronargs - p.pronargdefaults), '{{}}')
      as required
  from pg_proc p
  join pg_namespace n on n.oid = p.pronamespace,
  unnest(p.proargnames, p.proargtypes, p.proargmodes) with ordinality as arg(name, type, mode, idx)
  where n.nspname = any($1::text[]) and arg.type is not null
  group by p.oid
)
select n.nspname as schema, p.proname as name,
  exists (select 1 from api_roles r where {privileges.FUNCTION_USABLE}) as usable,
  coalesce(a.required, '{{}}') as required,
  case when coalesce(a.unnamed, 0) = 1 then a.first_type end as unnamed_type
from pg_proc p
join pg_namespace n on n.oid = p.pronamespace
left join args a on a.oid = p.oid
where n.nspname = any($1::text[])
  and p.prokind = 'f'
  and p.prorettype <> 'trigger'::regtype
  and (coalesce(a.unnamed, 0) = 0
       or (a.unnamed = 1 and a.first_type in ('bytea', 'json', 'jsonb', 'text', 'xml')))
order by 1, 2
"""


async def read_catalog(conn: asyncpg.Connection, schemas: Sequence[str], api_roles: Sequence[str]) -> Catalog:
    """What the database offers in the exposed schemas, and which objects an API role may use."""
    notes = []
    present_roles = {
        r["rolname"] for r in await conn.fetch("select rolname from pg_roles where rolname = any($1)", list(api_roles))
    }
    absent_roles = [r for r in api_roles if r not in present_roles]
    if absent_roles:
        notes.append(f"API role(s) {', '.join(absent_roles)} do not exist in the database")
    present_schemas = {
        r["nspname"]
        for r in await conn.fetch("select nspname from pg_namespace where nspname = any($1)", list(schemas))
    }
    absent_schemas = [s for s in schemas if s not in present_schemas]
    if absent_schemas:
        notes.append(f"exposed schema(s) {', '.join(absent_schemas)} do not exist in the database")
    relations = tuple(
        CatalogRelation(
            schema=r["schema"],
            name=r["name"],
            usable=r["usable"],
            columns=tuple(r["columns"]),
            usable_columns=frozenset(r["usable_columns"]),
        )
        for r in await conn.fetch(_RELATIONS_SQL, list(schemas), list(api_roles))
    )
    functions = tuple(
        CatalogFunction(
            schema=r["schema"],
            name=r["name"],
            usable=r["usable"],
            required_args=tuple(r["required"]),
            unnamed_arg_type=r["unnamed_type"],
        )
        for r in await conn.fetch(_FUNCTIONS_SQL, list(schemas), list(api_roles))
    )
    return Catalog(relations, functions, tuple(notes))


# ---------------------------------------------------------------------------------------------- API side


class Presence(StrEnum):
    SERVED = "served"
    ABSENT = "absent"
    UNKNOWN = "unknown"


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


class _Api:
    """Requests to one environment's REST API: key headers, timeouts, a body cap, bounded concurrency."""

    def __init__(self, client: httpx.AsyncClient, target: Target, max_body_bytes: int) -> None:
        env = target.config
        self._client = client
        self._base = env.rest_base
        self._max_body = max_body_bytes
        self._timeout = request_timeout(env.timeouts)
        self._headers = auth_headers(target.secrets.api_key)
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
        accept: str = "application/json",
        params: dict[str, str] | None = None,
        content: bytes | None = None,
        content_type: str | None = None,
        cap: int = 8192,
    ) -> _Answer:
        # GET/HEAD/OPTIONS pick the schema by Accept-Profile, writes by Content-Profile: send both.
        headers = utf8_headers({**self._headers, "Accept": accept, "Accept-Profile": schema, "Content-Profile": schema})
        if content_type:
            headers["Content-Type"] = content_type
            headers["Prefer"] = "return=minimal"
        async with self._slots:
            self.requests += 1
            try:
                request = self._client.build_request(
                    method,
                    f"{self._base}{path}",
                    params=params,
                    headers=headers,
                    content=content,
                    timeout=self._timeout,
                )
                answer = await send_capped(self._client, request, min(cap, self._max_body))
            except httpx.TimeoutException:
                return _Answer(None, None, b"", False, f"no answer within {self._timeout.read:g} s")
            except httpx.HTTPError as err:
                return _Answer(None, None, b"", False, f"request failed ({type(err).__name__})")
        code = _code_of(answer.body) or proxy_status_code(answer.headers)
        return _Answer(answer.status, code, answer.body, answer.truncated, None)


@dataclass(frozen=True)
class _OpenApi:
    """One schema's OpenAPI document reduced to relations and their columns, or why it cannot be used."""

    relations: dict[str, frozenset[str]] | None
    fallback_reason: str | None = None  # readable as a reason to probe object by object
    fatal: str | None = None  # the API itself is not answering: probes would fail too


async def _read_openapi(api: _Api, schema: str, max_body_bytes: int) -> _OpenApi:
    answer = await api.send("GET", "/", schema=schema, accept=OPENAPI_ACCEPT, cap=max_body_bytes)
    if answer.failure or (answer.status is not None and answer.status >= 500):
        return _OpenApi(None, fatal=f"the API does not answer ({answer.label})")
    if answer.code == "PGRST106":
        return _OpenApi(
            None,
            fatal=f"PostgREST does not serve schema '{schema}' (PGRST106): exposed_schemas does not match its db-schemas",
        )
    if answer.truncated:
        return _OpenApi(None, f"the OpenAPI root is larger than {max_body_bytes} bytes")
    if answer.status != 200:
        return _OpenApi(None, f"the OpenAPI root answered {answer.label}")
    try:
        doc = json.loads(answer.body)
    except (ValueError, UnicodeDecodeError):
        return _OpenApi(None, "the OpenAPI root is not JSON")
    definitions = doc.get("definitions") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or "paths" not in doc or not isinstance(definitions, dict | None):
        return _OpenApi(None, "the root is not an OpenAPI document")
    relations: dict[str, frozenset[str]] = {}
    for name, spec in (definitions or {}).items():
        props = spec.get("properties") if isinstance(spec, dict) else None
        relations[str(name)] = frozenset(props) if isinstance(props, dict) else frozenset()
    return _OpenApi(relations)


def _relation_presence(api: _Api, answer: _Answer) -> Presence:
    if api.undecided(answer):
        return Presence.UNKNOWN
    if answer.status == 404:
        # 12.x answers `{}` with no code, v13+ PGRST205; any other 404 is not PostgREST's cache talking
        # (a wrong URL behind a gateway must not turn every table into "missing").
        return Presence.ABSENT if answer.code == "PGRST205" or answer.body.strip() == b"{}" else Presence.UNKNOWN
    return Presence.SERVED if answer.status is not None and answer.status < 300 else Presence.UNKNOWN


async def _relation_served(api: _Api, schema: str, name: str) -> Presence:
    return _relation_presence(api, await api.send("OPTIONS", f"/{url_encoded(name)}", schema=schema))


def _lookup_presence(api: _Api, answer: _Answer, *, missing_code: str) -> Presence:
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


async def _columns_presence(api: _Api, schema: str, table: str, columns: Sequence[str]) -> Presence:
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


async def _missing_columns(api: _Api, schema: str, table: str, columns: Sequence[str]) -> tuple[list[str], bool]:
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


async def _function_served(api: _Api, schema: str, name: str, required: Sequence[str], unnamed: str | None) -> Presence:
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


async def _relationship_served(api: _Api, fk: ForeignKey) -> Presence:
    """Embed exactly this foreign key; the unproducible Accept stops PostgREST after the relationship lookup."""
    answer = await api.send(
        "GET",
        f"/{url_encoded(fk.table)}",
        schema=fk.schema,
        accept=UNPRODUCIBLE_ACCEPT,
        params={"select": embed_select(fk), "limit": "0"},
    )
    return _lookup_presence(api, answer, missing_code="PGRST200")


# ---------------------------------------------------------------------------------------------- memory
# What a drift run remembers (bot/store.py, drift_memory) so that the next one can ask PostgREST about objects
# dropped in between: a dropped relation vanishes from the OpenAPI root at once, so nothing else shows that
# the cache still serves it.

RELATION, COLUMN, FUNCTION, RELATIONSHIP = "relation", "column", "function", "relationship"


def _memory_of(catalog: Catalog) -> set[RememberedObject]:
    """The API-visible objects of the catalog, with what it takes to ask about each one again.

    Foreign keys are not here: only those an embed showed served are remembered (by _compare_relationships),
    so the ones no run has checked yet go first next time.
    """
    usable = [r for r in catalog.relations if r.usable]
    objects = {RememberedObject(RELATION, r.schema, r.name) for r in usable}
    objects.update(RememberedObject(COLUMN, r.schema, r.name, c) for r in usable for c in r.columns)
    shapes: dict[tuple[str, str], set[tuple[tuple[str, ...], str | None]]] = {}
    for fn in catalog.functions:
        if fn.usable:
            shapes.setdefault((fn.schema, fn.name), set()).add((fn.required_args, fn.unnamed_arg_type))
    objects.update(
        RememberedObject(FUNCTION, schema, name, detail=json.dumps(sorted([list(a), u] for a, u in found)))
        for (schema, name), found in shapes.items()
    )
    return objects


def _remembered_relationship(fk: ForeignKey) -> RememberedObject:
    detail = json.dumps({"other": fk.other, "column": fk.column, "other_column": fk.other_column})
    return RememberedObject(RELATIONSHIP, fk.schema, fk.table, fk.constraint, detail)


def _remembered_function(entry: RememberedObject) -> list[tuple[list[str], str | None]]:
    try:
        shapes = json.loads(entry.detail)
        return [([str(a) for a in args], None if unnamed is None else str(unnamed)) for args, unnamed in shapes]
    except (ValueError, TypeError):
        return [([], None)]


def _remembered_foreign_key(entry: RememberedObject) -> ForeignKey | None:
    try:
        detail = json.loads(entry.detail)
        return ForeignKey(
            entry.schema,
            entry.name,
            str(detail["other"]),
            entry.part,
            str(detail["column"]),
            str(detail["other_column"]),
        )
    except (ValueError, TypeError, KeyError):
        return None


@dataclass(frozen=True)
class _Vanished:
    """Remembered objects the catalog no longer has (in the exposed schemas)."""

    relations: list[RememberedObject]
    columns: dict[tuple[str, str], list[RememberedObject]]  # of relations that still exist
    functions: list[RememberedObject]
    relationships: list[RememberedObject]  # between relations that still exist
    deferred: list[RememberedObject]  # over this run's cap: kept for the next run


def _vanished(remembered: Iterable[RememberedObject], catalog: Catalog, schemas: Sequence[str]) -> _Vanished:
    relations = {(r.schema, r.name): r for r in catalog.relations}
    functions = {(f.schema, f.name) for f in catalog.functions}
    constraints = {(fk.schema, fk.table, fk.constraint) for fk in catalog.relationships}
    found = _Vanished([], {}, [], [], [])
    budget = MAX_VANISHED_CHECKS
    for entry in sorted(remembered, key=lambda e: (e.kind, e.schema, e.name, e.part)):
        if entry.schema not in schemas:
            continue
        relation = relations.get((entry.schema, entry.name))
        if entry.kind == RELATION:
            gone = relation is None
            bucket: list[RememberedObject] = found.relations
        elif entry.kind == COLUMN:
            gone = relation is not None and entry.part not in relation.columns
            bucket = found.columns.setdefault((entry.schema, entry.name), [])
        elif entry.kind == FUNCTION:
            gone = (entry.schema, entry.name) not in functions
            bucket = found.functions
        elif entry.kind == RELATIONSHIP:
            fk = _remembered_foreign_key(entry)
            gone = (
                fk is not None
                and relation is not None
                and (entry.schema, fk.other) in relations
                and (entry.schema, entry.name, entry.part) not in constraints
            )
            bucket = found.relationships
        else:
            continue
        if not gone:
            continue
        if budget <= 0:
            found.deferred.append(entry)
            continue
        budget -= 1
        bucket.append(entry)
    for key in [k for k, v in found.columns.items() if not v]:
        del found.columns[key]
    return found


# ---------------------------------------------------------------------------------------------- compare


@dataclass
class _Findings:
    missing_tables: set[str] = field(default_factory=set)
    missing_columns: set[str] = field(default_factory=set)
    missing_functions: set[str] = field(default_factory=set)
    missing_relationships: set[str] = field(default_factory=set)
    extra_tables: set[str] = field(default_factory=set)
    extra_columns: set[str] = field(default_factory=set)
    extra_functions: set[str] = field(default_factory=set)
    extra_relationships: set[str] = field(default_factory=set)
    unverified: set[str] = field(default_factory=set)
    unserved: set[tuple[str, str]] = field(default_factory=set)  # relations missing from the cache or undecided
    notes: list[str] = field(default_factory=list)
    keep: set[RememberedObject] = field(default_factory=set)  # dropped objects to ask about again next run
    relationships_checked: int = 0


async def _compare_relation(
    api: _Api,
    rel: CatalogRelation,
    served: dict[str, frozenset[str]] | None,
    found: _Findings,
    vanished_columns: Sequence[RememberedObject] = (),
) -> None:
    usable_columns = [c for c in rel.columns if c in rel.usable_columns]
    if served is not None and rel.name in served:
        cached = served[rel.name]
        found.missing_columns.update(f"{rel.qualified}.{c}" for c in usable_columns if c not in cached)
        found.extra_columns.update(f"{rel.qualified}.{c}" for c in cached if c not in rel.columns)
        found.keep.update(v for v in vanished_columns if v.part in cached)
        return
    # Not in the document (or no document): the requesting role may just not see it; ask the cache itself.
    presence = await _relation_served(api, rel.schema, rel.name)
    if presence is not Presence.SERVED:
        found.unserved.add((rel.schema, rel.name))
    if presence is Presence.ABSENT:
        found.missing_tables.add(rel.qualified)
    elif presence is Presence.UNKNOWN:
        found.unverified.add(rel.qualified)
        found.keep.update(vanished_columns)
    else:
        missing, undecided = await _missing_columns(api, rel.schema, rel.name, usable_columns)
        found.missing_columns.update(f"{rel.qualified}.{c}" for c in missing)
        if undecided:
            found.unverified.add(f"{rel.qualified} (columns)")
        await _compare_dropped_columns(api, rel, vanished_columns, found)


async def _compare_dropped_columns(
    api: _Api, rel: CatalogRelation, vanished: Sequence[RememberedObject], found: _Findings
) -> None:
    """Columns dropped since the last run: 415 PGRST107 while the cache still has them, PGRST204 once fresh."""
    if not vanished:
        return
    names = [v.part for v in vanished]
    gone_from_cache, undecided = await _missing_columns(api, rel.schema, rel.name, names)
    if undecided:
        found.unverified.add(f"{rel.qualified} (dropped columns)")
        found.keep.update(vanished)
        return
    still_cached = [v for v in vanished if v.part not in gone_from_cache]
    found.extra_columns.update(f"{rel.qualified}.{v.part}" for v in still_cached)
    found.keep.update(still_cached)


async def _compare_function(api: _Api, overloads: Sequence[CatalogFunction], found: _Findings) -> None:
    shapes = {(f.required_args, f.unnamed_arg_type) for f in overloads if f.usable}
    first = overloads[0]
    results = await asyncio.gather(
        *(_function_served(api, first.schema, first.name, req, unnamed) for req, unnamed in sorted(shapes, key=str))
    )
    if Presence.ABSENT in results:
        found.missing_functions.add(first.qualified)
    elif Presence.UNKNOWN in results:
        found.unverified.add(first.qualified)


async def _compare_dropped(api: _Api, vanished: _Vanished, found: _Findings) -> None:
    """Relations and functions dropped since the last run: still served means the cache still holds them."""

    async def relation(entry: RememberedObject) -> None:
        presence = await _relation_served(api, entry.schema, entry.name)
        qualified = f"{entry.schema}.{entry.name}"
        if presence is Presence.SERVED:
            found.extra_tables.add(qualified)
        elif presence is Presence.UNKNOWN:
            found.unverified.add(qualified)
        if presence is not Presence.ABSENT:
            found.keep.add(entry)

    async def function(entry: RememberedObject) -> None:
        results = await asyncio.gather(
            *(_function_served(api, entry.schema, entry.name, a, u) for a, u in _remembered_function(entry))
        )
        qualified = f"{entry.schema}.{entry.name}"
        if Presence.SERVED in results:
            found.extra_functions.add(qualified)
        elif Presence.UNKNOWN in results:
            found.unverified.add(qualified)
        if any(r is not Presence.ABSENT for r in results):
            found.keep.add(entry)

    await asyncio.gather(*map(relation, vanished.relations), *map(function, vanished.functions))


async def _compare_relationships(
    api: _Api, catalog: Catalog, remembered: set[RememberedObject] | None, vanished: _Vanished, found: _Findings
) -> None:
    """Foreign keys between served relations, by embedding: new ones the cache lacks, dropped ones it still has.

    At most MAX_RELATIONSHIP_CHECKS per run, those no run has seen served yet first (new ones, or not reached
    yet); a foreign key seen served is remembered until it is dropped.
    """
    served = {(r.schema, r.name) for r in catalog.relations if r.usable} - found.unserved
    candidates = [fk for fk in catalog.relationships if {(fk.schema, fk.table), (fk.schema, fk.other)} <= served]
    known = {(e.schema, e.name, e.part): e for e in remembered or () if e.kind == RELATIONSHIP}
    candidates.sort(key=lambda fk: (fk.schema, fk.table, fk.constraint) in known)
    checked = candidates[:MAX_RELATIONSHIP_CHECKS]
    checked_keys = {(fk.schema, fk.table, fk.constraint) for fk in checked}
    found.keep.update(
        known[key]
        for fk in catalog.relationships
        if (key := (fk.schema, fk.table, fk.constraint)) in known and key not in checked_keys
    )
    if len(candidates) > len(checked):
        found.notes.append(
            f"{len(checked)} of {len(candidates)} foreign keys checked by embedding (at most "
            f"{MAX_RELATIONSHIP_CHECKS} per run)"
        )
    found.relationships_checked = len(checked)

    async def current(fk: ForeignKey) -> None:
        presence = await _relationship_served(api, fk)
        if presence is Presence.SERVED:
            found.keep.add(_remembered_relationship(fk))
        elif presence is Presence.ABSENT:
            found.missing_relationships.add(fk.qualified)
        elif presence is Presence.UNKNOWN:
            found.unverified.add(fk.qualified)

    async def dropped(entry: RememberedObject) -> None:
        fk = _remembered_foreign_key(entry)
        assert fk is not None  # _vanished keeps only entries that parse
        presence = await _relationship_served(api, fk)
        if presence is Presence.SERVED:
            found.extra_relationships.add(fk.qualified)
        elif presence is Presence.UNKNOWN:
            found.unverified.add(fk.qualified)
        if presence is not Presence.ABSENT:
            found.keep.add(entry)

    await asyncio.gather(*map(current, checked), *map(dropped, vanished.relationships))


async def _check_configured_leftovers(api: _Api, target: Target, catalog: Catalog, found: _Findings) -> None:
    """Configured probe tables/functions gone from the database: still served means the cache holds them.

    A dropped relation vanishes from the OpenAPI document at once (its privilege query is live), so only names
    we already know can show that the cache still has them.
    """
    env = target.config
    known_relations = {(r.schema, r.name) for r in catalog.relations}
    known_functions = {(f.schema, f.name) for f in catalog.functions}

    async def table(schema: str, name: str) -> None:
        presence = await _relation_served(api, schema, name)
        if presence is Presence.SERVED:
            found.extra_tables.add(f"{schema}.{name}")
        elif presence is Presence.ABSENT:
            found.notes.append(f"configured probe table {schema}.{name} exists neither in the database nor in the API")

    async def function(schema: str, name: str, args: list[str]) -> None:
        presence = await _function_served(api, schema, name, args, None)
        if presence is Presence.SERVED:
            found.extra_functions.add(f"{schema}.{name}")
        elif presence is Presence.ABSENT:
            found.notes.append(f"configured probe function {schema}.{name} does not exist in the database")

    await asyncio.gather(
        *(
            table(t.schema_in(env), t.name)
            for t in env.probe_tables
            if (t.schema_in(env), t.name) not in known_relations
        ),
        *(
            function(f.schema_in(env), f.name, f.args)
            for f in env.probe_functions
            if (f.schema_in(env), f.name) not in known_functions
        ),
    )


async def _compare(
    api: _Api,
    target: Target,
    catalog: Catalog,
    served: dict[str, dict[str, frozenset[str]]] | None,
    remembered: set[RememberedObject] | None,
) -> _Findings:
    found = _Findings()
    vanished = _vanished(remembered or (), catalog, target.config.exposed_schemas)
    found.keep.update(vanished.deferred)
    if vanished.deferred:
        found.notes.append(
            f"{len(vanished.deferred)} objects dropped since the last run are left for the next one "
            f"(at most {MAX_VANISHED_CHECKS} per run)"
        )
    for schema, relations in (served or {}).items():
        known = {r.name for r in catalog.relations if r.schema == schema}
        # Cannot normally happen (the document's privilege filter is live), kept for other versions.
        found.extra_tables.update(f"{schema}.{name}" for name in relations if name not in known)
    functions: dict[tuple[str, str], list[CatalogFunction]] = {}
    for fn in catalog.functions:
        if fn.usable:
            functions.setdefault((fn.schema, fn.name), []).append(fn)
    await asyncio.gather(
        *(
            _compare_relation(
                api,
                rel,
                served.get(rel.schema) if served is not None else None,
                found,
                vanished.columns.get((rel.schema, rel.name), ()),
            )
            for rel in catalog.relations
            if rel.usable
        ),
        *(_compare_function(api, overloads, found) for overloads in functions.values()),
        _compare_dropped(api, vanished, found),
        _check_configured_leftovers(api, target, catalog, found),
    )
    # After the relations: an embed of a relation missing from the cache says nothing about its foreign key.
    await _compare_relationships(api, catalog, remembered, vanished, found)
    return found


def _ungranted(catalog: Catalog) -> DriftObjects:
    """Objects no API role may use: a GRANT is missing (a reload cannot help)."""
    usable_functions = {f.qualified for f in catalog.functions if f.usable}
    return DriftObjects.of(
        tables=(r.qualified for r in catalog.relations if r.access is privileges.Access.NONE),
        functions=(f.qualified for f in catalog.functions if f.qualified not in usable_functions),
    )


def _restricted(catalog: Catalog) -> DriftObjects:
    """Tables the API roles may use only some columns of: a deliberate column-level grant, not something to fix."""
    restricted = [r for r in catalog.relations if r.access is privileges.Access.RESTRICTED]
    return DriftObjects.of(
        tables=(r.qualified for r in restricted),
        columns=(f"{r.qualified}.{c}" for r in restricted for c in r.columns if c not in r.usable_columns),
    )


def _compared_counts(catalog: Catalog, found: _Findings) -> dict[str, int]:
    usable = [r for r in catalog.relations if r.usable]
    return {
        "tables": len(usable),
        "columns": sum(len(r.usable_columns) for r in usable),
        "functions": len({f.qualified for f in catalog.functions if f.usable}),
        "relationships": found.relationships_checked,
    }


def _missing_dsn(target: Target) -> str:
    ref = target.config.database_dsn
    if ref is None:
        return "no database DSN configured for this environment (database_dsn): drift needs the catalog"
    return f"no database DSN: {ref.describe()} is not set or empty (drift needs the catalog)"


async def _recall(memory: StoreGuard | None, env: str) -> tuple[set[RememberedObject] | None, str | None]:
    """The last run's objects (None when there is no memory), and a note saying what that means."""
    blind = "objects dropped from the database are checked only for the configured probe tables and functions"
    if memory is None or not memory.available:
        return None, f"no drift memory (the incident store is not available here): {blind}"
    remembered = await memory(lambda store: store.drift_memory(env))
    if remembered is None:
        return None, f"drift memory unavailable ({memory.error}): {blind}"
    if not remembered:
        return set(), "first run with drift memory: objects dropped from now on will be found"
    return set(remembered), None


async def check_drift(
    client: httpx.AsyncClient,
    target: Target,
    *,
    max_body_bytes: int,
    connect_timeout: float,
    command_timeout: float,
    method: Literal["auto", "probe"] = "auto",
    budget_s: float = 60.0,
    memory: StoreGuard | None = None,
) -> DriftReport:
    """Compare the catalog with what PostgREST serves. Never raises for database, store or HTTP trouble.

    `method="probe"` skips the OpenAPI root; `budget_s` bounds the whole check (the result is then unknown).
    `memory` (the incident store) recalls the objects of the last run, so that those dropped since are asked
    about one by one, and remembers this run's; without it only configured probe objects are (today's view).
    """
    started = time.perf_counter()
    checked_at = datetime.now(UTC)
    api = _Api(client, target, max_body_bytes)

    def report(status: DriftStatus, **fields: Any) -> DriftReport:
        empty = DriftObjects()
        values: dict[str, Any] = {
            "method": None,
            "missing_in_api": empty,
            "extra_in_api": empty,
            "ungranted": empty,
            "restricted": empty,
            "unverified": (),
            "unclear_answer": None,
            "notes": (),
            "error": None,
            "compared": {},
            "memory_used": False,
        }
        values.update(fields)
        return DriftReport(
            env=target.name,
            status=status,
            requests=api.requests,
            duration_ms=(time.perf_counter() - started) * 1000,
            checked_at=checked_at,
            **values,
        )

    dsn = target.secrets.database_dsn
    if dsn is None:
        return report(DriftStatus.UNKNOWN, error=_missing_dsn(target))
    env = target.config

    async def catalog_of() -> Catalog:
        async with connect(dsn, connect_timeout=connect_timeout, command_timeout=command_timeout) as conn:
            catalog = await read_catalog(conn, env.exposed_schemas, env.api_roles)
            return dataclasses.replace(catalog, relationships=await read_foreign_keys(conn, env.exposed_schemas))

    async def documents() -> list[_OpenApi]:
        if method == "probe":
            return []
        return list(await asyncio.gather(*(_read_openapi(api, s, max_body_bytes) for s in env.exposed_schemas)))

    try:
        async with asyncio.timeout(budget_s):
            catalog, docs, (remembered, memory_note) = await asyncio.gather(
                catalog_of(), documents(), _recall(memory, target.name)
            )
            fatal = next((d.fatal for d in docs if d.fatal), None)
            if fatal:
                return report(
                    DriftStatus.UNKNOWN,
                    error=fatal,
                    ungranted=_ungranted(catalog),
                    restricted=_restricted(catalog),
                    notes=catalog.notes,
                )
            notes = list(catalog.notes)
            served: dict[str, dict[str, frozenset[str]]] | None = None
            if method == "probe":
                notes.append("OpenAPI root skipped on request: every object checked with its own request")
            elif any(d.relations is None for d in docs):
                reason = next(d.fallback_reason for d in docs if d.relations is None)
                dropped = (
                    "columns dropped since the last run are checked one by one"
                    if remembered is not None
                    else "columns dropped from the database but still cached cannot be seen this way"
                )
                notes.append(f"{reason}: every object checked with its own request ({dropped})")
            else:
                served = {s: d.relations or {} for s, d in zip(env.exposed_schemas, docs, strict=True)}
            notes += [memory_note] if memory_note else []
            found = await _compare(api, target, catalog, served, remembered)
    except DatabaseError as err:
        return report(DriftStatus.UNKNOWN, error=f"cannot read the catalog: {err}")
    except TimeoutError:
        return report(DriftStatus.UNKNOWN, error=f"the drift check did not finish within {budget_s:g} s")

    usable_tables = sum(1 for r in catalog.relations if r.usable)
    if usable_tables > 1 and len(found.missing_tables) == usable_tables:
        notes.append("no usable relation is served at all: does the DSN point at the database PostgREST serves?")
    if remembered is not None and memory is not None:
        now_visible = _memory_of(catalog) | found.keep
        if now_visible != remembered:
            await memory(lambda store: store.replace_drift_memory(target.name, list(now_visible)))
    missing = DriftObjects.of(
        found.missing_tables, found.missing_columns, found.missing_functions, found.missing_relationships
    )
    extra = DriftObjects.of(found.extra_tables, found.extra_columns, found.extra_functions, found.extra_relationships)
    if missing or extra:
        status = DriftStatus.STALE
    elif found.unverified:
        status = DriftStatus.UNKNOWN
    else:
        status = DriftStatus.IN_SYNC
    return report(
        status,
        method=DriftMethod.OPENAPI if served is not None else DriftMethod.PROBE,
        missing_in_api=missing,
        extra_in_api=extra,
        ungranted=_ungranted(catalog),
        restricted=_restricted(catalog),
        unverified=tuple(sorted(found.unverified)),
        unclear_answer=api.undecided_answer if found.unverified else None,
        notes=tuple(notes + sorted(found.notes)),
        compared=_compared_counts(catalog, found),
        memory_used=bool(remembered),
    )
