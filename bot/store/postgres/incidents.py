"""The PostgreSQL store's incidents and their actions (acknowledged, reloaded, escalated...).

Same calls and answers as bot/store/sqlite/incidents.py. Imports the records and the connection only.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from bot.core.records import Incident, now, parse_ts
from bot.store.columns import INCIDENT_TIME_FIELDS, check_incident_fields
from bot.store.postgres.connection import PgConnection, as_text_row, utc


def _column_value(name: str, value: Any) -> Any:
    if name in INCIDENT_TIME_FIELDS and isinstance(value, str):
        return parse_ts(value)  # SQLite takes the text as it is; here it becomes the point in time it names
    if isinstance(value, datetime):
        return utc(value)
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, bool):
        return int(value)
    return value


class IncidentTables(PgConnection):
    """The `incidents` and `incident_actions` tables."""

    async def open_incident(
        self, env: str, *, opened_at: datetime, verdict: str, status: int | None, code: str | None, trigger: str
    ) -> Incident:
        row_id = await self.fetchval(
            "INSERT INTO incidents (env, opened_at, verdict, status, code, trigger) "
            "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            env,
            utc(opened_at),
            verdict,
            status,
            code,
            trigger,
        )
        return Incident(int(row_id), env, opened_at, verdict, status, code, trigger)

    async def update_incident(self, incident_id: int, **fields: Any) -> None:
        check_incident_fields(fields)
        if not fields:
            return
        values = [_column_value(k, v) for k, v in fields.items()]
        sets = ", ".join(f"{k} = ${i}" for i, k in enumerate(fields, start=1))
        await self.execute(f"UPDATE incidents SET {sets} WHERE id = ${len(values) + 1}", *values, incident_id)

    async def get_incident(self, incident_id: int) -> Incident | None:
        rows = await self.fetch("SELECT * FROM incidents WHERE id = $1", incident_id)
        return Incident.from_row(as_text_row(rows[0])) if rows else None

    async def open_incidents(self) -> list[Incident]:
        rows = await self.fetch("SELECT * FROM incidents WHERE resolved_at IS NULL ORDER BY id")
        return [Incident.from_row(as_text_row(r)) for r in rows]

    async def recent_incidents(self, env: str | None = None, limit: int = 10) -> list[Incident]:
        if env is None:
            rows = await self.fetch("SELECT * FROM incidents ORDER BY id DESC LIMIT $1", limit)
        else:
            rows = await self.fetch("SELECT * FROM incidents WHERE env = $1 ORDER BY id DESC LIMIT $2", env, limit)
        return [Incident.from_row(as_text_row(r)) for r in rows]

    async def resolved_since(self, since: datetime) -> list[Incident]:
        rows = await self.fetch(
            "SELECT * FROM incidents WHERE resolved_at IS NOT NULL AND opened_at >= $1 ORDER BY id", utc(since)
        )
        return [Incident.from_row(as_text_row(r)) for r in rows]

    async def add_action(self, incident_id: int, actor: str, kind: str, detail: str = "") -> None:
        await self.execute(
            "INSERT INTO incident_actions (incident_id, at, actor, kind, detail) VALUES ($1, $2, $3, $4, $5)",
            incident_id,
            now(),
            actor,
            kind,
            detail,
        )

    async def actions(self, incident_id: int) -> list[tuple[datetime, str, str, str]]:
        rows = await self.fetch(
            "SELECT at, actor, kind, detail FROM incident_actions WHERE incident_id = $1 ORDER BY id", incident_id
        )
        return [(r["at"], r["actor"], r["kind"], r["detail"]) for r in rows]
