"""The CLI's start-up: what `pgrst-ops check` loads and how long a whole run takes (bench/README.md "Start-up").

Each run is a fresh interpreter, as a person's or a CI job's run is: modules the test process already holds
would hide what the CLI imports.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sqlite3
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
heavy = ("discord", "asyncpg", "prometheus_client", "aiohttp", "bot.store", "bot.delivery.webhook", "click", "rich",
         "pydantic.networks", "importlib.metadata")
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


# main() as the tests call it in-process, in a process of its own: what the console script must match.
MAIN_ONLY = "import sys, bot.cli; sys.exit(bot.cli.main(sys.argv[1:]))"
VOLATILE = {"latency_ms", "duration_ms", "checked_at"}


def console_script() -> str:
    script = Path(sys.executable).with_name("pgrst-ops")
    assert script.exists(), f"{script}: the package is not installed in this environment (pip install -e .)"
    return str(script)


async def run_process(*command: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of a fresh process, its streams buffered as a user's are (a pipe)."""
    inherited = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**inherited, **(env or {})}
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def steady(doc: object) -> object:
    """A JSON document without what differs from one run to the next (latencies, timestamps)."""
    if isinstance(doc, dict):
        return {k: steady(v) for k, v in doc.items() if k not in VOLATILE}
    if isinstance(doc, list):
        return [steady(v) for v in doc]
    return doc


async def schema_cache_down(request: web.Request) -> web.Response:
    body = {"code": "PGRST002", "message": "Could not query the database for the schema cache. Retrying."}
    return web.json_response(body, status=503, headers={"Server": "postgrest/12.0.2"})


async def test_the_console_script_answers_as_main_does(tmp_path: Path) -> None:
    """Same output, log lines and exit code from `pgrst-ops` / `python -m bot.cli` as from main() itself."""
    async with LocalServer.catch_all(postgrest_answer) as up, LocalServer.catch_all(schema_cache_down) as down:
        config = tmp_path / "config.yaml"
        envs = {"up": {"rest_url": up, "probe_tables": ["judgments"]}, "down": {"rest_url": down}}
        config.write_text(json.dumps({"environments": envs}))
        cases = {
            "healthy": ["check", "--env", "up", "--json"],
            "unhealthy": ["check", "--json", "--verbose"],  # --verbose: httpx's log lines on stderr
            "usage error": ["check", "--nope"],
            "configuration error": ["check", "--env", "elsewhere", "--json"],
        }
        for case, args in cases.items():
            argv = ["--config", str(config), *args]
            expected = await run_process(sys.executable, "-c", MAIN_ONLY, *argv)
            for command in ([console_script()], [sys.executable, "-m", "bot.cli"]):
                rc, out, err = await run_process(*command, *argv)
                assert rc == expected[0], (case, command, out, err)
                if case == "usage error":
                    assert rc == 2 and err == expected[2] and "unrecognized arguments: --nope" in err, err
                    continue
                assert steady(json.loads(out)) == steady(json.loads(expected[1])), (case, command)
                assert sorted(err.splitlines()) == sorted(expected[2].splitlines()), (case, command)
    assert expected[0] == 2  # the last case: an unknown environment is a configuration error


async def test_a_fix_run_leaves_its_incident_in_the_store_before_the_process_ends(make_stack, tmp_path: Path) -> None:
    """The console script leaves through os._exit: the incident row, the audit row and the printed report are
    all there once it has ended (SQLite store: the bot's file on this machine)."""
    from bot.store import open_store

    stack = make_stack()
    stack.sql("CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;")
    db = tmp_path / "incidents.db"
    store = await open_store(str(db))  # the bot's file exists here, so `fix` records into it
    assert store is not None
    await store.close()
    config = tmp_path / "config.yaml"
    env = {"prod": stack.env_config(probe_tables=["orders"])}
    config.write_text(json.dumps({"environments": env, "incidents": {"store": str(db)}}))
    argv = ["--config", str(config), "fix", "--env", "prod", "--json", "--no-alert"]
    rc, out, err = await run_process(console_script(), *argv, env=stack.env_vars)
    assert rc == 0, out + err
    doc = json.loads(out)
    assert doc["outcome"] == "recovered" and doc["incident"] == "incident #1 recorded (resolved: manual_reload)"

    with sqlite3.connect(db) as conn:
        incidents = conn.execute("SELECT env, trigger, resolution FROM incidents").fetchall()
        audit = conn.execute("SELECT actor, action, env, outcome FROM audit").fetchall()
    assert incidents == [("prod", "cli", "manual_reload")]
    assert audit == [("cli", "fix", "prod", "recovered")]
    # And main() itself, in its own process, on the same environment (now healthy): the same answer shape.
    again = await run_process(sys.executable, "-c", MAIN_ONLY, *argv, env=stack.env_vars)
    fast = await run_process(console_script(), *argv, env=stack.env_vars)
    assert again[0] == fast[0] == 0
    assert steady(json.loads(again[1]))["incident"] == steady(json.loads(fast[1]))["incident"]
    assert json.loads(fast[1])["outcome"] == "already_healthy"


async def test_fix_without_the_store_here_logs_nothing_and_loads_no_store(make_stack, tmp_path: Path) -> None:
    """A CI runner has no store file: the run is reported (incident null), no file appears, and the store's
    code is never imported (it would compete with the re-checks while PostgREST reloads)."""
    stack = make_stack()
    stack.sql("CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;")
    db = tmp_path / "incidents.db"  # the default store, absent on this machine
    config = tmp_path / "config.yaml"
    env = {"prod": stack.env_config(probe_tables=["orders"])}
    config.write_text(json.dumps({"environments": env, "incidents": {"store": str(db)}}))
    argv = ["--config", str(config), "fix", "--env", "prod", "--json", "--no-alert"]
    rc, out, err = await run_process(sys.executable, "-c", REPORT_MODULES, *argv, env=stack.env_vars)
    assert rc == 0, out + err
    *report, modules = out.splitlines()  # the fix report, then the modules line
    doc = json.loads("\n".join(report))
    assert doc["outcome"] == "recovered" and doc["incident"] is None
    loaded = json.loads(modules)["loaded"]
    assert "bot.store" not in loaded and "pydantic.networks" not in loaded, loaded
    assert not db.exists()


class RecordedWrites:
    """A text stream that keeps each write apart."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


async def test_a_json_report_reaches_stdout_in_one_write(tmp_path: Path) -> None:
    """Unbuffered (PYTHONUNBUFFERED, as in the image) every write is a system call: json.dump made ~560 of them
    for one `fix` report. The document goes out whole, once."""
    from bot.cli import main

    async with LocalServer.catch_all(postgrest_answer) as url:
        config = tmp_path / "config.yaml"
        envs = {name: {"rest_url": url, "probe_tables": ["judgments"]} for name in ("dev", "prod")}
        config.write_text(json.dumps({"environments": envs}))
        out = RecordedWrites()
        rc = await asyncio.to_thread(main, ["--config", str(config), "check", "--json"], out=out)  # type: ignore[arg-type]
    assert rc == 0
    assert len(out.writes) == 1 and out.writes[0].endswith("}\n")
    doc = json.loads(out.writes[0])
    assert doc["healthy"] is True and [e["env"] for e in doc["environments"]] == ["dev", "prod"]
