"""Thousands of environments in one process: CPU, RSS, lateness and false timeouts of the real monitor.

For each N (default 100, 500, 1,000, 2,000), a child process (this module with `--child`) assembles the console
bot as bot/app.py does (`build_console`: the real Monitor, Prober, desk, in-memory store) for N environments,
each its own origin (one port each of bench/fake_postgrest.py, another process answering `200 []` to every
request), runs the first check of all, then the monitor's loops at a 10 s interval for a few cycles.

What a check is: the monitor's default cadence at a 10 s interval: every 10 s the full probe (root `OPTIONS /`,
the data `GET` and the cache `OPTIONS` of the one probe table: 3 requests), and 5 s after each full probe the
liveness check (`OPTIONS /` alone); "liveness off" rows run the full probe alone every 10 s. It measures, in its
own process: set-up CPU and RSS (config, targets, the bot's objects; the imports are measured once, at the
smallest N) and with the first check of all; steady CPU as a share of one core, and per environment-interval
(one full probe and the liveness check between: the work of one environment every 10 s); RSS at the end; for
each environment the gap between consecutive full probe starts (the report's checked_at; lateness = gap -
interval; the first loop probe is due one interval after the loops start); and timeouts (the stand-ins answer
at once: any timeout is a false one). The monitor freezes the heap after start (Monitor.start, settle_heap).

Then the CLI sweep: `pgrst-ops check` over 100 environments answering after 0-800 ms (bench/fake_postgrest.py's
delayed answers), against the slowest single probe, in process and as `pgrst-ops check --env <slowest>`,
medians of 5 interleaved.

`--before DIR` runs every child and CLI process also against the bot package of another tree (main's code:
`git worktree add --detach DIR <commit>` or `git archive <commit> | tar -x -C DIR`), interleaved with this
tree's, so before and after share one run of a noisy machine.

Run: `python -m bench.scale_bench [--before DIR] [cycles] [sizes...]` (`python -m bench.scale_bench [--before DIR]
cli`: the CLI sweep alone); results go in bench/README.md.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO, cast

HERE = Path(__file__).resolve().parent.parent  # this tree
FIRST_PORT = 20_000  # below the kernel's ephemeral range (32768-60999), so no test's free port collides
SWEEP_FIRST_PORT = 19_800  # the CLI sweep's 100 servers, also below the ephemeral range
INTERVAL_S = 10.0
LIVENESS_S = 5.0  # the monitor's default
SIZES = (100, 500, 1000, 2000)
CYCLES = 3
LATE_S = 1.0  # a full probe more than this after its due time is late


class Discard:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def rss_kb() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def environments(n: int) -> dict:
    return {
        f"e{i}": {"rest_url": f"http://127.0.0.1:{FIRST_PORT + i}", "probe_tables": ["judgments"]} for i in range(n)
    }


async def child(n: int, cycles: int, liveness: bool) -> dict:
    """One monitor of n environments, measured from inside (the figures of one child, as a dict)."""
    cpu0, wall0, rss0 = time.process_time(), time.monotonic(), rss_kb()
    from bot.app import build_console
    from bot.config import parse_settings, resolve_targets
    from bot.core.verdicts import Verdict
    from bot.postgrest.requests import make_http_client

    imports_cpu, imports_rss = time.process_time() - cpu0, rss_kb() - rss0
    cpu1, rss1 = time.process_time(), rss_kb()
    config = {
        "environments": environments(n),
        "monitor": {
            "interval_s": INTERVAL_S,
            "liveness_interval_s": LIVENESS_S if liveness else 0,
            "drift_interval_s": 0,
        },
        "incidents": {"store": ":memory:"},
    }
    settings = parse_settings(config)
    targets = resolve_targets(settings, need_dsn=False)
    full_starts: dict[str, list[float]] = {t.name: [] for t in targets}
    liveness_checks = 0
    timeouts = 0
    unhealthy = 0
    # The console lines are not what is measured: thrown away, not kept in memory.
    async with make_http_client(t.config for t in targets) as http:
        ops = build_console(settings, targets, http, out=cast(TextIO, Discard()))
        prober = ops.monitor.prober
        real_probe = prober.probe

        async def probe(target, only=()):  # type: ignore[no-untyped-def]
            nonlocal timeouts, unhealthy, liveness_checks
            report = await real_probe(target, only)
            if only:
                liveness_checks += 1
            else:
                full_starts[target.name].append(report.checked_at.timestamp())  # when its checks started
            if report.verdict is Verdict.TIMEOUT or any(c.verdict is Verdict.TIMEOUT for c in report.checks):
                timeouts += 1
            if not report.healthy:
                unhealthy += 1
            return report

        prober.probe = probe  # type: ignore[method-assign]
        await ops.open_store()
        await ops.monitor.restore()
        setup_cpu, setup_rss = time.process_time() - cpu1, rss_kb() - rss1
        await ops.monitor.check_all()
        startup_cpu, startup_rss = time.process_time() - cpu1, rss_kb() - rss1
        first_full = sum(len(t) for t in full_starts.values())
        first_sweep_s = time.monotonic() - wall0
        cpu2, wall2 = time.process_time(), time.monotonic()
        ops.monitor.start(checked=True)  # each loop's first full probe is due one interval from its start
        loops_started = time.time()  # after start's heap settling (a collection): the loops run from here
        await asyncio.sleep(INTERVAL_S * cycles + LATE_S + 0.5)  # a last probe not yet late still counts
        steady_cpu, steady_wall = time.process_time() - cpu2, time.monotonic() - wall2
        end_rss = rss_kb()
        await ops.monitor.stop()
        await ops.close_store()
    # Each full probe is due one interval after the previous one started; the first loop probe, within one
    # interval of start() (each environment keeps its own phase of the interval: bot/ops/liveness.py).
    lateness = [b - a - INTERVAL_S for times in full_starts.values() for a, b in itertools.pairwise(times[1:])]
    lateness += [times[1] - loops_started - INTERVAL_S for times in full_starts.values() if len(times) > 1]
    steady_full = sum(len(t) for t in full_starts.values()) - first_full
    return {
        "n": n,
        "liveness": liveness,
        "imports_cpu_ms": imports_cpu * 1000,
        "imports_rss_mb": imports_rss / 1024,
        "setup_cpu_ms": setup_cpu * 1000,
        "setup_rss_mb": setup_rss / 1024,
        "startup_cpu_ms": startup_cpu * 1000,
        "startup_rss_mb": startup_rss / 1024,
        "first_sweep_s": first_sweep_s,
        "steady_cores": steady_cpu / steady_wall,
        "cpu_per_env_interval_ms": steady_cpu * 1000 / max(1, steady_full),
        "requests_per_s": (steady_full * 3 + liveness_checks) / steady_wall,
        "end_rss_mb": end_rss / 1024,
        "full_probes": steady_full,
        "liveness_checks": liveness_checks,
        "short_envs": sum(1 for t in full_starts.values() if len(t) < cycles + 1),
        "late_p50_ms": statistics.median(lateness) * 1000 if lateness else None,
        "late_max_ms": max(lateness) * 1000 if lateness else None,
        "late_checks": sum(1 for late in lateness if late > LATE_S),
        "timeouts": timeouts,
        "unhealthy": unhealthy,
    }


def tree_env(tree: Path) -> dict[str, str]:
    """The environment of a process that imports `bot` from `tree` (this tree's bench modules still run)."""
    paths = [str(tree)] + ([str(HERE)] if tree != HERE else [])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def run_child(tree: Path, n: int, cycles: int, liveness: bool) -> dict:
    # The child is this file run as a script: `bench` comes from this tree, `bot` from `tree` (first on the path).
    args = [sys.executable, str(HERE / "bench" / "scale_bench.py"), "--child", str(n), str(cycles)]
    args.append("liveness" if liveness else "full-only")
    out = subprocess.run(args, check=True, capture_output=True, text=True, timeout=900, env=tree_env(tree))
    return json.loads(out.stdout.strip().splitlines()[-1])


HEADER = (
    "    N  code    liveness  setup CPU ms  +first check ms  start-up MB  first sweep s  steady cores  "
    "CPU/env/10s ms  req/s  end RSS MB  full probes  liveness  late p50 ms  late max ms  late>1s  timeouts  unhealthy"
)


def row_text(r: dict) -> str:
    late = {k: "-" if r[k] is None else f"{r[k]:.0f}" for k in ("late_p50_ms", "late_max_ms")}
    return (
        f"{r['n']:5d}  {r['code']:6}  {'5 s' if r['liveness'] else 'off':>8}  {r['setup_cpu_ms']:12.0f}  "
        f"{r['startup_cpu_ms']:15.0f}  {r['startup_rss_mb']:11.1f}  {r['first_sweep_s']:13.2f}  "
        f"{r['steady_cores']:12.3f}  {r['cpu_per_env_interval_ms']:14.2f}  {r['requests_per_s']:5.0f}  "
        f"{r['end_rss_mb']:10.1f}  {r['full_probes']:11d}  {r['liveness_checks']:8d}  {late['late_p50_ms']:>11}  "
        f"{late['late_max_ms']:>11}  {r['late_checks']:7d}  {r['timeouts']:8d}  {r['unhealthy']:9d}"
    )


def verdicts(rows: list[dict], code: str) -> list[tuple[bool, str]]:
    mine = [r for r in rows if r["code"] == code]
    base = min((r for r in mine if r["liveness"]), key=lambda r: r["n"])
    top = max((r for r in mine if r["liveness"]), key=lambda r: r["n"])
    span = top["n"] - base["n"]
    if not span:
        return []
    per_setup = (top["setup_cpu_ms"] - base["setup_cpu_ms"]) / span
    per_kb = (top["end_rss_mb"] - base["end_rss_mb"]) * 1024 / span
    out = [
        (per_kb <= 100, f"{code}: RSS per environment {per_kb:.0f} KB (target <= 100)"),
        (per_setup <= 1, f"{code}: set-up CPU per environment {per_setup:.2f} ms (target <= 1)"),
    ]
    for r in (x for x in mine if x["n"] == top["n"]):
        label = f"{code}: {r['n']} environments, liveness {'5 s' if r['liveness'] else 'off'}"
        out += [
            (r["steady_cores"] <= 0.5, f"{label}: {r['steady_cores']:.2f} cores (target <= 0.5)"),
            (r["end_rss_mb"] <= 300, f"{label}: {r['end_rss_mb']:.0f} MB RSS (target <= 300)"),
            (
                r["late_checks"] == 0 and r["short_envs"] == 0 and r["timeouts"] == 0,
                f"{label}: {r['late_checks']} late full probes, {r['short_envs']} environments short of probes, "
                f"{r['timeouts']} false timeouts (target 0)",
            ),
        ]
    return out


def report_scale(rows: list[dict], cycles: int) -> None:
    print(
        f"## Many environments in one process (console bot, interval {INTERVAL_S:g} s, {cycles} cycles after the first)"
    )
    for code in dict.fromkeys(r["code"] for r in rows):
        base = min((r for r in rows if r["code"] == code), key=lambda r: r["n"])
        print(f"imports ({code}, once): {base['imports_cpu_ms']:.0f} ms CPU, {base['imports_rss_mb']:.1f} MB")
    print(HEADER)
    for r in rows:
        print(row_text(r))
    for code in dict.fromkeys(r["code"] for r in rows):
        for ok, text in verdicts(rows, code):
            print(f"{'PASS' if ok else 'FAIL'}: {text}")
    print()


async def wait_ready(proc: subprocess.Popen) -> None:
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
    assert line.strip() == b"ready", line


def fake_servers(first_port: int, count: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.fake_postgrest", str(first_port), str(count)],
        stdout=subprocess.PIPE,
        cwd=HERE,
        env=tree_env(HERE),
    )
    asyncio.run(wait_ready(server))
    return server


def bench_scale(trees: dict[str, Path], cycles: int, sizes: tuple[int, ...]) -> None:
    top = max(sizes)
    server = fake_servers(FIRST_PORT, top)
    rows = []
    try:
        for n, liveness in [(n, True) for n in sizes] + [(top, False)]:
            for code, tree in trees.items():  # before and after next to each other: the same minute of load
                rows.append({"code": code, **run_child(tree, n, cycles, liveness)})
                print(row_text(rows[-1]), file=sys.stderr, flush=True)
    finally:
        server.terminate()
        server.wait(timeout=10)
    report_scale(rows, cycles)


def cli_wall(tree: Path, args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        check=True,
        capture_output=True,
        timeout=60,
        env=tree_env(tree),
        cwd=tree,
    )
    return time.perf_counter() - started


async def single_probe_s(config: dict, name: str) -> float:
    """The slowest environment probed alone, in this (already started) process, with a new client as the
    CLI has."""
    from bot.config import parse_settings, resolve_targets
    from bot.postgrest.probe import Prober
    from bot.postgrest.requests import make_http_client

    settings = parse_settings(config)
    (target,) = resolve_targets(settings, [name], need_dsn=False)
    started = time.perf_counter()
    async with make_http_client([target.config]) as client:
        report = await Prober(client).probe(target)
    assert report.healthy, report.verdict
    return time.perf_counter() - started


def bench_cli_sweep(trees: dict[str, Path], trials: int = 5) -> None:
    delays = [random.Random(i).uniform(0, 0.8) for i in range(100)]
    server = fake_servers(SWEEP_FIRST_PORT, len(delays))
    envs = {
        f"s{i}": {"rest_url": f"http://127.0.0.1:{SWEEP_FIRST_PORT + i}/{d:.3f}", "probe_tables": ["judgments"]}
        for i, d in enumerate(delays)
    }
    slowest = f"s{max(range(100), key=lambda i: delays[i])}"
    config = {"environments": envs}
    walls: dict[str, dict[str, list[float]]] = {code: {"single": [], "sweep": []} for code in trees}
    inproc: list[float] = []
    try:
        with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
            path = Path(tmp) / "config.yaml"
            path.write_text(json.dumps(config))  # JSON is YAML
            for tree in trees.values():
                cli_wall(tree, ["--config", str(path), "check"])  # warm-up: bytecode and the page cache
            for _ in range(trials):
                inproc.append(asyncio.run(single_probe_s(config, slowest)))
                for code, tree in trees.items():
                    walls[code]["single"].append(cli_wall(tree, ["--config", str(path), "check", "--env", slowest]))
                    walls[code]["sweep"].append(cli_wall(tree, ["--config", str(path), "check"]))
    finally:
        server.terminate()
        server.wait(timeout=10)
    single = statistics.median(inproc) * 1000
    print(f"## CLI sweep of 100 environments (local servers answering after 0-800 ms; medians of {trials})")
    print(f"slowest single probe, in process (this tree): {single:.0f} ms")
    for code, rows in walls.items():
        alone, sweep = (statistics.median(rows[k]) * 1000 for k in ("single", "sweep"))
        print(f"{code}: `pgrst-ops check --env {slowest}` (alone, whole process) {alone:.0f} ms; `pgrst-ops check`")
        print(f"    (all 100, whole process) {sweep:.0f} ms = {sweep / single:.2f}x the slowest single probe,")
        print(f"    {sweep / alone:.2f}x the slowest environment alone through the same CLI, {sweep - alone:+.0f} ms")
    for code, rows in walls.items():
        ratio = statistics.median(rows["sweep"]) * 1000 / single
        print(f"{'PASS' if ratio <= 1.3 else 'FAIL'}: {code}: CLI sweep {ratio:.2f}x the slowest single probe (<= 1.3)")
    print()


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        n, cycles, mode = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
        print(json.dumps(asyncio.run(child(n, cycles, mode == "liveness"))))
        return
    args = sys.argv[1:]
    trees = {"after": HERE}
    if args[:1] == ["--before"]:
        trees = {"before": Path(args[1]).resolve(), "after": HERE}
        args = args[2:]
    if args[:1] == ["cli"]:  # the CLI sweep alone
        bench_cli_sweep(trees)
        return
    cycles = int(args[0]) if args else CYCLES
    sizes = tuple(int(a) for a in args[1:]) or SIZES
    started = time.perf_counter()
    bench_scale(trees, cycles, sizes)
    bench_cli_sweep(trees)
    print(f"(whole benchmark: {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
