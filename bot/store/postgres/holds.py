"""The PostgreSQL store's silences (alerts held for an environment) and drift memory (the last drift run's objects).

Same calls and answers as bot/store/sqlite/holds.py. Imports the records and the connection only.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from bot.core.records import RememberedObject, Silence, now
from bot.store.postgres.connection import PgConnection, utc


class HoldTables(PgConnection):
    """The `silences` and `drift_memory` tables."""

    async def add_silence(self, env: str, until: datetime, reason: str, actor: str) -> None:
        async def run(conn: asyncpg.Connection) -> None:
            async with conn.transaction():  # one active silence per environment, whoever adds one at once
                at = now()
                await conn.execute("UPDATE silences SET ended_at = $1 WHERE env = $2 AND ended_at IS NULL", at, env)
                await conn.execute(
                    "INSERT INTO silences (env, created_at, until, reason, actor) VALUES ($1, $2, $3, $4, $5)",
                    env,
                    at,
                    utc(until),
                    reason,
                    actor,
                )

        await self.run(run)

    async def end_silence(self, env: str) -> None:
        await self.execute("UPDATE silences SET ended_at = $1 WHERE env = $2 AND ended_at IS NULL", now(), env)

    async def active_silences(self) -> list[Silence]:
        rows = await self.fetch("SELECT * FROM silences WHERE ended_at IS NULL ORDER BY id")
        return [Silence(r["env"], r["until"], r["reason"], r["actor"], r["created_at"]) for r in rows]

    # -- drift memory ---------------------------------------------------------------------------
    async def drift_memory(self, env: str) -> list[RememberedObject]:
        rows = await self.fetch(
            "SELECT kind, schema_name, name, part, detail FROM drift_memory WHERE env = $1 "
            'ORDER BY kind COLLATE "C", schema_name COLLATE "C", name COLLATE "C", part COLLATE "C"',
            env,
        )
        return [RememberedObject(r["kind"], r["schema_name"], r["name"], r["part"], r["detail"]) for r in rows]

    async def replace_drift_memory(self, env: str, objects: list[RememberedObject]) -> None:
        """What the environment's API should serve now: replaces the previous run's memory in one transaction."""

        async def run(conn: asyncpg.Connection) -> None:
            at = now()
            async with conn.transaction():
                await conn.execute("DELETE FROM drift_memory WHERE env = $1", env)
                await conn.executemany(
                    "INSERT INTO drift_memory (env, kind, schema_name, name, part, detail, remembered_at) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (env, kind, schema_name, name, part) "
                    "DO UPDATE SET detail = EXCLUDED.detail, remembered_at = EXCLUDED.remembered_at",
                    [(env, o.kind, o.schema, o.name, o.part, o.detail, at) for o in objects],
                )

        await self.run(run)
