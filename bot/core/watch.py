"""Detection in seconds (pure): when to look at the catalog, what changed in it, and when to probe.

Two mechanisms decide here, with an injected clock, and bot/ops/catalog_watch.py and bot/ops/monitor.py carry
them out:

- the catalog watch: a cheap fingerprint of the catalog is polled over a database connection kept per
  environment, which also LISTENs on PostgREST's own channel. A changed fingerprint is a change behind
  PostgREST's back unless a reload is heard for it; `WatchState` says when the changed objects are to be
  checked (after a short grace, or once someone else's reload had time to land), `catalog_changes` says which
  objects changed between two catalog reads, and `unserved` asks the API about those only;
- the cadence: a cheap liveness check (the root's `OPTIONS /`) between full probes, the full probe at once when
  it fails, and thresholds counted at a short confirm interval, so an outage alerts and resolves in seconds
  (`next_probe`).

Imports only bot.core (the catalog's types); no I/O.
"""

from __future__ import annotations

import asyncio
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from bot.core.catalog import Catalog, CatalogFunction, CatalogRelation
from bot.core.drift import Presence, ServedLookup
from bot.core.foreign_keys import ForeignKey

# How long the cost of one fingerprint read may be, as a share of the poll interval: the watch stays under ~2 % of
# one database core (a scan: 2 ms at 20 tables, 9 ms at 1,000, 31 ms at 5,000; a poll without one, ~0.4 ms at any
# size; bench/README.md).
FINGERPRINT_LOAD_SHARE = 0.02
# The cost is the median of the recent polls', since the scan runs only when the snapshot moved: one migration's
# scan, or one slow first read on a new connection (its catalog caches are cold), does not slow the next polls,
# while a database written all the time (a scan on nearly every poll) pays its share.
POLL_COST_WINDOW = 9
# Someone else's reload was heard for the change: look again once it has had time to land (a reload of 5,000
# tables takes ~1.3 s on a busy machine).
FOREIGN_RELOAD_SETTLE_S = 3.0
# A lost database connection is retried after this, doubling up to the cap (a database that is gone must not spin).
RECONNECT_FIRST_S = 1.0
RECONNECT_MAX_S = 30.0


def poll_interval_s(configured_s: float, fingerprint_ms: float | None) -> float:
    """The fingerprint's poll interval: as configured, slower when one read costs more than its share."""
    if fingerprint_ms is None:
        return configured_s
    return max(configured_s, fingerprint_ms / 1000 / FINGERPRINT_LOAD_SHARE)


class PollCost:
    """The typical cost of one fingerprint poll: the median of the last `POLL_COST_WINDOW` polls (ms)."""

    def __init__(self) -> None:
        self._recent: deque[float] = deque(maxlen=POLL_COST_WINDOW)

    def observe(self, ms: float) -> None:
        self._recent.append(ms)

    @property
    def typical_ms(self) -> float | None:
        return statistics.median(self._recent) if self._recent else None


def reconnect_delay_s(failures: int) -> float:
    """The pause before reconnecting after `failures` failed attempts in a row (1, 2, 4 ... 30 s)."""
    return min(RECONNECT_MAX_S, RECONNECT_FIRST_S * 2 ** max(0, failures - 1))


class Step(StrEnum):
    IDLE = "idle"  # nothing changed since the last check
    WAIT = "wait"  # a change is pending: look again at `at`
    CHECK = "check"  # check the changed objects now


@dataclass
class WatchState:
    """One environment's catalog watch: the last fingerprint, a pending change, the last reload heard."""

    fingerprint: str | None = None
    polled_at: float | None = None  # the last poll
    changed_at: float | None = None  # a change seen and not checked yet
    window_start: float | None = None  # the poll before that change: a reload heard since covers it
    reload_heard_at: float | None = None  # the last reload NOTIFY on the channel (anyone's, ours too)

    def observe(self, fingerprint: str, now: float) -> bool:
        """A poll's fingerprint; True when it differs from the last one (the first one only sets the baseline)."""
        changed = self.fingerprint is not None and fingerprint != self.fingerprint
        if changed and self.changed_at is None:
            self.changed_at = now
            self.window_start = self.polled_at if self.polled_at is not None else now
        self.fingerprint, self.polled_at = fingerprint, now
        return changed

    def heard_reload(self, now: float) -> None:
        self.reload_heard_at = now

    def covered(self) -> bool:
        """A reload was heard after the change could have been committed: PostgREST is reloading it already."""
        return (
            self.changed_at is not None
            and self.reload_heard_at is not None
            and self.window_start is not None
            and self.reload_heard_at >= self.window_start
        )

    def next_step(self, now: float, grace_s: float) -> tuple[Step, float]:
        """What to do about a pending change, and when: (CHECK, now), (WAIT, at) or (IDLE, now)."""
        if self.changed_at is None:
            return Step.IDLE, now
        if self.covered():
            assert self.reload_heard_at is not None
            due = self.reload_heard_at + FOREIGN_RELOAD_SETTLE_S
        else:
            due = self.changed_at + grace_s
        return (Step.CHECK, now) if now >= due else (Step.WAIT, due)

    def checked(self) -> None:
        self.changed_at = self.window_start = None

    def lost(self) -> None:
        """The connection is gone: the next fingerprint is compared with the last one seen (a change made while
        the watch was away is a change), and the pending one is checked after the reconnect."""
        self.polled_at = None


