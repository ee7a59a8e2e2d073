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
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import discord
import httpx
from discord import app_commands
from discord.ext import commands

from bot import __version__
from bot.chat.checks import NOT_HERE, Refusal
from bot.config import ConfigError, Settings, Target, load_settings, read_optional_secret, resolve_targets
from bot.core.access import GuildRole, RoleIds, resolve_roles
from bot.delivery.console import ConsoleSink, RateLimiter, WebhookFallback, WebhookTransport
from bot.delivery.outbox import EDIT, POST, DeliveryError, Outbox, StoreGuard
from bot.ops.inflight import InFlight
from bot.ops.monitor import AlertSink, Monitor
from bot.ops.recovery import RecoveryOperator
from bot.postgrest.probe import Prober
from bot.postgrest.requests import make_http_client
from bot.redact import install_log_filter
from bot.store import IncidentStore, open_store

log = logging.getLogger("pgrst_ops")

COGS = ("cogs.health", "cogs.reload", "cogs.status", "cogs.drift", "cogs.incidents")

# Buttons on the CRITICAL alert; cogs.incidents handles them (DynamicItem: they work after a restart).
INCIDENT_BUTTONS = (("ack", "Acknowledge", "👀"), ("silence", "Silence 1h", "🔕"), ("retry", "Retry reload", "🔄"))


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
    guard: StoreGuard = field(default_factory=lambda: StoreGuard(None))  # the incident store, when open
    roles: RoleIds | None = None  # resolved at start (setup_hook); every check fails closed until then
    inflight: InFlight = field(default_factory=InFlight)  # changing actions running now (for a clean stop)

    @property
    def store(self) -> IncidentStore | None:
        return self.guard.store


def build_services(settings: Settings, targets: list[Target], http: httpx.AsyncClient) -> Services:
    prober = Prober(http, max_body_bytes=settings.max_body_bytes)
    cfg = settings.incidents
    limiter = RateLimiter(((cfg.webhook_per_2s, 2.0), (cfg.webhook_per_min, 60.0)))
    webhook = WebhookFallback(http, read_optional_secret(settings.discord.webhook_url), limiter)
    return Services(
        settings, {t.name: t for t in targets}, http, prober, RecoveryOperator(prober, settings.recovery), webhook
    )


async def open_services_store(services: Services) -> None:
    if services.guard.store is None:
        services.guard.store = await open_store(services.settings.incidents.store_path)
        if services.guard.store is None:
            services.guard.error = f"incident store {services.settings.incidents.store_path} could not be opened"
            return
    unfinished = await services.guard(lambda s: s.audit_mark_unfinished())
    if unfinished:
        log.warning("%d action(s) were cut short when pgrst-ops last stopped; /status shows them", unfinished)


async def close_services_store(services: Services) -> None:
    store, services.guard.store = services.guard.store, None
    if store is not None:
        await store.close()


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


def alert_view(incident_id: int | None, restart_url: str | None) -> discord.ui.View | None:
    """Acknowledge / Silence 1h / Retry reload (custom ids carry the incident) and the restart link."""
    view = discord.ui.View(timeout=None)
    if incident_id:
        for action, label, emoji in INCIDENT_BUTTONS:
            style = discord.ButtonStyle.primary if action == "ack" else discord.ButtonStyle.secondary
            view.add_item(
                discord.ui.Button(
                    style=style, label=label, emoji=emoji, custom_id=f"pgrst:incident:{action}:{incident_id}"
                )
            )
    if restart_url:
        view.add_item(discord.ui.Button(style=discord.ButtonStyle.link, label="Restart project", url=restart_url))
    if not view.children:
        return None
    view.stop()  # never stored in the view store: cogs.incidents' DynamicItems answer the clicks
    return view


def _transient(err: discord.HTTPException) -> DeliveryError | None:
    if err.status == 429 or err.status >= 500:
        retry_after = getattr(err, "retry_after", None)
        return DeliveryError(f"Discord {_why(err)}", transient=True, retry_after=retry_after)
    return None


