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


ONCALL_PROD_A = 300000000000000009


def routed(**prod):
    envs = {"dev": {"rest_url": "http://dev", "alert_role": "none"}, "prod": {"rest_url": "http://prod", **prod}}
    return build_settings(envs, discord={"guild_ids": [GUILD_A], "alert_role_id": "oncall"})


ROLES_A = {GUILD_A: [*ROLES[GUILD_A], GuildRole(ONCALL_PROD_A, "oncall-prod")]}


def test_an_environment_alert_role_resolves_in_its_channel_guild_and_none_pings_nobody():
    roles = resolve_roles(routed(alert_role="oncall-prod"), ROLES_A, alert_guild_id=GUILD_A)
    assert roles.alert == ONCALL_A
    assert roles.env_alert == {"dev": None, "prod": ONCALL_PROD_A}
    # an environment with only its own channel pings the global role, as an id of that channel's guild
    roles = resolve_roles(routed(), ROLES_A, GUILD_A, env_channel_guilds={"prod": GUILD_A})
    assert roles.env_alert == {"dev": None, "prod": ONCALL_A}


def test_a_look_alike_alert_role_name_stops_the_start_naming_the_environment_key():
    look_alike = {GUILD_A: [*ROLES_A[GUILD_A], GuildRole(999999999999999999, "oncall-prod")]}
    with pytest.raises(ConfigError) as err:
        resolve_roles(routed(alert_role="oncall-prod"), look_alike, GUILD_A)
    assert str(err.value) == (
        f"environments.prod.alert_role: 2 roles are named 'oncall-prod' in guild {GUILD_A} "
        f"({ONCALL_PROD_A}, 999999999999999999); use the id"
    )
    with pytest.raises(ConfigError, match=r"^environments\.prod\.alert_role: no role named 'oncall-night'"):
        resolve_roles(routed(alert_role="oncall-night"), ROLES_A, GUILD_A)


def test_an_alert_role_of_another_server_than_the_alert_channel_is_refused():
    settings = build_settings(
        {"prod": {"rest_url": "http://prod", "alert_role": ONCALL_B}}, discord={"guild_ids": [GUILD_A, GUILD_B]}
    )
    with pytest.raises(ConfigError) as err:
        resolve_roles(settings, ROLES, GUILD_A, env_channel_guilds={"prod": GUILD_A})
    assert str(err.value).startswith(
        f"environments.prod.alert_role: role {ONCALL_B} is not in guild {GUILD_A}, where the alert channel of prod is"
    )
    # the same id where the channel is in its server is fine
    assert resolve_roles(settings, ROLES, GUILD_A, env_channel_guilds={"prod": GUILD_B}).env_alert == {"prod": ONCALL_B}
