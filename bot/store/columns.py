"""What both stores share about their rows: the incident columns a caller may update, how long delivered
outbox rows are kept.

Imports nothing of the bot.
"""

from __future__ import annotations

OUTBOX_KEEP_DAYS = 30  # delivered outbox rows are deleted at open after this many days

# update_incident(**fields) takes these; anything else is a caller's bug (ValueError), on every store.
INCIDENT_FIELDS = frozenset(
    {
        "acknowledged_by",
        "acknowledged_at",
        "resolved_at",
        "resolution",
        "channel_id",
        "message_id",
        "alert_payload",
        "last_reminder_at",
        "flapping",
        "silenced",
        "verdict",
    }
)
# Of those, the points in time (TEXT in SQLite, TIMESTAMPTZ in PostgreSQL).
INCIDENT_TIME_FIELDS = frozenset({"acknowledged_at", "resolved_at", "last_reminder_at"})


def check_incident_fields(fields: dict[str, object]) -> None:
    unknown = set(fields) - INCIDENT_FIELDS
    if unknown:
        raise ValueError(f"not incident fields: {sorted(unknown)}")
