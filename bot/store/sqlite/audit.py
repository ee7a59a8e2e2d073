"""The SQLite store's audit log: an action is written when it starts and completed when it ends.

Imports the records and the connection only.
"""

from __future__ import annotations

from datetime import datetime

from bot.core.records import AUDIT_DONE, AUDIT_INTERRUPTED, AUDIT_STARTED, STOPPED_MID_ACTION, AuditEntry, now, ts
from bot.store.sqlite.connection import SqliteConnection


class AuditTable(SqliteConnection):
    """The `audit` table."""

    async def audit(self, actor: str, action: str, env: str | None, outcome: str) -> None:
        """An action that starts and ends at once (acknowledge, silence...)."""
        stamp = ts(now())
        await self.call(
            self._exec,
            "INSERT INTO audit (at, actor, action, env, outcome, status, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (stamp, actor, action, env, outcome, AUDIT_DONE, stamp),
        )

    async def audit_begin(self, actor: str, action: str, env: str | None) -> int:
        """The intent, before anything is done; returns the row to complete with audit_end."""

        def run() -> int:
            cur = self._exec(
                "INSERT INTO audit (at, actor, action, env, outcome, status) VALUES (?, ?, ?, ?, ?, ?)",
                (ts(now()), actor, action, env, "in progress", AUDIT_STARTED),
            )
            return int(cur.lastrowid or 0)

        return await self.call(run)

    async def audit_end(self, row_id: int, outcome: str, *, status: str = AUDIT_DONE) -> None:
        await self.call(
            self._exec,
            "UPDATE audit SET outcome = ?, status = ?, finished_at = ? WHERE id = ?",
            (outcome, status, ts(now()), row_id),
        )

    async def audit_mark_unfinished(self) -> int:
        """At start: rows a previous process left `started` were interrupted by its end. Returns how many."""

        def run() -> int:
            cur = self._exec(
                "UPDATE audit SET status = ?, outcome = ?, finished_at = ? WHERE status = ?",
                (AUDIT_INTERRUPTED, STOPPED_MID_ACTION, ts(now()), AUDIT_STARTED),
            )
            return cur.rowcount

        return await self.call(run)

    async def audit_log(
        self, limit: int = 50, *, status: str | None = None, since: datetime | None = None
    ) -> list[AuditEntry]:
        def run() -> list[AuditEntry]:
            rows = self._exec(
                "SELECT * FROM audit WHERE (? IS NULL OR status = ?) AND (? IS NULL OR at >= ?) ORDER BY id DESC LIMIT ?",
                (status, status, ts(since), ts(since), limit),
            ).fetchall()
            return [AuditEntry.from_row(r) for r in rows]

        return await self.call(run)
