"""The PostgreSQL store's migrations: the same versioned scripts and schema_version rows as SQLite's, in its schema.

Every step runs in one transaction under a transaction-scoped advisory lock, and reads the version again once it
holds the lock: two replicas that start together never apply a migration twice, the second one finds the work
done. Imports asyncpg and the shared migrations.
"""

from __future__ import annotations

import asyncpg

from bot.core.records import now, ts
from bot.store.migrations import POSTGRES, SCHEMA_VERSION_DDL, check_not_newer, render, statements

PG_MIGRATIONS: tuple[str, ...] = render(POSTGRES)

# The advisory lock's first key: "pgrst-ops migrations" (the second is the schema's hashtext), so stores in two
# schemas of one database migrate independently, and nothing else in the database is likely to take it.
MIGRATION_LOCK = 0x70677273  # "pgrs"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def migrate(conn: asyncpg.Connection, schema: str, upto: int | None = None) -> int:
    """Apply the migrations after the schema's version, up to `upto` (all); return the version now there.

    `conn` has `schema` first on its search_path. The schema is created when missing (the role needs CREATE on
    the database for that, or an administrator creates the schema beforehand).
    """
    upto = len(PG_MIGRATIONS) if upto is None else upto
    while True:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", MIGRATION_LOCK, schema)
            exists = await conn.fetchval("SELECT true FROM pg_namespace WHERE nspname = $1", schema)
            if not exists:  # checked first: CREATE SCHEMA IF NOT EXISTS needs the privilege even when it exists
                await conn.execute(f"CREATE SCHEMA {quote_ident(schema)}")
            await conn.execute(SCHEMA_VERSION_DDL)
            current = int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))
            check_not_newer(current, len(PG_MIGRATIONS))
            if current >= upto:
                return current
            version = current + 1
            for statement in statements(PG_MIGRATIONS[version - 1]):
                await conn.execute(statement)
            await conn.execute("INSERT INTO schema_version VALUES ($1, $2)", version, ts(now()))
