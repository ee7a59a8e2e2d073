"""Where an environment's alerts go, in words (one short line for /status and /incidents), and the role pings
of a line that speaks for several environments (the network-lost notice, once per alert channel).

Pure: payload dicts and text only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.config import AlertRoute
from bot.messages.alert import CONTENT_MAX, clip


def route_text(route: AlertRoute) -> str:
    """`alerts → #ops-prod, pings @oncall-prod` or `alerts → #dev-alerts, no ping` (Discord renders the
    mentions as names; an embed never pings)."""
    where = f"<#{route.channel_id}>" if route.channel_id is not None else "no channel set (webhook only)"
    if route.role is None:
        who = "no ping"
    elif isinstance(route.role, int):
        who = f"pings <@&{route.role}>"
    else:  # a name the bot resolves at start
        who = f"pings @{route.role}"
    return f"alerts → {where}, {who}"


def with_pings(payload: dict[str, Any], role_ids: Sequence[int]) -> dict[str, Any]:
    """The payload's content led by these role mentions, and `allowed_mentions` naming exactly them."""
    roles = list(dict.fromkeys(role_ids))
    if not roles:
        return {**payload, "allowed_mentions": {"parse": [], "roles": []}}
    mentions = " ".join(f"<@&{r}>" for r in roles)
    return {
        **payload,
        "content": clip(f"{mentions} {payload.get('content') or ''}".rstrip(), CONTENT_MAX),
        "allowed_mentions": {"parse": [], "roles": [str(r) for r in roles]},
    }