class DiscordTransport:
    """Sends outbox rows to the ops channel (with the row's nonce: Discord drops a repeat), else the webhook."""

    def __init__(self, bot: commands.Bot, channel_id: int | None, webhook: WebhookFallback) -> None:
        self.bot = bot
        self.channel_id = channel_id
        self.webhook = webhook

    async def _channel(self, channel_id: int | None = None) -> discord.abc.Messageable:
        channel_id = channel_id or self.channel_id
        if channel_id is None:
            raise LookupError("no ops channel configured (discord.ops_channel_id)")
        channel = self.bot.get_channel(channel_id) or await self.bot.fetch_channel(channel_id)
        if not isinstance(channel, discord.TextChannel | discord.Thread):
            raise LookupError(f"channel {channel_id} is not a text channel")
        return channel

    async def deliver(
        self, env: str, kind: str, payload: dict[str, Any], meta: dict[str, Any], nonce: str
    ) -> dict[str, Any] | None:
        try:
            if kind == EDIT:
                return await self._edit(payload, meta)
            return await self._post(env, payload, meta, nonce)
        except discord.HTTPException as err:
            transient = _transient(err)
            if transient is not None:
                raise transient from None
            raise DeliveryError(_why(err), transient=False) from None
        except (aiohttp.ClientError, OSError) as err:
            raise DeliveryError(f"cannot reach Discord ({type(err).__name__})", transient=True) from None

    async def _post(self, env: str, payload: dict[str, Any], meta: dict[str, Any], nonce: str) -> dict[str, Any]:
        try:
            channel = await self._channel()
            kwargs = message_kwargs(payload)
            view = alert_view(meta.get("incident_id"), meta.get("restart_url")) if meta.get("alert") else None
            if view is not None:
                kwargs["view"] = view
            reply = meta.get("reply_to")
            if isinstance(reply, dict) and reply.get("message_id"):
                kwargs["reference"] = discord.MessageReference(
                    message_id=int(reply["message_id"]), channel_id=int(reply["channel_id"]), fail_if_not_exists=False
                )
            message = await channel.send(**kwargs, nonce=nonce)
            return {"channel_id": message.channel.id, "message_id": message.id}
        except (discord.HTTPException, LookupError) as err:
            if isinstance(err, discord.HTTPException) and _transient(err) is not None:
                raise
            if self.webhook.url is None:
                raise DeliveryError(
                    f"cannot post to the ops channel ({_why(err)}) and no webhook", transient=False
                ) from None
            log.warning("cannot post %s message to the ops channel (%s): falling back to the webhook", env, _why(err))
            message_id = await self.webhook.post(payload)
            if message_id is None:
                raise DeliveryError("the webhook fallback failed too", transient=True) from None
            return {"webhook_message_id": message_id}

    async def _edit(self, payload: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any] | None:
        target = meta.get("target") or {}
        if target.get("webhook_message_id"):
            await self.webhook.post(payload, edit_message_id=str(target["webhook_message_id"]))
            return target
        if not target.get("message_id"):
            return None
        channel = await self._channel(int(target["channel_id"]))
        assert isinstance(channel, discord.TextChannel | discord.Thread)
        view = alert_view(meta.get("incident_id"), meta.get("restart_url")) if meta.get("alert") else None
        await channel.get_partial_message(int(target["message_id"])).edit(**message_kwargs(payload), view=view)
        return target


