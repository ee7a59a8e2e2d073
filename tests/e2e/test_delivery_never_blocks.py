"""A hung Discord never delays a check: delivery runs in the outbox's own task, the monitor goes on."""

from __future__ import annotations

import time

from tests.e2e.conftest import running_bot

MESSAGES = r"/channels/\d+/messages$"
SEND_TIMEOUT_S = 10  # a send that blocked the check would hold it this long per attempt


def criticals(fake):
    return [m for m in fake.channel_messages(fake.ops_channel_id) if "CRITICAL" in str(m.history[0])]


async def test_checks_keep_their_pace_while_discord_hangs_and_the_alert_lands_once_later(fake, make_stack, tmp_path):
    stack = make_stack()
    stack.postgrest.stop()
    envs = {"prod": stack.env_config(auto_recover=False)}
    cfg = {"store_path": str(tmp_path / "incidents.db"), "send_timeout_s": SEND_TIMEOUT_S}
    fake.fail_next("POST", MESSAGES, hang=True)  # Discord takes the CRITICAL's request and does not answer
    async with running_bot(fake, envs, stack.env_vars, incidents=cfg) as bot:
        monitor = bot.services.monitor
        await monitor.check("prod")
        started = time.monotonic()
        await monitor.check("prod")  # the threshold: the CRITICAL goes to the outbox, whose send hangs
        alerting_s = time.monotonic() - started
        await fake.wait_for(lambda: not fake._fail_rules, what="the CRITICAL's request hangs in Discord")
        durations = []
        for _ in range(3):
            started = time.monotonic()
            await monitor.check("prod")
            durations.append(time.monotonic() - started)
        state = monitor.states["prod"]
        assert state.fail_streak == 5 and state.alert is not None  # every check ran and saw the outage
        # A check that waited for the hung send would take at least SEND_TIMEOUT_S.
        assert max([alerting_s, *durations]) < SEND_TIMEOUT_S / 2, (alerting_s, durations)
        assert not criticals(fake)  # nothing has landed yet: the send is still hanging

        fake.release_hangs()  # Discord answers now: the same request lands, once
        await fake.wait_for(lambda: len(criticals(fake)) == 1, what="the CRITICAL")
        (alert,) = criticals(fake)
        await fake.wait_for(lambda: monitor.incident_for("prod").handle.get("message_id") == alert.id)

        stack.postgrest.start()
        await stack.wait_for_code("first judgment")
        for _ in range(2):  # success_threshold
            await monitor.check("prod")
        await fake.wait_for(lambda: "RESOLVED" in alert.embed_text(), what="the alert edited to resolved")
        await fake.wait_for(lambda: len(fake.channel_messages(fake.ops_channel_id)) == 2, what="the resolved line")
    assert len(criticals(fake)) == 1 and alert.edits == 1
    (_, line) = fake.channel_messages(fake.ops_channel_id)
    assert "resolved" in line.content
