"""The diagnosis model: findings (cause, evidence, fix) and the refined report they explain (pure data)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from bot.core.listener import ListenerStatus
from bot.core.report import EnvReport
from bot.core.verdicts import Verdict


@dataclass(frozen=True)
class Finding:
    """One cause found in the database: what it is, what shows it, and the command that fixes it."""

    cause: str  # stable key: role_setting, lock_wait, catalog_privilege, missing_schema, ...
    title: str
    evidence: str
    fix: str
    blocks_reload: bool = False  # pre-flight: a NOTIFY now would break the cache or cannot take effect

    def line(self) -> str:
        return f"{self.title}: {self.evidence}. Fix: {self.fix}"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Diagnosis:
    env: str
    report: EnvReport  # the probe report with stale checks confirmed or re-classified from the catalog
    findings: tuple[Finding, ...] = ()
    listener: ListenerStatus | None = None
    queue_usage: float | None = None
    error: str | None = None  # the database could not be read: nothing here is known

    @property
    def verdict(self) -> Verdict:
        return self.report.verdict

    @property
    def blockers(self) -> list[Finding]:
        return [f for f in self.findings if f.blocks_reload]

    @property
    def cause(self) -> Finding | None:
        """The main finding, when the catalog could be read and showed one."""
        return self.findings[0] if self.findings and not self.error else None

    @property
    def next_step(self) -> str:
        """The fix of the main cause when one was found, else the verdict's generic next step."""
        return self.cause.fix if self.cause else self.report.next_step

    @property
    def headline(self) -> str:
        """One line for the alert: the main cause, or why there is none."""
        if self.error:
            return f"diagnosis unavailable: {self.error}"
        if self.findings:
            return self.findings[0].line()
        return "no cause found in the database"

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": str(self.verdict),
            "headline": self.headline,
            "findings": [f.to_json() for f in self.findings],
            "listener": None if self.listener is None else str(self.listener.state),
            "listener_detail": None if self.listener is None else self.listener.detail,
            "notification_queue_usage": self.queue_usage,
            "error": self.error,
        }
