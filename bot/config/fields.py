"""The building blocks of the config models: the strict base model (unknown keys refused, frozen), YAML-only
numbers, Discord ids and role references (an alert role may also be `none`: no ping), http(s) URLs, and the
"0 = off, else at least 1 second" interval rule.

Imports pydantic only.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, AllowInfNan, BaseModel, BeforeValidator, ConfigDict, Strict

DAY_S = 86_400

# YAML numbers only: `true` is not 1, quoted text is not a number, and inf/nan are no amount of anything.
Number = Annotated[float, Strict(), AllowInfNan(False)]
Count = Annotated[int, Strict()]


class StrictModel(BaseModel):
    """Every config section: an unknown key is an error (a typo never goes unnoticed), and values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# Discord ids are snowflakes: 17 to 20 decimal digits (the 2015 epoch makes shorter ones impossible today).
SNOWFLAKE_MIN = 10**16
SNOWFLAKE_MAX = 2**64 - 1
ROLE_NAME_MAX = 100  # Discord's limit for a role name


def _snowflake(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("must be a Discord id (17-20 digits)")
    text = str(value).strip()
    if not text.isdigit() or not SNOWFLAKE_MIN <= int(text) <= SNOWFLAKE_MAX:
        raise ValueError(f"must be a Discord id (17-20 digits), got {text[:30]!r}")
    return int(text)


def _role_ref(value: Any) -> int | str:
    """A role: its id (preferred; an int or a string of digits), or its exact name, resolved at start."""
    if isinstance(value, str) and not value.strip().isdigit():
        name = value.strip()
        if not name or len(name) > ROLE_NAME_MAX:
            raise ValueError(f"a role name has 1-{ROLE_NAME_MAX} characters")
        if name.startswith("@"):
            raise ValueError(f"write the role's id, or its name without '@' ({name[1:][:50]!r})")
        return name
    return _snowflake(value)


Snowflake = Annotated[int, BeforeValidator(_snowflake)]

# A role id, or a role name that the bot resolves to exactly one id in each configured guild at start.
RoleRef = Annotated[int | str, BeforeValidator(_role_ref)]

# An environment's alert_role may also say "ping nobody" (distinct from leaving the key out: the global role).
NO_PING = "none"


def _alert_role_ref(value: Any) -> int | str:
    if value is False or (isinstance(value, str) and value.strip().lower() == NO_PING):
        return NO_PING  # a role really named "none" is given by its id
    return _role_ref(value)


AlertRoleRef = Annotated[int | str, BeforeValidator(_alert_role_ref)]


def off_or_an_interval(value: float) -> float:
    """An interval is 0 (off) or at least 1 second: a smaller one would hammer whatever it does."""
    if 0 < value < 1:
        raise ValueError("must be 0 (off) or at least 1 second")
    return value


def off_or_a_poll(value: float) -> float:
    """A poll of the database is 0 (off) or at least 0.1 s: it is one cheap query, but not a spin."""
    if 0 < value < 0.1:
        raise ValueError("must be 0 (off) or at least 0.1 seconds")
    return value


# Seconds that may also be 0 for "off": an interval (at least 1 s) or a database poll (at least 0.1 s).
OffOrInterval = Annotated[float, Strict(), AllowInfNan(False), AfterValidator(off_or_an_interval)]
OffOrPoll = Annotated[float, Strict(), AllowInfNan(False), AfterValidator(off_or_a_poll)]


# -- URLs ---------------------------------------------------------------------------------------------------
URL_MAX = 2083  # the longest URL browsers accept (pydantic's URL types used the same bound)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._")


def _host(hostname: str) -> str:
    """The host as a URL writes it: lower case, IDNA-encoded, an IPv6 address in brackets; ValueError if none."""
    if ":" in hostname:
        return f"[{ipaddress.IPv6Address(hostname)}]"  # urlsplit strips the brackets and lower-cases
    if not hostname.isascii():
        hostname = hostname.encode("idna").decode("ascii")  # UnicodeError is a ValueError
    if not hostname.strip(".") or not set(hostname) <= _HOST_CHARS:
        raise ValueError(hostname)
    return hostname


def http_url(value: Any) -> str:
    """An absolute http(s) URL, normalised: scheme and host lower case, the scheme's default port dropped, an
    empty path written `/`. The error never repeats the value (a URL may carry a password).

    Checked with the standard library: pydantic's URL types import its e-mail and package-metadata code, ~25 ms
    of every CLI start (bench/README.md "Start-up")."""
    if not isinstance(value, str):
        raise ValueError("must be a URL (text), e.g. https://<project>.supabase.co/rest/v1")
    text = value.strip()
    if not text or len(text) > URL_MAX or any(c.isspace() or not c.isprintable() for c in text):
        raise ValueError(f"must be one URL of at most {URL_MAX} characters, without spaces")
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not text[len(scheme) :].startswith("://"):
        raise ValueError("must be an absolute URL starting with http:// or https://")
    try:
        host = _host(parts.hostname or "")
        port = parts.port
    except ValueError:
        raise ValueError("is not a valid URL: check its host and port") from None
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (f"{userinfo}@" if userinfo else "") + host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    url = f"{scheme}://{netloc}{parts.path or '/'}"
    if parts.query:
        url += f"?{parts.query}"
    return url + (f"#{parts.fragment}" if parts.fragment else "")


# An absolute http(s) URL, kept as its normalised text.
HttpUrl = Annotated[str, Strict(), AfterValidator(http_url)]
