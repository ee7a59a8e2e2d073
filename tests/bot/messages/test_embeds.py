"""/status lines from the monitor's memory (pure: no Discord, no network)."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.core.classify import CheckKind
from bot.core.incident import EnvState, MonitorHealth
from bot.core.report import CheckResult, summarise
from bot.core.verdicts import Verdict
from bot.messages.embeds import status_embed


def check(kind: CheckKind, server: str | None, message: str | None = None) -> CheckResult:
    return CheckResult(
        name=str(kind),
        label=str(kind),
        kind=kind,
        method="GET",
        url="http://api/x",
        status=200,
        code=None,
        message=message,
        detail="200",
        retry_after=None,
        latency_ms=3.0,
        server=server,
        verdict=Verdict.HEALTHY,
        auth_limited=False,
    )


def state_with(server: str | None, *extra: CheckResult) -> EnvState:
    now = datetime.now(UTC)
    report = summarise("prod", [check(CheckKind.DATA, server), *extra], now, 4.0)
    return EnvState("prod", verdict=report.verdict, since=now, last_report=report)


def status_value(state: EnvState) -> str:
    embed = status_embed([state], MonitorHealth(), monitor_alive=True, reloads_in_window={})
    return str(embed["fields"][0]["value"])


def test_status_shows_the_postgrest_version_each_environment_reports():
    assert "· postgrest/14.1" in status_value(state_with("postgrest/14.1")).splitlines()[0]


def test_status_says_when_no_version_is_reported():
    assert "PostgREST version not reported" in status_value(state_with("cloudflare"))


def test_status_shows_the_admin_metrics_as_evidence_when_postgrest_has_them():
    metrics = check(CheckKind.METRICS, "postgrest/14.1", "schema cache loads 3 ok, 57 failed")
    assert "admin /metrics: schema cache loads 3 ok, 57 failed" in status_value(state_with("postgrest/14.1", metrics))
    assert "admin /metrics" not in status_value(state_with("postgrest/12.0.2", check(CheckKind.METRICS, None)))
