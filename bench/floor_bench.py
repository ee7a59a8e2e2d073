"""Recovery at the floor: time-to-healthy after a NOTIFY at 20, 1,000 and 5,000 tables, side by side in one run.

For each size, in its own database and PostgREST, rounds of interleaved trials (so load on the shared machine
hits every method alike), each on a table created after the last reload (stale):
- floor: PostgREST's own reload, seen by polling `OPTIONS /<table>` every 1 ms: of a NOTIFY of its own
  ("alone"), and of the very NOTIFY each pgrst-ops and fix trial sends (bench/floor_watch.py, another process);
- pgrst-ops: `RecoveryOperator.recover()`'s time_to_healthy_ms (in process), with its request count;
- runbook: the user's old loop (NOTIFY, sleep 3 s, re-check, up to 3 times);
- fix: `pgrst-ops fix --json --no-alert` as a whole process (spawn to exit); with `--base REF`, the same
  from an export of that git revision too (same interpreter and site-packages), in the same rounds.
Also the root check's own cost on PostgREST (GET / builds the OpenAPI document; OPTIONS / does not).
Bytecode is compiled for the tree (and the base) first, as an installed package has it.

Run: `python -m bench.floor_bench [trials] [sizes...] [--base REF]` (part of `make bench`); results go in
bench/README.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

from bench.trees import compile_tree, export, pop_base
from bot.config import parse_settings, resolve_targets
from bot.core.recovery import Outcome, StepKind
from bot.ops.recovery import RecoveryOperator
from bot.postgrest.probe import Prober
from bot.postgrest.requests import make_http_client
from tests.conftest import SCHEMA_SQL
from tests.support.pgstack import PgCluster, PostgrestServer

TRIALS = 5
SIZES = (20, 1000, 5000)
CHANNEL = "pgrst_floor"
TTH_TARGET_MS = 50  # time_to_healthy within this of the floor
FIX_TARGET_MS = 300  # fix's whole process within this of the floor


def tables_sql(count: int) -> str:
    """`count` four-column tables granted to the API roles, in one statement batch."""
    return f"""DO $$ BEGIN FOR i IN 1..{count} LOOP
      EXECUTE format('CREATE TABLE public.bt%s (id int primary key, title text, note text, '
                     'at timestamptz default now())', i);
      EXECUTE format('GRANT SELECT ON public.bt%s TO anon, authenticated', i);
    END LOOP; END $$;"""


class Size:
    """One schema size: its database, PostgREST, and an ops connection for the DDL and NOTIFYs."""

    def __init__(self, cluster: PgCluster, tables: int) -> None:
        self.cluster, self.tables, self.db = cluster, tables, f"floor_{tables}"
        self.server: PostgrestServer | None = None
        self.conn: asyncpg.Connection | None = None

    async def start(self) -> None:
        self.cluster.sql(f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE); CREATE DATABASE {self.db}")
        self.cluster.psql(SCHEMA_SQL, dbname=self.db)  # public.judgments: one table of the count
        self.cluster.psql(tables_sql(self.tables - 1), dbname=self.db)
        dsn = self.cluster.dsn("authenticator", dbname=self.db)
        self.server = PostgrestServer(self.cluster, channel=CHANNEL, extra_env={"PGRST_DB_URI": dsn})
        self.server.start()
        self.conn = await asyncpg.connect(self.cluster.dsn(dbname=self.db))  # the owner: DDL and NOTIFYs

    async def stop(self) -> None:
        if self.conn is not None:
            await self.conn.close()
        if self.server is not None:
            self.server.destroy()

    @property
    def ops_dsn(self) -> str:
        return self.cluster.dsn("ops", dbname=self.db)

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    async def stale_table(self) -> str:
        """A new table PostgREST's cache does not have yet."""
        assert self.conn is not None
        name = f"s_{uuid.uuid4().hex[:8]}"
        await self.conn.execute(f"CREATE TABLE public.{name} (id int primary key); GRANT SELECT ON {name} TO anon")
        return name

    async def notify(self) -> float:
        """Send the reload; the time (perf_counter) its commit came back."""
        assert self.conn is not None
        await self.conn.execute(f"NOTIFY {CHANNEL}, 'reload schema'")
        return time.perf_counter()

    def env_config(self, table: str) -> dict:
        assert self.server is not None
        return {
            "rest_url": self.server.url,
            "admin_url": self.server.admin_url,
            "probe_tables": [table],
            "notify_channel": CHANNEL,
            "database_dsn": {"env": "FLOOR_DSN"},
        }


