"""The outbox's rules without a store or Discord: backoff, fallback, order per environment, folding edits."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.delivery.guard import StoreGuard
from bot.delivery.outbox import FALLBACK_AFTER_S, MAX_RETRY_S, DeliveryError, Outbox, retry_delay, use_fallback
from bot.delivery.rows import EDIT, POST, landed, pending_handle, pending_nonce


@pytest.mark.parametrize(
    ("failures", "delay"), [(1, 5), (2, 10), (3, 20), (4, 40), (5, MAX_RETRY_S), (50, MAX_RETRY_S)]
)
def test_retry_delay_doubles_from_5_s_to_a_cap(failures: int, delay: float) -> None:
    assert retry_delay(failures) == delay


@pytest.mark.parametrize(("retry_after", "delay"), [(30, 30), (1, 5), (10_000, MAX_RETRY_S)])
def test_retry_delay_honours_retry_after_within_the_cap(retry_after: float, delay: float) -> None:
    assert retry_delay(1, retry_after) == delay


@pytest.mark.parametrize(
    ("kind", "failing_since", "now", "expected"),
    [
        (POST, None, 1000, False),  # the channel is not failing
        (POST, 0, FALLBACK_AFTER_S - 1, False),  # not failing long enough
        (POST, 0, FALLBACK_AFTER_S, True),
        (EDIT, 0, 10 * FALLBACK_AFTER_S, False),  # the webhook cannot edit a channel message
    ],
)
def test_only_posts_fall_back_and_only_after_two_minutes(
    kind: str, failing_since: float | None, now: float, expected: bool
) -> None:
    assert use_fallback(kind, failing_since, now) is expected


def test_a_pending_handle_names_its_nonce_and_has_not_landed() -> None:
    handle = pending_handle("abc")
    assert pending_nonce(handle) == "abc" and not landed(handle)
    assert landed({"message_id": 1}) and landed({"webhook_message_id": "2"}) and not landed({"skipped": "x"})


class Gate:
    """A transport that records what it is given and answers only when opened."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.sent: list[tuple[str, str, Any]] = []
        self._ids = iter(range(1, 1000))

    async def deliver(self, env: str, kind: str, payload: dict[str, Any], meta: dict[str, Any], nonce: str) -> Any:
        await self.open.wait()
        self.sent.append((env, kind, payload["content"]))
        return {"channel_id": 9, "message_id": next(self._ids)}


async def test_in_background_mode_send_returns_at_once_and_rows_go_out_in_order() -> None:
    gate = Gate()
    outbox = Outbox(StoreGuard(None), gate)
    outbox.background = True
    landed_rows: list[str] = []

    async def on_delivered(row: Any, result: Any) -> None:
        landed_rows.append(row.payload["content"])

    outbox.on_delivered = on_delivered
    first = await outbox.send("prod", POST, {"content": "one"})
    await outbox.send("prod", POST, {"content": "two"})
    assert pending_nonce(first) and gate.sent == []  # nothing waited for the transport
    gate.open.set()
    await outbox.settle()
    assert gate.sent == [("prod", POST, "one"), ("prod", POST, "two")]
    assert landed_rows == ["one", "two"]


async def test_an_edit_of_a_queued_post_changes_that_post() -> None:
    gate = Gate()
    outbox = Outbox(StoreGuard(None), gate)
    outbox.background = True
    await outbox.send("prod", POST, {"content": "line"})  # in flight, held at the gate
    alert = await outbox.send("prod", POST, {"content": "CRITICAL"})
    assert await outbox.send("prod", EDIT, {"content": "CRITICAL, acknowledged"}, {"target": alert}) is None
    gate.open.set()
    await outbox.settle()
    assert [content for _, _, content in gate.sent] == ["line", "CRITICAL, acknowledged"]


class RefusesFirst:
    """A transport whose first send fails as Discord's 503 does, then takes every message."""

    def __init__(self) -> None:
        self.tries = 0
        self.sent: list[str] = []

    async def deliver(self, env: str, kind: str, payload: dict[str, Any], meta: dict[str, Any], nonce: str) -> Any:
        self.tries += 1
        if self.tries == 1:
            raise DeliveryError("HTTP 503", transient=True)
        self.sent.append(payload["content"])
        return {"channel_id": 9, "message_id": self.tries}


async def test_an_alert_resolved_while_its_post_waits_between_tries_is_never_posted() -> None:
    transport = RefusesFirst()
    waiting, release = asyncio.Event(), asyncio.Event()

    async def sleep(_: float) -> None:  # the pause between tries, held until the edit has come
        waiting.set()
        await release.wait()

    outbox = Outbox(StoreGuard(None), transport, sleep=sleep)
    alert = await outbox.send("prod", POST, {"content": "CRITICAL"}, {"alert": True})
    async with asyncio.timeout(5):
        await waiting.wait()  # the first try failed: the post waits for its second
    await outbox.send("prod", EDIT, {"content": "RESOLVED"}, {"target": alert, "alert": False})
    await outbox.send("prod", POST, {"content": "resolved line"})
    release.set()
    async with asyncio.timeout(5):
        await outbox.settle()
    assert transport.sent == ["resolved line"]  # the superseded CRITICAL is not sent after its pause


class RefusesFirstWhenOpened:
    """Holds the first send at a gate, then refuses it as Discord's 503 does; later sends land at once."""

    def __init__(self) -> None:
        self.out = asyncio.Event()  # the first send is out
        self.open = asyncio.Event()
        self.sent: list[tuple[str, str]] = []
        self.tries = 0

    async def deliver(self, env: str, kind: str, payload: dict[str, Any], meta: dict[str, Any], nonce: str) -> Any:
        self.tries += 1
        if self.tries == 1:
            self.out.set()
            await self.open.wait()
            raise DeliveryError("HTTP 503", transient=True)
        self.sent.append((kind, payload["content"]))
        return {"channel_id": 9, "message_id": self.tries}


async def _alert_refused_while_edited(*edits: tuple[str, dict[str, Any], dict[str, Any]]) -> RefusesFirstWhenOpened:
    transport = RefusesFirstWhenOpened()

    async def no_pause(_: float) -> None:
        return None

    outbox = Outbox(StoreGuard(None), transport, sleep=no_pause)
    alert = await outbox.send("prod", POST, {"content": "CRITICAL"}, {"alert": True})
    async with asyncio.timeout(5):
        await transport.out.wait()  # the post is out: an edit now cannot change it and queues behind it
    for kind, payload, meta in edits:
        await outbox.send("prod", kind, payload, {k: (alert if v == "alert" else v) for k, v in meta.items()})
    transport.open.set()  # ... and the post is refused
    async with asyncio.timeout(5):
        await outbox.settle()
    return transport


async def test_an_edit_that_came_while_its_post_was_out_and_refused_goes_out_with_the_post() -> None:
    transport = await _alert_refused_while_edited((EDIT, {"content": "CRITICAL, acknowledged"}, {"target": "alert"}))
    assert transport.sent == [(POST, "CRITICAL, acknowledged")]  # one message, never shown unacknowledged


async def test_a_final_edit_that_came_while_its_post_was_out_leaves_only_the_resolved_line() -> None:
    transport = await _alert_refused_while_edited(
        (EDIT, {"content": "RESOLVED"}, {"target": "alert", "alert": False}),
        (POST, {"content": "resolved line"}, {"reply_to": "alert"}),
    )
    assert transport.sent == [(POST, "resolved line")]
