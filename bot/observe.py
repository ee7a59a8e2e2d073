"""What the bot counts for Prometheus: one `Metrics` per running bot, with its own registry (never the global one,
so tests and several instances in one process never see each other's numbers).

The monitor, the desk, the outbox's store guard and the Discord transport call its plain methods where the thing
already happens (a check, an alert posted, a reload, a failed store call or Discord request); the current
verdicts, open incidents and the outbox backlog are read from the live state at each scrape, so they can never
drift from what the bot holds. Label values are bounded: environments come from the config, verdicts,
outcomes and alert kinds are fixed vocabularies, Discord errors are labelled by their HTTP status.
Imports prometheus_client and bot.core only (bot/endpoints.py serves it over HTTP).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.core.incident import EnvState
from bot.core.recovery import Outcome
from bot.core.verdicts import Verdict

__all__ = ["ALERT_KINDS", "Metrics", "disable_created_metrics", "status_label"]

PREFIX = "pgrst_ops_"

# What the desk posts to people (held alerts are counted when they are released).
CRITICAL = "critical"
FLAPPING = "flapping"
REMINDER = "reminder"
RESOLVED = "resolved"
AUTO_RECOVERED = "auto_recovered"
ALERT_KINDS: Final = (CRITICAL, FLAPPING, REMINDER, RESOLVED, AUTO_RECOVERED)
# How a restart asked for (Restart button, /restart) ended: its final phase, or refused, or cut short by a stop.
RESTART_OUTCOMES: Final = ("healthy", "failed", "timed_out", "refused", "interrupted")

NETWORK = "network"  # a Discord request that got no HTTP answer (connection refused, reset, DNS)

# A whole probe of one environment: a few ms on a LAN, up to its total timeout (at most 300 s).
PROBE_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# NOTIFY to healthy: usually 0.1-1 s; the re-check budget is retries x delay_s (9 s by default, up to hours).
HEALTHY_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)


def status_label(status: int | None) -> str:
    """An HTTP status as its number; anything that is not one is `network` (the label set stays small)."""
    return str(status) if status is not None and 100 <= status <= 599 else NETWORK


class _LiveState(Collector):
    """The gauges read at scrape time: verdict per environment, open incidents, outbox backlog."""

    def __init__(self) -> None:
        self.states: Mapping[str, EnvState] = {}
        self.backlog: Callable[[], int] | None = None

    def collect(self) -> Iterator[Metric]:
        verdict = GaugeMetricFamily(
            PREFIX + "verdict",
            "1 for the environment's current verdict, 0 for the others (all 0 before its first check)",
            labels=["env", "verdict"],
        )
        incidents = GaugeMetricFamily(
            PREFIX + "open_incidents", "Open incidents of the environment (0 or 1)", labels=["env"]
        )
        for name, state in self.states.items():
            for value in Verdict:
                verdict.add_metric([name, value.value], 1.0 if state.verdict is value else 0.0)
            incidents.add_metric([name], 1.0 if state.alert is not None else 0.0)
        yield verdict
        yield incidents
        yield GaugeMetricFamily(
            PREFIX + "outbox_backlog",
            "Outgoing Discord messages waiting to be delivered (all environments)",
            value=float(self.backlog()) if self.backlog is not None else 0.0,
        )


class Metrics:
    """The bot's metrics; `envs` pre-creates each environment's series at 0 (rate() and alert rules see them)."""

    def __init__(self, envs: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry

        def per_env_histogram(name: str, doc: str, buckets: Sequence[float]) -> Histogram:
            return Histogram(PREFIX + name, doc, ["env"], buckets=buckets, registry=r)

        def counter(name: str, doc: str, labels: Sequence[str]) -> Counter:
            return Counter(PREFIX + name, doc, labels, registry=r)

        self._probe = per_env_histogram(
            "probe_duration_seconds", "Time to probe one environment (every planned check)", PROBE_BUCKETS
        )
        self._checks = counter("checks", "Monitor checks, by the verdict they found", ["env", "verdict"])
        self._reloads = counter("reloads", "Schema reload runs, by outcome", ["env", "outcome"])
        self._healthy = per_env_histogram(
            "time_to_healthy_seconds",
            "From the NOTIFY to the first healthy re-check, for reloads that recovered",
            HEALTHY_BUCKETS,
        )
        self._alerts = counter("alerts", "Alert messages posted, by kind", ["env", "kind"])
        self._restarts = counter(
            "restarts", "Supabase project restarts asked for, by how they ended", ["env", "outcome"]
        )
        self._discord_errors = counter(
            "discord_errors", "Discord requests that failed, by HTTP status (or network)", ["status"]
        )
        self._store_errors = Counter(PREFIX + "store_errors", "Incident store calls that failed", registry=r)
        self._leader = Gauge(PREFIX + "leader", "1 while this process acts (monitor, alerts, outbox)", registry=r)
        self._leader.set(1)  # without replicas (an SQLite store) the one process always leads
        self._live = _LiveState()
        r.register(self._live)
        for env in envs:
            self._probe.labels(env)
            self._healthy.labels(env)
            for verdict in Verdict:
                self._checks.labels(env, verdict.value)
            for outcome in Outcome:
                self._reloads.labels(env, outcome.value)
            for kind in ALERT_KINDS:
                self._alerts.labels(env, kind)
            for end in RESTART_OUTCOMES:
                self._restarts.labels(env, end)

    # -- wiring: where the live gauges read from --------------------------------------------------
    def watch(self, states: Mapping[str, EnvState]) -> None:
        """The monitor's per-environment states (verdict, open incident)."""
        self._live.states = states

    def watch_backlog(self, waiting: Callable[[], int]) -> None:
        self._live.backlog = waiting

    # -- events ------------------------------------------------------------------------------------
    # Durations come in milliseconds, the bot's unit; Prometheus gets seconds, its base unit.
    def checked(self, env: str, verdict: Verdict, probe_ms: float | None) -> None:
        self._checks.labels(env, verdict.value).inc()
        if probe_ms is not None:
            self._probe.labels(env).observe(probe_ms / 1000)

    def reloaded(self, env: str, outcome: Outcome, time_to_healthy_ms: float | None) -> None:
        self._reloads.labels(env, outcome.value).inc()
        if outcome is Outcome.RECOVERED and time_to_healthy_ms is not None:
            self._healthy.labels(env).observe(time_to_healthy_ms / 1000)

    def alerted(self, env: str, kind: str) -> None:
        self._alerts.labels(env, kind).inc()

    def restarted(self, env: str, outcome: str) -> None:
        """A restart ended: one of RESTART_OUTCOMES."""
        self._restarts.labels(env, outcome).inc()

    def discord_error(self, status: int | None) -> None:
        self._discord_errors.labels(status_label(status)).inc()

    def store_error(self) -> None:
        self._store_errors.inc()

    def set_leader(self, leading: bool) -> None:
        self._leader.set(1 if leading else 0)

    def watch_leader(self, leading: Callable[[], bool]) -> None:
        """Replicas: the lease's fence, read at each scrape (0 the moment leadership is lost)."""
        self._leader.set_function(lambda: 1.0 if leading() else 0.0)

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)
