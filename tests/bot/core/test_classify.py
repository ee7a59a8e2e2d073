"""Every row of the shared behaviour notes on a real PostgREST 12 (and v13+ codes), classified."""

from __future__ import annotations

import json

import pytest

from bot.core.classify import (
    CheckKind,
    PostgrestMetrics,
    TransportFailure,
    classify_response,
    classify_transport_failure,
    parse_metrics,
    proxy_status_code,
)
from bot.core.verdicts import Verdict

JSON = {"content-type": "application/json; charset=utf-8", "server": "postgrest/12.0.2"}


def err(code: str | None, message: str = "m") -> bytes:
    return json.dumps({"code": code, "details": None, "hint": None, "message": message}).encode()


CASES = [
    # (situation, kind, status, headers, body, sent_key, expected verdict)
    ("healthy data", CheckKind.DATA, 200, JSON, b'[{"id":1}]', True, Verdict.HEALTHY),
    ("healthy empty table", CheckKind.DATA, 200, JSON, b"[]", True, Verdict.HEALTHY),
    ("healthy OPTIONS", CheckKind.CACHE, 200, {}, b"", True, Verdict.HEALTHY),
    ("healthy ready", CheckKind.READY, 200, {}, b"", False, Verdict.HEALTHY),
    ("new table: OPTIONS 404 {}", CheckKind.CACHE, 404, JSON, b"{}", True, Verdict.STALE_SCHEMA_CACHE),
    ("new table: POST 404 {}", CheckKind.COLUMNS, 404, JSON, b"{}", True, Verdict.STALE_SCHEMA_CACHE),
    ("new table v13+: PGRST205", CheckKind.CACHE, 404, JSON, err("PGRST205"), True, Verdict.STALE_SCHEMA_CACHE),
    ("embedding: PGRST200", CheckKind.DATA, 400, JSON, err("PGRST200"), True, Verdict.STALE_SCHEMA_CACHE),
    ("column added: PGRST204", CheckKind.COLUMNS, 400, JSON, err("PGRST204"), True, Verdict.STALE_SCHEMA_CACHE),
    ("column dropped: 42703", CheckKind.DATA, 400, JSON, err("42703"), True, Verdict.STALE_SCHEMA_CACHE),
    ("function created: PGRST202", CheckKind.RPC, 404, JSON, err("PGRST202"), True, Verdict.STALE_SCHEMA_CACHE),
    ("function dropped: 42883", CheckKind.RPC, 404, JSON, err("42883"), True, Verdict.STALE_SCHEMA_CACHE),
    ("genuinely absent table: GET 42P01", CheckKind.DATA, 404, JSON, err("42P01"), True, Verdict.MISSING_IN_DATABASE),
    (
        "PGRST002 on data",
        CheckKind.DATA,
        503,
        {**JSON, "retry-after": "0"},
        err("PGRST002"),
        True,
        Verdict.SCHEMA_CACHE_UNAVAILABLE,
    ),
    ("PGRST002 on root", CheckKind.ROOT, 503, JSON, err("PGRST002"), False, Verdict.SCHEMA_CACHE_UNAVAILABLE),
    (
        "PGRST002 in a 200 body (runbook rule)",
        CheckKind.DATA,
        200,
        JSON,
        b'[{"note":"PGRST002"}]',
        True,
        Verdict.SCHEMA_CACHE_UNAVAILABLE,
    ),
    ("ready 503 during PGRST002", CheckKind.READY, 503, {}, b"", False, Verdict.SCHEMA_CACHE_UNAVAILABLE),
    ("live 200 during PGRST002", CheckKind.LIVE, 200, {}, b"", False, Verdict.HEALTHY),
    (
        "PostgreSQL down: PGRST000",
        CheckKind.DATA,
        503,
        {**JSON, "retry-after": "4"},
        err("PGRST000"),
        True,
        Verdict.DATABASE_UNREACHABLE,
    ),
    ("pool: PGRST001", CheckKind.DATA, 503, JSON, err("PGRST001"), True, Verdict.DATABASE_UNREACHABLE),
    ("PGRST003 pool timeout", CheckKind.DATA, 504, JSON, err("PGRST003"), True, Verdict.DATABASE_UNREACHABLE),
    ("backends killed: 57P01", CheckKind.DATA, 503, JSON, err("57P01"), True, Verdict.DATABASE_UNREACHABLE),
    (
        "role connection limit",
        CheckKind.DATA,
        503,
        JSON,
        err("PGRST000", "too many connections for role"),
        True,
        Verdict.DATABASE_UNREACHABLE,
    ),
    (
        "bad JWT with our key",
        CheckKind.DATA,
        401,
        {**JSON, "www-authenticate": "Bearer"},
        err("PGRST301"),
        True,
        Verdict.AUTH_REJECTED,
    ),
    (
        "gateway Invalid API key",
        CheckKind.DATA,
        401,
        JSON,
        b'{"message":"Invalid API key"}',
        True,
        Verdict.AUTH_REJECTED,
    ),
    (
        "anonymous disabled, no key",
        CheckKind.DATA,
        401,
        JSON,
        err("PGRST302", "Anonymous access is disabled"),
        False,
        Verdict.HEALTHY,
    ),
    (
        "gateway no key, none sent",
        CheckKind.ROOT,
        401,
        JSON,
        b'{"message":"No API key found in request"}',
        False,
        Verdict.HEALTHY,
    ),
    (
        "ungranted table 42501",
        CheckKind.DATA,
        401,
        JSON,
        err("42501", "permission denied for table t"),
        True,
        Verdict.NOT_GRANTED,
    ),
    (
        "HTML gateway error",
        CheckKind.DATA,
        502,
        {"content-type": "text/html"},
        b"<html><body>Bad gateway</body></html>",
        True,
        Verdict.UNEXPECTED,
    ),
    (
        "HTML 200 from a proxy",
        CheckKind.DATA,
        200,
        {"content-type": "text/html"},
        b"<!DOCTYPE html><html></html>",
        True,
        Verdict.UNEXPECTED,
    ),
    ("non-JSON 200", CheckKind.DATA, 200, {"content-type": "text/plain"}, b"hello", True, Verdict.UNEXPECTED),
    ("other 5xx", CheckKind.DATA, 500, JSON, err("XX000"), True, Verdict.UNEXPECTED),
    ("rate limited", CheckKind.DATA, 429, JSON, b'{"message":"slow down"}', True, Verdict.UNEXPECTED),
    (
        "wrong URL 404 without code",
        CheckKind.ROOT,
        404,
        JSON,
        b'{"message":"no Route matched"}',
        True,
        Verdict.UNEXPECTED,
    ),
]


