"""Fencing: once a replica's fence says it no longer leads, its outbox sends nothing and its monitor's checks act
on nothing; what it left in the store goes out once, from the next leader.

The fence here is a plain switch (the lease behind it is tested in tests/bot/postgres/test_lease.py, the wiring
by the two-process test in tests/e2e/test_replicas.py); the outbox, the store, the monitor and PostgREST are real.
"""

from __future__ import annotations

from typing import Any

from bot.delivery.guard import StoreGuard
from bot.delivery.outbox import Outbox
from bot.delivery.rows import POST
from bot.store.sqlite import Store
from tests.e2e.conftest import running_bot
from tests.e2e.test_incidents import criticals, read_incidents, store_cfg


class Switch:
    """The fence: "still the leader?"."""

    def __init__(self) -> None:
        self.leading = True

    def __call__(self) -> bool:
        return self.leading


class Recorder:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def deliver(self, env: str, kind: str, payload: dict[str, Any], meta: dict[str, Any], nonce: str) -> Any:
        self.sent.append(payload["content"])
        return {"channel_id": 9, "message_id": len(self.sent)}


async def test_a_fenced_outbox_sends_nothing_and_the_next_leader_sends_it_once(tmp_path):
    store = await Store(tmp_path / "incidents.db").open()
    try:
        fence, stale = Switch(), Recorder()
        outbox = Outbox(StoreGuard(store), stale)
        outbox.fence = fence
        await outbox.send("prod", POST, {"content": "while leading"})
        await outbox.settle()
        fence.leading = False  # the lease is lost
        await outbox.send("prod", POST, {"content": "after the lease was lost"})
        await outbox.settle()
        await outbox.flush()  # the periodic retry does not send it either
        pending = [row.payload["content"] for row in await store.outbox_pending()]

        leader = Recorder()  # the replica that took over, on the same store
        await Outbox(StoreGuard(store), leader).flush()
        left = await store.outbox_pending()
    finally:
        await store.close()
    assert stale.sent == ["while leading"]
    assert pending == ["after the lease was lost"]  # kept in the store, not lost
    assert leader.sent == ["after the lease was lost"] and left == []  # sent once, by the new leader


async def test_a_fenced_monitor_records_and_alerts_nothing_and_acts_again_once_it_leads(fake, make_stack, tmp_path):
    stack = make_stack()
    stack.postgrest.stop()
    envs = {"prod": stack.env_config(auto_recover=False)}
    async with running_bot(fake, envs, stack.env_vars, incidents=store_cfg(tmp_path)) as bot:
        monitor, fence = bot.services.monitor, Switch()
        monitor.fence = bot.sink.outbox.fence = fence
        fence.leading = False
        for _ in range(3):  # past the failure threshold (2)
            await monitor.check("prod")
        await bot.sink.outbox.settle()
        fenced = (monitor.states["prod"].alert, monitor.states["prod"].verdict, len(criticals(fake)))
        fenced_incidents = await read_incidents(tmp_path / "incidents.db")
        fence.leading = True  # the same checks once this replica leads: the switch is what held them
        await monitor.check("prod")
        await monitor.check("prod")
        await fake.wait_for(lambda: len(criticals(fake)) == 1, 10)
    assert fenced == (None, None, 0) and fenced_incidents == []
    assert len(await read_incidents(tmp_path / "incidents.db")) == 1


async def test_a_leader_adopts_only_its_own_environments_rows_from_a_store_two_groups_share(tmp_path):
    store = await Store(tmp_path / "incidents.db").open()
    try:
        await store.outbox_add("eu", POST, {"content": "the eu group's"}, {}, "nonce-eu")
        await store.outbox_add("prod", POST, {"content": "ours"}, {}, "nonce-prod")
        ours = Recorder()
        outbox = Outbox(StoreGuard(store), ours)
        outbox.envs = frozenset({"prod"})
        await outbox.flush()
        left = [row.env for row in await store.outbox_pending()]
    finally:
        await store.close()
    assert ours.sent == ["ours"] and left == ["eu"]  # the eu row waits for the eu group's leader
