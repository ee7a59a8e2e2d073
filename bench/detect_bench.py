"""Detection in seconds: the default monitor against the old defaults, the runbook loop and an uptime monitor.

One run, one PostgreSQL 15 cluster, one PostgREST 12.0.2 per stack, everything side by side:
- fingerprint: the catalog watch's one query at 20, 1,000 and 5,000 tables (median of 20 reads), on a quiet
  database (the snapshot did not move: no scan) and after a write (the scan runs), and the poll interval each
  leads to;
- stack A (default settings, the monitor in this process, console sink with timestamps): a table created behind
  PostgREST's back (no NOTIFY), commit to served, against the floor (PostgREST's own reload of the watch's
  NOTIFY, seen by bench/floor_watch.py in another process); PGRST002 (statement_timeout on the authenticator
  role, as the tests break it) to the CRITICAL, and recovery to the resolved line, a fresh monitor per trial;
- stack B: the old defaults (60 s, threshold 2, no liveness, no watch) and a generic uptime monitor (GET / every
  60 s, 3 failures, expects 200) through one PGRST002 outage; a stale table under the uptime monitor; the user's
  old runbook loop (NOTIFY, sleep 3 s, re-check, up to 3 times) on stale tables;
- stack C: the default monitor left alone; the requests PostgREST gets from it, per 5 s;
- stack E (5,000 tables): the stale table again, with the watch as it is and with a watch that scans the catalog
  on every poll (the watch before the snapshot gate), interleaved trial by trial; then with the database written
  all the time (an insert every 20 ms on another connection, so every poll scans).

Run: `python -m bench.detect_bench [trials]` (part of `make bench`); results go in bench/README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx

from bench.floor_bench import CHANNEL, Watch, tables_sql
from bot.app import build_console
from bot.config import parse_settings, resolve_targets
from bot.core.watch import PollCost, poll_interval_s
from bot.ops.facade import Ops
from bot.postgres.fingerprint import CatalogFingerprint
from bot.postgrest.requests import make_http_client
from tests.conftest import SCHEMA_SQL
from tests.support.pgstack import STEADY_PGRST002, PgCluster, PostgrestServer

TRIALS = 7
OLD = {"interval_s": 60, "failure_threshold": 2, "success_threshold": 2, "liveness_interval_s": 0,
       "catalog_watch_s": 0, "confirm_interval_s": 60}  # fmt: skip


class FloorWatch(Watch):
    """bench/floor_watch.py on the next NOTIFY: when it was received, and when the table was first served."""

    async def times(self) -> tuple[float, float]:
        assert self.proc is not None and self.proc.stdout is not None
        notified, fresh = map(float, (await asyncio.wait_for(self.proc.stdout.readline(), 60)).split())
        await self.proc.wait()
        return notified, fresh


class Stamped(io.StringIO):
    """The console sink's output with the time each write came (time.monotonic)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[float, str]] = []

    def write(self, text: str) -> int:
        self.lines.append((time.monotonic(), text))
        return len(text)

    def first(self, marker: str, after: float) -> float | None:
        return next((t for t, text in self.lines if t >= after and marker in text), None)


class Stack:
    def __init__(self, cluster: PgCluster, name: str, tables: int) -> None:
        self.cluster, self.db, self.tables = cluster, f"detect_{name}", tables
        self.server: PostgrestServer | None = None
        self.conn: asyncpg.Connection | None = None

    async def start(self) -> None:
        self.cluster.sql(f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE); CREATE DATABASE {self.db}")
        self.cluster.psql(SCHEMA_SQL, dbname=self.db)
        self.cluster.psql(tables_sql(self.tables - 1), dbname=self.db)
        dsn = self.cluster.dsn("authenticator", dbname=self.db)
        env = {"PGRST_DB_URI": dsn, **STEADY_PGRST002}
        self.server = PostgrestServer(self.cluster, channel=CHANNEL, extra_env=env)
        self.server.start()
        self.conn = await asyncpg.connect(self.cluster.dsn(dbname=self.db))

    async def stop(self) -> None:
        if self.conn is not None:
            await self.conn.close()
        if self.server is not None:
            self.server.destroy()

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    @property
    def ops_dsn(self) -> str:
        return self.cluster.dsn("ops", dbname=self.db)

    async def sql(self, statement: str) -> float:
        assert self.conn is not None
        await self.conn.execute(statement)
        return time.perf_counter()

    def settings(self, monitor: dict[str, Any] | None = None) -> Any:
        env = {
            "rest_url": self.url,
            "admin_url": self.server.admin_url if self.server else None,
            "probe_tables": [{"name": "judgments", "select": "id"}],
            "notify_channel": CHANNEL,
            "database_dsn": {"env": "BENCH_DSN"},
        }
        # Many reloads in a few minutes: the reload cap (3 per 10 min) is not what is measured.
        top: dict[str, Any] = {"incidents": {"store_path": ":memory:"}, "recovery": {"max_reloads": 100}}
        if monitor is not None:
            top["monitor"] = monitor
        settings = parse_settings({"environments": {self.db: env}, **top})
        return settings, resolve_targets(settings, environ={"BENCH_DSN": self.ops_dsn})


