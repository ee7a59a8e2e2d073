"""The recovery operator against a real PostgreSQL + PostgREST: reload, re-check, escalate."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time

import httpx
import pytest

from bot.config import RecoveryConfig
from bot.core.recovery import Outcome, StepKind
from bot.core.verdicts import Verdict
from bot.ops.recovery import RecoveryOperator
from bot.postgrest.probe import Prober
from bot.postgrest.requests import make_http_client
from tests.conftest import build_settings, targets_for, write_config
from tests.support.pgstack import NotifyCounter


async def recover(stack, *, env_overrides=None, environ=None, recovery=None, **kw):
    settings = build_settings({"env": stack.env_config(**(env_overrides or {}))}, recovery=recovery or {})
    (target,) = targets_for(settings, {**stack.env_vars, **(environ or {})}, need_dsn=True)
    async with make_http_client() as client:
        operator = RecoveryOperator(Prober(client), settings.recovery)
        return await operator.recover(target, **kw)


async def test_healthy_environment_needs_nothing(make_stack):
    result = await recover(make_stack())
    assert result.outcome is Outcome.ALREADY_HEALTHY and not result.notify_sent


async def test_stale_table_recovers_after_one_notify_with_measured_time(make_stack):
    stack = make_stack()
    stack.sql("CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;")
    steps = []
    result = await recover(stack, env_overrides={"probe_tables": ["orders"]}, on_step=steps.append)
    assert result.outcome is Outcome.RECOVERED, result.reason
    assert result.verdict_before is Verdict.STALE_SCHEMA_CACHE and result.verdict_after is Verdict.HEALTHY
    assert result.notify_sent and 0 < result.notify_ms < 1000
    assert result.time_to_healthy_ms is not None and 50 <= result.time_to_healthy_ms < 3000
    assert result.attempts >= 1 and result.listener == "present"
    assert [s.kind for s in steps][:5] == [
        StepKind.PROBE,
        StepKind.DIAGNOSIS,
        StepKind.LISTENER,
        StepKind.NOTIFY,
        StepKind.RECHECK,
    ]
    assert "public.orders exists in the database" in steps[1].message
    assert steps[-1].kind is StepKind.DONE
    assert [k.key for k in result.kpis] == ["notify", "reload", "api_after_reload"]


async def test_missing_table_escalates_without_a_notify(make_stack):
    result = await recover(make_stack(), env_overrides={"probe_tables": ["orders"]})
    assert result.outcome is Outcome.ESCALATED and not result.notify_sent
    assert result.verdict_after is Verdict.MISSING_IN_DATABASE
    assert "a reload cannot help" in result.reason and "apply the migration" in result.reason


async def test_ungranted_table_escalates_with_the_grant_to_run(make_stack):
    stack = make_stack()
    stack.sql("CREATE TABLE public.orders (id int primary key);")
    result = await recover(stack, env_overrides={"probe_tables": ["orders"]})
    assert result.outcome is Outcome.ESCALATED and not result.notify_sent
    assert result.verdict_after is Verdict.NOT_GRANTED
    assert "GRANT SELECT ON public.orders TO anon, authenticated" in result.reason


async def test_stale_column_and_function_recover(make_stack):
    stack = make_stack()
    stack.sql(
        "ALTER TABLE public.judgments ADD COLUMN verdict text;"
        "CREATE FUNCTION public.fresh() RETURNS int LANGUAGE sql AS 'select 2';"
        "GRANT EXECUTE ON FUNCTION public.fresh() TO anon;"
    )
    result = await recover(
        stack,
        env_overrides={
            "probe_tables": [{"name": "judgments", "columns": ["verdict"]}],
            "probe_functions": ["fresh"],
        },
    )
    assert result.outcome is Outcome.RECOVERED, result.reason
    assert result.verdict_before is Verdict.STALE_SCHEMA_CACHE


async def test_pgrst002_escalates_at_once_without_a_notify(make_stack):
    stack = make_stack(steady_pgrst002=True)
    stack.sql(f"ALTER ROLE authenticator IN DATABASE {stack.db} SET statement_timeout = '1ms'")
    stack.notify()
    await stack.wait_for_code("PGRST002")
    result = await recover(stack)
    assert result.outcome is Outcome.ESCALATED
    assert result.verdict_after is Verdict.SCHEMA_CACHE_UNAVAILABLE
    assert not result.notify_sent and result.attempts == 0
    assert "cannot help" in result.reason and "PGRST002" in result.reason


async def test_preflight_refuses_a_notify_that_would_apply_a_tiny_statement_timeout(make_stack):
    # One pool connection, opened before the bad setting: requests keep working until the reload reconnects.
    stack = make_stack(extra_env={"PGRST_DB_POOL": "1"})
    stack.sql("CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;")
    stack.sql(f"ALTER ROLE authenticator IN DATABASE {stack.db} SET statement_timeout = '1ms'")
    result = await recover(stack, env_overrides={"probe_tables": ["orders"]})
    assert result.outcome is Outcome.ESCALATED and result.refused_by_preflight
    assert not result.notify_sent and result.verdict_after is Verdict.STALE_SCHEMA_CACHE
    assert "pre-flight refused" in result.reason and "statement_timeout=1ms" in result.reason
    assert "force:true" in result.reason and "--force" in result.reason
    # Nothing was broken: the API still serves from the old cache.
    again = await recover(stack, env_overrides={"probe_tables": ["judgments"]})
    assert again.outcome is Outcome.ALREADY_HEALTHY


async def test_forced_reload_that_breaks_the_cache_escalates_quickly_naming_the_cause(make_stack):
    stack = make_stack(extra_env={"PGRST_DB_POOL": "1"})
    stack.sql("CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;")
    stack.sql(f"ALTER ROLE authenticator IN DATABASE {stack.db} SET statement_timeout = '1ms'")
    result = await recover(
        stack, env_overrides={"probe_tables": ["orders"]}, recovery={"retries": 3, "delay_s": 3}, force=True
    )
    assert result.outcome is Outcome.ESCALATED and result.forced
    assert result.notify_sent and result.verdict_after is Verdict.SCHEMA_CACHE_UNAVAILABLE
    assert "Cause: statement_timeout too low for authenticator" in result.reason
    assert result.diagnosis is not None and "applied" in result.diagnosis.findings[0].evidence
    assert (result.finished_at - result.started_at).total_seconds() < 5  # did not burn the 9 s budget


async def test_no_listener_escalates_instead_of_retrying_blindly(make_stack):
    stack = make_stack(channel_enabled=False)
    stack.sql("CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;")
    result = await recover(stack, env_overrides={"probe_tables": ["orders"]})
    assert result.outcome is Outcome.ESCALATED and not result.notify_sent
    assert result.listener == "absent" and result.refused_by_preflight
    assert "would not be heard" in result.reason and "channel is disabled" in result.reason


async def test_monitor_without_read_all_stats_reports_unknown_and_notifies_anyway(make_stack):
    stack = make_stack(monitor_user="monitor")
    stack.sql("CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;")
    steps = []
    result = await recover(stack, env_overrides={"probe_tables": ["orders"]}, on_step=steps.append)
    assert result.outcome is Outcome.RECOVERED, result.reason
    assert result.listener == "unknown"
    assert any(s.kind is StepKind.LISTENER and "pg_read_all_stats" in s.message for s in steps)


async def test_concurrent_recoveries_share_one_notify(make_stack):
    stack = make_stack()
    stack.sql("CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;")
    settings = build_settings({"env": stack.env_config(probe_tables=["orders"])})
    (target,) = targets_for(settings, stack.env_vars, need_dsn=True)
    async with make_http_client() as client:
        operator = RecoveryOperator(Prober(client), settings.recovery)
        first, second = await asyncio.gather(operator.recover(target), operator.recover(target, actor="someone"))
        assert first is second and first.outcome is Outcome.RECOVERED
        assert operator.reloads_in_window("env") == 1


async def test_reload_cap_escalates_instead_of_a_storm(make_stack):
    stack = make_stack()
    settings = build_settings(
        {"env": stack.env_config(probe_tables=["orders1", "orders2"])}, recovery={"max_reloads": 1}
    )
    (target,) = targets_for(settings, stack.env_vars, need_dsn=True)
    async with make_http_client() as client:
        operator = RecoveryOperator(Prober(client), RecoveryConfig(max_reloads=1))
        stack.sql("CREATE TABLE public.orders1 (id int primary key); GRANT SELECT ON public.orders1 TO anon;")
        stack.sql("CREATE TABLE public.orders2 (id int primary key); GRANT SELECT ON public.orders2 TO anon;")
        first = await operator.recover(target)
        assert first.outcome is Outcome.RECOVERED
        stack.sql("CREATE TABLE public.orders3 (id int primary key); GRANT SELECT ON public.orders3 TO anon;")
        settings2 = build_settings({"env": stack.env_config(probe_tables=["orders3"])})
        (target2,) = targets_for(settings2, stack.env_vars, need_dsn=True)
        second = await operator.recover(target2)
    assert second.outcome is Outcome.ESCALATED and not second.notify_sent
    assert "reload limit reached" in second.reason


CANARY = "canary-Pw-7f3e9"


async def test_database_errors_are_outcomes_without_the_password(make_stack):
    stack = make_stack()
    stack.sql("CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;")
    cases = {
        "wrong password": (stack.dsn("ops", CANARY), "rejected the login"),
        "refused": (f"postgresql://ops:{CANARY}@127.0.0.1:1/{stack.db}", "refused"),
        "unknown database": (
            stack.cluster.dsn("ops", stack.cluster.ops_password, dbname="nope_" + CANARY[:4]),
            "does not exist",
        ),
        "malformed": (f"postgresql://ops:{CANARY}@[bad", "malformed"),
    }
    for label, (dsn, expected) in cases.items():
        result = await recover(
            stack, env_overrides={"probe_tables": ["orders"]}, environ={f"DSN_{stack.db.upper()}": dsn}
        )
        assert result.outcome is Outcome.ESCALATED, label
        assert expected in result.reason, (label, result.reason)
        assert CANARY not in str(result.to_json()), label


async def test_forced_reload_waits_for_a_running_unforced_one_instead_of_joining_it(make_stack):
    stack = make_stack(extra_env={"PGRST_DB_POOL": "1"})
    stack.sql("CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;")
    stack.sql(f"ALTER ROLE authenticator IN DATABASE {stack.db} SET statement_timeout = '1ms'")
    settings = build_settings({"env": stack.env_config(probe_tables=["orders"])}, recovery={"retries": 2, "delay_s": 1})
    (target,) = targets_for(settings, stack.env_vars, need_dsn=True)
    async with make_http_client() as client:
        operator = RecoveryOperator(Prober(client), settings.recovery)
        auto, forced = await asyncio.gather(
            operator.recover(target, actor="auto"), operator.recover(target, actor="Alice", force=True)
        )
    assert auto.actor == "auto" and auto.refused_by_preflight and not auto.notify_sent
    assert forced.actor == "Alice" and forced.forced and forced.notify_sent


@pytest.mark.parametrize(
    ("application_name", "sessions_read"),
    [(None, "PostgREST 12"), ("postgrest", "postgrest"), ("orders-api", "orders-api")],
    ids=["default db-uri", "supabase db-uri", "custom name"],
)
async def test_postgrest_is_recognised_by_its_role_whatever_its_application_name(
    make_stack, application_name, sessions_read
):
    stack = make_stack(application_name=application_name)
    names = stack.sql("select distinct application_name from pg_stat_activity where usename = 'authenticator'")
    assert names.strip().startswith(sessions_read)  # PostgREST really runs under that name
    stack.sql("CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;")
    steps = []
    result = await recover(stack, env_overrides={"probe_tables": ["orders"]}, on_step=steps.append)
    assert result.outcome is Outcome.RECOVERED, result.reason
    assert result.listener == "present" and not result.refused_by_preflight
    (listener,) = [s.message for s in steps if s.kind is StepKind.LISTENER]
    assert f"1 PostgREST session(s) listen on '{stack.channel}': {sessions_read}" in listener
    assert "(user authenticator, from 127.0.0.1)" in listener and "not PostgREST" not in listener
    assert result.diagnosis is not None
    assert [f.cause for f in result.diagnosis.findings] == ["stale_object"]  # no invented cause
    assert "pooler" not in json.dumps(result.to_json())


async def wait_cached(stack, table: str, within_s: float = 10.0) -> None:
    """Until PostgREST's cache has the table (OPTIONS answers 200, not 404 {})."""
    async with httpx.AsyncClient(timeout=2) as client:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if (await client.options(f"{stack.postgrest.url}/{table}")).status_code == 200:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"{table} not in PostgREST's cache after {within_s} s")


