"""Data objects the fake Discord keeps and hands to tests."""

# ruff: noqa: ASYNC109  (the test API takes timeout= arguments on purpose)

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DISCORD_EPOCH_MS = 1420070400000

# Message flags (https://discord.com/developers/docs/resources/message#message-object-message-flags)
FLAG_SUPPRESS_EMBEDS = 1 << 2
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
FLAG_SUPPRESS_NOTIFICATIONS = 1 << 12
FLAG_IS_COMPONENTS_V2 = 1 << 15

_counter = itertools.count(1)
_last_snowflake = 0


def snowflake() -> int:
    """A fresh, strictly increasing snowflake whose timestamp is 'now' (discord.py derives created_at)."""
    global _last_snowflake
    ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
    value = (ms << 22) | (1 << 17) | (next(_counter) & 0xFFF)
    if value <= _last_snowflake:
        value = _last_snowflake + 1
    _last_snowflake = value
    return value


def iso_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


class DiscordError(Exception):
    """Raised inside the fake to produce a Discord-shaped error response."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        errors: dict[str, Any] | None = None,
        *,
        rule: bool = True,
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors
        # rule=True: the bot broke one of Discord's rules (recorded in `errors`).
        self.rule = rule

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


@dataclass
class RequestLog:
    """One REST request the fake received (in arrival order)."""

    method: str
    path: str  # relative to the API base, e.g. "/channels/123/messages" (no /api/v10 prefix)
    query: dict[str, str]
    json: Any  # parsed JSON body (or payload_json of a multipart body), None if there was none
    time: float  # time.monotonic() at arrival
    status: int = 0  # status the fake answered with (0 while still in flight / hung)
    raw_path: str = ""  # the full URL path as received
    files: list[dict[str, Any]] = field(default_factory=list)  # multipart files: filename, size, content_type
    injected: bool = False  # answered by a fail_next() rule

    def __repr__(self) -> str:
        return f"<RequestLog {self.method} {self.path} -> {self.status}>"


@dataclass
class FailRule:
    method: str
    pattern: re.Pattern[str]
    status: int
    times: int
    retry_after: float | None
    hang: bool

    def matches(self, method: str, path: str) -> bool:
        return (self.method == "*" or self.method.upper() == method.upper()) and bool(self.pattern.search(path))


@dataclass(eq=False)
class FakeMessage:
    """A message as the fake stores it; mutated in place by edits (so a held reference stays current)."""

    id: int
    channel_id: int
    content: str | None = None
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    allowed_mentions: dict[str, Any] | None = None
    edits: int = 0
    message_reference: dict[str, Any] | None = None
    flags: int = 0
    deleted: bool = False
    # extras
    author_id: int = 0
    webhook_id: int | None = None
    interaction_id: int | None = None  # interaction that created it (original / followup)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    tts: bool = False
    nonce: str | int | None = None
    type: int = 0
    created_at: str = field(default_factory=iso_now)
    edited_at: str | None = None
    # who actually got pinged (after allowed_mentions and role mentionability are applied)
    mentions: list[int] = field(default_factory=list)
    mention_roles: list[int] = field(default_factory=list)
    mention_everyone: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)  # payloads that created / edited it

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & FLAG_EPHEMERAL)

    @property
    def loading(self) -> bool:
        return bool(self.flags & FLAG_LOADING)

    def buttons(self) -> list[dict[str, Any]]:
        """All button components (type 2) anywhere in the component tree."""
        return [c for c in iter_components(self.components) if c.get("type") == 2]

    def find_component(self, custom_id: str) -> dict[str, Any] | None:
        for comp in iter_components(self.components):
            if comp.get("custom_id") == custom_id:
                return comp
        return None

    def embed_text(self) -> str:
        """Every piece of text in the embeds, joined -- handy for `in` assertions."""
        parts: list[str] = []
        for e in self.embeds:
            for key in ("title", "description"):
                if e.get(key):
                    parts.append(str(e[key]))
            for f in e.get("fields") or []:
                parts.extend([str(f.get("name", "")), str(f.get("value", ""))])
            if (e.get("footer") or {}).get("text"):
                parts.append(str(e["footer"]["text"]))
            if (e.get("author") or {}).get("name"):
                parts.append(str(e["author"]["name"]))
        return "\n".join(parts)


def iter_components(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flatten a component tree (action rows, v2 containers/sections with accessories)."""
    out: list[dict[str, Any]] = []
    stack = list(reversed(components or []))
    while stack:
        comp = stack.pop()
        out.append(comp)
        children = list(comp.get("components") or [])
        if comp.get("accessory"):
            children.append(comp["accessory"])
        stack.extend(reversed(children))
    return out


class Waitable:
    """Shared "something changed" notification used by wait_for helpers."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
            event = self._event
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                continue


@dataclass(eq=False)
class InteractionRecord:
    """Everything the bot did with one interaction the fake dispatched."""

    id: int
    token: str
    type: int  # 2 application command, 3 component, 4 autocomplete, 5 modal submit
    name: str  # command name, or custom_id for components
    user_id: int
    channel_id: int
    payload: dict[str, Any]  # the INTERACTION_CREATE `d` that was dispatched
    dispatched_at: float  # time.monotonic()
    callbacks: list[dict[str, Any]] = field(default_factory=list)  # accepted callbacks: {"type", "data"}
    original: FakeMessage | None = None
    followups: list[FakeMessage] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    ephemeral: bool = False
    source_message: FakeMessage | None = None  # the message a component lives on (type 3)
    acked_at: float | None = None
    _waitable: Waitable | None = field(default=None, repr=False)

    @property
    def acked(self) -> bool:
        return self.acked_at is not None

    @property
    def deferred(self) -> bool:
        return bool(self.callbacks) and self.callbacks[0]["type"] in (5, 6)

    @property
    def choices(self) -> list[dict[str, Any]] | None:
        """Autocomplete choices (type 8 callback), None if none arrived."""
        for cb in self.callbacks:
            if cb["type"] == 8:
                return list((cb.get("data") or {}).get("choices") or [])
        return None

    @property
    def messages(self) -> list[FakeMessage]:
        """Original (if any) followed by followups, without duplicates."""
        out: list[FakeMessage] = []
        for m in ([self.original] if self.original else []) + self.followups:
            if m not in out:
                out.append(m)
        return out

    async def wait_for(self, predicate: Callable[[InteractionRecord], bool], timeout: float = 5) -> None:
        assert self._waitable is not None
        await self._waitable.wait_until(lambda: predicate(self), timeout, f"{predicate!r} on {self!r}")

    async def wait_acked(self, timeout: float = 5) -> None:
        await self.wait_for(lambda r: r.acked or bool(r.errors), timeout)

    def __repr__(self) -> str:
        return (
            f"<InteractionRecord id={self.id} type={self.type} name={self.name!r} "
            f"callbacks={[c['type'] for c in self.callbacks]} followups={len(self.followups)} "
            f"errors={[e.get('code') for e in self.errors]}>"
        )
