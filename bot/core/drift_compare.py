"""The drift comparison: the catalog's usable objects against what the schema cache serves (pure).

It asks a ServedLookup (bot/postgrest/served.py in the bot, a fake in unit tests) about single objects and
collects Findings; it does no I/O of its own. Imports only bot.core and bot.config (the catalog's types for
annotations only): none of httpx, asyncpg, discord, sqlite3, aiohttp.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bot.config import Target
from bot.core.drift import Findings, Presence, ServedLookup
from bot.core.drift_memory import (
    MAX_VANISHED_CHECKS,
    RELATIONSHIP,
    Vanished,
    remembered_foreign_key,
    remembered_function_shapes,
    remembered_relationship,
    vanished_since,
)
from bot.core.foreign_keys import ForeignKey
from bot.core.records import RememberedObject

if TYPE_CHECKING:
    from bot.core.catalog import Catalog, CatalogFunction, CatalogRelation

# Foreign keys checked by embedding per run; the rest waits for the next run, and the report says so.
MAX_RELATIONSHIP_CHECKS = 200


async def _compare_relation(
    api: ServedLookup,
    rel: CatalogRelation,
    served: dict[str, frozenset[str]] | None,
    found: Findings,
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
    presence = await api.relation(rel.schema, rel.name)
    if presence is not Presence.SERVED:
        found.unserved.add((rel.schema, rel.name))
    if presence is Presence.ABSENT:
        found.missing_tables.add(rel.qualified)
    elif presence is Presence.UNKNOWN:
        found.unverified.add(rel.qualified)
        found.keep.update(vanished_columns)
    else:
        missing, undecided = await api.missing_columns(rel.schema, rel.name, usable_columns)
        found.missing_columns.update(f"{rel.qualified}.{c}" for c in missing)
        if undecided:
            found.unverified.add(f"{rel.qualified} (columns)")
        await _compare_dropped_columns(api, rel, vanished_columns, found)


async def _compare_dropped_columns(
    api: ServedLookup, rel: CatalogRelation, vanished: Sequence[RememberedObject], found: Findings
) -> None:
    """Columns dropped since the last run: 415 PGRST107 while the cache still has them, PGRST204 once fresh."""
    if not vanished:
        return
    names = [v.part for v in vanished]
    gone_from_cache, undecided = await api.missing_columns(rel.schema, rel.name, names)
    if undecided:
        found.unverified.add(f"{rel.qualified} (dropped columns)")
        found.keep.update(vanished)
        return
    still_cached = [v for v in vanished if v.part not in gone_from_cache]
    found.extra_columns.update(f"{rel.qualified}.{v.part}" for v in still_cached)
    found.keep.update(still_cached)


async def _compare_function(api: ServedLookup, overloads: Sequence[CatalogFunction], found: Findings) -> None:
    shapes = {(f.required_args, f.unnamed_arg_type) for f in overloads if f.usable}
    first = overloads[0]
    results = await asyncio.gather(
        *(api.function(first.schema, first.name, req, unnamed) for req, unnamed in sorted(shapes, key=str))
    )
    if Presence.ABSENT in results:
        found.missing_functions.add(first.qualified)
    elif Presence.UNKNOWN in results:
        found.unverified.add(first.qualified)


async def _compare_dropped(api: ServedLookup, vanished: Vanished, found: Findings) -> None:
    """Relations and functions dropped since the last run: still served means the cache still holds them."""

    async def relation(entry: RememberedObject) -> None:
        presence = await api.relation(entry.schema, entry.name)
        qualified = f"{entry.schema}.{entry.name}"
        if presence is Presence.SERVED:
            found.extra_tables.add(qualified)
        elif presence is Presence.UNKNOWN:
            found.unverified.add(qualified)
        if presence is not Presence.ABSENT:
            found.keep.add(entry)

    async def function(entry: RememberedObject) -> None:
        results = await asyncio.gather(
            *(api.function(entry.schema, entry.name, a, u) for a, u in remembered_function_shapes(entry))
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
    api: ServedLookup, catalog: Catalog, remembered: set[RememberedObject] | None, vanished: Vanished, found: Findings
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
        presence = await api.relationship(fk)
        if presence is Presence.SERVED:
            found.keep.add(remembered_relationship(fk))
        elif presence is Presence.ABSENT:
            found.missing_relationships.add(fk.qualified)
        elif presence is Presence.UNKNOWN:
            found.unverified.add(fk.qualified)

    async def dropped(entry: RememberedObject) -> None:
        fk = remembered_foreign_key(entry)
        assert fk is not None  # vanished_since keeps only entries that parse
        presence = await api.relationship(fk)
        if presence is Presence.SERVED:
            found.extra_relationships.add(fk.qualified)
        elif presence is Presence.UNKNOWN:
            found.unverified.add(fk.qualified)
        if presence is not Presence.ABSENT:
            found.keep.add(entry)

    await asyncio.gather(*map(current, checked), *map(dropped, vanished.relationships))


async def _check_configured_leftovers(api: ServedLookup, target: Target, catalog: Catalog, found: Findings) -> None:
    """Configured probe tables/functions gone from the database: still served means the cache holds them.

    A dropped relation vanishes from the OpenAPI document at once (its privilege query is live), so only names
    we already know can show that the cache still has them.
    """
    env = target.config
    known_relations = {(r.schema, r.name) for r in catalog.relations}
    known_functions = {(f.schema, f.name) for f in catalog.functions}

    async def table(schema: str, name: str) -> None:
        presence = await api.relation(schema, name)
        if presence is Presence.SERVED:
            found.extra_tables.add(f"{schema}.{name}")
        elif presence is Presence.ABSENT:
            found.notes.append(f"configured probe table {schema}.{name} exists neither in the database nor in the API")

    async def function(schema: str, name: str, args: list[str]) -> None:
        presence = await api.function(schema, name, args, None)
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


async def compare(
    api: ServedLookup,
    target: Target,
    catalog: Catalog,
    served: dict[str, dict[str, frozenset[str]]] | None,
    remembered: set[RememberedObject] | None,
) -> Findings:
    found = Findings()
    vanished = vanished_since(remembered or (), catalog, target.config.exposed_schemas)
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
