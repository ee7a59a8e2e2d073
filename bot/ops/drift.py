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
import time
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from bot.config import Target
from bot.core.drift import (
    DriftMethod,
    DriftObjects,
    DriftReport,
    DriftStatus,
    compared_counts,
    restricted_objects,
    ungranted_objects,
)
from bot.core.drift_compare import compare
from bot.core.drift_memory import memory_of
from bot.core.records import RememberedObject
from bot.delivery.outbox import StoreGuard
from bot.postgres.catalog import Catalog, read_catalog
from bot.postgres.connect import DatabaseError, connect
from bot.postgres.relationships import read_foreign_keys
from bot.postgrest.served import (
    OpenApiView,
    ServedApi,
    read_openapi,
)

# ---------------------------------------------------------------------------------------------- memory
# What a drift run remembers (bot/store.py, drift_memory) so that the next one can ask PostgREST about objects
# dropped in between: a dropped relation vanishes from the OpenAPI root at once, so nothing else shows that
# the cache still serves it.


# ---------------------------------------------------------------------------------------------- compare


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
    api = ServedApi(client, target, max_body_bytes)

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

    async def documents() -> list[OpenApiView]:
        if method == "probe":
            return []
        return list(await asyncio.gather(*(read_openapi(api, s, max_body_bytes) for s in env.exposed_schemas)))

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
                    ungranted=ungranted_objects(catalog),
                    restricted=restricted_objects(catalog),
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
            found = await compare(api, target, catalog, served, remembered)
    except DatabaseError as err:
        return report(DriftStatus.UNKNOWN, error=f"cannot read the catalog: {err}")
    except TimeoutError:
        return report(DriftStatus.UNKNOWN, error=f"the drift check did not finish within {budget_s:g} s")

    usable_tables = sum(1 for r in catalog.relations if r.usable)
    if usable_tables > 1 and len(found.missing_tables) == usable_tables:
        notes.append("no usable relation is served at all: does the DSN point at the database PostgREST serves?")
    if remembered is not None and memory is not None:
        now_visible = memory_of(catalog) | found.keep
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
        ungranted=ungranted_objects(catalog),
        restricted=restricted_objects(catalog),
        unverified=tuple(sorted(found.unverified)),
        unclear_answer=api.undecided_answer if found.unverified else None,
        notes=tuple(notes + sorted(found.notes)),
        compared=compared_counts(catalog, found),
        memory_used=bool(remembered),
    )