async def floor_ms(size: Size, client: httpx.AsyncClient) -> float:
    """PostgREST's own reload: NOTIFY commit to the first OPTIONS /<table> = 200, polled every 1 ms."""
    table = await size.stale_table()
    sent = await size.notify()
    deadline = sent + 30
    while (await client.options(f"{size.url}/{table}")).status_code != 200:
        if time.perf_counter() > deadline:
            raise RuntimeError("PostgREST never reloaded")
        await asyncio.sleep(0.001)
    return (time.perf_counter() - sent) * 1000


class Watch:
    """bench/floor_watch.py in its own process: PostgREST's own reload of the next NOTIFY, for pairing."""

    def __init__(self, size: Size, table: str) -> None:
        self.args = [sys.executable, "-m", "bench.floor_watch", size.ops_dsn, CHANNEL, f"{size.url}/{table}"]
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Watch:
        self.proc = await asyncio.create_subprocess_exec(*self.args, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        assert line.strip() == b"ready", line
        return self

    async def floor_ms(self) -> float:
        """The watched reload: notification received to the first OPTIONS = 200."""
        assert self.proc is not None and self.proc.stdout is not None
        notified, fresh = map(float, (await asyncio.wait_for(self.proc.stdout.readline(), 60)).split())
        await self.proc.wait()
        return (fresh - notified) * 1000

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def operator_ms(size: Size, client: httpx.AsyncClient) -> tuple[float, int, float]:
    """pgrst-ops's time_to_healthy_ms, the re-check requests it sent after the NOTIFY, and the floor of the same
    NOTIFY (watched from another process)."""
    table = await size.stale_table()
    settings = parse_settings({"environments": {"b": size.env_config(table)}, "recovery": {"max_reloads": 100}})
    (target,) = resolve_targets(settings, environ={"FLOOR_DSN": size.ops_dsn})
    async with Watch(size, table) as watch:
        result = await RecoveryOperator(Prober(client), settings.recovery).recover(target)
        floor = await watch.floor_ms()
    assert result.outcome is Outcome.RECOVERED, result.reason
    assert result.time_to_healthy_ms is not None
    requests = sum(len(s.report.checks) for s in result.steps if s.kind is StepKind.RECHECK and s.report)
    return result.time_to_healthy_ms, requests, floor


async def runbook_ms(size: Size, client: httpx.AsyncClient) -> float:
    """The old runbook loop: NOTIFY, sleep 3 s, re-check (the whole probe), up to 3 times."""
    table = await size.stale_table()
    settings = parse_settings({"environments": {"b": size.env_config(table)}})
    (target,) = resolve_targets(settings, environ={"FLOOR_DSN": size.ops_dsn})
    prober = Prober(client)
    sent = await size.notify()
    for _ in range(3):
        await asyncio.sleep(3)
        if (await prober.probe(target)).healthy:
            return (time.perf_counter() - sent) * 1000
    raise RuntimeError("the runbook loop never saw healthy")


async def fix_wall_ms(size: Size, workdir: Path, tree: Path | None = None) -> tuple[float, float, float]:
    """`pgrst-ops fix` as a whole process (from `tree`, default this one): spawn to exit, the
    time_to_healthy_ms it reports, and the floor of the same NOTIFY."""
    table = await size.stale_table()
    config = workdir / f"{table}.yaml"
    config.write_text(json.dumps({"environments": {"b": size.env_config(table)}}))  # JSON is YAML
    args = [sys.executable, "-m", "bot.cli", "--config", str(config), "fix", "--env", "b", "--json", "--no-alert"]
    env = {**os.environ, "FLOOR_DSN": size.ops_dsn}
    async with Watch(size, table) as watch:
        started = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            *args, env=env, cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = await proc.communicate()
        wall = (time.perf_counter() - started) * 1000
        floor = await watch.floor_ms()
    doc = json.loads(out)
    assert proc.returncode == 0 and doc["outcome"] == "recovered", (doc.get("reason"), err[-500:])
    return wall, doc["time_to_healthy_ms"], floor


async def import_wall_ms() -> float:
    """Starting Python and importing bot.cli, spawn to exit: the part of fix's wall before any of its work."""
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "import bot.cli")
    assert await proc.wait() == 0
    return (time.perf_counter() - started) * 1000


