"""Discord delivery: the transport that sends outbox rows to each environment's alert channel (its own, else the
ops channel; webhook as the fallback), and the sink.

May import discord, bot.chat.views and bot.delivery.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import aiohttp
import discord

from bot.chat.views import alert_view, message_kwargs
from bot.delivery.guard import StoreGuard
from bot.delivery.outbox import DeliveryError, Outbox
from bot.delivery.rows import EDIT
from bot.delivery.sink import OutboxSink
from bot.delivery.webhook import WebhookFallback, WebhookTransport
from bot.messages.alert import alert_buttons
from bot.observe import Metrics

log = logging.getLogger("pgrst_ops")


class Channels:
    """The bot's channel lookup, bound when the bot is built: the sink exists before it (the monitor needs it)."""

    def __init__(self) -> None:
        self.client: discord.Client | None = None

    def bind(self, client: discord.Client) -> None:
        self.client = client

    def get_channel(self, channel_id: int) -> Any:
        return self.client.get_channel(channel_id) if self.client is not None else None

    async def fetch_channel(self, channel_id: int) -> Any:
        if self.client is None:
            raise LookupError("the Discord client is not built yet")
        return await self.client.fetch_channel(channel_id)


def _transient(err: discord.HTTPException) -> DeliveryError | None:
    if err.status == 429 or err.status >= 500:
        retry_after = getattr(err, "retry_after", None)
        return DeliveryError(f"Discord {_why(err)}", transient=True, retry_after=retry_after)
    return None


class DiscordTransport:
    """Sends outbox rows to their channel (with the row's nonce: Discord drops a repeat), else the webhook.

    A post goes to the channel its row names (a line for several environments), else beside the message it
    replies to, else to its environment's own alert channel, else to the ops channel; an edit to its message.
    """

    def __init__(
        self,
        bot: Channels,
        channel_id: int | None,
        webhook: WebhookFallback,
        env_channels: Mapping[str, int] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.bot = bot
        self.channel_id = channel_id
        self.webhook = webhook
        self.env_channels = dict(env_channels or {})
        self.metrics = metrics or Metrics()

    def post_channel(self, env: str, meta: dict[str, Any]) -> int | None:
        reply = meta.get("reply_to")
        if meta.get("channel_id"):
            return int(meta["channel_id"])
        if isinstance(reply, dict) and reply.get("channel_id"):
            return int(reply["channel_id"])
        return self.env_channels.get(env, self.channel_id)

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
            self.metrics.discord_error(err.status)
            transient = _transient(err)
            if transient is not None:
                raise transient from None
            raise DeliveryError(_why(err), transient=False) from None
        except (aiohttp.ClientError, OSError) as err:
            self.metrics.discord_error(None)
            raise DeliveryError(f"cannot reach Discord ({type(err).__name__})", transient=True) from None

    async def _post(self, env: str, payload: dict[str, Any], meta: dict[str, Any], nonce: str) -> dict[str, Any]:
        try:
            channel = await self._channel(self.post_channel(env, meta))
            kwargs = message_kwargs(payload)
            view = (
                alert_view(meta.get("incident_id"), meta.get("restart_url"), alert_buttons(payload))
                if meta.get("alert")
                else None
            )
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
            if isinstance(err, discord.HTTPException):  # refused by the channel: counted here, then the webhook
                self.metrics.discord_error(err.status)
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
        view = (
            alert_view(meta.get("incident_id"), meta.get("restart_url"), alert_buttons(payload))
            if meta.get("alert")
            else None
        )
        await channel.get_partial_message(int(target["message_id"])).edit(**message_kwargs(payload), view=view)
        return target


class DiscordSink(OutboxSink):
    """Every message goes through the durable outbox, then to its alert channel (webhook as the fallback)."""

    def __init__(
        self,
        bot: Channels,
        channel_id: int | None,
        webhook: WebhookFallback,
        guard: StoreGuard,
        timeout_s: float,
        env_channels: Mapping[str, int] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.transport = DiscordTransport(bot, channel_id, webhook, env_channels, metrics)
        fallback = WebhookTransport(webhook) if webhook.url is not None else None  # when the channel keeps failing
        self.outbox = Outbox(guard, self.transport, timeout_s=timeout_s, fallback=fallback)

    def status_change(self, env: str, old: str | None, new: str, explanation: str) -> None:
        log.info("%s: %s -> %s (%s)", env, old, new, explanation)


def _why(err: BaseException) -> str:
    if isinstance(err, discord.HTTPException):
        return f"HTTP {err.status} code {err.code}: {err.text[:120]}"
    return str(err)
