"""Smoke tests for the real PostgreSQL/PostgREST test helpers."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest

from tests.support.pgstack import HungHttpServer, PgCluster, PostgrestServer, free_port


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 <= port <= 65535


def test_cluster_started_with_roles(pg_cluster: PgCluster) -> None:
    out = pg_cluster.psql("select rolname from pg_roles where rolname in ('anon','authenticated') order by 1")
    assert out.split() == ["anon", "authenticated"]
    assert pg_cluster.dsn("monitor").startswith("postgresql://monitor:")


async def test_authenticator_can_log_in(pg_cluster: PgCluster) -> None:
    conn = await asyncpg.connect(pg_cluster.dsn("authenticator"))
    try:
        assert await conn.fetchval("select current_user") == "authenticator"
    finally:
        await conn.close()


async def test_monitor_lacks_read_all_stats_ops_has_it(pg_cluster: PgCluster) -> None:
    sql = "select pg_has_role(current_user, 'pg_read_all_stats', 'member')"
    for user, expected in (("monitor", False), ("ops", True)):
        conn = await asyncpg.connect(pg_cluster.dsn(user))
        try:
            assert await conn.fetchval(sql) is expected
        finally:
            await conn.close()


async def test_wrong_password_is_rejected(pg_cluster: PgCluster) -> None:
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(pg_cluster.dsn("authenticator", password="wrong"))


async def test_postgrest_serves_judgments(postgrest: PostgrestServer) -> None:
    async with httpx.AsyncClient(base_url=postgrest.url, timeout=5) as client:
        r = await client.get("/judgments", params={"order": "id"})
    assert r.status_code == 200
    rows = r.json()
    assert [row["title"] for row in rows[:2]] == ["first judgment", "second judgment"]
    async with httpx.AsyncClient(base_url=postgrest.admin_url, timeout=5) as admin:
        assert (await admin.get("/ready")).status_code == 200


def test_stopped_postgrest_refuses_connections(pg_cluster: PgCluster) -> None:
    server = PostgrestServer(pg_cluster, channel_enabled=False)
    try:
        server.start()
        assert httpx.get(f"{server.url}/judgments", timeout=5).status_code == 200
        server.stop()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.url}/judgments", timeout=5)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.admin_url}/ready", timeout=5)
    finally:
        server.destroy()


async def test_hung_http_server_times_out() -> None:
    hung = HungHttpServer()
    await hung.start()
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(0.3)) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.get(hung.url)
    finally:
        await asyncio.wait_for(hung.stop(), timeout=5)
