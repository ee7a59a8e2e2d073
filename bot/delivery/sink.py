"""Where the monitor's messages go: the interface the Discord sink (bot/chat) and the console sink implement."""

from __future__ import annotations

from typing import Any, Protocol


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

    async def post_line(self, env: str, payload: dict[str, Any], *, reply_to: Any = None) -> None:
        """Post a short notice (auto-recovered, resolved, reminder as a reply to the alert)."""

    def status_change(self, env: str, old: str | None, new: str, explanation: str) -> None:
        """A verdict changed (console mode prints it; the bot logs it)."""
