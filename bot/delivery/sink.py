"""Where the monitor's messages go: the interface the Discord sink (bot/chat) and the console sink implement."""

from __future__ import annotations

from typing import Any, Protocol

from bot.delivery.outbox import Outbox
from bot.delivery.rows import EDIT, POST


class AlertSink(Protocol):
    """Where the monitor's messages go. Each method must not raise for delivery problems.

    A handle is a plain dict ({"channel_id", "message_id"} or {"webhook_message_id"}), kept in the store.
    """

    async def post_alert(
        self, env: str, payload: dict[str, Any], *, restart_url: str | None, incident_id: int | None = None
    ) -> Any:
        """Post a CRITICAL alert (with its buttons when incident_id is known); return a handle, or None."""

    async def edit_alert(
        self,
        env: str,
        handle: Any,
        payload: dict[str, Any],
        *,
        restart_url: str | None = None,
        incident_id: int | None = None,
    ) -> None:
        """Edit an open alert (acknowledged, flapping), keeping its buttons."""

    async def resolve_alert(self, env: str, handle: Any, payload: dict[str, Any]) -> None:
        """Turn the alert into its resolved form and remove its buttons."""

    async def post_line(
        self, env: str, payload: dict[str, Any], *, reply_to: Any = None, channel_id: int | None = None
    ) -> None:
        """Post a short notice (auto-recovered, resolved, reminder as a reply to the alert).

        It goes to the environment's alert channel; `channel_id` names another (a line about several).
        """

    def status_change(self, env: str, old: str | None, new: str, explanation: str) -> None:
        """A verdict changed (console mode prints it; the bot logs it)."""


class OutboxSink:
    """An AlertSink whose every message goes through a durable outbox (the Discord sink, the console's webhook)."""

    outbox: Outbox

    def shown(self, kind: str, env: str, payload: dict[str, Any]) -> None:
        """Called as each message is handed over (the console prints it at once)."""

    def handle_of(self, result: dict[str, Any] | None) -> Any:
        """The handle kept for a posted alert, from what the outbox returned."""
        return result

    async def post_alert(
        self, env: str, payload: dict[str, Any], *, restart_url: str | None, incident_id: int | None = None
    ) -> Any:
        self.shown("CRITICAL", env, payload)
        meta = {"alert": True, "incident_id": incident_id, "restart_url": restart_url}
        return self.handle_of(await self.outbox.send(env, POST, payload, meta))

    async def edit_alert(
        self, env: str, handle: Any, payload: dict[str, Any], **buttons: Any
    ) -> None:  # buttons: restart_url, incident_id (the alert keeps them)
        self.shown("UPDATE", env, payload)
        if handle:
            await self.outbox.send(env, EDIT, payload, {"target": handle, "alert": True, **buttons})

    async def resolve_alert(self, env: str, handle: Any, payload: dict[str, Any]) -> None:
        if handle:  # the final edit: a post not delivered yet is dropped, its resolved line goes out instead
            await self.outbox.send(env, EDIT, payload, {"target": handle, "alert": False})

    async def post_line(
        self, env: str, payload: dict[str, Any], *, reply_to: Any = None, channel_id: int | None = None
    ) -> None:
        self.shown("INFO", env, payload)
        meta: dict[str, Any] = {"reply_to": reply_to} if reply_to else {}
        if channel_id is not None:
            meta["channel_id"] = channel_id
        await self.outbox.send(env, POST, payload, meta)