@pytest.mark.parametrize(
    ("kind", "status", "headers", "body", "sent_key", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_classify_response(kind, status, headers, body, sent_key, expected):
    assert classify_response(kind, status, headers, body, sent_key=sent_key).verdict is expected


def test_codes_are_read_from_the_body_whatever_the_status():
    result = classify_response(
        CheckKind.DATA, 503, JSON, err("PGRST002", "Could not query the database"), sent_key=True
    )
    assert result.code == "PGRST002"
    assert "PGRST002" in result.detail and "503" in result.detail


def test_401_without_a_key_is_healthy_but_auth_limited():
    result = classify_response(CheckKind.DATA, 401, JSON, err("PGRST302"), sent_key=False)
    assert result.verdict is Verdict.HEALTHY and result.auth_limited


def test_huge_body_is_unexpected_on_data_but_fine_on_the_openapi_root():
    assert (
        classify_response(CheckKind.DATA, 200, JSON, b"[", sent_key=True, truncated=True).verdict is Verdict.UNEXPECTED
    )
    assert classify_response(CheckKind.ROOT, 200, JSON, b"{", sent_key=True, truncated=True).verdict is Verdict.HEALTHY


def test_truncated_body_hides_nothing_from_pgrst002_rule():
    # A truncated body is not parsed; the status still makes it unexpected, never healthy.
    assert (
        classify_response(CheckKind.DATA, 503, JSON, b"x" * 10, sent_key=True, truncated=True).verdict
        is Verdict.UNEXPECTED
    )


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (TransportFailure.REFUSED, Verdict.POSTGREST_DOWN),
        (TransportFailure.TIMEOUT, Verdict.TIMEOUT),
        (TransportFailure.DNS, Verdict.UNEXPECTED),
        (TransportFailure.PROTOCOL, Verdict.UNEXPECTED),
    ],
)
def test_transport_failures(failure, expected):
    assert classify_transport_failure(CheckKind.DATA, failure, 5).verdict is expected


