"""`python -m bot` with a PostgreSQL store while another replica holds the leader lease: a standby that serves
/healthz, /readyz ("ready: standby" while the store's database answers) and leader 0, acts on nothing, and stops
cleanly on SIGTERM. Console mode, so no Discord is needed: the standby is the same in both modes."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import uuid
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from bot.core.lease import LeaseTiming
from bot.postgres.lease import LeaderLease
from tests.conftest import write_config
from tests.support.localhttp import get, start_bot, until
from tests.support.pgstack import made_up_password, url_dsn
from tests.support.prom import samples_of, value

ADDRESS_RE = re.compile(r"metrics and health endpoints on http://127\.0\.0\.1:(\d+) ")


@pytest.fixture
def store_db(pg_cluster) -> Iterator[str]:
    db = f"store_{uuid.uuid4().hex[:8]}"
    pg_cluster.sql(f"CREATE DATABASE {db}")
    yield pg_cluster.dsn("postgres", dbname=db)
    pg_cluster.sql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


async def standby(tmp_path, stack, store_dsn: str) -> tuple[asyncio.subprocess.Process, int]:
    config = write_config(
        tmp_path / "c.yaml",
        {"dev": stack.env_config()},
        monitor={"interval_s": 1, "failure_threshold": 1, "success_threshold": 1},
        incidents={"store": {"env": "STORE_DSN"}, "lease_s": 3},
        metrics={"host": "127.0.0.1", "port": 0},
    )
    env = {k: v for k, v in os.environ.items() if k != "DISCORD_TOKEN"} | stack.env_vars | {"STORE_DSN": store_dsn}
    proc = await start_bot(config, env=env)
    assert proc.stderr is not None
    async with asyncio.timeout(20):
        while not (found := ADDRESS_RE.search((line := await proc.stderr.readline()).decode())):
            assert line, "exited before listening"
    return proc, int(found.group(1))


async def stopped(proc: asyncio.subprocess.Process) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    return await proc.wait(), out.decode(), err.decode()


async def test_a_standby_is_ready_as_standby_leads_nothing_and_stops_cleanly(make_stack, store_db, tmp_path):
    stack = make_stack()
    leader = LeaderLease(SecretStr(store_db), LeaseTiming(3))  # another replica, same group ('default')
    assert await leader.try_once()
    try:
        proc, port = await standby(tmp_path, stack, store_db)
        try:
            ready = await until(lambda: get(port, "/readyz"), lambda a: a[0] == 200)
            metrics = samples_of((await get(port, "/metrics"))[1])
            alive = await get(port, "/healthz")
        finally:
            code, out, err = await stopped(proc)
    finally:
        await leader.close()
    assert ready == (200, "ready: standby\n") and alive == (200, "ok\n")
    assert value(metrics, "pgrst_ops_leader") == 0
    assert value(metrics, "pgrst_ops_checks_total", env="dev", verdict="healthy") == 0  # the monitor never ran
    assert code == 0 and out == ""  # the console never started: nothing was checked or printed
    assert "standby: another replica leads group 'default'" in err and "leader of group" not in err


async def test_a_standby_whose_store_is_unreachable_is_not_ready_and_says_why(make_stack, tmp_path):
    stack = make_stack()
    password = made_up_password()
    proc, port = await standby(tmp_path, stack, url_dsn("ops", password, "127.0.0.1", 9, "store"))
    try:
        ready = await until(lambda: get(port, "/readyz"), lambda a: a[0] == 503)
        alive = await get(port, "/healthz")
    finally:
        code, _, err = await stopped(proc)
    status, text = ready
    assert text.startswith("not ready: standby: incident store unreachable (database 127.0.0.1:9/store refused")
    assert status == 503 and password not in text + err and alive == (200, "ok\n") and code == 0
