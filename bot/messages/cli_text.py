"""The CLI's text: reports, diagnoses, the schema-version line, recovery steps as they happen and the outcome.

Pure text builders over bot.core types (and Target for the links); they write to a given stream, nothing else.
Plain text: the fixes' Markdown (`code`) is removed, and the only marks are ✅ ❌ ⚠️.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TextIO

from bot.messages.console_text import plain

# `check` prints only reports: the recovery, drift and alert modules are imported by the builders that use
# them, so a `check` run does not load them (start-up: bench/README.md "Start-up and `fix` wall").
if TYPE_CHECKING:
    from bot.config import Target
    from bot.core.diagnosis import Diagnosis
    from bot.core.drift import DriftReport
    from bot.core.recovery import RecoveryResult, RecoveryStep, StepListener
    from bot.core.report import EnvReport
    from bot.core.schema_version import SchemaVersionReport

RULE = "─" * 70
# The CLI's own wording (the terminal has the URL printed above, and no Discord commands to point at).
RECOVERY_STEPS = (
    "Open the restart page (Dashboard URL above) → Restart project",
    "Wait for the restart to complete (about 2-3 minutes)",
    "Run the health check again: pgrst-ops check --env {env}",
)
TROUBLESHOOTING_STEPS = (
    "Dashboard → Database: is the project paused, or at its connection limit?",
    "Check for recent migrations or role changes (ALTER ROLE authenticator SET …)",
    "Read the PostgREST / API logs for the failing schema query",
    "If a restart does not help, contact support with the output of pgrst-ops check --verbose",
)


def _mark(ok: bool) -> str:
    return "✅" if ok else "❌"


def render_diagnosis(diagnosis: Diagnosis, *, main_fix: bool = True) -> list[str]:
    """Each finding with its fix; `main_fix=False` leaves the main cause's fix to the caller (said once)."""
    if diagnosis.error:
        return [f"  Cause: unknown ({diagnosis.error})"]
    if not diagnosis.findings:
        return ["  Cause: none found in the database"]
    lines = []
    for i, finding in enumerate(diagnosis.findings):
        lines.append(f"  {'Cause' if i == 0 else 'Also'}: {plain(finding.title)}: {plain(finding.evidence)}")
        if i or main_fix:
            lines.append(f"     Fix: {plain(finding.fix)}")
    return lines


def render_report(report: EnvReport, *, verbose: bool = False, diagnosis: Diagnosis | None = None) -> str:
    headline = "HEALTHY" if report.healthy else str(report.verdict).upper()
    lines = [f"PostgREST Health [{report.env.upper()}]: {_mark(report.healthy)} {headline}"]
    width = max(len(c.label) for c in report.checks) if report.checks else 0
    for check in report.checks:
        status = f"HTTP {check.status}" if check.status is not None else check.detail
        if check.ok:
            what = f"OK ({status}, {check.latency_ms:.0f} ms)"
            if check.auth_limited:
                what += " auth-limited"
        else:
            what = f"{check.detail} ({check.latency_ms:.0f} ms)"
        lines.append(f"  {check.label:<{width}}: {_mark(check.ok)} {what}")
        if verbose:
            extra = [f"{check.method} {check.url}"]
            if check.server:
                extra.append(f"server {check.server}")
            if check.retry_after is not None:
                extra.append(f"Retry-After {check.retry_after}")
            lines.append(f"  {'':<{width}}  {' · '.join(extra)}")
    if not report.healthy or verbose:
        lines.append(f"  → {plain(report.explanation)}")
        if diagnosis is not None:
            lines += render_diagnosis(diagnosis)
        next_step = diagnosis.next_step if diagnosis is not None else report.next_step
        lines.append(f"  → Next: {plain(next_step)}")
    return "\n".join(lines)


def version_line(version: SchemaVersionReport) -> str:
    mark = {"compatible": "✅", "unknown": "⚠️"}.get(str(version.status), "❌")
    return f"  Schema version: {mark} {version.status}: {version.message}"


def _section(out: TextIO, title: str) -> None:
    out.write(f"\n{RULE}\n  {title}\n{RULE}\n")


