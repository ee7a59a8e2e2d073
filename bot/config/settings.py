"""The whole configuration (Settings): the environments, recovery, Discord, monitor, incident-store and metrics
sections; AlertRoute, where one environment's alerts go (its own channel and role, else the global ones); and Target,
an environment with its secrets resolved, built by resolve_targets.

Imports pydantic and the config's errors, fields, secrets and environment modules.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from bot.config.environment import EnvironmentConfig, KpiThresholds
from bot.config.errors import ConfigError, shown_value
from bot.config.fields import (
    DAY_S,
    NO_PING,
    Count,
    Number,
    OffOrInterval,
    OffOrPoll,
    RoleRef,
    Snowflake,
    StrictModel,
)
from bot.config.secrets import INLINE_SECRET_HINT, EnvSecrets, SecretRef, resolve_secrets

# Not starting with '-': `--env -h` would be read as an option, so such an environment could never be selected.
ENV_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,31}$")
HOST_RE = re.compile(r"^[A-Za-z0-9.:_-]+$")  # a name, IPv4 or IPv6 (no scheme, no port, no brackets)


class RecoveryConfig(StrictModel):
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


class DiscordConfig(StrictModel):
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


class MonitorConfig(StrictModel):
    interval_s: Number = Field(default=60.0, ge=1, le=DAY_S, description="the full probe while healthy")
    failure_threshold: Count = Field(default=2, ge=1, le=100)
    success_threshold: Count = Field(default=2, ge=1, le=100)
    # Detection in seconds at one cheap request per environment per 5 s (bench/README.md, "Detection"): OPTIONS /
    # between full probes (a failure runs the full probe at once), and the full probe at this pace while unhealthy.
    liveness_interval_s: OffOrInterval = Field(default=5.0, ge=0, le=DAY_S, description="0 = off, else >= 1 s")
    # Thresholds are counted at this pace: an outage alerts, and its end resolves, seconds after it is seen.
    confirm_interval_s: Number = Field(default=1.0, ge=0.2, le=600)
    # The catalog watch (environments with a database_dsn): a fingerprint of the catalog polled this often over one
    # connection that also LISTENs on the channel; slower by itself on a catalog that is costly to read. 0 = off.
    catalog_watch_s: OffOrPoll = Field(default=0.5, ge=0, le=600, description="0 = off, else >= 0.1 s")
    # How long a change waits for someone else's reload NOTIFY before the watch checks the changed objects itself
    # (a NOTIFY heard while it checks still wins: the watch then lets that reload land instead of sending its own).
    catalog_watch_grace_s: Number = Field(default=0.1, ge=0, le=30)
    # Schema drift (catalog vs what PostgREST serves) is heavier than a probe: run it less often. 0 = off.
    drift_interval_s: OffOrInterval = Field(default=900.0, ge=0, le=DAY_S)
    # Drift reads the whole OpenAPI root (2.4 MB at 1,000 tables); above this it checks object by object.
    drift_max_body_bytes: Count = Field(default=16 * 1024 * 1024, ge=64 * 1024, le=256 * 1024 * 1024)


MEMORY_STORE = ":memory:"  # an SQLite store that keeps nothing across restarts


class IncidentsConfig(StrictModel):
    """The incident store, reminders, silences, flap suppression and the outbox."""

    # Where incidents live: an SQLite file (created with its directory; ":memory:" keeps nothing across restarts),
    # or a PostgreSQL DSN by reference ({env: VARIABLE} or {file: PATH}), which replicas share.
    store: str | SecretRef = "pgrst-ops.db"
    lease_s: Number = Field(
        default=15.0, ge=2, le=600, description="with a PostgreSQL store: how soon a standby takes over a dead leader"
    )
    # Replicas with the same leader_group elect one leader (the advisory lock's key); a second group with other
    # environments can share the database (sharding: each config watches its own environments).
    leader_group: str = Field(default="default", min_length=1, max_length=100)
    reminder_interval_s: OffOrInterval = Field(
        default=1800.0, ge=0, le=DAY_S, description="0 = no reminders, else >= 1 s"
    )
    silence_button_s: Number = Field(default=3600.0, ge=60, le=30 * DAY_S)
    max_silence_s: Number = Field(default=7 * DAY_S, ge=60, le=30 * DAY_S)
    flap_flips: Count = Field(default=4, ge=2, le=1000, description="more flips than this within the window = flapping")
    flap_window_s: Number = Field(default=900.0, ge=1, le=DAY_S)
    send_timeout_s: Number = Field(default=15.0, ge=0.1, le=120)
    outbox_retry_s: Number = Field(default=30.0, ge=1, le=3600, description="how often unsent messages are retried")
    webhook_per_2s: Count = Field(default=5, ge=1, le=50)
    webhook_per_min: Count = Field(default=30, ge=1, le=500)

    @field_validator("leader_group")
    @classmethod
    def _a_plain_group_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.:-]+", value):
            raise ValueError("a plain name: letters, digits, '.', '_', ':' or '-' (e.g. eu or team-a)")
        return value

    @model_validator(mode="before")
    @classmethod
    def _store_path_is_store(cls, data: Any) -> Any:
        """`store_path` (older configs) is `store` as an SQLite path."""
        if isinstance(data, dict) and "store_path" in data:
            if "store" in data:
                raise ValueError("give either store (new) or store_path (older name), not both")
            data = {("store" if k == "store_path" else k): v for k, v in data.items()}
        return data

    @field_validator("store", mode="before")
    @classmethod
    def _no_inline_dsn(cls, value: Any) -> Any:
        # Never quote it: a DSN written here carries its password.
        if isinstance(value, dict):  # a reference: its own one readable error, not one per union branch
            try:
                return SecretRef.model_validate(value)
            except ValidationError as err:
                raise ValueError(err.errors()[0]["msg"].removeprefix("Value error, ")) from None
        if isinstance(value, str) and ("://" in value or "password=" in value.lower() or "host=" in value.lower()):
            raise ValueError(f"a PostgreSQL store is named by reference; {INLINE_SECRET_HINT}")
        return value

    @property
    def store_path(self) -> str:
        """The SQLite file ('' when the store is PostgreSQL)."""
        return self.store if isinstance(self.store, str) else ""

    @property
    def store_dsn(self) -> SecretRef | None:
        """The PostgreSQL store's DSN reference (None: SQLite)."""
        return self.store if isinstance(self.store, SecretRef) else None

    def used_by_one_off_commands(self) -> bool:
        """Whether a one-off command (fix, drift, restart) writes to the store: a configured PostgreSQL store
        always; an SQLite file only when the bot's file exists on this machine (a CI runner gets no stray
        database file). Reads the file system: call it off the event loop."""
        if self.store_dsn is not None:
            return True
        return self.store_path != MEMORY_STORE and os.path.exists(self.store_path)

    @model_validator(mode="after")
    def _button_within_the_limit(self) -> IncidentsConfig:
        if self.silence_button_s > self.max_silence_s:
            raise ValueError("silence_button_s must not exceed max_silence_s")
        return self


