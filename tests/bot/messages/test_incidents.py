"""Incident rules without Discord: maintenance windows (time zones, DST), durations, flap detection, wording."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.config import ConfigError, MaintenanceWindow
from bot.core.incidents import FlapDetector, active_window, mttr_by_env, parse_duration
from bot.core.records import Incident
from bot.messages.alert import alert_buttons
from bot.messages.incidents import acknowledged_payload, incidents_embed
from tests.conftest import build_settings


def window(**kw):
    return MaintenanceWindow(**{"weekday": "sun", "start": "02:00", "duration_min": 90, **kw})


@pytest.mark.parametrize(
    ("at", "inside"),
    [
        (datetime(2026, 11, 22, 1, 59, tzinfo=UTC), True),  # Sunday 02:59 Paris (UTC+1): inside
        (datetime(2026, 11, 22, 0, 59, tzinfo=UTC), False),  # 01:59 Paris: before
        (datetime(2026, 11, 22, 1, 0, tzinfo=UTC), True),  # 02:00 Paris: starts
        (datetime(2026, 11, 22, 2, 29, tzinfo=UTC), True),  # 03:29 Paris
        (datetime(2026, 11, 22, 2, 30, tzinfo=UTC), False),  # 03:30 Paris: over
        (datetime(2026, 11, 21, 1, 30, tzinfo=UTC), False),  # Saturday
    ],
)
def test_maintenance_window_is_weekly_in_its_own_time_zone(at, inside):
    win = window(timezone="Europe/Paris")
    assert (active_window([win], at) is not None) is inside


def test_maintenance_window_follows_daylight_saving_time():
    win = window(timezone="Europe/Paris", start="12:00", duration_min=30)
    summer = datetime(2026, 7, 5, 10, 10, tzinfo=UTC)  # 12:10 CEST
    winter = datetime(2026, 12, 6, 11, 10, tzinfo=UTC)  # 12:10 CET
    assert active_window([win], summer) is not None and active_window([win], winter) is not None
    assert active_window([win], summer + timedelta(hours=1)) is None


def test_a_window_past_midnight_covers_the_next_day():
    win = window(weekday="sat", start="23:00", duration_min=180)
    found = active_window([win], datetime(2026, 11, 22, 1, 0, tzinfo=UTC))  # Sunday 01:00
    assert found is not None and found.ends == datetime(2026, 11, 22, 2, 0, tzinfo=UTC)


def test_maintenance_config_errors_name_the_key():
    base = {"rest_url": "http://localhost:3000"}
    with pytest.raises(ConfigError, match=r"maintenance\.0\.timezone: unknown time zone 'Mars/Base'"):
        build_settings(
            {
                "dev": {
                    **base,
                    "maintenance": [{"weekday": "sun", "start": "02:00", "duration_min": 5, "timezone": "Mars/Base"}],
                }
            }
        )
    with pytest.raises(ConfigError, match=r"maintenance\.0\.start: start must be HH:MM"):
        build_settings({"dev": {**base, "maintenance": [{"weekday": "sun", "start": "25:00", "duration_min": 5}]}})
    with pytest.raises(ConfigError, match=r"maintenance\.0\.weekday"):
        build_settings({"dev": {**base, "maintenance": [{"weekday": "someday", "start": "02:00", "duration_min": 5}]}})
    settings = build_settings({"dev": base}, incidents={"reminder_interval_s": 0})
    assert settings.incidents.reminder_interval_s == 0 and settings.incidents.store_path == "pgrst-ops.db"


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("2h", 7200), ("1h30m", 5400), ("1d", 86400)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "10", "0m", "5 parsecs"])
def test_bad_durations_say_what_is_accepted(text):
    with pytest.raises(ValueError, match=r"30m|more than 0"):
        parse_duration(text)


def test_flap_detector_counts_flips_in_the_window():
    detector = FlapDetector(flips=2, window_s=60)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for i, healthy in enumerate([True, False, True, False]):
        detector.record(healthy, t0 + timedelta(seconds=i))
    assert detector.count(t0 + timedelta(seconds=4)) == 3 and detector.flapping(t0 + timedelta(seconds=4))
    assert not detector.flapping(t0 + timedelta(seconds=62)) and not detector.stable(t0 + timedelta(seconds=62))
    assert detector.stable(t0 + timedelta(seconds=64))


def test_acknowledged_alert_shows_who_and_never_pings_again():
    payload = {
        "content": "<@&1> PostgREST PROD is down",
        "embeds": [{"title": "CRITICAL", "description": "Since …", "fields": [{"name": "Fix", "value": "x"}]}],
        "allowed_mentions": {"parse": [], "roles": ["1"]},
    }
    edited = acknowledged_payload(payload, "Bob", datetime(2026, 1, 1, tzinfo=UTC))
    assert edited["content"].startswith("Acknowledged by Bob") and edited["allowed_mentions"] == {"parse": []}
    assert edited["embeds"][0]["description"].startswith("Acknowledged by Bob, <t:1767225600:f>")
    assert alert_buttons(edited).acknowledged and not alert_buttons(payload).acknowledged
    assert payload["embeds"][0]["description"] == "Since …"  # the original is untouched


def test_incidents_embed_lists_durations_resolutions_and_mttr():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def incident(i, env, minutes, resolution):
        done = t0 + timedelta(minutes=minutes) if minutes is not None else None
        return Incident(
            i, env, t0, "schema_cache_unavailable", 503, "PGRST002", "monitor", resolved_at=done, resolution=resolution
        )

    items = [
        incident(3, "prod", None, None),
        incident(2, "prod", 10, "manual_reload"),
        incident(1, "dev", 4, "auto_recovered"),
    ]
    embed = incidents_embed(items, items, None, t0 + timedelta(minutes=30))
    assert "`#3` **PROD**" in embed["description"] and "❌ open for 30 min" in embed["description"]
    assert "✅ manual_reload after 10 min" in embed["description"] and "(503 PGRST002)" in embed["description"]
    assert [(f["name"], f["value"]) for f in embed["fields"]] == [
        ("MTTR 30 days · DEV", "4 min over 1 incident"),
        ("MTTR 30 days · PROD", "10 min over 1 incident"),
    ]
    assert mttr_by_env([]) == {}


def test_a_flapping_alert_offers_no_reload_and_keeps_who_acknowledged():
    from bot.messages.incidents import flapping_alert

    at = datetime(2026, 1, 1, tzinfo=UTC)
    flapping = flapping_alert("prod", 6, 900, at, alert_role_id=None)
    assert alert_buttons(flapping).retry is False  # a reload does not stop an environment going up and down
    taken = acknowledged_payload(flapping, "Bob", at)
    assert alert_buttons(taken).acknowledged and taken["embeds"][0]["description"].startswith("Acknowledged by Bob")