class DiscordSink:
    """Every message goes through the durable outbox, then to the ops channel (webhook as the fallback)."""

    def __init__(
        self, bot: commands.Bot, channel_id: int | None, webhook: WebhookFallback, guard: StoreGuard, timeout_s: float
    ) -> None:
        self.transport = DiscordTransport(bot, channel_id, webhook)
        fallback = WebhookTransport(webhook) if webhook.url is not None else None  # when the channel keeps failing
        self.outbox = Outbox(guard, self.transport, timeout_s=timeout_s, fallback=fallback)

    async def post_alert(
        self, env: str, payload: dict[str, Any], *, restart_url: str | None, incident_id: int | None = None
    ) -> Any:
        meta = {"alert": True, "incident_id": incident_id, "restart_url": restart_url}
        return await self.outbox.send(env, POST, payload, meta)

    async def edit_alert(
        self,
        env: str,
        handle: Any,
        payload: dict[str, Any],
        *,
        restart_url: str | None = None,
        incident_id: int | None = None,
    ) -> None:
        meta = {"target": handle, "alert": True, "incident_id": incident_id, "restart_url": restart_url}
        await self.outbox.send(env, EDIT, payload, meta)

    async def resolve_alert(self, env: str, handle: Any, payload: dict[str, Any]) -> None:
        if handle:
            await self.outbox.send(env, EDIT, payload, {"target": handle, "alert": False})

    async def post_line(self, env: str, payload: dict[str, Any], *, reply_to: Any = None) -> None:
        await self.outbox.send(env, POST, payload, {"reply_to": reply_to} if reply_to else {})

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
        self.sink: AlertSink = DiscordSink(
            self,
            services.settings.discord.ops_channel_id,
            services.webhook,
            services.guard,
            services.settings.incidents.send_timeout_s,
        )
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
        await open_services_store(self.services)
        monitor = Monitor(
            self.services.settings,
            list(self.services.targets.values()),
            self.services.prober,
            self.services.operator,
            self.sink,
            guard=self.services.guard,
        )
        self.services.monitor = monitor
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
        if settings.discord.alert_role_id is not None and settings.discord.ops_channel_id is not None:
            with contextlib.suppress(discord.HTTPException):
                channel = await self.fetch_channel(settings.discord.ops_channel_id)
                alert_guild_id = getattr(getattr(channel, "guild", None), "id", None)
        roles = resolve_roles(settings, guild_roles, alert_guild_id)
        # The alert mention needs the id: the rest of the app reads it from the settings.
        discord_cfg = settings.discord.model_copy(update={"alert_role_id": roles.alert})
        self.services.settings = settings.model_copy(update={"discord": discord_cfg})
        return roles

    async def on_ready(self) -> None:
        monitor = self.services.monitor
        if monitor is not None and self.services.autostart_monitor and not monitor.health.running:
            monitor.start()
        log.info("connected as %s; monitoring %s", self.user, ", ".join(self.services.targets))

    async def close(self) -> None:
        """A clean stop: no new work, running actions finish within the grace period or end as interrupted."""
        svc = self.services
        svc.inflight.stopping = True
        grace_s = svc.settings.discord.shutdown_grace_s
        ends_at = time.monotonic() + grace_s  # one grace period for the monitor's sends and the actions
        if svc.monitor is not None:
            await svc.monitor.stop(grace_s)
        await svc.inflight.drain(max(0.0, ends_at - time.monotonic()), svc.operator.abort_all)
        await super().close()
        await close_services_store(svc)

    async def on_app_command_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        """One handler: a short message the user can act on; the details go to the log only."""
        original = getattr(error, "original", error)
        if isinstance(error, Refusal):
            text = str(error)
        elif isinstance(error, app_commands.CommandNotFound):  # e.g. an old global registration, elsewhere
            text = NOT_HERE
        elif isinstance(error, app_commands.CheckFailure):
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
    await open_services_store(services)
    sink = ConsoleSink(services.webhook, guard=services.guard)
    monitor = Monitor(
        services.settings,
        list(services.targets.values()),
        services.prober,
        services.operator,
        sink,
        guard=services.guard,
    )
    services.monitor = monitor
    await monitor.restore()
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
        await close_services_store(services)


async def run(settings: Settings, targets: list[Target], stop: asyncio.Event) -> int:
    async with make_http_client(t.config for t in targets) as http:
        services = build_services(settings, targets, http)
        token = read_optional_secret(settings.discord.token)
        if token is None:
            await run_console(services, stop)
            return 0
        settings.discord.require_guilds()
        bot = build_bot(services)
        async with bot:
            runner = asyncio.create_task(bot.start(token.get_secret_value()))
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if runner in done:
                stopper.cancel()
                error = runner.exception()
                if isinstance(error, ConfigError):
                    return config_error(error)
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


def config_error(exc: ConfigError) -> int:
    """One line on stderr, exit code 2: a configuration the bot will not run with."""
    sys.stderr.write(f"pgrst-ops: configuration error: {exc}\n")
    return 2


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
    install_log_filter()  # no secret in any log line, whoever logs it
    logging.getLogger("discord").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        settings = load_settings(args.config)
        targets = resolve_targets(settings, args.env)
    except ConfigError as exc:
        return config_error(exc)

    async def runner() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal(sig: signal.Signals) -> None:
            log.info("%s: stopping (in-flight actions get %g s)", sig.name, settings.discord.shutdown_grace_s)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            return await run(settings, targets, stop)
        except ConfigError as exc:
            return config_error(exc)

    return asyncio.run(runner())
