"""Drift memory: what a run remembers so that the next one can ask about objects dropped in between (pure).

A dropped relation vanishes from the OpenAPI root at once and leaves no trace in the catalog, so nothing else
shows that the cache still serves it. The incident store keeps the remembered objects (drift_memory); these are
the rules for what to remember, how to read it back and which remembered objects have vanished. Imports only
bot.core (the catalog's types for annotations only).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.core.foreign_keys import ForeignKey
from bot.core.records import RememberedObject

if TYPE_CHECKING:
    from bot.core.catalog import Catalog

# Remembered objects (dropped from the database since the last run) asked about again per run; the rest waits
# for the next run, and the report says so.
MAX_VANISHED_CHECKS = 500

# The kinds of remembered objects (RememberedObject.kind).
RELATION, COLUMN, FUNCTION, RELATIONSHIP = "relation", "column", "function", "relationship"


def memory_of(catalog: Catalog) -> set[RememberedObject]:
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


def remembered_relationship(fk: ForeignKey) -> RememberedObject:
    detail = json.dumps({"other": fk.other, "column": fk.column, "other_column": fk.other_column})
    return RememberedObject(RELATIONSHIP, fk.schema, fk.table, fk.constraint, detail)


def remembered_function_shapes(entry: RememberedObject) -> list[tuple[list[str], str | None]]:
    try:
        shapes = json.loads(entry.detail)
        return [([str(a) for a in args], None if unnamed is None else str(unnamed)) for args, unnamed in shapes]
    except (ValueError, TypeError):
        return [([], None)]


def remembered_foreign_key(entry: RememberedObject) -> ForeignKey | None:
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
class Vanished:
    """Remembered objects the catalog no longer has (in the exposed schemas)."""

    relations: list[RememberedObject]
    columns: dict[tuple[str, str], list[RememberedObject]]  # of relations that still exist
    functions: list[RememberedObject]
    relationships: list[RememberedObject]  # between relations that still exist
    deferred: list[RememberedObject]  # over this run's cap: kept for the next run


def vanished_since(remembered: Iterable[RememberedObject], catalog: Catalog, schemas: Sequence[str]) -> Vanished:
    relations = {(r.schema, r.name): r for r in catalog.relations}
    functions = {(f.schema, f.name) for f in catalog.functions}
    constraints = {(fk.schema, fk.table, fk.constraint) for fk in catalog.relationships}
    found = Vanished([], {}, [], [], [])
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
            fk = remembered_foreign_key(entry)
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


def recalled(
    remembered: Iterable[RememberedObject] | None, *, available: bool, error: str | None
) -> tuple[set[RememberedObject] | None, str | None]:
    """The last run's objects as the comparison takes them (None: no memory), and a note saying what that means.

    `available` is whether there is an incident store at all; `remembered` None with a store means reading failed.
    """
    blind = "objects dropped from the database are checked only for the configured probe tables and functions"
    if not available:
        return None, f"no drift memory (the incident store is not available here): {blind}"
    if remembered is None:
        return None, f"drift memory unavailable ({error}): {blind}"
    objects = set(remembered)
    if not objects:
        return set(), "first run with drift memory: objects dropped from now on will be found"
    return objects, None


def to_remember(
    catalog: Catalog, keep: Iterable[RememberedObject], remembered: set[RememberedObject]
) -> set[RememberedObject] | None:
    """What this run leaves for the next one, or None when it is what the store already holds."""
    now_visible = memory_of(catalog) | set(keep)
    return None if now_visible == remembered else now_visible
