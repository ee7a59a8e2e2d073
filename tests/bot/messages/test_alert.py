"""The CRITICAL alert payload stays within Discord's limits and pings only the alert role."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.core.classify import CheckKind
from bot.core.incidents import RECOVERED_BY_ITSELF
from bot.core.project import ProjectState, ServiceHealth, refine
from bot.core.report import CheckResult, summarise
from bot.core.verdicts import Verdict
from bot.messages.alert import (
    ALERT_CHARS_MAX,
    ALERT_FIELDS_MAX,
    FACTS,
    AlertButtons,
    alert_buttons,
    build_critical_alert,
    build_resolved_alert,
    outgoing,
    payload_chars,
)
from bot.messages.incidents import acknowledged_payload
from scripts import message_samples
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


def critical(scenario: str) -> dict[str, Any]:
    inputs = message_samples.scenarios()[scenario]
    return build_critical_alert(
        "prod",
        message_samples.env_config(),
        inputs["report"],
        result=inputs["result"],
        diagnosis=inputs["diagnosis"],
        since=message_samples.AT - timedelta(minutes=3),
        alert_role_id=77,
    )


def embed_size(embed: dict) -> int:
    size = len(embed.get("title", "")) + len(embed.get("description", "")) + len(embed["footer"]["text"])
    return size + sum(len(f["name"]) + len(f["value"]) for f in embed["fields"])


def test_alert_title_names_the_environment_and_what_is_wrong_and_pings_only_the_alert_role():
    settings = build_settings({"prod": {"rest_url": "http://h", "restart_url": "https://dash/restart"}})
    report = summarise("prod", [check(1)], datetime(2026, 1, 1, tzinfo=UTC), 12)
    payload = build_critical_alert("prod", settings.environments["prod"], report, alert_role_id=77)
    embed = payload["embeds"][0]
    assert embed["title"] == "CRITICAL · PROD: schema cache cannot load (PGRST002)"
    assert "url" not in embed  # the restart is offered once: the link button
    assert embed["description"].count("<t:1767225600:") == 2  # since: relative and absolute, once
    assert payload["allowed_mentions"] == {"parse": [], "roles": ["77"]}
    assert payload["content"].startswith("<@&77> PostgREST PROD is")
    assert not any("<@&" in f["value"] for f in embed["fields"])


@pytest.mark.parametrize("scenario", sorted(message_samples.scenarios()))
def test_every_critical_alert_fits_in_one_glance(scenario: str) -> None:
    payload = critical(scenario)
    (embed,) = payload["embeds"]
    assert len(embed["fields"]) <= ALERT_FIELDS_MAX and payload_chars(payload) <= ALERT_CHARS_MAX
    text = json.dumps(outgoing(payload), ensure_ascii=False)
    assert "restart" not in embed["description"].lower() or "cannot" in embed["description"].lower()
    assert "http" not in text  # no link in the text: the restart is the one link button
    for field in embed["fields"]:
        assert not any(mark in field["name"] for mark in ("🩺", "🛠", "🔥", "👀"))  # status marks only


def test_a_found_cause_says_its_fix_once_and_restart_as_the_fallback() -> None:
    payload = critical("PGRST002, cause found")
    embed = payload["embeds"][0]
    text = embed["description"] + "".join(f["name"] + f["value"] for f in embed["fields"])
    assert text.count("RESET statement_timeout") == 1
    assert text.lower().count("restart") == 1 and "If that does not help: restart the project" in text


def test_failing_checks_only_with_a_count_of_those_that_pass() -> None:
    embed = critical("stale, nobody listens (reload refused)")["embeds"][0]
    (checks,) = [f["value"] for f in embed["fields"] if f["name"] == "Failing checks"]
    assert checks.splitlines() == ["❌ Cache (orders): `404` · 38 ms", "✅ 4 other checks pass"]


@pytest.mark.parametrize(
    ("scenario", "retry"),
    [
        ("PGRST002, cause found", False),  # NOTIFY cannot fix PGRST002
        ("stale, nobody listens (reload refused)", False),  # nobody would hear it
        ("PostgREST down, no cause known", False),
    ],
)
def test_retry_reload_is_offered_only_where_a_reload_can_help(scenario: str, retry: bool) -> None:
    assert alert_buttons(critical(scenario)).retry is retry


def test_a_stale_cache_with_a_listener_offers_retry_reload() -> None:
    report = message_samples.stale()
    payload = build_critical_alert("prod", message_samples.env_config(), report)
    assert alert_buttons(payload) == AlertButtons(retry=True, acknowledged=False)


def test_the_private_facts_never_go_out() -> None:
    payload = critical("PGRST002, cause found")
    assert FACTS in payload and FACTS not in outgoing(payload) and outgoing(payload)["embeds"] == payload["embeds"]


def test_resolved_card_is_short_names_resolution_cause_and_who_acknowledged() -> None:
    alert = acknowledged_payload(critical("PGRST002, cause found"), "alice", message_samples.AT)
    started = message_samples.AT - timedelta(minutes=3)
    edited, line = build_resolved_alert(
        "prod", alert, started, started + timedelta(minutes=12), resolution=RECOVERED_BY_ITSELF, acknowledged_by="alice"
    )
    (embed,) = edited["embeds"]
    assert embed["title"] == "✅ RESOLVED · PROD: PostgREST healthy again" and not embed.get("fields")
    assert embed["description"].splitlines() == [
        "Down for 12 min (<t:1796180462:t> → <t:1796181182:t>)",
        "Resolution: recovered by itself",
        "Cause: statement_timeout too low for authenticator",
        "Acknowledged by alice",
    ]
    assert edited["content"] == "" and edited["allowed_mentions"] == {"parse": []}  # one resolved line: `line`
    assert line["content"] == "✅ PostgREST PROD resolved after 12 min (recovered by itself)."
    assert "ALTER" not in json.dumps(edited) and "❌" not in json.dumps(edited)


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
    assert any(f["name"] == "Failing checks" for f in embed["fields"])


def test_console_shows_discord_timestamps_in_utc():
    from bot.messages.console_text import payload_text

    text = payload_text({"content": "down since <t:1700000000:R>", "embeds": [{"description": "at <t:1700000060>"}]})
    assert text == "down since 2023-11-14 22:13:20 UTC\nat 2023-11-14 22:14:20 UTC"


def test_the_supabase_line_is_one_field_and_the_alert_still_fits() -> None:
    long_error = "connection to server at 10.0.0.1 failed: " + "timeout expired " * 30
    project = ProjectState(
        "abcdefghijklmnopqrst",
        "ACTIVE_UNHEALTHY",
        (
            ServiceHealth("rest", False, "UNHEALTHY", long_error),
            ServiceHealth("db", False, "UNHEALTHY", long_error),
            ServiceHealth("pooler", True, "ACTIVE_HEALTHY"),
        ),
        error="service health unknown: " + long_error,
    )
    for scenario in message_samples.scenarios():  # the largest alerts there are, each with the line added
        inputs = message_samples.scenarios()[scenario]
        without = build_critical_alert(
            "prod",
            message_samples.env_config(),
            inputs["report"],
            result=inputs["result"],
            diagnosis=inputs["diagnosis"],
        )
        payload = build_critical_alert(
            "prod",
            message_samples.env_config(),
            inputs["report"],
            result=inputs["result"],
            diagnosis=inputs["diagnosis"],
            project=project,
        )
        (embed,) = payload["embeds"]
        assert len(embed["fields"]) == len(without["embeds"][0]["fields"]) + 1 <= ALERT_FIELDS_MAX
        assert payload_chars(payload) <= ALERT_CHARS_MAX
        (line,) = [f["value"] for f in embed["fields"] if f["name"] == "Supabase"]
        assert line.startswith("❌ Supabase project ACTIVE_UNHEALTHY · ❌ rest UNHEALTHY · ❌ db UNHEALTHY · ✅ pooler")
        assert "\n" not in line


def test_a_paused_project_is_restored_not_restarted() -> None:
    project = ProjectState("abcdefghijklmnopqrst", "INACTIVE")
    report = refine(message_samples.down(), project)
    assert report.verdict == "project_paused"
    payload = build_critical_alert("prod", message_samples.env_config(), report, project=project)
    (steps,) = [f["value"] for f in payload["embeds"][0]["fields"] if f["name"] == "Next steps"]
    assert steps.splitlines()[0].startswith("1. Restore the project")
    assert "POST /v1/projects/abcdefghijklmnopqrst/restore" in steps and "restart" not in steps.lower()
    assert payload["content"] == "PostgREST PROD is down: the Supabase project is paused, restore it"
