"""`pgrst-ops fix` with `incidents.store: {env: ...}`: the run is recorded in the PostgreSQL store (a real process,
a real PostgREST, the store's schema in the stack's own database), and the DSN never shows."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

from tests.conftest import write_config


def cli(config, *args: str, env: dict[str, str], cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
        cwd=cwd,
    )


async def test_fix_records_its_incident_in_the_postgresql_store(make_stack, tmp_path):
    stack = make_stack()
    stack.sql("CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;")
    stack.sql(f"GRANT CREATE ON DATABASE {stack.db} TO ops")  # the store creates its own schema there
    config = write_config(
        tmp_path / "c.yaml",
        {"prod": stack.env_config(probe_tables=["orders"])},
        incidents={"store": {"env": "PGRST_OPS_STORE_DSN"}},
    )
    env = {**stack.env_vars, "PGRST_OPS_STORE_DSN": stack.dsn("ops")}
    proc = await asyncio.to_thread(cli, config, "fix", "--env", "prod", "--json", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["outcome"] == "recovered" and doc["incident"] == "incident #1 recorded (resolved: manual_reload)"
    rows = stack.sql(
        "SELECT env, verdict, trigger, resolution, resolved_at IS NOT NULL FROM pgrst_ops.incidents;"
        "SELECT actor, action, env, outcome FROM pgrst_ops.audit;"
        "SELECT actor, kind FROM pgrst_ops.incident_actions"
    )
    assert rows.splitlines() == [
        "prod|stale_schema_cache|cli|manual_reload|t",
        "cli|fix|prod|recovered",
        "cli|reload",
    ]
    assert not list(tmp_path.glob("*.db"))  # no SQLite file beside it (its default path is relative)

    again = await asyncio.to_thread(cli, config, "fix", "--env", "prod", env=env)
    assert again.returncode == 0 and "Incident log: audit entry written (already healthy: no incident)" in again.stdout

    password = stack.cluster.ops_password
    wrong = {**env, "PGRST_OPS_STORE_DSN": stack.dsn("ops", "Not-the-store-pw")}
    refused = await asyncio.to_thread(cli, config, "fix", "--env", "prod", env=wrong)
    shown = refused.stdout + refused.stderr
    assert refused.returncode == 0, shown  # the fix itself worked; only recording it failed
    assert "Incident log: not recorded: the PostgreSQL store (environment variable PGRST_OPS_STORE_DSN)" in shown
    assert "Not-the-store-pw" not in shown and password not in shown and "postgresql://" not in shown
