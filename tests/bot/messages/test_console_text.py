"""Console text: payloads and verdicts as plain text, one time format, colour only when asked for (pure)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from bot.core.report import summarise
from bot.messages.alert import build_critical_alert
from bot.messages.console_text import Palette, payload_text, plain, schedule_line, verdict_line
from tests.bot.messages.test_alert import check
from tests.conftest import build_settings

AT = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
TIME_TWICE = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC)\s*\(\1\)")


def test_markdown_becomes_plain_text():
    text = plain(
        "🔥 **CRITICAL**: run `ALTER ROLE authenticator RESET statement_timeout;` · see [the dashboard](https://d/x)"
        " or <https://d/y> <@&424242> __now__ *please* ~~old~~"
    )
    assert text == (
        "CRITICAL: run ALTER ROLE authenticator RESET statement_timeout; · see the dashboard (https://d/x)"
        " or https://d/y now please old"
    )


def test_a_time_is_shown_once_in_one_format():
    assert plain("since <t:1700000000:R> (2023-11-14 22:13:20 UTC)") == "since 2023-11-14 22:13:20 UTC"
    assert plain("since <t:1700000000:R> (<t:1700000000:f>), until <t:1700000060:t>") == (
        "since 2023-11-14 22:13:20 UTC, until 2023-11-14 22:14:20 UTC"
    )


def test_only_status_marks_stay():
    assert plain("✅ ok ❌ down ⚠️ slow 🩺 Cause 🛠️ Fix 🔕 muted 🚨 go") == "✅ ok ❌ down ⚠️ slow Cause Fix muted go"


def test_snake_case_names_survive():
    assert plain("stale_schema_cache and public.my_table_name") == "stale_schema_cache and public.my_table_name"


def test_the_real_alert_renders_without_markdown_and_loses_nothing():
    """Whatever fields the builder makes: each field's name and first line are in the text, no Markdown is."""
    settings = build_settings({"prod": {"rest_url": "http://h", "restart_url": "https://d/restart"}})
    report = summarise("prod", [check(1), check(2)], AT, 12)
    payload = build_critical_alert("prod", settings.environments["prod"], report)
    text = payload_text(payload)
    assert not re.search(r"\*\*|`|<t:\d+|<@&?\d+>", text), text
    assert not TIME_TWICE.search(text), text
    assert plain(payload["content"]) in text and "PROD" in text
    for embed in payload["embeds"]:
        for field in embed.get("fields", []):
            assert plain(field["name"]) in text
            assert plain(field["value"]).split("\n")[0] in text


def test_link_buttons_are_shown_as_label_and_address():
    payload = {"content": "x", "components": [{"type": 1, "components": [{"label": "Restart", "url": "https://r"}]}]}
    assert payload_text(payload) == "x\nRestart: https://r"


def test_colour_only_from_a_palette_that_has_it():
    line = verdict_line("prod", "healthy", "postgrest_down", "Connection **refused**", AT, Palette.plain())
    assert line == "2023-11-14 22:13:20 UTC  prod  ❌ postgrest_down (was healthy): Connection refused"
    coloured = verdict_line("prod", None, "healthy", "", AT, Palette())
    assert coloured == "2023-11-14 22:13:20 UTC  prod  \x1b[32m✅ healthy\x1b[0m"


def test_schedule_line_counts_right():
    assert schedule_line(2, 60) == "alerting after 2 consecutive failures (next check in 60 s)"
    assert schedule_line(1, 0.5) == "alerting after 1 consecutive failure (next check in 0.5 s)"
    with_liveness = "alerting after 2 consecutive failures (liveness check every 5 s, full probe every 60 s)"
    assert schedule_line(2, 60, 5) == with_liveness
    assert schedule_line(2, 5, 5) == "alerting after 2 consecutive failures (next check in 5 s)"