# ---------------------------------------------------------------------------------------------- newer PostgREST
# Only 12.0.2 runs in the tests; these rows are taken from PostgREST's changelog and docs (errors page, admin
# server, observability) for the versions hosted Supabase runs (14.x in 2026; upstream 16).
V14 = {"content-type": "application/json; charset=utf-8", "server": "postgrest/14.1"}


def proxy(code: str) -> dict[str, str]:
    return {**V14, "proxy-status": f"PostgREST; error={code}"}


NEWER_CASES = [
    # (situation, kind, status, headers, body, expected verdict, expected code)
    (
        "13+: table missing from the cache, GET",
        CheckKind.DATA,
        404,
        proxy("PGRST205"),
        err("PGRST205"),
        Verdict.STALE_SCHEMA_CACHE,
        "PGRST205",
    ),
    (
        "13+: table missing from the cache, OPTIONS",
        CheckKind.CACHE,
        404,
        proxy("PGRST205"),
        err("PGRST205"),
        Verdict.STALE_SCHEMA_CACHE,
        "PGRST205",
    ),
    (
        "13+: PGRST205 named only by Proxy-Status (HEAD, no body)",
        CheckKind.CACHE,
        404,
        proxy("PGRST205"),
        b"",
        Verdict.STALE_SCHEMA_CACHE,
        "PGRST205",
    ),
    (
        "13+: PGRST002 named only by Proxy-Status",
        CheckKind.DATA,
        503,
        {**proxy("PGRST002"), "retry-after": "0"},
        b"",
        Verdict.SCHEMA_CACHE_UNAVAILABLE,
        "PGRST002",
    ),
    (
        "13+: statement timeout named only by Proxy-Status",
        CheckKind.DATA,
        500,
        proxy("57014"),
        b"",
        Verdict.UNEXPECTED,
        "57014",
    ),
    (
        "13+: Proxy-Status with details (PostgREST#4637)",
        CheckKind.DATA,
        503,
        {**V14, "proxy-status": 'PostgREST; error=PGRST000; details="connection refused"'},
        b"",
        Verdict.DATABASE_UNREACHABLE,
        "PGRST000",
    ),
    (
        "13+: a gateway's own Proxy-Status member first",
        CheckKind.RPC,
        404,
        {**V14, "proxy-status": "cloudflare; error=http_response_incomplete, PostgREST; error=PGRST202"},
        b"",
        Verdict.STALE_SCHEMA_CACHE,
        "PGRST202",
    ),
    (
        "13+: the body's code wins over the header",
        CheckKind.DATA,
        400,
        proxy("PGRST100"),
        err("PGRST204"),
        Verdict.STALE_SCHEMA_CACHE,
        "PGRST204",
    ),
    (
        "13+: Proxy-Status of another proxy is not PostgREST's",
        CheckKind.DATA,
        502,
        {"proxy-status": "envoy; error=PGRST205"},
        b"",
        Verdict.UNEXPECTED,
        None,
    ),
    (
        "12.0.3+: refused media type is 406 PGRST107 (RPC cached)",
        CheckKind.RPC,
        406,
        proxy("PGRST107"),
        err("PGRST107"),
        Verdict.HEALTHY,
        "PGRST107",
    ),
    (
        "12.0.3+: refused media type is 406 PGRST107 (columns cached)",
        CheckKind.COLUMNS,
        406,
        proxy("PGRST107"),
        err("PGRST107"),
        Verdict.HEALTHY,
        "PGRST107",
    ),
    (
        "12.2+: /ready 500, the schema cache load failed",
        CheckKind.READY,
        500,
        {},
        b"",
        Verdict.SCHEMA_CACHE_UNAVAILABLE,
        None,
    ),
    (
        "12.2+: /ready 503, still loading or reconnecting",
        CheckKind.READY,
        503,
        {},
        b"",
        Verdict.SCHEMA_CACHE_UNAVAILABLE,
        None,
    ),
    ("12.2+: /live 500", CheckKind.LIVE, 500, {}, b"", Verdict.UNEXPECTED, None),
    (
        "12.0.2: /metrics does not exist (404)",
        CheckKind.METRICS,
        404,
        {"server": "postgrest/12.0.2"},
        b"",
        Verdict.HEALTHY,
        None,
    ),
    ("12.2+: /metrics answers an error", CheckKind.METRICS, 500, {}, b"", Verdict.HEALTHY, None),
]


