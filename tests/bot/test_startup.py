"""The CLI's start-up: what `pgrst-ops check` loads and how long a whole run takes (bench/README.md "Start-up").

Each run is a fresh interpreter, as a person's or a CI job's run is: modules the test process already holds
would hide what the CLI imports.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from pathlib import Path

from aiohttp import web

from tests.support.localhttp import LocalServer

# A run loads this much CPU today (bench/README.md); the bound is generous so a loaded machine never trips it,
# and still catches a heavy import (discord.py alone is ~0.3 s) creeping back in.
CHECK_CPU_BOUND_S = 2.0

REPORT_MODULES = """
import json, sys, bot.cli
rc = bot.cli.main(sys.argv[1:])
heavy = ("discord", "asyncpg", "prometheus_client", "aiohttp", "bot.store", "bot.delivery.webhook", "click", "rich")
print(json.dumps({"rc": rc, "loaded": [m for m in heavy if m in sys.modules]}))
"""


async def postgrest_answer(request: web.Request) -> web.Response:
    return web.json_response([], headers={"Server": "postgrest/12.0.2"})


async def run_cli(*args: str) -> tuple[int, bytes, float]:
    """A fresh interpreter: exit code, stdout, and its CPU seconds (user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert proc.returncode is not None
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert not err or proc.returncode == 0, err.decode()[-2000:]
    return proc.returncode, out, cpu


async def test_check_loads_no_discord_database_driver_or_store(tmp_path: Path) -> None:
    async with LocalServer.catch_all(postgrest_answer) as url:
        config = tmp_path / "config.yaml"
        config.write_text(json.dumps({"environments": {"dev": {"rest_url": url, "probe_tables": ["judgments"]}}}))
        rc, out, _ = await run_cli("-c", REPORT_MODULES, "--config", str(config), "check", "--env", "dev")
    assert rc == 0, out.decode()
    doc = json.loads(out.splitlines()[-1])
    assert doc["rc"] == 0
    # aiohttp comes with discord.py; the CLI speaks HTTP through httpx only.
    assert doc["loaded"] == []


async def test_importing_the_cli_loads_nothing_a_command_may_not_need() -> None:
    probe = "import sys, bot.cli; print(' '.join(m for m in ('discord', 'pydantic', 'httpx') if m in sys.modules))"
    rc, out, _ = await run_cli("-c", probe)
    assert rc == 0
    assert out.strip() == b""  # --help and --version need none of them


async def test_a_whole_check_run_stays_cheap(tmp_path: Path) -> None:
    async with LocalServer.catch_all(postgrest_answer) as url:
        config = tmp_path / "config.yaml"
        config.write_text(json.dumps({"environments": {"dev": {"rest_url": url, "probe_tables": ["judgments"]}}}))
        started = time.perf_counter()
        rc, out, cpu = await run_cli("-m", "bot.cli", "--config", str(config), "check", "--env", "dev")
        wall = time.perf_counter() - started
    assert rc == 0, out.decode()
    assert b"HEALTHY" in out
    assert cpu < CHECK_CPU_BOUND_S, f"`pgrst-ops check` used {cpu:.2f} s of CPU (wall {wall:.2f} s)"
