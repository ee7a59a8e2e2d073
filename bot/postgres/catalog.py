"""The catalog as PostgREST would cache it: relations, functions and foreign keys of the exposed schemas.

What the database offers, and whether an API role may use each object by the one privilege rule of
bot/postgres/privileges.py (the diagnosis uses the same rule). The drift comparison (bot/core/drift_compare.py)
reads these types; only this module reads them from PostgreSQL. May import asyncpg and bot/postgres.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from bot.core.catalog import Catalog, CatalogFunction, CatalogRelation
from bot.postgres import privileges

# Relations as PostgREST caches them (privileges.API_RELATION: partitions excluded), usability by the one rule.
_RELATIONS_SQL = f"""
with {privileges.api_roles_cte("$2")}
select n.nspname as schema, c.relname as name,
  exists (select 1 from api_roles r where {privileges.RELATION_USABLE}) as usable,
  coalesce(array_agg(a.attname::text order by a.attnum) filter (where a.attname is not null), '{{}}') as columns,
  coalesce(array_agg(a.attname::text) filter (where a.attname is not null and exists (
    select 1 from api_roles r where {privileges.COLUMN_USABLE}
  )), '{{}}') as usable_columns
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
left join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
where n.nspname = any($1::text[]) and {privileges.API_RELATION}
group by n.nspname, n.oid, c.relname, c.oid
order by 1, 2
"""


# Functions as PostgREST caches them (prokind 'f', not returning trigger, callable through the API: every
# input argument named, or a single unnamed one of a body type).
_FUNCTIONS_SQL = f"""
with {privileges.api_roles_cte("$2")},
args as (
  select p.oid,
    count(*) - count(arg.name) as unnamed,
    (array_agg(arg.type::regtype::text order by arg.idx))[1] as first_type,
    coalesce(array_agg(arg.name order by arg.idx)
      filter (where arg.name is not null and arg.name <> '' and arg.idx <= p.pronargs - p.pronargdefaults), '{{}}')
      as required
  from pg_proc p
  join pg_namespace n on n.oid = p.pronamespace,
  unnest(p.proargnames, p.proargtypes, p.proargmodes) with ordinality as arg(name, type, mode, idx)
  where n.nspname = any($1::text[]) and arg.type is not null
  group by p.oid
)
select n.nspname as schema, p.proname as name,
  exists (select 1 from api_roles r where {privileges.FUNCTION_USABLE}) as usable,
  coalesce(a.required, '{{}}') as required,
  case when coalesce(a.unnamed, 0) = 1 then a.first_type end as unnamed_type
from pg_proc p
join pg_namespace n on n.oid = p.pronamespace
left join args a on a.oid = p.oid
where n.nspname = any($1::text[])
  and p.prokind = 'f'
  and p.prorettype <> 'trigger'::regtype
  and (coalesce(a.unnamed, 0) = 0
       or (a.unnamed = 1 and a.first_type in ('bytea', 'json', 'jsonb', 'text', 'xml')))
order by 1, 2
"""


async def read_catalog(conn: asyncpg.Connection, schemas: Sequence[str], api_roles: Sequence[str]) -> Catalog:
    """What the database offers in the exposed schemas, and which objects an API role may use."""
    notes = []
    present_roles = {
        r["rolname"] for r in await conn.fetch("select rolname from pg_roles where rolname = any($1)", list(api_roles))
    }
    absent_roles = [r for r in api_roles if r not in present_roles]
    if absent_roles:
        notes.append(f"API role(s) {', '.join(absent_roles)} do not exist in the database")
    present_schemas = {
        r["nspname"]
        for r in await conn.fetch("select nspname from pg_namespace where nspname = any($1)", list(schemas))
    }
    absent_schemas = [s for s in schemas if s not in present_schemas]
    if absent_schemas:
        notes.append(f"exposed schema(s) {', '.join(absent_schemas)} do not exist in the database")
    relations = tuple(
        CatalogRelation(
            schema=r["schema"],
            name=r["name"],
            usable=r["usable"],
            columns=tuple(r["columns"]),
            usable_columns=frozenset(r["usable_columns"]),
        )
        for r in await conn.fetch(_RELATIONS_SQL, list(schemas), list(api_roles))
    )
    functions = tuple(
        CatalogFunction(
            schema=r["schema"],
            name=r["name"],
            usable=r["usable"],
            required_args=tuple(r["required"]),
            unnamed_arg_type=r["unnamed_type"],
        )
        for r in await conn.fetch(_FUNCTIONS_SQL, list(schemas), list(api_roles))
    )
    return Catalog(relations, functions, tuple(notes))
