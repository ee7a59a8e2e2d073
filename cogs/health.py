"""/health [env]: probe now, one embed line per environment, and a Re-check button that survives restarts."""

from __future__ import annotations

import re
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.chat.bot import PgrstOpsBot
from bot.chat.checks import (
    answered_unknown,
    configured_guild,
    in_configured_guild,
    passes,
    per_environment,
    services,
    unknown_env,
)
from bot.messages.embeds import health_embeds
from bot.ops.facade import ALL


async def probe_embeds(interaction: discord.Interaction, env: str | None) -> list[discord.Embed] | None:
    """Probe now (all environments, or one) as embeds; None: an unknown environment."""
    checked = await services(interaction).health(env)
    if checked is None:
        return None
    reports = [c.report for c in checked]
    diagnoses = {c.report.env: c.diagnosis for c in checked if c.diagnosis is not None}
    projects = {c.report.env: c.project for c in checked if c.project is not None}
    return [discord.Embed.from_dict(e) for e in health_embeds(reports, diagnoses, projects)]


def recheck_view(env: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(RecheckButton(env))
    return view


class RecheckButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"pgrst:recheck:(?P<env>[A-Za-z0-9_*-]{1,32})"
):
    """State lives in the custom id, so the button works after the bot restarts."""

    def __init__(self, env: str) -> None:
        super().__init__(
            discord.ui.Button(label="Re-check", style=discord.ButtonStyle.secondary, custom_id=f"pgrst:recheck:{env}")
        )
        self.env = env

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> RecheckButton:
        return cls(match["env"])

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return await passes(interaction, in_configured_guild)  # /health's checks

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()  # acknowledge at once; the probe may take seconds
        embeds = await probe_embeds(interaction, self.env)
        if embeds is None:
            await interaction.followup.send(unknown_env(interaction, self.env), ephemeral=True)
            return
        await interaction.edit_original_response(embeds=embeds, view=recheck_view(self.env))


class Health(commands.Cog):
    @app_commands.command(name="health", description="Probe PostgREST now: all environments, or one")
    @app_commands.describe(env="Environment to probe (default: all)")
    @per_environment(configured_guild)
    async def health(self, interaction: discord.Interaction, env: str | None = None) -> None:
        if await answered_unknown(interaction, env):
            return
        await interaction.response.defer(thinking=True)  # Discord's 3-second rule: acknowledge before any I/O
        embeds = await probe_embeds(interaction, env) or []
        await interaction.followup.send(embeds=embeds, view=recheck_view(env or ALL))


async def setup(bot: PgrstOpsBot) -> None:
    bot.add_dynamic_items(RecheckButton)
    await bot.add_cog(Health())
