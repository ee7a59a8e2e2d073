"""The PostgreSQL store's outbox: messages to post, kept until delivered so a restart replays them.

Same calls and answers as bot/store/sqlite/outbox.py. Imports the records and the connection only.
"""

from __future__ import annotations

import json
from typing import Any

from bot.core.records import OutboxRow, now
from bot.store.postgres.connection import PgConnection


class OutboxTable(PgConnection):
    """The `outbox` table."""

    async def outbox_add(self, env: str, kind: str, payload: dict[str, Any], meta: dict[str, Any], nonce: str) -> int:
        row_id = await self.fetchval(
            "INSERT INTO outbox (created_at, env, kind, payload, meta, nonce) VALUES ($1, $2, $3, $4, $5, $6) "
            "RETURNING id",
            now(),
            env,
            kind,
            json.dumps(payload),
            json.dumps(meta),
            nonce,
        )
        return int(row_id)

    async def outbox_attempt(self, row_id: int) -> None:
        await self.execute("UPDATE outbox SET attempts = attempts + 1 WHERE id = $1", row_id)

    async def outbox_sent(self, row_id: int, result: dict[str, Any] | None) -> None:
        await self.execute(
            "UPDATE outbox SET sent_at = $1, result = $2 WHERE id = $3", now(), json.dumps(result), row_id
        )

    async def outbox_update(self, row_id: int, payload: dict[str, Any], meta: dict[str, Any]) -> None:
        """A queued post takes the payload of a later edit of it (it has not gone out yet)."""
        await self.execute(
            "UPDATE outbox SET payload = $1, meta = $2 WHERE id = $3 AND sent_at IS NULL",
            json.dumps(payload),
            json.dumps(meta),
            row_id,
        )

    async def outbox_result(self, nonce: str) -> dict[str, Any] | None:
        """Where a finished row landed (None while it is pending or unknown)."""
        text = await self.fetchval(
            "SELECT result FROM outbox WHERE nonce = $1 AND sent_at IS NOT NULL ORDER BY id LIMIT 1", nonce
        )
        value = json.loads(text) if text else None
        return value if isinstance(value, dict) else None

    async def outbox_pending(self) -> list[OutboxRow]:
        rows = await self.fetch("SELECT * FROM outbox WHERE sent_at IS NULL ORDER BY id")
        return [
            OutboxRow(
                r["id"],
                r["env"],
                r["kind"],
                json.loads(r["payload"]),
                json.loads(r["meta"]),
                r["nonce"],
                r["attempts"],
                None,
                None,
            )
            for r in rows
        ]

    async def outbox_count(self, *, unsent_only: bool = False) -> int:
        sql = "SELECT count(*) FROM outbox" + (" WHERE sent_at IS NULL" if unsent_only else "")
        return int(await self.fetchval(sql))
