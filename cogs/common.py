"""Shared bits of the cogs: the services, environment autocompletion and lookup."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.config import Target

if TYPE_CHECKING:
    from bot.app import Services


def services(interaction: discord.Interaction) -> Services:
    return interaction.client.services  # type: ignore[attr-defined]


async def env_autocomplete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    names = sorted(services(interaction).targets)
    return [app_commands.Choice(name=n, value=n) for n in names if current.lower() in n.lower()][:25]


def has_role(user: discord.abc.User, role_name: str) -> bool:
    return any(role.name == role_name for role in getattr(user, "roles", []))


def find_target(interaction: discord.Interaction, env: str) -> Target | None:
    return services(interaction).targets.get(env)


def unknown_env(interaction: discord.Interaction, env: str) -> str:
    known = ", ".join(sorted(services(interaction).targets))
    return f"❓ Unknown environment `{env[:50]}`. Configured: {known}."
