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
from typing import Annotated, Any

import yaml
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

DEFAULT_CONFIG_PATH = "config.yaml"
CONFIG_PATH_ENV = "PGRST_OPS_CONFIG"

ENV_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
TABLE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
# A function to probe: `name`, or `name(arg, ...)` naming its required arguments (the probe sends them empty).
FUNCTION_RE = re.compile(
    r"^[A-Za-z_][A-Za-z0-9_$]*(\(\s*([A-Za-z_][A-Za-z0-9_$]*\s*(,\s*[A-Za-z_][A-Za-z0-9_$]*\s*)*)?\))?$"
)


def split_function(entry: str) -> tuple[str, list[str]]:
    """`add(a, b)` -> ("add", ["a", "b"])."""
    name, _, rest = entry.partition("(")
    return name.strip(), [a.strip() for a in rest.rstrip(")").split(",") if a.strip()]


class ConfigError(Exception):
    """A configuration problem, worded for the operator (the key path and what is wrong)."""


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
            raise ValueError(f"'env' must be an environment variable name, got {self.env!r}")
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
        return SecretStr(value) if value else None


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


class ProbeTable(_Strict):
    """A table (or view) the data and staleness checks read."""

    name: str
    select: str = Field(default="*", description="PostgREST select list for the data check")
    columns: list[str] = Field(
        default_factory=list,
        description="columns whose presence in the schema cache is checked (empty insert, writes nothing)",
    )

    @field_validator("name")
    @classmethod
    def _table_name(cls, value: str) -> str:
        if not TABLE_NAME_RE.fullmatch(value):
            raise ValueError(f"not a plain table name: {value!r}")
        return value


def _table_from_string(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


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
    probe_functions: list[str] = Field(default_factory=list)
    notify_channel: str = "pgrst"
    dashboard_url: AnyHttpUrl | None = None
    restart_url: AnyHttpUrl | None = None
    protected: bool = False
    auto_recover: bool = True
    reload_role: RoleRef | None = None  # who may /reload this environment (default: discord.ops_role)
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

    @field_validator("probe_tables", mode="before")
    @classmethod
    def _tables(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [_table_from_string(v) for v in value]
        return value

    @field_validator("probe_functions")
    @classmethod
    def _functions(cls, value: list[str]) -> list[str]:
        for entry in value:
            if not FUNCTION_RE.fullmatch(entry):
                raise ValueError(f"not a function name or name(arg, ...): {entry!r}")
        return value

    @field_validator("exposed_schemas", "api_roles", "authenticator_role")
    @classmethod
    def _identifiers(cls, value: Any) -> Any:
        for name in value if isinstance(value, list) else [value]:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]{0,62}", name):
                raise ValueError(f"not a plain PostgreSQL identifier: {name!r}")
        return value

    @field_validator("notify_channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", value):
            raise ValueError(f"not a valid NOTIFY channel name: {value!r}")
        return value

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
    # The servers the bot answers in (commands are registered there only). Required with a token.
    guild_ids: list[Snowflake] = Field(default_factory=list, max_length=50)
    ops_channel_id: Snowflake | None = None
    ops_role: RoleRef = "ops"
    alert_role_id: RoleRef | None = None
    confirm_timeout_s: float = Field(default=60.0, gt=0, le=600, description="protected /reload confirmation")
    # On SIGTERM/SIGINT: how long an in-flight reload may go on before it is marked interrupted.
    shutdown_grace_s: float = Field(default=10.0, ge=0, le=120)
    webhook_url: SecretRef | None = None

    @field_validator("guild_ids")
    @classmethod
    def _unique_guilds(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError("a guild id is listed twice")
        return value

    @property
    def alert_mention_id(self) -> int | None:
        """The role to ping in alerts, once it is an id (the bot resolves a name at start; the CLI cannot)."""
        return self.alert_role_id if isinstance(self.alert_role_id, int) else None

    def require_guilds(self) -> None:
        """The bot (with a token) answers only in named servers: no global commands, no DMs."""
        if not self.guild_ids:
            raise ConfigError(
                "discord.guild_ids: required when the bot runs with a Discord token: the ids of the servers "
                "whose members may use its commands (Server Settings > Widget, or right-click the server > Copy ID)"
            )


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
            raise ConfigError(f"unknown environment {unknown[0]!r} (configured: {known})")
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
            raise ConfigError(f"environments.{name}.{key}: {ref.describe()} is not set or empty")
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
        raise ConfigError(f"{source}: {_format_validation_error(err)}") from None


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
