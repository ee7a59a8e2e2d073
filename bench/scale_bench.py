"""Thousands of environments in one process: CPU, RSS, lateness and false timeouts of the real monitor.

For each N (default 100, 500, 1,000, 2,000), a child process (this module with `--child`) assembles the console
bot as bot/app.py does (`build_console`: the real Monitor, Prober, desk, in-memory store) for N environments,
each its own origin (one port each of bench/fake_postgrest.py, another process answering `200 []` to every
request), runs the first check of all, then the monitor's loops at a 10 s interval for a few cycles. It
measures, in its own process: start-up CPU and RSS (config, targets and the first check of all; the imports
are measured once, at N=0); steady CPU as a share of one core; RSS at the end; for each environment the gap
between consecutive check starts (the report's checked_at: when its requests started) (lateness = gap - interval; the monitor sleeps the rest of the interval after
each check; the first loop check is due one interval after the loops start); and timeouts (the stand-ins answer at once: any timeout is a false one). `freeze` repeats the
largest N with `gc.freeze()` after the first check, so the collector stops walking the long-lived heap.

Then the CLI sweep: `pgrst-ops check` over 100 environments answering after 0-800 ms (bench/slow_server.py),
against the slowest single probe, in process and as `pgrst-ops check --env <slowest>`, medians of 5
interleaved.

Run: `python -m bench.scale_bench [cycles] [sizes...]` (`python -m bench.scale_bench cli`: the CLI sweep alone); results go in bench/README.md.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO, cast

FIRST_PORT = 20_000  # below the kernel's ephemeral range (32768-60999), so no test's free port collides
SWEEP_FIRST_PORT = 19_800  # the CLI sweep's 100 servers, also below the ephemeral range
INTERVAL_S = 10.0
SIZES = (100, 500, 1000, 2000)
CYCLES = 3
LATE_S = 1.0  # a check more than this after its due time is late


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


async def child(n: int, cycles: int, freeze: bool) -> dict:
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
        "monitor": {"interval_s": INTERVAL_S, "drift_interval_s": 0},
        "incidents": {"store": ":memory:"},
    }
    settings = parse_settings(config)
    targets = resolve_targets(settings, need_dsn=False)
    starts: dict[str, list[float]] = {t.name: [] for t in targets}
    timeouts = 0
    unhealthy = 0
    # The console lines are not what is measured: thrown away, not kept in memory.
    async with make_http_client(t.config for t in targets) as http:
        ops = build_console(settings, targets, http, out=cast(TextIO, Discard()))
        prober = ops.monitor.prober
        real_probe = prober.probe

        async def probe(target, *args, **kwargs):
            nonlocal timeouts, unhealthy
            report = await real_probe(target, *args, **kwargs)
            starts[target.name].append(report.checked_at.timestamp())  # when its checks started
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
        first_checks = sum(len(t) for t in starts.values())
        first_sweep_s = time.monotonic() - wall0
        if freeze:
            gc.freeze()
        cpu2, wall2, loops_started = time.process_time(), time.monotonic(), time.time()
        ops.monitor.start(checked=True)  # each loop's first check is due one interval from now
        await asyncio.sleep(INTERVAL_S * cycles + 0.5)
        steady_cpu, steady_wall = time.process_time() - cpu2, time.monotonic() - wall2
        end_rss = rss_kb()
        await ops.monitor.stop()
        await ops.close_store()
    # Each check is due one interval after the previous one started (the first loop check: after start()).
    lateness = [
        b - a - INTERVAL_S
        for times in starts.values()
        for a, b in zip([loops_started, *times[1:]], times[1:], strict=False)
    ]
    return {
        "n": n,
        "freeze": freeze,
        "imports_cpu_ms": imports_cpu * 1000,
        "imports_rss_mb": imports_rss / 1024,
        "setup_cpu_ms": setup_cpu * 1000,
        "setup_rss_mb": setup_rss / 1024,
        "startup_cpu_ms": startup_cpu * 1000,
        "steady_cpu_per_check_ms": steady_cpu * 1000 / max(1, sum(len(t) for t in starts.values()) - first_checks),
        "startup_rss_mb": startup_rss / 1024,
        "first_sweep_s": first_sweep_s,
        "steady_cores": steady_cpu / steady_wall,
        "end_rss_mb": end_rss / 1024,
        "checks": sum(len(t) for t in starts.values()),
        "short_envs": sum(1 for t in starts.values() if len(t) < cycles + 1),
        "late_p50_ms": statistics.median(lateness) * 1000 if lateness else None,
        "late_max_ms": max(lateness) * 1000 if lateness else None,
        "late_checks": sum(1 for late in lateness if late > LATE_S),
        "timeouts": timeouts,
        "unhealthy": unhealthy,
    }


def run_child(n: int, cycles: int, freeze: bool) -> dict:
    args = [sys.executable, "-m", "bench.scale_bench", "--child", str(n), str(cycles), "freeze" if freeze else "-"]
    out = subprocess.run(args, check=True, capture_output=True, text=True, timeout=600).stdout
    return json.loads(out.strip().splitlines()[-1])


def report_scale(rows: list[dict], cycles: int) -> None:
    base = next(r for r in rows if r["n"] == min(r["n"] for r in rows))
    top = max((r for r in rows if not r["freeze"]), key=lambda r: r["n"])
    print(
        f"## Many environments in one process (console bot, interval {INTERVAL_S:g} s, {cycles} cycles after the first)"
    )
    print(f"imports (once): {base['imports_cpu_ms']:.0f} ms CPU, {base['imports_rss_mb']:.1f} MB")
    print(
        "    N  gc.freeze  setup CPU ms  +first check ms  start-up MB  first sweep s  steady cores  CPU/check ms  "
        "end RSS MB  checks  late p50 ms  late max ms  late>1s  timeouts  unhealthy"
    )
    for r in rows:
        print(
            f"{r['n']:5d}  {'yes' if r['freeze'] else 'no':>9}  {r['setup_cpu_ms']:12.0f}  {r['startup_cpu_ms']:15.0f}  "
            f"{r['startup_rss_mb']:11.1f}  {r['first_sweep_s']:13.2f}  {r['steady_cores']:12.3f}  "
            f"{r['steady_cpu_per_check_ms']:12.2f}  {r['end_rss_mb']:10.1f}  {r['checks']:6d}  "
            f"{r['late_p50_ms']:11.0f}  {r['late_max_ms']:11.0f}  {r['late_checks']:7d}  {r['timeouts']:8d}  "
            f"{r['unhealthy']:9d}"
        )
    span = top["n"] - base["n"]
    if span:
        per_setup = (top["setup_cpu_ms"] - base["setup_cpu_ms"]) / span
        per_cpu = (top["startup_cpu_ms"] - base["startup_cpu_ms"]) / span
        per_kb = (top["end_rss_mb"] - base["end_rss_mb"]) * 1024 / span
        print(
            f"per environment ({base['n']} -> {top['n']}): set-up CPU {per_setup:.2f} ms, with its first check "
            f"{per_cpu:.2f} ms; RSS {per_kb:.0f} KB"
        )
        verdicts = [
            (per_kb <= 100, f"RSS per environment {per_kb:.0f} KB (target <= 100)"),
            (per_setup <= 1, f"set-up CPU per environment {per_setup:.2f} ms (target <= 1)"),
        ]
        for r in (x for x in rows if x["n"] == top["n"]):
            label = f"{r['n']} environments{' with gc.freeze' if r['freeze'] else ''}"
            verdicts += [
                (r["steady_cores"] <= 0.5, f"{label}: {r['steady_cores']:.2f} cores (target <= 0.5)"),
                (r["end_rss_mb"] <= 300, f"{label}: {r['end_rss_mb']:.0f} MB RSS (target <= 300)"),
                (
                    r["late_checks"] == 0 and r["short_envs"] == 0 and r["timeouts"] == 0,
                    f"{label}: {r['late_checks']} late checks, {r['short_envs']} environments short of checks, "
                    f"{r['timeouts']} false timeouts (target 0)",
                ),
            ]
        for ok, text in verdicts:
            print(f"{'PASS' if ok else 'FAIL'}: {text}")
    print()


async def wait_ready(proc: subprocess.Popen) -> None:
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
    assert line.strip() == b"ready", line


def bench_scale(cycles: int, sizes: tuple[int, ...]) -> None:
    top = max(sizes)
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.fake_postgrest", str(FIRST_PORT), str(top)], stdout=subprocess.PIPE
    )
    try:
        asyncio.run(wait_ready(server))
        rows = [run_child(n, cycles, freeze=False) for n in sizes]
        rows.append(run_child(top, cycles, freeze=True))
    finally:
        server.terminate()
        server.wait(timeout=10)
    report_scale(rows, cycles)


def cli_wall(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bot.cli", *args], check=True, capture_output=True, timeout=60)
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


def bench_cli_sweep(trials: int = 5) -> None:
    delays = [random.Random(i).uniform(0, 0.8) for i in range(100)]
    ports = [SWEEP_FIRST_PORT + i for i in range(len(delays))]
    server = subprocess.Popen([sys.executable, "-m", "bench.slow_server", *map(str, ports)])
    envs = {
        f"s{i}": {"rest_url": f"http://127.0.0.1:{port}/{d:.3f}", "probe_tables": ["judgments"]}
        for i, (d, port) in enumerate(zip(delays, ports, strict=True))
    }
    slowest = f"s{max(range(100), key=lambda i: delays[i])}"
    config = {"environments": envs}
    rows: dict[str, list[float]] = {"inproc": [], "cli_single": [], "cli_sweep": []}
    try:
        time.sleep(1.5)  # the servers bind
        with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
            path = Path(tmp) / "config.yaml"
            path.write_text(json.dumps(config))  # JSON is YAML
            cli_wall(["--config", str(path), "check"])  # warm-up: bytecode and the page cache
            for _ in range(trials):
                rows["inproc"].append(asyncio.run(single_probe_s(config, slowest)))
                rows["cli_single"].append(cli_wall(["--config", str(path), "check", "--env", slowest]))
                rows["cli_sweep"].append(cli_wall(["--config", str(path), "check"]))
    finally:
        server.terminate()
        server.wait(timeout=10)
    med = {k: statistics.median(v) * 1000 for k, v in rows.items()}
    print(f"## CLI sweep of 100 environments (local servers answering after 0-800 ms; medians of {trials})")
    print(f"slowest single probe, in process: {med['inproc']:.0f} ms")
    print(f"`pgrst-ops check --env {slowest}` (that environment alone, whole process): {med['cli_single']:.0f} ms")
    print(f"`pgrst-ops check` (all 100, whole process): {med['cli_sweep']:.0f} ms")
    ratio = med["cli_sweep"] / med["inproc"]
    print(f"sweep / slowest single probe in process: {ratio:.2f}x (start-up included in the sweep only)")
    print(f"sweep / the slowest environment alone, same CLI: {med['cli_sweep'] / med['cli_single']:.2f}x")
    print(f"{'PASS' if ratio <= 1.3 else 'FAIL'}: CLI sweep {ratio:.2f}x the slowest single probe (target <= 1.3)\n")


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        n, cycles, mode = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
        print(json.dumps(asyncio.run(child(n, cycles, mode == "freeze"))))
        return
    if sys.argv[1:2] == ["cli"]:  # the CLI sweep alone
        bench_cli_sweep()
        return
    cycles = int(sys.argv[1]) if len(sys.argv) > 1 else CYCLES
    sizes = tuple(int(a) for a in sys.argv[2:]) or SIZES
    started = time.perf_counter()
    bench_scale(cycles, sizes)
    bench_cli_sweep()
    print(f"(whole benchmark: {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
