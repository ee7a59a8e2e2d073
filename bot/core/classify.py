"""Turn one HTTP answer (or transport failure) into a verdict.

A pure function of (check kind, status, headers, body): rules key on PostgREST's `code` field, never on
message text, because the text changes between versions (see README: "How a real PostgREST answers").

Later PostgREST versions (hosted Supabase ran 14.x in 2026), from PostgREST's changelog and docs, covered by
table-driven tests (tests/bot/core/test_classify.py) since only 12.0.2 runs in the tests:
- 12.0.3: a refused media type answers 406 instead of 415 (still PGRST107);
- 12.2: admin `/live` and `/ready` answer 500 for a failure, 503 while recovering (loading, reconnecting);
  admin `/metrics` (Prometheus text) counts schema cache loads by status and the pool's state;
- 13.0: a table missing from the cache answers 404 PGRST205 (12.x: `{}` on OPTIONS/POST, 200 on GET), and
  every error carries `Proxy-Status: PostgREST; error=<code>`, also where there is no body (HEAD).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from bot.core.verdicts import Verdict


class CheckKind(StrEnum):
    ROOT = "root"  # GET / : the service answers
    DATA = "data"  # GET /<table>?limit=1 : the runbook's data check
    CACHE = "cache"  # OPTIONS /<table> : 404 {} while the table is missing from the cache
    RPC = "rpc"  # GET /rpc/<fn>?<args>= with an unproducible Accept: 404 PGRST202 while missing from the cache
    COLUMNS = "columns"  # POST /<table>?columns=... with [] : PGRST204 while a column is missing
    LIVE = "live"  # admin /live
    READY = "ready"  # admin /ready
    METRICS = "metrics"  # admin /metrics (12.2+): evidence only, never a verdict of its own


# Checks on the admin port: they say nothing about what the API serves.
ADMIN_KINDS = frozenset({CheckKind.LIVE, CheckKind.READY, CheckKind.METRICS})


class TransportFailure(StrEnum):
    REFUSED = "refused"
    TIMEOUT = "timeout"
    DNS = "dns"
    PROTOCOL = "protocol"  # closed mid-answer, malformed HTTP
    UNDECODABLE = "undecodable"  # an answer whose body cannot be decoded (br, zstd, corrupt gzip)
    OTHER = "other"


@dataclass(frozen=True)
class Classification:
    verdict: Verdict
    code: str | None
    message: str | None
    detail: str  # one short line for people: "503 PGRST002 Could not query the database ..."
    auth_limited: bool = False


DB_UNREACHABLE_CODES = frozenset({"PGRST000", "PGRST001", "PGRST003", "57P01", "57P03", "53300", "08006"})
# Codes a reload fixes: the cache lacks (or still has) an object the database has changed.
STALE_CODES = frozenset({"PGRST200", "PGRST202", "PGRST204", "PGRST205", "42703", "42883"})
JWT_CODES = frozenset({"PGRST300", "PGRST301", "PGRST302", "PGRST303"})
GATEWAY_KEY_MESSAGES = ("invalid api key", "no api key found", "invalid jwt", "jwt expired")
MESSAGE_LIMIT = 160
_PROXY_STATUS = re.compile(r'(?i)^\s*postgrest\s*;(?:.*;)?\s*error\s*=\s*"?([A-Za-z0-9]{1,16})"?\s*(?:;|$)')
_METRIC_LINE = re.compile(r"^(pgrst_[a-z_]+)(?:\{([^}]*)\})?\s+([-+0-9.eE]+|NaN)\s*$")
METRICS_LINE_LIMIT = 2000


def proxy_status_code(headers: Mapping[str, str]) -> str | None:
    """The code of `Proxy-Status: PostgREST; error=<code>` (PostgREST 13+, RFC 9209); keys are lower-case.

    A gateway in front may add its own member to the list: only PostgREST's counts.
    """
    for member in headers.get("proxy-status", "")[:1000].split(","):
        match = _PROXY_STATUS.match(member)
        if match:
            return match.group(1)
    return None


@dataclass(frozen=True)
class PostgrestMetrics:
    """What admin /metrics says about the schema cache and the pool (None: not in the document)."""

    loads_ok: int | None = None
    loads_failed: int | None = None
    last_query_s: float | None = None
    pool_timeouts: int | None = None
    pool_available: int | None = None
    pool_waiting: int | None = None
    pool_max: int | None = None

    def describe(self) -> str:
        parts = []
        if self.loads_ok is not None or self.loads_failed is not None:
            parts.append(f"schema cache loads {self.loads_ok or 0} ok, {self.loads_failed or 0} failed")
        if self.last_query_s is not None:
            parts.append(f"last schema query {self.last_query_s * 1000:.0f} ms")
        if self.pool_available is not None and self.pool_max is not None:
            parts.append(f"pool {self.pool_available}/{self.pool_max} free, {self.pool_waiting or 0} waiting")
        if self.pool_timeouts:
            parts.append(f"{self.pool_timeouts} pool timeouts")
        return "; ".join(parts) or "no PostgREST metrics in the document"


def parse_metrics(text: str) -> PostgrestMetrics:
    """PostgREST's Prometheus text, bounded to its first METRICS_LINE_LIMIT lines; unknown lines are ignored.

    `pgrst_schema_cache_loads_total` has a `status` label (SUCCESS | FAIL) in later 12.2 releases and none in
    the first ones (then every load counted is a success).
    """
    values: dict[str, float] = {}
    for line in text.splitlines()[:METRICS_LINE_LIMIT]:
        match = _METRIC_LINE.match(line.strip())
        if not match:
            continue
        name, labels, raw = match.groups()
        try:
            value = float(raw)
        except ValueError:
            continue
        if name == "pgrst_schema_cache_loads_total":
            name += ":FAIL" if 'status="FAIL"' in (labels or "") else ":SUCCESS"
        values[name] = values.get(name, 0.0) + value if name.endswith(("SUCCESS", "FAIL")) else value

    def count(key: str) -> int | None:
        return int(values[key]) if key in values and values[key] == values[key] else None

    query_time = values.get("pgrst_schema_cache_query_time_seconds")
    return PostgrestMetrics(
        loads_ok=count("pgrst_schema_cache_loads_total:SUCCESS"),
        loads_failed=count("pgrst_schema_cache_loads_total:FAIL"),
        last_query_s=query_time if query_time is not None and query_time == query_time else None,
        pool_timeouts=count("pgrst_db_pool_timeouts_total"),
        pool_available=count("pgrst_db_pool_available"),
        pool_waiting=count("pgrst_db_pool_waiting"),
        pool_max=count("pgrst_db_pool_max"),
    )


def _parse_json(body: bytes) -> object | None:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _looks_html(headers: Mapping[str, str], body: bytes) -> bool:
    ctype = headers.get("content-type", "").lower()
    head = body[:200].lstrip().lower()
    return "text/html" in ctype or head.startswith((b"<!doctype", b"<html"))


def _short(text: object) -> str | None:
    if text is None:
        return None
    value = " ".join(str(text).split())
    return value if len(value) <= MESSAGE_LIMIT else value[: MESSAGE_LIMIT - 1] + "…"


def _encoding_shown(content_encoding: str) -> str:
    """The server's Content-Encoding, cut and stripped to what such a header holds: it goes into messages."""
    shown = "".join(c for c in content_encoding[:40] if c.isascii() and (c.isalnum() or c in ",._- "))
    return shown.strip() or "none"


