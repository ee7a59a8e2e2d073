"""Session-scoped pytest fixtures for a real PostgreSQL + PostgREST stack.

Enable with ``pytest_plugins = ["tests.support.fixtures"]`` in ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.pgstack import PgCluster, PostgrestServer


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A started PostgreSQL 15 cluster with Supabase-like roles; destroyed at session end."""
    cluster = PgCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def postgrest(pg_cluster: PgCluster) -> Iterator[PostgrestServer]:
    """A ready PostgREST (schema-cache channel enabled) against ``pg_cluster``."""
    server = PostgrestServer(pg_cluster, channel_enabled=True)
    try:
        server.start()
        yield server
    finally:
        server.destroy()
