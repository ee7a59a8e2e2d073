"""The reload runbook's KPIs (RUN-002): NOTIFY execution, reload latency, API response after the reload."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bot.config import KpiThresholds
from bot.core.classify import ADMIN_KINDS, CheckKind
from bot.core.report import EnvReport


class KpiStatus(StrEnum):
    OK = "ok"
    ABOVE_TARGET = "above_target"
    BREACH = "breach"  # above the alert threshold: worth a warning in the ops channel


_MARK = {KpiStatus.OK: "✅", KpiStatus.ABOVE_TARGET: "🟡", KpiStatus.BREACH: "⚠️"}


@dataclass(frozen=True)
class KpiSample:
    key: str
    label: str
    value_ms: float
    target_ms: float
    alert_ms: float

    @property
    def status(self) -> KpiStatus:
        if self.value_ms > self.alert_ms:
            return KpiStatus.BREACH
        if self.value_ms > self.target_ms:
            return KpiStatus.ABOVE_TARGET
        return KpiStatus.OK

    def line(self) -> str:
        return (
            f"{_MARK[self.status]} {self.label}: {self.value_ms:.0f} ms "
            f"(target < {self.target_ms:.0f} ms, alert > {self.alert_ms:.0f} ms)"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "value_ms": round(self.value_ms, 1),
            "target_ms": self.target_ms,
            "alert_ms": self.alert_ms,
            "status": str(self.status),
        }


def api_latency_ms(report: EnvReport) -> float | None:
    """The slowest answer of the API's data checks: what a client waits for."""
    # Not the OpenAPI root: it takes seconds on big schemas whatever the cache does.
    latencies = [c.latency_ms for c in report.checks if c.kind not in ADMIN_KINDS | {CheckKind.ROOT} and c.ok]
    return max(latencies) if latencies else None


def reload_kpis(
    thresholds: KpiThresholds,
    *,
    notify_ms: float | None,
    reload_ms: float | None,
    api_after_ms: float | None,
) -> tuple[KpiSample, ...]:
    t = thresholds
    samples = []
    if notify_ms is not None:
        samples.append(KpiSample("notify", "NOTIFY execution", notify_ms, t.notify_target_ms, t.notify_alert_ms))
    if reload_ms is not None:
        samples.append(KpiSample("reload", "Reload latency", reload_ms, t.reload_target_ms, t.reload_alert_ms))
    if api_after_ms is not None:
        samples.append(
            KpiSample(
                "api_after_reload",
                "API response after reload",
                api_after_ms,
                t.api_after_reload_target_ms,
                t.api_after_reload_alert_ms,
            )
        )
    return tuple(samples)


def breaches(samples: tuple[KpiSample, ...]) -> list[KpiSample]:
    return [s for s in samples if s.status is KpiStatus.BREACH]
