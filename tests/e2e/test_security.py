"""Who may do what, tried as an outsider would: another server, a DM, a look-alike role, someone else's buttons.

The bot runs in-process against the fake Discord; PostgREST and PostgreSQL are real, so "nothing was sent"
is checked where it would show: no NOTIFY counted by the operator, no row in the store, no channel message.
"""

from __future__ import annotations

import asyncio

import pytest

from bot.chat.checks import NOT_HERE, NOT_IN_DMS
from bot.store.sqlite import Store
from tests.e2e.conftest import running_bot
from tests.e2e.test_incidents import STALE_TABLE, open_alert, store_cfg


def refusal(record) -> str:
    """The ephemeral text of a refused interaction (and that it carries nothing else)."""
    assert record.ephemeral, record.callbacks
    message = record.original
    assert not message.embeds and not message.components
    return message.content or ""


async def test_commands_exist_only_in_the_configured_guild(fake, make_stack):
    stack = make_stack()
    other = fake.add_guild("elsewhere", roles=["ops"], members={"mallory": ["ops"]})
    fake.commands["global"] = [{"id": "1", "name": "reload", "type": 1, "description": "an older global sync"}]
    async with running_bot(fake, {"dev": stack.env_config()}, stack.env_vars):
        synced = {scope: [c["name"] for c in cmds] for scope, cmds in fake.commands.items()}
    assert synced["global"] == []  # the older global registration is gone
    assert other.id not in synced and "reload" in synced[fake.guild_id]
    assert all(c.get("contexts") == [0] for c in fake.commands[fake.guild_id])  # guild-only: never in DMs


@pytest.mark.parametrize("command", ["reload", "status", "health", "silence"])
async def test_a_role_named_ops_in_another_server_is_refused(fake, make_stack, command):
    stack = make_stack()
    stack.sql(STALE_TABLE)
    other = fake.add_guild("elsewhere", roles=["ops"], members={"mallory": ["ops"]})
    options = {
        "reload": {"env": "dev"},
        "status": {},
        "health": {"env": "dev"},
        "silence": {"env": "dev", "duration": "1h", "reason": "outsider"},
    }[command]
    async with running_bot(fake, {"dev": stack.env_config(probe_tables=["orders"])}, stack.env_vars) as bot:
        record = await fake.invoke_slash(
            command, user_id=fake.user_ids["mallory"], options=options, from_guild=other.id
        )
        await record.wait_acked()
        reloads = bot.services.operator.reloads_in_window("dev")
        silences = dict(bot.services.monitor.silences)
    assert refusal(record) == NOT_HERE
    assert reloads == 0 and not silences and not fake.channel_messages(fake.ops_channel_id)


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("status", {}),
        ("health", {"env": "dev"}),
        ("incidents", {}),
        ("drift", {"env": "dev"}),
        ("reload", {"env": "dev"}),
    ],
)
@pytest.mark.parametrize("as_global", [False, True])
async def test_a_dm_is_refused_without_any_environment_data(fake, make_stack, command, options, as_global):
    stack = make_stack()
    stack.sql(STALE_TABLE)
    async with running_bot(fake, {"dev": stack.env_config(probe_tables=["orders"])}, stack.env_vars) as bot:
        # alice holds the ops role in the guild: in a DM that proves nothing
        record = await fake.invoke_slash(
            command, user_id=fake.user_ids["alice"], options=options, dm=True, as_global=as_global
        )
        await record.wait_acked()
        reloads = bot.services.operator.reloads_in_window("dev")
    text = refusal(record)
    # a command that reaches the tree hits the guild check; one the tree does not know is refused too
    assert text == (NOT_HERE if as_global else NOT_IN_DMS)
    assert "dev" not in text.lower() and "orders" not in text and reloads == 0


@pytest.mark.parametrize("configured_as", ["name", "id"])
async def test_a_look_alike_role_made_after_start_is_refused_and_the_real_role_is_allowed(
    fake, make_stack, configured_as
):
    stack = make_stack()
    stack.sql(STALE_TABLE)
    mallory = fake.user_ids["mallory"]
    ops_role = "ops" if configured_as == "name" else fake.role_ids["ops"]
    envs = {"dev": stack.env_config(probe_tables=["orders"])}
    async with running_bot(fake, envs, stack.env_vars, discord={"ops_role": ops_role}) as bot:
        look_alike = fake.create_role("ops")
        fake.give_role(mallory, look_alike)
        refused = await fake.invoke_slash("reload", user_id=mallory, options={"env": "dev"})
        await refused.wait_acked()
        assert "/reload dev needs the **ops** role" in refusal(refused)
        assert bot.services.operator.reloads_in_window("dev") == 0

        fake.give_role(mallory, fake.role_ids["ops"])
        allowed = await fake.invoke_slash("reload", user_id=mallory, options={"env": "dev"})
        await allowed.wait_for(lambda r: r.original is not None and "Audit" in str(r.original.embeds), 15)
        reloads = bot.services.operator.reloads_in_window("dev")
    assert look_alike != fake.role_ids["ops"]
    assert allowed.original.embeds[0]["title"].startswith("✅ DEV healthy after") and reloads == 1


async def test_alert_buttons_pressed_without_the_role_are_refused_and_record_nothing(fake, make_stack, tmp_path):
    stack = make_stack()
    stack.sql(STALE_TABLE)
    mallory = fake.user_ids["mallory"]
    envs = {"prod": stack.env_config(probe_tables=["orders"], auto_recover=False)}
    async with running_bot(fake, envs, stack.env_vars, incidents=store_cfg(tmp_path)) as bot:
        alert = await open_alert(fake, bot)
        fake.give_role(mallory, fake.create_role("ops"))  # a look-alike does not help either
        texts = {}
        for button in alert.buttons():
            if button.get("custom_id"):
                click = await fake.click_button(alert, button["custom_id"], user_id=mallory)
                await click.wait_acked()  # the refusal is the positive signal; then look for absences
                texts[button["label"]] = refusal(click)
        reloads = bot.services.operator.reloads_in_window("prod")
        state = bot.services.monitor.states["prod"]
        acknowledged_by, silences = state.alert.acknowledged_by, dict(bot.services.monitor.silences)
    assert set(texts) == {"Acknowledge", "Silence 1h", "Retry reload"}
    assert all("needs the **ops** role" in t for t in texts.values()), texts
    assert reloads == 0 and acknowledged_by is None and not silences
    store = await Store(tmp_path / "incidents.db").open()
    try:
        audit, rows = await store.audit_log(), await store.active_silences()
    finally:
        await store.close()
    assert audit == [] and rows == []


async def test_confirm_applies_the_reload_checks_again(fake, make_stack):
    stack = make_stack()
    stack.sql(STALE_TABLE)
    alice = fake.user_ids["alice"]
    envs = {"prod": stack.env_config(probe_tables=["orders"], protected=True, reload_role="ops-prod")}
    async with running_bot(fake, envs, stack.env_vars) as bot:
        record = await fake.invoke_slash("reload", user_id=alice, options={"env": "prod"})
        await record.wait_acked()
        fake.take_role(alice, fake.role_ids["ops-prod"])  # the role was taken while the question was open
        confirm = await fake.click_button(record.original, record.original.buttons()[0]["custom_id"], user_id=alice)
        await confirm.wait_acked()
        reloads = bot.services.operator.reloads_in_window("prod")
    assert "/reload prod needs the **ops-prod** role" in refusal(confirm) and reloads == 0


async def test_a_stop_while_a_confirmation_is_pending_ends_the_question_at_once(fake, make_stack):
    stack = make_stack()
    stack.sql(STALE_TABLE)
    envs = {"prod": stack.env_config(probe_tables=["orders"], protected=True)}
    alice = fake.user_ids["alice"]
    loop = asyncio.get_running_loop()
    async with running_bot(fake, envs, stack.env_vars, discord={"shutdown_grace_s": 30}) as bot:
        record = await fake.invoke_slash("reload", user_id=alice, options={"env": "prod"})
        await record.wait_for(lambda r: r.original is not None and bool(r.original.buttons()))
        started = loop.time()
        await bot.close()  # what SIGTERM leads to
        took = loop.time() - started
        reloads = bot.services.operator.reloads_in_window("prod")
    assert took < 5  # the grace period is for running reloads, not for a question nobody answered
    assert record.original.content == "⚠️ interrupted by shutdown before NOTIFY: not confirmed. Nothing was sent."
    assert not record.original.buttons() and reloads == 0
