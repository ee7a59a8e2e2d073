"""/status: all environments from the monitor's memory (no fresh probe), and the bot's own health."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.chat.bot import PgrstOpsBot
from bot.chat.checks import configured_guild, services
from bot.messages.embeds import status_embed
from bot.messages.replies import with_status_extras


class Status(commands.Cog):
    @app_commands.command(name="status", description="What the monitor knows: verdicts, since when, reloads, alerts")
    @app_commands.guild_only()
    @configured_guild
    async def status(self, interaction: discord.Interaction) -> None:
        ops = services(interaction)
        status = await ops.status()
        embed = status_embed(
            status.states,
            status.health,
            monitor_alive=status.alive,
            reloads_in_window=status.reloads_in_window,
            alert_routes=ops.settings.alert_routes(),
        )
        embed = with_status_extras(embed, status.open_incidents, status.interrupted)
        await interaction.response.send_message(embed=discord.Embed.from_dict(embed))


async def setup(bot: PgrstOpsBot) -> None:
    await bot.add_cog(Status())
