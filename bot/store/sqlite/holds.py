"""The SQLite store's silences (alerts held for an environment) and drift memory (the last drift run's objects).

Imports the records and the connection only.
"""

from __future__ import annotations

from datetime import datetime

from bot.core.records import (
    RememberedObject,
    Silence,
    now,
    parse_ts,
    ts,
)
from bot.store.sqlite.connection import SqliteConnection


class HoldTables(SqliteConnection):
    """The `silences` and `drift_memory` tables."""

    async def add_silence(self, env: str, until: datetime, reason: str, actor: str) -> None:
        def run() -> None:
            self._exec("UPDATE silences SET ended_at = ? WHERE env = ? AND ended_at IS NULL", (ts(now()), env))
            self._exec(
                "INSERT INTO silences (env, created_at, until, reason, actor) VALUES (?, ?, ?, ?, ?)",
                (env, ts(now()), ts(until), reason, actor),
            )

        await self.call(run)

    async def end_silence(self, env: str) -> None:
        await self.call(
            self._exec, "UPDATE silences SET ended_at = ? WHERE env = ? AND ended_at IS NULL", (ts(now()), env)
        )

    async def active_silences(self) -> list[Silence]:
        def run() -> list[Silence]:
            rows = self._exec("SELECT * FROM silences WHERE ended_at IS NULL ORDER BY id").fetchall()
            return [
                Silence(
                    r["env"], parse_ts(r["until"]) or now(), r["reason"], r["actor"], parse_ts(r["created_at"]) or now()
                )
                for r in rows
            ]

        return await self.call(run)

    # -- drift memory ---------------------------------------------------------------------------
    async def drift_memory(self, env: str) -> list[RememberedObject]:
        def run() -> list[RememberedObject]:
            rows = self._exec(
                "SELECT kind, schema_name, name, part, detail FROM drift_memory WHERE env = ? "
                "ORDER BY kind, schema_name, name, part",
                (env,),
            ).fetchall()
            return [RememberedObject(r["kind"], r["schema_name"], r["name"], r["part"], r["detail"]) for r in rows]

        return await self.call(run)

    async def replace_drift_memory(self, env: str, objects: list[RememberedObject]) -> None:
        """What the environment's API should serve now: replaces the previous run's memory in one transaction."""

        def run() -> None:
            at = ts(now())
            self._exec("BEGIN")
            try:
                self._exec("DELETE FROM drift_memory WHERE env = ?", (env,))
                self.conn.executemany(
                    "INSERT OR REPLACE INTO drift_memory (env, kind, schema_name, name, part, detail, remembered_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(env, o.kind, o.schema, o.name, o.part, o.detail, at) for o in objects],
                )
                self._exec("COMMIT")
            except BaseException:
                self._exec("ROLLBACK")
                raise

        await self.call(run)
