"""StoreError, and the wording that turns an SQLite or OS error into the cause an operator can act on.

What a store call raises when the store cannot be used (locked, disk full, corrupt, unwritable): callers catch
only StoreError and go on in memory. Imports the standard library only.
"""

from __future__ import annotations

import errno
import sqlite3


class StoreError(Exception):
    """The store cannot be used (locked, disk full, corrupt, unwritable): worded for the operator."""


# SQLite's primary result codes (sqlite3.Error.sqlite_errorname) and errno values, by the cause they name.
_CAUSES: tuple[tuple[frozenset[str], str], ...] = (
    (frozenset({"SQLITE_FULL", "ENOSPC", "EDQUOT"}), "disk full (or the file reached its size limit)"),
    (
        frozenset({"SQLITE_READONLY", "SQLITE_PERM", "EROFS", "EACCES", "EPERM"}),
        "read-only: the file, its directory or its file system cannot be written",
    ),
    (frozenset({"SQLITE_CANTOPEN"}), "cannot open the file"),
    (frozenset({"SQLITE_BUSY", "SQLITE_LOCKED"}), "locked by another process"),
    (frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"}), "corrupt, or not an SQLite database"),
    (frozenset({"SQLITE_IOERR"}), "disk I/O error"),
)


def cause_code(err: BaseException) -> str:
    if isinstance(err, sqlite3.Error):
        name = getattr(err, "sqlite_errorname", "") or ""
        return "_".join(name.split("_")[:2])  # the primary code: SQLITE_READONLY_DIRECTORY -> SQLITE_READONLY
    if isinstance(err, OSError) and err.errno is not None:
        return errno.errorcode.get(err.errno, "")
    return ""


def describe(err: BaseException) -> str:
    """The real cause first (disk full, read-only, locked, corrupt), then SQLite's or the OS's own words."""
    code = cause_code(err)
    text = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
    for codes, cause in _CAUSES:
        if code in codes:
            return f"{cause} ({text})"
    lowered = text.lower()  # an error without a code (older SQLite, a wrapped error)
    if "locked" in lowered or "busy" in lowered:
        return f"locked by another process ({text})"
    if "disk" in lowered and "full" in lowered:
        return f"disk full ({text})"
    if "not a database" in lowered or "malformed" in lowered:
        return f"corrupt, or not an SQLite database ({text})"
    if "readonly" in lowered or "read-only" in lowered:
        return f"read-only: the file, its directory or its file system cannot be written ({text})"
    return f"{type(err).__name__}: {text}"
