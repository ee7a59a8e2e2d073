"""/status: all environments from the monitor's memory (no fresh probe), and the bot's own health."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import discord
from discord import app_commands
from discord.ext import commands

from bot.chat.bot import PgrstOpsBot
from bot.chat.checks import configured_guild, services
from bot.core.records import AUDIT_INTERRUPTED, AuditEntry
from bot.messages.alert import FIELD_VALUE_MAX, FIELDS_MAX, fit_embed, truncate
from bot.messages.embeds import status_embed
from bot.ops.monitor import open_summary

INTERRUPTED_SHOWN_FOR = timedelta(days=1)  # an interrupted action is news for a day, then it is in the audit


def interrupted_line(entry: AuditEntry) -> str:
    return f"🛑 {entry.actor} · {entry.env or '—'} · {entry.outcome} · <t:{int(entry.at.timestamp())}:R>"


class Status(commands.Cog):
    @app_commands.command(name="status", description="What the monitor knows: verdicts, since when, reloads, alerts")
    @app_commands.guild_only()
    @configured_guild
    async def status(self, interaction: discord.Interaction) -> None:
        svc = services(interaction)
        monitor = svc.monitor
        if monitor is None:
            await interaction.response.send_message("⏳ The monitor has not started yet; try /health.", ephemeral=True)
            return
        embed = status_embed(
            list(monitor.states.values()),
            monitor.health,
            monitor_alive=monitor.alive,
            reloads_in_window={name: svc.operator.reloads_in_window(name) for name in svc.targets},
        )
        incidents = open_summary(monitor)
        if incidents:  # the open incident per environment (and silences), on top of the per-env fields
            field = {"name": "Open incidents", "value": truncate("\n".join(incidents), FIELD_VALUE_MAX)}
            embed = fit_embed({**embed, "fields": [field, *embed.get("fields", [])][:FIELDS_MAX]})
        since = datetime.now(UTC) - INTERRUPTED_SHOWN_FOR
        interrupted = await svc.guard(lambda s: s.audit_log(5, status=AUDIT_INTERRUPTED, since=since)) or []
        if interrupted:  # an action a stop cut short (after a restart: what may need a look)
            field = {
                "name": "Interrupted actions",
                "value": truncate("\n".join(map(interrupted_line, interrupted)), FIELD_VALUE_MAX),
            }
            embed = fit_embed({**embed, "fields": [field, *embed.get("fields", [])][:FIELDS_MAX]})
        await interaction.response.send_message(embed=discord.Embed.from_dict(embed))


async def setup(bot: PgrstOpsBot) -> None:
    await bot.add_cog(Status())
