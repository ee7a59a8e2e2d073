"""The `metrics` section: off unless set, defaults, and one readable error naming the key."""

from __future__ import annotations

import pytest

from bot.config import ConfigError, parse_settings

BASE = {"environments": {"dev": {"rest_url": "http://localhost:3000"}}}


def test_off_unless_set_and_defaults_to_loopback_9464():
    assert parse_settings(BASE).metrics is None
    metrics = parse_settings({**BASE, "metrics": {}}).metrics
    assert metrics is not None and (metrics.host, metrics.port) == ("127.0.0.1", 9464)
    chosen = parse_settings({**BASE, "metrics": {"host": "0.0.0.0", "port": 0}}).metrics
    assert chosen is not None and (chosen.host, chosen.port) == ("0.0.0.0", 0)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"port": 70000}, "metrics.port: Input should be less than or equal to 65535"),
        ({"port": "9464"}, "metrics.port: expected a whole number, not text"),
        ({"host": "http://0.0.0.0:9464"}, "metrics.host: must be an IP address or a host name"),
        ({"host": ""}, "metrics.host:"),
        ({"prot": 9464}, "metrics.prot: unknown key"),
        (9464, "metrics: Input should be a valid dictionary"),
    ],
)
def test_a_wrong_value_names_the_key(section, message):
    with pytest.raises(ConfigError) as caught:
        parse_settings({**BASE, "metrics": section})
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert caught.value.key is not None and caught.value.key.startswith("metrics")
