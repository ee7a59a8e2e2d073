"""Schema drift: what the database offers the API roles against what PostgREST actually serves.

The reload runbook's `check-schema-sync.sh` compared a count of `pg_tables` with the length of the OpenAPI
document: wrong on every axis (views, columns, functions, grants, schemas). This module compares object by
object, and only objects an API role may use, because:

- since 2026 Supabase no longer auto-grants new tables: an ungranted table is a permission problem that a
  reload cannot fix, so it is reported as `ungranted`, never as a stale cache;
- PostgREST caches every relation and column of the exposed schemas whatever the grants, so a cached but
  ungranted object is normal, not drift;
- a table granted column by column is served with those columns: `restricted` (by design), never `ungranted`.
  "May an API role use it" is the rule of bot/postgres/privileges.py, the one the diagnosis uses too.

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
(bot/postgres/relationships.py). Without the store only the configured probe objects can be asked about.

This module only runs a check: the catalog is read by bot/postgres/catalog.py, the API by
bot/postgrest/served.py, and the comparison and memory rules are pure (bot/core/drift_compare.py,
bot/core/drift_memory.py, bot/core/drift.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from pydantic import SecretStr

from bot.config import Target
from bot.core.catalog import Catalog
from bot.core.drift import (
    DriftMethod,
    DriftObjects,
    DriftReport,
    DriftStatus,
    compared_counts,
    nothing_served_note,
    restricted_objects,
    ungranted_objects,
)
from bot.core.drift_compare import compare
from bot.core.drift_memory import recalled, to_remember
from bot.core.records import RememberedObject
from bot.delivery.guard import StoreGuard
from bot.postgres.catalog import read_catalog
from bot.postgres.connect import DatabaseError, connect
from bot.postgres.relationships import read_foreign_keys
from bot.postgrest.served import (
    OpenApiView,
    ServedApi,
    read_openapi,
)


def _missing_dsn(target: Target) -> str:
    ref = target.config.database_dsn
    if ref is None:
        return "no database DSN configured for this environment (database_dsn): drift needs the catalog"
    return f"no database DSN: {ref.describe()} is not set or empty (drift needs the catalog)"


@dataclass(frozen=True)
class _Reporter:
    """Builds the run's report: what is not given is empty, requests and duration are taken at the end."""

    target: Target
    api: ServedApi
    started: float = field(default_factory=time.perf_counter)
    checked_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self, status: DriftStatus, **fields: Any) -> DriftReport:
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
        } | fields
        return DriftReport(
            env=self.target.name,
            status=status,
            requests=self.api.requests,
            duration_ms=(time.perf_counter() - self.started) * 1000,
            checked_at=self.checked_at,
            **values,
        )


async def _read_catalog(dsn: SecretStr, target: Target, connect_timeout: float, command_timeout: float) -> Catalog:
    env = target.config
    async with connect(dsn, connect_timeout=connect_timeout, command_timeout=command_timeout) as conn:
        catalog = await read_catalog(conn, env.exposed_schemas, env.api_roles)
        return dataclasses.replace(catalog, relationships=await read_foreign_keys(conn, env.exposed_schemas))


async def _read_documents(api: ServedApi, target: Target, method: str, max_body_bytes: int) -> list[OpenApiView]:
    if method == "probe":
        return []
    schemas = target.config.exposed_schemas
    return list(await asyncio.gather(*(read_openapi(api, s, max_body_bytes) for s in schemas)))


async def _recall(memory: StoreGuard | None, env: str) -> tuple[set[RememberedObject] | None, str | None]:
    """The last run's objects (None when there is no memory), and a note saying what that means."""
    if memory is None or not memory.available:
        return recalled(None, available=False, error=None)
    return recalled(await memory(lambda store: store.drift_memory(env)), available=True, error=memory.error)


def _served_view(
    target: Target, docs: list[OpenApiView], method: str, remembered: set[RememberedObject] | None
) -> tuple[dict[str, dict[str, frozenset[str]]] | None, str]:
    """The relations and columns the OpenAPI roots list per schema, or None and why each object is asked."""
    if method == "probe":
        return None, "OpenAPI root skipped on request: every object checked with its own request"
    unusable = [d for d in docs if d.relations is None]
    if unusable:
        dropped = (
            "columns dropped since the last run are checked one by one"
            if remembered is not None
            else "columns dropped from the database but still cached cannot be seen this way"
        )
        return None, f"{unusable[0].fallback_reason}: every object checked with its own request ({dropped})"
    return {s: d.relations or {} for s, d in zip(target.config.exposed_schemas, docs, strict=True)}, ""


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
    api = ServedApi(client, target, max_body_bytes)
    report = _Reporter(target, api)
    dsn = target.secrets.database_dsn
    if dsn is None:
        return report(DriftStatus.UNKNOWN, error=_missing_dsn(target))
    try:
        async with asyncio.timeout(budget_s):
            catalog, docs, (remembered, memory_note) = await asyncio.gather(
                _read_catalog(dsn, target, connect_timeout, command_timeout),
                _read_documents(api, target, method, max_body_bytes),
                _recall(memory, target.name),
            )
            fatal = next((d.fatal for d in docs if d.fatal), None)
            if fatal:
                return report(
                    DriftStatus.UNKNOWN,
                    error=fatal,
                    ungranted=ungranted_objects(catalog),
                    restricted=restricted_objects(catalog),
                    notes=catalog.notes,
                )
            served, view_note = _served_view(target, docs, method, remembered)
            found = await compare(api, target, catalog, served, remembered)
    except DatabaseError as err:
        return report(DriftStatus.UNKNOWN, error=f"cannot read the catalog: {err}")
    except TimeoutError:
        return report(DriftStatus.UNKNOWN, error=f"the drift check did not finish within {budget_s:g} s")

    if remembered is not None and memory is not None:
        if (visible := to_remember(catalog, found.keep, remembered)) is not None:
            await memory(lambda store: store.replace_drift_memory(target.name, list(visible)))
    notes = [*catalog.notes, view_note, memory_note, nothing_served_note(catalog, found)]
    return report(
        found.status,
        method=DriftMethod.OPENAPI if served is not None else DriftMethod.PROBE,
        missing_in_api=found.missing,
        extra_in_api=found.extra,
        ungranted=ungranted_objects(catalog),
        restricted=restricted_objects(catalog),
        unverified=tuple(sorted(found.unverified)),
        unclear_answer=api.undecided_answer if found.unverified else None,
        notes=tuple([n for n in notes if n] + sorted(found.notes)),
        compared=compared_counts(catalog, found),
        memory_used=bool(remembered),
    )
