"""`pgrst-ops restart`: the real CLI process, a real PostgREST, and the local fake of the Management API whose
restart really stops and starts that PostgREST."""

from __future__ import annotations

import json

import httpx

from bot.store.sqlite import Store
from tests.bot.test_cli import acli
from tests.conftest import write_config
from tests.support.supabase_api import REF, TOKEN, restarts_postgrest

STALE_TABLE = "CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;"


def config(tmp_path, stack, api, **overrides):
    supabase = {"project_ref": REF, "access_token": {"env": "SB_TOKEN"}, "api_url": api.url, "restart_poll_s": 0.2}
    env = stack.env_config(probe_tables=["orders"], supabase=supabase, **overrides)
    incidents = {"store": str(tmp_path / "pgrst-ops.db")}
    return write_config(tmp_path / "c.yaml", {"prod": env}, incidents=incidents), {**stack.env_vars, "SB_TOKEN": TOKEN}


async def audit_rows(tmp_path):
    store = await Store(tmp_path / "pgrst-ops.db").open()  # the bot's store file, as on the bot's machine
    try:
        return [a for a in await store.audit_log() if a.action == "restart"]
    finally:
        await store.close()


async def test_a_protected_environment_is_not_restarted_without_yes(make_stack, tmp_path, api):
    stack = make_stack()
    path, environ = config(tmp_path, stack, api, protected=True)
    done = await acli(path, "restart", "--env", "prod", env=environ)
    assert done.returncode == 2
    assert "prod is protected: add --yes" in done.stderr and api.calls("POST", "/restart") == []


async def test_restart_follows_the_project_until_postgrest_serves_the_new_table(make_stack, tmp_path, api):
    stack = make_stack(channel_enabled=False)  # a NOTIFY would not be heard: only a restart loads the table
    stack.sql(STALE_TABLE)
    api.on_restart = restarts_postgrest(stack.postgrest, down_s=1.0)
    path, environ = config(tmp_path, stack, api, protected=True)
    assert await audit_rows(tmp_path) == []
    done = await acli(path, "restart", "--env", "prod", "--yes", "--reason", "nobody listens", env=environ)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "prod: restart sent to Supabase, waiting for the project to go down"
    assert lines[1].startswith("prod: restart restarting (") and lines[-2].startswith("prod: restart healthy after")
    assert lines[-1] == "prod: incident log: audit entry written"
    (entry,) = await audit_rows(tmp_path)
    assert entry.actor == "cli" and entry.outcome.startswith("healthy after")
    assert entry.outcome.endswith("(reason: nobody listens)")
    assert len(api.calls("POST", "/restart")) == 1
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{stack.postgrest.url}/orders")).status_code == 200
    assert TOKEN not in done.stdout + done.stderr


async def test_a_token_without_projects_write_fails_with_the_scope_named(make_stack, tmp_path, api):
    stack = make_stack()
    api.tokens[TOKEN] = frozenset({"projects:read"})
    path, environ = config(tmp_path, stack, api)
    done = await acli(path, "restart", "--env", "prod", "--json", env=environ)
    assert done.returncode == 1
    doc = json.loads(done.stdout)
    assert doc["phase"] == "failed" and "403" in doc["detail"] and "projects:write" in doc["detail"]
    assert TOKEN not in done.stdout + done.stderr


async def test_an_environment_without_a_project_is_a_configuration_error(make_stack, tmp_path):
    stack = make_stack()
    path = write_config(tmp_path / "c.yaml", {"prod": stack.env_config()})
    done = await acli(path, "restart", "--env", "prod", env=stack.env_vars)
    assert done.returncode == 2 and "environments.prod.supabase: not set" in done.stderr
