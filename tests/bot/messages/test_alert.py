"""The CRITICAL alert payload stays within Discord's limits and pings only the alert role."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.core.classify import CheckKind
from bot.core.report import CheckResult, summarise
from bot.core.verdicts import Verdict
from bot.messages.alert import build_critical_alert
from tests.conftest import build_settings


def check(
    i: int, detail: str = "503 PGRST002 Could not query the database for the schema cache. Retrying."
) -> CheckResult:
    return CheckResult(
        name=f"data:t{i}",
        label=f"Data (table_{i:03d}_" + "x" * 40 + ")",
        kind=CheckKind.DATA,
        method="GET",
        url=f"http://h/t{i}",
        status=503,
        code="PGRST002",
        message="Could not query",
        detail=detail,
        retry_after="0",
        latency_ms=12.5,
        server="postgrest/12.0.2",
        verdict=Verdict.SCHEMA_CACHE_UNAVAILABLE,
        auth_limited=False,
    )


def embed_size(embed: dict) -> int:
    size = len(embed.get("title", "")) + len(embed.get("description", "")) + len(embed["footer"]["text"])
    return size + sum(len(f["name"]) + len(f["value"]) for f in embed["fields"])


def test_alert_names_environment_status_action_and_link():
    settings = build_settings({"prod": {"rest_url": "http://h", "restart_url": "https://dash/restart"}})
    report = summarise("prod", [check(1)], datetime(2026, 1, 1, tzinfo=UTC), 12)
    payload = build_critical_alert("prod", settings.environments["prod"], report, alert_role_id=77)
    embed = payload["embeds"][0]
    assert embed["title"] == "🔥 CRITICAL: PostgREST unhealthy" and embed["url"] == "https://dash/restart"
    assert "**Environment:** PROD" in embed["description"]
    assert "Action required:** Manual project restart" in embed["description"]
    assert "<t:1767225600:R>" in embed["description"]  # since when, as a Discord relative timestamp
    assert payload["allowed_mentions"] == {"parse": [], "roles": ["77"]}
    assert payload["content"].startswith("<@&77>")
    assert not any("<@&" in f["value"] for f in embed["fields"])


def test_alert_without_role_mentions_nobody():
    settings = build_settings({"prod": {"rest_url": "http://h"}})
    report = summarise("prod", [check(1)], datetime.now(UTC), 12)
    payload = build_critical_alert("prod", settings.environments["prod"], report)
    assert payload["allowed_mentions"] == {"parse": []} and "<@&" not in payload["content"]


def test_huge_reports_are_clipped_to_discord_limits():
    settings = build_settings({"prod": {"rest_url": "http://h", "dashboard_url": "https://d/" + "p" * 300}})
    report = summarise("prod", [check(i, "x" * 500) for i in range(200)], datetime.now(UTC), 12)
    embed = build_critical_alert("prod", settings.environments["prod"], report)["embeds"][0]
    assert len(embed["title"]) <= 256 and len(embed["description"]) <= 4096
    assert len(embed["fields"]) <= 25
    assert all(len(f["name"]) <= 256 and 0 < len(f["value"]) <= 1024 for f in embed["fields"])
    assert embed_size(embed) <= 6000
    assert any(f["name"] == "Last checks" for f in embed["fields"])


def test_console_shows_discord_timestamps_in_utc():
    from bot.messages.console_text import payload_text

    text = payload_text({"content": "down since <t:1700000000:R>", "embeds": [{"description": "at <t:1700000060>"}]})
    assert text == "down since 2023-11-14 22:13:20 UTC\nat 2023-11-14 22:14:20 UTC"
