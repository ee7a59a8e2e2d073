"""A recovery's outcome, steps and result, as the operator reports them (pure data; the operator is in bot/ops)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from bot.core.diagnosis import Diagnosis
from bot.core.kpi import KpiSample
from bot.core.report import EnvReport
from bot.core.verdicts import Verdict


class Outcome(StrEnum):
    ALREADY_HEALTHY = "already_healthy"
    RECOVERED = "recovered"
    ESCALATED = "escalated"


class StepKind(StrEnum):
    PROBE = "probe"
    DIAGNOSIS = "diagnosis"
    DECISION = "decision"
    LISTENER = "listener"
    NOTIFY = "notify"
    RECHECK = "recheck"
    DONE = "done"


@dataclass(frozen=True)
class RecoveryStep:
    kind: StepKind
    message: str
    elapsed_ms: float
    report: EnvReport | None = None


StepListener = Callable[[RecoveryStep], None]


@dataclass(frozen=True)
class RecoveryResult:
    env: str
    outcome: Outcome
    verdict_before: Verdict
    verdict_after: Verdict
    notify_sent: bool
    notify_ms: float | None
    time_to_healthy_ms: float | None
    attempts: int
    reason: str | None
    listener: str | None
    report_before: EnvReport
    report_after: EnvReport
    started_at: datetime
    finished_at: datetime
    actor: str
    steps: tuple[RecoveryStep, ...]
    diagnosis: Diagnosis | None = None
    refused_by_preflight: bool = False  # a NOTIFY would have made things worse; `force` overrides
    forced: bool = False
    kpis: tuple[KpiSample, ...] = ()

    @property
    def ok(self) -> bool:
        return self.outcome is not Outcome.ESCALATED

    def to_json(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "outcome": str(self.outcome),
            "verdict_before": str(self.verdict_before),
            "verdict_after": str(self.verdict_after),
            "notify_sent": self.notify_sent,
            "notify_ms": None if self.notify_ms is None else round(self.notify_ms, 2),
            "time_to_healthy_ms": None if self.time_to_healthy_ms is None else round(self.time_to_healthy_ms, 1),
            "attempts": self.attempts,
            "reason": self.reason,
            "listener": self.listener,
            # The version the environment reports (Server header), from the last probe that saw one.
            "server_version": self.report_after.server_version or self.report_before.server_version,
            "actor": self.actor,
            "started_at": self.started_at.isoformat(timespec="milliseconds"),
            "finished_at": self.finished_at.isoformat(timespec="milliseconds"),
            "explanation": self.report_after.explanation,
            "next_step": self.report_after.next_step,
            "checks_after": [c.to_json() for c in self.report_after.checks],
            "diagnosis": None if self.diagnosis is None else self.diagnosis.to_json(),
            "refused_by_preflight": self.refused_by_preflight,
            "forced": self.forced,
            "kpis": [k.to_json() for k in self.kpis],
        }
