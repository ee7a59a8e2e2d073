"""discord.py message parts built from plain payloads: mentions, send/edit arguments, link and alert views.

May import discord and bot.messages; holds no state.
"""

from __future__ import annotations

from typing import Any

import discord

# Buttons on the CRITICAL alert; cogs.incidents handles them (DynamicItem: they work after a restart).
INCIDENT_BUTTONS = (("ack", "Acknowledge", "👀"), ("silence", "Silence 1h", "🔕"), ("retry", "Retry reload", "🔄"))


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
