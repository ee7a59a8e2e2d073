"""CLI start-up, whole process: `pgrst-ops check` on one environment against the probe itself, and a baseline.

Each command is a fresh interpreter timed from spawn to exit (wall, and its CPU from the kernel's accounting of
the finished child), medians of interleaved runs: this tree and, with `--base REF`, the same commands run from
an export of that git revision (same interpreter and site-packages), so the machine's noise hits both alike.
The environment is one port of bench/fake_postgrest.py (another process, answering at once), so what is
measured is start-up and the CLI's own work; the probe itself is timed in this process with a new client.
Bytecode is compiled for both trees first, as an installed package has it.

Run: `python -m bench.startup_bench [runs] [--base REF]`; results go in bench/README.md.
"""

from __future__ import annotations

import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.trees import compile_tree, export, pop_base

PORT = 19_990
TARGET_MS = 300  # `check` within this of process start plus the probe itself


def timed(args: list[str], cwd: Path) -> tuple[float, float]:
    """(wall ms, CPU ms) of one fresh interpreter run from `cwd`, spawn to exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=cwd, check=True, capture_output=True, timeout=60)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall * 1000, cpu * 1000


async def probe_ms(config: dict) -> float:
    from bot.config import parse_settings, resolve_targets
    from bot.postgrest.probe import Prober
    from bot.postgrest.requests import make_http_client

    (target,) = resolve_targets(parse_settings(config), need_dsn=False)
    started = time.perf_counter()
    async with make_http_client([target.config]) as client:
        report = await Prober(client).probe(target)
    assert report.healthy, report.verdict
    return (time.perf_counter() - started) * 1000


def main(runs: int, base: str | None) -> None:
    here = Path.cwd()
    server = subprocess.Popen([sys.executable, "-m", "bench.fake_postgrest", str(PORT), "1"], stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
        with tempfile.TemporaryDirectory(prefix="startup-bench-") as tmp:
            config = {"environments": {"b": {"rest_url": f"http://127.0.0.1:{PORT}", "probe_tables": ["judgments"]}}}
            path = Path(tmp) / "config.yaml"
            path.write_text(json.dumps(config))  # JSON is YAML
            trees = {"this tree": here}
            if base:
                trees[f"base {base}"] = export(base, Path(tmp))
            compile_tree(here)  # bytecode, as an installed package has it (export compiles the base)
            commands = {
                "python -c pass": ["-c", "pass"],
                "import bot.cli": ["-c", "import bot.cli"],
                "pgrst-ops --help": ["-m", "bot.cli", "--help"],
                "pgrst-ops check --env b": ["-m", "bot.cli", "--config", str(path), "check", "--env", "b"],
            }
            rows: dict[tuple[str, str], list[tuple[float, float]]] = {}
            probes = []
            for _ in range(runs):  # interleaved: each round runs every command in every tree once
                for label, args in commands.items():
                    for name, tree in trees.items():
                        if label == "python -c pass" and name != "this tree":
                            continue
                        rows.setdefault((label, name), []).append(timed(args, tree))
                probes.append(asyncio.run(probe_ms(config)))
    finally:
        server.terminate()
        server.wait(timeout=10)
    probe = statistics.median(probes)
    print(f"## CLI start-up (ms, medians of {runs} interleaved runs, whole process: spawn to exit)")
    print(f"{'command':28} {'tree':22} {'wall':>6} {'cpu':>6}")
    med = {}
    for (label, name), values in rows.items():
        wall, cpu = statistics.median(v[0] for v in values), statistics.median(v[1] for v in values)
        med[label, name] = wall
        print(f"{label:28} {name:22} {wall:6.0f} {cpu:6.0f}")
    print(f"the probe itself (in process, new client, 3 checks): {probe:.0f} ms")
    for name in trees:
        over = med["pgrst-ops check --env b", name] - probe
        verdict = "PASS" if over <= TARGET_MS else "FAIL"
        print(f"{verdict}: {name}: check - probe = {over:.0f} ms (target <= {TARGET_MS})")


if __name__ == "__main__":
    argv = sys.argv[1:]
    ref = pop_base(argv)
    main(int(argv[0]) if argv else 11, ref)