class MetricsConfig(StrictModel):
    """The HTTP listener for /metrics, /healthz and /readyz (off unless the config has this section)."""

    # Loopback by default: the metrics name every environment; 0.0.0.0 in a container, behind its network.
    host: str = Field(default="127.0.0.1", min_length=1, max_length=253)
    port: Count = Field(default=9464, ge=0, le=65535, description="0: any free port (the log says which)")

    @field_validator("host")
    @classmethod
    def _a_host(cls, value: str) -> str:
        if not HOST_RE.fullmatch(value):
            raise ValueError("must be an IP address or a host name to listen on, e.g. 127.0.0.1 or 0.0.0.0")
        return value


@dataclass(frozen=True)
class AlertRoute:
    """Where an environment's alerts, reminders and lines go, and whom its alerts ping."""

    channel_id: int | None  # None: no channel configured (console, or the webhook only)
    role: int | str | None  # None: no ping; a name until the bot resolved it to an id at start

    @property
    def mention_id(self) -> int | None:
        """The role to ping, once it is an id (the bot resolves names at start; the CLI cannot)."""
        return self.role if isinstance(self.role, int) else None


class Settings(StrictModel):
    environments: dict[str, EnvironmentConfig]
    recovery: RecoveryConfig = Field(default_factory=RecoveryConfig)
    discord: DiscordConfig = Field(default_factory=DiscordConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    max_body_bytes: Count = Field(default=256 * 1024, ge=1024, le=64 * 1024 * 1024)
    incidents: IncidentsConfig = Field(default_factory=IncidentsConfig)
    metrics: MetricsConfig | None = None  # the /metrics, /healthz and /readyz listener; off when not set

    @field_validator("environments")
    @classmethod
    def _env_names(cls, value: dict[str, EnvironmentConfig]) -> dict[str, EnvironmentConfig]:
        if not value:
            raise ValueError("at least one environment is required")
        for name in value:
            if not ENV_NAME_RE.fullmatch(name):
                raise ValueError(
                    f"environment name {shown_value(name)} must be 1-32 letters, digits, '-' or '_', "
                    "not starting with '-'"
                )
        return value

    def alert_route(self, env: str) -> AlertRoute:
        """The environment's own alert_channel_id / alert_role where it sets them, else the global ones."""
        own = self.environments.get(env)
        channel = own.alert_channel_id if own is not None else None
        role = own.alert_role if own is not None else None
        return AlertRoute(
            channel if channel is not None else self.discord.ops_channel_id,
            self.discord.alert_role_id if role is None else (None if role == NO_PING else role),
        )

    def alert_routes(self) -> dict[str, AlertRoute]:
        return {name: self.alert_route(name) for name in self.environments}

    def own_alert_channels(self) -> dict[str, int]:
        """The environments that name their own alert channel (the others use discord.ops_channel_id)."""
        return {n: e.alert_channel_id for n, e in self.environments.items() if e.alert_channel_id is not None}

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
