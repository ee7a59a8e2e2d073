"""Schema version guard: the application's expected schema version against the database's.

Rules from the pipeline runbook (RUN-003, "Schema Guard Operations"):

    DB 1.0.0, app 1.0.0 -> compatible            (exact match)
    DB 1.1.0, app 1.0.0 -> compatible            (database newer: additive migrations are usually safe)
    DB 1.0.0, app 1.1.0 -> incompatible          (app newer: run the migrations)
    DB 2.0.0, app 1.0.0 -> conflict              (major version mismatch, either direction)

Versions are semver (`1.2.3`, optional leading `v`, optional pre-release) or Supabase migration timestamps
(`20260101120000`, compared as numbers; they have no "major"). Anything else is `unknown`, never a guess.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bot.config import SchemaVersionGuard


class VersionStatus(StrEnum):
    COMPATIBLE = "compatible"
    RUN_MIGRATIONS = "run_migrations"  # the app expects a newer schema than the database has
    CONFLICT = "conflict"  # major versions differ: neither side is simply behind
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class VersionVerdict:
    status: VersionStatus
    message: str  # one line, with the next step

    @property
    def compatible(self) -> bool:
        return self.status is VersionStatus.COMPATIBLE


@dataclass(frozen=True)
class _Semver:
    major: int
    minor: int
    patch: int
    pre: tuple[tuple[int, int | str], ...] | None  # None (a release) sorts after any pre-release

    def key(self) -> tuple[Any, ...]:
        # Semver precedence: numeric identifiers before alphanumeric ones, a release after its pre-releases.
        return (self.major, self.minor, self.patch, (1,) if self.pre is None else (0, self.pre))


def _parse_semver(text: str) -> _Semver | None:
    match = _SEMVER_RE.fullmatch(text)
    if not match:
        return None
    pre = match["pre"]
    identifiers = tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split(".")) if pre is not None else None
    return _Semver(int(match["major"]), int(match["minor"]), int(match["patch"]), identifiers)


def _shown(text: str) -> str:
    return repr(text if len(text) <= _SHOWN else text[:_SHOWN] + "...")


def _kind(text: str) -> str | None:
    if _parse_semver(text) is not None:
        return "semver"
    if _MIGRATION_RE.fullmatch(text):
        return "migration timestamp"
    return None


def compare_versions(app: str, db: str) -> VersionVerdict:
    """The runbook's compatibility rules for the app's expected version against the database's."""
    app, db = app.strip(), db.strip()
    app_kind, db_kind = _kind(app), _kind(db)
    if app_kind is None:
        return VersionVerdict(
            VersionStatus.UNKNOWN, f"cannot read the app's schema version {_shown(app)} (expected {_FORMATS})"
        )
    if db_kind is None:
        return VersionVerdict(
            VersionStatus.UNKNOWN, f"cannot read the database's schema version {_shown(db)} (expected {_FORMATS})"
        )
    if app_kind != db_kind:
        return VersionVerdict(
            VersionStatus.UNKNOWN,
            f"cannot compare: the app's version {app} is a {app_kind}, the database's {db} a {db_kind} "
            "(make the guard read the same kind of version on both sides)",
        )
    if app_kind == "semver":
        a, d = _parse_semver(app), _parse_semver(db)
        assert a is not None and d is not None
        if a.major != d.major:
            return VersionVerdict(
                VersionStatus.CONFLICT,
                f"conflict: major version mismatch (app expects {app}, database is at {db}): deploy the app built "
                "for this schema, or plan the major migration; running migrations alone will not reconcile them",
            )
        app_key, db_key = a.key(), d.key()
    else:
        app_key, db_key = (int(app),), (int(db),)
    if app_key == db_key:
        return VersionVerdict(VersionStatus.COMPATIBLE, f"compatible: app and database are both at {db}")
    if db_key > app_key:
        return VersionVerdict(
            VersionStatus.COMPATIBLE,
            f"compatible: the database ({db}) is newer than the app expects ({app}); usually safe with additive migrations",
        )
    return VersionVerdict(
        VersionStatus.RUN_MIGRATIONS,
        f"incompatible: the app expects {app} but the database is at {db}: run the migrations "
        "(supabase migration up / supabase db push), then check again",
    )


@dataclass(frozen=True)
class SchemaVersionReport:
    status: VersionStatus
    app_version: str | None
    db_version: str | None
    app_source: str  # "config" or "environment variable APP_SCHEMA_VERSION"
    db_source: str  # "supabase_migrations.schema_migrations" or "configured query"
    message: str  # one line, with the next step

    @property
    def compatible(self) -> bool:
        return self.status is VersionStatus.COMPATIBLE

    @property
    def source(self) -> str:
        return f"app: {self.app_source}; database: {self.db_source}"

    def to_json(self) -> dict[str, Any]:
        return {
            "status": str(self.status),
            "compatible": self.compatible,
            "app_version": self.app_version,
            "db_version": self.db_version,
            "app_source": self.app_source,
            "db_source": self.db_source,
            "message": self.message,
        }


def expected_version(guard: SchemaVersionGuard, environ: Mapping[str, str]) -> tuple[str | None, str, str | None]:
    """(version, where it came from, problem). The environment variable, when set, overrides the config value."""
    if guard.expected_env:
        value = environ.get(guard.expected_env, "").strip()
        if value:
            return value, f"environment variable {guard.expected_env}", None
        if not guard.expected:
            return (
                None,
                f"environment variable {guard.expected_env}",
                f"environment variable {guard.expected_env} is not set or empty: set it to the schema version "
                "the app expects",
            )
    assert guard.expected is not None  # the config requires expected or expected_env
    return guard.expected.strip(), "config", None


_SEMVER_RE = re.compile(
    r"^v?(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z.-]+)?$"
)


_MIGRATION_RE = re.compile(r"^\d+$")


_FORMATS = "semver such as 1.2.3 or a migration timestamp such as 20260101120000"


_SHOWN = 64  # longest version text quoted back: the value may come from a misconfigured query