class Running:
    """A console-mode monitor in this process, its output stamped, its HTTP requests counted."""

    def __init__(self, stack: Stack, monitor: dict[str, Any] | None = None) -> None:
        self.stack, self.monitor_cfg = stack, monitor
        self.out = Stamped()
        self.requests: list[tuple[float, str]] = []  # (when, "METHOD /path")
        self.ops: Ops | None = None
        self._http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Running:
        settings, targets = self.stack.settings(self.monitor_cfg)
        self._http = make_http_client(t.config for t in targets)
        await self._http.__aenter__()

        async def count(request: httpx.Request) -> None:
            if self.stack.server is not None and request.url.port == self.stack.server.port:  # the API only
                self.requests.append((time.monotonic(), f"{request.method} {request.url.path}"))

        self._http.event_hooks["request"].append(count)
        self.ops = build_console(settings, targets, self._http, out=self.out)
        await self.ops.open_store()
        self.ops.monitor.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.ops is not None and self._http is not None
        await self.ops.monitor.stop()
        await self.ops.close_store()
        await self._http.__aexit__(None, None, None)

    async def until(self, predicate: Callable[[], bool], within_s: float) -> None:
        deadline = time.monotonic() + within_s
        while not predicate():
            if time.monotonic() > deadline:
                raise RuntimeError("timed out")
            await asyncio.sleep(0.02)


async def first_answer(
    client: httpx.AsyncClient, url: str, wanted: Callable[[httpx.Response], bool], within_s: float
) -> float:
    deadline = time.monotonic() + within_s
    while True:
        response = await client.options(url)
        if wanted(response):
            return time.monotonic()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url}: no such answer within {within_s} s")
        await asyncio.sleep(0.01)


def is_pgrst002(response: httpx.Response) -> bool:
    return "PGRST002" in response.text


def is_ok(response: httpx.Response) -> bool:
    return response.status_code == 200


async def break_cache(stack: Stack) -> None:
    await stack.sql(f"ALTER ROLE authenticator IN DATABASE {stack.db} SET statement_timeout = '1ms'")
    await stack.sql(f"NOTIFY {CHANNEL}, 'reload schema'")


async def heal_cache(stack: Stack) -> None:
    await stack.sql(f"ALTER ROLE authenticator IN DATABASE {stack.db} RESET statement_timeout")
    await stack.sql(f"NOTIFY {CHANNEL}, 'reload schema'")


# -- the measurements -------------------------------------------------------------------------------------------------
async def fingerprint_costs(cluster: PgCluster) -> list[str]:
    lines = []
    for tables in (20, 1000, 5000):
        db = f"detect_fp_{tables}"
        cluster.sql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE); CREATE DATABASE {db}")
        cluster.psql("GRANT USAGE ON SCHEMA public TO anon, authenticated;" + tables_sql(tables), dbname=db)
        conn = await asyncpg.connect(cluster.dsn("ops", dbname=db))
        writer = await asyncpg.connect(cluster.dsn(dbname=db))
        await writer.execute("CREATE TABLE bench_writes (n int)")
        reader = CatalogFingerprint()
        await reader.read(conn)
        times: dict[str, list[float]] = {"quiet": [], "after a write": []}
        for _ in range(20):
            for kind, scans in (("quiet", False), ("after a write", True)):
                if scans:
                    await writer.execute("INSERT INTO bench_writes VALUES (1)")  # moves the snapshot
                started = time.perf_counter()
                await reader.read(conn)
                times[kind].append((time.perf_counter() - started) * 1000)
                assert reader.scanned is scans
        await conn.close()
        await writer.close()
        cluster.sql(f"DROP DATABASE {db} WITH (FORCE)")
        for kind, values in times.items():
            ms = statistics.median(values)
            lines.append(
                f"{tables:6d} tables, {kind:13}: fingerprint {ms:5.1f} ms (max {max(values):5.1f}); poll every "
                f"{poll_interval_s(0.5, ms):.2f} s"
            )
    return lines


