"""Relationships (foreign keys) as PostgREST embeds them, read from the catalog.

A stale embedding answers 400 PGRST200 "Could not find a relationship between 'a' and 'b' in the schema
cache", and so does an embed that can never work because no foreign key joins the two tables: only the
catalog tells which. Measured on PostgREST 12.0.2 (tests/bot/postgres/test_relationships.py):

- `GET /<t>?select=<col>,<other>!<constraint>(<col>)` answers PGRST200 while the cache lacks that foreign key
  and, with an Accept type PostgREST cannot produce, 415 PGRST107 once it has it: the relationship lookup
  precedes content negotiation, so nothing runs;
- a dropped foreign key stays embeddable until a reload;
- PostgREST 12 resolves an embedded name in the schema of the request only: a foreign key into another
  schema is never embeddable by name, so only foreign keys within one exposed schema are considered.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from bot.config import ProbeTable, Target
from bot.core.foreign_keys import ForeignKey
from bot.core.report import CheckResult
from bot.core.verdicts import Verdict

# Foreign keys between two relations of one exposed schema; partitions excluded (PostgREST embeds the
# partitioned table), so are the clones PostgreSQL makes of a partitioned table's constraint.
_FOREIGN_KEYS_SQL = """
select n.nspname as schema, c.relname as table_name, f.relname as other, con.conname as constraint_name,
  (select a.attname from pg_attribute a where a.attrelid = con.conrelid and a.attnum = con.conkey[1]) as col,
  (select a.attname from pg_attribute a where a.attrelid = con.confrelid and a.attnum = con.confkey[1])
    as other_col
from pg_constraint con
join pg_class c on c.oid = con.conrelid
join pg_namespace n on n.oid = c.relnamespace
join pg_class f on f.oid = con.confrelid
where con.contype = 'f' and con.conparentid = 0
  and f.relnamespace = c.relnamespace
  and n.nspname = any($1::text[])
  and not c.relispartition and not f.relispartition
order by 1, 2, 4
"""

# The two named relations in each exposed schema that has both, with what joins them: a direct foreign key
# (either direction) or a junction table holding a foreign key to each (many-to-many).
_PAIR_SQL = """
select n.nspname as schema, a.relkind::text as kind, b.relkind::text as other_kind,
  coalesce((select array_agg(con.conname::text order by con.conname) from pg_constraint con
            where con.contype = 'f'
              and ((con.conrelid = a.oid and con.confrelid = b.oid) or (con.conrelid = b.oid and con.confrelid = a.oid))
           ), '{}') as direct,
  coalesce((select array_agg(distinct j.relname::text) from pg_constraint c1
            join pg_constraint c2 on c2.conrelid = c1.conrelid and c2.oid <> c1.oid
            join pg_class j on j.oid = c1.conrelid
            where c1.contype = 'f' and c2.contype = 'f' and c1.confrelid = a.oid and c2.confrelid = b.oid
           ), '{}') as junctions
from pg_class a
join pg_namespace n on n.oid = a.relnamespace
join pg_class b on b.relnamespace = a.relnamespace
where n.nspname = any($1::text[]) and a.relname = $2 and b.relname = $3
  and a.relkind in ('r', 'v', 'm', 'f', 'p') and b.relkind in ('r', 'v', 'm', 'f', 'p')
"""

_PGRST200_PAIR = re.compile(r"between '([^']+)' and '([^']+)'")
_VIEW_KINDS = ("v", "m")


async def read_foreign_keys(conn: asyncpg.Connection, schemas: Sequence[str]) -> tuple[ForeignKey, ...]:
    rows = await conn.fetch(_FOREIGN_KEYS_SQL, list(schemas))
    return tuple(
        ForeignKey(r["schema"], r["table_name"], r["other"], r["constraint_name"], r["col"], r["other_col"])
        for r in rows
        if r["col"] is not None and r["other_col"] is not None
    )


def embedded_pairs(table: str, select: str) -> list[tuple[str, str]]:
    """(parent, embedded) table names of every embed in a select list, nested ones included.

    `author:authors!fk(id,publisher(name))` gives (t, authors) and (authors, publisher); aliases, spreads
    (`...`) and hints are dropped. Bounded by the select's length.
    """
    pairs: list[tuple[str, str]] = []
    parents = [table]
    token = ""
    for char in select[:2000]:
        if char == "(":
            name = token.strip().split(":")[-1].lstrip(".").split("!")[0].strip().strip('"')
            if name:
                pairs.append((parents[-1], name))
            parents.append(name or parents[-1])
            token = ""
        elif char == ")":
            if len(parents) > 1:
                parents.pop()
            token = ""
        elif char == ",":
            token = ""
        else:
            token += char
    return pairs


@dataclass(frozen=True)
class EmbedRefinement:
    """What the catalog says about a PGRST200 answer: the check's verdict and the finding to report."""

    verdict: Verdict
    detail: str
    cause: str
    title: str
    evidence: str
    fix: str


async def refine_embed(
    conn: asyncpg.Connection, target: Target, check: CheckResult, probe: ProbeTable
) -> EmbedRefinement | None:
    """Stale (a foreign key joins them: a reload helps) or a config error (nothing joins them); None for views.

    The pair comes from PGRST200's message, else from the probe's select; relationships PostgreSQL cannot show
    (views, whose embeds follow their base tables) are left to the table lookup.
    """
    env = target.config
    table, select = probe.name, probe.select
    match = _PGRST200_PAIR.search(check.message or "")
    pairs = [(match.group(1), match.group(2))] if match else embedded_pairs(table, select)
    if not pairs:
        return None
    schemas = [probe.schema_in(env)]  # PostgREST looks embeds up in the request's schema only
    answered = f"{check.status} {check.code}"
    joins = []
    for parent, child in pairs[:10]:
        rows = await conn.fetch(_PAIR_SQL, schemas, parent, child)
        if any(r["kind"] in _VIEW_KINDS or r["other_kind"] in _VIEW_KINDS for r in rows):
            return None
        joined = next((r for r in rows if r["direct"] or r["junctions"]), None)
        if joined is not None:
            joins.append((parent, child, joined))
        else:
            where = f"{rows[0]['schema']}.{parent} and {rows[0]['schema']}.{child}" if rows else None
            evidence = (
                f"no foreign key joins {where}, directly or through a junction table"
                if where
                else f"{parent} and {child} are not both tables of one exposed schema ({', '.join(schemas)})"
            )
            return EmbedRefinement(
                Verdict.MISSING_IN_DATABASE,
                f"the embed {child} in `select={select}` cannot work: nothing joins {parent} and {child}",
                "relationship_missing",
                "the probe embeds a relationship that does not exist (a config error)",
                f"{evidence}; the API answered {answered}, and would after a reload too",
                f"fix `select` of probe table {table} in the config (or add the foreign key the app expects); "
                "a reload cannot help",
            )
    parent, child, joined = joins[0]
    schema = joined["schema"]
    via = ", ".join([*joined["direct"], *(f"junction {j}" for j in joined["junctions"])])
    return EmbedRefinement(
        Verdict.STALE_SCHEMA_CACHE,
        f"{check.detail}; the foreign key exists in the database (stale)",
        "stale_relationship",
        "schema cache is stale",
        f"{schema}.{parent} and {schema}.{child} are joined in the database ({via}), but PostgREST's cache does "
        f"not have the relationship ({answered})",
        f"send a schema reload: `/reload {target.name}` (`NOTIFY {env.notify_channel}, 'reload schema'`)",
    )
