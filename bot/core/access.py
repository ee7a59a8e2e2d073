"""Who may do what: the configured roles as ids, resolved once at start in every configured guild.

Pure (no Discord): the bot fetches each guild's roles and hands them here. A role given by name must match
exactly one role in every configured guild (Discord allows duplicate names, so a name alone proves nothing
later); a role given by id must exist in one of them. Anything else stops the start with the key named.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bot.config import NO_PING, ConfigError, Settings


@dataclass(frozen=True)
class GuildRole:
    id: int
    name: str


@dataclass(frozen=True)
class RoleIds:
    """The role ids each check accepts (a name resolves to one id per guild)."""

    ops: frozenset[int]
    reload: Mapping[str, frozenset[int]] = field(default_factory=dict)  # per environment; absent = ops
    alert: int | None = None  # the role pinged in alerts (in the ops channel's guild)
    # Per environment with its own alert channel or role: the role its alerts ping there (None: no ping).
    env_alert: Mapping[str, int | None] = field(default_factory=dict)

    def for_reload(self, env: str | None) -> frozenset[int]:
        return self.reload.get(env or "", self.ops)


def _resolve(key: str, ref: int | str, guild_roles: Mapping[int, Sequence[GuildRole]]) -> dict[int, int]:
    """{guild id: role id} for one configured role, or ConfigError naming the key."""
    if isinstance(ref, int):
        for guild_id, roles in guild_roles.items():
            if any(role.id == ref for role in roles):
                return {guild_id: ref}
        guilds = ", ".join(str(g) for g in guild_roles)
        raise ConfigError(f"{key}: no role with id {ref} in the configured guilds ({guilds})")
    found: dict[int, int] = {}
    for guild_id, roles in guild_roles.items():
        matches = [role.id for role in roles if role.name == ref]
        if not matches:
            raise ConfigError(f"{key}: no role named {ref!r} in guild {guild_id}; use the role's id")
        if len(matches) > 1:
            ids = ", ".join(str(m) for m in matches)
            raise ConfigError(f"{key}: {len(matches)} roles are named {ref!r} in guild {guild_id} ({ids}); use the id")
        found[guild_id] = matches[0]
    return found


def _env_alert_role(
    settings: Settings, name: str, guild_roles: Mapping[int, Sequence[GuildRole]], channel_guild_id: int | None
) -> int | None:
    """The role an environment's alerts ping, as an id of its alert channel's guild (a role of another server
    would show as an unknown role and ping nobody); ConfigError naming the key."""
    own = settings.environments[name].alert_role
    key, ref = (
        (f"environments.{name}.alert_role", own)
        if own is not None
        else ("discord.alert_role_id", settings.discord.alert_role_id)
    )
    if ref is None or ref == NO_PING:
        return None
    by_guild = _resolve(key, ref, guild_roles)
    if channel_guild_id is None:
        return next(iter(by_guild.values()))
    if channel_guild_id not in by_guild:
        raise ConfigError(
            f"{key}: role {ref} is not in guild {channel_guild_id}, where the alert channel of {name} is; "
            f"set environments.{name}.alert_role to a role of that server"
        )
    return by_guild[channel_guild_id]


def resolve_roles(
    settings: Settings,
    guild_roles: Mapping[int, Sequence[GuildRole]],
    alert_guild_id: int | None = None,
    env_channel_guilds: Mapping[str, int] | None = None,
) -> RoleIds:
    """Every role of the config as ids; `alert_guild_id` is the ops channel's guild (default: the first),
    `env_channel_guilds` the guild of each environment's own alert channel."""
    discord = settings.discord
    ops = _resolve("discord.ops_role", discord.ops_role, guild_roles)
    reload = {
        name: frozenset(_resolve(f"environments.{name}.reload_role", env.reload_role, guild_roles).values())
        for name, env in settings.environments.items()
        if env.reload_role is not None
    }
    alert: int | None = None
    if discord.alert_role_id is not None:
        by_guild = _resolve("discord.alert_role_id", discord.alert_role_id, guild_roles)
        alert = by_guild.get(alert_guild_id or 0) or next(iter(by_guild.values()))
    env_channel_guilds = env_channel_guilds or {}
    env_alert = {
        name: _env_alert_role(settings, name, guild_roles, env_channel_guilds.get(name, alert_guild_id))
        for name, env in settings.environments.items()
        if env.alert_role is not None or name in env_channel_guilds
    }
    return RoleIds(frozenset(ops.values()), reload, alert, env_alert)
