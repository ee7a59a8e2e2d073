"""ConfigError, the one exception a configuration problem raises, and `shown_value`, how a key or value
appears in its message (quoted when not a plain name, cut, never multi-line).

Imports nothing of the bot.
"""

from __future__ import annotations

import re


class ConfigError(Exception):
    """A configuration problem, worded for the operator (the key path and what is wrong).

    `key` is the dotted path of the offending key when there is one (for `--json` error documents).
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def shown_value(value: object, limit: int = 40) -> str:
    """A key or short value for an error line: quoted when not a plain name, cut, never multi-line."""
    text = str(value)
    if re.fullmatch(r"[A-Za-z0-9_-]{1,40}", text):
        return text
    return repr(text[:limit] + ("…" if len(text) > limit else ""))
