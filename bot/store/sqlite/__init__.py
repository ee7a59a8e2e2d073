"""The incident store in an embedded SQLite file (stdlib sqlite3), used off the event loop.

`Store` is the whole store, one class per group of tables on one connection; `open_store` opens and migrates
it, or logs one clear error and returns None. Nothing to install or run for a new user. Callers import it through
bot.store, type against IncidentStore and treat every StoreError as "the store is unavailable": probing and
alerting go on in memory.
"""

from __future__ import annotations

from bot.store.shared import opened
from bot.store.sqlite.audit import AuditTable
from bot.store.sqlite.connection import MEMORY, SqliteConnection
from bot.store.sqlite.holds import HoldTables
from bot.store.sqlite.incidents import IncidentTables
from bot.store.sqlite.outbox import OutboxTable

__all__ = ["MEMORY", "SqliteConnection", "Store", "open_store"]


class Store(IncidentTables, AuditTable, OutboxTable, HoldTables):
    """The SQLite incident store: every table's calls on one connection in a dedicated thread."""


async def open_store(path: str) -> Store | None:
    """The store, migrated; None (and one clear error in the log) when it cannot be opened."""
    return await opened(Store(path))
