"""The incident store: what callers import. IncidentStore is the interface they type against (interface.py);
StoreError what any store call raises when the store cannot be used (errors.py); open_store opens the store
the configuration names (`incidents.store`): an SQLite file (sqlite/) or a PostgreSQL database (postgres/),
migrated to the newest schema (migrations.py).

This face chooses the database and re-exports, so the database behind it can change without touching a caller.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping

from bot.config import IncidentsConfig
from bot.store.errors import StoreError
from bot.store.interface import IncidentStore
from bot.store.postgres import open_postgres_store
from bot.store.sqlite import MEMORY
from bot.store.sqlite import open_store as open_sqlite_store

__all__ = ["MEMORY", "IncidentStore", "StoreError", "open_store", "store_in_use", "store_label"]

log = logging.getLogger(__name__)


def store_label(incidents: IncidentsConfig) -> str:
    """How messages name the store: its file, or where its DSN comes from (never the DSN)."""
    ref = incidents.store_dsn
    return f"the PostgreSQL store ({ref.describe()})" if ref is not None else f"incident store {incidents.store_path}"


async def store_in_use(incidents: IncidentsConfig) -> bool:
    """Whether a one-off command (fix, drift) should write to the store (`used_by_one_off_commands`)."""
    return await asyncio.to_thread(incidents.used_by_one_off_commands)


async def open_store(
    incidents: IncidentsConfig | str, environ: Mapping[str, str] | None = None
) -> IncidentStore | None:
    """The configured store, migrated; None (and one clear error in the log) when it cannot be opened.

    A str is an SQLite path. A PostgreSQL DSN is read from its reference (`environ`, default the process's).
    """
    if isinstance(incidents, str):
        return await open_sqlite_store(incidents)
    ref = incidents.store_dsn
    if ref is None:
        return await open_sqlite_store(incidents.store_path)
    dsn = ref.read(os.environ if environ is None else environ)  # registered with the log redaction
    if dsn is None:
        log.error(
            "the PostgreSQL store: %s is not set or empty: incidents are kept in memory only; probing and alerting go on",
            ref.describe(),
        )
        return None
    return await open_postgres_store(dsn.get_secret_value(), label=store_label(incidents))
