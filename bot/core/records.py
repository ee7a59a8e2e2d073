"""The incident store's records (incidents, outbox rows, silences, audit, drift memory), independent of the database."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# audit.status: an action is `started` (its intent recorded), then `done` or `interrupted`.
AUDIT_STARTED = "started"
AUDIT_DONE = "done"
AUDIT_INTERRUPTED = "interrupted"

# What a row still `started` when the bot starts again means: the process ended in the middle of it.
STOPPED_MID_ACTION = "interrupted: the bot stopped before it finished (crash or kill)"


def now() -> datetime:
    return datetime.now(UTC)


def ts(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def parse_ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass
class Incident:
    id: int
    env: str
    opened_at: datetime
    verdict: str
    status: int | None
    code: str | None
    trigger: str
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    resolution: str | None = None
    channel_id: int | None = None
    message_id: int | None = None
    alert_payload: dict[str, Any] | None = None
    last_reminder_at: datetime | None = None
    flapping: bool = False
    silenced: bool = False

    @property
    def duration_s(self) -> float | None:
        return (self.resolved_at - self.opened_at).total_seconds() if self.resolved_at else None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Incident:
        return cls(
            id=row["id"],
            env=row["env"],
            opened_at=parse_ts(row["opened_at"]) or now(),
            verdict=row["verdict"],
            status=row["status"],
            code=row["code"],
            trigger=row["trigger"],
            acknowledged_by=row["acknowledged_by"],
            acknowledged_at=parse_ts(row["acknowledged_at"]),
            resolved_at=parse_ts(row["resolved_at"]),
            resolution=row["resolution"],
            channel_id=row["channel_id"],
            message_id=row["message_id"],
            alert_payload=json.loads(row["alert_payload"]) if row["alert_payload"] else None,
            last_reminder_at=parse_ts(row["last_reminder_at"]),
            flapping=bool(row["flapping"]),
            silenced=bool(row["silenced"]),
        )


@dataclass
class OutboxRow:
    id: int
    env: str
    kind: str
    payload: dict[str, Any]
    meta: dict[str, Any]
    nonce: str
    attempts: int
    sent_at: datetime | None
    result: dict[str, Any] | None


@dataclass
class Silence:
    env: str
    until: datetime
    reason: str
    actor: str
    created_at: datetime


@dataclass(frozen=True)
class RememberedObject:
    """One API-visible object of a drift run: kind relation/column/function/relationship, in `schema`.

    `part` is the column of a relation, or the constraint of a relationship; `detail` what it takes to ask
    PostgREST about it again (a function's argument shapes, a relationship's columns), as JSON text.
    """

    kind: str
    schema: str
    name: str
    part: str = ""
    detail: str = ""


@dataclass
class AuditEntry:
    at: datetime
    actor: str
    action: str
    env: str | None
    outcome: str
    status: str = AUDIT_DONE
    finished_at: datetime | None = None
    id: int = 0

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> AuditEntry:
        return cls(
            parse_ts(row["at"]) or now(),
            row["actor"],
            row["action"],
            row["env"],
            row["outcome"],
            row["status"],
            parse_ts(row["finished_at"]),
            int(row["id"]),
        )
