"""`python -m bot` with a `metrics` section: the composition root serves /metrics, /healthz and /readyz in console
mode, and closes the port on SIGTERM; a port it cannot listen on is a configuration error (exit 2)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import write_config
from tests.support.localhttp import get, start_bot, until

ADDRESS_RE = re.compile(r"metrics and health endpoints on http://127\.0\.0\.1:(\d+) ")


def healthy_checks(text: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "pgrst_ops_checks_total" and s.labels == {"env": "dev", "verdict": "healthy"}
    )


async def start_console(tmp_path, stack, port: int) -> asyncio.subprocess.Process:
    config = write_config(
        tmp_path / "c.yaml",
        {"dev": stack.env_config()},
        monitor={"interval_s": 1, "failure_threshold": 1, "success_threshold": 1},
        incidents={"store_path": str(tmp_path / "incidents.db")},
        metrics={"host": "127.0.0.1", "port": port},
    )
    env = {k: v for k, v in os.environ.items() if k != "DISCORD_TOKEN"} | stack.env_vars
    return await start_bot(config, env=env, stdout=asyncio.subprocess.DEVNULL)


async def test_console_mode_serves_the_endpoints_and_closes_the_port_on_sigterm(make_stack, tmp_path):
    stack = make_stack()
    proc = await start_console(tmp_path, stack, 0)
    assert proc.stderr is not None
    try:
        async with asyncio.timeout(20):
            while not (found := ADDRESS_RE.search((line := await proc.stderr.readline()).decode())):
                assert line, "exited before listening"
            port = int(found.group(1))
            ready = await until(lambda: get(port, "/readyz"), lambda a: a[0] == 200)  # 503 until the store is open
            scraped = await until(lambda: get(port, "/metrics"), lambda a: healthy_checks(a[1]) >= 1)
            alive = await get(port, "/healthz")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 10)
    assert ready == (200, "ready\n") and alive == (200, "ok\n")
    assert "pgrst_ops_verdict" in scraped[1] and "_created" not in scraped[1]
    assert code == 0
    with socket.socket() as probe:  # the listener stopped with the bot
        assert probe.connect_ex(("127.0.0.1", port)) != 0


async def test_a_port_in_use_is_a_configuration_error_naming_the_key(make_stack, tmp_path):
    stack = make_stack()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await start_console(tmp_path, stack, port)
        code = await asyncio.wait_for(proc.wait(), 20)
    assert proc.stderr is not None
    stderr = (await proc.stderr.read()).decode()
    assert code == 2
    assert f"pgrst-ops: configuration error: metrics: cannot listen on 127.0.0.1:{port}" in stderr
    assert "Traceback" not in stderr