def auth_limited_table(stack) -> None:
    """A cached table only `authenticated` may read: the keyless probe (anon) gets 401 42501 on it."""
    stack.sql("CREATE TABLE public.members (id int primary key); GRANT SELECT ON public.members TO authenticated;")
    stack.notify()


async def fix_json(stack, tmp_path, probe_tables):
    config = write_config(tmp_path / "c.yaml", {"prod": stack.env_config(probe_tables=probe_tables)})
    async with NotifyCounter(stack.dsn(), stack.channel) as notifies:
        proc = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "bot.cli", "--config", str(config), "fix", "--env", "prod", "--json", "--no-alert"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **stack.env_vars},
        )
        return proc, await notifies.reloads()


async def test_fix_decides_on_refined_rechecks_an_auth_limited_table_does_not_fail_a_recovery(make_stack, tmp_path):
    stack = make_stack()
    auth_limited_table(stack)
    await wait_cached(stack, "members")
    stack.sql("CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;")
    proc, reloads = await fix_json(stack, tmp_path, ["members", "orders"])
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0, doc["reason"]
    assert doc["outcome"] == "recovered" and doc["verdict_before"] == "stale_schema_cache"
    assert doc["verdict_after"] == "healthy" and reloads == 1
    members = next(c for c in doc["checks_after"] if c["name"] == "data:members")
    assert members["status"] == 401 and members["code"] == "42501" and members["auth_limited"]


