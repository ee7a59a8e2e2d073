"""Two replicas as real processes (bench/bot_process.py) sharing a PostgreSQL store: the fake Discord, a real
PostgREST, and `kill -9` of the leader in the middle of an incident.

What an operator would check: one CRITICAL, one resolved line, the same alert message edited by the replica that
took over, and how long the takeover took.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import write_config
from tests.e2e.test_incidents import criticals, ops
from tests.support.localhttp import get
from tests.support.prom import samples_of, value

pytest.importorskip("bot.store.postgres", reason="the PostgreSQL incident store (issue 13 item 1) is not merged yet")

ROOT = Path(__file__).resolve().parents[2]
LEASE_S = 3
LISTENING = re.compile(r"metrics and health endpoints on http://127\.0\.0\.1:(\d+)")


class Replica:
    def __init__(self, name: str, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.name, self.proc, self.log = name, proc, log

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    async def wait_log(self, needle: str, within_s: float = 30) -> float:
        """When `needle` showed up in the log (monotonic), polled every 20 ms."""
        deadline = time.monotonic() + within_s
        while needle not in self.text():
            if self.proc.returncode is not None or time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not in {self.name}'s log:\n{self.text()[-4000:]}")
            await asyncio.sleep(0.02)
        return time.monotonic()

    async def port(self) -> int:
        await self.wait_log("metrics and health endpoints on")
        found = LISTENING.search(self.text())
        assert found is not None
        return int(found.group(1))

    async def get(self, path: str) -> tuple[int, str]:
        return await get(await self.port(), path)

    async def metric(self, name: str) -> float | None:
        return value(samples_of((await self.get("/metrics"))[1]), name)


@contextlib.asynccontextmanager
async def replica(fake, config: Path, environ: dict[str, str], name: str) -> AsyncIterator[Replica]:
    log = config.with_name(f"{name}.log")
    env = {**os.environ, **environ, "DISCORD_TOKEN": "fake-bot-token"}
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.bot_process", fake.url, "--config", str(config),
            cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    try:
        yield Replica(name, proc, log)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def until(check, within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def same_config(fake, stack, tmp_path: Path) -> Path:
    return write_config(
        tmp_path / "c.yaml",
        {"prod": stack.env_config(auto_recover=False)},
        discord={"guild_ids": [fake.guild_id], "ops_channel_id": fake.ops_channel_id, "ops_role": "ops"},
        monitor={"interval_s": 1, "failure_threshold": 2, "success_threshold": 1, "drift_interval_s": 0},
        incidents={"store": {"env": "STORE_DSN"}, "lease_s": LEASE_S, "reminder_interval_s": 0},
        metrics={"host": "127.0.0.1", "port": 0},  # the same config for both: each picks a free port
    )


@pytest.fixture
def store_db(pg_cluster):
    """A database of its own for the shared incident store (and the lease)."""
    db = f"store_{uuid.uuid4().hex[:8]}"
    pg_cluster.sql(f"CREATE DATABASE {db}")
    yield pg_cluster.dsn("postgres", dbname=db)
    pg_cluster.sql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


async def test_kill_9_of_the_leader_mid_incident_the_standby_takes_over_one_critical_one_resolved_line(
    fake, make_stack, store_db, tmp_path
):
    stack = make_stack()
    config = same_config(fake, stack, tmp_path)
    environ = {**stack.env_vars, "STORE_DSN": store_db}
    async with replica(fake, config, environ, "first") as first:
        await first.wait_log("connected as")
        async with replica(fake, config, environ, "second") as second:
            await second.wait_log("standby: another replica leads group 'default'")
            assert await second.get("/readyz") == (200, "ready: standby\n")
            assert await first.get("/readyz") == (200, "ready: leader\n")
            assert (await first.metric("pgrst_ops_leader"), await second.metric("pgrst_ops_leader")) == (1, 0)
            assert len(fake.gateway_sessions) == 1  # the standby never connected

            stack.postgrest.stop()  # the outage: the leader alerts
            alert = await fake.wait_for_message(fake.ops_channel_id, lambda m: "CRITICAL" in m.embed_text(), 30)

            async def delivered() -> bool:
                return await first.metric("pgrst_ops_outbox_backlog") == 0

            await until(delivered)  # the CRITICAL is marked sent in the shared store
            killed_at = time.monotonic()
            first.proc.send_signal(signal.SIGKILL)
            leads_at = await second.wait_log("leader of group 'default'", within_s=LEASE_S + 10)
            attached_at = await second.wait_log("re-attached open incident", within_s=30)
            connected_at = await second.wait_log("connected as", within_s=30)
            takeover_s = leads_at - killed_at
            print(
                f"\ntakeover after kill -9: lease {takeover_s:.2f} s, incident re-attached "
                f"{attached_at - killed_at:.2f} s, connected to Discord {connected_at - killed_at:.2f} s"
            )
            assert await second.get("/readyz") == (200, "ready: leader\n")

            stack.postgrest.start()  # fixed: the new leader resolves the incident it took over
            await fake.wait_for(lambda: "RESOLVED" in fake.message(alert.id).embed_text(), 30)
            await fake.wait_for(lambda: any("resolved after" in (m.content or "") for m in ops(fake)), 30)

            async def settled() -> bool:
                return await second.metric("pgrst_ops_outbox_backlog") == 0

            await until(settled)
            assert await first.proc.wait() == -signal.SIGKILL
    resolved_lines = [m for m in ops(fake) if (m.content or "").startswith("✅ PostgREST PROD resolved")]
    assert len(criticals(fake)) == 1 and len(resolved_lines) == 1, [m.history[0] for m in ops(fake)]
    assert fake.message(alert.id).embeds[0]["title"] == "✅ RESOLVED · PROD: PostgREST healthy again"
    assert takeover_s < LEASE_S, takeover_s
    assert "leader of group 'default' (epoch 2)" in second.text()


async def test_a_leader_whose_lease_connection_is_cut_stops_at_once_exits_3_and_the_standby_leads(
    fake, make_stack, store_db, tmp_path
):
    """The database ends the leader's lease session (as a network cut or a failover would): it stops acting and
    exits for its supervisor to restart it as a standby, and the other replica takes over."""
    stack = make_stack()
    config = same_config(fake, stack, tmp_path)
    environ = {**stack.env_vars, "STORE_DSN": store_db}
    async with replica(fake, config, environ, "first") as first:
        await first.wait_log("connected as")  # the leader, before the second replica starts
        async with replica(fake, config, environ, "second") as second:
            await second.wait_log("standby: another replica leads group 'default'")
            code, leads_at, cut_at, ready = await cut_the_leaders_lease(store_db, first, second)
    assert code == 3, first.text()[-3000:]
    assert "leader lease of group 'default' lost: the lease's database connection closed" in first.text()
    assert "exiting with code 3: the leader lease is lost" in first.text()
    assert ready == (200, "ready: leader\n") and leads_at - cut_at < LEASE_S


async def cut_the_leaders_lease(
    store_db: str, first: Replica, second: Replica
) -> tuple[int, float, float, tuple[int, str]]:
    """pg_terminate_backend of the session holding the lock; the old leader's exit code, when the other led, when
    the session was cut, and the new leader's /readyz."""
    admin = await asyncpg.connect(store_db)
    try:
        (pid,) = [
            row["pid"]
            for row in await admin.fetch(
                "select l.pid from pg_locks l join pg_stat_activity a using (pid)"
                " where l.locktype = 'advisory' and l.granted and a.application_name = 'pgrst-ops lease'"
            )
        ]
        cut_at = time.monotonic()
        assert await admin.fetchval("select pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    code = await asyncio.wait_for(first.proc.wait(), 30)
    leads_at = await second.wait_log("leader of group 'default' (epoch 2)", within_s=LEASE_S + 10)
    await second.wait_log("connected as")
    return code, leads_at, cut_at, await second.get("/readyz")
