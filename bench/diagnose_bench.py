"""Diagnosis and drift cost (run with `make bench`; results go in bench/README.md with this command).

Two schema sizes (~20 and 1,000 tables of four columns, granted to anon/authenticated) on a real PostgreSQL 15
cluster and a real PostgREST 12 started after the tables exist (its cache is in sync):

1. `diagnose()` of an environment whose probe table was created after the last reload (stale): the catalog
   work the bot adds before it sends a NOTIFY (the pre-flight). Also `diagnose_with()` on an already open
   connection, which is what `RecoveryOperator.recover()` adds (it opens that connection for the NOTIFY anyway).
2. `check_drift(method="auto")` (OpenAPI root) and `check_drift(method="probe")` (one request per object), on
   the in-sync schema and with one new table the cache does not have.

Targets: diagnosis < 250 ms at 1,000 tables (small next to the 2 s reload-latency KPI); drift via the OpenAPI
root < 5 s at 1,000 tables.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from bot.config import Settings, Target, parse_settings, resolve_targets
from bot.core.diagnosis import Diagnosis
from bot.core.drift import DriftMethod, DriftReport, DriftStatus
from bot.core.verdicts import Verdict
from bot.ops.drift import check_drift
from bot.postgres.catalog import read_catalog
from bot.postgres.connect import connect
from bot.postgres.diagnose import diagnose, diagnose_with
from bot.postgrest.probe import Prober
from bot.postgrest.requests import make_http_client
from tests.conftest import SCHEMA_SQL
from tests.support.pgstack import PgCluster, PostgrestServer

TRIALS = 7
SIZES = (20, 1000)
DIAGNOSE_TARGET_MS = 250.0
DRIFT_TARGET_MS = 5000.0
STALE_TABLE = "stale_probe"
BIG_CAP = 8 * 1024 * 1024  # max_body_bytes that fits the 1,000-table OpenAPI root

TABLES_SQL = """
DO $$
BEGIN
  FOR i IN 1..{n} LOOP
    EXECUTE format('CREATE TABLE public.bench_%s (id bigint PRIMARY KEY, name text NOT NULL, '
                   'created_at timestamptz DEFAULT now(), score numeric)', lpad(i::text, 4, '0'));
  END LOOP;
END $$;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO anon, authenticated;
"""


def ms_stats(values: list[float]) -> tuple[float, float]:
    return statistics.median(values), max(values)


async def timed(fn: Callable[[], Awaitable[Any]], n: int = TRIALS) -> tuple[list[float], list[Any]]:
    times, results = [], []
    for _ in range(n):
        started = time.perf_counter()
        results.append(await fn())
        times.append((time.perf_counter() - started) * 1000)
    return times, results


class TimedConnection:
    """An asyncpg connection whose queries are timed, keyed by their first words (benchmark breakdown only)."""

    def __init__(self, conn: Any, log: dict[str, list[float]]) -> None:
        self._conn, self._log = conn, log

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._conn, name)
        if name not in ("fetch", "fetchrow", "fetchval", "execute"):
            return attr

        async def wrapper(query: str, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await attr(query, *args, **kwargs)
            finally:
                key = " ".join(query.split())[:70]
                self._log.setdefault(key, []).append((time.perf_counter() - started) * 1000)

        return wrapper


class Row:
    def __init__(self, size: int, what: str, times: list[float], requests: int | None = None) -> None:
        self.size, self.what, self.times, self.requests = size, what, times, requests

    def line(self) -> str:
        median, worst = ms_stats(self.times)
        req = f"{self.requests:>9}" if self.requests is not None else f"{'':>9}"
        return f"{self.size:>6}  {self.what:<78} {median:>8.1f} {worst:>8.1f} {req}".rstrip()


def settings_for(server: PostgrestServer, channel: str, dsn_var: str) -> Settings:
    def env(table: str) -> dict:
        return {
            "rest_url": server.url,
            "admin_url": server.admin_url,
            "probe_tables": [{"name": table, "select": "id"}],
            "notify_channel": channel,
            "database_dsn": {"env": dsn_var},
        }

    # `drift` watches a table that exists from the start; `stale` the one created after the last reload.
    return parse_settings({"environments": {"drift": env("judgments"), "stale": env(STALE_TABLE)}})


async def drift_runs(
    client: httpx.AsyncClient,
    target: Target,
    settings: Settings,
    method: str,
    expect: DriftStatus,
    max_body_bytes: int | None = None,
) -> tuple[list[float], DriftReport, float]:
    """Times of TRIALS drift checks, the last report, and this process's CPU time as a share of the wall time."""
    rec = settings.recovery

    async def run() -> DriftReport:
        return await check_drift(
            client,
            target,
            max_body_bytes=max_body_bytes or settings.max_body_bytes,
            connect_timeout=rec.db_connect_timeout_s,
            command_timeout=rec.db_command_timeout_s,
            method=method,  # type: ignore[arg-type]
        )

    cpu = time.process_time()
    times, reports = await timed(run)
    cpu_share = (time.process_time() - cpu) * 1000 / sum(times)
    for r in reports:
        assert r.status is expect, (method, r.status, r.summary)
        if expect is DriftStatus.STALE:
            assert r.missing_in_api.tables == (f"public.{STALE_TABLE}",), r.summary
    return times, reports[-1], cpu_share


