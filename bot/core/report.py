"""What one probe saw: each check's result and the environment's report, reduced to one verdict (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.core.classify import (
    ADMIN_KINDS,
    CheckKind,
)
from bot.core.verdicts import Verdict, info, worst


@dataclass(frozen=True)
class CheckResult:
    name: str
    label: str
    kind: CheckKind
    method: str
    url: str  # never carries a secret: keys travel in headers
    status: int | None
    code: str | None
    message: str | None
    detail: str
    retry_after: str | None
    latency_ms: float
    server: str | None
    verdict: Verdict
    auth_limited: bool

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.HEALTHY

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "method": self.method,
            "url": self.url,
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "detail": self.detail,
            "retry_after": self.retry_after,
            "latency_ms": round(self.latency_ms, 1),
            "server": self.server,
            "verdict": str(self.verdict),
            "ok": self.ok,
            "auth_limited": self.auth_limited,
        }


@dataclass(frozen=True)
class EnvReport:
    env: str
    verdict: Verdict
    explanation: str
    next_step: str
    checks: tuple[CheckResult, ...]
    checked_at: datetime
    duration_ms: float
    auth_limited: bool
    server_version: str | None

    @property
    def healthy(self) -> bool:
        return self.verdict is Verdict.HEALTHY

    def to_json(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "healthy": self.healthy,
            "verdict": str(self.verdict),
            "explanation": self.explanation,
            "next_step": self.next_step,
            "auth_limited": self.auth_limited,
            "server_version": self.server_version,
            "checked_at": self.checked_at.isoformat(timespec="milliseconds"),
            "duration_ms": round(self.duration_ms, 1),
            "checks": [c.to_json() for c in self.checks],
        }


def summarise(name: str, checks: list[CheckResult], checked_at: datetime, duration_ms: float) -> EnvReport:
    verdict = worst([c.verdict for c in checks])
    # Refused on the admin port alone, with the API answering, is a config problem, not a dead PostgREST.
    main_answered = any(c.status is not None for c in checks if c.kind not in ADMIN_KINDS)
    if verdict is Verdict.POSTGREST_DOWN and main_answered:
        verdict = worst([c.verdict for c in checks if c.verdict is not Verdict.POSTGREST_DOWN] + [Verdict.UNEXPECTED])
    meta = info(verdict)
    # Quote the most telling check: one with an error code, on the API port rather than the admin port.
    failing = sorted(
        (c for c in checks if c.verdict is verdict),
        key=lambda c: (c.code is None, c.kind in ADMIN_KINDS),
    )
    explanation = meta.summary
    if failing and verdict is not Verdict.HEALTHY:
        explanation = f"{meta.summary} Seen: {failing[0].label} → {failing[0].detail.rstrip('.')}."
    auth_limited = any(c.auth_limited for c in checks)
    if verdict is Verdict.HEALTHY and auth_limited:
        explanation += (
            " (Auth-limited: some checks got 401/403, which proves PostgREST is up, not that data is readable.)"
        )
    servers = [c.server for c in checks if c.server and c.server.lower().startswith("postgrest")]
    return EnvReport(
        env=name,
        verdict=verdict,
        explanation=explanation,
        next_step=meta.next_step,
        checks=tuple(checks),
        checked_at=checked_at,
        duration_ms=duration_ms,
        auth_limited=auth_limited,
        server_version=servers[0] if servers else None,
    )


def unreachable(report: EnvReport | None) -> bool:
    """Failing without any HTTP answer at all: timeouts or refused/broken connections."""
    if report is None or report.healthy:
        return False
    return report.verdict in (Verdict.TIMEOUT, Verdict.POSTGREST_DOWN) and all(c.status is None for c in report.checks)
