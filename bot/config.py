"""Configuration: a YAML file validated by pydantic, secrets only by reference.

The file names environment variables (or files) that hold secrets; the values are read when an
environment is used, so a missing prod DSN does not stop `check --env dev`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.identifiers import check_identifier, display_part, parse_qualified
from bot.redact import register

DEFAULT_CONFIG_PATH = "config.yaml"
CONFIG_PATH_ENV = "PGRST_OPS_CONFIG"

ENV_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class ConfigError(Exception):
    """A configuration problem, worded for the operator (the key path and what is wrong).

    `key` is the dotted path of the offending key when there is one (for `--json` error documents).
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Strict):
    """Where a secret lives: an environment variable or a file. Never the secret itself."""

    env: str | None = Field(default=None, description="name of an environment variable")
    file: Path | None = Field(default=None, description="path of a file holding the secret")

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' (variable name) or 'file' (path)")
        if self.env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.env):
            # never echoed: what was written there may be the secret itself (a DSN or a key pasted inline)
            raise ValueError("'env' must be the name of an environment variable (letters, digits, _), not a value")
        return self

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


class _ProbeObject(_Strict):
    """A table or function named `[schema.]name` in the config; the schema defaults to the first exposed one."""

    name: str = Field(description="the object's own name, without its schema")
    schema_name: str | None = Field(default=None, description="its schema; None = the first of exposed_schemas")

    @field_validator("name", "schema_name")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        return None if value is None else check_identifier(value)

    def schema_in(self, env: EnvironmentConfig) -> str:
        return self.schema_name or env.default_schema

    def display(self, env: EnvironmentConfig) -> str:
        """The name as the config writes it, qualified only outside the default schema (labels, check names)."""
        schema = self.schema_in(env)
        bare = display_part(self.name)
        return bare if schema == env.default_schema else f"{display_part(schema)}.{bare}"


def _parsed_entry(value: Any, *, with_args: bool) -> Any:
    """A config entry (`"schema.name"` or a mapping whose `name` is one) as the fields of a probe object."""
    entry = {"name": value} if isinstance(value, str) else value
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        return value  # let the model say what is wrong
    parsed = parse_qualified(entry["name"], with_args=with_args)
    fields = {**entry, "name": parsed.name}
    if parsed.schema is not None:
        if entry.get("schema_name") not in (None, parsed.schema):
            raise ValueError(f"{entry['name']!r} names schema {parsed.schema!r}, schema_name says otherwise")
        fields["schema_name"] = parsed.schema
    if parsed.args is not None:
        fields["args"] = list(parsed.args)
    return fields


class ProbeTable(_ProbeObject):
    """A table (or view) the data and staleness checks read: `name`, `schema.name`, `"Odd ""name"".x`."""

    select: str = Field(default="*", description="PostgREST select list for the data check")
    columns: list[str] = Field(
        default_factory=list,
        description="columns whose presence in the schema cache is checked (empty insert, writes nothing)",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_notation(cls, value: Any) -> Any:
        return _parsed_entry(value, with_args=False)

    @field_validator("columns")
    @classmethod
    def _column_names(cls, value: list[str]) -> list[str]:
        return [check_identifier(c) for c in value]


class ProbeFunction(_ProbeObject):
    """A function the RPC check looks up: `name`, `schema.name` or `name(a, b)` naming its required arguments."""

    args: list[str] = Field(default_factory=list, description="required arguments (the probe sends them empty)")

    @model_validator(mode="before")
    @classmethod
    def _from_notation(cls, value: Any) -> Any:
        return _parsed_entry(value, with_args=True)

    @field_validator("args")
    @classmethod
    def _argument_names(cls, value: list[str]) -> list[str]:
        return [check_identifier(a) for a in value]


class Timeouts(_Strict):
    connect_s: float = Field(default=3.0, gt=0, le=60)
    read_s: float = Field(default=5.0, gt=0, le=120)
    # Whole-environment budget: a hung environment reports `timeout` after this, never later.
    total_s: float = Field(default=10.0, gt=0, le=300)


class KpiThresholds(_Strict):
    """The reload runbook's KPIs (RUN-002): target and alert threshold, in milliseconds."""

    notify_target_ms: float = Field(default=50, gt=0)
    notify_alert_ms: float = Field(default=200, gt=0)
    reload_target_ms: float = Field(default=2000, gt=0)
    reload_alert_ms: float = Field(default=5000, gt=0)
    api_after_reload_target_ms: float = Field(default=100, gt=0)
    api_after_reload_alert_ms: float = Field(default=500, gt=0)


class SchemaVersionGuard(_Strict):
    """The application's expected schema version against the database's (pipeline runbook RUN-003)."""

    expected: str | None = Field(default=None, description="expected version, e.g. 1.4.0 or 20260101120000")
    expected_env: str | None = Field(default=None, description="environment variable holding the expected version")
    # Default: the newest version in supabase_migrations.schema_migrations.
    query: str | None = Field(default=None, description="SQL returning the database's version in one column")

    @model_validator(mode="after")
    def _one_source(self) -> SchemaVersionGuard:
        if not self.expected and not self.expected_env:
            raise ValueError("set expected or expected_env")
        return self


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class MaintenanceWindow(_Strict):
    """A weekly window (e.g. sun 02:00 for 90 min, Europe/Paris) during which alerts are held, as when silenced."""

    weekday: str = Field(description="mon, tue, wed, thu, fri, sat or sun")
    start: str = Field(description="local start time, HH:MM")
    duration_min: float = Field(gt=0, le=7 * 24 * 60)
    timezone: str = "UTC"
    reason: str = "scheduled maintenance"

    @field_validator("weekday")
    @classmethod
    def _weekday(cls, value: str) -> str:
        day = value.strip().lower()[:3]
        if day not in WEEKDAYS:
            raise ValueError(f"weekday must be one of {', '.join(WEEKDAYS)}, got {value!r}")
        return day

    @field_validator("start")
    @classmethod
    def _start(cls, value: str) -> str:
        match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", value.strip())
        if not match:
            raise ValueError(f"start must be HH:MM (24 h), got {value!r}")
        return f"{int(match[1]):02d}:{match[2]}"

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Paris)") from None
        return value