def classify_transport_failure(
    kind: CheckKind, failure: TransportFailure, seconds: float, *, content_encoding: str = ""
) -> Classification:
    """`content_encoding`: the answer's header, for UNDECODABLE (the only failure that had an answer)."""
    if kind is CheckKind.METRICS:
        # Evidence only: /live and /ready on the same port already say what an unreachable admin port means.
        return Classification(Verdict.HEALTHY, None, None, f"metrics not read ({failure})")
    if failure is TransportFailure.REFUSED:
        return Classification(Verdict.POSTGREST_DOWN, None, None, "connection refused")
    if failure is TransportFailure.TIMEOUT:
        return Classification(Verdict.TIMEOUT, None, None, f"no answer within {seconds:g} s")
    if failure is TransportFailure.DNS:
        return Classification(Verdict.UNEXPECTED, None, None, "host name does not resolve")
    if failure is TransportFailure.PROTOCOL:
        return Classification(Verdict.UNEXPECTED, None, None, "connection closed mid-answer (truncated)")
    if failure is TransportFailure.UNDECODABLE:
        detail = f"response body could not be decoded (Content-Encoding: {_encoding_shown(content_encoding)})"
        return Classification(Verdict.UNEXPECTED, None, None, detail)
    return Classification(Verdict.UNEXPECTED, None, None, "network error")


