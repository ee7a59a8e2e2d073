"""The metrics the bot records (bot/observe.py), read back through Prometheus' own text parser."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.core.incident import EnvState, OpenAlert
from bot.core.recovery import Outcome
from bot.core.verdicts import Verdict
from bot.observe import CRITICAL, REMINDER, RESOLVED, Metrics, status_label
from tests.support.prom import Samples, samples_of, value


def scrape(metrics: Metrics) -> Samples:
    """Every sample, parsed from the exposition Prometheus would scrape."""
    return samples_of(metrics.exposition().decode())


def test_every_environment_starts_at_zero_so_rates_and_alert_rules_see_it():
    samples = scrape(Metrics(["dev", "prod"]))
    for env in ("dev", "prod"):
        assert value(samples, "pgrst_ops_checks_total", env=env, verdict="healthy") == 0
        assert value(samples, "pgrst_ops_alerts_total", env=env, kind="critical") == 0
        assert value(samples, "pgrst_ops_reloads_total", env=env, outcome="recovered") == 0
        assert value(samples, "pgrst_ops_probe_duration_seconds_count", env=env) == 0
    assert value(samples, "pgrst_ops_leader") == 1
    assert value(samples, "pgrst_ops_store_errors_total") == 0
    assert value(samples, "pgrst_ops_outbox_backlog") == 0


def test_checks_count_by_verdict_and_the_probe_time_is_in_seconds():
    metrics = Metrics(["dev"])
    metrics.checked("dev", Verdict.HEALTHY, 40.0)
    metrics.checked("dev", Verdict.POSTGREST_DOWN, 3000.0)
    metrics.checked("dev", Verdict.POSTGREST_DOWN, None)
    samples = scrape(metrics)
    assert value(samples, "pgrst_ops_checks_total", env="dev", verdict="healthy") == 1
    assert value(samples, "pgrst_ops_checks_total", env="dev", verdict="postgrest_down") == 2
    assert value(samples, "pgrst_ops_probe_duration_seconds_count", env="dev") == 2
    assert value(samples, "pgrst_ops_probe_duration_seconds_sum", env="dev") == 3.04
    assert value(samples, "pgrst_ops_probe_duration_seconds_bucket", env="dev", le="0.05") == 1
    assert value(samples, "pgrst_ops_probe_duration_seconds_bucket", env="dev", le="2.5") == 1
    assert value(samples, "pgrst_ops_probe_duration_seconds_bucket", env="dev", le="5.0") == 2


def test_reloads_by_outcome_and_time_to_healthy_only_for_recovered_ones():
    metrics = Metrics(["dev"])
    metrics.reloaded("dev", Outcome.RECOVERED, 250.0)
    metrics.reloaded("dev", Outcome.ESCALATED, None)
    metrics.reloaded("dev", Outcome.ALREADY_HEALTHY, None)
    samples = scrape(metrics)
    for outcome in ("recovered", "escalated", "already_healthy"):
        assert value(samples, "pgrst_ops_reloads_total", env="dev", outcome=outcome) == 1
    assert value(samples, "pgrst_ops_time_to_healthy_seconds_count", env="dev") == 1
    assert value(samples, "pgrst_ops_time_to_healthy_seconds_sum", env="dev") == 0.25


def test_alerts_by_kind_discord_errors_by_status_and_store_errors():
    metrics = Metrics(["prod"])
    metrics.alerted("prod", CRITICAL)
    metrics.alerted("prod", REMINDER)
    metrics.alerted("prod", REMINDER)
    metrics.alerted("prod", RESOLVED)
    for status in (429, 500, 500, None):
        metrics.discord_error(status)
    metrics.store_error()
    samples = scrape(metrics)
    assert value(samples, "pgrst_ops_alerts_total", env="prod", kind="critical") == 1
    assert value(samples, "pgrst_ops_alerts_total", env="prod", kind="reminder") == 2
    assert value(samples, "pgrst_ops_alerts_total", env="prod", kind="resolved") == 1
    assert value(samples, "pgrst_ops_alerts_total", env="prod", kind="flapping") == 0
    assert value(samples, "pgrst_ops_discord_errors_total", status="429") == 1
    assert value(samples, "pgrst_ops_discord_errors_total", status="500") == 2
    assert value(samples, "pgrst_ops_discord_errors_total", status="network") == 1
    assert value(samples, "pgrst_ops_store_errors_total") == 1


def test_status_labels_stay_a_small_set():
    assert [status_label(s) for s in (404, 503, None, 0, 1000, -1)] == ["404", "503"] + ["network"] * 4


def test_verdict_open_incidents_and_backlog_are_read_from_the_live_state_at_each_scrape():
    metrics = Metrics(["dev", "prod"])
    states = {"dev": EnvState("dev"), "prod": EnvState("prod")}
    queue = [1, 2, 3]
    metrics.watch(states)
    metrics.watch_backlog(lambda: len(queue))
    samples = scrape(metrics)
    assert all(value(samples, "pgrst_ops_verdict", env="dev", verdict=v.value) == 0 for v in Verdict)  # not checked
    assert value(samples, "pgrst_ops_outbox_backlog") == 3
    states["prod"].verdict = Verdict.POSTGREST_DOWN
    states["prod"].alert = OpenAlert(datetime.now(UTC), Verdict.POSTGREST_DOWN, None, {})
    states["dev"].verdict = Verdict.HEALTHY
    queue.clear()
    samples = scrape(metrics)
    assert value(samples, "pgrst_ops_verdict", env="prod", verdict="postgrest_down") == 1
    assert sum(value(samples, "pgrst_ops_verdict", env="prod", verdict=v.value) or 0 for v in Verdict) == 1
    assert value(samples, "pgrst_ops_verdict", env="dev", verdict="healthy") == 1
    assert value(samples, "pgrst_ops_open_incidents", env="prod") == 1
    assert value(samples, "pgrst_ops_open_incidents", env="dev") == 0
    assert value(samples, "pgrst_ops_outbox_backlog") == 0


def test_two_instances_never_share_a_number():
    first, second = Metrics(["dev"]), Metrics(["dev"])
    first.alerted("dev", CRITICAL)
    first.set_leader(False)
    assert value(scrape(second), "pgrst_ops_alerts_total", env="dev", kind="critical") == 0
    assert value(scrape(second), "pgrst_ops_leader") == 1
    assert value(scrape(first), "pgrst_ops_leader") == 0
