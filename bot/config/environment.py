"""One environment's configuration: its URLs, probe tables and functions (`[schema.]name` notation), timeouts,
KPI thresholds, the schema-version guard, maintenance windows, where its alerts go and its secret references.

Imports pydantic, bot.core.identifiers, and the config's fields and secrets.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from bot.config.fields import AlertRoleRef, HttpUrl, Number, OffOrInterval, OffOrPoll, RoleRef, Snowflake, StrictModel
from bot.config.secrets import SecretRef
from bot.core.identifiers import check_identifier, display_part, parse_qualified


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


class _ProbeObject(StrictModel):
    """A table or function named `[schema.]name` in the config; the schema defaults to the first exposed one."""

    name: str = Field(description="the object's own name, without its schema")
    schema_name: str | None = Field(default=None, description="its schema; None = the first of exposed_schemas")
    takes_args: ClassVar[bool] = False  # only a function names its arguments: `name(a, b)`

    @model_validator(mode="before")
    @classmethod
    def _from_notation(cls, value: Any) -> Any:
        return _parsed_entry(value, with_args=cls.takes_args)

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


class ProbeTable(_ProbeObject):
    """A table (or view) the data and staleness checks read: `name`, `schema.name`, `"Odd ""name"".x`."""

    select: str = Field(default="*", description="PostgREST select list for the data check")
    columns: list[str] = Field(
        default_factory=list,
        description="columns whose presence in the schema cache is checked (empty insert, writes nothing)",
    )

    @field_validator("columns")
    @classmethod
    def _column_names(cls, value: list[str]) -> list[str]:
        return [check_identifier(c) for c in value]


class ProbeFunction(_ProbeObject):
    """A function the RPC check looks up: `name`, `schema.name` or `name(a, b)` naming its required arguments."""

    args: list[str] = Field(default_factory=list, description="required arguments (the probe sends them empty)")
    takes_args: ClassVar[bool] = True

    @field_validator("args")
    @classmethod
    def _argument_names(cls, value: list[str]) -> list[str]:
        return [check_identifier(a) for a in value]


class Timeouts(StrictModel):
    connect_s: Number = Field(default=3.0, ge=0.1, le=60)
    read_s: Number = Field(default=5.0, ge=0.1, le=120)
    # Whole-environment budget: a hung environment reports `timeout` after this, never later.
    total_s: Number = Field(default=10.0, ge=0.1, le=300)


class KpiThresholds(StrictModel):
    """The reload runbook's KPIs (RUN-002): target and alert threshold, in milliseconds."""

    # Up to 10 minutes: a reload that takes longer is an outage, not a KPI.
    notify_target_ms: Number = Field(default=50, gt=0, le=600_000)
    notify_alert_ms: Number = Field(default=200, gt=0, le=600_000)
    reload_target_ms: Number = Field(default=2000, gt=0, le=600_000)
    reload_alert_ms: Number = Field(default=5000, gt=0, le=600_000)
    api_after_reload_target_ms: Number = Field(default=100, gt=0, le=600_000)
    api_after_reload_alert_ms: Number = Field(default=500, gt=0, le=600_000)


class SchemaVersionGuard(StrictModel):
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


# A Supabase project ref: lower-case letters and digits (20 on supabase.com; self-hosted platforms vary).
PROJECT_REF_RE = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")


class SupabaseConfig(StrictModel):
    """The environment's Supabase project, as the Management API knows it: its ref and a token to read it."""

    project_ref: str = Field(description="the project ref: https://supabase.com/dashboard/project/<ref>")
    access_token: SecretRef = Field(
        default_factory=lambda: SecretRef(env="SUPABASE_ACCESS_TOKEN"),
        description="a personal access token or OAuth token (projects:read; projects:write to restart)",
    )
    api_url: HttpUrl = "https://api.supabase.com/"
    # The Management API allows ~60 requests a minute per user: answers are cached, shortest while unhealthy.
    unhealthy_cache_s: Number = Field(default=30.0, ge=5, le=3600)
    healthy_cache_s: Number = Field(default=300.0, ge=30, le=86_400)
    # How long a restarting / coming-up project holds the alert before it goes out anyway.
    transition_hold_s: Number = Field(default=600.0, ge=0, le=7200)
    # A restart asked from Discord or the CLI: how often it is looked at, and when it counts as failed.
    restart_poll_s: Number = Field(default=5.0, ge=0.1, le=60)
    restart_deadline_s: Number = Field(default=600.0, ge=10, le=7200)

    @field_validator("project_ref")
    @classmethod
    def _ref(cls, value: str) -> str:
        if not PROJECT_REF_RE.fullmatch(value):
            raise ValueError("a project ref is lower-case letters and digits (dashboard URL: /project/<ref>)")
        return value

    @field_validator("api_url")
    @classmethod
    def _https(cls, value: str) -> str:
        # The token travels in every request: only a loopback test server may see it unencrypted.
        parts = urlsplit(value)  # already a normalised http(s) URL
        if parts.scheme != "https" and parts.hostname not in LOOPBACK_HOSTS:
            raise ValueError("must be https (plain http only for a localhost test server)")
        if parts.path != "/" or parts.query or parts.fragment:
            raise ValueError("the API's base URL only, e.g. https://api.supabase.com (no path)")
        return value

    @property
    def api_base(self) -> str:
        return str(self.api_url).rstrip("/")


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class MaintenanceWindow(StrictModel):
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


class EnvironmentConfig(StrictModel):
    rest_url: HttpUrl
    admin_url: HttpUrl | None = None
    probe_tables: list[ProbeTable] = Field(default_factory=list)
    probe_root: bool = True
    probe_functions: list[ProbeFunction] = Field(default_factory=list)
    notify_channel: str = "pgrst"
    dashboard_url: HttpUrl | None = None
    restart_url: HttpUrl | None = None
    protected: bool = False
    auto_recover: bool = True
    reload_role: RoleRef | None = None  # who may /reload this environment (default: discord.ops_role)
    # Where this environment's alerts and lines go, and whom they ping (default: discord.ops_channel_id and
    # discord.alert_role_id); alert_role `none` pings nobody.
    alert_channel_id: Snowflake | None = None
    alert_role: AlertRoleRef | None = None
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
    # The project's own state from the Supabase Management API (status, service health, PostgREST config).
    supabase: SupabaseConfig | None = None
    # This environment's own detection pace (None: the monitor section's): 0 turns the liveness check or the
    # catalog watch off here, e.g. for a database the bot should not keep a connection to.
    liveness_interval_s: OffOrInterval | None = Field(
        default=None, ge=0, le=24 * 3600, description="0 = off, else >= 1 s"
    )
    catalog_watch_s: OffOrPoll | None = Field(default=None, ge=0, le=600, description="0 = off, else >= 0.1 s")

    @field_validator("exposed_schemas", "api_roles")
    @classmethod
    def _identifiers(cls, value: list[str]) -> list[str]:
        return [check_identifier(name) for name in value]

    @field_validator("alert_role", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:  # only a value written in the file gets here: `alert_role: null` or an empty value
            raise ValueError("empty: write none for no ping, or leave the key out to ping discord.alert_role_id")
        return value

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
