"""Configuration: a YAML file validated by pydantic, secrets only by reference.

This face re-exports the names the rest of the bot uses, so `from bot.config import Settings` works whatever
module holds it: errors.py, fields.py, secrets.py, environment.py, settings.py, loading.py.
"""

from bot.config.environment import (
    WEEKDAYS,
    EnvironmentConfig,
    KpiThresholds,
    MaintenanceWindow,
    ProbeFunction,
    ProbeTable,
    SchemaVersionGuard,
    SupabaseConfig,
    Timeouts,
)
from bot.config.errors import ConfigError
from bot.config.fields import NO_PING, off_or_an_interval
from bot.config.loading import CONFIG_PATH_ENV, DEFAULT_CONFIG_PATH, default_config_path, load_settings, parse_settings
from bot.config.secrets import EnvSecrets, SecretRef, read_optional_secret, resolve_secrets
from bot.config.settings import (
    MEMORY_STORE,
    AlertRoute,
    DiscordConfig,
    IncidentsConfig,
    MetricsConfig,
    MonitorConfig,
    RecoveryConfig,
    Settings,
    Target,
    resolve_targets,
)

__all__ = [
    "CONFIG_PATH_ENV",
    "DEFAULT_CONFIG_PATH",
    "MEMORY_STORE",
    "NO_PING",
    "WEEKDAYS",
    "AlertRoute",
    "ConfigError",
    "DiscordConfig",
    "EnvSecrets",
    "EnvironmentConfig",
    "IncidentsConfig",
    "KpiThresholds",
    "MaintenanceWindow",
    "MetricsConfig",
    "MonitorConfig",
    "ProbeFunction",
    "ProbeTable",
    "RecoveryConfig",
    "SchemaVersionGuard",
    "SecretRef",
    "Settings",
    "SupabaseConfig",
    "Target",
    "Timeouts",
    "default_config_path",
    "load_settings",
    "off_or_an_interval",
    "parse_settings",
    "read_optional_secret",
    "resolve_secrets",
    "resolve_targets",
]
