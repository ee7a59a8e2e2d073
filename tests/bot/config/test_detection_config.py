"""The detection settings: defaults, bounds, and each environment's own pace."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.config import ConfigError, parse_settings
from bot.config.settings import MonitorConfig

ENV = {"rest_url": "http://api.example"}


def test_the_defaults_detect_in_seconds():
    mon = MonitorConfig()
    assert (mon.interval_s, mon.failure_threshold, mon.success_threshold) == (60, 2, 2)
    assert (mon.liveness_interval_s, mon.confirm_interval_s) == (5, 1)
    assert (mon.catalog_watch_s, mon.catalog_watch_grace_s) == (0.5, 0.1)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("liveness_interval_s", 0.5, "must be 0 (off) or at least 1 second"),
        ("catalog_watch_s", 0.05, "must be 0 (off) or at least 0.1 seconds"),
        ("catalog_watch_s", 601, "less than or equal to 600"),
        ("confirm_interval_s", 0.1, "greater than or equal to 0.2"),
        ("catalog_watch_grace_s", -1, "greater than or equal to 0"),
    ],
)
def test_out_of_bounds_values_are_refused(field, value, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        MonitorConfig(**{field: value})


def test_zero_turns_each_mechanism_off():
    mon = MonitorConfig(liveness_interval_s=0, catalog_watch_s=0)
    assert mon.liveness_interval_s == 0 and mon.catalog_watch_s == 0


def test_an_environment_sets_its_own_pace_or_turns_them_off():
    settings = parse_settings(
        {
            "environments": {
                "prod": {**ENV, "catalog_watch_s": 0, "liveness_interval_s": 10},
                "dev": ENV,
            }
        }
    )
    prod, dev = settings.environments["prod"], settings.environments["dev"]
    assert (prod.catalog_watch_s, prod.liveness_interval_s) == (0, 10)
    assert (dev.catalog_watch_s, dev.liveness_interval_s) == (None, None)  # the monitor section's
    with pytest.raises(ConfigError, match=r"environments\.prod\.catalog_watch_s: .*at least 0\.1 seconds"):
        parse_settings({"environments": {"prod": {**ENV, "catalog_watch_s": 0.01}}})