def classify_response(
    kind: CheckKind,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    sent_key: bool,
    truncated: bool = False,
) -> Classification:
    """Classify one answer. `headers` keys are lower-case; `truncated` means the body hit our size cap."""
    if kind is CheckKind.METRICS:
        return _classify_metrics(status, body)
    parsed = None if truncated else _parse_json(body)
    code = message = None
    if isinstance(parsed, dict):
        raw_code = parsed.get("code")
        code = str(raw_code) if raw_code is not None else None
        message = _short(parsed.get("message") or parsed.get("msg") or parsed.get("error"))
        if code in DB_UNREACHABLE_CODES and parsed.get("details"):
            # "Database connection error" alone hides the cause; details carry e.g. "too many connections".
            message = _short(f"{message}: {parsed.get('details')}")
    # PostgREST 13+ names the code in a header too: the only place it is on HEAD answers and empty bodies.
    code = code or proxy_status_code(headers)

    def result(verdict: Verdict, detail: str, *, auth_limited: bool = False) -> Classification:
        parts = [str(status), code or "", detail or (message or "")]
        return Classification(verdict, code, message, " ".join(p for p in parts if p), auth_limited)

    # The runbook's rule: PGRST002 anywhere in the body means the cache cannot load, whatever the status.
    if code == "PGRST002" or (not truncated and b"PGRST002" in body):
        return result(Verdict.SCHEMA_CACHE_UNAVAILABLE, message or "schema cache cannot be loaded")
    if code in DB_UNREACHABLE_CODES:
        return result(Verdict.DATABASE_UNREACHABLE, message or "database unreachable")

    if kind in (CheckKind.LIVE, CheckKind.READY):
        if 200 <= status < 300:
            return result(Verdict.HEALTHY, "")
        if kind is CheckKind.READY and status == 503:
            # 12.2+: still loading or reconnecting (PostgREST retries by itself); before 12.2 also a failure.
            return result(
                Verdict.SCHEMA_CACHE_UNAVAILABLE,
                "not ready: schema cache or database connection still loading (or, before 12.2, failed)",
            )
        if kind is CheckKind.READY and status == 500:
            return result(
                Verdict.SCHEMA_CACHE_UNAVAILABLE,
                "not ready: the schema cache or the database connection failed to load (12.2+ answers 500)",
            )
        return result(Verdict.UNEXPECTED, "admin endpoint answered an error")

    if status in (401, 403):
        lowered = (message or "").lower()
        key_problem = code in JWT_CODES or any(m in lowered for m in GATEWAY_KEY_MESSAGES)
        if code == "42501":
            # Missing grant (Supabase no longer auto-grants new tables): a permission problem, not the cache.
            # With a DSN the diagnosis tells whether another API role may use it (then only auth-limited).
            return result(Verdict.NOT_GRANTED, "permission denied: the key's role has no grant on it")
        if sent_key and (key_problem or code is None):
            return result(Verdict.AUTH_REJECTED, message or "API key rejected")
        if not sent_key:
            return result(Verdict.HEALTHY, "no API key configured: probe is auth-limited", auth_limited=True)
        return result(Verdict.HEALTHY, message or "access denied: probe is auth-limited", auth_limited=True)

    if code == "PGRST107" and kind in (CheckKind.RPC, CheckKind.COLUMNS):
        # Our probe's unproducible media type was refused after the cache lookup: the object is cached.
        return result(Verdict.HEALTHY, "")
    if truncated:
        if kind is CheckKind.ROOT and 200 <= status < 300:
            return result(Verdict.HEALTHY, "")  # the OpenAPI document is legitimately large
        return result(Verdict.UNEXPECTED, "response body too large")
    if _looks_html(headers, body):
        return result(Verdict.UNEXPECTED, "HTML page instead of a PostgREST answer (gateway or proxy error)")

    if 200 <= status < 300:
        if body.strip() and parsed is None:
            return result(Verdict.UNEXPECTED, "non-JSON body")
        return result(Verdict.HEALTHY, "")

    if code in STALE_CODES:
        return result(Verdict.STALE_SCHEMA_CACHE, message or "object not in the schema cache")
    if status == 404 and isinstance(parsed, dict) and not parsed and kind in (CheckKind.CACHE, CheckKind.COLUMNS):
        # PostgREST 12 answers OPTIONS/POST on a table missing from its cache with a bare `{}`.
        return result(Verdict.STALE_SCHEMA_CACHE, "table not in the schema cache")
    if code == "42P01":
        return result(
            Verdict.MISSING_IN_DATABASE, "table does not exist in the database (migration not applied or wrong name)"
        )
    if status == 429:
        return result(Verdict.UNEXPECTED, "rate limited by the gateway")
    if parsed is None and body.strip():
        return result(Verdict.UNEXPECTED, "non-JSON error body")
    if status >= 500:
        return result(Verdict.UNEXPECTED, message or "server error")
    return result(Verdict.UNEXPECTED, message or "unexpected status")


def _classify_metrics(status: int, body: bytes) -> Classification:
    """Admin /metrics: evidence for people (and the JSON), never a verdict; a 404 is a PostgREST before 12.2."""
    if status == 404:
        return Classification(Verdict.HEALTHY, None, None, "404 not available (PostgREST before 12.2)")
    if not 200 <= status < 300:
        return Classification(Verdict.HEALTHY, None, None, f"{status} metrics not readable")
    metrics = parse_metrics(body.decode("utf-8", errors="replace"))
    text = metrics.describe()
    return Classification(Verdict.HEALTHY, None, text, f"{status} {text}")
