"""One home for secret values: every secret read from the config registers here, and `scrub` removes them.

What is removed: each registered value, its URL-encoded forms, the password of a DSN (URL or key=value form,
raw and encoded) and the token part of a webhook URL (`.../webhooks/<id>/<token>`). The log filter applies it
to every record (message, arguments, exception text and traceback); the outbox and the webhook apply it to
payloads before they are sent; the CLI to what it prints.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlsplit

from pydantic import SecretStr

MASK = "***"
# Shorter values would blank out ordinary words in every log line; a secret that short protects nothing anyway.
MIN_SECRET_CHARS = 6

_WEBHOOK_TOKEN = re.compile(r"/webhooks/\d+/([^/?#\s]+)")
_KV_PASSWORD = re.compile(r"password\s*=\s*(\S+)")

_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()
_pattern: re.Pattern[str] | None = None


def dsn_password(dsn: str) -> str | None:
    """The password of a URL DSN (`postgresql://u:p@h/db`) or a key=value one (`password=p`), decoded."""
    try:
        password = urlsplit(dsn).password
    except ValueError:
        password = None
    if password is None:
        match = _KV_PASSWORD.search(dsn)
        password = match.group(1).strip("'\"") if match else None
    return unquote(password) if password else None


def secret_forms(value: str, min_chars: int = MIN_SECRET_CHARS) -> set[str]:
    """Every spelling of a secret that may turn up in a message: raw, URL-encoded, its password, its token."""
    parts = {value}
    password = dsn_password(value) if ("://" in value or "password" in value) else None
    if password:
        parts.add(password)
    token = _WEBHOOK_TOKEN.search(value)
    if token:
        parts |= {token.group(1), unquote(token.group(1))}
    forms = set()
    for part in parts:
        forms |= {part, quote(part, safe=""), quote_plus(part), quote(part)}
    return {f for f in forms if len(f) >= min_chars}


def register(value: str | SecretStr | None) -> None:
    """Remember a secret (and its other spellings) so nothing shows it from now on."""
    global _secrets, _pattern
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    if not raw:
        return
    forms = secret_forms(raw)
    with _lock:
        if forms <= _secrets:
            return
        _secrets = _secrets | forms
        # longest first: a DSN is removed whole before its password is looked for
        _pattern = re.compile("|".join(re.escape(s) for s in sorted(_secrets, key=len, reverse=True)))


def scrub(text: str, extra: Iterable[str] = ()) -> str:
    """`text` without any registered secret, nor the `extra` ones (not remembered; masked whatever their length)."""
    pattern = _pattern
    if pattern is not None and text:
        text = pattern.sub(MASK, text)
    for value in extra:
        for form in sorted(secret_forms(value, 1), key=len, reverse=True):
            text = text.replace(form, MASK)
    return text


def redact(text: str, dsn: str) -> str:
    """Remove the DSN and its password from a message, in any encoding we know of."""
    return scrub(text, (dsn,))


def scrub_payload(payload: Any) -> Any:
    """A message payload (nested dicts, lists, strings) with every string scrubbed; other values unchanged."""
    if _pattern is None:
        return payload
    if isinstance(payload, str):
        return scrub(payload)
    if isinstance(payload, dict):
        return {key: scrub_payload(value) for key, value in payload.items()}
    if isinstance(payload, list):
        return [scrub_payload(value) for value in payload]
    return payload


class RedactingFilter(logging.Filter):
    """Rewrites each record so no handler can show a secret: message and arguments, exception and stack text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _pattern is None:
            return True
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the format: the handler reports that, we must not raise
            message = f"{record.msg!s} {record.args!r}"
        record.msg, record.args = scrub(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
            record.exc_info = None  # a handler would format the raw traceback again otherwise
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


def install_log_filter(logger: logging.Logger | None = None) -> None:
    """Put the filter on every handler of the root logger (filters on a logger miss propagated records)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