async def test_fix_with_only_an_auth_limited_table_is_already_healthy_without_a_notify(make_stack, tmp_path):
    stack = make_stack()
    auth_limited_table(stack)
    await wait_cached(stack, "members")
    proc, reloads = await fix_json(stack, tmp_path, ["members", "judgments"])
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0, doc["reason"]
    assert doc["outcome"] == "already_healthy" and not doc["notify_sent"] and reloads == 0


async def test_a_listener_that_is_not_postgrest_is_named_and_does_not_pass_the_preflight(make_stack):
    stack = make_stack(channel_enabled=False)
    stack.sql("CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;")
    async with NotifyCounter(stack.dsn(), stack.channel) as notifies:  # another program LISTENs as ops
        steps = []
        result = await recover(stack, env_overrides={"probe_tables": ["orders"]}, on_step=steps.append)
        assert await notifies.reloads() == 0
    assert result.outcome is Outcome.ESCALATED and result.refused_by_preflight and result.listener == "absent"
    (listener,) = [s.message for s in steps if s.kind is StepKind.LISTENER]
    assert "none LISTENs; the only listener(s): " in listener
    assert "(user ops, from 127.0.0.1), not PostgREST" in listener
    assert "channel is disabled" in result.reason and "not PostgREST" in result.reason


