"""PostgreSQL identifiers: validate them, read `schema.name` from the config, quote them for SQL and for display.

Names are taken literally, as PostgREST takes them from a URL (no case folding): `Items` is the table "Items".
In the config a part is written bare, or in double quotes (`""` for a quote) when it holds `.`, `"`, `(`, `)`,
`,` or white space: `"SPECIAL ""@/\\#~_-".items`, `storage.objects`, `تست.x`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

MAX_IDENTIFIER_BYTES = 63  # NAMEDATALEN - 1: PostgreSQL truncates longer names, so they can never match
# A bare part in the config: anything but the characters the notation itself uses.
_BARE_PART = re.compile(r'[^."(),\s\x00-\x1f\x7f]+')
_QUOTED_PART = re.compile(r'"((?:[^"]|"")*)"')
# What SQL accepts without quotes (the rest must be quoted): lower-case ASCII, not a keyword PostgreSQL reserves.
_PLAIN_SQL = re.compile(r"[a-z_][a-z0-9_$]*")
# pg_get_keywords() where catcode <> 'U' (PostgreSQL 15): the words quote_ident() quotes.
_SQL_KEYWORDS = frozenset(
    """all analyse analyze and any array as asc asymmetric authorization between bigint binary bit boolean both case
    cast char character check coalesce collate collation column concurrently constraint create cross current_catalog
    current_date current_role current_schema current_time current_timestamp current_user dec decimal default
    deferrable desc distinct do else end except exists extract false fetch float for foreign freeze from full grant
    greatest group grouping having ilike in initially inner inout int integer intersect interval into is isnull join
    lateral leading least left like limit localtime localtimestamp national natural nchar none normalize not notnull
    null nullif numeric offset on only or order out outer overlaps overlay placing position precision primary real
    references returning right row select session_user setof similar smallint some substring symmetric table
    tablesample then time timestamp to trailing treat trim true union unique user using values varchar variadic
    verbose when where window with xmlattributes xmlconcat xmlelement xmlexists xmlforest xmlnamespaces xmlparse
    xmlpi xmlroot xmlserialize xmltable""".split()
)


def identifier_problem(name: str) -> str | None:
    """Why `name` cannot be a PostgreSQL identifier, or None when it can."""
    if not name:
        return "an identifier cannot be empty"
    if "\x00" in name:
        return "an identifier cannot contain NUL"
    if len(name.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
        return f"{name[:20]!r}… is longer than {MAX_IDENTIFIER_BYTES} bytes (UTF-8), PostgreSQL's limit"
    return None


def check_identifier(name: str) -> str:
    """`name`, or ValueError saying why it is not an identifier."""
    problem = identifier_problem(name)
    if problem:
        raise ValueError(problem)
    return name


def quote_ident(name: str) -> str:
    """The identifier as SQL must write it (PostgreSQL's quote_ident): bare when it may be, else double-quoted."""
    if _PLAIN_SQL.fullmatch(name) and name not in _SQL_KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


def qualified_sql(schema: str, name: str) -> str:
    """`schema.name` for SQL text (fix commands), each part quoted as needed."""
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def url_encoded(name: str) -> str:
    """A name as one URL path segment or query key: `/`, `#`, `?`, `%` and spaces are part of a PostgreSQL name,
    and unencoded they would end the segment (PostgREST decodes the name back)."""
    return quote(name, safe="")


def columns_param_part(column: str) -> str:
    """A column for `?columns=`: PostgREST takes a double-quoted name for anything but letters, digits, _ and $."""
    return column if re.fullmatch(r"[\w$]+", column) else '"' + column.replace('"', "") + '"'


def display_part(name: str) -> str:
    """One part in the config notation: bare when it reads back as itself, else double-quoted."""
    return name if _BARE_PART.fullmatch(name) else '"' + name.replace('"', '""') + '"'


def _read_part(text: str, pos: int) -> tuple[str, int]:
    quoted = _QUOTED_PART.match(text, pos)
    if quoted:
        return quoted.group(1).replace('""', '"'), quoted.end()
    bare = _BARE_PART.match(text, pos)
    if bare:
        return bare.group(0), bare.end()
    if text.startswith('"', pos):
        raise ValueError(f"unterminated quoted name in {text!r}")
    raise ValueError(f"expected a name at position {pos + 1} of {text!r}")


@dataclass(frozen=True)
class ParsedName:
    schema: str | None  # None: the default schema (the first of exposed_schemas)
    name: str
    args: tuple[str, ...] | None = None  # `fn(a, b)`: the named arguments; None when no parentheses


def parse_qualified(text: str, *, with_args: bool = False) -> ParsedName:
    """`[schema.]name` (and, for functions, an optional `(arg, ...)`), every part validated as an identifier."""
    stripped = text.strip()
    parts = []
    name, pos = _read_part(stripped, 0)
    parts.append(name)
    if stripped.startswith(".", pos):
        name, pos = _read_part(stripped, pos + 1)
        parts.append(name)
    args: tuple[str, ...] | None = None
    if with_args and stripped.startswith("(", pos):
        found: list[str] = []
        pos += 1
        while True:
            pos = _skip_space(stripped, pos)
            if stripped.startswith(")", pos) and not found:
                pos += 1
                break
            arg, pos = _read_part(stripped, pos)
            found.append(arg)
            pos = _skip_space(stripped, pos)
            if stripped.startswith(",", pos):
                pos += 1
                continue
            if stripped.startswith(")", pos):
                pos += 1
                break
            raise ValueError(f"expected ',' or ')' at position {pos + 1} of {text!r}")
        args = tuple(found)
    if pos != len(stripped):
        what = "[schema.]name or [schema.]name(arg, ...)" if with_args else "[schema.]name"
        raise ValueError(f"not a {what}: {text!r} (quote a name holding '.', '\"', '(', ')', ',' or spaces)")
    for part in (*parts, *(args or ())):
        check_identifier(part)
    schema = parts[0] if len(parts) == 2 else None
    return ParsedName(schema, parts[-1], args)


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos
