"""Where messages go, through the fake Discord with several text channels and alert roles.

prod pages #ops-prod and @oncall-prod, dev posts quietly to #dev-alerts, staging has no keys of its own and
uses the global #ops-alerts and @oncall. PostgREST and PostgreSQL are real: a table missing from the
database makes each environment unhealthy on its own, so each gets its own CRITICAL.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest

from bot.config import ConfigError
from tests.e2e.conftest import running_bot

MISSING = ["orders"]  # created later: missing_in_database until then (not a network failure)
CREATE_ORDERS = "CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;"


def routed_envs(fake, stack, **extra_envs):
    return {
        "prod": stack.env_config(
            probe_tables=MISSING,
            auto_recover=False,
            alert_channel_id=fake.prod_channel_id,
            alert_role=fake.role_ids["oncall-prod"],
        ),
        "dev": stack.env_config(
            probe_tables=MISSING, auto_recover=False, alert_channel_id=fake.dev_channel_id, alert_role="none"
        ),
        "staging": stack.env_config(probe_tables=MISSING, auto_recover=False),
        **extra_envs,
    }


async def served(stack, table: str, within_s: float = 10.0) -> None:
    async with httpx.AsyncClient(timeout=2) as client:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{stack.postgrest.url}/{table}")).status_code == 200:
                    return
            await asyncio.sleep(0.05)
    raise AssertionError(f"PostgREST does not serve {table} after {within_s} s")


@dataclass(frozen=True)
class Posted:
    content: str
    allowed_mentions: dict
    mention_roles: list[int]
    mention_everyone: bool

    def __init__(self, message) -> None:
        object.__setattr__(self, "content", message.content or "")
        object.__setattr__(self, "allowed_mentions", dict(message.allowed_mentions or {}))
        object.__setattr__(self, "mention_roles", list(message.mention_roles))
        object.__setattr__(self, "mention_everyone", message.mention_everyone)


def roles_allowed(allowed_mentions: dict) -> list[int]:
    """The roles a message may ping (discord.py sends the ids as numbers)."""
    return [int(r) for r in allowed_mentions.get("roles", [])]


def in_channel(fake, channel_id):
    """What the bot posted there by itself (not the answers to /status and /incidents)."""
    return [m for m in fake.channel_messages(channel_id) if m.interaction_id is None]


def critical(message) -> bool:
    return "CRITICAL" in str(message.history[0])


async def test_each_environment_alerts_reminds_and_resolves_in_its_own_channel(fake, make_stack):
    stack = make_stack()
    prod_ch, dev_ch, ops_ch = fake.prod_channel_id, fake.dev_channel_id, fake.ops_channel_id
    oncall, oncall_prod = fake.role_ids["oncall"], fake.role_ids["oncall-prod"]
    async with running_bot(
        fake, routed_envs(fake, stack), stack.env_vars, incidents={"store_path": ":memory:", "reminder_interval_s": 60}
    ) as bot:
        monitor = bot.services.monitor
        for _ in range(2):
            for env in ("prod", "dev", "staging"):
                await monitor.check(env)
        prod_alert = await fake.wait_for_message(prod_ch, critical, 10)
        dev_alert = await fake.wait_for_message(dev_ch, critical, 10)
        staging_alert = await fake.wait_for_message(ops_ch, critical, 10)
        await bot.sink.outbox.settle()
        # as posted (the resolved edit changes them later)
        posted = {a.id: Posted(a) for a in (prod_alert, dev_alert, staging_alert)}

        real_now = monitor.now
        monitor.now = lambda: real_now() + timedelta(seconds=61)  # a reminder is due everywhere
        for env in ("prod", "dev", "staging"):
            await monitor.check(env)
        reminded = lambda m: "Reminder" in (m.content or "")  # noqa: E731
        prod_reminder = await fake.wait_for_message(prod_ch, reminded)
        dev_reminder = await fake.wait_for_message(dev_ch, reminded)
        await fake.wait_for_message(ops_ch, reminded)

        status = await fake.invoke_slash("status", user_id=fake.user_ids["carol"])
        await status.wait_acked()
        incidents = await fake.invoke_slash("incidents", user_id=fake.user_ids["carol"])
        await incidents.wait_for(lambda r: r.messages and r.messages[-1].embeds, 10)

        stack.sql(CREATE_ORDERS)
        stack.notify()  # PostgREST loads the new table
        await served(stack, "orders")
        monitor.now = real_now
        for _ in range(20):
            for env in ("prod", "dev", "staging"):
                await monitor.check(env)
            if all(s.alert is None for s in monitor.states.values()):
                break
            await asyncio.sleep(0.2)
        resolved = lambda m: "resolved after" in (m.content or "")  # noqa: E731
        prod_line = await fake.wait_for_message(prod_ch, resolved, 10)
        dev_line = await fake.wait_for_message(dev_ch, resolved, 10)
        await fake.wait_for_message(ops_ch, resolved, 10)
        await bot.sink.outbox.settle()

    # prod: its own channel, pinging only @oncall-prod (allowed_mentions names that role alone)
    prod, dev, staging = (posted[a.id] for a in (prod_alert, dev_alert, staging_alert))
    assert prod.content.startswith(f"<@&{oncall_prod}> PostgREST PROD")
    assert roles_allowed(prod.allowed_mentions) == [oncall_prod] and not prod.allowed_mentions["parse"]
    assert prod.mention_roles == [oncall_prod]
    # dev: its own channel, nobody pinged, nothing allowed to ping
    assert dev.content.startswith("PostgREST DEV") and "<@&" not in dev.content
    assert roles_allowed(dev.allowed_mentions) == [] and dev.allowed_mentions["parse"] == []
    assert dev.mention_roles == [] and not dev.mention_everyone
    # staging: no keys of its own, so the global channel and role
    assert staging.content.startswith(f"<@&{oncall}> PostgREST STAGING")
    assert staging.mention_roles == [oncall]
    # reminders reply to their alert in its channel; the alert is edited where it is, the line posted beside it
    assert prod_reminder.message_reference["message_id"] == str(prod_alert.id)
    assert dev_reminder.message_reference["message_id"] == str(dev_alert.id)
    assert "PROD" in prod_line.content and "DEV" in dev_line.content and dev_line.mention_roles == []
    for alert in (prod_alert, dev_alert, staging_alert):
        assert fake.message(alert.id).embeds[0]["title"].startswith("✅ RESOLVED")
    # each channel holds exactly its environment's alert, reminder and resolved line: nothing elsewhere
    for channel, env in ((prod_ch, "PROD"), (dev_ch, "DEV"), (ops_ch, "STAGING")):
        messages = in_channel(fake, channel)
        assert len(messages) == 3, [m.content for m in messages]
        assert all(env in (m.content or "") + m.embed_text() for m in messages)
        assert sum(critical(m) for m in messages) == 1
    assert not in_channel(fake, fake.other_channel_id)

    # /status and /incidents say where each environment alerts
    fields = {f["name"].split(" — ")[0].split()[-1]: f["value"] for f in status.original.embeds[0]["fields"]}
    assert f"alerts → <#{prod_ch}>, pings <@&{oncall_prod}>" in fields["PROD"].splitlines()
    assert f"alerts → <#{dev_ch}>, no ping" in fields["DEV"].splitlines()
    assert f"alerts → <#{ops_ch}>, pings <@&{oncall}>" in fields["STAGING"].splitlines()
    log = incidents.messages[-1].embeds[0]["description"].splitlines()
    assert (
        f"**DEV** alerts → <#{dev_ch}>, no ping" in log
        and f"**PROD** alerts → <#{prod_ch}>, pings <@&{oncall_prod}>" in log
    )


async def test_the_network_lost_notice_is_posted_once_per_channel_naming_its_environments(fake, make_stack):
    stack = make_stack()
    # qa shares the global channel with staging but pages another role (given by name, resolved at start)
    envs = routed_envs(
        fake, stack, qa=stack.env_config(probe_tables=MISSING, auto_recover=False, alert_role="oncall-prod")
    )
    oncall, oncall_prod = fake.role_ids["oncall"], fake.role_ids["oncall-prod"]
    async with running_bot(fake, envs, stack.env_vars) as bot:
        monitor = bot.services.monitor
        stack.postgrest.stop()
        for _ in range(3):
            for env in envs:
                await monitor.check(env)
        lost = {
            ch: await fake.wait_for_message(ch, lambda m: "lost its network" in (m.content or ""))
            for ch in (fake.prod_channel_id, fake.dev_channel_id, fake.ops_channel_id)
        }
        stack.postgrest.start()
        await monitor.check("dev")  # one environment answers: the network is back
        is_back = lambda m: "Network is back" in (m.content or "")  # noqa: E731
        back = {ch: await fake.wait_for_message(ch, is_back, 10) for ch in lost}
        await bot.sink.outbox.settle()
        notices = {ch: [m for m in in_channel(fake, ch) if not m.embeds] for ch in lost}

    assert "(PROD)" in lost[fake.prod_channel_id].content and lost[fake.prod_channel_id].mention_roles == [oncall_prod]
    assert "(DEV)" in lost[fake.dev_channel_id].content and lost[fake.dev_channel_id].mention_roles == []
    assert roles_allowed(lost[fake.dev_channel_id].allowed_mentions) == []
    shared = lost[fake.ops_channel_id]
    assert "(STAGING, QA)" in shared.content and sorted(shared.mention_roles) == sorted([oncall, oncall_prod])
    assert sorted(roles_allowed(shared.allowed_mentions)) == sorted([oncall, oncall_prod])
    assert all(line.content.startswith("Network is back") and not line.mention_roles for line in back.values())
    # exactly one notice and one "back" line per channel (the CRITICALs were held while the network was gone)
    assert {ch: [m.id for m in lines] for ch, lines in notices.items()} == {
        ch: [lost[ch].id, back[ch].id] for ch in lost
    }
    assert not in_channel(fake, fake.other_channel_id)


@pytest.mark.parametrize("problem", ["look-alike role", "channel of another server", "unknown channel"])
async def test_a_routing_the_bot_cannot_trust_stops_the_start_naming_the_key(fake, make_stack, problem):
    stack = make_stack()
    env = stack.env_config(alert_channel_id=fake.prod_channel_id, alert_role="oncall-prod")
    if problem == "look-alike role":
        fake.create_role("oncall-prod")  # anyone with Manage Roles can: the name no longer proves which role
        expected = "environments.prod.alert_role: 2 roles are named 'oncall-prod'"
    elif problem == "channel of another server":
        other = fake.add_guild("elsewhere", roles=["oncall-prod"], members={})
        env["alert_channel_id"] = other.channel_id
        expected = f"environments.prod.alert_channel_id: channel {other.channel_id} is in guild {other.id}"
    else:
        env["alert_channel_id"] = 123456789012345678
        expected = "environments.prod.alert_channel_id: the bot cannot see channel 123456789012345678"
    with pytest.raises(ConfigError) as err:
        async with running_bot(fake, {"prod": env}, stack.env_vars):
            pass
    assert str(err.value).startswith(expected), err.value
    assert not in_channel(fake, fake.prod_channel_id) and not in_channel(fake, fake.ops_channel_id)
