"""`make demo`: a local PostgreSQL + PostgREST sandbox and the console monitor, under a minute.

1. healthy; 2. a migration adds a table (stale cache) → detected → NOTIFY → recovered;
3. a bad authenticator setting + reload (PGRST002) → CRITICAL alert, no pointless reload;
4. the setting is fixed → resolved.

Its incidents go to a throwaway store in a temporary directory, removed at the end: never the pgrst-ops.db
that `make run` uses. The narration is bold only on a terminal without NO_COLOR, like the console's own colour.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

from bot.app import build_console, run_console
from bot.config import parse_settings, resolve_targets
from bot.delivery.console import wants_colour
from bot.messages.console_text import Palette
from bot.postgrest.requests import make_http_client
from tests.support.pgstack import STEADY_PGRST002, PgCluster, PostgrestServer

PALETTE = Palette() if wants_colour(sys.stdout) else Palette.plain()


def say(text: str) -> None:
    print("\n" + PALETTE.paint(PALETTE.bold, f"=== {text}"), flush=True)


async def wait_for(predicate, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.1)


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="pgrst-ops-demo-") as scratch:
        await demo(Path(scratch) / "demo-incidents.db")


async def demo(store_path: Path) -> None:
    say(f"starting a throwaway PostgreSQL 15 and PostgREST 12; incidents go to {store_path} (removed at the end)")
    cluster = PgCluster()
    cluster.start()
    # Without prepared statements PostgREST 12.0.2 answers the 1 ms timeout below with a steady PGRST002, as the
    # demo tells, instead of sometimes exiting (see STEADY_PGRST002).
    server = PostgrestServer(cluster, extra_env=STEADY_PGRST002)
    server.start()
    os.environ["DEMO_DSN"] = cluster.dsn("ops")
    settings = parse_settings(
        {
            "environments": {
                "demo": {
                    "rest_url": server.url,
                    "admin_url": server.admin_url,
                    "probe_tables": ["judgments", "verdicts"],
                    "restart_url": "https://supabase.com/dashboard/project/demo/settings/general",
                    "database_dsn": {"env": "DEMO_DSN"},
                }
            },
            # 5 failures: the migration below lands within the first four checks even on a busy machine, so the
            # story is always "missing, then stale, then auto-recovered" (3 let a slow machine alert on "missing").
            # (The drift loop and the catalog watch are off: either would reload the new table before the monitor
            # gets to, which is right, but not the story this demo tells.)
            "monitor": {
                "interval_s": 1,
                "failure_threshold": 5,
                "success_threshold": 2,
                "drift_interval_s": 0,
                "catalog_watch_s": 0,
            },
            "incidents": {"store_path": str(store_path)},
        }
    )
    say("the monitor watches 'judgments' and 'verdicts'; 'verdicts' comes with a migration not applied yet")
    stop = asyncio.Event()
    try:
        async with make_http_client(settings.environments.values()) as http:
            ops = build_console(settings, resolve_targets(settings), http)
            console = asyncio.create_task(run_console(ops, stop))
            state = ops.monitor.states["demo"]
            await wait_for(lambda: state.verdict is not None)

            say("the migration creates 'verdicts': the database has it, PostgREST's cache does not")
            cluster.sql("CREATE TABLE public.verdicts (id int primary key); GRANT SELECT ON public.verdicts TO anon;")
            await wait_for(lambda: state.last_reload is not None)
            await wait_for(lambda: state.verdict == "healthy")

            say("someone sets authenticator's statement_timeout to 1 ms, then a reload applies it (PGRST002)")
            cluster.sql("ALTER ROLE authenticator SET statement_timeout = '1ms'")
            cluster.sql("NOTIFY pgrst, 'reload schema'")
            await wait_for(lambda: state.alert is not None)

            say("the setting is reset; PostgREST recovers by itself and the alert resolves")
            cluster.sql("ALTER ROLE authenticator RESET statement_timeout")
            await wait_for(lambda: state.alert is None and state.verdict == "healthy")
            say("done: that is what pgrst-ops does for every environment, in Discord or here")
            stop.set()
            await console
    finally:
        server.destroy()
        cluster.destroy()


if __name__ == "__main__":
    asyncio.run(main())
