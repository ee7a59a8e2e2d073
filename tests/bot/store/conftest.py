"""The store under test, on each backend: an SQLite file, and a PostgreSQL schema of its own on the session's
real PostgreSQL 15 cluster (one database for these tests, a fresh schema per test, dropped after it).

`store_backend.open()` opens the same store again (a restart); `store_backend.sql()` runs one statement on the
store's tables directly, for what no store call does (aging a row).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from bot.store.interface import IncidentStore
from bot.store.postgres import PostgresStore
from bot.store.sqlite import Store
from tests.support.pgstack import PgCluster

STORE_DB = "pgrst_ops_store_tests"


@pytest.fixture(scope="session")
def store_database(pg_cluster: PgCluster) -> Iterator[str]:
    """A database the (non-superuser) `ops` role may create its schema in; its DSN."""
    pg_cluster.sql(f"CREATE DATABASE {STORE_DB}")
    pg_cluster.sql(f"GRANT CREATE ON DATABASE {STORE_DB} TO ops")
    yield pg_cluster.dsn("ops", dbname=STORE_DB)
    pg_cluster.sql(f"DROP DATABASE IF EXISTS {STORE_DB} WITH (FORCE)")


@dataclass
class StoreBackend:
    name: str
    path: Path | None = None  # sqlite
    dsn: str = ""  # postgres
    schema: str = ""
    opened: list[IncidentStore] = field(default_factory=list)

    async def open(self) -> IncidentStore:
        store: Store | PostgresStore
        if self.name == "sqlite":
            assert self.path is not None
            store = Store(self.path)
        else:
            store = PostgresStore(self.dsn, label="the PostgreSQL store (test)", schema=self.schema)
        await store.open()
        self.opened.append(store)
        return store

    async def sql(self, statement: str) -> None:
        if self.name == "sqlite":
            conn = sqlite3.connect(str(self.path), isolation_level=None)
            try:
                conn.execute(statement)
            finally:
                conn.close()
            return
        conn = await asyncpg.connect(self.dsn, timeout=10, server_settings={"search_path": self.schema})
        try:
            await conn.execute(statement)
        finally:
            await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def store_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreBackend]:
    if request.param == "sqlite":
        backend = StoreBackend("sqlite", path=tmp_path / "incidents.db")
    else:
        dsn = request.getfixturevalue("store_database")
        backend = StoreBackend("postgres", dsn=dsn, schema=f"s_{uuid.uuid4().hex[:10]}")
    yield backend
    for store in backend.opened:
        await store.close()
    if backend.name == "postgres":
        conn = await asyncpg.connect(backend.dsn, timeout=10)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{backend.schema}" CASCADE')
        finally:
            await conn.close()


@pytest.fixture
async def store(store_backend: StoreBackend) -> IncidentStore:
    return await store_backend.open()
