"""pgrst-ops against a database laid out by Supabase's own init scripts, served by PostgREST as Supabase ships it.

The fixture (tests/support/supabase_roles.sql, supabase_init.sql) has Supabase's roles, schemas, default
privileges (new tables not granted to the API roles, as since 2026) and the pgrst_ddl_watch / pgrst_drop_watch
event triggers that NOTIFY PostgREST on DDL; PostgREST runs with `?application_name=postgrest`,
db-schemas public,storage,graphql_public and db-extra-search-path public,extensions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.core.verdicts import Verdict
from bot.postgrest.probe import Prober
from bot.postgrest.requests import make_http_client
from tests.conftest import build_settings, targets_for, write_config
from tests.support.pgstack import (
    STEADY_PGRST002,
    NotifyCounter,
    PgCluster,
    PostgrestServer,
    create_supabase_database,
    init_supabase_cluster,
    supabase_postgrest,
)

PROFILES = "CREATE TABLE public.profiles (id int primary key, name text); GRANT SELECT ON public.profiles TO anon;"


@pytest.fixture(scope="module")
def supabase_cluster() -> Iterator[PgCluster]:
    cluster = PgCluster(bootstrap=False)
    try:
        cluster.start()
        init_supabase_cluster(cluster)
        yield cluster
    finally:
        cluster.destroy()


@dataclass
class Supabase:
    cluster: PgCluster
    db: str
    postgrest: PostgrestServer

    def sql(self, statement: str) -> str:
        return self.cluster.psql(statement, dbname=self.db)

    def dsn(self) -> str:
        return self.cluster.dsn("ops", dbname=self.db)

    @property
    def env_vars(self) -> dict[str, str]:
        return {"SUPABASE_DSN": self.dsn()}

    def env_config(self, **overrides: Any) -> dict[str, Any]:
        return {
            "rest_url": self.postgrest.url,
            "admin_url": self.postgrest.admin_url,
            "probe_tables": ["profiles"],
            "exposed_schemas": ["public", "storage", "graphql_public"],
            "api_roles": ["anon", "authenticated", "service_role"],
            "notify_channel": "pgrst",
            "timeouts": {"connect_s": 2, "read_s": 3, "total_s": 5},
            "database_dsn": {"env": "SUPABASE_DSN"},
            **overrides,
        }

    async def wait_for(self, path: str, status: int, *, method: str = "GET", within_s: float = 10.0) -> str:
        """Until PostgREST answers `status` on `path` (a positive signal that a reload landed); the body."""
        async with httpx.AsyncClient(timeout=2) as client:
            deadline = time.monotonic() + within_s
            last = "no answer"
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    response = await client.request(method, f"{self.postgrest.url}{path}")
                    if response.status_code == status:
                        return response.text
                    last = f"{response.status_code} {response.text[:200]}"
                await asyncio.sleep(0.05)
        raise AssertionError(f"{method} {path} did not answer {status} within {within_s} s (last: {last})")


@pytest.fixture
def supabase(supabase_cluster: PgCluster) -> Iterator[Supabase]:
    db = f"sb_{uuid.uuid4().hex[:8]}"
    create_supabase_database(supabase_cluster, db)
    server = supabase_postgrest(supabase_cluster, db)
    try:
        server.start()
        yield Supabase(supabase_cluster, db, server)
    finally:
        server.destroy()
        supabase_cluster.sql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


async def ready(supabase: Supabase) -> None:
    """The probe table, reloaded into the cache by the event trigger (not by us)."""
    supabase.sql(PROFILES)
    await supabase.wait_for("/profiles", 200, method="OPTIONS")


async def fix(supabase: Supabase, tmp_path: Path, **overrides: Any) -> tuple[int, dict[str, Any], int]:
    """`pgrst-ops fix --json` as a pipeline runs it: exit code, document, and the NOTIFYs it sent on pgrst."""
    config = write_config(tmp_path / "c.yaml", {"supabase": supabase.env_config(**overrides)})
    command = [sys.executable, "-m", "bot.cli", "--config", str(config), "fix", "--env", "supabase", "--json"]
    async with NotifyCounter(supabase.dsn(), "pgrst") as notifies:
        proc = await asyncio.to_thread(
            subprocess.run,
            [*command, "--no-alert"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **supabase.env_vars},
        )
        assert proc.stdout, proc.stderr
        return proc.returncode, json.loads(proc.stdout), await notifies.reloads()


async def test_fixture_is_supabase_as_shipped(supabase):
    await ready(supabase)
    names = supabase.sql("select distinct application_name from pg_stat_activity where usename = 'authenticator'")
    assert names.split() == ["postgrest"]
    triggers = supabase.sql("select evtname from pg_event_trigger order by 1").split()
    assert triggers == ["pgrst_ddl_watch", "pgrst_drop_watch"]
    settings = build_settings({"supabase": supabase.env_config()})
    (target,) = targets_for(settings, supabase.env_vars)
    async with make_http_client() as client:
        response = await client.get(f"{supabase.postgrest.url}/objects", headers={"Accept-Profile": "storage"})
        report = await Prober(client).probe(target)
    assert response.status_code == 200 and response.json() == []  # RLS on, no policy: no rows, no error
    assert report.healthy, report.explanation


async def test_supabases_own_storage_objects_and_graphql_function_can_be_probed(supabase, tmp_path):
    await ready(supabase)
    overrides = {
        "probe_tables": ["profiles", {"name": "storage.objects", "columns": ["bucket_id", "name"]}],
        "probe_functions": ["graphql_public.graphql"],
    }
    settings = build_settings({"supabase": supabase.env_config(**overrides)})
    (target,) = targets_for(settings, supabase.env_vars)
    async with make_http_client() as client:
        report = await Prober(client).probe(target)
    assert report.healthy, report.explanation
    checks = {c.name: (c.status, c.code) for c in report.checks}
    assert checks["data:storage.objects"] == (200, None)  # RLS without a policy: no rows, not an error
    assert checks["columns:storage.objects"] == (415, "PGRST107")  # looked up in storage's cache, nothing written
    assert checks["rpc:graphql_public.graphql"] == (415, "PGRST107")  # found in graphql_public, never run
    code, doc, reloads = await fix(supabase, tmp_path, **overrides)
    assert code == 0 and doc["outcome"] == "already_healthy" and reloads == 0


async def test_ddl_reloads_the_cache_by_itself_and_fix_has_nothing_to_do(supabase, tmp_path):
    await ready(supabase)
    supabase.sql("CREATE TABLE public.notes (id int primary key); GRANT SELECT ON public.notes TO anon;")
    await supabase.wait_for("/notes", 200, method="OPTIONS")  # the event trigger's NOTIFY reloaded it
    code, doc, reloads = await fix(supabase, tmp_path, probe_tables=["profiles", "notes"])
    assert code == 0 and doc["outcome"] == "already_healthy" and reloads == 0


async def test_a_table_without_grants_is_not_granted_and_gets_no_notify(supabase, tmp_path):
    await ready(supabase)
    supabase.sql("CREATE TABLE public.secrets (id int primary key);")  # no auto-grant since 2026
    await supabase.wait_for("/secrets", 200, method="OPTIONS")  # cached by the trigger's reload
    code, doc, reloads = await fix(supabase, tmp_path, probe_tables=["profiles", "secrets"])
    assert code == 1 and doc["outcome"] == "escalated" and reloads == 0
    assert doc["verdict_after"] == Verdict.NOT_GRANTED
    assert "GRANT SELECT ON public.secrets TO anon, authenticated, service_role" in doc["reason"]


async def test_ddl_under_replica_role_skips_the_trigger_stays_stale_and_fix_recovers(supabase, tmp_path):
    await ready(supabase)
    supabase.sql(
        "SET session_replication_role = replica;"  # event triggers do not fire (e.g. a restore, a replicated DDL)
        "CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;"
    )
    await supabase.wait_for("/orders", 404, method="OPTIONS")
    code, doc, reloads = await fix(supabase, tmp_path, probe_tables=["profiles", "orders"])
    assert code == 0, doc["reason"]
    assert doc["outcome"] == "recovered" and doc["verdict_before"] == Verdict.STALE_SCHEMA_CACHE
    assert doc["listener"] == "present" and reloads == 1
    assert "postgrest (user authenticator, from 127.0.0.1)" in doc["diagnosis"]["listener_detail"]
    assert "pooler" not in json.dumps(doc)


async def test_authenticator_statement_timeout_of_1ms_is_pgrst002_with_the_cause_and_no_notify(supabase, tmp_path):
    supabase.postgrest.stop()
    supabase.postgrest.extra_env.update(STEADY_PGRST002)  # PGRST002, not an exited PostgREST, on a busy machine
    supabase.postgrest.start()
    await ready(supabase)
    supabase.sql(f"ALTER ROLE authenticator IN DATABASE {supabase.db} SET statement_timeout = '1ms'")
    supabase.sql("COMMENT ON TABLE public.profiles IS 'who is who'")  # a migration: the trigger reloads
    assert "PGRST002" in await supabase.wait_for("/profiles", 503)
    code, doc, reloads = await fix(supabase, tmp_path)
    assert code == 1 and doc["outcome"] == "escalated" and reloads == 0
    assert doc["verdict_after"] == Verdict.SCHEMA_CACHE_UNAVAILABLE and not doc["notify_sent"]
    assert "Cause: statement_timeout too low for authenticator" in doc["reason"]
    assert f"ALTER ROLE authenticator IN DATABASE {supabase.db} RESET statement_timeout" in doc["reason"]
