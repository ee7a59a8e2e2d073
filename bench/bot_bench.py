"""Bot benchmarks (the bot in its own process, a fake Discord and a real PostgREST in this one).

1. /health initial-response latency (INTERACTION_CREATE sent → callback received by the fake) under 20
   concurrent invocations while one environment hangs. Target p99 ≤ 50 ms on loopback.
2. Bot RSS with 50 environments configured, after 10 monitor sweeps. Target ≤ 80 MB.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tests.fakediscord import FakeDiscord
from tests.support.pgstack import HungHttpServer, PgCluster, PostgrestServer


def write_config(path: Path, fake: FakeDiscord, envs: dict, interval_s: float) -> None:
    path.write_text(
        yaml.safe_dump(
            {
                "environments": envs,
                "monitor": {"interval_s": interval_s},
                "discord": {"guild_ids": [fake.guild_id], "ops_channel_id": fake.ops_channel_id},
            }
        )
    )


def start_bot(fake: FakeDiscord, config: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DISCORD_TOKEN": "fake-bot-token"}
    return subprocess.Popen(
        [sys.executable, "-m", "bench.bot_process", fake.url, "--config", str(config)],
        env=env,
        stderr=open(config.with_suffix(".log"), "wb"),
    )


async def wait_synced(fake: FakeDiscord) -> None:
    async with asyncio.timeout(20):
        while not fake.commands.get(fake.guild_id):
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # on_ready after the guild-ready delay


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def bench_ack_latency(server: PostgrestServer, tmp: Path) -> None:
    async with FakeDiscord() as fake, HungHttpServer() as hung:
        envs = {
            "dev": {"rest_url": server.url, "admin_url": server.admin_url, "probe_tables": ["judgments"]},
            "qa": {"rest_url": hung.url, "probe_tables": ["judgments"], "timeouts": {"read_s": 5, "total_s": 5}},
        }
        config = tmp / "ack.yaml"
        write_config(config, fake, envs, 3600)
        proc = start_bot(fake, config)
        try:
            await wait_synced(fake)
            latencies: list[float] = []
            for _ in range(5):
                records = await asyncio.gather(
                    *(fake.invoke_slash("health", user_id=fake.user_ids["carol"]) for _ in range(20))
                )
                await asyncio.gather(*(r.wait_acked(5) for r in records))
                assert not any(r.errors for r in records)
                latencies += [(r.acked_at - r.dispatched_at) * 1000 for r in records]  # type: ignore[operator]
                await asyncio.gather(*(r.wait_for(lambda r: bool(r.followups), 10) for r in records))
        finally:
            proc.terminate()
            proc.wait(10)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print("## /health initial response, 20 concurrent invocations x 5 rounds, one environment hung (5 s)")
    print(
        f"n={len(latencies)}: median {statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms, "
        f"max {latencies[-1]:.1f} ms (INTERACTION_CREATE sent → defer received)\n"
    )


async def bench_rss(server: PostgrestServer, tmp: Path) -> None:
    async with FakeDiscord() as fake:
        envs = {
            f"env{i:02d}": {"rest_url": server.url, "admin_url": server.admin_url, "probe_tables": ["judgments"]}
            for i in range(50)
        }
        config = tmp / "rss.yaml"
        interval = 1.0
        write_config(config, fake, envs, interval)
        proc = start_bot(fake, config)
        try:
            await wait_synced(fake)
            started = time.monotonic()
            await asyncio.sleep(interval * 10 + 1)
            after = rss_mb(proc.pid)
            elapsed = time.monotonic() - started
            posts = len(fake.channel_messages(fake.ops_channel_id))
        finally:
            proc.terminate()
            proc.wait(10)
    print("## Bot RSS, 50 environments, monitor every 1 s, connected to the fake Discord")
    print(f"VmRSS after {elapsed:.1f} s (>= 10 sweeps of all 50): {after:.1f} MB; alerts posted: {posts}\n")


async def main() -> None:
    cluster = PgCluster()
    cluster.start()
    server = PostgrestServer(cluster)
    server.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            await bench_ack_latency(server, Path(tmp))
            await bench_rss(server, Path(tmp))
    finally:
        server.destroy()
        cluster.destroy()


if __name__ == "__main__":
    asyncio.run(main())
