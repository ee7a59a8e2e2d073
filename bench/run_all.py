"""Benchmarks (run with `make bench`; results go in bench/README.md with this command).

1. Time-to-healthy after a NOTIFY: pgrst-ops's operator vs PostgREST's own reload time (a 2 ms tight poll
   of OPTIONS) vs the runbook's fixed "wait 3 s and re-check" loop, same scenario, same run.
2. A sweep of 100 environments (one real PostgREST, 99 local servers answering after 0-800 ms): total time
   vs the slowest single probe.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import subprocess
import sys
import time
import uuid

import httpx

from bot.config import parse_settings, resolve_targets
from bot.core.recovery import Outcome
from bot.ops.recovery import RecoveryOperator
from bot.postgrest.probe import Prober
from bot.postgrest.requests import make_http_client
from tests.conftest import SCHEMA_SQL
from tests.support.pgstack import PgCluster, PostgrestServer, free_port

TRIALS = 7


def env_config(server: PostgrestServer, table: str, channel: str, dsn_var: str) -> dict:
    return {
        "rest_url": server.url,
        "admin_url": server.admin_url,
        "probe_tables": [table],
        "notify_channel": channel,
        "database_dsn": {"env": dsn_var},
    }


async def own_reload_ms(
    cluster: PgCluster, server: PostgrestServer, db: str, channel: str, client: httpx.AsyncClient
) -> float:
    table = f"own_{uuid.uuid4().hex[:6]}"
    cluster.psql(f"CREATE TABLE {table} (id int); GRANT SELECT ON {table} TO anon;", dbname=db)
    cluster.psql(f"NOTIFY {channel}, 'reload schema'", dbname=db)
    sent = time.perf_counter()
    while (await client.options(f"{server.url}/{table}")).status_code != 200:
        await asyncio.sleep(0.002)
    return (time.perf_counter() - sent) * 1000


async def operator_ms(cluster, server, db, channel, environ, client, *, fixed_sleep: bool) -> float:
    table = f"op_{uuid.uuid4().hex[:6]}"
    cluster.psql(f"CREATE TABLE {table} (id int); GRANT SELECT ON {table} TO anon;", dbname=db)
    settings = parse_settings(
        {"environments": {"b": env_config(server, table, channel, "BENCH_DSN")}, "recovery": {"max_reloads": 100}}
    )
    (target,) = resolve_targets(settings, environ=environ)
    prober = Prober(client)
    if fixed_sleep:  # the runbook: NOTIFY, wait 3 s, re-check
        cluster.psql(f"NOTIFY {channel}, 'reload schema'", dbname=db)
        sent = time.perf_counter()
        for _ in range(3):
            await asyncio.sleep(3)
            if (await prober.probe(target)).healthy:
                return (time.perf_counter() - sent) * 1000
        raise RuntimeError("fixed-sleep loop never saw healthy")
    result = await RecoveryOperator(prober, settings.recovery).recover(target)
    assert result.outcome is Outcome.RECOVERED, result.reason
    assert result.time_to_healthy_ms is not None
    return result.time_to_healthy_ms


async def bench_time_to_healthy(cluster: PgCluster) -> None:
    db, channel = "bench_tth", "pgrst_bench"
    cluster.sql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE); CREATE DATABASE {db}")
    cluster.psql(SCHEMA_SQL, dbname=db)
    server = PostgrestServer(
        cluster, channel=channel, extra_env={"PGRST_DB_URI": cluster.dsn("authenticator", dbname=db)}
    )
    server.start()
    environ = {"BENCH_DSN": cluster.dsn("ops", dbname=db)}
    try:
        async with make_http_client() as client:  # each trial's env config is new: default pool
            own = [await own_reload_ms(cluster, server, db, channel, client) for _ in range(TRIALS)]
            ours = [
                await operator_ms(cluster, server, db, channel, environ, client, fixed_sleep=False)
                for _ in range(TRIALS)
            ]
            fixed = [
                await operator_ms(cluster, server, db, channel, environ, client, fixed_sleep=True) for _ in range(2)
            ]
    finally:
        server.destroy()
    print("## Time to healthy after NOTIFY (ms)")
    print(f"PostgREST's own reload (2 ms poll), n={TRIALS}: median {statistics.median(own):.0f}, max {max(own):.0f}")
    print(f"pgrst-ops operator, n={TRIALS}: median {statistics.median(ours):.0f}, max {max(ours):.0f}")
    print(f"runbook fixed 3 s wait, n=2: median {statistics.median(fixed):.0f}")
    print(f"operator minus own reload (medians): {statistics.median(ours) - statistics.median(own):.0f} ms")
    print(f"speed-up vs fixed wait (medians): {statistics.median(fixed) / statistics.median(ours):.1f}x\n")


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
        await bench_time_to_healthy(cluster)
        await bench_sweep(cluster)
    finally:
        cluster.destroy()


if __name__ == "__main__":
    asyncio.run(main())
