"""Schema drift between the catalog and what PostgREST serves: the report and its wording, the findings (pure).

Also the vocabulary of the comparison (bot/core/drift_compare.py): Presence, the ServedLookup it asks, the
Findings it collects, and the rules that need no API at all (ungranted, restricted, the counts, the status).
Imports only bot.core (the catalog's types for annotations only): none of httpx, asyncpg, discord, sqlite3,
aiohttp.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from bot.core.foreign_keys import ForeignKey
from bot.core.records import RememberedObject

if TYPE_CHECKING:  # the catalog's types only: reading it is bot/postgres/catalog.py's job
    from bot.core.catalog import Catalog

SUMMARY_NAMES = 5


class DriftStatus(StrEnum):
    IN_SYNC = "in_sync"
    STALE = "stale"  # the schema cache lags the database: a reload helps
    UNKNOWN = "unknown"  # the database or the API could not be read (fully): never reported as in sync


class DriftMethod(StrEnum):
    OPENAPI = "openapi"  # relations and columns from the OpenAPI root (absences confirmed per object)
    PROBE = "probe"  # every object checked with its own request


@dataclass(frozen=True)
class DriftObjects:
    """Qualified names: tables `schema.table`, columns `schema.table.column`, functions `schema.function`."""

    tables: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    functions: tuple[str, ...] = ()
    relationships: tuple[str, ...] = ()  # `schema.table→other (constraint)`

    def _groups(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        return (
            ("tables", self.tables),
            ("columns", self.columns),
            ("functions", self.functions),
            ("relationships", self.relationships),
        )

    def __bool__(self) -> bool:
        return any(names for _, names in self._groups())

    @property
    def count(self) -> int:
        return sum(len(names) for _, names in self._groups())

    def describe(self, limit: int = SUMMARY_NAMES) -> str:
        return "; ".join(f"{label} {cap_names(names, limit)}" for label, names in self._groups() if names)

    def to_json(self) -> dict[str, list[str]]:
        return {label: list(names) for label, names in self._groups()}

    @staticmethod
    def of(
        tables: Iterable[str] = (),
        columns: Iterable[str] = (),
        functions: Iterable[str] = (),
        relationships: Iterable[str] = (),
    ) -> DriftObjects:
        return DriftObjects(*(tuple(sorted(set(names))) for names in (tables, columns, functions, relationships)))


@dataclass(frozen=True)
class DriftReport:
    env: str
    status: DriftStatus
    method: DriftMethod | None
    missing_in_api: DriftObjects  # usable in the database, absent from the cache: a reload helps
    extra_in_api: DriftObjects  # in the cache, gone from the database: a reload helps
    ungranted: DriftObjects  # in the database, but no API role may use them: GRANT, a reload cannot help
    restricted: DriftObjects  # tables granted column by column (and the columns they hide): by design, no action
    unverified: tuple[str, ...]  # objects the API gave no usable answer for
    unclear_answer: str | None  # the first such answer, e.g. "HTTP 401 PGRST302"
    notes: tuple[str, ...]  # how it was checked and what could not be
    error: str | None
    compared: dict[str, int]  # usable objects compared: tables, columns, functions, relationships
    memory_used: bool  # the last run's objects were recalled from the incident store (dropped ones checked)
    requests: int
    duration_ms: float
    checked_at: datetime

    @property
    def in_sync(self) -> bool:
        return self.status is DriftStatus.IN_SYNC

    @property
    def stale(self) -> bool:
        return bool(self.missing_in_api or self.extra_in_api)

    @property
    def next_step(self) -> str:
        if self.error:
            return "fix what stops the check (see the error), then run it again"
        steps = []
        if self.stale:
            steps.append(f"reload the schema cache: `/reload {self.env}` or `pgrst-ops fix --env {self.env}`")
        if self.ungranted:
            steps.append("GRANT the API roles what they need on the ungranted objects (a reload cannot help)")
        if self.unverified:
            steps.append("re-check the unverified objects")
        return "; ".join(steps) or "nothing to do"

    @property
    def summary(self) -> str:
        """One line for an alert or a Discord field."""
        via = {DriftMethod.OPENAPI: "OpenAPI root", DriftMethod.PROBE: "per-object probes", None: "no API read"}
        if self.error:
            head = f"drift unknown: {self.error}"
        elif self.stale:
            parts = []
            if self.missing_in_api:
                parts.append(f"missing in API: {self.missing_in_api.describe()}")
            if self.extra_in_api:
                parts.append(f"served but gone from the database: {self.extra_in_api.describe()}")
            head = "stale schema cache, a reload helps: " + "; ".join(parts)
        elif self.unverified:
            seen = f" (first answer: {self.unclear_answer})" if self.unclear_answer else ""
            head = f"drift unknown: no clear answer for {cap_names(self.unverified)}{seen}"
        else:
            c = self.compared
            relationships = f", {c['relationships']} relationships" if c.get("relationships") else ""
            head = (
                f"in sync: {c.get('tables', 0)} tables, {c.get('columns', 0)} columns, "
                f"{c.get('functions', 0)} functions{relationships} usable by the API roles are served"
            )
        if self.ungranted and not self.error:
            head += f"; ungranted (no API role may use them, GRANT them): {self.ungranted.describe()}"
        if self.restricted.tables and not self.error:
            head += f"; restricted by design (granted column by column): {cap_names(self.restricted.tables)}"
        return f"{head} (via {via[self.method]})"

    def to_json(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "status": str(self.status),
            "in_sync": self.in_sync,
            "stale": self.stale,
            "method": str(self.method) if self.method else None,
            "summary": self.summary,
            "next_step": self.next_step,
            "missing_in_api": self.missing_in_api.to_json(),
            "extra_in_api": self.extra_in_api.to_json(),
            "ungranted": self.ungranted.to_json(),
            "restricted_by_design": self.restricted.to_json(),
            "unverified": list(self.unverified),
            "unclear_answer": self.unclear_answer,
            "notes": list(self.notes),
            "error": self.error,
            "compared": dict(self.compared),
            "memory_used": self.memory_used,
            "requests": self.requests,
            "duration_ms": round(self.duration_ms, 1),
            "checked_at": self.checked_at.isoformat(timespec="milliseconds"),
        }


class Presence(StrEnum):
    """What the schema cache answered about one object."""

    SERVED = "served"
    ABSENT = "absent"
    UNKNOWN = "unknown"  # no usable answer (transport trouble, a gateway, a server error)


class ServedLookup(Protocol):
    """Asks PostgREST's schema cache about single objects (bot/postgrest/served.py; a fake in unit tests)."""

    async def relation(self, schema: str, name: str) -> Presence: ...

    async def missing_columns(self, schema: str, table: str, columns: Sequence[str]) -> tuple[list[str], bool]:
        """The named columns the cache lacks, and whether some answer was undecided."""
        ...

    async def function(self, schema: str, name: str, required: Sequence[str], unnamed: str | None) -> Presence: ...

    async def relationship(self, fk: ForeignKey) -> Presence: ...


