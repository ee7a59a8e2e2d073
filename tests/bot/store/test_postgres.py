"""The PostgreSQL store on a real PostgreSQL 15: its migrations give SQLite's tables and columns with the same
schema_version rows, two replicas opening at once migrate once, and a refused password, a cut network or a
database that stops answering is a StoreError that never shows the DSN or its password."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import uuid
from datetime import UTC, datetime
from urllib.parse import urlsplit

import asyncpg
import pytest

from bot.config import parse_settings
from bot.store import open_store
from bot.store.errors import StoreError
from bot.store.migrations import SCHEMA_VERSION, migrate
from bot.store.postgres import PostgresStore
from bot.store.postgres.migrate import MIGRATION_LOCK
from bot.store.postgres.migrate import migrate as pg_migrate
from tests.support.pgstack import made_up_password, url_dsn
from tests.support.tcpproxy import TcpProxy


@pytest.fixture
async def schema(store_database):
    """A fresh schema name; dropped after the test."""
    name = f"m_{uuid.uuid4().hex[:10]}"
    yield name
    conn = await asyncpg.connect(store_database, timeout=10)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


async def connect(dsn: str, schema: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn, timeout=10, server_settings={"search_path": schema})


def sqlite_columns() -> dict[str, list[tuple[str, bool]]]:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrate(conn)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    # table_info: (cid, name, type, notnull, default, pk); an INTEGER PRIMARY KEY is never NULL
    columns = {t: [(c[1], bool(c[3] or c[5])) for c in conn.execute(f"PRAGMA table_info({t})")] for t in tables}
    conn.close()
    return columns


async def test_both_dialects_give_the_same_tables_columns_and_schema_version_rows(store_database, schema):
    conn = await connect(store_database, schema)
    try:
        assert await pg_migrate(conn, schema) == SCHEMA_VERSION
        rows = await conn.fetch(
            "SELECT table_name, column_name, is_nullable FROM information_schema.columns WHERE table_schema = $1 "
            "ORDER BY table_name, ordinal_position",
            schema,
        )
        versions = [r[0] for r in await conn.fetch("SELECT version FROM schema_version ORDER BY version")]
        applied = await conn.fetchval("SELECT applied_at FROM schema_version WHERE version = 1")
    finally:
        await conn.close()
    pg: dict[str, list[tuple[str, bool]]] = {}
    for r in rows:
        pg.setdefault(r["table_name"], []).append((r["column_name"], r["is_nullable"] == "NO"))
    assert pg == sqlite_columns()
    assert {"incidents", "incident_actions", "audit", "outbox", "silences", "drift_memory", "schema_version"} <= set(pg)
    assert versions == list(range(1, SCHEMA_VERSION + 1)) and applied.endswith("+00:00")  # the same ISO text


async def test_each_older_version_migrates_forward_keeping_its_rows(store_database, schema):
    for start in range(1, SCHEMA_VERSION):
        conn = await connect(store_database, schema)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            assert await pg_migrate(conn, schema, upto=start) == start
            await conn.execute(
                "INSERT INTO incidents (env, opened_at, verdict, trigger) VALUES ('prod', now(), 'unreachable', 'monitor')"
            )
            await conn.execute(
                "INSERT INTO audit (at, actor, action, env, outcome) VALUES (now(), 'alice', 'reload', 'prod', 'ok')"
            )
        finally:
            await conn.close()
        store = await PostgresStore(store_database, schema=schema).open()
        try:
            (incident,) = await store.open_incidents()
            (entry,) = await store.audit_log()
        finally:
            await store.close()
        assert store.version == SCHEMA_VERSION and (incident.env, incident.flapping) == ("prod", False)
        assert (entry.actor, entry.outcome, entry.status) == ("alice", "ok", "done")


async def test_a_store_from_a_newer_pgrst_ops_is_refused(store_database, schema):
    await (await PostgresStore(store_database, schema=schema).open()).close()
    conn = await connect(store_database, schema)
    try:
        await conn.execute("INSERT INTO schema_version VALUES ($1, 'later')", SCHEMA_VERSION + 5)
    finally:
        await conn.close()
    with pytest.raises(StoreError, match="newer than this pgrst-ops"):
        await PostgresStore(store_database, schema=schema).open()


async def test_two_replicas_opening_at_once_migrate_once_and_both_work(store_database, schema):
    stores = [PostgresStore(store_database, schema=schema) for _ in range(3)]
    try:
        await asyncio.gather(*(s.open() for s in stores))
        assert [s.version for s in stores] == [SCHEMA_VERSION] * 3
        first = await stores[0].open_incident(
            "prod", opened_at=datetime.now(UTC), verdict="unreachable", status=None, code=None, trigger="monitor"
        )
        await stores[1].add_action(first.id, "alice", "ack")
        assert [a[1] for a in await stores[2].actions(first.id)] == ["alice"]
        conn = await connect(store_database, schema)
        try:
            versions = [r[0] for r in await conn.fetch("SELECT version FROM schema_version ORDER BY version")]
        finally:
            await conn.close()
        assert versions == list(range(1, SCHEMA_VERSION + 1))  # each migration applied exactly once
    finally:
        for s in stores:
            await s.close()


def with_password(dsn: str, password: str) -> str:
    parts = urlsplit(dsn)
    netloc = f"{parts.username}:{password}@{parts.hostname}:{parts.port}"
    return parts._replace(netloc=netloc).geturl()


async def test_a_refused_password_is_one_error_naming_the_variable_never_the_dsn(store_database, caplog):
    wrong = "Wrong-Store-pw-4711"
    settings = parse_settings(
        {
            "environments": {"dev": {"rest_url": "http://127.0.0.1:9/", "probe_tables": ["t"]}},
            "incidents": {"store": {"env": "PGRST_OPS_TEST_STORE_DSN"}},
        }
    )
    with caplog.at_level(logging.ERROR):
        store = await open_store(settings.incidents, {"PGRST_OPS_TEST_STORE_DSN": with_password(store_database, wrong)})
        unset = await open_store(settings.incidents, {})
    assert store is None and unset is None
    refused, missing = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert refused.startswith("the PostgreSQL store (environment variable PGRST_OPS_TEST_STORE_DSN): ")
    assert "refused the user or its password" in refused and "probing and alerting go on" in refused, refused
    assert wrong not in refused and "postgresql://" not in refused
    assert "the PostgreSQL store: environment variable PGRST_OPS_TEST_STORE_DSN is not set or empty" in missing
    with pytest.raises(StoreError) as raised:
        await PostgresStore(with_password(store_database, wrong), label="the PostgreSQL store (test)").open()
    assert "refused" in str(raised.value) and wrong not in str(raised.value)


async def test_a_cut_network_or_a_silent_database_is_a_store_error_and_the_store_comes_back(
    pg_cluster, store_database, schema
):
    async with TcpProxy(pg_cluster.host, pg_cluster.port) as proxy:
        parts = urlsplit(store_database)
        dsn = parts._replace(netloc=f"{parts.username}:{parts.password}@{proxy.host}:{proxy.port}").geturl()
        store = await PostgresStore(dsn, label="the PostgreSQL store (test)", schema=schema, timeout_s=1.5).open()
        try:
            await store.audit("alice", "reload", "prod", "before")
            await proxy.cut()
            # the pooled connection is gone, then a new one is refused
            for cause in ("the connection to the server failed", "cannot reach the server"):
                with pytest.raises(StoreError) as cut:
                    await store.audit("alice", "reload", "prod", "cut")
                text = str(cut.value)
                assert text.startswith(f"the PostgreSQL store (test): {cause} ("), text
                assert parts.password not in text and "postgresql://" not in text, text
            await proxy.restore()
            await store.audit("alice", "reload", "prod", "back")
            proxy.hang()
            with pytest.raises(StoreError, match=r"the PostgreSQL store \(test\): no answer within 1.5 s"):
                await store.audit_log()
            await proxy.restore()
            assert [e.outcome for e in await store.audit_log()] == ["back", "before"]
        finally:
            await store.close()


PASSWORD = made_up_password()


@pytest.mark.parametrize(
    "dsn",
    [
        url_dsn("ops", PASSWORD, "127.0.0.1", "notaport", "db"),
        url_dsn("ops", PASSWORD, "127.0.0.1", 5432, "db", "mysql"),
    ],
    ids=["bad port", "not PostgreSQL"],
)
async def test_a_malformed_dsn_says_so_without_showing_it(dsn):
    with pytest.raises(StoreError) as raised:
        await PostgresStore(dsn, label="the PostgreSQL store (environment variable X)", timeout_s=2).open()
    text = str(raised.value)
    assert text.startswith("the PostgreSQL store (environment variable X): the DSN cannot be read"), text
    assert PASSWORD not in text and "127.0.0.1" not in text


async def test_a_migration_waits_for_the_advisory_lock_another_replica_holds(store_database, schema):
    holder = await asyncpg.connect(store_database, timeout=10)
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", MIGRATION_LOCK, schema)
        opening = asyncio.ensure_future(PostgresStore(store_database, schema=schema, timeout_s=30).open())
        waiting = (
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid::bigint = $1 "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        for _ in range(200):  # until the opening store's session queues behind the lock
            if await holder.fetchval(waiting, MIGRATION_LOCK):
                break
            await asyncio.sleep(0.05)
        assert await holder.fetchval(waiting, MIGRATION_LOCK) == 1 and not opening.done()
        await tx.commit()  # the other replica is done: this one goes on
        store = await asyncio.wait_for(opening, 30)
    finally:
        await holder.close()
    try:
        assert store.version == SCHEMA_VERSION and await store.open_incidents() == []
    finally:
        await store.close()
