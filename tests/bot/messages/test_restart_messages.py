"""The restart's line on the alert (bot/messages/restart.py): one line, replaced at each phase, within limits."""

from __future__ import annotations

from bot.core.restart import Phase, Progress
from bot.messages.alert import alert_buttons
from bot.messages.restart import RESTART_LINE_MAX, restart_line, with_restart

ALERT = {
    "content": "CRITICAL",
    "embeds": [{"title": "CRITICAL · PROD: schema cache stale", "description": "Reload refused.\nSince <t:1:R>"}],
    "pgrst_ops": {"restart": True, "retry": False},
}


def test_each_phase_replaces_the_restart_line_and_keeps_the_alert():
    sent = with_restart(ALERT, Progress(Phase.SENT, 0), "alice", "stale")
    going = with_restart(sent, Progress(Phase.COMING_UP, 42), "alice", "stale")
    lines = going["embeds"][0]["description"].split("\n")
    assert lines == ['Restart by alice ("stale"): coming up (42 s)', "Reload refused.", "Since <t:1:R>"]
    assert ALERT["embeds"][0]["description"] == "Reload refused.\nSince <t:1:R>"  # the input is not changed


def test_the_restart_button_is_disabled_while_it_runs_and_offered_again_after_a_failure():
    running = with_restart(ALERT, Progress(Phase.RESTARTING, 3), "alice", "x")
    assert alert_buttons(running).restart and alert_buttons(running).restarting
    failed = with_restart(running, Progress(Phase.FAILED, 0, detail="403: token refused"), "alice", "x")
    assert not alert_buttons(failed).restarting
    assert failed["embeds"][0]["description"].startswith('❌ Restart by alice ("x"): failed: 403: token refused')


def test_a_long_reason_is_cut_and_the_line_stays_short():
    line = restart_line(Progress(Phase.HEALTHY, 125), "alice", "word " * 100)
    assert (
        len(line) <= RESTART_LINE_MAX and line.startswith("✅ Restart by alice") and "healthy after 2 min 5 s" in line
    )


def test_the_restart_line_keeps_the_largest_alert_within_its_budget():
    from bot.messages.alert import ALERT_CHARS_MAX, build_critical_alert, payload_chars
    from scripts import message_samples as samples

    for inputs in samples.scenarios().values():
        alert = build_critical_alert("prod", samples.env_config(project_token=True), alert_role_id=77, **inputs)
        field = alert["embeds"][0]["fields"][-1]
        field["value"] += " word" * ((ALERT_CHARS_MAX - 10 - payload_chars(alert)) // 5)  # at the budget already
        assert payload_chars(alert) > ALERT_CHARS_MAX - 20
        going = with_restart(alert, Progress(Phase.COMING_UP, 84), "alice", "why " * 60)
        assert payload_chars(going) <= ALERT_CHARS_MAX
        assert going["embeds"][0]["description"].startswith("Restart by alice")
