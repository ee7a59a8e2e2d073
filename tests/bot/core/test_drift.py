"""The drift comparison and its memory rules (pure: an in-memory schema cache stands in for PostgREST, no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.config import EnvironmentConfig, EnvSecrets, Target
from bot.core.catalog import Catalog, CatalogFunction, CatalogRelation
from bot.core.drift import (
    DriftObjects,
    DriftStatus,
    Findings,
    Presence,
    cap_names,
    nothing_served_note,
    restricted_objects,
    ungranted_objects,
)
from bot.core.drift_compare import compare
from bot.core.drift_memory import COLUMN, RELATION, memory_of, recalled, to_remember, vanished_since
from bot.core.foreign_keys import ForeignKey
from bot.core.records import RememberedObject

TARGET = Target("dev", EnvironmentConfig(rest_url="http://api.test"), EnvSecrets(None, None))


@dataclass
class Cache:
    """What a PostgREST schema cache holds; answers the comparison's lookups (bot.core.drift.ServedLookup)."""

    relations: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (schema, name) -> columns
    functions: set[tuple[str, str]] = field(default_factory=set)
    relationships: set[tuple[str, str, str]] = field(default_factory=set)  # (schema, table, constraint)
    asked: list[tuple[str, str]] = field(default_factory=list)

    async def relation(self, schema: str, name: str) -> Presence:
        self.asked.append((schema, name))
        return Presence.SERVED if (schema, name) in self.relations else Presence.ABSENT

    async def missing_columns(self, schema: str, table: str, columns: Sequence[str]) -> tuple[list[str], bool]:
        cached = self.relations.get((schema, table), set())
        return [c for c in columns if c not in cached], False

    async def function(self, schema: str, name: str, required: Sequence[str], unnamed: str | None) -> Presence:
        return Presence.SERVED if (schema, name) in self.functions else Presence.ABSENT

    async def relationship(self, fk: ForeignKey) -> Presence:
        return Presence.SERVED if (fk.schema, fk.table, fk.constraint) in self.relationships else Presence.ABSENT


def table(name: str, *columns: str, usable: bool = True, usable_columns: Sequence[str] | None = None):
    granted = columns if usable_columns is None else usable_columns
    return CatalogRelation("public", name, usable, tuple(columns), frozenset(granted if usable else ()))


def catalog(*relations: CatalogRelation, functions: Sequence[CatalogFunction] = ()) -> Catalog:
    return Catalog(tuple(relations), tuple(functions), ())


async def test_a_relation_in_the_catalog_that_the_cache_lacks_is_stale():
    found = await compare(Cache(), TARGET, catalog(table("orders", "id")), None, None)

    assert found.missing == DriftObjects(tables=("public.orders",))
    assert found.status is DriftStatus.STALE


async def test_a_relation_listed_by_the_openapi_root_but_gone_from_the_catalog_is_stale():
    served = {"public": {"orders": frozenset({"id"}), "old_orders": frozenset({"id"})}}
    cache = Cache(relations={("public", "orders"): {"id"}, ("public", "old_orders"): {"id"}})

    found = await compare(cache, TARGET, catalog(table("orders", "id")), served, None)

    assert found.extra == DriftObjects(tables=("public.old_orders",))
    assert found.status is DriftStatus.STALE


async def test_a_remembered_relation_dropped_since_but_still_cached_is_stale_and_kept_in_memory():
    dropped = RememberedObject(RELATION, "public", "old_orders")
    cache = Cache(relations={("public", "orders"): {"id"}, ("public", "old_orders"): {"id"}})

    found = await compare(cache, TARGET, catalog(table("orders", "id")), None, {dropped})

    assert found.extra.tables == ("public.old_orders",)
    assert dropped in found.keep


async def test_a_remembered_relation_the_cache_dropped_too_is_forgotten():
    dropped = RememberedObject(RELATION, "public", "old_orders")
    cache = Cache(relations={("public", "orders"): {"id"}})

    found = await compare(cache, TARGET, catalog(table("orders", "id")), None, {dropped})

    assert found.status is DriftStatus.IN_SYNC
    assert dropped not in found.keep


