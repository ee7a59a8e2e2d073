"""/drift env: compare the database catalog with what PostgREST serves (the runbook's schema-sync check)."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.chat.bot import PgrstOpsBot
from bot.chat.checks import answered_unknown, configured_guild, per_environment, services
from bot.messages.embeds import drift_embed


class Drift(commands.Cog):
    @app_commands.command(name="drift", description="Compare the database with what PostgREST serves")
    @app_commands.describe(env="Environment to compare")
    @per_environment(configured_guild)
    async def drift(self, interaction: discord.Interaction, env: str) -> None:
        if await answered_unknown(interaction, env):
            return
        await interaction.response.defer(thinking=True)  # catalog + API reads can take seconds
        report = await services(interaction).drift(env)
        await interaction.followup.send(embed=discord.Embed.from_dict(drift_embed(report)))


async def setup(bot: PgrstOpsBot) -> None:
    await bot.add_cog(Drift())