def cap_names(names: Sequence[str], limit: int = SUMMARY_NAMES) -> str:
    shown = ", ".join(names[:limit])
    return f"{shown} and {len(names) - limit} more" if len(names) > limit else shown


@dataclass
class Findings:
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

    @property
    def missing(self) -> DriftObjects:
        """Usable in the database, absent from the cache."""
        return DriftObjects.of(
            self.missing_tables, self.missing_columns, self.missing_functions, self.missing_relationships
        )

    @property
    def extra(self) -> DriftObjects:
        """Still in the cache, gone from the database."""
        return DriftObjects.of(self.extra_tables, self.extra_columns, self.extra_functions, self.extra_relationships)

    @property
    def status(self) -> DriftStatus:
        """Stale when the cache lags in any way; unknown when some object had no clear answer; else in sync."""
        if self.missing or self.extra:
            return DriftStatus.STALE
        return DriftStatus.UNKNOWN if self.unverified else DriftStatus.IN_SYNC


def ungranted_objects(catalog: Catalog) -> DriftObjects:
    """Objects no API role may use: a GRANT is missing (a reload cannot help)."""
    usable_functions = {f.qualified for f in catalog.functions if f.usable}
    return DriftObjects.of(
        tables=(r.qualified for r in catalog.relations if r.ungranted),
        functions=(f.qualified for f in catalog.functions if f.qualified not in usable_functions),
    )


def restricted_objects(catalog: Catalog) -> DriftObjects:
    """Tables the API roles may use only some columns of: a deliberate column-level grant, not something to fix."""
    restricted = [r for r in catalog.relations if r.restricted]
    return DriftObjects.of(
        tables=(r.qualified for r in restricted),
        columns=(f"{r.qualified}.{c}" for r in restricted for c in r.columns if c not in r.usable_columns),
    )


def compared_counts(catalog: Catalog, found: Findings) -> dict[str, int]:
    usable = [r for r in catalog.relations if r.usable]
    return {
        "tables": len(usable),
        "columns": sum(len(r.usable_columns) for r in usable),
        "functions": len({f.qualified for f in catalog.functions if f.usable}),
        "relationships": found.relationships_checked,
    }


def nothing_served_note(catalog: Catalog, found: Findings) -> str | None:
    """Every usable relation missing is more likely a DSN for another database than a stale cache."""
    usable_tables = sum(1 for r in catalog.relations if r.usable)
    if usable_tables > 1 and len(found.missing_tables) == usable_tables:
        return "no usable relation is served at all: does the DSN point at the database PostgREST serves?"
    return None