class ScanEveryPoll(CatalogFingerprint):
    """The watch before the snapshot gate: the catalog scanned on every poll."""

    async def read(self, conn: asyncpg.Connection) -> str:
        self.snapshot = None
        return await super().read(conn)


Trial = tuple[float, float, float, float]


def progress(what: str) -> None:
    print(f"[detect_bench {time.strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)


class WrittenAllTheTime:
    """An insert every 20 ms on a connection of its own: the snapshot moves before every poll of the watch."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.task: asyncio.Task[None] | None = None

    async def _write(self) -> None:
        conn = await asyncpg.connect(self.stack.cluster.dsn(dbname=self.stack.db))
        try:
            await conn.execute("CREATE TABLE IF NOT EXISTS bench_writes (n int)")
            while True:
                await conn.execute("INSERT INTO bench_writes VALUES (1)")
                await asyncio.sleep(0.02)
        finally:
            await conn.close()

    async def __aenter__(self) -> None:
        self.task = asyncio.create_task(self._write())

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def stale_trials(
    stack: Stack, trials: int, client: httpx.AsyncClient, *, before: list[Trial] | None = None
) -> list[Trial]:
    """(commit to served, floor, commit to the watch's NOTIFY, commit to the change seen), ms, default monitor.
    With `before`, every other trial runs with the watch scanning on every poll and goes there."""
    results: list[Trial] = []
    async with Running(stack) as run:
        assert run.ops is not None
        watch = run.ops.monitor.catalog_watch
        await run.until(lambda: watch.connected(stack.db), 30)
        gated = watch._envs[stack.db].fingerprint
        for trial in range(trials * (2 if before is not None else 1)):
            old = before is not None and trial % 2 == 1
            env = watch._envs[stack.db]
            env.fingerprint = ScanEveryPoll(gated.snapshot, gated.value) if old else gated
            env.poll_cost = PollCost()  # the other kind's polls must not set this one's pace
            into = before if old and before is not None else results
            table = f"s_{uuid.uuid4().hex[:8]}"
            floor = FloorWatch(stack, table)  # type: ignore[arg-type]  # duck-typed: url and ops_dsn
            async with floor:
                await asyncio.sleep(0.3 + 0.5 * (len(into) / max(1, trials)))  # vary the poll's phase
                committed = await stack.sql(
                    f"CREATE TABLE public.{table} (id int primary key); GRANT SELECT ON {table} TO anon"
                )
                notified, fresh = await floor.times()
            wanted = trial + 1
            await run.until(lambda: len(watch.fixes) >= wanted, 30)  # noqa: B023 - awaited at once
            seen = watch.fixes[-1].changed_at  # time.monotonic(): the same clock as perf_counter on Linux
            into.append(
                ((fresh - committed) * 1000, (fresh - notified) * 1000, (notified - committed) * 1000,
                 (seen - committed) * 1000)
            )  # fmt: skip
            await asyncio.sleep(0.5)
    return results


async def one_outage(stack: Stack, client: httpx.AsyncClient, phase_s: float) -> tuple[float, float]:
    """(PGRST002 to the CRITICAL, healed to the resolved line), s, with a fresh default monitor."""
    async with Running(stack) as run:
        assert run.ops is not None
        state = run.ops.monitor.states[stack.db]
        await run.until(lambda: state.last_report is not None and state.last_report.healthy, 30)
        await asyncio.sleep(phase_s)  # where the break falls in the liveness cadence (the heal likewise)
        await break_cache(stack)
        broken = await first_answer(client, f"{stack.url}/", is_pgrst002, 30)
        await run.until(lambda: run.out.first("CRITICAL", broken) is not None, 60)
        alerted = run.out.first("CRITICAL", broken)
        await asyncio.sleep(phase_s)  # where the heal falls in the outage's 5 s cadence
        await heal_cache(stack)
        healed = await first_answer(client, f"{stack.url}/judgments", is_ok, 60)
        await run.until(lambda: run.out.first("resolved", healed) is not None, 60)
        resolved = run.out.first("resolved", healed)
    assert alerted is not None and resolved is not None
    return alerted - broken, resolved - healed


async def outage_trials(stack: Stack, trials: int, client: httpx.AsyncClient) -> list[tuple[float, float]]:
    results: list[tuple[float, float]] = []
    for i in range(trials):
        results.append(await one_outage(stack, client, 5 * i / trials))
        await asyncio.sleep(1)
    return results


async def uptime_monitor(
    client: httpx.AsyncClient, url: str, log: list[tuple[float, str]], stop: asyncio.Event
) -> None:
    """A generic uptime monitor at its documented defaults: GET / every 60 s, down after 3 failures, expects 200."""
    failures, down = 0, False
    while not stop.is_set():
        try:
            ok = (await client.get(url, timeout=30)).status_code == 200
        except httpx.HTTPError:
            ok = False
        failures = 0 if ok else failures + 1
        if failures >= 3 and not down:
            down = True
            log.append((time.monotonic(), "down"))
        elif ok and down:
            down = False
            log.append((time.monotonic(), "up"))
        with contextlib_suppress_timeout():
            await asyncio.wait_for(stop.wait(), 60)


class contextlib_suppress_timeout:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, *_: object) -> bool:
        return kind is TimeoutError


async def baselines(stack: Stack, client: httpx.AsyncClient, trials: int) -> dict[str, Any]:
    """Stack B: the old defaults and the uptime monitor through one PGRST002; the runbook loop; GET / while stale."""
    found: dict[str, Any] = {}
    # The uptime monitor's view of a stale table: GET / still answers 200.
    table = f"s_{uuid.uuid4().hex[:8]}"
    await stack.sql(f"CREATE TABLE public.{table} (id int primary key); GRANT SELECT ON {table} TO anon")
    found["stale_root"] = (await client.get(f"{stack.url}/")).status_code
    found["stale_table"] = (await client.options(f"{stack.url}/{table}")).status_code
    # The runbook loop on stale tables (a person starts it at the commit, the best case).
    runbook = []
    for _ in range(trials):
        table = f"s_{uuid.uuid4().hex[:8]}"
        committed = await stack.sql(
            f"CREATE TABLE public.{table} (id int primary key); GRANT SELECT ON {table} TO anon"
        )
        await stack.sql(f"NOTIFY {CHANNEL}, 'reload schema'")
        for _ in range(3):
            await asyncio.sleep(3)
            if (await client.options(f"{stack.url}/{table}")).status_code == 200:
                break
        runbook.append((time.perf_counter() - committed) * 1000)
    found["runbook_ms"] = runbook
    # One outage under the old defaults and the uptime monitor at once.
    log: list[tuple[float, str]] = []
    stop = asyncio.Event()
    async with Running(stack, OLD) as run:
        assert run.ops is not None
        state = run.ops.monitor.states[stack.db]
        uptime = asyncio.create_task(uptime_monitor(client, f"{stack.url}/", log, stop))
        await run.until(lambda: state.last_report is not None, 30)
        await asyncio.sleep(17)  # a phase that is neither 0 nor a whole interval
        await break_cache(stack)
        broken = await first_answer(client, f"{stack.url}/", is_pgrst002, 30)
        await run.until(lambda: run.out.first("CRITICAL", broken) is not None and any(e == "down" for _, e in log), 400)
        found["old_alert_s"] = run.out.first("CRITICAL", broken) - broken  # type: ignore[operator]
        found["uptime_alert_s"] = next(t for t, e in log if e == "down") - broken
        await heal_cache(stack)
        healed = await first_answer(client, f"{stack.url}/judgments", is_ok, 60)
        await run.until(lambda: run.out.first("resolved", healed) is not None and any(e == "up" for _, e in log), 400)
        found["old_resolved_s"] = run.out.first("resolved", healed) - healed  # type: ignore[operator]
        found["uptime_resolved_s"] = next(t for t, e in log if e == "up") - healed
        stop.set()
        await uptime
    return found


def med(values: list[float]) -> float:
    return statistics.median(values)


async def main(trials: int) -> None:
    started = time.monotonic()
    cluster = PgCluster()
    cluster.start()
    a, b, c, d = Stack(cluster, "a", 20), Stack(cluster, "b", 20), Stack(cluster, "c", 20), Stack(cluster, "d", 1000)
    e = Stack(cluster, "e", 5000)
    try:
        fingerprint = await fingerprint_costs(cluster)
        for stack in (a, b, c, d, e):
            await stack.start()
        async with httpx.AsyncClient(timeout=10) as client, Running(c) as steady:
            steady_from = time.monotonic()
            base = asyncio.create_task(baselines(b, client, min(trials, 3)))
            progress("stale table, 20 tables")
            stale = await stale_trials(a, trials, client)
            progress("stale table, 1,000 tables")
            stale_1000 = await stale_trials(d, trials, client)
            progress("stale table, 5,000 tables, with and without the snapshot gate")
            stale_5000_before: list[Trial] = []
            stale_5000 = await stale_trials(e, trials, client, before=stale_5000_before)
            progress("stale table, 5,000 tables, written all the time")
            async with WrittenAllTheTime(e):
                stale_5000_busy = await stale_trials(e, trials, client)
            progress("PGRST002 outages")
            outages = await outage_trials(a, min(trials, 5), client)
            progress("waiting for the old defaults and the uptime monitor")
            found = await base
            window = time.monotonic() - steady_from
            counted = [what for t, what in steady.requests if t >= steady_from]
    finally:
        for stack in (a, b, c, d, e):
            await stack.stop()
        cluster.destroy()

    print(f"## Detection (medians; PostgREST 12.0.2, PostgreSQL 15, 20 tables unless said; {trials} trials)")
    print(
        "fingerprint of the catalog (one query: the snapshot, and only when it moved a scan of pg_class, pg_attribute,"
        " pg_proc, pg_namespace, pg_constraint; the poll is 0.5 s, slower when one read costs over 2 % of it):"
    )
    for line in fingerprint:
        print("  " + line)
    print("stale table (created without NOTIFY), commit to served by PostgREST, ms:")
    rows = [("20 tables", stale), ("1000 tables", stale_1000), ("5000 tables", stale_5000)]
    rows.append(("5000 tables, scanning every poll (before)", stale_5000_before))
    rows.append(("5000 tables, written all the time", stale_5000_busy))
    for tables, trials_of in rows:
        served = [x for x, _, _, _ in trials_of]
        floors = [f for _, f, _, _ in trials_of]
        detect = [n for _, _, n, _ in trials_of]
        seen = [v for _, _, _, v in trials_of]
        ordered = sorted(served)
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        print(
            f"  default monitor (catalog watch), {tables}: median {med(served):.0f}, p95 {p95:.0f} (max of "
            f"{len(served)}: {max(served):.0f}); the floor (PostgREST's own reload of the watch's NOTIFY) "
            f"{med(floors):.0f}; commit to that NOTIFY {med(detect):.0f}, of which to the change seen {med(seen):.0f}"
        )
        print(
            f"    each trial: served {' '.join(f'{v:.0f}' for v in served)}; floor {' '.join(f'{v:.0f}' for v in floors)}"
        )
    runbook = found["runbook_ms"]
    print(
        f"  runbook loop (NOTIFY, sleep 3 s, re-check, x3), started by a person at the commit: median {med(runbook):.0f}"
    )
    print(
        "  old defaults (60 s, threshold 2): probed tables only, 60-120 s by construction (issue 14 measured 84 s); "
        "unprobed tables by drift only (900 s)"
    )
    print(
        f"  uptime monitor (GET / expects 200): never; GET / answered {found['stale_root']} while "
        f"OPTIONS /<the table> answered {found['stale_table']}"
    )
    alerts = [x for x, _ in outages]
    resolves = [y for _, y in outages]
    print("PGRST002 (statement_timeout on the authenticator role), s:")
    print(
        f"  default monitor: to the CRITICAL median {med(alerts):.1f} (max {max(alerts):.1f}); healed to the resolved "
        f"line median {med(resolves):.1f} (max {max(resolves):.1f}); each: "
        + "; ".join(f"{x:.1f}/{y:.1f}" for x, y in outages)
    )
    print(
        f"  old defaults: to the CRITICAL {found['old_alert_s']:.1f}; to the resolved line {found['old_resolved_s']:.1f} (one outage)"
    )
    print(
        f"  uptime monitor (60 s, 3 failures): down after {found['uptime_alert_s']:.1f}; up after {found['uptime_resolved_s']:.1f} (same outage)"
    )
    per_5s = len(counted) / window * 5
    kinds = Counter(counted)
    shown = ", ".join(f"{what} {n}" for what, n in kinds.most_common())
    print(
        f"steady load of one healthy environment (default monitor, {window:.0f} s): {len(counted)} API requests = "
        f"{per_5s:.2f} per 5 s; by request: {shown}"
    )
    cheap = kinds.get("OPTIONS /", 0)
    print(f"  of which OPTIONS / (the liveness check, and the full probe's root): {cheap / window * 5:.2f} per 5 s")
    print(f"(whole benchmark: {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else TRIALS))
