"""discord.py message parts: mentions and send/edit arguments from plain payloads, link and alert views, and
the alert buttons' DynamicItem (the one place their custom id is built and parsed).

May import discord and bot.messages; holds no state.
"""

from __future__ import annotations

import re
from typing import Any

import discord

from bot.messages.alert import AlertButtons

# Buttons on the CRITICAL alert; cogs.incidents handles them (DynamicItem: they work after a restart).
INCIDENT_BUTTONS = (
    ("ack", "Acknowledge"),
    ("silence", "Silence 1h"),
    ("retry", "Retry reload"),
    ("restart", "Restart project"),
)
# A pressed button shown disabled: Acknowledge once taken, Restart while a restart is followed.
DONE_LABELS = {"ack": "Acknowledged", "restart": "Restarting…"}
# Alerts already posted carry this id: it must never change.
INCIDENT_ID = re.compile(r"pgrst:incident:(?P<action>ack|silence|retry|restart):(?P<id>[0-9]{1,18})")


class IncidentButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=INCIDENT_ID):
    """One alert button: the custom id `pgrst:incident:{action}:{id}` is built and parsed here, nowhere else.

    The state lives in the id, so a click works after a restart. cogs.incidents subclasses it for the checks
    and the answer; a subclass keeps this id format.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(template=kwargs.pop("template", INCIDENT_ID), **kwargs)

    def __init__(self, action: str, incident_id: int, *, done: bool = False) -> None:
        """`done`: shown disabled (an Acknowledge already taken, a restart being followed)."""
        labels = dict(INCIDENT_BUTTONS)
        if action not in labels:
            raise ValueError(f"no alert button for {action!r}")
        label = DONE_LABELS.get(action, labels[action]) if done else labels[action]
        style = {"ack": discord.ButtonStyle.primary, "restart": discord.ButtonStyle.danger}.get(
            action, discord.ButtonStyle.secondary
        )
        custom_id = f"pgrst:incident:{action}:{incident_id}"
        super().__init__(discord.ui.Button(style=style, label=label, custom_id=custom_id, disabled=done))
        self.action = action
        self.incident_id = incident_id

    @staticmethod
    def parse(custom_id: str) -> tuple[str, int] | None:
        """(action, incident id) of a well-formed id, else None."""
        match = INCIDENT_ID.fullmatch(custom_id)
        return (match["action"], int(match["id"])) if match else None

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> IncidentButton:
        return cls(match["action"], int(match["id"]))


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


def alert_view(
    incident_id: int | None, restart_url: str | None, buttons: AlertButtons | None = None
) -> discord.ui.View | None:
    """The alert's buttons as the payload says (Acknowledge disabled once taken, Retry reload only where a reload
    can help), then the restart: a button where the project's token can restart it, else the one link."""
    buttons = buttons or AlertButtons()
    view = discord.ui.View(timeout=None)
    if incident_id:
        view.add_item(IncidentButton("ack", incident_id, done=buttons.acknowledged))
        view.add_item(IncidentButton("silence", incident_id))
        if buttons.retry:
            view.add_item(IncidentButton("retry", incident_id))
        if buttons.restart:
            view.add_item(IncidentButton("restart", incident_id, done=buttons.restarting))
    if restart_url and not (incident_id and buttons.restart):
        view.add_item(discord.ui.Button(style=discord.ButtonStyle.link, label="Restart project", url=restart_url))
    if not view.children:
        return None
    view.stop()  # never stored in the view store: cogs.incidents' DynamicItems answer the clicks
    return view
