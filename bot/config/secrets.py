"""Secrets by reference only: SecretRef names an environment variable or a file, never the secret itself;
resolve_secrets and read_optional_secret read them when an environment is used (so a missing prod DSN does not
stop `check --env dev`), and register each value with the log redaction.

Imports pydantic, the config's errors and fields, and bot.redact.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, SecretStr, field_validator, model_validator

from bot.config.errors import ConfigError
from bot.config.fields import StrictModel
from bot.redact import register

if TYPE_CHECKING:
    from bot.config.environment import EnvironmentConfig


ENV_VAR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# How a PostgreSQL DSN is written, for errors about one (in words: no example that looks like a credential).
DSN_SHAPE = "a postgresql:// URL with user, password, host, port and database, or key=value settings"

INLINE_SECRET_HINT = (
    "never write the secret itself here: put it in an environment variable and write {env: VARIABLE} "
    "(or in a file: {file: /path/to/file})"
)


class SecretRef(StrictModel):
    """Where a secret lives: an environment variable or a file. Never the secret itself."""

    env: str | None = Field(default=None, description="name of an environment variable")
    file: Path | None = Field(default=None, description="path of a file holding the secret")

    # Never quote what was written here: a secret pasted in place of a reference would be printed.
    @model_validator(mode="before")
    @classmethod
    def _a_reference(cls, data: Any) -> Any:
        if isinstance(data, str):
            raise ValueError(INLINE_SECRET_HINT)
        if not isinstance(data, dict):
            raise ValueError("expected {env: VARIABLE} or {file: /path/to/file}")
        if set(data) - {"env", "file"}:
            raise ValueError("a secret reference takes only 'env' (variable name) or 'file' (path)")
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' (variable name) or 'file' (path)")
        if self.env is not None and not ENV_VAR_RE.fullmatch(self.env):
            raise ValueError(
                f"'env' takes the name of an environment variable (letters, digits, '_'); {INLINE_SECRET_HINT}"
            )
        return self

    @field_validator("file", mode="before")
    @classmethod
    def _a_path(cls, value: Any) -> Any:
        # Checked before Path() normalises `postgresql://` to `postgresql:/`; describe() prints the path.
        if isinstance(value, str) and ("://" in value or "password=" in value.lower()):
            raise ValueError(f"'file' takes a path, not a URL or DSN; {INLINE_SECRET_HINT}")
        return value

    def describe(self) -> str:
        return f"environment variable {self.env}" if self.env else f"file {self.file}"

    def read(self, environ: Mapping[str, str]) -> SecretStr | None:
        if self.env is not None:
            value = environ.get(self.env, "").strip()
        else:
            assert self.file is not None
            try:
                value = self.file.read_text(encoding="utf-8").strip()
            except OSError:
                return None
        register(value)  # from now on no log line, message or output can show it
        return SecretStr(value) if value else None


@dataclass(frozen=True)
class EnvSecrets:
    api_key: SecretStr | None
    database_dsn: SecretStr | None
    supabase_token: SecretStr | None = None  # the Management API token, when `supabase` is configured


def resolve_secrets(
    name: str, env: EnvironmentConfig, environ: Mapping[str, str] | None = None, *, need_dsn: bool = True
) -> EnvSecrets:
    """Read the secrets an environment refers to; a reference that yields nothing is an error."""
    environ = os.environ if environ is None else environ
    values: dict[str, SecretStr | None] = {}
    for key in ("api_key", "database_dsn"):
        ref: SecretRef | None = getattr(env, key)
        if ref is None or (key == "database_dsn" and not need_dsn):
            values[key] = None
            continue
        secret = ref.read(environ)
        if secret is None:
            raise ConfigError(
                f"environments.{name}.{key}: {ref.describe()} is not set or empty", key=f"environments.{name}.{key}"
            )
        values[key] = secret
    if env.supabase is not None:
        key = f"environments.{name}.supabase.access_token"
        values["supabase_token"] = env.supabase.access_token.read(environ)  # registered with the redaction
        if values["supabase_token"] is None:
            raise ConfigError(f"{key}: {env.supabase.access_token.describe()} is not set or empty", key=key)
    return EnvSecrets(**values)


def read_optional_secret(ref: SecretRef | None, environ: Mapping[str, str] | None = None) -> SecretStr | None:
    """A secret that may be absent (webhook URL, Discord token): None when not set."""
    if ref is None:
        return None
    return ref.read(os.environ if environ is None else environ)
