"""Console text: a Discord message payload as plain text for terminals and logs (timestamps shown in UTC).

Pure; imports nothing of the project.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any


def payload_text(payload: dict[str, Any]) -> str:
    """A plain-text rendering of a Discord message payload, for terminals and logs."""
    parts = [payload.get("content") or ""]
    for embed in payload.get("embeds", []):
        parts.append(embed.get("title", ""))
        parts.append(embed.get("description", ""))
        for field in embed.get("fields", []):
            parts.append(f"{field['name']}:\n  " + field["value"].replace("\n", "\n  "))
    return DISCORD_TIMESTAMP.sub(_utc, "\n".join(p for p in parts if p))


# Discord renders <t:1700000000:R> in the reader's time zone; a terminal shows UTC instead.
DISCORD_TIMESTAMP = re.compile(r"<t:(\d+)(?::[tTdDfFR])?>")


def _utc(match: re.Match[str]) -> str:
    return datetime.fromtimestamp(int(match.group(1)), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
