"""What every incident store does, run on SQLite and on a real PostgreSQL (the `store` fixture, conftest.py):
records round-trip, the outbox keeps its order and finds a nonce's landing, the audit log completes and marks
interrupted actions, silences replace each other, drift memory is per environment, old delivered rows go."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.core.records import AUDIT_DONE, AUDIT_INTERRUPTED, AUDIT_STARTED, STOPPED_MID_ACTION, RememberedObject
from bot.store.errors import StoreError
from bot.store.migrations import SCHEMA_VERSION

SNOWFLAKE = 1_234_567_890_123_456_789  # a Discord id: needs all 64 bits


async def test_incidents_actions_outbox_and_silences_round_trip(store):
    opened = datetime.now(UTC) - timedelta(minutes=5)
    incident = await store.open_incident(
        "prod", opened_at=opened, verdict="postgrest_down", status=None, code=None, trigger="monitor"
    )
    await store.add_action(incident.id, "alice", "ack")
    await store.update_incident(incident.id, resolved_at=datetime.now(UTC), resolution="manual_reload")
    (stored,) = await store.recent_incidents("prod")
    actions = await store.actions(incident.id)
    row = await store.outbox_add("prod", "post", {"content": "x"}, {"incident_id": incident.id}, "nonce1")
    pending = await store.outbox_pending()
    await store.outbox_sent(row, {"channel_id": 1, "message_id": 2})
    still = await store.outbox_pending()
    until = datetime.now(UTC) + timedelta(hours=1)
    await store.add_silence("prod", until, "deploy", "bob")
    (silence,) = await store.active_silences()
    await store.end_silence("prod")
    ended = await store.active_silences()
    assert stored.resolution == "manual_reload" and stored.duration_s is not None and stored.duration_s >= 299
    assert [(a[1], a[2]) for a in actions] == [("alice", "ack")]
    assert [p.nonce for p in pending] == ["nonce1"] and pending[0].meta == {"incident_id": incident.id}
    assert still == [] and (silence.reason, silence.actor) == ("deploy", "bob") and ended == []
    assert abs((silence.until - until).total_seconds()) < 0.001 and silence.until.utcoffset() == timedelta(0)


async def test_every_incident_field_round_trips_and_an_unknown_one_is_refused(store):
    opened = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    incident = await store.open_incident(
        "prod", opened_at=opened, verdict="schema_cache_unavailable", status=503, code="PGRST002", trigger="cli"
    )
    other = await store.open_incident(
        "dev", opened_at=opened, verdict="unreachable", status=None, code=None, trigger="monitor"
    )
    acked = opened + timedelta(minutes=2)
    payload = {"content": "CRITICAL", "embeds": [{"title": "PROD", "fields": [{"name": "a", "value": "b"}]}]}
    await store.update_incident(
        incident.id,
        acknowledged_by="alice",
        acknowledged_at=acked,
        channel_id=SNOWFLAKE,
        message_id=SNOWFLAKE + 1,
        alert_payload=payload,
        last_reminder_at=acked,
        flapping=True,
        silenced=True,
        verdict="stale_schema_cache",
    )
    await store.update_incident(incident.id)  # nothing to change: no error
    with pytest.raises(ValueError, match="not incident fields"):
        await store.update_incident(incident.id, env="staging")
    got = await store.get_incident(incident.id)
    assert got is not None
    assert (got.env, got.opened_at, got.status, got.code, got.trigger) == ("prod", opened, 503, "PGRST002", "cli")
    assert (got.acknowledged_by, got.acknowledged_at, got.last_reminder_at) == ("alice", acked, acked)
    assert (got.channel_id, got.message_id) == (SNOWFLAKE, SNOWFLAKE + 1)
    assert got.alert_payload == payload and got.flapping is True and got.silenced is True
    assert got.verdict == "stale_schema_cache" and got.resolved_at is None
    assert await store.get_incident(other.id + 1000) is None
    assert [i.id for i in await store.open_incidents()] == [incident.id, other.id]
    assert [i.id for i in await store.recent_incidents()] == [other.id, incident.id]
    assert [i.id for i in await store.recent_incidents(limit=1)] == [other.id]
    assert [i.id for i in await store.recent_incidents("dev")] == [other.id]


async def test_resolved_since_counts_incidents_opened_since_and_resolved(store):
    now = datetime.now(UTC)
    old = await store.open_incident(
        "prod", opened_at=now - timedelta(days=9), verdict="x", status=None, code=None, trigger="monitor"
    )
    recent = await store.open_incident(
        "prod", opened_at=now - timedelta(hours=1), verdict="x", status=None, code=None, trigger="monitor"
    )
    still_open = await store.open_incident(
        "prod", opened_at=now, verdict="x", status=None, code=None, trigger="monitor"
    )
    for incident in (old, recent):
        await store.update_incident(incident.id, resolved_at=now, resolution="recovered")
    assert [i.id for i in await store.resolved_since(now - timedelta(days=1))] == [recent.id]
    assert [i.id for i in await store.open_incidents()] == [still_open.id]


async def test_an_action_on_an_unknown_incident_is_a_store_error(store):
    with pytest.raises(StoreError):
        await store.add_action(424242, "alice", "ack")


async def test_the_audit_log_completes_filters_and_marks_what_a_stopped_process_left(store):
    before = datetime.now(UTC) - timedelta(seconds=1)
    await store.audit("alice", "silence", "prod", "silenced for 1h")
    done = await store.audit_begin("bob", "reload", "prod")
    await store.audit_end(done, "recovered")
    cut = await store.audit_begin("carol", "reload", None)
    assert [e.status for e in await store.audit_log(status=AUDIT_STARTED)] == [AUDIT_STARTED]
    assert await store.audit_mark_unfinished() == 1
    assert await store.audit_mark_unfinished() == 0
    entries = await store.audit_log()
    assert [(e.actor, e.action, e.env, e.status) for e in entries] == [
        ("carol", "reload", None, AUDIT_INTERRUPTED),
        ("bob", "reload", "prod", AUDIT_DONE),
        ("alice", "silence", "prod", AUDIT_DONE),
    ]
    assert entries[0].id == cut and entries[0].outcome == STOPPED_MID_ACTION and entries[0].finished_at is not None
    assert entries[1].id == done and entries[1].outcome == "recovered" and entries[1].at >= before
    assert [e.actor for e in await store.audit_log(limit=1)] == ["carol"]
    assert [e.actor for e in await store.audit_log(status=AUDIT_INTERRUPTED)] == ["carol"]
    assert await store.audit_log(since=datetime.now(UTC) + timedelta(minutes=1)) == []
    assert len(await store.audit_log(since=before)) == 3


async def test_the_outbox_keeps_its_order_folds_edits_and_finds_where_a_nonce_landed(store):
    first = await store.outbox_add("prod", "post", {"content": "CRITICAL"}, {"incident_id": 7}, "n-1")
    second = await store.outbox_add("prod", "edit", {"content": "ack"}, {"handle": {"message_id": 1}}, "n-2")
    third = await store.outbox_add("dev", "post", {"content": "dev"}, {}, "n-3")
    await store.outbox_attempt(first)
    await store.outbox_attempt(first)
    await store.outbox_update(first, {"content": "CRITICAL, acknowledged"}, {"incident_id": 7, "folded": True})
    pending = await store.outbox_pending()
    assert [p.id for p in pending] == [first, second, third]
    assert (pending[0].payload, pending[0].meta, pending[0].attempts) == (
        {"content": "CRITICAL, acknowledged"},
        {"incident_id": 7, "folded": True},
        2,
    )
    assert await store.outbox_result("n-1") is None  # pending: not landed yet
    await store.outbox_sent(first, {"channel_id": SNOWFLAKE, "message_id": SNOWFLAKE + 5})
    await store.outbox_update(first, {"content": "too late"}, {})  # already sent: the record stays as sent
    await store.outbox_sent(second, None)
    assert await store.outbox_result("n-1") == {"channel_id": SNOWFLAKE, "message_id": SNOWFLAKE + 5}
    assert await store.outbox_result("n-2") is None and await store.outbox_result("unknown") is None
    assert [p.id for p in await store.outbox_pending()] == [third]
    assert await store.outbox_count() == 3 and await store.outbox_count(unsent_only=True) == 1


async def test_a_new_silence_replaces_the_active_one(store):
    soon, later = datetime.now(UTC) + timedelta(minutes=10), datetime.now(UTC) + timedelta(hours=2)
    await store.add_silence("prod", soon, "deploy", "alice")
    await store.add_silence("dev", soon, "tests", "bob")
    await store.add_silence("prod", later, "migration", "carol")
    active = await store.active_silences()
    assert [(s.env, s.reason, s.actor) for s in active] == [("dev", "tests", "bob"), ("prod", "migration", "carol")]
    await store.end_silence("prod")
    await store.end_silence("qa")  # nothing silenced there: nothing happens
    assert [s.env for s in await store.active_silences()] == ["dev"]


async def test_delivered_outbox_rows_older_than_30_days_are_pruned_at_open(store_backend):
    store = await store_backend.open()
    old = await store.outbox_add("prod", "post", {"content": "old"}, {}, "n-old")
    await store.outbox_sent(old, {"message_id": 1})
    recent = await store.outbox_add("prod", "post", {"content": "recent"}, {}, "n-recent")
    await store.outbox_sent(recent, {"message_id": 2})
    await store.outbox_add("prod", "post", {"content": "unsent"}, {}, "n-unsent")
    await store_backend.sql(f"UPDATE outbox SET sent_at = '2020-01-01T00:00:00+00:00' WHERE id = {old}")
    await store.close()
    store = await store_backend.open()
    assert await store.outbox_count() == 2 and [r.nonce for r in await store.outbox_pending()] == ["n-unsent"]
    assert await store.outbox_result("n-old") is None and await store.outbox_result("n-recent") == {"message_id": 2}


async def test_drift_memory_is_replaced_per_environment_and_survives_a_reopen(store_backend):
    store = await store_backend.open()
    await store.replace_drift_memory("prod", [RememberedObject("relation", "public", "orders")])
    await store.replace_drift_memory("dev", [RememberedObject("column", "public", "t", "c")])
    await store.replace_drift_memory(
        "prod", [RememberedObject("function", "api", "add", detail='[[["a", "b"], null]]')]
    )
    await store.close()
    again = await store_backend.open()
    assert await again.drift_memory("prod") == [RememberedObject("function", "api", "add", "", '[[["a", "b"], null]]')]
    assert await again.drift_memory("dev") == [RememberedObject("column", "public", "t", "c")]
    assert await again.drift_memory("qa") == []


async def test_drift_memory_is_ordered_the_same_way_and_a_repeated_object_keeps_its_last_detail(store):
    objects = [
        RememberedObject("relation", "public", "b"),
        RememberedObject("relation", "public", "B"),
        RememberedObject("column", "public", "a", "z"),
        RememberedObject("relation", "public", "a_b"),
        RememberedObject("relation", "public", "b", detail="second"),
    ]
    await store.replace_drift_memory("prod", objects)
    assert await store.drift_memory("prod") == [
        RememberedObject("column", "public", "a", "z"),
        RememberedObject("relation", "public", "B"),
        RememberedObject("relation", "public", "a_b"),
        RememberedObject("relation", "public", "b", detail="second"),
    ]
    await store.replace_drift_memory("prod", [])
    assert await store.drift_memory("prod") == []


async def test_a_reopened_store_keeps_everything_and_stays_at_the_schema_version(store_backend):
    store = await store_backend.open()
    incident = await store.open_incident(
        "prod", opened_at=datetime.now(UTC), verdict="unreachable", status=None, code=None, trigger="monitor"
    )
    await store.add_silence("prod", datetime.now(UTC) + timedelta(hours=1), "deploy", "alice")
    await store.close()
    again = await store_backend.open()
    assert [i.id for i in await again.open_incidents()] == [incident.id]
    assert [s.reason for s in await again.active_silences()] == ["deploy"]
    assert again.version == SCHEMA_VERSION  # type: ignore[attr-defined]
