"""Gzip bombs against the running bot: 4 hostile environments must add at most 100 MB RSS to the idle bot.

The bot (`bot.app.main`, console mode, monitor every 1 s, drift every 2 s) runs in its own process with 4
environments, each on its own local server and with a real PostgreSQL database (so drift and diagnosis
run too). The servers answer every request either with a small JSON body ("idle") or with a gzip bomb,
~2 MB that inflate to 2 GiB (tests/support/gzipbomb.py). Peak RSS (VmHWM) and final RSS (VmRSS) of the
bot process are read from /proc once every environment has had >= 6 probe sweeps and >= 3 drift reads.
"bomb, no drift" is the bounded reader with drift off: what the probes alone cost.

"before" runs the same bot with the reader this project had until the bounded one (copied below, as it
was in bot/probe.py and bot/drift.py): it checked the cap after httpx had inflated a whole network chunk.

Run: `python -m bench.gzip_bomb [runs]` (default 3 runs of each mode; medians).
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml
from aiohttp import web

from tests.conftest import SCHEMA_SQL
from tests.support.gzipbomb import GzipBomb, Hit, gzip_bomb_server
from tests.support.localhttp import LocalServer
from tests.support.pgstack import PgCluster

ENVS = 4
PROBE_SWEEPS = 6
DRIFT_READS = 3
TARGET_MB = 100.0
STOP_WAIT_S = 30.0
NOTES: list[str] = []


# ------------------------------------------------------------------------------ the previous reader ("before")


async def before_send_capped(client: httpx.AsyncClient, request: httpx.Request, cap: int) -> object:
    """bot/probe.py `Prober._send` + `_read_capped` before the bounded reader (drift's `_read_capped` was the
    same loop): the cap is checked after httpx has inflated each network chunk."""
    from bot.httpread import CappedAnswer

    response = await client.send(request, stream=True)
    try:
        headers = {k.lower(): v for k, v in response.headers.items()}
        chunks: list[bytes] = []
        size = 0
        truncated = False
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size > cap:
                body, truncated = b"".join(chunks)[:cap], True
                break
        else:
            body = b"".join(chunks)
    finally:
        await response.aclose()
    return CappedAnswer(response.status_code, headers, body, truncated)


def child(reader: str, argv: list[str]) -> int:
    """The bot process; with `before`, both readers (probe and drift) are the previous one."""
    import bot.postgrest.requests
    from bot.app import main

    if reader == "before":
        # Both readers (probe and drift) send through bot/postgrest/requests.py.
        bot.postgrest.requests.send_capped = before_send_capped  # type: ignore[assignment]
        bot.postgrest.requests.send = before_send_capped  # type: ignore[assignment]  # its transport's own path
    return main(argv)


# ------------------------------------------------------------------------------ the benchmark


def proc_status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field}")


def small_server(hits: list[Hit]) -> LocalServer:
    async def handler(request: web.Request) -> web.Response:
        hits.append((request.method, request.path_qs, dict(request.headers)))
        return web.json_response([], headers={"Server": "postgrest/12.0.2"})

    return LocalServer.catch_all(handler)


def start_bot(reader: str, config: Path, dsn: str) -> subprocess.Popen[bytes]:
    environ = {k: v for k, v in os.environ.items() if k not in ("DISCORD_TOKEN", "DISCORD_WEBHOOK_URL")}
    return subprocess.Popen(
        [sys.executable, "-m", "bench.gzip_bomb", "child", reader, "--config", str(config)],
        env={**environ, "BENCH_DSN": dsn},
        stdout=subprocess.DEVNULL,
        stderr=open(config.with_suffix(".log"), "wb"),  # console mode (no token): alerts print to stdout, dropped
    )


async def stop_bot(proc: subprocess.Popen[bytes]) -> bool:
    """SIGTERM, waited for without blocking this loop (the servers the bot is still talking to run in it)."""
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.to_thread(proc.wait), STOP_WAIT_S)
        return True
    except TimeoutError:
        proc.kill()
        await asyncio.to_thread(proc.wait)
        return False


async def run_bot(mode: str, dsn: str, tmp: Path) -> tuple[float, float, float]:
    """One bot process with 4 environments: (peak RSS MB, final RSS MB, seconds until enough sweeps)."""
    reader = "before" if mode == "bomb, before" else "after"
    drift = mode != "bomb, no drift"
    hits: list[list[Hit]] = [[] for _ in range(ENVS)]
    bomb = GzipBomb()
    servers = [gzip_bomb_server(bomb, hits=h) if mode != "idle" else small_server(h) for h in hits]
    urls = [await s.__aenter__() for s in servers]
    try:
        envs = {
            f"env{i}": {
                "rest_url": url,
                "probe_root": False,  # "/" is then read by drift only
                "probe_tables": [{"name": "judgments", "select": "id", "columns": ["title"]}],
                "probe_functions": ["ping"],
                "database_dsn": {"env": "BENCH_DSN"},
                "timeouts": {"connect_s": 2, "read_s": 5, "total_s": 8},
            }
            for i, url in enumerate(urls)
        }
        config = tmp / f"{mode.replace(', ', '-')}.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "environments": envs,
                    "monitor": {"interval_s": 1, "drift_interval_s": 2 if drift else 0},
                    "incidents": {"store_path": ":memory:"},
                }
            )
        )
        proc = start_bot(reader, config, dsn)
        started = time.monotonic()
        try:

            def enough() -> bool:
                # The data check is the probe's alone (`limit=1`); "/" is drift's alone (probe_root is off).
                return all(
                    sum(m == "GET" and "limit=1" in p for m, p, _ in h) >= PROBE_SWEEPS
                    and sum(m == "GET" and p == "/" for m, p, _ in h) >= (DRIFT_READS if drift else 0)
                    for h in hits
                )

            async with asyncio.timeout(90):
                while not enough():
                    assert proc.poll() is None, f"the bot exited: {config.with_suffix('.log').read_text()[-2000:]}"
                    await asyncio.sleep(0.1)
            seconds = time.monotonic() - started
            peak, final = proc_status_mb(proc.pid, "VmHWM"), proc_status_mb(proc.pid, "VmRSS")
        finally:
            stopped = await stop_bot(proc)
            if not stopped:
                NOTES.append(f"{mode}: the bot did not exit within {STOP_WAIT_S:g} s of SIGTERM (killed)")
    finally:
        for s in servers:
            await s.__aexit__(None, None, None)
    return peak, final, seconds


async def main(runs: int) -> None:
    cluster = PgCluster()
    cluster.start()
    try:
        cluster.sql("CREATE DATABASE bench_bomb")
        cluster.psql(SCHEMA_SQL, dbname="bench_bomb")
        dsn = cluster.dsn("ops", dbname="bench_bomb")
        modes = ["idle", "bomb, after", "bomb, no drift", "bomb, before"]
        results: dict[str, list[tuple[float, float, float]]] = {m: [] for m in modes}
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(runs):
                for mode in modes:  # interleaved, so drift in machine load hits every mode alike
                    results[mode].append(await run_bot(mode, dsn, Path(tmp)))
    finally:
        cluster.destroy()

    def med(mode: str, i: int) -> float:
        return statistics.median(r[i] for r in results[mode])

    idle_peak = med("idle", 0)
    print(f"## Gzip bombs: {ENVS} environments, bot process (console mode), n={runs} runs per mode, medians")
    print(f"each run: until every environment had >= {PROBE_SWEEPS} probe sweeps and >= {DRIFT_READS} drift reads")
    print(f"{'mode':14} {'peak RSS MB':>12} {'final RSS MB':>13} {'peak - idle MB':>15} {'run s':>7}   peaks")
    for mode in modes:
        peaks = ", ".join(f"{r[0]:.0f}" for r in results[mode])
        print(
            f"{mode:14} {med(mode, 0):12.1f} {med(mode, 1):13.1f} {med(mode, 0) - idle_peak:15.1f} "
            f"{med(mode, 2):7.1f}   {peaks}"
        )
    added = med("bomb, after", 0) - idle_peak
    verdict = "met" if added <= TARGET_MB else "MISSED"
    print(f"target: {ENVS} bomb environments add <= {TARGET_MB:.0f} MB to the idle bot's peak RSS: {verdict}")
    for note in NOTES:
        print(f"NOTE: {note}")
    print()


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "child":
        sys.exit(child(sys.argv[2], sys.argv[3:]))
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
