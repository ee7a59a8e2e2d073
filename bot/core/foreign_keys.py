"""A foreign key as PostgREST embeds it, and the select that embeds exactly it (pure).

Read from the catalog by bot/postgres/relationships.py, asked about by bot/postgrest/served.py, remembered and
compared by the drift rules of bot/core. Imports nothing of bot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ForeignKey:
    """A foreign key from `table` to `other`, both in `schema`, as an embed names it."""

    schema: str
    table: str
    other: str
    constraint: str
    column: str  # the first referencing column
    other_column: str  # the first referenced column

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}→{self.other} ({self.constraint})"


def _select_identifier(name: str) -> str:
    """A name as PostgREST's select grammar reads it: plain names as they are, others double-quoted."""
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else '"' + name.replace('"', "") + '"'


def embed_select(fk: ForeignKey) -> str:
    """`select=` that embeds exactly this foreign key (the constraint as hint: never ambiguous)."""
    col, other_col = _select_identifier(fk.column), _select_identifier(fk.other_column)
    return f"{col},{_select_identifier(fk.other)}!{_select_identifier(fk.constraint)}({other_col})"
