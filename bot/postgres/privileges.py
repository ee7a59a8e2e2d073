"""May an API role use this object? The one rule that diagnosis, drift and the pre-flight share.

Every privilege question pgrst-ops asks PostgreSQL is written here, and only here.

PostgREST serves what the request's role may use:

- a relation when the role has USAGE on its schema and a privilege on the table **or on any of its columns**
  (a table granted column by column is served, with those columns);
- a column when the role has USAGE on the schema and a privilege on that column (a table privilege covers all);
- a function when the role has USAGE on its schema and EXECUTE on it.

Partitions: PostgREST 12 caches the partitioned table, never its partitions (`OPTIONS /<partition>` answers
404 `{}` even right after a reload, while `GET` still answers through PostgreSQL's name lookup), so no part of
pgrst-ops counts a partition as an API relation.

The SQL here is text over fixed aliases, never over names: `r` a pg_roles row (the API roles, given as a text[]
parameter, read once by api_roles_cte and filtered to those that exist, since has_*_privilege raises on an
unknown role), `n` pg_namespace,
`c` pg_class, `a` pg_attribute, `p` pg_proc.
"""

from __future__ import annotations

TABLE_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
COLUMN_PRIVILEGES = "SELECT, INSERT, UPDATE"

# Relations PostgREST caches: tables, views, materialized views, foreign and partitioned tables; not partitions.
API_RELATION = "c.relkind in ('r', 'v', 'm', 'f', 'p') and not c.relispartition"

SCHEMA_USAGE = "has_schema_privilege(r.oid, n.oid, 'USAGE')"
WHOLE_TABLE = f"has_table_privilege(r.oid, c.oid, '{TABLE_PRIVILEGES}')"
ANY_COLUMN = f"has_any_column_privilege(r.oid, c.oid, '{COLUMN_PRIVILEGES}')"
RELATION_USABLE = f"({SCHEMA_USAGE} and ({WHOLE_TABLE} or {ANY_COLUMN}))"
COLUMN_USABLE = f"({SCHEMA_USAGE} and has_column_privilege(r.oid, c.oid, a.attnum, '{COLUMN_PRIVILEGES}'))"
FUNCTION_USABLE = f"({SCHEMA_USAGE} and has_function_privilege(r.oid, p.oid, 'EXECUTE'))"


# The other side of the same question: may PostgREST's own login role read the catalogs its schema query reads
# ($1 the role, $2 a text[] of pg_catalog table names)? A revoked SELECT there makes every reload fail (PGRST002).
UNREADABLE_CATALOGS_SQL = (
    "select t from unnest($2::text[]) t where not has_table_privilege($1, 'pg_catalog.' || t, 'SELECT')"
)


def api_roles_cte(param: str) -> str:
    """`with` item `api_roles`: the API roles (a text[] query parameter such as `$3`) that exist, read once;
    select from it `as r`."""
    if not (param.startswith("$") and param[1:].isdigit()):
        raise ValueError(f"expected a query parameter such as $1, got {param!r}")
    return f"api_roles as materialized (select oid, rolname from pg_roles where rolname = any({param}::text[]))"
