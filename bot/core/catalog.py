"""The catalog as drift sees it (relations, functions, foreign keys) and the access verdict of the one privilege rule.

Pure data: the SQL that reads it is bot/postgres/catalog.py, the privilege SQL bot/postgres/privileges.py."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum

from bot.core.foreign_keys import ForeignKey


class Access(StrEnum):
    """How much of an object the API roles may use."""

    NONE = "none"  # no API role may use it: GRANT (a reload cannot help)
    RESTRICTED = "restricted"  # some columns only, by column grants: restricted by design, served with those
    FULL = "full"


def relation_access(usable: bool, columns: Sequence[str], usable_columns: Collection[str]) -> Access:
    """The rule's verdict for a relation, from the catalog's answers (RELATION_USABLE, COLUMN_USABLE per column)."""
    if not usable:
        return Access.NONE
    if any(c not in usable_columns for c in columns):
        return Access.RESTRICTED
    return Access.FULL


@dataclass(frozen=True)
class CatalogRelation:
    schema: str
    name: str
    usable: bool  # schema USAGE and a table or column privilege for at least one API role
    columns: tuple[str, ...]  # every column, in order
    usable_columns: frozenset[str]

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def access(self) -> Access:
        return relation_access(self.usable, self.columns, self.usable_columns)

    @property
    def ungranted(self) -> bool:
        """No API role may use it: a GRANT is missing."""
        return self.access is Access.NONE

    @property
    def restricted(self) -> bool:
        """Granted column by column: served with those columns, by design."""
        return self.access is Access.RESTRICTED


@dataclass(frozen=True)
class CatalogFunction:
    schema: str
    name: str
    usable: bool  # schema USAGE and EXECUTE for at least one API role
    required_args: tuple[str, ...]  # named arguments without a default
    unnamed_arg_type: str | None  # the single unnamed argument's type, called through the body

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class Catalog:
    relations: tuple[CatalogRelation, ...]
    functions: tuple[CatalogFunction, ...]
    notes: tuple[str, ...]
    relationships: tuple[ForeignKey, ...] = ()  # foreign keys within one exposed schema