def method_label(report: DriftReport) -> str:
    return "used the OpenAPI root" if report.method is DriftMethod.OPENAPI else "fell back to per-object"


async def drift_rows(
    client: httpx.AsyncClient,
    target: Target,
    settings: Settings,
    state: str,
    expect: DriftStatus,
    size: int,
    rows: list[Row],
    kpi: dict[str, float],
) -> None:
    cap = f"default cap {settings.max_body_bytes // 1024} KiB"
    times, report, _ = await drift_runs(client, target, settings, "auto", expect)
    rows.append(Row(size, f"check_drift auto, {state}, {cap}: {method_label(report)}", times, report.requests))
    kpi[f"default_{state}"] = max(times)
    kpi[f"default_{state}_openapi"] = float(report.method is DriftMethod.OPENAPI)
    times, report, _ = await drift_runs(client, target, settings, "auto", expect, max_body_bytes=BIG_CAP)
    assert report.method is DriftMethod.OPENAPI, report.notes
    rows.append(Row(size, f"check_drift auto, {state}, cap {BIG_CAP >> 20} MiB: OpenAPI root", times, report.requests))
    kpi[f"openapi_{state}"] = max(times)
    times, report, cpu_share = await drift_runs(client, target, settings, "probe", expect)
    rows.append(Row(size, f"check_drift probe, {state}", times, report.requests))
    kpi[f"probe_cpu_{state}"] = cpu_share


