"""`python -m bot` without a Discord token: the console monitor, stopped cleanly by SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from tests.conftest import write_config


async def test_console_mode_detects_recovers_and_stops_on_sigterm(make_stack, tmp_path):
    stack = make_stack()
    config = write_config(
        tmp_path / "c.yaml",
        {"dev": stack.env_config(probe_tables=["orders"])},
        monitor={"interval_s": 1, "failure_threshold": 1, "success_threshold": 1},
        incidents={"store_path": str(tmp_path / "incidents.db")},
    )
    stack.sql("CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;")
    env = {k: v for k, v in os.environ.items() if k != "DISCORD_TOKEN"} | stack.env_vars
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    seen = ""
    try:
        async with asyncio.timeout(20):
            while "Auto-recovered" not in seen:
                line = await proc.stdout.readline()
                assert line, f"exited early: {await proc.stderr.read()!r}"
                seen += line.decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 10)
    assert "console mode (no Discord token)" in seen
    assert "dev  ❌ stale_schema_cache" in seen
    assert code == 0
    assert (tmp_path / "incidents.db").exists()  # the auto-recovered outage is in the incident log
    stderr = (await proc.stderr.read()).decode()
    assert "Traceback" not in stderr and stack.cluster.ops_password not in seen + stderr
