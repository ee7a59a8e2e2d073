"""The SQLite store's incidents and their actions (acknowledged, reloaded, escalated...).

Imports the records and the connection only.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from bot.core.records import Incident, now, parse_ts, ts
from bot.store.columns import check_incident_fields
from bot.store.sqlite.connection import SqliteConnection


class IncidentTables(SqliteConnection):
    """The `incidents` and `incident_actions` tables."""

    async def open_incident(
        self, env: str, *, opened_at: datetime, verdict: str, status: int | None, code: str | None, trigger: str
    ) -> Incident:
        def run() -> Incident:
            cur = self._exec(
                "INSERT INTO incidents (env, opened_at, verdict, status, code, trigger) VALUES (?, ?, ?, ?, ?, ?)",
                (env, ts(opened_at), verdict, status, code, trigger),
            )
            return Incident(int(cur.lastrowid or 0), env, opened_at, verdict, status, code, trigger)

        return await self.call(run)

    async def update_incident(self, incident_id: int, **fields: Any) -> None:
        check_incident_fields(fields)
        if not fields:
            return
        values = []
        for value in fields.values():
            if isinstance(value, datetime):
                value = ts(value)
            elif isinstance(value, dict):
                value = json.dumps(value)
            elif isinstance(value, bool):
                value = int(value)
            values.append(value)
        sets = ", ".join(f"{k} = ?" for k in fields)
        await self.call(self._exec, f"UPDATE incidents SET {sets} WHERE id = ?", (*values, incident_id))

    async def get_incident(self, incident_id: int) -> Incident | None:
        def run() -> Incident | None:
            row = self._exec("SELECT * FROM incidents WHERE id = ?", (incident_id,)).fetchone()
            return Incident.from_row(row) if row else None

        return await self.call(run)

    async def open_incidents(self) -> list[Incident]:
        def run() -> list[Incident]:
            rows = self._exec("SELECT * FROM incidents WHERE resolved_at IS NULL ORDER BY id").fetchall()
            return [Incident.from_row(r) for r in rows]

        return await self.call(run)

    async def recent_incidents(self, env: str | None = None, limit: int = 10) -> list[Incident]:
        def run() -> list[Incident]:
            if env is None:
                rows = self._exec("SELECT * FROM incidents ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
            else:
                rows = self._exec(
                    "SELECT * FROM incidents WHERE env = ? ORDER BY id DESC LIMIT ?", (env, limit)
                ).fetchall()
            return [Incident.from_row(r) for r in rows]

        return await self.call(run)

    async def resolved_since(self, since: datetime) -> list[Incident]:
        def run() -> list[Incident]:
            rows = self._exec(
                "SELECT * FROM incidents WHERE resolved_at IS NOT NULL AND opened_at >= ? ORDER BY id", (ts(since),)
            ).fetchall()
            return [Incident.from_row(r) for r in rows]

        return await self.call(run)

    async def add_action(self, incident_id: int, actor: str, kind: str, detail: str = "") -> None:
        await self.call(
            self._exec,
            "INSERT INTO incident_actions (incident_id, at, actor, kind, detail) VALUES (?, ?, ?, ?, ?)",
            (incident_id, ts(now()), actor, kind, detail),
        )

    async def actions(self, incident_id: int) -> list[tuple[datetime, str, str, str]]:
        def run() -> list[tuple[datetime, str, str, str]]:
            rows = self._exec(
                "SELECT at, actor, kind, detail FROM incident_actions WHERE incident_id = ? ORDER BY id",
                (incident_id,),
            ).fetchall()
            return [(parse_ts(r["at"]) or now(), r["actor"], r["kind"], r["detail"]) for r in rows]

        return await self.call(run)