# -- what changed between two catalog reads ----------------------------------------------------------------------
@dataclass(frozen=True)
class RelationChange:
    relation: CatalogRelation
    new: bool  # not in the last read (or not usable by an API role then)
    added_columns: tuple[str, ...] = ()  # usable columns the last read did not have
    dropped_columns: tuple[str, ...] = ()  # columns the last read had


@dataclass(frozen=True)
class CatalogChanges:
    """The API-visible objects that differ between two reads of the exposed schemas' catalog."""

    relations: tuple[RelationChange, ...] = ()
    dropped_relations: tuple[CatalogRelation, ...] = ()
    functions: tuple[tuple[CatalogFunction, ...], ...] = ()  # new or changed, all overloads of each name
    dropped_functions: tuple[CatalogFunction, ...] = ()
    relationships: tuple[ForeignKey, ...] = ()  # new foreign keys

    def __bool__(self) -> bool:
        return bool(
            self.relations or self.dropped_relations or self.functions or self.dropped_functions or self.relationships
        )

    def describe(self) -> str:
        parts = [r.relation.qualified + ("" if r.new else " (columns)") for r in self.relations]
        parts += [f"{r.qualified} (dropped)" for r in self.dropped_relations]
        parts += [f"{fs[0].qualified}()" for fs in self.functions]
        parts += [f"{f.qualified}() (dropped)" for f in self.dropped_functions]
        parts += [fk.qualified for fk in self.relationships]
        return ", ".join(parts)


def _usable_relations(catalog: Catalog) -> dict[tuple[str, str], CatalogRelation]:
    return {(r.schema, r.name): r for r in catalog.relations if r.usable}


def _usable_functions(catalog: Catalog) -> dict[tuple[str, str], tuple[CatalogFunction, ...]]:
    grouped: dict[tuple[str, str], list[CatalogFunction]] = {}
    for fn in catalog.functions:
        if fn.usable:
            grouped.setdefault((fn.schema, fn.name), []).append(fn)
    return {
        key: tuple(sorted(fns, key=lambda f: (f.required_args, f.unnamed_arg_type or "")))
        for key, fns in grouped.items()
    }


def catalog_changes(old: Catalog, new: Catalog) -> CatalogChanges:
    """What an API role can see differently now: relations, columns, functions and foreign keys.

    Only usable objects count, as in drift: PostgREST caches every relation whatever the grants, so a GRANT on a
    cached table needs no reload, while a relation becoming usable is asked about (it may be new to the cache).
    """
    before, after = _usable_relations(old), _usable_relations(new)
    relations = []
    for key, rel in after.items():
        prior = before.get(key)
        if prior is None:
            relations.append(RelationChange(rel, new=True))
            continue
        added = tuple(c for c in rel.columns if c in rel.usable_columns and c not in prior.columns)
        dropped = tuple(c for c in prior.columns if c not in rel.columns)
        if added or dropped:
            relations.append(RelationChange(rel, new=False, added_columns=added, dropped_columns=dropped))
    fns_before, fns_after = _usable_functions(old), _usable_functions(new)
    served = set(after)
    old_fks = set(old.relationships)
    return CatalogChanges(
        relations=tuple(relations),
        dropped_relations=tuple(rel for key, rel in before.items() if key not in after),
        functions=tuple(fns for key, fns in fns_after.items() if fns_before.get(key) != fns),
        dropped_functions=tuple(fns[0] for key, fns in fns_before.items() if key not in fns_after),
        relationships=tuple(
            fk
            for fk in new.relationships
            if fk not in old_fks and {(fk.schema, fk.table), (fk.schema, fk.other)} <= served
        ),
    )


# -- asking the API about the changed objects only ------------------------------------------------------------------
@dataclass
class Unserved:
    """What the API does not serve as the catalog now has it (stale), and what it could not tell."""

    stale: list[str] = field(default_factory=list)
    unverified: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.stale)

    def describe(self) -> str:
        return ", ".join(self.stale)


async def _relation(api: ServedLookup, change: RelationChange, found: Unserved) -> None:
    rel = change.relation
    presence = await api.relation(rel.schema, rel.name)
    if presence is Presence.ABSENT:
        found.stale.append(rel.qualified)
        return
    if presence is Presence.UNKNOWN:
        found.unverified.append(rel.qualified)
        return
    # Served: new columns must be in the cache, dropped ones out of it (PGRST204 once the cache is fresh).
    columns = list(change.added_columns) if not change.new else [c for c in rel.columns if c in rel.usable_columns]
    (missing, undecided), (gone, gone_undecided) = await asyncio.gather(
        api.missing_columns(rel.schema, rel.name, columns),
        api.missing_columns(rel.schema, rel.name, list(change.dropped_columns)),
    )
    found.stale += [f"{rel.qualified}.{c}" for c in missing]
    if not gone_undecided:
        found.stale += [f"{rel.qualified}.{c} (dropped)" for c in change.dropped_columns if c not in gone]
    if undecided or gone_undecided:
        found.unverified.append(f"{rel.qualified} (columns)")


