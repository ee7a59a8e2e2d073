"""/reload env: the environment's reload role (else the ops role), in a configured guild; protected environments
need the author's confirmation; progress is live, and a shutdown mid-reload leaves a final message saying so."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.chat.bot import PgrstOpsBot
from bot.chat.checks import (
    find_target,
    may_reload,
    passes,
    per_environment,
    reload_allowed,
    services,
    unknown_env,
)
from bot.messages.reload import reload_embed
from bot.messages.replies import reload_lines
from bot.ops.facade import Action, Interrupted, RecoveryStep

EDIT_EVERY_S = 0.5  # Discord rate-limits edits; progress need not be finer


class ConfirmView(discord.ui.View):
    """Confirm / Cancel that only the person who asked may click (with /reload's checks); times out to 'cancelled'."""

    def __init__(self, author_id: int, env: str, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self.author_id = author_id
        self.env = env
        self.confirmed: bool | None = None

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if not await passes(interaction, lambda i: may_reload(i, self.env)):
            return False
        if interaction.user.id == self.author_id:
            return True
        await interaction.response.send_message(
            "Only the person who asked for this reload can confirm it.", ephemeral=True
        )
        return False

    @discord.ui.button(label="Confirm reload", style=discord.ButtonStyle.danger)
    async def confirm(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        self.confirmed = True
        await interaction.response.edit_message(content=f"✅ Confirmed by {interaction.user.display_name}.", view=None)
        self.stop()

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.secondary)
    async def cancel(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        self.confirmed = False
        await interaction.response.edit_message(
            content=f"Cancelled by {interaction.user.display_name}. Nothing was sent.", embed=None, view=None
        )
        self.stop()


class Reload(commands.Cog):
    @app_commands.command(name="reload", description="Reload PostgREST's schema cache (NOTIFY) and re-check")
    @app_commands.describe(
        env="Environment to reload",
        force="Send the NOTIFY even if the pre-flight check says it would break the cache or not be heard",
    )
    @per_environment(reload_allowed)
    async def reload(self, interaction: discord.Interaction, env: str, force: bool = False) -> None:
        target = find_target(interaction, env)
        if target is None:
            await interaction.response.send_message(unknown_env(interaction, env), ephemeral=True)
            return
        with services(interaction).inflight.track(f"/reload {env} by {interaction.user.display_name}") as action:
            if target.config.protected or force:
                action.asking = True  # a stop does not wait for an answer
                if not await self._confirmed(interaction, env, force, action):
                    return
                action.asking = False
            else:
                await interaction.response.defer(thinking=True)
            await self._run(interaction, env, force, action)

    async def _confirmed(self, interaction: discord.Interaction, env: str, force: bool, action: Action) -> bool:
        timeout = services(interaction).settings.discord.confirm_timeout_s
        view = ConfirmView(interaction.user.id, env, timeout)
        question = (
            f"⚠️ **Force** a reload of **{env.upper()}**? The NOTIFY is sent even if the pre-flight check finds "
            "it would break the schema cache (e.g. a too-low statement_timeout) or not be heard."
            if force
            else f"⚠️ **{env.upper()}** is protected. Send `NOTIFY` to reload its schema cache?"
        )
        await interaction.response.send_message(f"{question} ({timeout:g} s to confirm)", view=view)
        timed_out = await action.until_interrupted(view.wait())
        if timed_out is None:  # the bot is stopping: the question ends, nothing was sent
            view.stop()
            with contextlib.suppress(discord.HTTPException):
                await interaction.edit_original_response(
                    content=f"⚠️ {action.interruption}: not confirmed. Nothing was sent.", view=None
                )
            return False
        if view.confirmed:
            return True
        if timed_out:
            with contextlib.suppress(discord.HTTPException):
                await interaction.edit_original_response(
                    content=f"No confirmation within {timeout:g} s: cancelled. Nothing was sent.",
                    view=None,
                )
        return False

    async def _run(self, interaction: discord.Interaction, env: str, force: bool, action: Action) -> None:
        ops = services(interaction)
        actor = f"{interaction.user.display_name} (/reload{' force' if force else ''})"
        steps: list[RecoveryStep] = []
        dirty = asyncio.Event()

        def on_step(step: RecoveryStep) -> None:
            steps.append(step)
            dirty.set()

        async def show_progress() -> None:
            while True:
                await dirty.wait()
                dirty.clear()
                with contextlib.suppress(discord.HTTPException):
                    embed = reload_embed(env, reload_lines(steps), result=None, actor=actor)
                    await interaction.edit_original_response(embed=discord.Embed.from_dict(embed))
                await asyncio.sleep(EDIT_EVERY_S)

        editor = asyncio.create_task(show_progress())
        try:
            result = await ops.reload(env, actor, on_step, action, force=force)
        finally:
            editor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await editor
        if isinstance(result, Interrupted):  # the bot is stopping: say what was done (the audit says it too)
            final = reload_embed(env, reload_lines(steps), result=None, actor=actor, interrupted=result.how)
            await interaction.edit_original_response(embed=discord.Embed.from_dict(final), view=None)
            return
        lines = reload_lines(steps, result)
        final_embed = discord.Embed.from_dict(reload_embed(env, lines, result=result, actor=actor))
        await interaction.edit_original_response(embed=final_embed, view=None)
        await ops.escalate(env, result)


async def setup(bot: PgrstOpsBot) -> None:
    await bot.add_cog(Reload())
