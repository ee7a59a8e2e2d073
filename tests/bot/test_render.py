"""/status lines from the monitor's memory (pure: no Discord, no network)."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.classify import CheckKind
from bot.monitor import EnvState, MonitorHealth
from bot.probe import CheckResult, summarise
from bot.render import status_embed
from bot.verdicts import Verdict


def state_with(server: str | None) -> EnvState:
    check = CheckResult(
        name="data:t",
        label="Data (t)",
        kind=CheckKind.DATA,
        method="GET",
        url="http://api/t",
        status=200,
        code=None,
        message=None,
        detail="200",
        retry_after=None,
        latency_ms=3.0,
        server=server,
        verdict=Verdict.HEALTHY,
        auth_limited=False,
    )
    now = datetime.now(UTC)
    report = summarise("prod", [check], now, 4.0)
    return EnvState("prod", verdict=report.verdict, since=now, last_report=report)


def status_value(state: EnvState) -> str:
    embed = status_embed([state], MonitorHealth(), monitor_alive=True, reloads_in_window={})
    return str(embed["fields"][0]["value"])


def test_status_shows_the_postgrest_version_each_environment_reports():
    assert "· postgrest/14.1" in status_value(state_with("postgrest/14.1")).splitlines()[0]


def test_status_says_when_no_version_is_reported():
    assert "PostgREST version not reported" in status_value(state_with("cloudflare"))