@pytest.mark.parametrize(
    ("kind", "status", "headers", "body", "expected", "code"),
    [c[1:] for c in NEWER_CASES],
    ids=[c[0] for c in NEWER_CASES],
)
def test_newer_postgrest_answers(kind, status, headers, body, expected, code):
    result = classify_response(kind, status, headers, body, sent_key=True)
    assert (result.verdict, result.code) == (expected, code), result.detail


def test_ready_500_and_503_say_which_state_postgrest_is_in():
    failed = classify_response(CheckKind.READY, 500, {}, b"", sent_key=False)
    loading = classify_response(CheckKind.READY, 503, {}, b"", sent_key=False)
    assert "failed to load" in failed.detail and "still loading" in loading.detail


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("PostgREST; error=PGRST205", "PGRST205"),
        ("postgrest;error=42501", "42501"),
        ('PostgREST; error="PGRST002"', "PGRST002"),
        ("PostgREST", None),
        ("", None),
        ("PostgREST; error=" + "X" * 100, None),  # not a code
    ],
)
def test_proxy_status_code(value, code):
    assert proxy_status_code({"proxy-status": value}) == code


METRICS_12_2 = b"""# HELP pgrst_schema_cache_query_time_seconds The query time in seconds of the last schema cache load
# TYPE pgrst_schema_cache_query_time_seconds gauge
pgrst_schema_cache_query_time_seconds 1.5937927e-2
# HELP pgrst_schema_cache_loads_total The total number of times the schema cache was loaded
# TYPE pgrst_schema_cache_loads_total counter
pgrst_schema_cache_loads_total{status="FAIL"} 57.0
pgrst_schema_cache_loads_total{status="SUCCESS"} 3.0
# HELP pgrst_db_pool_timeouts_total The total number of pool connection timeouts
# TYPE pgrst_db_pool_timeouts_total counter
pgrst_db_pool_timeouts_total 7.0
pgrst_db_pool_available 0.0
pgrst_db_pool_waiting 4.0
pgrst_db_pool_max 10.0
pgrst_jwt_cache_requests_total 12.0
"""


def test_metrics_are_evidence_never_a_verdict():
    result = classify_response(CheckKind.METRICS, 200, {"content-type": "text/plain"}, METRICS_12_2, sent_key=False)
    assert result.verdict is Verdict.HEALTHY
    assert result.message == (
        "schema cache loads 3 ok, 57 failed; last schema query 16 ms; pool 0/10 free, 4 waiting; 7 pool timeouts"
    )


def test_metrics_without_the_status_label_count_successes():
    assert parse_metrics("pgrst_schema_cache_loads_total 2.0\n") == PostgrestMetrics(loads_ok=2)


def test_metrics_reading_is_bounded_and_ignores_what_it_does_not_know():
    text = "\n".join(["garbage {", "pgrst_db_pool_max NaN", "other_metric 1"] * 5000) + "\npgrst_db_pool_max 10\n"
    assert parse_metrics(text) == PostgrestMetrics()  # the line after the limit is not read
    assert parse_metrics("").describe() == "no PostgREST metrics in the document"


def test_unreachable_metrics_never_change_the_verdict():
    result = classify_transport_failure(CheckKind.METRICS, TransportFailure.REFUSED, 5)
    assert result.verdict is Verdict.HEALTHY and "not read" in result.detail


def test_an_undecodable_body_names_its_encoding_cut_and_cleaned():
    hostile = "br\n<@&123> " + "x" * 200
    cls = classify_transport_failure(CheckKind.DATA, TransportFailure.UNDECODABLE, 5, content_encoding=hostile)
    assert cls.verdict is Verdict.UNEXPECTED
    assert cls.detail == "response body could not be decoded (Content-Encoding: br123 " + "x" * 29 + ")"
    assert classify_transport_failure(CheckKind.DATA, TransportFailure.UNDECODABLE, 5).detail.endswith(
        "(Content-Encoding: none)"
    )
