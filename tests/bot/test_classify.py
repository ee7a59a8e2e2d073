"""Every row of the shared behaviour notes on a real PostgREST 12 (and v13+ codes), classified."""

from __future__ import annotations

import json

import pytest

from bot.classify import CheckKind, TransportFailure, classify_response, classify_transport_failure
from bot.verdicts import Verdict

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
