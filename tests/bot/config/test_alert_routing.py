"""Per-environment alert routing in the config: alert_channel_id and alert_role, falling back to the global
discord.ops_channel_id / discord.alert_role_id, `none` for no ping (bot/config/environment.py, settings.py)."""

from __future__ import annotations

import io
import textwrap

import pytest

from bot.cli import main
from bot.config import AlertRoute, load_settings

OPS, PROD_CH, DEV_CH = 100000000000000001, 100000000000000002, 100000000000000003
ONCALL, ONCALL_PROD = 200000000000000001, 200000000000000002

CONFIG = f"""
environments:
  prod:
    rest_url: http://127.0.0.1:9/
    alert_channel_id: {PROD_CH}
    alert_role: {ONCALL_PROD}
  dev:
    rest_url: http://127.0.0.1:9/
    alert_channel_id: "{DEV_CH}"
    alert_role: none
  staging:
    rest_url: http://127.0.0.1:9/
  qa:
    rest_url: http://127.0.0.1:9/
    alert_role: oncall-qa
discord:
  ops_channel_id: {OPS}
  alert_role_id: {ONCALL}
"""


def write(tmp_path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_each_environment_routes_to_its_own_channel_and_role_else_the_global_ones(tmp_path):
    settings = load_settings(write(tmp_path, CONFIG))
    assert settings.alert_route("prod") == AlertRoute(PROD_CH, ONCALL_PROD)
    assert settings.alert_route("dev") == AlertRoute(DEV_CH, None)  # `none`: no ping, not the global role
    assert settings.alert_route("staging") == AlertRoute(OPS, ONCALL)  # nothing set: the global ones
    assert settings.alert_route("qa") == AlertRoute(OPS, "oncall-qa")  # a name, resolved by the bot at start
    assert settings.alert_route("qa").mention_id is None and settings.alert_route("prod").mention_id == ONCALL_PROD
    assert settings.own_alert_channels() == {"prod": PROD_CH, "dev": DEV_CH}


def test_no_global_role_and_no_own_role_means_no_ping(tmp_path):
    text = CONFIG.replace(f"  alert_role_id: {ONCALL}\n", "")
    settings = load_settings(write(tmp_path, text))
    assert settings.alert_route("staging") == AlertRoute(OPS, None)
    assert settings.alert_route("prod").mention_id == ONCALL_PROD


@pytest.mark.parametrize("spelling", ["none", "None", "NONE", "false", "no"])
def test_none_is_an_explicit_no_ping(tmp_path, spelling):
    text = CONFIG.replace(f"alert_role: {ONCALL_PROD}", f"alert_role: {spelling}")
    assert load_settings(write(tmp_path, text)).alert_route("prod") == AlertRoute(PROD_CH, None)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "alert_role: null",
            "environments.prod.alert_role: empty: write none for no ping, or leave the key out to ping "
            "discord.alert_role_id",
        ),
        ("alert_role:", "environments.prod.alert_role: empty: write none for no ping"),
        ("alert_role: '@oncall-prod'", "environments.prod.alert_role: write the role's id, or its name without '@'"),
        ("alert_role: 42", "environments.prod.alert_role: must be a Discord id (17-20 digits), got '42'"),
        ("alert_role: [a, b]", "environments.prod.alert_role: must be a Discord id"),
        ("alert_channel_id: 42", "environments.prod.alert_channel_id: must be a Discord id (17-20 digits), got '42'"),
        ("alert_channel_id: ops-prod", "environments.prod.alert_channel_id: must be a Discord id"),
        (
            "alert_channel_id: #ops-prod",
            "environments.prod.alert_channel_id: YAML reads '#...' as a comment, so the value is empty; give the "
            "channel's numeric id",
        ),
        ("alert_channel: 100000000000000002", "environments.prod.alert_channel: unknown key"),
    ],
)
def test_a_bad_routing_value_is_one_readable_error_naming_the_key_and_exit_2(tmp_path, line, expected):
    text = CONFIG.replace(f"    alert_role: {ONCALL_PROD}\n", "").replace(
        f"    alert_channel_id: {PROD_CH}\n", f"    {line}\n"
    )
    out, err = io.StringIO(), io.StringIO()
    code = main(["--config", str(write(tmp_path, text)), "check", "--env", "prod"], out=out, err=err)
    assert code == 2, (out.getvalue(), err.getvalue())
    message = err.getvalue().strip()
    assert expected in message and len(message.splitlines()) == 1, message


def test_the_example_config_routes_prod_on_its_own():
    settings = load_settings("config.example.yaml")
    prod, dev = settings.environments["prod"], settings.environments["dev"]
    assert prod.alert_channel_id is not None and prod.alert_role is not None
    assert settings.alert_route("dev") == AlertRoute(settings.discord.ops_channel_id, None)
    assert dev.alert_role == "none"
