"""A foreign key as PostgREST embeds it (pure): read by bot/postgres/relationships.py, remembered and compared
by the drift rules of bot/core. Imports nothing of bot.
"""

from __future__ import annotations

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
