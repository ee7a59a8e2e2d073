"""The catalog watch's reads: a cheap fingerprint of the catalog, and the exposed schemas' objects to compare.

The fingerprint is one query: per catalog PostgREST's schema cache is built from (relations, columns, functions,
schemas, constraints), the row count and the sum of the rows' xmin. Any CREATE, ALTER, DROP, RENAME or GRANT
writes a catalog row (a new xmin) or removes one (a lower count); ANALYZE and VACUUM update pg_class in place,
without a new xmin, so they do not count. It is a scan of those catalogs, linear in the schema's size (2 ms at
20 tables, 7 ms at 1,000, 29 ms at 5,000; bench/README.md), which is why the poll slows down with it
(bot/core/watch.py `poll_interval_s`). The objects themselves are read only when it changes. May import asyncpg.
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


async def read_fingerprint(conn: asyncpg.Connection) -> str:
    """One query; bounded by the connection's command_timeout, as every read of the watch."""
    return str(await conn.fetchval(FINGERPRINT_SQL))


async def read_objects(conn: asyncpg.Connection, schemas: Sequence[str], api_roles: Sequence[str]) -> Catalog:
    """The exposed schemas' relations, functions and foreign keys, as drift reads them."""
    catalog = await read_catalog(conn, schemas, api_roles)
    return dataclasses.replace(catalog, relationships=await read_foreign_keys(conn, schemas))
