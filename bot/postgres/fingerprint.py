"""The catalog watch's reads: a cheap fingerprint of the catalog, and the exposed schemas' objects to compare.

The fingerprint is one query: per catalog PostgREST's schema cache is built from (relations, columns, functions,
schemas, constraints), the row count and the sum of the rows' xmin. Any CREATE, ALTER, DROP, RENAME or GRANT
writes a catalog row (a new xmin) or removes one (a lower count); ANALYZE and VACUUM update pg_class in place,
without a new xmin, so they do not count. That scan is linear in the schema's size (2 ms at 20 tables, 9 ms at
1,000, 34 ms at 5,000; bench/README.md), so it runs only when the database's transaction snapshot moved since
the last read (`CatalogFingerprint`): a catalog change needs a transaction id, and while no transaction with one
has ended the snapshot's text (xmin, xmax and the in-progress list) stays the same. On a quiet database a poll is
then a fraction of a millisecond at any schema size; on a busy one every poll scans, and the poll slows down with
the scan's cost (bot/core/watch.py `poll_interval_s`). The objects themselves are read only when it changes.
May import asyncpg.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import asyncpg

from bot.core.catalog import Catalog
from bot.postgres.catalog import read_catalog
from bot.postgres.relationships import read_foreign_keys

# Catalog rows the cache is built from; xmin is cast through text (an xid has no integer cast).
_WATCHED = ("pg_class", "pg_attribute", "pg_proc", "pg_namespace", "pg_constraint")
FINGERPRINT_SQL = "select " + " || '/' || ".join(
    f"(select count(*)::text || ':' || coalesce(sum(xmin::text::int8), 0)::text from pg_catalog.{name})"
    for name in _WATCHED
)


# One round trip: the snapshot, and the scan only when the snapshot is not the one given ($1 null: always).
# txid_current_snapshot() is stable within the statement, so the scan reads the catalog the snapshot describes.
GATED_FINGERPRINT_SQL = (
    "select txid_current_snapshot()::text as snapshot,"
    f" case when txid_current_snapshot()::text = $1 then null else ({FINGERPRINT_SQL.removeprefix('select ')}) end"
    " as fingerprint"
)


@dataclasses.dataclass
class CatalogFingerprint:
    """One watch's fingerprint reader: the last snapshot and the fingerprint read in it.

    Why a snapshot can stand for the catalog: every catalog write is made by a transaction with an id, and its
    commit (or abort) moves the snapshot: an id assigned since the last read raises xmax when it ends, and one
    in progress then leaves the in-progress list. An unchanged snapshot therefore means no catalog row changed.
    """

    snapshot: str | None = None
    value: str | None = None
    scanned: bool = False  # whether the last read ran the scan (a moved snapshot, or the first read)

    async def read(self, conn: asyncpg.Connection) -> str:
        """The catalog's fingerprint; bounded by the connection's command_timeout, as every read of the watch."""
        known = self.snapshot if self.value is not None else None
        row = await conn.fetchrow(GATED_FINGERPRINT_SQL, known)
        assert row is not None
        self.scanned = row["fingerprint"] is not None
        if self.scanned:
            self.value = str(row["fingerprint"])
        self.snapshot = str(row["snapshot"])
        assert self.value is not None
        return self.value


async def read_objects(conn: asyncpg.Connection, schemas: Sequence[str], api_roles: Sequence[str]) -> Catalog:
    """The exposed schemas' relations, functions and foreign keys, as drift reads them."""
    catalog = await read_catalog(conn, schemas, api_roles)
    return dataclasses.replace(catalog, relationships=await read_foreign_keys(conn, schemas))
