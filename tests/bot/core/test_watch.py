"""The catalog watch's and the cadence's decisions (bot/core/watch.py), with an injected clock and a fake API."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from bot.core.catalog import Catalog, CatalogFunction, CatalogRelation
from bot.core.drift import Presence
from bot.core.foreign_keys import ForeignKey
from bot.core.watch import (
    FOREIGN_RELOAD_SETTLE_S,
    Cadence,
    PollCost,
    Probe,
    Standing,
    Step,
    WatchState,
    catalog_changes,
    next_probe,
    poll_interval_s,
    reconnect_delay_s,
    standing,
    unserved,
)

GRACE = 0.25


def test_the_first_fingerprint_is_the_baseline_not_a_change():
    state = WatchState()
    assert not state.observe("a", 0.0)
    assert state.next_step(0.0, GRACE) == (Step.IDLE, 0.0)


def test_a_change_without_a_reload_is_checked_after_the_grace():
    state = WatchState()
    state.observe("a", 0.0)
    assert state.observe("b", 0.5)
    assert state.next_step(0.5, GRACE) == (Step.WAIT, 0.75)
    assert state.next_step(0.75, GRACE) == (Step.CHECK, 0.75)
    state.checked()
    state.observe("b", 1.0)
    assert state.next_step(1.0, GRACE)[0] is Step.IDLE


def test_a_reload_heard_with_the_change_defers_the_check_until_it_had_time_to_land():
    state = WatchState()
    state.observe("a", 0.0)
    state.heard_reload(0.3)  # NOTIFY in the migration's own transaction: heard just before the poll saw it
    state.observe("b", 0.5)
    assert state.covered()
    assert state.next_step(0.8, GRACE) == (Step.WAIT, 0.3 + FOREIGN_RELOAD_SETTLE_S)
    assert state.next_step(0.3 + FOREIGN_RELOAD_SETTLE_S, GRACE)[0] is Step.CHECK


def test_a_reload_heard_within_the_grace_covers_the_change_too():
    state = WatchState()
    state.observe("a", 0.0)
    state.observe("b", 0.5)
    state.heard_reload(0.6)  # a NOTIFY sent right after the migration committed
    assert state.next_step(0.75, GRACE) == (Step.WAIT, 0.6 + FOREIGN_RELOAD_SETTLE_S)


def test_an_old_reload_does_not_cover_a_later_change():
    state = WatchState()
    state.heard_reload(0.1)
    state.observe("a", 0.2)
    state.observe("a", 0.7)
    state.observe("b", 1.2)
    assert not state.covered()
    assert state.next_step(1.45, GRACE)[0] is Step.CHECK


def test_a_change_made_while_the_connection_was_lost_is_a_change():
    state = WatchState()
    state.observe("a", 0.0)
    state.lost()
    assert state.observe("b", 30.0)
    assert state.next_step(30.0 + GRACE, GRACE)[0] is Step.CHECK


def test_the_poll_slows_down_when_the_fingerprint_is_costly_and_reconnects_back_off():
    assert poll_interval_s(0.5, 2.0) == 0.5
    assert poll_interval_s(0.5, 29.0) == 29.0 / 1000 / 0.02  # 5,000 tables: 1.45 s, 2 % of a core
    assert poll_interval_s(0.5, None) == 0.5
    assert [reconnect_delay_s(n) for n in (1, 2, 3, 6, 20)] == [1, 2, 4, 30, 30]


def poll_after(costs: list[float]) -> float:
    cost = PollCost()
    for ms in costs:
        cost.observe(ms)
    return poll_interval_s(0.5, cost.typical_ms)


def test_one_costly_poll_does_not_slow_the_watch_but_a_scan_on_nearly_every_poll_does():
    # 5,000 tables: a scan costs ~31 ms (1.55 s of polling at 2 %), a poll whose snapshot did not move ~0.4 ms.
    assert poll_after([260.0]) == 13.0  # the very first poll only: all there is to go by
    assert poll_after([260.0, 0.4, 0.4]) == 0.5  # a cold first read on a new connection is forgotten at once
    assert poll_after([0.4] * 8 + [31.0]) == 0.5  # one migration's scan
    assert poll_after([31.0, 0.4] * 4 + [31.0]) == pytest.approx(1.55)  # written all the time
    assert poll_after([0.4] * 20 + [31.0] * 5) == pytest.approx(1.55)  # the last 9 polls count, not the first


def rel(name: str, *columns: str, usable: bool = True) -> CatalogRelation:
    return CatalogRelation("public", name, usable, columns, frozenset(columns) if usable else frozenset())


def fn(name: str, *required: str) -> CatalogFunction:
    return CatalogFunction("public", name, True, required, None)


def cat(*relations: CatalogRelation, functions: Sequence[CatalogFunction] = (), fks: Sequence[ForeignKey] = ()):
    return Catalog(tuple(relations), tuple(functions), (), tuple(fks))


def test_changes_are_the_api_visible_differences_only():
    old = cat(
        rel("a", "id"), rel("b", "id", "x"), rel("c", "id"), rel("hidden", "id", usable=False), functions=[fn("f")]
    )
    fk = ForeignKey("public", "a", "b", "a_b_fkey", "b_id", "id")
    new = cat(
        rel("a", "id"),  # unchanged
        rel("b", "id", "y"),  # x renamed to y
        rel("hidden", "id", "z", usable=False),  # not usable: not the API's business
        rel("d", "id"),  # new
        functions=[fn("f", "arg"), fn("g")],
        fks=[fk],
    )
    changes = catalog_changes(old, new)
    assert [(c.relation.name, c.new, c.added_columns, c.dropped_columns) for c in changes.relations] == [
        ("b", False, ("y",), ("x",)),
        ("d", True, (), ()),
    ]
    assert [r.name for r in changes.dropped_relations] == ["c"]
    assert sorted(fs[0].name for fs in changes.functions) == ["f", "g"]
    assert changes.relationships == (fk,)
    assert (
        changes.describe()
        == "public.b (columns), public.d, public.c (dropped), public.f(), public.g(), " + fk.qualified
    )
    assert not catalog_changes(new, new)


def test_a_grant_on_a_new_table_makes_it_a_change():
    assert catalog_changes(cat(rel("t", "id", usable=False)), cat(rel("t", "id"))).relations[0].new


class FakeApi:
    """The schema cache as a set of names; counts requests."""

    def __init__(self, relations=(), columns=(), functions=(), relationships=()):
        self.relations, self.columns = set(relations), set(columns)
        self.functions, self.relationships = set(functions), set(relationships)
        self.requests = 0

    async def relation(self, schema, name):
        self.requests += 1
        return Presence.SERVED if name in self.relations else Presence.ABSENT

    async def missing_columns(self, schema, table, columns):
        self.requests += 1
        return [c for c in columns if f"{table}.{c}" not in self.columns], False

    async def function(self, schema, name, required, unnamed):
        self.requests += 1
        return Presence.SERVED if name in self.functions else Presence.ABSENT

    async def relationship(self, fk):
        self.requests += 1
        return Presence.SERVED if fk.constraint in self.relationships else Presence.ABSENT


async def test_only_the_changed_objects_are_asked_about():
    many = [rel(f"t{i}", "id") for i in range(500)]
    old = cat(*many, rel("b", "id", "x"))
    new = cat(*many, rel("b", "id", "y"), rel("d", "id", "v"), functions=[fn("g")])
    api = FakeApi(relations={"b"}, columns={"b.x", "b.id"})
    found = await unserved(api, catalog_changes(old, new))
    assert found.stale == ["public.b.x (dropped)", "public.b.y", "public.d", "public.g()"]
    assert api.requests <= 6  # not one per table of the schema

    fresh = FakeApi(relations={"b", "d"}, columns={"b.y", "b.id", "d.id", "d.v"}, functions={"g"})
    assert not await unserved(fresh, catalog_changes(old, new))


async def test_a_dropped_table_still_served_is_stale():
    found = await unserved(FakeApi(relations={"c"}), catalog_changes(cat(rel("c", "id")), cat()))
    assert found.stale == ["public.c (dropped)"]
    assert not await unserved(FakeApi(), catalog_changes(cat(rel("c", "id")), cat()))


CADENCE = Cadence(interval_s=60, liveness_s=5, confirm_s=1)
HEALTHY, FAILING_ONCE, ALERTED = Standing(True, False), Standing(False, True), Standing(False, False)


def test_healthy_runs_the_cheap_check_between_full_probes():
    assert next_probe(CADENCE, HEALTHY, 0.0) == (Probe.LIVENESS, 5)
    assert next_probe(CADENCE, HEALTHY, 50.0) == (Probe.LIVENESS, 5)
    assert next_probe(CADENCE, HEALTHY, 56.0) == (Probe.FULL, 4)


def test_a_threshold_is_counted_at_the_confirm_pace_and_an_outage_at_the_liveness_pace():
    assert next_probe(CADENCE, FAILING_ONCE, 0.2) == (Probe.FULL, 0.8)
    assert next_probe(CADENCE, ALERTED, 1.0) == (Probe.FULL, 4)
    assert next_probe(CADENCE, Standing(True, True), 0.0) == (Probe.FULL, 1)  # healthy again, alert open


def test_without_liveness_the_interval_is_the_old_loop():
    off = Cadence(interval_s=60, liveness_s=0, confirm_s=1)
    assert next_probe(off, HEALTHY, 10.0) == (Probe.FULL, 50)
    assert next_probe(off, ALERTED, 10.0) == (Probe.FULL, 50)
    short = Cadence(interval_s=1, liveness_s=5, confirm_s=1)  # a 1 s interval is faster than any liveness check
    assert next_probe(short, HEALTHY, 0.3) == (Probe.FULL, 0.7)
    assert next_probe(Cadence(1, 5, 3), FAILING_ONCE, 0.0) == (Probe.FULL, 1)  # never slower than the interval


def test_standing_from_the_streaks():
    common = {"failure_threshold": 2, "success_threshold": 2}
    assert standing(None, alert_open=False, fail_streak=0, ok_streak=0, **common) == Standing(None, False)
    assert standing(False, alert_open=False, fail_streak=1, ok_streak=0, **common).counting
    assert not standing(False, alert_open=True, fail_streak=3, ok_streak=0, **common).counting
    assert not standing(False, alert_open=False, fail_streak=2, ok_streak=0, **common).counting  # at it: acted
    assert standing(True, alert_open=True, fail_streak=0, ok_streak=1, **common).counting
    assert not standing(True, alert_open=False, fail_streak=0, ok_streak=5, **common).counting
