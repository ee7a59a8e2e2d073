"""The app: one owner of the HTTP client, the operator and the monitor; the Discord bot or console mode.

This is the only module under bot/ that imports discord. `python -m bot` runs `main()`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from dataclasses import dataclass
from typing import Any

import discord
import httpx
from discord import app_commands
from discord.ext import commands

from bot import __version__
from bot.config import ConfigError, Settings, Target, load_settings, read_optional_secret, resolve_targets
from bot.console import ConsoleSink, WebhookFallback
from bot.monitor import AlertSink, Monitor
from bot.probe import Prober, make_http_client
from bot.recovery import RecoveryOperator

log = logging.getLogger("pgrst_ops")

COGS = ("cogs.health", "cogs.reload", "cogs.status", "cogs.drift")


@dataclass
class Services:
    """Everything the cogs use, built once by the lifecycle owner and injected into the bot."""

    settings: Settings
    targets: dict[str, Target]
    http: httpx.AsyncClient
    prober: Prober
    operator: RecoveryOperator
    webhook: WebhookFallback
    monitor: Monitor | None = None
    autostart_monitor: bool = True  # tests drive the monitor's checks by hand


def build_services(settings: Settings, targets: list[Target], http: httpx.AsyncClient) -> Services:
    prober = Prober(http, max_body_bytes=settings.max_body_bytes)
    webhook = WebhookFallback(http, read_optional_secret(settings.discord.webhook_url))
    return Services(
        settings, {t.name: t for t in targets}, http, prober, RecoveryOperator(prober, settings.recovery), webhook
    )


def allowed_mentions(payload: dict[str, Any]) -> discord.AllowedMentions:
    roles = payload.get("allowed_mentions", {}).get("roles") or []
    return discord.AllowedMentions(everyone=False, users=False, roles=[discord.Object(int(r)) for r in roles])


def message_kwargs(payload: dict[str, Any]) -> dict[str, Any]:
    """A builder payload (plain dict) as discord.py send/edit arguments."""
    return {
        "content": payload.get("content"),
        "embeds": [discord.Embed.from_dict(e) for e in payload.get("embeds", [])],
        "allowed_mentions": allowed_mentions(payload),
    }


def link_view(label: str, url: str | None) -> discord.ui.View | None:
    if not url:
        return None
    view = discord.ui.View(timeout=None)
    view.add_item(discord.ui.Button(style=discord.ButtonStyle.link, label=label, url=url))
    return view


class DiscordSink:
    """Posts to the ops channel; falls back to the webhook (and logs why) when the channel fails."""

    def __init__(self, bot: commands.Bot, channel_id: int | None, webhook: WebhookFallback) -> None:
        self.bot = bot
        self.channel_id = channel_id
        self.webhook = webhook

    async def _channel(self) -> discord.abc.Messageable:
        if self.channel_id is None:
            raise LookupError("no ops channel configured (discord.ops_channel_id)")
        channel = self.bot.get_channel(self.channel_id) or await self.bot.fetch_channel(self.channel_id)
        if not isinstance(channel, discord.abc.Messageable):
            raise LookupError(f"channel {self.channel_id} is not a text channel")
        return channel

    async def _send(self, env: str, payload: dict[str, Any], view: discord.ui.View | None) -> discord.Message | None:
        try:
            channel = await self._channel()
            kwargs = message_kwargs(payload)
            if view is not None:
                kwargs["view"] = view
            return await channel.send(**kwargs)
        except (discord.HTTPException, LookupError) as err:
            log.warning("cannot post %s alert to the ops channel (%s): falling back to the webhook", env, _why(err))
            return None

    async def post_alert(self, env: str, payload: dict[str, Any], *, restart_url: str | None) -> Any:
        message = await self._send(env, payload, link_view("Restart project", restart_url))
        if message is not None:
            return ("channel", message.channel.id, message.id)
        webhook_id = await self.webhook.post(payload)
        return ("webhook", webhook_id) if webhook_id else None

    async def resolve_alert(self, env: str, handle: Any, payload: dict[str, Any]) -> None:
        if not handle:
            return
        if handle[0] == "webhook":
            await self.webhook.post(payload, edit_message_id=handle[1])
            return
        _, channel_id, message_id = handle
        try:
            channel = self.bot.get_channel(channel_id) or await self.bot.fetch_channel(channel_id)
            assert isinstance(channel, discord.TextChannel | discord.Thread)
            await channel.get_partial_message(message_id).edit(**message_kwargs(payload), view=None)
        except (discord.HTTPException, AssertionError) as err:
            log.warning("cannot edit the %s alert to resolved (%s)", env, _why(err))

    async def post_line(self, env: str, payload: dict[str, Any]) -> None:
        if await self._send(env, payload, None) is None:
            await self.webhook.post(payload)

    def status_change(self, env: str, old: str | None, new: str, explanation: str) -> None:
        log.info("%s: %s -> %s (%s)", env, old, new, explanation)


def _why(err: BaseException) -> str:
    if isinstance(err, discord.HTTPException):
        return f"HTTP {err.status} code {err.code}: {err.text[:120]}"
    return str(err)


class PgrstOpsBot(commands.Bot):
    def __init__(self, services: Services, *, cogs: tuple[str, ...] = COGS, **options: Any) -> None:
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
        self.cog_names = cogs
        self.sink: AlertSink = DiscordSink(self, services.settings.discord.ops_channel_id, services.webhook)
        self.failed_cogs: dict[str, str] = {}
        self.tree.on_error = self.on_app_command_error  # type: ignore[method-assign]

    async def setup_hook(self) -> None:
        for name in self.cog_names:
            try:
                await self.load_extension(name)
            except Exception as err:  # one broken cog must not take the others down
                self.failed_cogs[name] = type(err).__name__
                log.exception("cog %s failed to load", name)
        guild_ids = self.services.settings.discord.guild_ids
        if guild_ids:
            for guild_id in guild_ids:
                guild = discord.Object(guild_id)
                self.tree.copy_global_to(guild=guild)
                await self.tree.sync(guild=guild)
        else:
            await self.tree.sync()
        monitor = Monitor(
            self.services.settings,
            list(self.services.targets.values()),
            self.services.prober,
            self.services.operator,
            self.sink,
        )
        self.services.monitor = monitor

    async def on_ready(self) -> None:
        monitor = self.services.monitor
        if monitor is not None and self.services.autostart_monitor and not monitor.health.running:
            monitor.start()
        log.info("connected as %s; monitoring %s", self.user, ", ".join(self.services.targets))

    async def close(self) -> None:
        if self.services.monitor is not None:
            await self.services.monitor.stop()
        await super().close()

    async def on_app_command_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        """One handler: a short message the user can act on; the details go to the log only."""
        original = getattr(error, "original", error)
        if isinstance(error, app_commands.CheckFailure):
            text = f"⛔ {error}"
        else:
            log.error("/%s failed", interaction.command.name if interaction.command else "?", exc_info=original)
            text = f"❌ Something went wrong ({type(original).__name__}). The details are in the bot's log; try again."
        with contextlib.suppress(discord.HTTPException):
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True)
            else:
                await interaction.response.send_message(text, ephemeral=True)


def build_bot(services: Services, *, cogs: tuple[str, ...] = COGS, **options: Any) -> PgrstOpsBot:
    """The bot, not started: tests and embedders run it in-process."""
    return PgrstOpsBot(services, cogs=cogs, **options)


async def run_console(services: Services, stop: asyncio.Event) -> None:
    sink = ConsoleSink(services.webhook)
    monitor = Monitor(services.settings, list(services.targets.values()), services.prober, services.operator, sink)
    services.monitor = monitor
    print(
        f"pgrst-ops {__version__}: no Discord token, console mode. Monitoring {', '.join(services.targets)} "
        f"every {services.settings.monitor.interval_s:g} s (Ctrl-C to stop).",
        flush=True,
    )
    monitor.start()
    try:
        await stop.wait()
    finally:
        await monitor.stop()


async def run(settings: Settings, targets: list[Target], stop: asyncio.Event) -> int:
    async with make_http_client(t.config for t in targets) as http:
        services = build_services(settings, targets, http)
        token = read_optional_secret(settings.discord.token)
        if token is None:
            await run_console(services, stop)
            return 0
        bot = build_bot(services)
        async with bot:
            runner = asyncio.create_task(bot.start(token.get_secret_value()))
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if runner in done:
                stopper.cancel()
                error = runner.exception()
                if isinstance(error, discord.LoginFailure):
                    log.error("Discord rejected the token (%s)", settings.discord.token.describe())
                    return 2
                if error is not None:
                    log.error("the bot stopped: %s", type(error).__name__)
                    return 1
            await bot.close()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="pgrst-ops Discord bot / console monitor")
    parser.add_argument("--config", help="config file (default: $PGRST_OPS_CONFIG, else ./config.yaml)")
    parser.add_argument(
        "--env", action="append", metavar="NAME", help="environment to monitor (repeatable; default: all)"
    )
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("discord").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        settings = load_settings(args.config)
        targets = resolve_targets(settings, args.env)
    except ConfigError as exc:
        sys.stderr.write(f"pgrst-ops: configuration error: {exc}\n")
        return 2

    async def runner() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await run(settings, targets, stop)

    return asyncio.run(runner())
