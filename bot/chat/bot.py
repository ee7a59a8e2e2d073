"""The Discord bot: the client class, its setup_hook (roles and alert channels, cogs, command sync, store,
restore) and its stop.

May import discord, bot.chat, bot.ops and bot.config; it builds nothing the composition root (bot.app) gives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.chat.checks import NOT_HERE, Refusal
from bot.config import NO_PING, ConfigError
from bot.core.access import GuildRole, RoleIds, resolve_roles
from bot.delivery.sink import AlertSink
from bot.ops.facade import Ops

log = logging.getLogger("pgrst_ops")
COGS = ("cogs.health", "cogs.reload", "cogs.restart", "cogs.status", "cogs.drift", "cogs.incidents")


class PgrstOpsBot(commands.Bot):
    """The slash commands' host: given complete services (bot.ops.facade.Ops) and the monitor's sink."""

    def __init__(self, services: Ops, sink: AlertSink, *, cogs: tuple[str, ...] = COGS, **options: Any) -> None:
        intents = discord.Intents.none()
        intents.guilds = True  # roles and channels; slash commands need no privileged intent
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            allowed_mentions=discord.AllowedMentions.none(),
            help_command=None,
            **options,
        )
        self.services = services
        self.sink = sink  # the monitor's, given: built before the bot (the sink's channel lookup is bound late)
        self.cog_names = cogs
        self.failed_cogs: dict[str, str] = {}
        self.tree.on_error = self.on_app_command_error  # type: ignore[method-assign]

    async def setup_hook(self) -> None:
        self.services.roles = await self._resolve_roles()  # ConfigError: the bot refuses to start
        for name in self.cog_names:
            try:
                await self.load_extension(name)
            except Exception as err:  # one broken cog must not take the others down
                self.failed_cogs[name] = type(err).__name__
                log.exception("cog %s failed to load", name)
        # Commands exist in the configured guilds only: none global (that also clears an older global sync).
        for guild_id in self.services.settings.discord.guild_ids:
            guild = discord.Object(guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
        self.tree.clear_commands(guild=None)
        await self.tree.sync()
        await self.services.open_store()
        monitor = self.services.monitor
        try:  # re-attach open incidents, send what a crash left in the outbox
            await asyncio.wait_for(monitor.restore(), self.services.settings.incidents.send_timeout_s * 4)
        except Exception:
            log.exception("restoring open incidents failed; they stay in the store")

    async def _resolve_roles(self) -> RoleIds:
        """Every configured role as ids, looked up once in every configured guild (names are not proof)."""
        settings = self.services.settings
        guild_roles: dict[int, list[GuildRole]] = {}
        for guild_id in settings.discord.guild_ids:
            try:
                guild = await self.fetch_guild(guild_id, with_counts=False)
            except (discord.NotFound, discord.Forbidden):
                raise ConfigError(
                    f"discord.guild_ids: the bot cannot see guild {guild_id} (not invited there, or a wrong id)"
                ) from None
            guild_roles[guild_id] = [GuildRole(role.id, role.name) for role in guild.roles]
        alert_guild_id: int | None = None
        pings = settings.discord.alert_role_id is not None or any(
            env.alert_role not in (None, NO_PING) for env in settings.environments.values()
        )
        if pings and settings.discord.ops_channel_id is not None:  # a name resolves in that channel's guild
            with contextlib.suppress(discord.HTTPException):
                channel = await self.fetch_channel(settings.discord.ops_channel_id)
                alert_guild_id = getattr(getattr(channel, "guild", None), "id", None)
        env_channel_guilds = await self._alert_channel_guilds()
        roles = resolve_roles(settings, guild_roles, alert_guild_id, env_channel_guilds)
        # The alert mentions need the ids: the rest of the app reads them from the settings.
        discord_cfg = settings.discord.model_copy(update={"alert_role_id": roles.alert})
        environments = {
            name: env.model_copy(update={"alert_role": roles.env_alert[name] or NO_PING})
            if name in roles.env_alert
            else env
            for name, env in settings.environments.items()
        }
        self.services.adopt_settings(settings.model_copy(update={"discord": discord_cfg, "environments": environments}))
        return roles

    async def _alert_channel_guilds(self) -> dict[str, int]:
        """The guild of each environment's own alert channel, which must be a text channel the bot sees in a
        configured guild (alerts never go to another server); ConfigError naming the key."""
        settings = self.services.settings
        guilds: dict[int, int] = {}  # channel id -> guild id, each channel fetched once
        found: dict[str, int] = {}
        for name, channel_id in settings.own_alert_channels().items():
            key = f"environments.{name}.alert_channel_id"
            if channel_id not in guilds:
                try:
                    channel = await self.fetch_channel(channel_id)
                except (discord.NotFound, discord.Forbidden):
                    raise ConfigError(
                        f"{key}: the bot cannot see channel {channel_id} (a wrong id, or no View Channel there)"
                    ) from None
                if not isinstance(channel, discord.TextChannel | discord.Thread):
                    raise ConfigError(f"{key}: channel {channel_id} is not a text channel")
                if channel.guild.id not in settings.discord.guild_ids:
                    raise ConfigError(
                        f"{key}: channel {channel_id} is in guild {channel.guild.id}, which is not in discord.guild_ids"
                    )
                guilds[channel_id] = channel.guild.id
            found[name] = guilds[channel_id]
        return found

    async def on_ready(self) -> None:
        monitor = self.services.monitor
        if self.services.autostart_monitor and not monitor.health.running:
            monitor.start()
        log.info("connected as %s; monitoring %s", self.user, ", ".join(self.services.targets))

    async def close(self) -> None:
        """A clean stop: no new work, running actions finish within the grace period or end as interrupted."""
        svc = self.services
        svc.inflight.stopping = True
        grace_s = svc.settings.discord.shutdown_grace_s
        ends_at = time.monotonic() + grace_s  # one grace period for the monitor's sends and the actions
        await svc.monitor.stop(grace_s)
        await svc.inflight.drain(max(0.0, ends_at - time.monotonic()), svc.operator.abort_all)
        await super().close()
        await svc.close_store()

    async def on_app_command_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        """One handler: a short message the user can act on; the details go to the log only."""
        original = getattr(error, "original", error)
        if isinstance(error, Refusal):
            text = str(error)
        elif isinstance(error, app_commands.CommandNotFound):  # e.g. an old global registration, elsewhere
            text = NOT_HERE
        elif isinstance(error, app_commands.CheckFailure):
            text = f"❌ {error}"
        else:
            log.error("/%s failed", interaction.command.name if interaction.command else "?", exc_info=original)
            text = f"❌ Something went wrong ({type(original).__name__}). The details are in the bot's log; try again."
        with contextlib.suppress(discord.HTTPException):
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True)
            else:
                await interaction.response.send_message(text, ephemeral=True)


async def run_bot(bot: PgrstOpsBot, token: str, stop: asyncio.Event) -> int:
    """Run until `stop` is set or the bot ends; the exit code. A ConfigError from setup_hook is raised."""
    async with bot:
        runner = asyncio.create_task(bot.start(token))
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if runner in done:
            stopper.cancel()
            error = runner.exception()
            if isinstance(error, ConfigError):
                raise error
            if isinstance(error, discord.LoginFailure):
                log.error("Discord rejected the token (%s)", bot.services.settings.discord.token.describe())
                return 2
            if error is not None:
                log.error("the bot stopped: %s", type(error).__name__)
                return 1
        await bot.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await runner
    return 0
