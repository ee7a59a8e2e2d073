"""The SQLite store's outbox: messages to post, kept until delivered so a restart replays them.

Imports the records and the connection only.
"""

from __future__ import annotations

import json
from typing import Any

from bot.core.records import OutboxRow, now, ts
from bot.store.shared import pending_row
from bot.store.sqlite.connection import SqliteConnection


class OutboxTable(SqliteConnection):
    """The `outbox` table."""

    async def outbox_add(self, env: str, kind: str, payload: dict[str, Any], meta: dict[str, Any], nonce: str) -> int:
        def run() -> int:
            cur = self._exec(
                "INSERT INTO outbox (created_at, env, kind, payload, meta, nonce) VALUES (?, ?, ?, ?, ?, ?)",
                (ts(now()), env, kind, json.dumps(payload), json.dumps(meta), nonce),
            )
            return int(cur.lastrowid or 0)

        return await self.call(run)

    async def outbox_attempt(self, row_id: int) -> None:
        await self.call(self._exec, "UPDATE outbox SET attempts = attempts + 1 WHERE id = ?", (row_id,))

    async def outbox_sent(self, row_id: int, result: dict[str, Any] | None) -> None:
        await self.call(
            self._exec,
            "UPDATE outbox SET sent_at = ?, result = ? WHERE id = ?",
            (ts(now()), json.dumps(result), row_id),
        )

    async def outbox_update(self, row_id: int, payload: dict[str, Any], meta: dict[str, Any]) -> None:
        """A queued post takes the payload of a later edit of it (it has not gone out yet)."""
        await self.call(
            self._exec,
            "UPDATE outbox SET payload = ?, meta = ? WHERE id = ? AND sent_at IS NULL",
            (json.dumps(payload), json.dumps(meta), row_id),
        )

    async def outbox_result(self, nonce: str) -> dict[str, Any] | None:
        """Where a finished row landed (None while it is pending or unknown)."""

        def run() -> dict[str, Any] | None:
            row = self._exec("SELECT result FROM outbox WHERE nonce = ? AND sent_at IS NOT NULL", (nonce,)).fetchone()
            value = json.loads(row["result"]) if row and row["result"] else None
            return value if isinstance(value, dict) else None

        return await self.call(run)

    async def outbox_pending(self) -> list[OutboxRow]:
        def run() -> list[OutboxRow]:
            rows = self._exec("SELECT * FROM outbox WHERE sent_at IS NULL ORDER BY id").fetchall()
            return [pending_row(r) for r in rows]

        return await self.call(run)

    async def outbox_count(self, *, unsent_only: bool = False) -> int:
        sql = "SELECT count(*) FROM outbox" + (" WHERE sent_at IS NULL" if unsent_only else "")
        return int(await self.call(lambda: self._exec(sql).fetchone()[0]))