def twenty_tables(stack) -> None:
    stack.sql(
        "".join(
            f"CREATE TABLE public.t{i} (id int primary key, title text, at timestamptz default now());"
            f"GRANT SELECT ON public.t{i} TO anon;"
            for i in range(19)
        )
    )


async def test_preflight_refuses_a_pending_statement_timeout_within_3x_of_the_measured_reload(make_stack):
    # One pool connection, opened before each setting: only a reload applies it.
    stack = make_stack(extra_env={"PGRST_DB_POOL": "1"})
    twenty_tables(stack)  # ~20 tables, where a 30 ms statement_timeout breaks the schema load
    settings = build_settings({"env": stack.env_config(probe_tables=["orders"])})
    (target,) = targets_for(settings, stack.env_vars, need_dsn=True)
    async with make_http_client() as client:
        operator = RecoveryOperator(Prober(client), settings.recovery)
        stack.sql("CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;")
        first = await operator.recover(target)
        assert first.outcome is Outcome.RECOVERED, first.reason
        measured = operator.measured_reload_ms("env")
        assert measured == first.time_to_healthy_ms

        stack.sql(f"ALTER ROLE authenticator IN DATABASE {stack.db} SET statement_timeout = '30ms'")
        stack.sql("ALTER TABLE public.orders ADD COLUMN note text")
        settings = build_settings({"env": stack.env_config(probe_tables=[{"name": "orders", "columns": ["note"]}])})
        (target,) = targets_for(settings, stack.env_vars, need_dsn=True)
        refused = await operator.recover(target)
        assert refused.refused_by_preflight and not refused.notify_sent, refused.reason
        assert "statement_timeout=30ms" in refused.reason and "within 3× of the ~" in refused.reason
        estimate = float(re.search(r"within 3× of the ~(\d+) ms", refused.reason).group(1))
        assert estimate >= round(measured) - 1  # never judged against less than the measured reload

        stack.sql(f"ALTER ROLE authenticator IN DATABASE {stack.db} SET statement_timeout = '8s'")
        allowed = await operator.recover(target)
    assert allowed.outcome is Outcome.RECOVERED and allowed.notify_sent, allowed.reason