async def root_costs(size: Size, client: httpx.AsyncClient) -> dict[str, tuple[float, int]]:
    """Median latency and body size of each form of the root check (PostgREST's cost, as seen from outside)."""
    forms = {"GET /": "GET", "HEAD /": "HEAD", "OPTIONS /": "OPTIONS"}
    costs = {}
    for label, method in forms.items():
        times, size_bytes = [], 0
        for _ in range(TRIALS):
            started = time.perf_counter()
            # A new connection each time: PostgREST 12 closes the connection after a HEAD / answer.
            answer = await client.request(method, f"{size.url}/", headers={"Connection": "close"})
            times.append((time.perf_counter() - started) * 1000)
            size_bytes = len(answer.content)
        costs[label] = (statistics.median(times), size_bytes)
    return costs


async def settle() -> None:
    await asyncio.sleep(0.3)  # let PostgREST finish whatever the last trial started


async def bench_size(cluster: PgCluster, tables: int, workdir: Path, base: Path | None = None) -> dict:
    size = Size(cluster, tables)
    await size.start()
    keys = ("floor_alone", "floor", "tth", "lag", "requests", "runbook", "fix_floor", "fix", "fix_over", "fix_tth")
    keys += ("import", "base_fix", "base_fix_over")
    rows: dict[str, list[float]] = {k: [] for k in keys}
    try:
        async with make_http_client() as client, httpx.AsyncClient(timeout=30) as raw:
            roots = await root_costs(size, raw)
            for _ in range(TRIALS):  # interleaved: each round runs every method once
                rows["floor_alone"].append(await floor_ms(size, raw))
                await settle()
                tth, requests, floor = await operator_ms(size, client)
                rows["tth"].append(tth)
                rows["floor"].append(floor)
                rows["lag"].append(tth - floor)
                rows["requests"].append(requests)
                await settle()
                wall, fix_tth, fix_floor = await fix_wall_ms(size, workdir)
                rows["fix"].append(wall)
                rows["fix_floor"].append(fix_floor)
                rows["fix_over"].append(wall - fix_floor)
                rows["fix_tth"].append(fix_tth)
                rows["import"].append(await import_wall_ms())
                await settle()
                if base is not None:
                    wall, _, fix_floor = await fix_wall_ms(size, workdir, base)
                    rows["base_fix"].append(wall)
                    rows["base_fix_over"].append(wall - fix_floor)
                    await settle()
                rows["runbook"].append(await runbook_ms(size, client))
                await settle()
    finally:
        await size.stop()
    medians = {k: statistics.median(v) for k, v in rows.items() if v}
    return {"tables": tables, "roots": roots, **medians, "raw": rows}