async def test_a_remembered_column_dropped_since_but_still_cached_is_recalled_as_stale():
    dropped = RememberedObject(COLUMN, "public", "orders", "note")
    cache = Cache(relations={("public", "orders"): {"id", "note"}})

    found = await compare(cache, TARGET, catalog(table("orders", "id")), None, {dropped})

    assert found.extra.columns == ("public.orders.note",)


async def test_an_ungranted_relation_is_a_permission_problem_not_stale():
    cat = catalog(table("orders", "id"), table("secrets", "id", usable=False))
    cache = Cache(relations={("public", "orders"): {"id"}})  # the unusable table is not asked about at all

    found = await compare(cache, TARGET, cat, None, None)

    assert ungranted_objects(cat) == DriftObjects(tables=("public.secrets",))
    assert found.status is DriftStatus.IN_SYNC
    assert ("public", "secrets") not in cache.asked


def test_an_ungranted_function_is_reported_once_whatever_its_overloads():
    fn = CatalogFunction("public", "f", False, (), None)

    assert ungranted_objects(catalog(functions=[fn, fn])) == DriftObjects(functions=("public.f",))


def test_a_table_granted_column_by_column_is_restricted_with_its_hidden_columns():
    cat = catalog(table("people", "id", "email", usable_columns=["id"]))

    assert restricted_objects(cat) == DriftObjects(tables=("public.people",), columns=("public.people.email",))
    assert not ungranted_objects(cat)


def test_the_first_run_with_a_store_recalls_an_empty_memory_and_says_so():
    objects, note = recalled([], available=True, error=None)

    assert objects == set()
    assert note == "first run with drift memory: objects dropped from now on will be found"


def test_remembered_objects_are_recalled_without_a_note():
    entry = RememberedObject(RELATION, "public", "orders")

    assert recalled([entry], available=True, error=None) == ({entry}, None)


def test_a_store_that_cannot_be_read_recalls_nothing_and_says_why():
    objects, note = recalled(None, available=True, error="database is locked")

    assert objects is None
    assert note is not None and note.startswith("drift memory unavailable (database is locked): ")


def test_a_run_remembers_the_usable_objects_and_what_it_must_ask_again():
    cat = catalog(table("orders", "id"), table("secrets", "id", usable=False))
    kept = RememberedObject(RELATION, "public", "old_orders")

    assert to_remember(cat, {kept}, set()) == {
        RememberedObject(RELATION, "public", "orders"),
        RememberedObject(COLUMN, "public", "orders", "id"),
        kept,
    }


def test_a_run_that_changed_nothing_writes_no_memory():
    cat = catalog(table("orders", "id"))

    assert to_remember(cat, set(), memory_of(cat)) is None


def test_vanished_objects_over_the_per_run_cap_are_deferred_to_the_next_run(monkeypatch):
    monkeypatch.setattr("bot.core.drift_memory.MAX_VANISHED_CHECKS", 2)
    remembered = [RememberedObject(RELATION, "public", f"gone{n}") for n in range(3)]

    vanished = vanished_since(remembered, catalog(), ["public"])

    assert [e.name for e in vanished.relations] == ["gone0", "gone1"]
    assert [e.name for e in vanished.deferred] == ["gone2"]


def test_long_name_lists_are_capped_with_a_count_of_the_rest():
    assert cap_names(["a", "b", "c", "d"], limit=2) == "a, b and 2 more"
    assert cap_names(["a", "b"], limit=2) == "a, b"


def test_drift_objects_describe_each_kind_capped():
    objects = DriftObjects.of(tables=[f"public.t{n}" for n in range(7)], columns=["public.t0.c"])

    assert objects.describe(limit=5) == (
        "tables public.t0, public.t1, public.t2, public.t3, public.t4 and 2 more; columns public.t0.c"
    )


def test_nothing_served_at_all_suggests_the_dsn_points_elsewhere():
    cat = catalog(table("a", "id"), table("b", "id"))
    found = Findings(missing_tables={"public.a", "public.b"})

    assert nothing_served_note(cat, found) is not None
    assert nothing_served_note(cat, Findings(missing_tables={"public.a"})) is None
