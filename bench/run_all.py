"""Benchmarks (run with `make bench`; results go in bench/README.md with this command).

A sweep of 100 environments (one real PostgREST, 99 local servers answering after 0-800 ms): total time
vs the slowest single probe. Time-to-healthy after a NOTIFY, against PostgREST's own reload and the runbook's
3 s loop, is bench/floor_bench.py.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time

from bot.config import parse_settings, resolve_targets
from bot.postgrest.probe import Prober
from bot.postgrest.requests import make_http_client
from tests.support.pgstack import PgCluster, PostgrestServer, free_port


async def bench_sweep(cluster: PgCluster) -> None:
    server = PostgrestServer(cluster)
    server.start()
    delays = [random.Random(i).uniform(0, 0.8) for i in range(99)]

    # The slow servers live in another process, so their CPU does not count against the prober's loop.
    ports = [free_port() for _ in delays]
    proc = subprocess.Popen([sys.executable, "-m", "bench.slow_server", *map(str, ports)])
    await wait_port(ports[-1])
    envs = {"real": {"rest_url": server.url, "admin_url": server.admin_url, "probe_tables": ["judgments"]}}
    for i, (d, port) in enumerate(zip(delays, ports, strict=True)):
        envs[f"slow{i}"] = {"rest_url": f"http://127.0.0.1:{port}/{d:.3f}", "probe_tables": ["judgments"]}
    settings = parse_settings({"environments": envs})
    targets = resolve_targets(settings, need_dsn=False)
    try:
        async with make_http_client(settings.environments.values()) as client:
            prober = Prober(client)
            singles = []
            for t in targets:
                started = time.perf_counter()
                await prober.probe(t)
                singles.append(time.perf_counter() - started)
            started = time.perf_counter()
            reports = await prober.probe_many(targets)
            total = time.perf_counter() - started
            # The monitor sweeps again and again: the next sweep reuses pooled connections.
            started = time.perf_counter()
            await prober.probe_many(targets)
            warm = time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        server.destroy()
    assert len(reports) == 100 and all(r.healthy for r in reports)
    slowest = max(singles)
    print("## Sweep of 100 environments (1 real PostgREST + 99 servers answering after 0-800 ms)")
    print(f"slowest single probe: {slowest * 1000:.0f} ms; sum of singles: {sum(singles) * 1000:.0f} ms")
    print(
        f"all 100 concurrently, first sweep (new connections): {total * 1000:.0f} ms = {total / slowest:.2f}x the slowest single probe"
    )
    print(f"all 100 concurrently, next sweep (pooled connections): {warm * 1000:.0f} ms = {warm / slowest:.2f}x\n")


async def wait_port(port: int) -> None:
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError("slow server did not start")


async def main() -> None:
    cluster = PgCluster()
    cluster.start()
    try:
        await bench_sweep(cluster)
    finally:
        cluster.destroy()


if __name__ == "__main__":
    asyncio.run(main())
