"""Shared bits of the cogs: the services (bot.ops.facade.Ops), environment lookup, and the checks every command and button uses.

The checks are plain predicates (raising `Refusal`), used two ways, so a button applies exactly the checks
of the command it stands for:
- on commands through discord.py's `app_commands.check` (`configured_guild`, `ops_only`, `reload_allowed`);
- on buttons through `passes(interaction, predicate)`, which answers the refusal itself.
Roles are compared by id (resolved at start, bot.core.access), in the guild the interaction came from, and only
in the configured guilds: never in DMs, never in another server.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bot.config import Target
from bot.core.access import RoleIds

if TYPE_CHECKING:
    from bot.ops.facade import Ops


def services(interaction: discord.Interaction) -> Ops:
    return interaction.client.services  # type: ignore[attr-defined]


class Refusal(app_commands.CheckFailure):
    """A check said no; the text is what the user sees (ephemeral), and it never carries environment data."""


NOT_IN_DMS = "❌ pgrst-ops answers only in its server, not in direct messages."
NOT_HERE = "❌ pgrst-ops does not answer in this server."
STOPPING = "pgrst-ops is shutting down; try again in a minute."


def in_configured_guild(interaction: discord.Interaction) -> bool:
    """From one of `discord.guild_ids`, and the bot is not stopping. Raises Refusal."""
    svc = services(interaction)
    if interaction.guild_id is None:
        raise Refusal(NOT_IN_DMS)
    if interaction.guild_id not in svc.settings.discord.guild_ids:
        raise Refusal(NOT_HERE)
    if svc.inflight.stopping:
        raise Refusal(STOPPING)
    return True


def role_ids(interaction: discord.Interaction) -> RoleIds:
    roles = services(interaction).roles
    if roles is None:  # resolved in setup_hook, before any interaction can arrive; fail closed regardless
        raise Refusal("pgrst-ops is starting; try again in a moment.")
    return roles


def _require_any_role(interaction: discord.Interaction, ids: Collection[int], what: str) -> bool:
    """The member holds one of the role ids *in this guild* (a look-alike name is another id)."""
    in_configured_guild(interaction)
    member = interaction.user
    if isinstance(member, discord.Member) and any(member.get_role(rid) is not None for rid in ids):
        return True
    guild = interaction.guild
    names = [role.name for rid in ids if guild and (role := guild.get_role(rid))] or [str(rid) for rid in ids]
    raise Refusal(f"❌ {what} needs the **{names[0]}** role. Ask someone with it; /status and /health show the state.")


def has_ops_role(interaction: discord.Interaction, what: str = "This") -> bool:
    return _require_any_role(interaction, role_ids(interaction).ops, what)


def may_reload(interaction: discord.Interaction, env: str | None, what: str | None = None) -> bool:
    """The environment's reload_role (else the ops role); an unknown environment needs the ops role."""
    known = env if env in services(interaction).targets else None
    return _require_any_role(interaction, role_ids(interaction).for_reload(known), what or f"/reload {env}")


# Decorators for app commands (each also needs @app_commands.guild_only(), so Discord hides it in DMs).
configured_guild = app_commands.check(in_configured_guild)
ops_only = app_commands.check(
    lambda interaction: has_ops_role(interaction, f"/{interaction.command.name if interaction.command else '?'}")
)
reload_allowed = app_commands.check(
    lambda interaction: may_reload(
        interaction,
        interaction.namespace.env,
        f"/{interaction.command.name if interaction.command else 'reload'} {interaction.namespace.env}",
    )
)


async def refuse(interaction: discord.Interaction, text: str) -> None:
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=True)
    else:
        await interaction.response.send_message(text, ephemeral=True)


async def passes(interaction: discord.Interaction, predicate: Callable[[discord.Interaction], bool]) -> bool:
    """A command's check applied to a button: True, or the refusal is answered and False."""
    try:
        return predicate(interaction)
    except Refusal as err:
        await refuse(interaction, str(err))
        return False


async def env_autocomplete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    try:
        in_configured_guild(interaction)
    except Refusal:
        return []  # not even the environment names outside the configured guilds
    names = sorted(services(interaction).targets)
    return [app_commands.Choice(name=n, value=n) for n in names if current.lower() in n.lower()][:25]


def find_target(interaction: discord.Interaction, env: str) -> Target | None:
    return services(interaction).targets.get(env)


def unknown_env(interaction: discord.Interaction, env: str) -> str:
    known = ", ".join(sorted(services(interaction).targets))
    return f"⚠️ Unknown environment `{env[:50]}`. Configured: {known}."


async def answered_unknown(interaction: discord.Interaction, env: str | None) -> bool:
    """An environment the config does not have: answered (ephemeral, naming the configured ones) and True."""
    if env is None or find_target(interaction, env) is not None:
        return False
    await interaction.response.send_message(unknown_env(interaction, env), ephemeral=True)
    return True


def per_environment(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A guild-only command with an `env` option autocompleted from the config, behind `check`."""

    def decorate(command: Any) -> Any:
        return app_commands.autocomplete(env=env_autocomplete)(app_commands.guild_only()(check(command)))

    return decorate
