"""Console mode as a newcomer meets it: `python -m bot` without a token, a real PostgREST, real processes.

What is checked is what a person or a pipe sees: each environment's verdict within seconds of the start, then
what happens next; plain text without Markdown or ANSI when redirected; colour on a terminal unless NO_COLOR;
only JSON lines, on both streams, with --log-format json.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import write_config
from tests.support.localhttp import start_bot
from tests.support.pgstack import free_port

ANSI = "\x1b["
MARKDOWN = re.compile(r"\*\*|`|<t:\d+|<@&?\d+>|\]\(http")
TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"


def console_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISCORD_TOKEN", "NO_COLOR")}
    return env | extra


def down_env() -> dict:
    """An environment nothing listens on: postgrest_down at the first check."""
    return {
        "rest_url": f"http://127.0.0.1:{free_port()}",
        "probe_tables": ["judgments"],
        "restart_url": "https://supabase.com/dashboard/project/downref/settings/general",
        "auto_recover": False,
        "timeouts": {"connect_s": 1, "read_s": 1, "total_s": 2},
    }


def console_config(tmp_path: Path, envs: dict, threshold: int = 1) -> Path:
    return write_config(
        tmp_path / "c.yaml",
        envs,
        monitor={"interval_s": 60, "failure_threshold": threshold, "success_threshold": 1},
        incidents={"store_path": str(tmp_path / "incidents.db")},
    )


async def read_until(stream: asyncio.StreamReader, marker: str, within_s: float) -> str:
    """Lines from `stream` until one holds `marker` (the positive signal), within `within_s` seconds."""
    seen = ""
    async with asyncio.timeout(within_s):
        while marker not in seen:
            line = await stream.readline()
            assert line, f"stream ended before {marker!r}: {seen!r}"
            seen += line.decode()
    return seen


async def stop(proc: asyncio.subprocess.Process) -> tuple[int, str, str]:
    """SIGTERM, then the exit code and whatever is left on both streams."""
    proc.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_first_check_prints_every_verdict_at_start_in_plain_text(make_stack, tmp_path):
    stack = make_stack()
    config = console_config(tmp_path, {"dev": stack.env_config(), "down": down_env()}, threshold=2)
    started = time.monotonic()
    proc = await start_bot(config, env=console_env(**stack.env_vars))
    try:
        seen = await read_until(
            proc.stdout, "alerting after 2 consecutive failures (liveness check every 5 s, full probe every 60 s)", 20
        )
        elapsed = time.monotonic() - started
    finally:
        code, rest, err = await stop(proc)
    # interval_s is 60: without the first check at start, none of this would appear for a minute
    assert elapsed < 20
    lines = seen.splitlines()
    assert lines[0].startswith("pgrst-ops ") and "console mode (no Discord token)" in lines[0]
    assert re.search(rf"^{TIME}  dev  ✅ healthy$", seen, re.M), seen
    assert re.search(rf"^{TIME}  down  ❌ postgrest_down: Connection refused", seen, re.M), seen
    assert lines[-1] == "alerting after 2 consecutive failures (liveness check every 5 s, full probe every 60 s)"
    assert code == 0, err
    out = seen + rest
    assert ANSI not in out + err and not MARKDOWN.search(out), out
    assert not any(line.lstrip().startswith("{") for line in (out + err).splitlines())  # no JSON by default
    assert "Traceback" not in err


async def test_a_critical_alert_reads_as_plain_text_with_one_time_format(tmp_path):
    config = console_config(tmp_path, {"down": down_env()}, threshold=1)
    proc = await start_bot(config, env=console_env())
    try:
        seen = await read_until(
            proc.stdout, "alerting after 1 consecutive failure (liveness check every 5 s, full probe every 60 s)", 20
        )
    finally:
        code, _, err = await stop(proc)
    assert code == 0, err
    block = seen.split("  CRITICAL  down\n", 1)
    assert len(block) == 2, seen  # the alert came with the first check, under its own header
    body = [line for line in block[1].splitlines() if line.startswith("  ")]
    assert len(body) >= 3 and "DOWN" in block[1]  # the payload's text, indented under the header
    assert ANSI not in seen and not MARKDOWN.search(seen), seen
    assert not re.search(rf"({TIME})\s*\(\1\)", seen), seen  # a time is never shown twice in a row
    times = re.findall(r"\d\d:\d\d:\d\d(?: UTC)?", seen)
    assert times and all(t.endswith(" UTC") for t in times), seen  # one format only


def run_on_terminal(config: Path, marker: str, env: dict[str, str]) -> str:
    """`python -m bot` with stdout on a pseudo-terminal: what a person at a terminal sees, up to `marker`."""
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "--config", str(config)],
        stdout=slave,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 20
        while marker.encode() not in seen:
            assert time.monotonic() < deadline, seen
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    chunk = b""
                assert chunk or proc.poll() is None, f"exited early: {seen!r}"
                seen += chunk
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        with contextlib.suppress(OSError):
            os.close(master)
    return seen.decode(errors="replace")


async def test_colour_only_on_a_terminal_and_never_with_no_color(tmp_path):
    marker = "alerting after 1 consecutive failure"
    for run in ("coloured", "plain"):  # each its own store: the second would re-attach the first's open alert
        (tmp_path / run).mkdir()
    config = console_config(tmp_path / "coloured", {"down": down_env()}, threshold=1)
    coloured = await asyncio.to_thread(run_on_terminal, config, marker, console_env())
    assert ANSI in coloured and "postgrest_down" in coloured  # a terminal gets colour ...
    config = console_config(tmp_path / "plain", {"down": down_env()}, threshold=1)
    plain = await asyncio.to_thread(run_on_terminal, config, marker, console_env(NO_COLOR="1"))
    assert "postgrest_down" in plain and "CRITICAL" in plain
    assert ANSI not in plain  # ... but never with NO_COLOR


async def test_log_format_json_gives_only_json_lines_on_both_streams(make_stack, tmp_path):
    stack = make_stack()
    config = console_config(tmp_path, {"dev": stack.env_config(), "down": down_env()}, threshold=1)
    proc = await start_bot(config, "--log-format", "json", env=console_env(**stack.env_vars))
    try:
        seen = await read_until(proc.stdout, '"event": "schedule"', 20)
    finally:
        code, rest, err = await stop(proc)
    assert code == 0, err
    events = [json.loads(line) for line in (seen + rest).splitlines()]  # every stdout line is one JSON object
    logs = [json.loads(line) for line in err.splitlines()]  # and so is every log line
    verdicts = {e["env"]: e["to"] for e in events if e["event"] == "verdict"}
    assert verdicts == {"dev": "healthy", "down": "postgrest_down"}
    (alert,) = [e for e in events if e["event"] == "message"]
    assert alert["kind"] == "CRITICAL" and alert["env"] == "down" and not MARKDOWN.search(alert["text"])
    (schedule,) = [e for e in events if e["event"] == "schedule"]
    assert schedule["failure_threshold"] == 1 and schedule["next_check_s"] == 60
    assert any("SIGTERM: stopping" in log["message"] for log in logs)  # the log did speak, in JSON
    assert all({"time", "level", "logger", "message"} <= set(log) for log in logs)