def report(results: list[dict], trials: int, elapsed_s: float, base: str | None = None) -> None:
    print(f"## Recovery at the floor (ms, medians of {trials} interleaved trials; PostgREST 12.0.2, PostgreSQL 15)")
    print("floor = PostgREST's own reload of the same NOTIFY: notification received by a LISTEN session to the first")
    print("OPTIONS /<table> = 200, polled every 1 ms from another process; 'alone' = a NOTIFY of its own, nothing else")
    print("polling. lag = time_to_healthy - floor, per trial (same NOTIFY); ratios are of the medians.")
    print(
        f"{'tables':>6}  {'alone':>5}  {'floor':>5}  {'pgrst-ops tth':>13}  {'lag':>4}  {'tth/floor':>9}  "
        f"{'requests':>8}  {'runbook':>7}  {'runbook/tth':>11}  {'fix wall':>8}  {'its floor':>9}  {'over':>4}"
    )
    for r in results:
        print(
            f"{r['tables']:>6}  {r['floor_alone']:>5.0f}  {r['floor']:>5.0f}  {r['tth']:>13.0f}  {r['lag']:>+4.0f}  "
            f"{r['tth'] / r['floor']:>9.2f}  {r['requests']:>8.0f}  {r['runbook']:>7.0f}  "
            f"{r['runbook'] / r['tth']:>11.1f}  {r['fix']:>8.0f}  {r['fix_floor']:>9.0f}  {r['fix_over']:>+4.0f}"
        )
    print("(requests: re-check requests after the NOTIFY; runbook: NOTIFY, sleep 3 s, re-check, up to 3 times;")
    print(" fix wall: `pgrst-ops fix --json --no-alert` spawn to exit; over = fix wall - the floor of its NOTIFY)")
    for r in results:
        raw = r["raw"]
        print(
            f"- {r['tables']} tables, each trial: lag {fmt(raw['lag'])}; floor alone {fmt(raw['floor_alone'])}; "
            f"fix over its floor {fmt(raw['fix_over'])}; fix's own tth {fmt(raw['fix_tth'])}"
        )
    imports = statistics.median(v for r in results for v in r["raw"]["import"])
    print(f"- of fix's wall, starting Python and importing bot.cli alone (spawn to exit): median {imports:.0f} ms")
    if base is not None:
        print(f"- fix wall side by side with base {base} (same rounds, each its own NOTIFY and floor):")
        for r in results:
            print(
                f"  {r['tables']} tables: this tree {r['fix']:.0f} ms, over its floor {r['fix_over']:+.0f}; "
                f"base {r['base_fix']:.0f} ms, over its floor {r['base_fix_over']:+.0f} "
                f"(each trial {fmt(r['raw']['base_fix_over'])})"
            )
    print("\n## Root check cost on PostgREST (ms, median of each form; body bytes)")
    for r in results:
        forms = ", ".join(f"{label} {ms:.1f} ms ({nbytes:,} B)" for label, (ms, nbytes) in r["roots"].items())
        print(f"{r['tables']:>6} tables: {forms}")
    print()
    for r in results:
        tth_ok = "PASS" if r["lag"] <= TTH_TARGET_MS else "FAIL"
        fix_ok = "PASS" if r["fix_over"] <= FIX_TARGET_MS else "FAIL"
        print(
            f"{tth_ok}: {r['tables']} tables, time_to_healthy - floor = {r['lag']:+.0f} ms (target <= {TTH_TARGET_MS})"
        )
        print(f"{fix_ok}: {r['tables']} tables, fix wall - floor = {r['fix_over']:+.0f} ms (target <= {FIX_TARGET_MS})")
    print(f"(whole benchmark: {elapsed_s:.0f} s)")


def fmt(values: list[float]) -> str:
    return " ".join(f"{v:.0f}" for v in values)


async def main(trials: int, sizes: tuple[int, ...], base: str | None = None) -> None:
    global TRIALS
    TRIALS = trials
    started = time.perf_counter()
    compile_tree(Path.cwd())
    cluster = PgCluster()
    cluster.start()
    try:
        with tempfile.TemporaryDirectory(prefix="floor-bench-") as tmp:
            base_tree = export(base, Path(tmp)) if base else None
            results = [await bench_size(cluster, n, Path(tmp), base_tree) for n in sizes]
    finally:
        cluster.destroy()
    report(results, trials, time.perf_counter() - started, base)


if __name__ == "__main__":
    argv = sys.argv[1:]
    ref = pop_base(argv)
    trials = int(argv[0]) if argv else TRIALS
    sizes = tuple(int(a) for a in argv[1:]) or SIZES
    asyncio.run(main(trials, sizes, ref))
