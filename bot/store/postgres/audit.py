"""The PostgreSQL store's audit log: an action is written when it starts and completed when it ends.

Same calls and answers as bot/store/sqlite/audit.py. Imports the records and the connection only.
"""

from __future__ import annotations

from datetime import datetime

from bot.core.records import (
    AUDIT_DONE,
    AUDIT_INTERRUPTED,
    AUDIT_STARTED,
    STOPPED_MID_ACTION,
    AuditEntry,
    now,
)
from bot.store.postgres.connection import PgConnection, affected, as_text_row, utc


class AuditTable(PgConnection):
    """The `audit` table."""

    async def audit(self, actor: str, action: str, env: str | None, outcome: str) -> None:
        """An action that starts and ends at once (acknowledge, silence...)."""
        stamp = now()
        await self.execute(
            "INSERT INTO audit (at, actor, action, env, outcome, status, finished_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7)",
            stamp,
            actor,
            action,
            env,
            outcome,
            AUDIT_DONE,
            stamp,
        )

    async def audit_begin(self, actor: str, action: str, env: str | None) -> int:
        """The intent, before anything is done; returns the row to complete with audit_end."""
        row_id = await self.fetchval(
            "INSERT INTO audit (at, actor, action, env, outcome, status) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            now(),
            actor,
            action,
            env,
            "in progress",
            AUDIT_STARTED,
        )
        return int(row_id)

    async def audit_end(self, row_id: int, outcome: str, *, status: str = AUDIT_DONE) -> None:
        await self.execute(
            "UPDATE audit SET outcome = $1, status = $2, finished_at = $3 WHERE id = $4", outcome, status, now(), row_id
        )

    async def audit_mark_unfinished(self) -> int:
        """At start: rows a previous process left `started` were interrupted by its end. Returns how many."""
        status = await self.execute(
            "UPDATE audit SET status = $1, outcome = $2, finished_at = $3 WHERE status = $4",
            AUDIT_INTERRUPTED,
            STOPPED_MID_ACTION,
            now(),
            AUDIT_STARTED,
        )
        return affected(status)

    async def audit_log(
        self, limit: int = 50, *, status: str | None = None, since: datetime | None = None
    ) -> list[AuditEntry]:
        rows = await self.fetch(
            "SELECT * FROM audit WHERE ($1::text IS NULL OR status = $1) AND ($2::timestamptz IS NULL OR at >= $2) "
            "ORDER BY id DESC LIMIT $3",
            status,
            utc(since),
            limit,
        )
        return [AuditEntry.from_row(as_text_row(r)) for r in rows]
