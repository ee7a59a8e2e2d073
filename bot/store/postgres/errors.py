"""The wording that turns an asyncpg or OS error into the cause an operator can act on, never showing the DSN.

Imports asyncpg's error classes, the redaction and the standard library.
"""

from __future__ import annotations

import asyncpg

from bot.config.secrets import DSN_SHAPE
from bot.redact import scrub

# PostgreSQL's SQLSTATE codes (or their two-character class), by the cause they name.
_CAUSES: tuple[tuple[frozenset[str], str], ...] = (
    (frozenset({"28P01", "28000"}), "the server refused the user or its password"),
    (frozenset({"3D000"}), "the database does not exist"),
    (
        frozenset({"42501"}),
        "permission denied: the store's role needs CREATE on the database (for its schema) or on the schema",
    ),
    (frozenset({"57P03"}), "the server is starting up or shutting down"),
    (frozenset({"57P01", "57P02"}), "the server shut down or ended the session"),
    (frozenset({"53300"}), "too many connections to the server"),
    (frozenset({"53100"}), "disk full on the database server"),
    (frozenset({"25006"}), "read-only: the server is a standby, or the database is read-only"),
    (frozenset({"57014"}), "a statement was cancelled (statement_timeout, or an administrator)"),
    (frozenset({"55P03", "40P01"}), "locked by another session"),
    (frozenset({"08"}), "the connection to the server failed"),
)


def describe_pg(err: BaseException, dsn: str = "") -> str:
    """The real cause first, then asyncpg's or the OS's own words, with the DSN and its password removed."""
    if isinstance(err, asyncpg.PostgresError):
        state = getattr(err, "sqlstate", "") or ""
        cause = next((c for codes, c in _CAUSES if state in codes or state[:2] in codes), "")
    elif isinstance(err, ValueError):  # asyncpg's ClientConfigurationError too
        cause = f"the DSN cannot be read (expected {DSN_SHAPE})"
    elif isinstance(err, asyncpg.InterfaceError):
        cause = "the connection to the server was lost" if "connection" in str(err).lower() else ""
    elif isinstance(err, TimeoutError):
        cause = "no answer from the server in time"
    elif isinstance(err, OSError):
        cause = "cannot reach the server"
    else:
        cause = ""
    text = (err.strerror if isinstance(err, OSError) and err.strerror and not str(err) else str(err)) or ""
    words = f"{type(err).__name__}: {text}" if text else type(err).__name__
    described = f"{cause} ({words})" if cause else words
    return scrub(described, (dsn,) if dsn else ())
