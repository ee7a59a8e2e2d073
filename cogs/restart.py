"""Restart a Supabase project from Discord: the alert's Restart project button and `/restart env`.

Both need the environment's reload role (else the ops role), in a configured guild, and open the same modal:
a reason (audited, shown on the alert) and, on a protected environment, its name typed to confirm. The restart
is then sent once and followed (bot/ops/restart.py); the alert shows each phase, /restart's answer too.
"""

from __future__ import annotations

import contextlib

import discord
from discord import app_commands
from discord.ext import commands

from bot.chat.bot import PgrstOpsBot
from bot.chat.checks import (
    answered_unknown,
    may_reload,
    passes,
    per_environment,
    reload_allowed,
    services,
)
from bot.core.restart import Phase, Progress
from bot.messages.restart import (
    REASON_MAX,
    restart_finished,
    restart_interrupted,
    restart_line,
    restart_refused,
    restart_started,
)
from bot.ops.facade import Interrupted

BUTTON, COMMAND = "Restart button", "/restart"


class RestartModal(discord.ui.Modal):
    """Reason (and the environment's name on a protected one), then the restart; checked again on submit."""

    def __init__(self, env: str, *, protected: bool, via: str, timeout: float) -> None:
        super().__init__(title=f"Restart the {env.upper()} project?"[:45], timeout=timeout)
        self.env, self.via = env, via
        self.reason: discord.ui.TextInput[RestartModal] = discord.ui.TextInput(
            label="Reason (audit log and alert)",
            custom_id="reason",
            placeholder="e.g. schema cache stale, nobody listens to NOTIFY",
            min_length=3,
            max_length=REASON_MAX,
        )
        self.add_item(self.reason)
        self.confirm: discord.ui.TextInput[RestartModal] | None = None
        if protected:
            self.confirm = discord.ui.TextInput(
                label=f"Protected: type {env} to confirm"[:45], custom_id="confirm", max_length=32
            )
            self.add_item(self.confirm)

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return await passes(interaction, lambda i: may_reload(i, self.env, "Restart project"))

    async def on_submit(self, interaction: discord.Interaction) -> None:
        ops = services(interaction)
        who, reason = interaction.user.display_name, self.reason.value.strip()
        in_channel = self.via == COMMAND  # /restart answers for everyone; the button answers the clicker
        await interaction.response.defer(ephemeral=not in_channel, thinking=True)

        async def on_progress(progress: Progress) -> None:
            with contextlib.suppress(discord.HTTPException):
                if in_channel:
                    await interaction.edit_original_response(content=restart_line(progress, who, reason))
                elif progress.phase is Phase.SENT:
                    await interaction.followup.send(restart_started(self.env), ephemeral=True)

        result = await ops.restarts.restart(
            self.env,
            who,
            self.via,
            reason,
            confirmed_name=self.confirm.value if self.confirm is not None else None,
            on_progress=on_progress,
        )
        if isinstance(result, str):
            text = restart_refused(self.env, result)
        elif isinstance(result, Interrupted):
            text = restart_interrupted(self.env)
        else:
            text = restart_finished(self.env, result)
        with contextlib.suppress(discord.HTTPException):
            if in_channel:
                line = restart_line(result, who, reason) if isinstance(result, Progress) else None
                await interaction.edit_original_response(content="\n".join(filter(None, [line, text])))
            else:
                await interaction.followup.send(text, ephemeral=True)


async def open_restart(interaction: discord.Interaction, env: str, via: str) -> None:
    """The modal, or why there is nothing to restart (no project token: the link on the alert stays)."""
    ops = services(interaction)
    if not ops.restarts.can_restart(env):
        why = "no Supabase project with an access token is configured for it; use the dashboard"
        await interaction.response.send_message(restart_refused(env, why), ephemeral=True)
        return
    timeout = ops.settings.discord.confirm_timeout_s
    protected = ops.targets[env].config.protected
    await interaction.response.send_modal(RestartModal(env, protected=protected, via=via, timeout=timeout))


class Restart(commands.Cog):
    @app_commands.command(name="restart", description="Restart the environment's Supabase project and follow it")
    @app_commands.describe(env="Environment whose Supabase project to restart")
    @per_environment(reload_allowed)
    async def restart(self, interaction: discord.Interaction, env: str) -> None:
        if await answered_unknown(interaction, env):
            return
        await open_restart(interaction, env, COMMAND)


async def setup(bot: PgrstOpsBot) -> None:
    await bot.add_cog(Restart())
