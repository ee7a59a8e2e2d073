"""Roles and Discord ids in the config, and their resolution to ids at start (pure: no Discord)."""

from __future__ import annotations

import pytest

from bot.config import ConfigError
from bot.core.access import GuildRole, resolve_roles
from tests.conftest import build_settings

GUILD_A, GUILD_B = 111111111111111111, 222222222222222222
OPS_A, OPS_B, PROD_A, ONCALL_A, ONCALL_B = (300000000000000000 + n for n in range(5))
ROLES = {
    GUILD_A: [GuildRole(OPS_A, "ops"), GuildRole(PROD_A, "ops-prod"), GuildRole(ONCALL_A, "oncall")],
    GUILD_B: [GuildRole(OPS_B, "ops"), GuildRole(ONCALL_B, "oncall")],
}


def settings(**discord):
    envs = {"dev": {"rest_url": "http://dev"}, "prod": {"rest_url": "http://prod", "reload_role": PROD_A}}
    return build_settings(envs, discord={"guild_ids": [GUILD_A, GUILD_B], **discord})


def test_names_resolve_to_one_id_per_guild_and_ids_stay_ids():
    roles = resolve_roles(settings(ops_role="ops", alert_role_id="oncall"), ROLES, alert_guild_id=GUILD_B)
    assert roles.ops == {OPS_A, OPS_B}
    assert roles.for_reload("prod") == {PROD_A} and roles.for_reload("dev") == roles.ops
    assert roles.alert == ONCALL_B  # the ops channel's guild
    assert resolve_roles(settings(ops_role=str(OPS_A)), ROLES).ops == {OPS_A}


@pytest.mark.parametrize(
    ("discord", "guild_roles", "expected"),
    [
        (
            {"ops_role": "ops"},
            {**ROLES, GUILD_A: [*ROLES[GUILD_A], GuildRole(999999999999999999, "ops")]},
            f"discord.ops_role: 2 roles are named 'ops' in guild {GUILD_A} ({OPS_A}, 999999999999999999); use the id",
        ),
        ({"ops_role": "admins"}, ROLES, f"discord.ops_role: no role named 'admins' in guild {GUILD_A}"),
        ({"alert_role_id": "oncall"}, {**ROLES, GUILD_B: ROLES[GUILD_B][:1]}, "discord.alert_role_id: no role named"),
        ({"ops_role": 123456789012345678}, ROLES, "discord.ops_role: no role with id 123456789012345678"),
    ],
)
def test_a_role_that_is_not_exactly_one_role_stops_the_start_naming_the_key(discord, guild_roles, expected):
    with pytest.raises(ConfigError) as err:
        resolve_roles(settings(**discord), guild_roles)
    assert str(err.value).startswith(expected)


def test_an_environment_reload_role_name_is_resolved_too():
    envs = {"prod": {"rest_url": "http://prod", "reload_role": "ops-prod"}}
    only_a = {GUILD_A: ROLES[GUILD_A]}
    assert resolve_roles(build_settings(envs, discord={"guild_ids": [GUILD_A]}), only_a).reload == {"prod": {PROD_A}}
    with pytest.raises(ConfigError, match=r"^environments\.prod\.reload_role: no role named 'ops-prod' in guild 2"):
        resolve_roles(build_settings(envs, discord={"guild_ids": [GUILD_A, GUILD_B]}), ROLES)


@pytest.mark.parametrize(
    ("discord", "expected"),
    [
        ({"guild_ids": [-1]}, "discord.guild_ids.0: must be a Discord id (17-20 digits), got '-1'"),
        ({"guild_ids": [True]}, "discord.guild_ids.0: must be a Discord id (17-20 digits)"),
        ({"guild_ids": [GUILD_A, GUILD_A]}, "discord.guild_ids: a guild id is listed twice"),
        ({"ops_channel_id": 10**26}, "discord.ops_channel_id: must be a Discord id (17-20 digits)"),
        ({"alert_role_id": 42}, "discord.alert_role_id: must be a Discord id (17-20 digits), got '42'"),
        ({"ops_role": "@ops"}, "discord.ops_role: write the role's id, or its name without '@'"),
        ({"ops_role": ""}, "discord.ops_role: a role name has 1-100 characters"),
        ({"shutdown_grace_s": 3600}, "discord.shutdown_grace_s: Input should be less than or equal to 120"),
    ],
)
def test_discord_ids_are_snowflakes_and_roles_are_ids_or_plain_names(discord, expected):
    with pytest.raises(ConfigError) as err:
        build_settings({"dev": {"rest_url": "http://dev"}}, discord=discord)
    assert expected in str(err.value)


def test_the_bot_needs_guild_ids_but_the_config_alone_does_not():
    config = build_settings({"dev": {"rest_url": "http://dev"}})  # console mode: fine
    with pytest.raises(ConfigError, match=r"^discord\.guild_ids: required when the bot runs with a Discord token"):
        config.discord.require_guilds()
    assert (
        build_settings(
            {"dev": {"rest_url": "http://dev"}}, discord={"alert_role_id": "oncall"}
        ).discord.alert_mention_id
        is None
    )