async def _dropped_relation(api: ServedLookup, rel: CatalogRelation, found: Unserved) -> None:
    presence = await api.relation(rel.schema, rel.name)
    if presence is Presence.SERVED:
        found.stale.append(f"{rel.qualified} (dropped)")
    elif presence is Presence.UNKNOWN:
        found.unverified.append(rel.qualified)


async def _function(api: ServedLookup, overloads: Sequence[CatalogFunction], found: Unserved, *, dropped: bool) -> None:
    first = overloads[0]
    results = await asyncio.gather(
        *(api.function(f.schema, f.name, list(f.required_args), f.unnamed_arg_type) for f in overloads)
    )
    wrong = Presence.SERVED if dropped else Presence.ABSENT
    if wrong in results:
        found.stale.append(f"{first.qualified}()" + (" (dropped)" if dropped else ""))
    elif Presence.UNKNOWN in results:
        found.unverified.append(f"{first.qualified}()")


async def _relationship(api: ServedLookup, fk: ForeignKey, found: Unserved) -> None:
    presence = await api.relationship(fk)
    if presence is Presence.ABSENT:
        found.stale.append(fk.qualified)
    elif presence is Presence.UNKNOWN:
        found.unverified.append(fk.qualified)


async def unserved(api: ServedLookup, changes: CatalogChanges) -> Unserved:
    """Ask the API about the changed objects only: one OPTIONS per relation, an empty insert per set of columns,
    one lookup per function, one embed per new foreign key (never the OpenAPI root)."""
    found = Unserved()
    await asyncio.gather(
        *(_relation(api, change, found) for change in changes.relations),
        *(_dropped_relation(api, rel, found) for rel in changes.dropped_relations),
        *(_function(api, fns, found, dropped=False) for fns in changes.functions),
        *(_function(api, (fn,), found, dropped=True) for fn in changes.dropped_functions),
    )
    # After the relations: an embed of a relation missing from the cache says nothing about its foreign key.
    if not found.stale:
        await asyncio.gather(*(_relationship(api, fk, found) for fk in changes.relationships))
    found.stale.sort()
    return found


# -- the probe cadence ----------------------------------------------------------------------------------------------
class Probe(StrEnum):
    FULL = "full"  # the whole probe, then the incident state machine
    LIVENESS = "liveness"  # one cheap check: when it fails, the full probe at once


@dataclass(frozen=True)
class Cadence:
    interval_s: float  # the full probe while healthy
    liveness_s: float  # the cheap check while healthy, and the full probe while unhealthy (0: off)
    confirm_s: float  # the next full probe while a failure or success threshold is being counted

    @property
    def liveness_on(self) -> bool:
        return 0 < self.liveness_s < self.interval_s


@dataclass(frozen=True)
class Standing:
    """What the last full probe left: its health, and whether a threshold is being counted."""

    healthy: bool | None  # None before the first probe
    counting: bool


def standing(
    healthy: bool | None,
    *,
    alert_open: bool,
    fail_streak: int,
    ok_streak: int,
    failure_threshold: int,
    success_threshold: int,
) -> Standing:
    """Counting: failing but not yet at the threshold (no alert), or healthy again with the alert still open."""
    if healthy is None:
        return Standing(None, False)
    if healthy:
        return Standing(True, alert_open and ok_streak < success_threshold)
    return Standing(False, not alert_open and fail_streak < failure_threshold)


def next_probe(cadence: Cadence, now: Standing, since_full_s: float) -> tuple[Probe, float]:
    """The next probe and how long to wait for it, `since_full_s` after the last full probe started.

    While a threshold is counted: the full probe every confirm_s. While unhealthy: every liveness_s (a cheap
    check cannot tell a stale table healed). While healthy: the cheap check every liveness_s, the full probe once
    interval_s has passed. Never slower than interval_s, the old behaviour when liveness is off.
    """
    if now.counting:
        return Probe.FULL, max(0.0, min(cadence.confirm_s, cadence.interval_s) - since_full_s)
    if not cadence.liveness_on:
        return Probe.FULL, max(0.0, cadence.interval_s - since_full_s)
    if now.healthy is False:
        return Probe.FULL, max(0.0, cadence.liveness_s - since_full_s)
    full_in = cadence.interval_s - since_full_s
    if full_in <= cadence.liveness_s:
        return Probe.FULL, max(0.0, full_in)
    return Probe.LIVENESS, cadence.liveness_s
