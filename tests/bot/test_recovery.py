"""The recovery operator against a real PostgreSQL + PostgREST: reload, re-check, escalate."""

from __future__ import annotations

import asyncio

from bot.config import RecoveryConfig
from bot.probe import Prober, make_http_client
from bot.recovery import Outcome, RecoveryOperator, StepKind
from bot.verdicts import Verdict
from tests.conftest import build_settings, targets_for


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
    stack = make_stack()
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
