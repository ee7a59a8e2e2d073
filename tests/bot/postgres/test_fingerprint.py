"""The catalog watch's fingerprint on a real PostgreSQL: every kind of catalog change moves it, nothing else does,
and the scan runs only when some transaction with an id has ended since the last read."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from bot.postgres.fingerprint import CatalogFingerprint


@pytest.fixture
async def db(pg_cluster) -> AsyncIterator[str]:
    """A database of its own, with one table, dropped after the test."""
    name = f"fp_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_cluster.dsn("postgres"))
    try:
        await admin.execute(f"create database {name}")
        conn = await asyncpg.connect(pg_cluster.dsn(dbname=name))
        await conn.execute("create table items (id int primary key, label text); create table log (n int)")
        await conn.close()
        yield pg_cluster.dsn(dbname=name)
    finally:
        await admin.execute(f"drop database if exists {name} with (force)")
        await admin.close()


async def test_a_quiet_database_is_not_scanned_again(db):
    watch = await asyncpg.connect(db)
    try:
        reader = CatalogFingerprint()
        first = await reader.read(watch)
        assert reader.scanned  # the first read has nothing to compare with
        assert await reader.read(watch) == first
        assert not reader.scanned
    finally:
        await watch.close()


@pytest.mark.parametrize(
    "ddl",
    [
        "create table fresh (id int)",
        "alter table items add column price numeric",
        "alter table items rename column label to title",
        "alter table items drop column label",
        "alter table items alter column label type varchar(40)",
        "drop table log",
        "create function ping() returns int language sql as 'select 1'",
        "grant select on items to public",
        "create schema api",
        "alter table log add constraint log_n_key unique (n)",
    ],
)
async def test_every_kind_of_catalog_change_moves_the_fingerprint(db, ddl):
    watch, owner = await asyncpg.connect(db), await asyncpg.connect(db)
    try:
        reader = CatalogFingerprint()
        before = await reader.read(watch)
        await owner.execute(ddl)
        assert await reader.read(watch) != before
        assert reader.scanned
    finally:
        await watch.close()
        await owner.close()


async def test_a_data_write_scans_but_does_not_count_as_a_change(db):
    watch, owner = await asyncpg.connect(db), await asyncpg.connect(db)
    try:
        reader = CatalogFingerprint()
        before = await reader.read(watch)
        await owner.execute("insert into log values (1)")
        assert await reader.read(watch) == before
        assert reader.scanned  # the snapshot moved, so it looked
    finally:
        await watch.close()
        await owner.close()


async def test_a_migration_open_across_reads_is_seen_when_it_commits(db):
    """A transaction that already had its id at the last read (in progress then) still moves the snapshot when it
    commits, even when younger transactions finished before it."""
    watch, migration, other = [await asyncpg.connect(db) for _ in range(3)]
    try:
        reader = CatalogFingerprint()
        tx = migration.transaction()
        await tx.start()
        await migration.execute("create table during (id int)")  # takes its transaction id now
        await other.execute("insert into log values (1)")  # a younger transaction ends first
        before = await reader.read(watch)
        assert await reader.read(watch) == before and not reader.scanned  # nothing ended since
        await tx.commit()
        assert await reader.read(watch) != before
    finally:
        for conn in (watch, migration, other):
            await conn.close()