async def bench_size(cluster: PgCluster, n_tables: int, rows: list[Row], notes: list[str]) -> dict[str, float]:
    suffix = uuid.uuid4().hex[:6]
    db, channel = f"bench_diag_{n_tables}_{suffix}", f"pgrst_diag_{suffix}"
    cluster.sql(f"CREATE DATABASE {db}")
    cluster.psql(SCHEMA_SQL + TABLES_SQL.format(n=n_tables), dbname=db)
    # Started after the tables exist: its schema cache is in sync with the database.
    server = PostgrestServer(
        cluster, channel=channel, extra_env={"PGRST_DB_URI": cluster.dsn("authenticator", dbname=db)}
    )
    server.start()
    environ = {"BENCH_DSN": cluster.dsn("ops", dbname=db)}
    settings = settings_for(server, channel, "BENCH_DSN")
    drift_t, stale_t = resolve_targets(settings, ["drift", "stale"], environ=environ)
    rec = settings.recovery
    dsn = stale_t.secrets.database_dsn
    assert dsn is not None
    size = n_tables + 1  # the bench tables plus SCHEMA_SQL's judgments
    kpi: dict[str, float] = {}
    try:
        async with make_http_client(settings.environments.values()) as client:
            root = await client.get(f"{server.url}/", headers={"Accept": "application/openapi+json"})
            kpi["root_kib"] = len(root.content) / 1024

            await drift_rows(client, drift_t, settings, "in sync", DriftStatus.IN_SYNC, size, rows, kpi)

            # A table created after the last reload: stale for PostgREST, present in the catalog.
            cluster.psql(
                f"CREATE TABLE public.{STALE_TABLE} (id bigint PRIMARY KEY, note text); "
                f"GRANT SELECT, INSERT ON public.{STALE_TABLE} TO anon, authenticated;",
                dbname=db,
            )
            probe = await Prober(client).probe(stale_t)
            assert probe.verdict is Verdict.STALE_SCHEMA_CACHE, probe.verdict

            async def diag() -> Diagnosis:
                return await diagnose(
                    stale_t, probe, connect_timeout=rec.db_connect_timeout_s, command_timeout=rec.db_command_timeout_s
                )

            times, results = await timed(diag)
            for d in results:
                assert d.error is None and d.findings and d.findings[0].cause == "stale_object", d.headline
            rows.append(Row(size, "diagnose() stale: own connection (pre-flight)", times))
            kpi["diagnose_max"], kpi["diagnose_median"] = max(times), statistics.median(times)

            # What recover() adds: it opens this connection for the NOTIFY anyway, then diagnoses on it first.
            queries: dict[str, list[float]] = {}
            connect_ms, with_ms = [], []
            for _ in range(TRIALS):
                started = time.perf_counter()
                async with connect(
                    dsn, connect_timeout=rec.db_connect_timeout_s, command_timeout=rec.db_command_timeout_s
                ) as conn:
                    connect_ms.append((time.perf_counter() - started) * 1000)
                    started = time.perf_counter()
                    await diagnose_with(TimedConnection(conn, queries), stale_t, probe)  # type: ignore[arg-type]
                    with_ms.append((time.perf_counter() - started) * 1000)
            rows.append(Row(size, "diagnose_with() stale: fresh open connection", with_ms))
            rows.append(Row(size, "  (asyncpg connect + auth alone)", connect_ms))
            per_run = sum(len(v) for v in queries.values()) // TRIALS
            top = sorted(queries.items(), key=lambda kv: -statistics.median(kv[1]))[:3]
            notes.append(
                f"{size} tables, diagnose_with: {per_run} queries; slowest (median ms): "
                + "; ".join(f"{statistics.median(v):.1f} `{k[:48]}…`" for k, v in top)
            )

            await drift_rows(client, drift_t, settings, "one new table", DriftStatus.STALE, size, rows, kpi)

            # Where the drift time goes: the catalog read (runs alongside the root request) and the root itself.
            async with connect(
                dsn, connect_timeout=rec.db_connect_timeout_s, command_timeout=rec.db_command_timeout_s
            ) as conn:
                cat_times, _ = await timed(lambda: read_catalog(conn, ["public"], ["anon", "authenticated"]))
            root_times, _ = await timed(
                lambda: client.get(f"{server.url}/", headers={"Accept": "application/openapi+json"})
            )
            rows.append(Row(size, "  (read_catalog on an open connection)", cat_times))
            rows.append(Row(size, f"  (GET / OpenAPI root alone, {kpi['root_kib']:.0f} KiB)", root_times))
            notes.append(
                f"{size} tables, check_drift probe: this process used "
                f"{kpi['probe_cpu_in sync']:.0%} / {kpi['probe_cpu_one new table']:.0%} of the wall time in CPU "
                "(in sync / one new table)"
            )
    finally:
        server.destroy()
        cluster.sql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    return kpi


async def main() -> None:
    cluster = PgCluster()
    cluster.start()
    rows: list[Row] = []
    notes: list[str] = []
    kpis: dict[int, dict[str, float]] = {}
    started = time.perf_counter()
    try:
        for n in SIZES:
            kpis[n] = await bench_size(cluster, n, rows, notes)
    finally:
        cluster.destroy()
    print(f"## Diagnosis and drift cost (ms, n={TRIALS} each; PostgREST 12.0.2, PostgreSQL 15, loopback)")
    print(f"{'tables':>6}  {'measurement':<78} {'median':>8} {'max':>8} {'requests':>9}")
    for row in rows:
        print(row.line())
    for note in notes:
        print(f"- {note}")
    big = kpis[SIZES[-1]]
    size = SIZES[-1] + 1
    diag_ok = big["diagnose_max"] < DIAGNOSE_TARGET_MS
    print(
        f"{'PASS' if diag_ok else 'FAIL'}: diagnose() at {size} tables < {DIAGNOSE_TARGET_MS:.0f} ms "
        f"(median {big['diagnose_median']:.1f}, max {big['diagnose_max']:.1f}, every run)"
    )
    worst = max(big["openapi_in sync"], big["openapi_one new table"])
    print(
        f"{'PASS' if worst < DRIFT_TARGET_MS else 'FAIL'}: check_drift via the OpenAPI root at {size} tables "
        f"< {DRIFT_TARGET_MS / 1000:.0f} s (max {worst:.0f}, max_body_bytes {BIG_CAP >> 20} MiB)"
    )
    if not (big["default_in sync_openapi"] and big["default_one new table_openapi"]):
        default_worst = max(big["default_in sync"], big["default_one new table"])
        print(
            f"NOTE: with the default max_body_bytes the {big['root_kib']:.0f} KiB root is over the cap at {size} "
            f"tables, so auto fell back to per-object requests: max {default_worst:.0f} ms "
            f"({'within' if default_worst < DRIFT_TARGET_MS else 'over'} the 5 s target, but not via the root)"
        )
    print(f"(whole benchmark: {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    asyncio.run(main())
