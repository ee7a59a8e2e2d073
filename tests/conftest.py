"""Shared fixtures: a real PostgreSQL cluster, and isolated PostgREST stacks on it.

Each stack gets its own database and NOTIFY channel, so one test's reload or broken role setting
never reaches another test's PostgREST.
"""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bot.config import Settings, Target, parse_settings, resolve_targets
from tests.support.pgstack import STEADY_PGRST002, PgCluster, PostgrestServer
from tests.support.supabase_api import ALL_SCOPES, REF, TOKEN, FakeManagementApi

pytest_plugins = ["tests.support.fixtures"]

SCHEMA_SQL = textwrap.dedent(
    """
    GRANT USAGE ON SCHEMA public TO anon, authenticated;
    CREATE TABLE public.judgments (id bigserial PRIMARY KEY, title text);
    INSERT INTO public.judgments (title) VALUES ('first judgment'), ('second judgment');
    GRANT SELECT, INSERT ON public.judgments TO anon, authenticated;
    GRANT USAGE, SELECT ON SEQUENCE public.judgments_id_seq TO anon, authenticated;
    CREATE FUNCTION public.ping() RETURNS int LANGUAGE sql STABLE AS 'select 1';
    GRANT EXECUTE ON FUNCTION public.ping() TO anon, authenticated;
    """
)


@dataclass
class Stack:
    """One PostgREST on its own database and channel of the shared cluster."""

    cluster: PgCluster
    db: str
    channel: str
    postgrest: PostgrestServer
    env_vars: dict[str, str] = field(default_factory=dict)

    def sql(self, statement: str) -> str:
        return self.cluster.psql(statement, dbname=self.db)

    def dsn(self, user: str = "ops", password: str | None = None) -> str:
        return self.cluster.dsn(user, password, dbname=self.db)

    def notify(self) -> None:
        self.sql(f"NOTIFY {self.channel}, 'reload schema'")

    async def wait_for_code(self, code: str, within_s: float = 10.0) -> None:
        """Wait until the API answers with `code` (e.g. PGRST002 once a bad setting has been applied)."""
        async with httpx.AsyncClient(timeout=2) as client:
            deadline = time.monotonic() + within_s
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if code in (await client.get(f"{self.postgrest.url}/judgments")).text:
                        return
                await asyncio.sleep(0.05)
        raise AssertionError(f"PostgREST did not answer {code} within {within_s} s")

    def env_config(self, **overrides: Any) -> dict[str, Any]:
        config: dict[str, Any] = {
            "rest_url": self.postgrest.url,
            "admin_url": self.postgrest.admin_url,
            "probe_tables": [{"name": "judgments", "select": "id"}],
            "notify_channel": self.channel,
            "dashboard_url": "https://supabase.com/dashboard/project/testref",
            "restart_url": "https://supabase.com/dashboard/project/testref/settings/general",
            "timeouts": {"connect_s": 2, "read_s": 3, "total_s": 5},
            "database_dsn": {"env": f"DSN_{self.db.upper()}"},
        }
        config.update(overrides)
        return config


@pytest.fixture
def make_stack(pg_cluster: PgCluster) -> Iterator[Any]:
    stacks: list[Stack] = []

    def make(
        *,
        channel_enabled: bool = True,
        monitor_user: str = "ops",
        extra_env: dict[str, str] | None = None,
        steady_pgrst002: bool = False,  # for tests that break the cache with a 1 ms statement_timeout
        **server_options: Any,  # e.g. application_name (see PostgrestServer)
    ) -> Stack:
        suffix = uuid.uuid4().hex[:8]
        db, channel = f"t_{suffix}", f"pgrst_{suffix}"
        pg_cluster.sql(f"CREATE DATABASE {db}")
        pg_cluster.psql(SCHEMA_SQL, dbname=db)
        server = PostgrestServer(
            pg_cluster,
            channel=channel,
            channel_enabled=channel_enabled,
            extra_env={
                "PGRST_DB_URI": pg_cluster.dsn("authenticator", dbname=db),
                **(STEADY_PGRST002 if steady_pgrst002 else {}),
                **(extra_env or {}),
            },
            **server_options,
        )
        stack = Stack(pg_cluster, db, channel, server)
        stack.env_vars[f"DSN_{db.upper()}"] = stack.dsn(monitor_user)
        stacks.append(stack)
        server.start()
        return stack

    yield make
    for stack in stacks:
        stack.postgrest.destroy()
        pg_cluster.sql(f"DROP DATABASE IF EXISTS {stack.db} WITH (FORCE)")


def build_settings(envs: dict[str, dict[str, Any]], **top: Any) -> Settings:
    return parse_settings({"environments": envs, **top})


def targets_for(
    settings: Settings, environ: dict[str, str], names: list[str] | None = None, *, need_dsn: bool = False
) -> list[Target]:
    return resolve_targets(settings, names, environ, need_dsn=need_dsn)


def write_config(path: Path, envs: dict[str, dict[str, Any]], **top: Any) -> Path:
    path.write_text(yaml.safe_dump({"environments": envs, **top}, sort_keys=False))
    return path


@pytest.fixture
async def api() -> AsyncIterator[FakeManagementApi]:
    """The local fake of Supabase's Management API with one project (REF) and a token with every scope (TOKEN)."""
    async with FakeManagementApi(tokens={TOKEN: ALL_SCOPES}) as fake:
        fake.add_project(REF)
        yield fake