def step_printer(out: TextIO, verbose: bool) -> StepListener:
    from bot.core.recovery import StepKind
    from bot.core.verdicts import info

    titles = {
        StepKind.PROBE: "STEP 1: Run Health Probe",
        StepKind.DIAGNOSIS: "STEP 2: Diagnose from the database catalog",
        StepKind.NOTIFY: "STEP 3: Send Schema Reload Command",
    }
    rechecks_started = False

    def on_step(step: RecoveryStep) -> None:
        nonlocal rechecks_started
        if step.kind in titles:
            _section(out, titles[step.kind])
        if step.kind is StepKind.PROBE and step.report is not None:
            out.write(render_report(step.report, verbose=verbose) + "\n")
            if not step.report.healthy:
                meta = info(step.report.verdict)
                action = (
                    "Checking the database before a reload..." if meta.reload_helps else "A reload cannot fix this."
                )
                out.write(f"  ⚠️  Detected {step.report.verdict}. {action}\n")
        elif step.kind is StepKind.LISTENER:
            out.write(f"  Listener: {plain(step.message)}\n")
        elif step.kind is StepKind.DIAGNOSIS:
            out.write(f"  {plain(step.message)}\n")
        elif step.kind is StepKind.NOTIFY:
            out.write(f"  ✅ {plain(step.message)}\n")
        elif step.kind is StepKind.RECHECK:
            if not rechecks_started:
                _section(out, "STEP 4: Re-check until healthy")
                rechecks_started = True
            ok = step.report is not None and step.report.healthy
            if ok or verbose or step.message.startswith("re-check 1 "):
                out.write(f"  {step.message} {'✅ Healthy' if ok else '❌ Still unhealthy'}\n")
        elif step.kind is StepKind.DECISION:
            out.write(f"  {plain(step.message)}\n")
        out.flush()

    return on_step


def print_outcome(out: TextIO, target: Target, result: RecoveryResult, alert_status: str | None) -> None:
    from bot.core.recovery import Outcome
    from bot.messages.alert import numbered_steps

    if result.outcome is Outcome.ALREADY_HEALTHY:
        out.write("\n  ✅ Already healthy: no action needed.\n")
        return
    if result.outcome is Outcome.RECOVERED:
        _section(out, "✅ AUTOMATED RECOVERY SUCCESSFUL")
        out.write(
            f"\n  PostgREST schema cache has been refreshed: healthy {result.time_to_healthy_ms:.0f} ms after the "
            f"NOTIFY ({result.attempts} re-checks, NOTIFY took {result.notify_ms:.1f} ms).\n"
        )
        if result.kpis:
            out.write("\n  KPIs (RUN-002):\n" + "".join(f"    {k.line()}\n" for k in result.kpis))
        return
    _section(out, "❌ AUTOMATED RECOVERY FAILED")
    env = target.config
    out.write(f"\n  Verdict: {result.verdict_after}\n  Reason:  {plain(result.reason or '')}\n")
    out.write(f"  Diagnosis: {plain(result.report_after.explanation)}\n")
    diagnosis = result.diagnosis
    cause = diagnosis.cause if diagnosis else None
    if diagnosis is not None:  # the main fix is the ACTION REQUIRED below: said once
        out.write("\n".join(render_diagnosis(diagnosis, main_fix=cause is None)) + "\n")
    if result.refused_by_preflight:
        out.write(f"  Force it anyway: pgrst-ops fix --env {target.name} --force\n")
    if cause is None:
        out.write(f"  Next: {plain(result.report_after.next_step)}\n")
    link = env.restart_url or env.dashboard_url
    if cause is not None:
        # A restart does not fix a named cause and can make it worse (it applies pending role settings).
        out.write(f"\n  ❌ ACTION REQUIRED: {plain(cause.fix)}\n")
        out.write("  Only if that does not help: restart the project from the dashboard.\n")
    else:
        out.write("\n  ❌ ACTION REQUIRED: Go to Supabase Dashboard → Settings → Restart Project\n")
    if link:
        out.write(f"\n  Dashboard URL:\n    {link}\n")
    if alert_status is None:
        out.write("\n  Discord alert: skipped (--no-alert)\n")
    elif alert_status == "sent":
        out.write("\n  ✅ Discord alert sent\n")
    else:
        out.write(f"\n  ⚠️  Discord alert {alert_status}\n")
    if cause is not None:
        return
    for title, steps in (("Recovery steps", RECOVERY_STEPS), ("Troubleshooting steps", TROUBLESHOOTING_STEPS)):
        text = numbered_steps(steps, target.name).replace("\n", "\n    ")
        out.write(f"\n  {title}:\n    {text}\n")


DRIFT_MARKS = {"in_sync": "✅", "stale": "❌", "unknown": "⚠️"}


def render_drift(r: DriftReport) -> str:
    """One environment's `pgrst-ops drift` block, with its trailing blank line."""
    lines = [f"Schema drift [{r.env.upper()}]: {DRIFT_MARKS[str(r.status)]} {str(r.status).upper()}", f"  {r.summary}"]
    for title, objects in (
        ("Missing in the API (reload helps)", r.missing_in_api),
        ("Served but gone from the database (reload helps)", r.extra_in_api),
        ("Not granted to the API roles (GRANT; reload cannot help)", r.ungranted),
    ):
        if objects:
            lines.append(f"  {title}: {objects.describe(limit=50)}")
    lines += [f"  note: {note}" for note in r.notes]
    lines.append(f"  → Next: {r.next_step} ({r.requests} requests, {r.duration_ms:.0f} ms)")
    return "\n".join(lines) + "\n\n"
