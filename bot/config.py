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
    AllowInfNan,
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.core.identifiers import check_identifier, display_part, parse_qualified
from bot.redact import register

DEFAULT_CONFIG_PATH = "config.yaml"
CONFIG_PATH_ENV = "PGRST_OPS_CONFIG"

# Not starting with '-': `--env -h` would be read as an option, so such an environment could never be selected.
ENV_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,31}$")
ENV_VAR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A config file is a few KB; these bound what a hostile or broken one can cost before validation.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_NESTING = 16  # the deepest real key (environments.<env>.maintenance.<n>.start) is 5 levels down
MAX_NODES = 100_000  # YAML aliases count each time they are used: no "billion laughs"
MAX_ERRORS_SHOWN = 5
DAY_S = 86_400

# YAML numbers only: `true` is not 1, quoted text is not a number, and inf/nan are no amount of anything.
Number = Annotated[float, Strict(), AllowInfNan(False)]
Count = Annotated[int, Strict()]


class ConfigError(Exception):
    """A configuration problem, worded for the operator (the key path and what is wrong).

    `key` is the dotted path of the offending key when there is one (for `--json` error documents).
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


INLINE_SECRET_HINT = (
    "never write the secret itself here: put it in an environment variable and write {env: VARIABLE} "
    "(or in a file: {file: /path/to/file})"
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Strict):
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
    connect_s: Number = Field(default=3.0, ge=0.1, le=60)
    read_s: Number = Field(default=5.0, ge=0.1, le=120)
    # Whole-environment budget: a hung environment reports `timeout` after this, never later.
    total_s: Number = Field(default=10.0, ge=0.1, le=300)


class KpiThresholds(_Strict):
    """The reload runbook's KPIs (RUN-002): target and alert threshold, in milliseconds."""

    # Up to 10 minutes: a reload that takes longer is an outage, not a KPI.
    notify_target_ms: Number = Field(default=50, gt=0, le=600_000)
    notify_alert_ms: Number = Field(default=200, gt=0, le=600_000)
    reload_target_ms: Number = Field(default=2000, gt=0, le=600_000)
    reload_alert_ms: Number = Field(default=5000, gt=0, le=600_000)
    api_after_reload_target_ms: Number = Field(default=100, gt=0, le=600_000)
    api_after_reload_alert_ms: Number = Field(default=500, gt=0, le=600_000)


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
    duration_min: Number = Field(ge=1, le=7 * 24 * 60)
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

    @model_validator(mode="after")
    def _checks_something(self) -> EnvironmentConfig:
        """An environment with no check at all would always look healthy: refuse it at start."""
        if not (self.probe_root or self.admin_url or self.probe_tables or self.probe_functions):
            raise ValueError(
                "nothing to check: probe_root is false and there is no admin_url, probe_tables or probe_functions; "
                "add a probe table (the runbook's data check) or set probe_root: true"
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
    retries: Count = Field(default=3, ge=1, le=100)
    delay_s: Number = Field(default=3.0, ge=0.1, le=600)
    first_backoff_ms: Count = Field(default=50, ge=10, le=10_000)
    max_backoff_ms: Count = Field(default=1000, ge=10, le=60_000)
    max_reloads: Count = Field(default=3, ge=1, le=100, description="reloads allowed per window")
    reload_window_s: Count = Field(default=600, ge=10, le=DAY_S)
    db_connect_timeout_s: Number = Field(default=5.0, ge=0.1, le=60)
    db_command_timeout_s: Number = Field(default=5.0, ge=0.1, le=60)
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
    confirm_timeout_s: Number = Field(default=60.0, ge=0.1, le=600, description="protected /reload confirmation")
    # On SIGTERM/SIGINT: how long an in-flight reload may go on before it is marked interrupted.
    shutdown_grace_s: Number = Field(default=10.0, ge=0, le=120)
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


def off_or_an_interval(value: float) -> float:
    """An interval is 0 (off) or at least 1 second: a smaller one would hammer whatever it does."""
    if 0 < value < 1:
        raise ValueError("must be 0 (off) or at least 1 second")
    return value


class MonitorConfig(_Strict):
    interval_s: Number = Field(default=60.0, ge=1, le=DAY_S)
    failure_threshold: Count = Field(default=2, ge=1, le=100)
    success_threshold: Count = Field(default=2, ge=1, le=100)
    # Schema drift (catalog vs what PostgREST serves) is heavier than a probe: run it less often. 0 = off.
    drift_interval_s: Number = Field(default=900.0, ge=0, le=DAY_S)
    # Drift reads the whole OpenAPI root (2.4 MB at 1,000 tables); above this it checks object by object.
    drift_max_body_bytes: Count = Field(default=16 * 1024 * 1024, ge=64 * 1024, le=256 * 1024 * 1024)

    @field_validator("drift_interval_s")
    @classmethod
    def _off_or_an_interval(cls, value: float) -> float:
        return off_or_an_interval(value)


class IncidentsConfig(_Strict):
    """The incident store, reminders, silences, flap suppression and the outbox."""

    # SQLite file (created with its directory); ":memory:" keeps nothing across restarts.
    store_path: str = "pgrst-ops.db"
    reminder_interval_s: Number = Field(default=1800.0, ge=0, le=DAY_S, description="0 = no reminders, else >= 1 s")
    silence_button_s: Number = Field(default=3600.0, ge=60, le=30 * DAY_S)
    max_silence_s: Number = Field(default=7 * DAY_S, ge=60, le=30 * DAY_S)
    flap_flips: Count = Field(default=4, ge=2, le=1000, description="more flips than this within the window = flapping")
    flap_window_s: Number = Field(default=900.0, ge=1, le=DAY_S)
    send_timeout_s: Number = Field(default=15.0, ge=0.1, le=120)
    outbox_retry_s: Number = Field(default=30.0, ge=1, le=3600, description="how often unsent messages are retried")
    webhook_per_2s: Count = Field(default=5, ge=1, le=50)
    webhook_per_min: Count = Field(default=30, ge=1, le=500)

    @field_validator("reminder_interval_s")
    @classmethod
    def _off_or_an_interval(cls, value: float) -> float:
        return off_or_an_interval(value)

    @model_validator(mode="after")
    def _button_within_the_limit(self) -> IncidentsConfig:
        if self.silence_button_s > self.max_silence_s:
            raise ValueError("silence_button_s must not exceed max_silence_s")
        return self


class Settings(_Strict):
    environments: dict[str, EnvironmentConfig]
    recovery: RecoveryConfig = Field(default_factory=RecoveryConfig)
    discord: DiscordConfig = Field(default_factory=DiscordConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    max_body_bytes: Count = Field(default=256 * 1024, ge=1024, le=64 * 1024 * 1024)
    incidents: IncidentsConfig = Field(default_factory=IncidentsConfig)

    @field_validator("environments")
    @classmethod
    def _env_names(cls, value: dict[str, EnvironmentConfig]) -> dict[str, EnvironmentConfig]:
        if not value:
            raise ValueError("at least one environment is required")
        for name in value:
            if not ENV_NAME_RE.fullmatch(name):
                raise ValueError(
                    f"environment name {_shown(name)} must be 1-32 letters, digits, '-' or '_', not starting with '-'"
                )
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


def _shown(value: object, limit: int = 40) -> str:
    """A key or short value for an error line: quoted when not a plain name, cut, never multi-line."""
    text = str(value)
    if re.fullmatch(r"[A-Za-z0-9_-]{1,40}", text):
        return text
    return repr(text[:limit] + ("…" if len(text) > limit else ""))


def _not_a_number(item: Any) -> str | None:
    if item["type"] not in ("int_type", "float_type"):
        return None
    kind = "a whole number" if item["type"] == "int_type" else "a number"
    if isinstance(item.get("input"), bool):
        return f"expected {kind}, not true/false"
    if isinstance(item.get("input"), str):
        # YAML 1.1 reads 1e308 (no dot, unsigned exponent) as text.
        return f"expected {kind}, not text (no quotes; YAML reads 1e3 as text, write 1000 or 1.0e+3)"
    if isinstance(item.get("input"), float) and item["type"] == "int_type":
        return "expected a whole number"
    return None


def _format_validation_error(err: ValidationError) -> str:
    """One line: each problem as `key.path: what is wrong`. Never the value given (it may be a secret)."""
    lines = []
    for item in err.errors():
        path = ".".join(_shown(p) for p in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "required key is missing"
        else:
            message = _not_a_number(item) or item["msg"].removeprefix("Value error, ")
        lines.append(f"{path}: {message}")
    shown = lines[:MAX_ERRORS_SHOWN]
    if len(lines) > MAX_ERRORS_SHOWN:
        shown.append(f"and {len(lines) - MAX_ERRORS_SHOWN} more")
    return " ".join("; ".join(shown).split())  # one line whatever the messages hold


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


class _Refused(Exception):
    """A hazard found while reading the YAML; the message names the key or the line, `key` the dotted key."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


_MERGE_TAG = "tag:yaml.org,2002:merge"
_NULL_TAG = "tag:yaml.org,2002:null"
# `key: #ops-alerts` is a comment: the value is silently empty.
_COMMENT_AS_VALUE_RE = re.compile(r"\s*:[ \t]+#(\S)")


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader that stops composing at MAX_NESTING levels (deeper input would exhaust Python's stack)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                line = self.peek_event().start_mark.line + 1
                raise _Refused(f"nested deeper than {MAX_NESTING} levels at line {line}")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _check_nodes(root: yaml.Node, lines: list[str]) -> None:
    """Refuse what YAML would accept silently: a repeated key (the last wins), a `#...` value read as a
    comment, and aliases that expand beyond MAX_NODES (or into themselves)."""
    stack: list[tuple[yaml.Node, str, int]] = [(root, "", 0)]
    visited = 0
    while stack:
        node, path, depth = stack.pop()
        visited += 1
        if depth > MAX_NESTING:
            raise _Refused(f"YAML aliases nest deeper than {MAX_NESTING} levels (or refer to themselves)")
        if visited > MAX_NODES:
            raise _Refused(f"YAML aliases expand to more than {MAX_NODES} values")
        if isinstance(node, yaml.SequenceNode):
            stack += [(child, f"{path}.{n}" if path else str(n), depth + 1) for n, child in enumerate(node.value)]
        elif isinstance(node, yaml.MappingNode):
            first_line: dict[str, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    stack.append((value_node, path, depth + 1))
                    continue
                if not isinstance(key_node, yaml.ScalarNode):
                    raise _Refused(f"line {key_node.start_mark.line + 1}: keys must be plain names")
                key, line = key_node.value, key_node.start_mark.line + 1
                where = f"{path}.{_shown(key)}" if path else _shown(key)
                if key in first_line:
                    raise _Refused(
                        f"{where}: duplicate key at lines {first_line[key]} and {line} (the last would win)", key=where
                    )
                first_line[key] = line
                _check_empty_value(where, key, key_node, value_node, lines)
                stack.append((value_node, where, depth + 1))


def _check_empty_value(where: str, key: str, key_node: yaml.Node, value_node: yaml.Node, lines: list[str]) -> None:
    if not (isinstance(value_node, yaml.ScalarNode) and value_node.tag == _NULL_TAG and value_node.value == ""):
        return
    mark = key_node.end_mark
    line = lines[mark.line] if mark.line < len(lines) else ""
    if not _COMMENT_AS_VALUE_RE.match(line[mark.column :]):
        return
    if key.endswith("channel_id"):
        hint = "give the channel's numeric id (Discord: right-click the channel, Copy Channel ID), not #name"
    else:
        hint = 'quote it ("#...") if it is a value'
    raise _Refused(f"{where}: YAML reads '#...' as a comment, so the value is empty; {hint}", key=where)


def _yaml_problem(err: yaml.YAMLError, text: str) -> str:
    """The parser's complaint with its line, and a hint for the usual slips."""
    if isinstance(err, yaml.reader.ReaderError):
        line = text.count("\n", 0, err.position) + 1
        return f"YAML syntax error at line {line}: character #x{err.character:04x} is not allowed in YAML"
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(err, "problem", None) or "invalid YAML"
    hint = ""
    if "'\\t'" in problem:  # PyYAML quotes the character with repr()
        hint = ": indent with spaces, not tabs"
    elif "'@'" in problem or "'`'" in problem:
        hint = ": a value may not start with '@' or '`' unless quoted (a Discord role: give its id or plain name)"
    return f"YAML syntax error{where}: {problem}{hint}"


def _read_yaml(path: Path) -> Any:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (use --config or ${CONFIG_PATH_ENV})") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file ({err.strerror})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB: not a pgrst-ops config file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{raw[err.start]:02x} at line {line}); save the file as UTF-8"
        ) from None
    try:
        return _compose_checked(text)
    except _Refused as err:
        raise ConfigError(f"{path}: {err}", key=err.key) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: {_yaml_problem(err, text)}") from None


def _compose_checked(text: str) -> Any:
    loader = _ConfigLoader(text)  # checks for unprintable characters at once
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node, text.splitlines() or [""])
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_settings(path: Path | str | None = None) -> Settings:
    """Read and validate the config file; every failure is a ConfigError with a one-line message."""
    path = Path(path) if path is not None else default_config_path()
    return parse_settings(_read_yaml(path), str(path))