class EnvironmentConfig(_Strict):
    rest_url: AnyHttpUrl
    admin_url: AnyHttpUrl | None = None
    probe_tables: list[ProbeTable] = Field(default_factory=list)
    probe_root: bool = True
    probe_functions: list[ProbeFunction] = Field(default_factory=list)
    notify_channel: str = "pgrst"
    dashboard_url: AnyHttpUrl | None = None
    restart_url: AnyHttpUrl | None = None
    protected: bool = False
    auto_recover: bool = True
    reload_role: str | None = None
    timeouts: Timeouts = Field(default_factory=Timeouts)
    api_key: SecretRef | None = None
    database_dsn: SecretRef | None = None
    # PostgREST's db-schemas and the roles requests run as: what "exposed" means for diagnosis and drift.
    exposed_schemas: list[str] = Field(default_factory=lambda: ["public"], min_length=1)
    api_roles: list[str] = Field(default_factory=lambda: ["anon", "authenticated"], min_length=1)
    # The role PostgREST logs in as (its pg_db_role_setting values apply at every reload).
    authenticator_role: str = "authenticator"
    schema_version: SchemaVersionGuard | None = None
    maintenance: list[MaintenanceWindow] = Field(default_factory=list)

    @field_validator("exposed_schemas", "api_roles")
    @classmethod
    def _identifiers(cls, value: list[str]) -> list[str]:
        return [check_identifier(name) for name in value]

    @field_validator("authenticator_role")
    @classmethod
    def _identifier(cls, value: str) -> str:
        return check_identifier(value)

    @model_validator(mode="after")
    def _probe_schemas_exposed(self) -> EnvironmentConfig:
        """A probe outside db-schemas could only ever answer PGRST106: say so at start, naming the key."""
        entries: list[tuple[str, _ProbeObject]] = [(f"probe_tables.{i}", t) for i, t in enumerate(self.probe_tables)]
        entries += [(f"probe_functions.{i}", f) for i, f in enumerate(self.probe_functions)]
        for key, entry in entries:
            if entry.schema_name is not None and entry.schema_name not in self.exposed_schemas:
                raise ValueError(
                    f"{key}: schema {entry.schema_name!r} is not in exposed_schemas "
                    f"({', '.join(self.exposed_schemas)}); add it there (and to PostgREST's db-schemas)"
                )
        return self

    @field_validator("notify_channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", value):
            raise ValueError(f"not a valid NOTIFY channel name: {value!r}")
        return value

    @property
    def default_schema(self) -> str:
        """Where PostgREST looks for a name no profile header qualifies: the first of db-schemas."""
        return self.exposed_schemas[0]

    @property
    def rest_base(self) -> str:
        return str(self.rest_url).rstrip("/")

    @property
    def admin_base(self) -> str | None:
        return str(self.admin_url).rstrip("/") if self.admin_url else None


class RecoveryConfig(_Strict):
    retries: int = Field(default=3, ge=1, le=100)
    delay_s: float = Field(default=3.0, gt=0, le=600)
    first_backoff_ms: int = Field(default=50, ge=10, le=10_000)
    max_backoff_ms: int = Field(default=1000, ge=10, le=60_000)
    max_reloads: int = Field(default=3, ge=1, le=100, description="reloads allowed per window")
    reload_window_s: int = Field(default=600, ge=10, le=86_400)
    db_connect_timeout_s: float = Field(default=5.0, gt=0, le=60)
    db_command_timeout_s: float = Field(default=5.0, gt=0, le=60)
    kpi: KpiThresholds = Field(default_factory=KpiThresholds)

    @property
    def deadline_s(self) -> float:
        """The runbook's budget for re-checks: retries x delay."""
        return self.retries * self.delay_s


class DiscordConfig(_Strict):
    token: SecretRef = Field(default_factory=lambda: SecretRef(env="DISCORD_TOKEN"))
    guild_ids: list[int] = Field(default_factory=list)
    ops_channel_id: int | None = None
    ops_role: str = "ops"
    alert_role_id: int | None = None
    confirm_timeout_s: float = Field(default=60.0, gt=0, le=600, description="protected /reload confirmation")
    webhook_url: SecretRef | None = None


