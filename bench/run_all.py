"""Benchmarks (run with `make bench`; results go in bench/README.md with this command).

A sweep of 100 environments (one real PostgREST, 99 stand-ins of bench/fake_postgrest.py answering after 0-800 ms):
total time vs the slowest single probe, the first sweep on new connections and the next on kept ones, medians of
TRIALS. The probing runs in a child process (this file with `--child`); `--before DIR` runs the same child with
another tree's bot package first (main's code, e.g. `git archive <commit> | tar -x -C DIR`), in the same run, so
before and after share one run of a noisy machine. Time-to-healthy after a NOTIFY, against PostgREST's own
reload and the runbook's 3 s loop, is bench/floor_bench.py.

Run: `python -m bench.run_all [--before DIR]`.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
FIRST_PORT = 19_600  # the 99 stand-ins: below the kernel's ephemeral range, clear of scale_bench's ports
TRIALS = 3


async def sweep_child(envs: dict) -> dict:
    """In the child: every environment alone, then TRIALS x (all at once on a new client, then again on it)."""
    from bot.config import parse_settings, resolve_targets
    from bot.postgrest.probe import Prober
    from bot.postgrest.requests import make_http_client

    settings = parse_settings({"environments": envs})
    targets = resolve_targets(settings, need_dsn=False)
    singles = []
    async with make_http_client(settings.environments.values()) as client:
        prober = Prober(client)
        for t in targets:
            started = time.perf_counter()
            await prober.probe(t)
            singles.append(time.perf_counter() - started)
    first, warm = [], []
    for _ in range(TRIALS):
        async with make_http_client(settings.environments.values()) as client:
            prober = Prober(client)
            started = time.perf_counter()
            reports = await prober.probe_many(targets)
            first.append(time.perf_counter() - started)
            assert len(reports) == 100 and all(r.healthy for r in reports), [r.verdict for r in reports]
            # The monitor sweeps again and again: the next sweep reuses kept connections.
            started = time.perf_counter()
            await prober.probe_many(targets)
            warm.append(time.perf_counter() - started)
    return {"slowest": max(singles), "sum": sum(singles), "first": first, "warm": warm}


def run_child(tree: Path, envs_file: Path) -> dict:
    paths = [str(tree)] + ([str(HERE)] if tree != HERE else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    args = [sys.executable, str(HERE / "bench" / "run_all.py"), "--child", str(envs_file)]
    out = subprocess.run(args, check=True, capture_output=True, text=True, timeout=600, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_sweep(trees: dict[str, Path]) -> None:
    from tests.support.pgstack import PgCluster, PostgrestServer

    cluster = PgCluster()
    cluster.start()
    server = PostgrestServer(cluster)
    server.start()
    delays = [random.Random(i).uniform(0, 0.8) for i in range(99)]
    # The stand-ins live in another process, so their CPU does not count against the prober's loop.
    stand_ins = subprocess.Popen(
        [sys.executable, "-m", "bench.fake_postgrest", str(FIRST_PORT), str(len(delays))],
        stdout=subprocess.PIPE,
        cwd=HERE,
    )
    envs = {"real": {"rest_url": server.url, "admin_url": server.admin_url, "probe_tables": ["judgments"]}}
    for i, d in enumerate(delays):
        envs[f"slow{i}"] = {"rest_url": f"http://127.0.0.1:{FIRST_PORT + i}/{d:.3f}", "probe_tables": ["judgments"]}
    results: dict[str, dict] = {}
    try:
        assert stand_ins.stdout is not None and stand_ins.stdout.readline().strip() == b"ready"
        with tempfile.TemporaryDirectory(prefix="run-all-") as tmp:
            envs_file = Path(tmp) / "envs.json"
            envs_file.write_text(json.dumps(envs))
            for code, tree in trees.items():
                results[code] = run_child(tree, envs_file)
    finally:
        stand_ins.terminate()
        stand_ins.wait(timeout=10)
        server.destroy()
        cluster.destroy()
    print("## Sweep of 100 environments (1 real PostgREST + 99 stand-ins answering after 0-800 ms)")
    print(f"(all 100 concurrently in one process; medians of {TRIALS} sweeps, each first sweep on a new client)")
    for code, r in results.items():
        slowest, first, warm = r["slowest"] * 1000, statistics.median(r["first"]), statistics.median(r["warm"])
        print(f"{code}: slowest single probe {slowest:.0f} ms; sum of singles {r['sum'] * 1000:.0f} ms")
        print(f"    first sweep (new connections): {first * 1000:.0f} ms = {first * 1000 / slowest:.2f}x the slowest")
        print(f"    next sweep (kept connections): {warm * 1000:.0f} ms = {warm * 1000 / slowest:.2f}x")
    print()


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(asyncio.run(sweep_child(json.loads(Path(sys.argv[2]).read_text())))))
        return
    trees = {"after": HERE}
    if sys.argv[1:2] == ["--before"]:
        trees = {"before": Path(sys.argv[2]).resolve(), "after": HERE}
    bench_sweep(trees)


if __name__ == "__main__":
    main()
