"""The diagnosis rules without I/O: each finding judged from plain rows, as the catalog would return them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.config import EnvironmentConfig, ProbeTable
from bot.core.causes import (
    SCHEMA_LOAD_BASE_MS,
    ConnectionUse,
    catalog_privilege_findings,
    connection_findings,
    effective_settings,
    held_lock_findings,
    listener_findings,
    lock_wait_findings,
    missing_schema_findings,
    needs_schema_load_estimate,
    order_findings,
    queue_findings,
    role_missing_finding,
    role_setting_findings,
    timeout_ms,
)
from bot.core.classify import CheckKind
from bot.core.diagnosis import Finding
from bot.core.listener import ListenerSession, ListenerState, ListenerStatus
from bot.core.report import CheckResult, EnvReport, summarise
from bot.core.stale import ObjectState, StaleTarget, add_finding, columns_named, judge_object, stale_target
from bot.core.verdicts import Verdict

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ENV = EnvironmentConfig(
    rest_url="http://api.test", probe_tables=["orders", {"name": "judgments", "columns": ["verdict"]}]
)


def check(
    name: str = "data:orders",
    *,
    verdict: Verdict = Verdict.STALE_SCHEMA_CACHE,
    status: int | None = 404,
    code: str | None = "PGRST205",
    message: str | None = None,
    kind: CheckKind = CheckKind.DATA,
) -> CheckResult:
    return CheckResult(
        name=name,
        label=name,
        kind=kind,
        method="GET",
        url="http://api.test/x",
        status=status,
        code=code,
        message=message,
        detail="not in the schema cache",
        retry_after=None,
        latency_ms=3.0,
        server=None,
        verdict=verdict,
        auth_limited=False,
    )


def report(*checks: CheckResult) -> EnvReport:
    return summarise("prod", list(checks or [check()]), T0, 5.0)


def setting(text: str, *, per_role: bool = True, per_database: bool = False) -> dict[str, object]:
    return {"setting": text, "per_role": per_role, "per_database": per_database}


def role_findings(rows, *, cache_down=False, estimate_ms=None, measured=None, checks=()):
    settings = effective_settings(rows)
    return role_setting_findings(
        settings,
        report(*checks),
        role="authenticator",
        database="app",
        cache_down=cache_down,
        estimate_ms=estimate_ms,
        measured_reload_ms=measured,
    )


# -- PostgreSQL durations and role settings -------------------------------------------------------
@pytest.mark.parametrize(("value", "ms"), [("25", 25), ("25ms", 25), ("2s", 2000), ("1min", 60_000), ("500us", 0.5)])
def test_timeout_reads_postgresql_units(value, ms):
    assert timeout_ms(value) == ms


def test_timeout_that_is_not_a_duration_is_unknown():
    assert timeout_ms("soon") is None


def test_the_most_specific_role_setting_wins():
    rows = [
        setting("statement_timeout=9s", per_role=False, per_database=True),
        setting("statement_timeout=20ms", per_role=True, per_database=True),
        setting("statement_timeout=5s", per_role=True, per_database=False),
    ]
    assert effective_settings(rows)["statement_timeout"].value == "20ms"


def test_only_a_set_statement_timeout_needs_a_schema_load_estimate():
    assert needs_schema_load_estimate(effective_settings([setting("statement_timeout=20ms")]))
    assert not needs_schema_load_estimate(effective_settings([setting("statement_timeout=0")]))
    assert not needs_schema_load_estimate(effective_settings([setting("lock_timeout=10ms")]))


def test_pending_statement_timeout_within_3x_of_the_schema_load_blocks_the_reload():
    (finding,) = role_findings([setting("statement_timeout=300ms")], estimate_ms=SCHEMA_LOAD_BASE_MS)
    assert finding.cause == "role_setting" and finding.blocks_reload
    assert "pending: the next reload" in finding.evidence and "(estimated)" in finding.evidence
    assert finding.fix.startswith("`ALTER ROLE authenticator RESET statement_timeout;`")


def test_statement_timeout_well_above_the_schema_load_is_fine():
    assert role_findings([setting("statement_timeout=8s")], estimate_ms=SCHEMA_LOAD_BASE_MS) == []


def test_applied_statement_timeout_is_named_as_why_the_cache_cannot_load():
    (finding,) = role_findings([setting("statement_timeout=20ms")], estimate_ms=160.0, cache_down=True)
    assert "applied: it is why the schema cache cannot load" in finding.evidence


def test_statement_timeout_already_cancelling_requests_says_57014():
    cancelled = check(code="57014", status=500, verdict=Verdict.UNEXPECTED)
    (finding,) = role_findings([setting("statement_timeout=20ms")], estimate_ms=160.0, checks=(cancelled,))
    assert "already cancelling requests on new connections (57014)" in finding.evidence


def test_estimate_from_the_measured_reload_says_so():
    (finding,) = role_findings([setting("statement_timeout=1s")], estimate_ms=900.0, measured=900.0)
    assert "(the last measured reload here)" in finding.evidence


def test_database_wide_setting_is_reset_on_the_database():
    rows = [setting("statement_timeout=20ms", per_role=False, per_database=True)]
    (finding,) = role_findings(rows, estimate_ms=160.0)
    assert "for every role in this database" in finding.evidence
    assert finding.fix.startswith("`ALTER DATABASE app RESET statement_timeout;`")


def test_role_setting_in_one_database_is_reset_there():
    (finding,) = role_findings([setting("statement_timeout=20ms", per_database=True)], estimate_ms=160.0)
    assert finding.fix.startswith("`ALTER ROLE authenticator IN DATABASE app RESET statement_timeout;`")


def test_short_lock_timeout_matters_only_while_the_cache_is_down():
    assert role_findings([setting("lock_timeout=10ms")]) == []
    (finding,) = role_findings([setting("lock_timeout=10ms")], cache_down=True)
    assert not finding.blocks_reload and "so short that any lock" in finding.evidence


def test_lock_timeout_of_a_second_is_not_short():
    assert role_findings([setting("lock_timeout=1s")], cache_down=True) == []


# -- catalog privileges, roles and schemas --------------------------------------------------------
def test_revoked_catalogs_are_named_with_the_grants_to_run():
    (finding,) = catalog_privilege_findings("authenticator", ["pg_proc", "pg_type"])
    assert finding.blocks_reload and "pg_catalog.pg_proc, pg_catalog.pg_type" in finding.evidence
    assert finding.fix.startswith("`GRANT SELECT ON pg_catalog.pg_proc TO PUBLIC; GRANT SELECT ON pg_catalog.pg_type")


def test_readable_catalogs_are_no_finding():
    assert catalog_privilege_findings("authenticator", []) == []


def test_missing_authenticator_role_is_a_config_finding():
    finding = role_missing_finding("authenticator")
    assert finding.cause == "role_missing" and not finding.blocks_reload


def test_dropped_exposed_schema_is_named_with_its_create():
    (finding,) = missing_schema_findings(["api"])
    assert finding.cause == "missing_schema" and "CREATE SCHEMA api" in finding.fix
    assert missing_schema_findings([]) == []


# -- locks ----------------------------------------------------------------------------------------
WAIT = {
    "waiter": 11,
    "blocker": 22,
    "application_name": "migrate",
    "usename": "owner",
    "query": "ALTER TABLE orders ADD COLUMN secret text DEFAULT 'x'",
    "held_s": 42.4,
    "relations": "public.orders",
}


def test_lock_wait_names_the_blocker_its_application_and_the_cancel():
    (finding,) = lock_wait_findings([WAIT])
    assert finding.cause == "lock_wait" and finding.blocks_reload
    assert "PostgREST backend 11 waits for a lock held by PID 22 (migrate, user owner) on public.orders for 42 s" in (
        finding.evidence
    )
    assert "ALTER TABLE orders …" in finding.evidence and "'x'" not in finding.evidence
    assert "pg_cancel_backend(22)" in finding.fix


def test_lock_wait_without_stats_says_the_duration_is_hidden():
    (finding,) = lock_wait_findings([{**WAIT, "held_s": None, "application_name": "", "query": None}])
    assert "(duration hidden without pg_read_all_stats)" in finding.evidence
    assert "no application_name" in finding.evidence and "grant the monitoring role" in finding.evidence


def test_at_most_three_lock_findings_are_told():
    assert len(lock_wait_findings([WAIT] * 5)) == 3
    held = {"pid": 7, "application_name": "migrate", "usename": "owner", "query": None, "held_s": 3.0, "relations": "x"}
    assert len(held_lock_findings([held] * 5)) == 3


def test_held_exclusive_lock_blocks_the_reload_before_anything_waits():
    held = {
        "pid": 7,
        "application_name": "migrate",
        "usename": "owner",
        "query": "LOCK x",
        "held_s": 3.0,
        "relations": "public.x",
    }
    (finding,) = held_lock_findings([held])
    assert finding.cause == "lock_held" and finding.blocks_reload
    assert "PID 7 (migrate, user owner) holds AccessExclusiveLock on public.x for 3 s" in finding.evidence


# -- connections ----------------------------------------------------------------------------------
def connections(use: ConnectionUse, *messages: str) -> list[Finding]:
    checks = [check(message=m, code="PGRST000", status=503) for m in messages] or [check()]
    return connection_findings(use, report(*checks), role="authenticator")


def test_role_near_its_connection_limit_warns_at_90_percent():
    (finding,) = connections(ConnectionUse(10, 9, 100, 9))
    assert finding.title == "authenticator is at its connection limit" and not finding.blocks_reload
    assert "CONNECTION LIMIT 20" in finding.fix


def test_role_at_its_connection_limit_blocks_the_reload():
    (finding,) = connections(ConnectionUse(10, 10, 100, 10))
    assert finding.blocks_reload


def test_role_without_a_limit_is_never_at_it():
    assert connections(ConnectionUse(-1, 500, 1000, 500)) == []
    assert connections(ConnectionUse(None, 500, 1000, 500)) == []


def test_postgrest_reporting_the_role_limit_blocks_even_when_our_sample_is_below():
    (finding,) = connections(ConnectionUse(10, 2, 100, 2), 'too many connections for role "authenticator"')
    assert finding.blocks_reload and "PostgREST reports 'too many connections for role'" in finding.evidence


def test_server_near_max_connections_is_found():
    (finding,) = connections(ConnectionUse(-1, 5, 100, 95))
    assert finding.title == "server is at max_connections" and not finding.blocks_reload


def test_postgrest_reporting_too_many_clients_blocks():
    (finding,) = connections(ConnectionUse(-1, 5, 100, 5), "FATAL: sorry, too many clients already")
    assert finding.title == "server is at max_connections" and finding.blocks_reload


# -- the listener ---------------------------------------------------------------------------------
def listener(**kw) -> ListenerStatus:
    fields = {"state": ListenerState.ABSENT, "listeners": 0, "postgrest_backends": 0, "detail": "none", **kw}
    return ListenerStatus(**fields)


def heard(status: ListenerStatus, rep: EnvReport | None = None) -> list[Finding]:
    return listener_findings(status, rep or report(), role="authenticator", channel="pgrst")


def test_a_present_or_unknown_listener_is_no_finding():
    assert heard(listener(state=ListenerState.PRESENT, listeners=1)) == []
    assert heard(listener(state=ListenerState.UNKNOWN)) == []


def test_pooled_sessions_that_do_not_listen_point_at_the_transaction_pooler():
    (finding,) = heard(listener(pooled_backends=2))
    assert finding.blocks_reload and "transaction pooler" in finding.evidence and "port 5432" in finding.fix


def test_connected_postgrest_that_does_not_listen_names_the_channel_and_who_listens():
    other = ListenerSession("psql", "alice", "10.0.0.2", postgrest=False)
    (finding,) = heard(listener(postgrest_backends=3, sessions=(other,)))
    assert "none of its sessions LISTENs" in finding.evidence
    assert "psql (user alice, from 10.0.0.2), not PostgREST" in finding.evidence
    assert "db-channel=pgrst" in finding.fix


def test_api_answering_without_a_session_here_suspects_the_dsn():
    (finding,) = heard(listener())
    assert "the API answers but no session of authenticator" in finding.evidence


def test_no_answer_and_no_session_means_postgrest_is_down():
    down = report(check(status=None, code=None, verdict=Verdict.POSTGREST_DOWN))
    (finding,) = heard(listener(), down)
    assert "PostgREST has no connection to the database" in finding.evidence


def test_only_the_admin_port_answering_is_not_an_api_that_answers():
    admin = check("ready", status=200, code=None, verdict=Verdict.HEALTHY, kind=CheckKind.READY)
    down = check(status=None, code=None, verdict=Verdict.POSTGREST_DOWN)
    (finding,) = heard(listener(), report(admin, down))
    assert "PostgREST has no connection to the database" in finding.evidence


# -- the notification queue -----------------------------------------------------------------------
def test_queue_below_half_full_is_fine():
    assert queue_findings(0.49) == []


def test_queue_half_full_warns_and_full_blocks():
    (warn,) = queue_findings(0.5)
    (full,) = queue_findings(0.995)
    assert not warn.blocks_reload and "= 50%" in warn.evidence and full.blocks_reload


# -- the order findings are told in ---------------------------------------------------------------
BLOCKER = Finding("lock_held", "lock", "e", "f", blocks_reload=True)
CAUSE = Finding("role_setting", "lock_timeout", "e", "f")
OBJECT = Finding("stale_object", "stale", "e", "f")


def test_blockers_come_before_the_objects_and_other_causes_after():
    assert order_findings([CAUSE, BLOCKER], [OBJECT], cache_down=False) == (BLOCKER, OBJECT, CAUSE)


def test_with_the_cache_down_every_cause_comes_first():
    assert order_findings([CAUSE, BLOCKER], [OBJECT], cache_down=True) == (CAUSE, BLOCKER, OBJECT)


def test_the_same_finding_for_two_checks_of_one_table_is_told_once():
    findings: list[Finding] = []
    add_finding(findings, OBJECT)
    add_finding(findings, Finding("stale_object", "stale", "other evidence", "f"))
    add_finding(findings, Finding("stale_object", "stale", "e", "another fix"))
    assert len(findings) == 2


# -- which object a check is about, and which column ----------------------------------------------
def test_pgrst204_of_12_0_names_the_column():
    c = check(code="PGRST204", message="Column 'verdict' of relation 'judgments' does not exist")
    assert columns_named(c, ["other"]) == ["verdict"]


def test_pgrst204_of_12_2_names_the_column():
    c = check(code="PGRST204", message="Could not find the 'verdict' column of 'judgments' in the schema cache")
    assert columns_named(c, ["other"]) == ["verdict"]


def test_42703_names_the_column_even_qualified():
    c = check(code="42703", message='column judgments."verdict" does not exist')
    assert columns_named(c, ["other"]) == ["verdict"]


def test_a_message_naming_no_column_falls_back_to_the_configured_ones():
    assert columns_named(check(code="PGRST204", message="something else"), ["a", "b"]) == ["a", "b"]


def test_stale_check_on_a_configured_table_is_looked_up_as_a_table():
    target = stale_target(check("cache:orders", kind=CheckKind.CACHE), ENV)
    assert target is not None and target.kind == "table" and target.probe.name == "orders"


def test_a_dropped_column_is_looked_up_as_a_column():
    target = stale_target(check("data:orders", code="42703", status=400), ENV)
    assert target is not None and target.kind == "column"


def test_a_healthy_or_unconfigured_check_is_not_looked_up():
    assert stale_target(check(verdict=Verdict.HEALTHY, code=None, status=200), ENV) is None
    assert stale_target(check("data:unknown"), ENV) is None


# -- what the catalog showed of the object --------------------------------------------------------
ORDERS = StaleTarget("table", ProbeTable(name="orders"))
ROLES = ["anon", "authenticated"]


def judge(c: CheckResult, state: ObjectState, *, stale: StaleTarget = ORDERS, columns=None):
    return judge_object(c, stale, state, columns, schema="public", roles=ROLES, env="prod", channel="pgrst")


def test_existing_usable_object_is_stale_with_the_reload_to_send():
    refined, finding = judge(check(), ObjectState(True, True, "public.orders"))
    assert refined.verdict is Verdict.STALE_SCHEMA_CACHE and finding.cause == "stale_object"
    assert "`/reload prod` (`NOTIFY pgrst, 'reload schema'`)" in finding.fix


def test_absent_object_is_missing_in_the_database():
    refined, finding = judge(check(), ObjectState(False, False, "public.orders"))
    assert refined.verdict is Verdict.MISSING_IN_DATABASE and finding.cause == "missing_in_database"
    assert "the API answered 404 PGRST205" in finding.evidence


def test_partition_is_not_served_and_names_its_parent():
    refined, finding = judge(check(), ObjectState(False, False, "public.orders_2026", partition_of="orders"))
    assert refined.verdict is Verdict.MISSING_IN_DATABASE and finding.cause == "partition_not_served"
    assert "probe (and query) orders instead" in finding.fix


def test_object_no_api_role_may_use_is_not_granted_with_the_grant():
    refined, finding = judge(check(), ObjectState(True, False, "public.orders"))
    assert refined.verdict is Verdict.NOT_GRANTED
    assert finding.fix.startswith("`GRANT SELECT ON public.orders TO anon, authenticated;`")


def test_missing_schema_usage_adds_the_usage_grant():
    _, finding = judge(check(), ObjectState(True, False, "public.orders", schema_usable=False))
    assert "USAGE on its schema" in finding.evidence
    assert finding.fix.startswith("`GRANT USAGE ON SCHEMA public TO anon, authenticated; GRANT SELECT")


def test_function_grant_is_execute():
    rpc = StaleTarget("function", ProbeTable(name="fresh"))
    _, finding = judge(check("rpc:fresh"), ObjectState(True, False, "public.fresh()"), stale=rpc)
    assert "GRANT EXECUTE ON FUNCTION public.fresh" in finding.fix


def test_permission_denied_on_a_column_granted_table_is_auth_limited_by_design():
    denied = check(code="42501", status=401, verdict=Verdict.UNEXPECTED)
    refined, finding = judge(denied, ObjectState(True, True, "public.orders", whole=False))
    assert refined.verdict is Verdict.HEALTHY and refined.auth_limited and finding.cause == "restricted_by_design"


def test_permission_denied_for_the_keys_role_only_is_auth_limited():
    denied = check(code="42501", status=401, verdict=Verdict.UNEXPECTED)
    refined, finding = judge(denied, ObjectState(True, True, "public.orders"))
    assert refined.verdict is Verdict.HEALTHY and refined.auth_limited and finding.cause == "key_role_not_granted"


JUDGMENTS = StaleTarget("column", ProbeTable(name="judgments", columns=["verdict"]))


def test_a_configured_column_absent_from_the_table_is_missing():
    refined, finding = judge(
        check(), ObjectState(True, True, "public.judgments"), stale=JUDGMENTS, columns={"id": True}
    )
    assert (
        refined.verdict is Verdict.MISSING_IN_DATABASE and "public.judgments.verdict does not exist" in finding.evidence
    )


def test_a_present_column_no_api_role_may_use_is_not_granted():
    state = ObjectState(True, True, "public.judgments")
    refined, _ = judge(check(), state, stale=JUDGMENTS, columns={"verdict": False})
    assert refined.verdict is Verdict.NOT_GRANTED


def test_a_present_usable_column_is_stale():
    state = ObjectState(True, True, "public.judgments")
    refined, finding = judge(check(), state, stale=JUDGMENTS, columns={"verdict": True})
    assert refined.verdict is Verdict.STALE_SCHEMA_CACHE and "public.judgments.verdict exists" in finding.evidence


def test_grant_quotes_identifiers_that_need_it():
    odd = StaleTarget("table", ProbeTable(name="OrderItems"))
    _, finding = judge_object(
        check(), odd, ObjectState(True, False, "OrderItems"), None, schema="public", roles=["web user"],
        env="prod", channel="pgrst",
    )  # fmt: skip
    assert finding.fix.startswith('`GRANT SELECT ON public."OrderItems" TO "web user";`')
