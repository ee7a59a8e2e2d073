"""Incidents from Discord: the CRITICAL alert's buttons, /incidents, /silence and /unsilence.

The buttons are bot.chat.views.IncidentButton (the incident id is in the custom id, the rest in the store), so
they work after the bot restarts. They apply the checks of the command each stands for (bot.chat.checks):
Acknowledge and Silence 1h those of /silence (ops role), Retry reload and Restart project those of /reload
and /restart (the environment's reload role).
"""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.chat.bot import PgrstOpsBot
from bot.chat.checks import (
    answered_unknown,
    configured_guild,
    has_ops_role,
    may_reload,
    ops_only,
    passes,
    per_environment,
    services,
)
from bot.chat.views import IncidentButton
from bot.messages import replies
from bot.messages.incidents import incidents_embed
from bot.ops.facade import Interrupted
from cogs.restart import BUTTON, open_restart


def who(interaction: discord.Interaction) -> str:
    return interaction.user.display_name


class AlertButton(IncidentButton):
    """A click on an alert's button: the command's checks, then the action through the facade."""

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        """Exactly the checks of the command the button stands for (before anything is looked up)."""
        if self.action in ("retry", "restart"):
            env = services(interaction).incident_env(self.incident_id)
            what = "Retry reload" if self.action == "retry" else "Restart project"
            return await passes(interaction, lambda i: may_reload(i, env, what))
        label = "Acknowledge" if self.action == "ack" else "Silence 1h"
        return await passes(interaction, lambda i: has_ops_role(i, label))

    async def callback(self, interaction: discord.Interaction) -> None:
        ops = services(interaction)
        alert_env = ops.incident_env(self.incident_id)
        if alert_env is None:
            await interaction.response.send_message(replies.already_resolved(self.incident_id), ephemeral=True)
            return
        if self.action == "restart":  # answered with the modal (reason, confirmation), nothing deferred
            await open_restart(interaction, alert_env, BUTTON)
            return
        if self.action == "retry" and ops.targets[alert_env].config.protected:
            await interaction.response.send_message(replies.protected_retry(alert_env), ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)  # the store and Discord may take a moment
        if self.action == "ack":
            text = await ops.acknowledge(self.incident_id, who(interaction))
        elif self.action == "silence":
            duration = ops.settings.incidents.silence_button_s
            reason = f"Silence button on incident #{self.incident_id}"
            silence = await ops.silence(alert_env, duration, reason, who(interaction))
            text = replies.silenced_by_button(alert_env, duration, silence.until)
        else:
            result = await ops.retry(self.incident_id, alert_env, who(interaction))
            if isinstance(result, Interrupted):
                text = replies.retry_interrupted(alert_env, result.how)
            else:
                text = replies.retry_outcome(alert_env, result)
        await interaction.followup.send(text, ephemeral=True)


class Incidents(commands.Cog):
    @app_commands.command(name="incidents", description="Recent incidents: duration, resolution, MTTR per environment")
    @app_commands.describe(env="Only this environment (default: all)", limit="How many (default 10, at most 25)")
    @per_environment(configured_guild)
    async def incidents(
        self, interaction: discord.Interaction, env: str | None = None, limit: app_commands.Range[int, 1, 25] = 10
    ) -> None:
        if await answered_unknown(interaction, env):
            return
        ops = services(interaction)
        problem = ops.store_problem()
        if problem is not None:
            await interaction.response.send_message(replies.no_incident_log(problem), ephemeral=True)
            return
        await interaction.response.defer(thinking=True)
        log = await ops.incidents(env, limit)
        if log is None:
            await interaction.followup.send(replies.store_failed(ops.guard.error))
            return
        embed = incidents_embed(log.recent, log.month, env, log.now, ops.settings.alert_routes())
        await interaction.followup.send(embed=discord.Embed.from_dict(embed))

    @app_commands.command(name="silence", description="Hold alerts for an environment (probes go on)")
    @app_commands.describe(env="Environment", duration="e.g. 30m, 2h, 1h30m", reason="Why (shown to everyone)")
    @per_environment(ops_only)
    async def silence(
        self,
        interaction: discord.Interaction,
        env: str,
        duration: str,
        reason: app_commands.Range[str, 3, 200],
    ) -> None:
        if await answered_unknown(interaction, env):
            return
        ops = services(interaction)
        try:
            seconds = ops.silence_length(duration)
        except ValueError as err:
            await interaction.response.send_message(f"⚠️ {err}.", ephemeral=True)
            return
        longest = ops.settings.incidents.max_silence_s
        if seconds > longest:
            await interaction.response.send_message(replies.silence_too_long(longest), ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        silence = await ops.silence(env, seconds, reason.strip(), who(interaction))
        await interaction.followup.send(replies.silenced(env, silence.until), ephemeral=True)

    @app_commands.command(name="unsilence", description="End a silence: alerts for the environment are live again")
    @app_commands.describe(env="Environment")
    @per_environment(ops_only)
    async def unsilence(self, interaction: discord.Interaction, env: str) -> None:
        if await answered_unknown(interaction, env):
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        ended = await services(interaction).unsilence(env, who(interaction))
        await interaction.followup.send(replies.unsilenced(env, ended), ephemeral=True)


async def setup(bot: PgrstOpsBot) -> None:
    bot.add_dynamic_items(AlertButton)
    await bot.add_cog(Incidents())
