"""Incidents from Discord: the CRITICAL alert's buttons, /incidents, /silence and /unsilence.

The buttons are DynamicItems (the incident id is in the custom id, the rest in the store), so they work
after the bot restarts. They apply the checks of the command each stands for (cogs.common): Acknowledge and
Silence 1h those of /silence (ops role), Retry reload those of /reload (the environment's reload role).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.chat.bot import PgrstOpsBot
from bot.chat.checks import (
    configured_guild,
    env_autocomplete,
    find_target,
    has_ops_role,
    may_reload,
    ops_only,
    passes,
    services,
    unknown_env,
)
from bot.core.incidents import parse_duration
from bot.core.recovery import Outcome, RecoveryStep, StepKind
from bot.messages.alert import format_duration
from bot.messages.incidents import incidents_embed


def who(interaction: discord.Interaction) -> str:
    return interaction.user.display_name


async def refused(interaction: discord.Interaction, env: str) -> bool:
    """Unknown environment: answer (ephemeral) and return True."""
    if find_target(interaction, env) is None:
        await interaction.response.send_message(unknown_env(interaction, env), ephemeral=True)
        return True
    return False


def incident_env(interaction: discord.Interaction, incident_id: int) -> str | None:
    """The environment whose open alert is this incident (None: resolved, or the monitor is not up)."""
    monitor = services(interaction).monitor
    if monitor is None:
        return None
    return next((s.name for s in monitor.states.values() if s.alert and s.alert.incident_id == incident_id), None)


class IncidentButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"pgrst:incident:(?P<action>ack|silence|retry):(?P<id>[0-9]{1,18})",
):
    def __init__(self, action: str, incident_id: int) -> None:
        super().__init__(discord.ui.Button(label=action, custom_id=f"pgrst:incident:{action}:{incident_id}"))
        self.action = action
        self.incident_id = incident_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> IncidentButton:
        return cls(match["action"], int(match["id"]))

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        """Exactly the checks of the command the button stands for (before anything is looked up)."""
        if self.action == "retry":
            env = incident_env(interaction, self.incident_id)
            return await passes(interaction, lambda i: may_reload(i, env, "Retry reload"))
        label = "Acknowledge" if self.action == "ack" else "Silence 1h"
        return await passes(interaction, lambda i: has_ops_role(i, label))

    async def callback(self, interaction: discord.Interaction) -> None:
        svc = services(interaction)
        monitor = svc.monitor
        if monitor is None:
            await interaction.response.send_message(
                "⏳ The monitor is starting; try again in a moment.", ephemeral=True
            )
            return
        alert_env = incident_env(interaction, self.incident_id)
        if alert_env is None:
            await interaction.response.send_message(
                f"Incident #{self.incident_id} is already resolved: nothing to do. `/incidents` shows it.",
                ephemeral=True,
            )
            return
        if self.action == "retry" and svc.targets[alert_env].config.protected:
            await interaction.response.send_message(
                f"⚠️ {alert_env.upper()} is protected: use `/reload {alert_env}`, which asks you to confirm first.",
                ephemeral=True,
            )
            return
        await interaction.response.defer(ephemeral=True, thinking=True)  # the store and Discord may take a moment
        if self.action == "ack":
            text = await monitor.acknowledge(self.incident_id, who(interaction))
        elif self.action == "silence":
            duration = svc.settings.incidents.silence_button_s
            reason = f"Silence button on incident #{self.incident_id}"
            silence = await monitor.silence(alert_env, duration, reason, who(interaction))
            text = (
                f"🔕 {alert_env.upper()} silenced for {format_duration(duration)} (until "
                f"<t:{int(silence.until.timestamp())}:t>). `/unsilence {alert_env}` ends it early."
            )
        else:
            text = await self._retry(interaction, alert_env)
        await interaction.followup.send(text, ephemeral=True)

    async def _retry(self, interaction: discord.Interaction, env: str) -> str:
        svc = services(interaction)
        monitor = svc.monitor
        assert monitor is not None
        actor = f"{who(interaction)} (Retry reload)"
        with svc.inflight.track(f"Retry reload of {env} by {who(interaction)}") as action:
            audit_id = await monitor.audit_begin(actor, "retry reload", env)

            def on_step(step: RecoveryStep) -> None:
                if step.kind is StepKind.NOTIFY:
                    action.notify_sent = True

            result = await action.until_interrupted(monitor.retry_reload(self.incident_id, actor, on_step))
            if result is None:
                await monitor.audit_end(audit_id, action.interruption, interrupted=True)
                return f"🛑 Retry reload of {env.upper()} {action.interruption}."
            await monitor.audit_end(audit_id, result if isinstance(result, str) else str(result.outcome))
        if isinstance(result, str):
            return result
        if result.outcome is Outcome.RECOVERED:
            return f"✅ Reload sent: {env.upper()} healthy after {result.time_to_healthy_ms:.0f} ms."
        if result.outcome is Outcome.ALREADY_HEALTHY:
            return f"✅ {env.upper()} is already healthy: no reload sent; the incident is resolved."
        return f"❌ The reload did not fix {env.upper()}: {result.reason}. Next: {result.report_after.next_step}"


class Incidents(commands.Cog):
    @app_commands.command(name="incidents", description="Recent incidents: duration, resolution, MTTR per environment")
    @app_commands.describe(env="Only this environment (default: all)", limit="How many (default 10, at most 25)")
    @app_commands.autocomplete(env=env_autocomplete)
    @app_commands.guild_only()
    @configured_guild
    async def incidents(
        self, interaction: discord.Interaction, env: str | None = None, limit: app_commands.Range[int, 1, 25] = 10
    ) -> None:
        if env is not None and find_target(interaction, env) is None:
            await interaction.response.send_message(unknown_env(interaction, env), ephemeral=True)
            return
        svc = services(interaction)
        store = svc.store
        if store is None:
            why = svc.guard.error or "the incident store is not open"
            await interaction.response.send_message(
                f"⚠️ No incident log: {why}. Check `incidents.store_path` in the config and the bot's log.",
                ephemeral=True,
            )
            return
        await interaction.response.defer(thinking=True)
        now = datetime.now(UTC)
        recent = await svc.guard(lambda s: s.recent_incidents(env, limit))
        month = await svc.guard(lambda s: s.resolved_since(now - timedelta(days=30)))
        if recent is None or month is None:
            await interaction.followup.send(f"⚠️ The incident store failed: {svc.guard.error}. Details in the log.")
            return
        embed = incidents_embed(recent, month, env, now)
        await interaction.followup.send(embed=discord.Embed.from_dict(embed))

    @app_commands.command(name="silence", description="Hold alerts for an environment (probes go on)")
    @app_commands.describe(env="Environment", duration="e.g. 30m, 2h, 1h30m", reason="Why (shown to everyone)")
    @app_commands.autocomplete(env=env_autocomplete)
    @app_commands.guild_only()
    @ops_only
    async def silence(
        self,
        interaction: discord.Interaction,
        env: str,
        duration: str,
        reason: app_commands.Range[str, 3, 200],
    ) -> None:
        if await refused(interaction, env):
            return
        svc = services(interaction)
        try:
            seconds = parse_duration(duration)
        except ValueError as err:
            await interaction.response.send_message(f"❓ {err}.", ephemeral=True)
            return
        longest = svc.settings.incidents.max_silence_s
        if seconds > longest:
            await interaction.response.send_message(
                f"❓ At most {format_duration(longest)}: a longer silence hides real outages. Use a shorter one.",
                ephemeral=True,
            )
            return
        if svc.monitor is None:
            await interaction.response.send_message("⏳ The monitor is starting; try again.", ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        silence = await svc.monitor.silence(env, seconds, reason.strip(), who(interaction))
        await interaction.followup.send(
            f"🔕 {env.upper()} silenced until <t:{int(silence.until.timestamp())}:f>. Alerts are held, probes go on; "
            f"the channel was told. `/unsilence {env}` ends it early.",
            ephemeral=True,
        )

    @app_commands.command(name="unsilence", description="End a silence: alerts for the environment are live again")
    @app_commands.describe(env="Environment")
    @app_commands.autocomplete(env=env_autocomplete)
    @app_commands.guild_only()
    @ops_only
    async def unsilence(self, interaction: discord.Interaction, env: str) -> None:
        if await refused(interaction, env):
            return
        svc = services(interaction)
        if svc.monitor is None:
            await interaction.response.send_message("⏳ The monitor is starting; try again.", ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        ended = await svc.monitor.unsilence(env, who(interaction))
        text = f"🔔 {env.upper()} unsilenced." if ended else f"{env.upper()} was not silenced: nothing to do."
        await interaction.followup.send(text, ephemeral=True)


async def setup(bot: PgrstOpsBot) -> None:
    bot.add_dynamic_items(IncidentButton)
    await bot.add_cog(Incidents())
