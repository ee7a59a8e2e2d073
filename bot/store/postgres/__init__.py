"""The incident store in PostgreSQL (asyncpg), which replicas of the bot share.

`PostgresStore` is the whole store, one class per group of tables on one small pool, with the same calls,
migrations and answers as the SQLite store (bot/store/sqlite/), in its own schema (`pgrst_ops` unless told
otherwise) so it can live in any database. `open_postgres_store` opens and migrates it, or logs one clear error
and returns None. Callers import it through bot.store and treat every StoreError as "the store is unavailable".
"""

from __future__ import annotations

import logging

from bot.store.errors import StoreError
from bot.store.postgres.audit import AuditTable
from bot.store.postgres.connection import DEFAULT_SCHEMA, PgConnection
from bot.store.postgres.holds import HoldTables
from bot.store.postgres.incidents import IncidentTables
from bot.store.postgres.outbox import OutboxTable

__all__ = ["DEFAULT_SCHEMA", "PgConnection", "PostgresStore", "open_postgres_store"]

log = logging.getLogger(__name__)


class PostgresStore(IncidentTables, AuditTable, OutboxTable, HoldTables):
    """The PostgreSQL incident store: every table's calls on one small pool."""


async def open_postgres_store(
    dsn: str, *, label: str, schema: str = DEFAULT_SCHEMA, timeout_s: float = 5.0
) -> PostgresStore | None:
    """The store, migrated; None (and one clear error in the log) when it cannot be opened."""
    store = PostgresStore(dsn, label=label, schema=schema, timeout_s=timeout_s)
    try:
        await store.open()
    except StoreError as err:
        log.error("%s: incidents are kept in memory only; probing and alerting go on", err)
        await store.close()
        return None
    return store