class MonitorConfig(_Strict):
    interval_s: float = Field(default=60.0, ge=1, le=86_400)
    failure_threshold: int = Field(default=2, ge=1, le=100)
    success_threshold: int = Field(default=2, ge=1, le=100)
    # Schema drift (catalog vs what PostgREST serves) is heavier than a probe: run it less often. 0 = off.
    drift_interval_s: float = Field(default=900.0, ge=0, le=86_400)
    # Drift reads the whole OpenAPI root (2.4 MB at 1,000 tables); above this it checks object by object.
    drift_max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=64 * 1024, le=256 * 1024 * 1024)


class IncidentsConfig(_Strict):
    """The incident store, reminders, silences, flap suppression and the outbox."""

    # SQLite file (created with its directory); ":memory:" keeps nothing across restarts.
    store_path: str = "pgrst-ops.db"
    reminder_interval_s: float = Field(default=1800.0, ge=0, le=86_400, description="0 = no reminders")
    silence_button_s: float = Field(default=3600.0, gt=0, le=7 * 86_400)
    max_silence_s: float = Field(default=7 * 86_400, gt=0)
    flap_flips: int = Field(default=4, ge=2, le=1000, description="more flips than this within the window = flapping")
    flap_window_s: float = Field(default=900.0, gt=0, le=86_400)
    send_timeout_s: float = Field(default=15.0, gt=0, le=120)
    outbox_retry_s: float = Field(default=30.0, gt=0, le=3600, description="how often unsent messages are retried")
    webhook_per_2s: int = Field(default=5, ge=1, le=50)
    webhook_per_min: int = Field(default=30, ge=1, le=500)


class Settings(_Strict):
    environments: dict[str, EnvironmentConfig]
    recovery: RecoveryConfig = Field(default_factory=RecoveryConfig)
    discord: DiscordConfig = Field(default_factory=DiscordConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    max_body_bytes: int = Field(default=256 * 1024, ge=1024, le=64 * 1024 * 1024)
    incidents: IncidentsConfig = Field(default_factory=IncidentsConfig)

    @field_validator("environments")
    @classmethod
    def _env_names(cls, value: dict[str, EnvironmentConfig]) -> dict[str, EnvironmentConfig]:
        if not value:
            raise ValueError("at least one environment is required")
        for name in value:
            if not ENV_NAME_RE.fullmatch(name):
                raise ValueError(f"environment name {name!r} must be 1-32 letters, digits, '-' or '_'")
        return value

    def select(self, names: list[str] | None) -> dict[str, EnvironmentConfig]:
        """The environments asked for (all when none), or ConfigError naming the unknown one."""
        if not names:
            return dict(self.environments)
        unknown = [n for n in names if n not in self.environments]
        if unknown:
            known = ", ".join(sorted(self.environments))
            raise ConfigError(f"unknown environment {unknown[0]!r} (configured: {known})", key="environments")
        return {n: self.environments[n] for n in dict.fromkeys(names)}


@dataclass(frozen=True)
class EnvSecrets:
    api_key: SecretStr | None
    database_dsn: SecretStr | None


@dataclass(frozen=True)
class Target:
    """One environment ready to use: its config and its resolved secrets."""

    name: str
    config: EnvironmentConfig
    secrets: EnvSecrets


def resolve_targets(
    settings: Settings,
    names: list[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    need_dsn: bool = True,
) -> list[Target]:
    """Targets for the named environments; `need_dsn=False` for probes, which never touch the database."""
    return [
        Target(n, env, resolve_secrets(n, env, environ, need_dsn=need_dsn)) for n, env in settings.select(names).items()
    ]


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
    return EnvSecrets(**values)


def read_optional_secret(ref: SecretRef | None, environ: Mapping[str, str] | None = None) -> SecretStr | None:
    """A secret that may be absent (webhook URL, Discord token): None when not set."""
    if ref is None:
        return None
    return ref.read(os.environ if environ is None else environ)


def _format_validation_error(err: ValidationError) -> str:
    lines = []
    for item in err.errors():
        path = ".".join(str(p) for p in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "required key is missing"
        else:
            message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{path}: {message}")
    return "; ".join(lines)


def parse_settings(data: Any, source: str = "config") -> Settings:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level (with an 'environments' key)")
    try:
        return Settings.model_validate(data)
    except ValidationError as err:
        first = ".".join(str(p) for p in err.errors()[0]["loc"]) if err.errors() else None
        raise ConfigError(f"{source}: {_format_validation_error(err)}", key=first or None) from None


def default_config_path() -> Path:
    return Path(os.environ.get(CONFIG_PATH_ENV) or DEFAULT_CONFIG_PATH)


def load_settings(path: Path | str | None = None) -> Settings:
    """Read and validate the config file; every failure is a ConfigError with a readable message."""
    path = Path(path) if path is not None else default_config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (use --config or ${CONFIG_PATH_ENV})") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file ({err.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: YAML syntax error{where}: {problem}") from None
    return parse_settings(data, str(path))
