"""A local fake of Discord's REST API + gateway that an unmodified discord.py 2.x client can talk to.

See tests/fakediscord/__init__.py for the test-facing summary.
"""

# ruff: noqa: ASYNC109  (the test API takes timeout= arguments on purpose)

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import logging
import math
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from . import gateway as gw
from .models import (
    FLAG_EPHEMERAL,
    FLAG_IS_COMPONENTS_V2,
    FLAG_LOADING,
    FLAG_SUPPRESS_EMBEDS,
    FLAG_SUPPRESS_NOTIFICATIONS,
    DiscordError,
    FailRule,
    FakeMessage,
    InteractionRecord,
    RequestLog,
    Waitable,
    iso_now,
    iter_components,
    snowflake,
)
from .validation import validate_choices, validate_commands, validate_message

log = logging.getLogger("fakediscord")

# permission bits
P_CREATE_INSTANT_INVITE = 1 << 0
P_ADMINISTRATOR = 1 << 3
P_ADD_REACTIONS = 1 << 6
P_VIEW_CHANNEL = 1 << 10
P_SEND_MESSAGES = 1 << 11
P_MANAGE_MESSAGES = 1 << 13
P_EMBED_LINKS = 1 << 14
P_ATTACH_FILES = 1 << 15
P_READ_MESSAGE_HISTORY = 1 << 16
P_MENTION_EVERYONE = 1 << 17
P_USE_EXTERNAL_EMOJIS = 1 << 18
P_CONNECT = 1 << 20
P_SPEAK = 1 << 21
P_CHANGE_NICKNAME = 1 << 26
P_USE_APPLICATION_COMMANDS = 1 << 31
P_CREATE_PUBLIC_THREADS = 1 << 35
P_SEND_MESSAGES_IN_THREADS = 1 << 38
P_ALL = (1 << 51) - 1

EVERYONE_DEFAULT = (
    P_CREATE_INSTANT_INVITE
    | P_ADD_REACTIONS
    | P_VIEW_CHANNEL
    | P_SEND_MESSAGES
    | P_EMBED_LINKS
    | P_ATTACH_FILES
    | P_READ_MESSAGE_HISTORY
    | P_USE_EXTERNAL_EMOJIS
    | P_CONNECT
    | P_SPEAK
    | P_CHANGE_NICKNAME
    | P_USE_APPLICATION_COMMANDS
    | P_CREATE_PUBLIC_THREADS
    | P_SEND_MESSAGES_IN_THREADS
)

INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_MESSAGES = 1 << 9

# interaction type -> callback types Discord accepts for it
ALLOWED_CALLBACKS: dict[int, set[int]] = {2: {4, 5, 9}, 3: {4, 5, 6, 7, 9}, 4: {8}, 5: {4, 5, 6, 7}}
MESSAGE_FLAGS_SETTABLE = FLAG_EPHEMERAL | FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS | FLAG_IS_COMPONENTS_V2


@dataclass
class _Ctx:
    request: web.Request
    method: str
    path: str
    query: dict[str, str]
    json: Any
    files: list[dict[str, Any]]
    entry: RequestLog
    record: InteractionRecord | None = None
    route: str = ""

    @property
    def body(self) -> dict[str, Any]:
        return self.json if isinstance(self.json, dict) else {}

    def flag(self, name: str) -> bool:
        return self.query.get(name, "").lower() in ("1", "true")


@dataclass
class _Route:
    method: str
    template: str
    regex: re.Pattern[str]
    handler: Callable[..., Awaitable[web.StreamResponse]]
    auth: bool  # needs "Authorization: Bot ..."


@dataclass
class _Member:
    user_id: int
    name: str
    roles: list[int]
    bot: bool = False
    joined_at: str = field(default_factory=iso_now)


@dataclass
class OtherGuild:
    """Another server the bot is in, with its own roles (names may repeat the main guild's) and members."""

    id: int
    name: str
    channel_id: int
    roles: dict[int, dict[str, Any]] = field(default_factory=dict)
    role_ids: dict[str, int] = field(default_factory=dict)
    members: dict[int, list[int]] = field(default_factory=dict)  # user id -> role ids in this guild


def _json_response(data: Any, status: int, headers: dict[str, str]) -> web.Response:
    # exactly "application/json" (no charset): discord.py's json_or_text compares the header verbatim
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={**headers, "Content-Type": "application/json"}
    )


def _route_table(fake: FakeDiscord) -> list[_Route]:
    S = r"(?P<{}>\d+)"
    T = r"(?P<token>[^/]+)"
    spec: list[tuple[str, str, Callable[..., Awaitable[web.StreamResponse]], bool]] = [
        ("GET", "/gateway", fake._h_gateway_info, False),
        ("GET", "/gateway/bot", fake._h_gateway_info, True),
        ("GET", "/users/@me", fake._h_me, True),
        ("GET", f"/users/{S.format('user_id')}", fake._h_user, True),
        ("GET", "/oauth2/applications/@me", fake._h_appinfo, True),
        ("GET", "/applications/@me", fake._h_appinfo, True),
        ("PATCH", "/applications/@me", fake._h_appinfo, True),
        ("GET", f"/applications/{S.format('app_id')}/commands", fake._h_commands_get, True),
        ("PUT", f"/applications/{S.format('app_id')}/commands", fake._h_commands_put, True),
        ("POST", f"/applications/{S.format('app_id')}/commands", fake._h_command_post, True),
        ("GET", f"/applications/{S.format('app_id')}/commands/{S.format('cmd_id')}", fake._h_command_one, True),
        ("PATCH", f"/applications/{S.format('app_id')}/commands/{S.format('cmd_id')}", fake._h_command_one, True),
        ("DELETE", f"/applications/{S.format('app_id')}/commands/{S.format('cmd_id')}", fake._h_command_one, True),
        (
            "GET",
            f"/applications/{S.format('app_id')}/guilds/{S.format('guild_id')}/commands/permissions",
            fake._h_command_perms,
            True,
        ),
        (
            "GET",
            f"/applications/{S.format('app_id')}/guilds/{S.format('guild_id')}/commands",
            fake._h_commands_get,
            True,
        ),
        (
            "PUT",
            f"/applications/{S.format('app_id')}/guilds/{S.format('guild_id')}/commands",
            fake._h_commands_put,
            True,
        ),
        (
            "POST",
            f"/applications/{S.format('app_id')}/guilds/{S.format('guild_id')}/commands",
            fake._h_command_post,
            True,
        ),
        (
            "GET",
            f"/applications/{S.format('app_id')}/guilds/{S.format('guild_id')}/commands/{S.format('cmd_id')}",
            fake._h_command_one,
            True,
        ),
        (
            "PATCH",
            f"/applications/{S.format('app_id')}/guilds/{S.format('guild_id')}/commands/{S.format('cmd_id')}",
            fake._h_command_one,
            True,
        ),
        (
            "DELETE",
            f"/applications/{S.format('app_id')}/guilds/{S.format('guild_id')}/commands/{S.format('cmd_id')}",
            fake._h_command_one,
            True,
        ),
        ("GET", f"/guilds/{S.format('guild_id')}", fake._h_guild, True),
        ("GET", f"/guilds/{S.format('guild_id')}/channels", fake._h_guild_channels, True),
        ("GET", f"/guilds/{S.format('guild_id')}/roles", fake._h_guild_roles, True),
        ("GET", f"/guilds/{S.format('guild_id')}/members", fake._h_guild_members, True),
        ("GET", f"/guilds/{S.format('guild_id')}/members/{S.format('user_id')}", fake._h_guild_member, True),
        ("GET", f"/channels/{S.format('channel_id')}", fake._h_channel, True),
        ("GET", f"/channels/{S.format('channel_id')}/messages", fake._h_messages_list, True),
        ("POST", f"/channels/{S.format('channel_id')}/messages", fake._h_message_create, True),
        ("POST", f"/channels/{S.format('channel_id')}/typing", fake._h_typing, True),
        ("GET", f"/channels/{S.format('channel_id')}/messages/{S.format('message_id')}", fake._h_message_get, True),
        ("PATCH", f"/channels/{S.format('channel_id')}/messages/{S.format('message_id')}", fake._h_message_edit, True),
        (
            "DELETE",
            f"/channels/{S.format('channel_id')}/messages/{S.format('message_id')}",
            fake._h_message_delete,
            True,
        ),
        (
            "PUT",
            f"/channels/{S.format('channel_id')}/messages/{S.format('message_id')}/reactions/(?P<emoji>[^/]+)/@me",
            fake._h_reaction,
            True,
        ),
        (
            "DELETE",
            f"/channels/{S.format('channel_id')}/messages/{S.format('message_id')}/reactions/(?P<emoji>[^/]+)/@me",
            fake._h_reaction,
            True,
        ),
        ("POST", f"/interactions/{S.format('interaction_id')}/{T}/callback", fake._h_callback, False),
        ("GET", f"/webhooks/{S.format('webhook_id')}/{T}", fake._h_webhook_get, False),
        ("POST", f"/webhooks/{S.format('webhook_id')}/{T}", fake._h_webhook_execute, False),
        (
            "GET",
            f"/webhooks/{S.format('webhook_id')}/{T}/messages/(?P<message_id>@original|\\d+)",
            fake._h_webhook_message,
            False,
        ),
        (
            "PATCH",
            f"/webhooks/{S.format('webhook_id')}/{T}/messages/(?P<message_id>@original|\\d+)",
            fake._h_webhook_message,
            False,
        ),
        (
            "DELETE",
            f"/webhooks/{S.format('webhook_id')}/{T}/messages/(?P<message_id>@original|\\d+)",
            fake._h_webhook_message,
            False,
        ),
    ]
    return [_Route(m, t, re.compile(f"^{t}$"), h, a) for m, t, h, a in spec]


class FakeDiscord:
    """Fake Discord (REST + gateway) on 127.0.0.1, for end-to-end tests through discord.py.

    Lifecycle: ``await fake.start()`` (or ``async with FakeDiscord() as fake``), then
    ``with fake.patch_discord(): ...run the bot...``, then ``await fake.stop()``.
    """

    def __init__(
        self,
        *,
        ack_deadline: float = 3.0,
        token_ttl: float = 15 * 60.0,
        bot_token: str | None = None,
        guild_name: str = "pgrst-ops-test",
        default_members: bool = True,
    ) -> None:
        self.ack_deadline = ack_deadline
        self.token_ttl = token_ttl
        self.bot_token = bot_token  # None: accept any token
        self.gateway_sessions: list[gw.GatewaySession] = []
        self._bg_tasks: set[asyncio.Task[None]] = set()

        # identities (a modern bot's user id equals its application id)
        self.app_id: int = snowflake()
        self.bot_user_id: int = self.app_id
        self.guild_id: int = snowflake()
        self.guild_name = guild_name
        self.bot_name = "pgrst-ops"

        self._users: dict[int, dict[str, Any]] = {}
        self._members: dict[int, _Member] = {}
        self.user_ids: dict[str, int] = {}

        # roles: @everyone has the guild's id
        self._roles: dict[int, dict[str, Any]] = {}
        self.role_ids: dict[str, int] = {}
        self._add_role("@everyone", EVERYONE_DEFAULT, role_id=self.guild_id, position=0)
        self._add_role("ops", 0, position=1)
        self._add_role("ops-prod", 0, position=2)
        self._add_role("oncall", 0, position=3, mentionable=True)
        self._add_role("oncall-prod", 0, position=4, mentionable=True)  # a second alert role (per-env routing)
        self._bot_role_id = self._add_role(
            self.bot_name, 0, position=5, managed=True, tags={"bot_id": str(self.bot_user_id)}
        )

        # channels
        self._channels: dict[int, dict[str, Any]] = {}
        self.category_id = self._add_channel("Ops", ctype=4)
        self.ops_channel_id: int = self._add_channel("ops-alerts", parent_id=self.category_id, topic="alerts")
        self.other_channel_id: int = self._add_channel("general")
        # per-environment alert channels (environments.<env>.alert_channel_id)
        self.prod_channel_id: int = self._add_channel("ops-prod", parent_id=self.category_id, topic="prod alerts")
        self.dev_channel_id: int = self._add_channel("dev-alerts", parent_id=self.category_id, topic="dev alerts")
        self.channel_ids: dict[str, int] = {c["name"]: cid for cid, c in self._channels.items()}

        # members
        self._add_user(self.bot_user_id, self.bot_name, bot=True)
        self._members[self.bot_user_id] = _Member(self.bot_user_id, self.bot_name, [self._bot_role_id], bot=True)
        self.owner_id: int = self.add_member("owner", [])
        if default_members:
            self.add_member("alice", ["ops", "ops-prod"])
            self.add_member("bob", ["ops"])
            self.add_member("carol", ["oncall"])
            self.add_member("mallory", [])

        # state the tests look at
        self.commands: dict[Any, list[dict[str, Any]]] = {"global": []}
        self.requests: list[RequestLog] = []
        self.webhook_posts: list[dict[str, Any]] = []
        self.nonce_repeats = 0  # channel posts answered with an earlier message (enforce_nonce)
        self.errors: list[dict[str, Any]] = []  # every rule violation the fake rejected (all interactions + REST)
        self.unhandled: list[RequestLog] = []  # requests to routes the fake does not know
        self.interactions: list[InteractionRecord] = []
        self._messages: dict[int, FakeMessage] = {}
        self._channel_msgs: dict[int, list[FakeMessage]] = {cid: [] for cid in self._channels}
        self._by_interaction_id: dict[int, InteractionRecord] = {}
        self._by_token: dict[str, InteractionRecord] = {}
        self._fail_rules: list[FailRule] = []
        self._denied: set[int] = set()
        self.other_guilds: dict[int, OtherGuild] = {}

        self.incoming_webhook_id = 1
        self.incoming_webhook_token = "tok"
        self.incoming_webhook_channel_id = self.ops_channel_id

        self._waitable = Waitable()
        self._ready = asyncio.Event()
        self._release = asyncio.Event()
        self._routes = _route_table(self)
        self._runner: web.AppRunner | None = None
        self.port: int = 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._entry)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        log.debug("fake discord listening on %s", self.url)

    async def stop(self) -> None:
        self._release.set()
        for s in list(self.gateway_sessions):
            if not s.closed:
                with contextlib.suppress(Exception):
                    await s.ws.close(code=1001, message=b"fake discord stopping")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway/"

    @property
    def incoming_webhook_url(self) -> str:
        return f"{self.url}/api/webhooks/{self.incoming_webhook_id}/{self.incoming_webhook_token}"

    @contextlib.contextmanager
    def patch_discord(self) -> Iterator[FakeDiscord]:
        """Point discord.py's REST base (Route.BASE, also used by the webhook adapter) and gateway at the fake."""
        import yarl
        from discord.gateway import DiscordWebSocket
        from discord.http import Route

        if not self.port:
            raise RuntimeError("FakeDiscord.start() must be awaited before patch_discord()")
        old_base, old_gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
        Route.BASE = self.api_base
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield self
        finally:
            Route.BASE = old_base
            DiscordWebSocket.DEFAULT_GATEWAY = old_gateway

    @contextlib.asynccontextmanager
    async def run_bot(self, bot: Any, *, token: str = "fake-bot-token", timeout: float = 10) -> AsyncIterator[Any]:
        """Patch discord.py, start `bot` (a discord.Client / commands.Bot), wait until it is ready, and close it
        (awaiting its start() task) on exit. Use guild_ready_timeout=0.05 on the bot to skip discord.py's 2 s wait."""
        with self.patch_discord():
            task = asyncio.ensure_future(bot.start(token))
            try:
                ready = asyncio.ensure_future(bot.wait_until_ready())
                done, _ = await asyncio.wait({task, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if ready not in done:
                    ready.cancel()
                    if task.done():
                        task.result()  # re-raise the login / connect error
                    raise TimeoutError(f"bot not ready after {timeout}s")
                yield bot
            finally:
                if not bot.is_closed():
                    await bot.close()
                if not task.done():
                    await asyncio.wait_for(task, timeout)
                elif not task.cancelled() and task.exception() is not None:
                    log.warning("bot.start() ended with %r", task.exception())

    async def wait_ready(self, timeout: float = 10) -> None:
        """Wait until a client has IDENTIFYed and was sent READY + GUILD_CREATE.

        discord.py itself fires on_ready / wait_until_ready() only `guild_ready_timeout` (default 2 s) after the
        last GUILD_CREATE; pass guild_ready_timeout=0.05 to the Bot in tests.
        """
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5, what: str = "condition") -> None:
        await self._waitable.wait_until(predicate, timeout, what)

    async def wait_for_message(
        self,
        channel_id: int,
        predicate: Callable[[FakeMessage], bool] = lambda m: True,
        timeout: float = 5,
    ) -> FakeMessage:
        found: list[FakeMessage] = []

        def check() -> bool:
            for m in self.channel_messages(channel_id):
                if predicate(m):
                    found.append(m)
                    return True
            return False

        await self._waitable.wait_until(check, timeout, f"a message in channel {channel_id}")
        return found[0]

    def _changed(self) -> None:
        self._waitable.notify()

    # ------------------------------------------------------------------ guild setup

    def _add_role(
        self,
        name: str,
        permissions: int,
        *,
        role_id: int | None = None,
        position: int = 1,
        mentionable: bool = False,
        managed: bool = False,
        tags: dict[str, Any] | None = None,
        keep_name: bool = False,
    ) -> int:
        rid = role_id or snowflake()
        role: dict[str, Any] = {
            "id": str(rid),
            "name": name,
            "permissions": str(permissions),
            "position": position,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "managed": managed,
            "mentionable": mentionable,
            "icon": None,
            "unicode_emoji": None,
            "flags": 0,
            "description": None,
        }
        if tags is not None:
            role["tags"] = tags
        self._roles[rid] = role
        if not (keep_name and name in self.role_ids):  # role_ids keeps the first role of a name
            self.role_ids[name] = rid
        return rid

    def set_role(self, name: str, *, permissions: int | None = None, mentionable: bool | None = None) -> None:
        """Change a role's permissions / mentionability (before connecting; not pushed over the gateway)."""
        role = self._roles[self.role_ids[name]]
        if permissions is not None:
            role["permissions"] = str(permissions)
        if mentionable is not None:
            role["mentionable"] = mentionable

    def _add_channel(self, name: str, *, ctype: int = 0, parent_id: int | None = None, topic: str | None = None) -> int:
        cid = snowflake()
        ch: dict[str, Any] = {
            "id": str(cid),
            "type": ctype,
            "guild_id": str(self.guild_id),
            "name": name,
            "position": len(self._channels),
            "permission_overwrites": [],
            "parent_id": str(parent_id) if parent_id else None,
            "nsfw": False,
            "flags": 0,
        }
        if ctype == 0:
            ch.update({"topic": topic, "last_message_id": None, "rate_limit_per_user": 0})
        self._channels[cid] = ch
        return cid

    def add_text_channel(self, name: str) -> int:
        """Add another text channel (before the bot connects)."""
        cid = self._add_channel(name)
        self._channel_msgs[cid] = []
        self.channel_ids[name] = cid
        return cid

    def _add_user(self, uid: int, name: str, *, bot: bool = False) -> dict[str, Any]:
        user = {
            "id": str(uid),
            "username": name,
            "discriminator": "0",
            "global_name": None if bot else name.title(),
            "avatar": None,
            "bot": bot,
            "system": False,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
        }
        self._users[uid] = user
        return user

    def add_member(self, name: str, roles: list[str]) -> int:
        """Add a guild member with the named roles; returns the user id.

        Call before the bot connects; if a gateway session is live, GUILD_MEMBER_ADD is dispatched too.
        """
        unknown = [r for r in roles if r not in self.role_ids]
        if unknown:
            raise ValueError(f"unknown roles {unknown}; known: {sorted(self.role_ids)}")
        uid = snowflake()
        self._add_user(uid, name)
        self._members[uid] = _Member(uid, name, [self.role_ids[r] for r in roles])
        self.user_ids[name] = uid
        if self._session(required=False) is not None:
            data = {**self._member_json(uid), "guild_id": str(self.guild_id)}
            self._background(self._emit("GUILD_MEMBER_ADD", data, intent=INTENT_GUILD_MEMBERS))
        return uid

    def add_guild(self, name: str, *, roles: list[str], members: dict[str, list[str]]) -> OtherGuild:
        """Another server the bot is in (before it connects): its roles (by name, duplicates of the main
        guild's allowed) and members, existing users by name (e.g. mallory) or new ones."""
        gid = snowflake()
        cid = snowflake()
        guild = OtherGuild(gid, name, cid)
        everyone = {**self._roles[self.guild_id], "id": str(gid)}
        guild.roles[gid] = everyone
        for position, role_name in enumerate(roles, start=1):
            rid = snowflake()
            guild.roles[rid] = {
                **self._roles[self.role_ids["ops"]],
                "id": str(rid),
                "name": role_name,
                "position": position,
            }
            guild.role_ids[role_name] = rid
        for user_name, role_names in members.items():
            uid = self.user_ids.get(user_name) or self._new_user(user_name)
            guild.members[uid] = [guild.role_ids[r] for r in role_names]
        guild.members[self.bot_user_id] = []
        self._channels[cid] = {
            **self._channels[self.other_channel_id],
            "id": str(cid),
            "guild_id": str(gid),
            "name": "general",
            "parent_id": None,
            "permission_overwrites": [],
        }
        self._channel_msgs[cid] = []
        self.other_guilds[gid] = guild
        return guild

    def _new_user(self, name: str) -> int:
        uid = snowflake()
        self._add_user(uid, name)
        self.user_ids[name] = uid
        return uid

    def create_role(self, name: str) -> int:
        """A role made while the bot runs (GUILD_ROLE_CREATE); a name may repeat an existing role's."""
        rid = self._add_role(name, 0, position=len(self._roles), keep_name=True)
        if self._session(required=False) is not None:
            data = {"guild_id": str(self.guild_id), "role": dict(self._roles[rid])}
            self._background(self._emit("GUILD_ROLE_CREATE", data))
        return rid

    def give_role(self, user_id: int, role_id: int) -> None:
        """Add a role (by id) to a member of the main guild, as a member with Manage Roles could."""
        if role_id not in self._roles:
            raise ValueError(f"unknown role id {role_id}")
        self._members[user_id].roles.append(role_id)

    def take_role(self, user_id: int, role_id: int) -> None:
        self._members[user_id].roles.remove(role_id)

    def _guild_channels(self, guild_id: int) -> list[dict[str, Any]]:
        return [dict(c) for c in self._channels.values() if c.get("guild_id") == str(guild_id)]

    def _other_guild_create_json(self, guild: OtherGuild) -> dict[str, Any]:
        data = self._guild_create_json()
        bot = {**self._member_json(self.bot_user_id), "roles": []}
        data.update(
            {
                "id": str(guild.id),
                "name": guild.name,
                "roles": [dict(r) for r in guild.roles.values()],
                "channels": self._guild_channels(guild.id),
                "members": [bot],
                "member_count": len(guild.members),
                "system_channel_id": str(guild.channel_id),
            }
        )
        return data

    def _background(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._bg_tasks.add(task)
        task.add_done_callback(self._bg_tasks.discard)

    def deny_channel(self, channel_id: int) -> None:
        """Take SEND_MESSAGES away from the bot in a channel: posts to it get 403 50013 Missing Permissions.

        Done the Discord way (a member permission overwrite), pushed as CHANNEL_UPDATE if the bot is connected.
        """
        ch = self._channels[channel_id]
        self._denied.add(channel_id)
        ch["permission_overwrites"] = [o for o in ch["permission_overwrites"] if o["id"] != str(self.bot_user_id)] + [
            {"id": str(self.bot_user_id), "type": 1, "allow": "0", "deny": str(P_SEND_MESSAGES)}
        ]
        if self._session(required=False) is not None:
            self._background(self._emit("CHANNEL_UPDATE", dict(ch)))

    def fail_next(
        self,
        method: str,
        path_regex: str,
        *,
        status: int = 500,
        times: int = 1,
        retry_after: float | None = None,
        hang: bool = False,
    ) -> None:
        """Make the next `times` requests matching method ("*" = any) and path_regex (re.search on the path
        relative to the API base, e.g. r"/channels/\\d+/messages$") answer `status`.

        retry_after (or status=429) -> 429 with Discord's rate-limit body and headers; hang=True -> the request
        blocks until release_hangs() or stop(), then is processed normally.
        """
        if retry_after is not None:
            status = 429
        if status == 429 and retry_after is None:
            retry_after = 0.5
        self._fail_rules.append(FailRule(method, re.compile(path_regex), status, times, retry_after, hang))

    def release_hangs(self) -> None:
        self._release.set()
        self._release = asyncio.Event()

    # ------------------------------------------------------------------ queries for tests

    def channel_messages(self, channel_id: int, *, include_deleted: bool = False) -> list[FakeMessage]:
        """Messages in a channel, oldest first, as they stand now. Ephemeral messages are not in any channel."""
        return [
            m for m in self._channel_msgs.get(channel_id, []) if (include_deleted or not m.deleted) and not m.ephemeral
        ]

    def message(self, message_id: int) -> FakeMessage | None:
        return self._messages.get(message_id)

    def requests_to(self, method: str, path_regex: str) -> list[RequestLog]:
        pat = re.compile(path_regex)
        return [r for r in self.requests if r.method == method.upper() and pat.search(r.path)]

    def command(self, name: str, *, guild_id: int | None = None) -> dict[str, Any]:
        return self._find_command(name, 1, guild_id)

    # ------------------------------------------------------------------ permissions

    def member_permissions(self, user_id: int, channel_id: int | None = None) -> int:
        if user_id == self.owner_id:
            return P_ALL
        member = self._members[user_id]
        perms = int(self._roles[self.guild_id]["permissions"])
        for rid in member.roles:
            perms |= int(self._roles[rid]["permissions"])
        if perms & P_ADMINISTRATOR:
            return P_ALL
        if channel_id is None or channel_id not in self._channels:
            return perms
        overwrites = {o["id"]: o for o in self._channels[channel_id]["permission_overwrites"]}
        ev = overwrites.get(str(self.guild_id))
        if ev:
            perms = (perms & ~int(ev["deny"])) | int(ev["allow"])
        allow = deny = 0
        for rid in member.roles:
            o = overwrites.get(str(rid))
            if o:
                allow |= int(o["allow"])
                deny |= int(o["deny"])
        perms = (perms & ~deny) | allow
        mo = overwrites.get(str(user_id))
        if mo:
            perms = (perms & ~int(mo["deny"])) | int(mo["allow"])
        return perms

    # ------------------------------------------------------------------ JSON builders

    def _user_json(self, uid: int) -> dict[str, Any]:
        return dict(self._users[uid])

    def _member_json(self, uid: int, *, channel_id: int | None = None, with_perms: bool = False) -> dict[str, Any]:
        m = self._members[uid]
        data: dict[str, Any] = {
            "user": self._user_json(uid),
            "roles": [str(r) for r in m.roles],
            "joined_at": m.joined_at,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "nick": None,
            "avatar": None,
            "banner": None,
            "premium_since": None,
            "communication_disabled_until": None,
        }
        if with_perms:
            data["permissions"] = str(self.member_permissions(uid, channel_id))
        return data

    def _guild_json(self) -> dict[str, Any]:
        return {
            "id": str(self.guild_id),
            "name": self.guild_name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self.owner_id),
            "region": "deprecated",
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 1,
            "default_message_notifications": 1,
            "explicit_content_filter": 2,
            "roles": [dict(r) for r in self._roles.values()],
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": str(self.other_channel_id),
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "max_members": 500000,
            "vanity_url_code": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
        }

    def _guild_create_json(self) -> dict[str, Any]:
        data = self._guild_json()
        data.update(
            {
                "joined_at": self._members[self.bot_user_id].joined_at,
                "large": False,
                "unavailable": False,
                "member_count": len(self._members),
                "voice_states": [],
                # without the GUILD_MEMBERS intent Discord only sends the bot itself (and voice members)
                "members": [
                    self._member_json(uid)
                    for uid in self._members
                    if uid == self.bot_user_id or self._intents() & INTENT_GUILD_MEMBERS
                ],
                "channels": self._guild_channels(self.guild_id),
                "threads": [],
                "presences": [],
                "stage_instances": [],
                "guild_scheduled_events": [],
                "soundboard_sounds": [],
                "embedded_activities": [],
                "lazy": True,
            }
        )
        return data

    def _app_json(self) -> dict[str, Any]:
        return {
            "id": str(self.app_id),
            "name": self.bot_name,
            "icon": None,
            "description": "fake application",
            "summary": "",
            "type": None,
            "rpc_origins": [],
            "bot_public": False,
            "bot_require_code_grant": False,
            "bot": self._user_json(self.bot_user_id),
            "owner": self._user_json(self.owner_id),
            "team": None,
            "verify_key": "0" * 64,
            "flags": 1 << 19,  # GATEWAY_MESSAGE_CONTENT_LIMITED
            "tags": [],
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "role_connections_verification_url": None,
            "approximate_guild_count": 1,
            "integration_types_config": {"0": {}},
            "hook": True,
        }

    def _channel_json(self, cid: int) -> dict[str, Any]:
        return dict(self._channels[cid])

    def _message_json(self, m: FakeMessage, *, with_ref: bool = True) -> dict[str, Any]:
        if m.webhook_id and m.webhook_id != self.app_id:
            author: dict[str, Any] = {
                "id": str(m.webhook_id),
                "username": "incoming-webhook",
                "discriminator": "0000",
                "avatar": None,
                "bot": True,
                "global_name": None,
            }
        else:
            author = self._user_json(m.author_id)
        data: dict[str, Any] = {
            "id": str(m.id),
            "channel_id": str(m.channel_id),
            "author": author,
            "content": m.content or "",
            "timestamp": m.created_at,
            "edited_timestamp": m.edited_at,
            "tts": m.tts,
            "mention_everyone": m.mention_everyone,
            "mentions": [self._user_json(u) for u in m.mentions if u in self._users],
            "mention_roles": [str(r) for r in m.mention_roles],
            "attachments": [dict(a) for a in m.attachments],
            "embeds": copy.deepcopy(m.embeds),
            "pinned": False,
            "type": m.type,
            "flags": m.flags,
            "components": copy.deepcopy(m.components),
        }
        if m.nonce is not None:
            data["nonce"] = m.nonce
        if m.webhook_id:
            data["webhook_id"] = str(m.webhook_id)
        if m.interaction_id is not None:
            rec = self._by_interaction_id.get(m.interaction_id)
            data["application_id"] = str(self.app_id)
            if rec is not None:
                meta: dict[str, Any] = {
                    "id": str(rec.id),
                    "type": rec.type,
                    "user": self._user_json(rec.user_id),
                    "authorizing_integration_owners": {"0": str(self.guild_id)},
                }
                if rec.type == 2:
                    meta["name"] = rec.name
                    meta["command_type"] = 1
                if rec.original is not None and rec.original is not m:
                    meta["original_response_message_id"] = str(rec.original.id)
                if rec.source_message is not None:
                    meta["interacted_message_id"] = str(rec.source_message.id)
                data["interaction_metadata"] = meta
        if m.message_reference is not None:
            data["message_reference"] = dict(m.message_reference)
            ref = self._messages.get(int(m.message_reference.get("message_id") or 0))
            if with_ref and ref is not None and not ref.deleted:
                data["referenced_message"] = self._message_json(ref, with_ref=False)
        return data

    # ------------------------------------------------------------------ HTTP plumbing

    async def _entry(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.path
        path = re.sub(r"^/api(/v\d+)?", "", raw_path) or "/"
        if path.rstrip("/") == "/gateway" and request.headers.get("Upgrade", "").lower() == "websocket":
            return await gw.serve_gateway(
                request,
                on_open=self.gateway_sessions.append,
                on_identify=self._on_identify,
                on_resume=self._on_resume,
                on_request_members=self._on_request_members,
                on_close=lambda s: self._changed(),
            )
        query = dict(request.query)
        payload: Any = None
        files: list[dict[str, Any]] = []
        ctype = request.headers.get("Content-Type", "")
        if ctype.startswith("multipart/"):
            form = await request.post()
            for key, value in form.items():
                if key == "payload_json":
                    payload = json.loads(str(value))
                elif isinstance(value, web.FileField):
                    blob = value.file.read()
                    files.append(
                        {
                            "field": key,
                            "filename": value.filename,
                            "size": len(blob),
                            "content_type": value.content_type,
                        }
                    )
        elif request.can_read_body:
            text = await request.text()
            if text:
                try:
                    payload = json.loads(text)
                except ValueError:
                    payload = text
        entry = RequestLog(
            method=request.method,
            path=path,
            query=query,
            json=payload,
            time=time.monotonic(),
            raw_path=raw_path,
            files=files,
        )
        self.requests.append(entry)
        ctx = _Ctx(request, request.method, path, query, payload, files, entry)
        resp = await self._handle(ctx)
        entry.status = resp.status
        self._changed()
        return resp

    async def _handle(self, ctx: _Ctx) -> web.StreamResponse:
        route: _Route | None = None
        groups: dict[str, str] = {}
        for r in self._routes:
            if r.method == ctx.method:
                m = r.regex.match(ctx.path)
                if m:
                    route, groups = r, m.groupdict()
                    break
        ctx.route = f"{ctx.method} {route.template if route else ctx.path}"

        # injected failures come first (before any state change)
        for rule in list(self._fail_rules):
            if rule.matches(ctx.method, ctx.path):
                rule.times -= 1
                if rule.times <= 0:
                    self._fail_rules.remove(rule)
                if rule.hang:
                    log.info("fakediscord: hanging %s %s", ctx.method, ctx.path)
                    await self._release.wait()
                    break
                ctx.entry.injected = True
                return self._injected_response(rule, ctx)

        if route is None:
            self.unhandled.append(ctx.entry)
            log.warning("fakediscord: unhandled route %s %s (json=%r)", ctx.method, ctx.path, ctx.json)
            return self._json({"code": 0, "message": f"404: Not Found ({ctx.method} {ctx.path} is not faked)"}, 404)

        if route.auth:
            auth = ctx.request.headers.get("Authorization", "")
            token = auth[4:] if auth.startswith("Bot ") else None
            if not token or (self.bot_token is not None and token != self.bot_token):
                return self._json({"code": 0, "message": "401: Unauthorized"}, 401)
        try:
            return await route.handler(ctx, **groups)
        except DiscordError as err:
            if err.rule:
                violation = {
                    "status": err.status,
                    "code": err.code,
                    "message": err.message,
                    "errors": err.errors,
                    "route": ctx.route,
                    "path": ctx.path,
                    "json": ctx.json,
                    "interaction_id": ctx.record.id if ctx.record else None,
                }
                self.errors.append(violation)
                if ctx.record is not None:
                    ctx.record.errors.append(violation)
                log.info("fakediscord: rejected %s %s: %s %s", ctx.method, ctx.path, err.code, err.message)
            return self._json(err.body(), err.status)

    def _bucket(self, ctx: _Ctx) -> str:
        return hashlib.md5(ctx.route.encode()).hexdigest()[:16]

    def _ratelimit_headers(self, bucket: str) -> dict[str, str]:
        now = time.time()
        return {
            "X-RateLimit-Limit": "50",
            "X-RateLimit-Remaining": "49",
            "X-RateLimit-Reset": f"{now + 1:.3f}",
            "X-RateLimit-Reset-After": "1.000",
            "X-RateLimit-Bucket": bucket,
        }

    def _json(self, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        h = {"Via": "1.1 google"}
        if headers:
            h.update(headers)
        return _json_response(data, status, h)

    def _ok(self, ctx: _Ctx, data: Any = None, status: int = 200) -> web.Response:
        headers = {"Via": "1.1 google", **self._ratelimit_headers(self._bucket(ctx))}
        if status == 204 or data is None:
            return web.Response(status=204, headers=headers)
        return _json_response(data, status, headers)

    def _injected_response(self, rule: FailRule, ctx: _Ctx) -> web.Response:
        log.info("fakediscord: injecting %s for %s %s", rule.status, ctx.method, ctx.path)
        if rule.status == 429:
            ra = float(rule.retry_after or 0.5)
            headers = {
                "Retry-After": str(max(1, math.ceil(ra))),
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": f"{time.time() + ra:.3f}",
                "X-RateLimit-Reset-After": f"{ra:.3f}",
                "X-RateLimit-Bucket": self._bucket(ctx),
                "X-RateLimit-Scope": "user",
            }
            return self._json(
                {"message": "You are being rate limited.", "retry_after": ra, "global": False}, 429, headers
            )
        if rule.status >= 500:
            return self._json({"code": 0, "message": f"{rule.status}: Internal Server Error"}, rule.status)
        return self._json({"code": 0, "message": f"{rule.status}: injected failure"}, rule.status)

    # ------------------------------------------------------------------ gateway callbacks

    def _session(self, *, required: bool = True) -> gw.GatewaySession | None:
        for s in reversed(self.gateway_sessions):
            if not s.closed and s.identify is not None:
                return s
        if required:
            raise RuntimeError("no live gateway session: is the bot connected (await fake.wait_ready())?")
        return None

    async def _safe_dispatch(self, session: gw.GatewaySession, event: str, data: Any) -> None:
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await session.dispatch(event, data)

    def _intents(self) -> int:
        session = self._session(required=False)
        return int((session.identify or {}).get("intents") or 0) if session else 0

    async def _emit(self, event: str, data: Any, *, intent: int | None = None) -> None:
        session = self._session(required=False)
        if session is None:
            return
        if intent is not None and not self._intents() & intent:
            return
        await self._safe_dispatch(session, event, data)

    async def _on_identify(self, session: gw.GatewaySession, d: dict[str, Any]) -> None:
        token = str(d.get("token") or "")
        if not token or (self.bot_token is not None and token != self.bot_token):
            await session.ws.close(code=4004, message=b"Authentication failed.")
            return
        session.session_id = secrets.token_hex(16)
        ready: dict[str, Any] = {
            "v": 10,
            "user": {**self._user_json(self.bot_user_id), "verified": True, "mfa_enabled": False, "email": None},
            "guilds": [{"id": str(g), "unavailable": True} for g in (self.guild_id, *self.other_guilds)],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": self.gateway_url.rstrip("/"),
            "application": {"id": str(self.app_id), "flags": self._app_json()["flags"]},
            "private_channels": [],
            "presences": [],
            "relationships": [],
            "user_settings": {},
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["local"],
            "_trace": ["fakediscord"],
        }
        if d.get("shard") is not None:
            ready["shard"] = d["shard"]
        await session.dispatch("READY", ready)
        await session.dispatch("GUILD_CREATE", self._guild_create_json())
        for guild in self.other_guilds.values():
            await session.dispatch("GUILD_CREATE", self._other_guild_create_json(guild))
        self._ready.set()
        self._changed()

    async def _on_resume(self, session: gw.GatewaySession, d: dict[str, Any]) -> None:
        old = next((s for s in self.gateway_sessions if s.session_id and s.session_id == d.get("session_id")), None)
        if old is not None and old is not session:
            session.identify = {**(old.identify or {}), "token": d.get("token"), "resumed": True}
            session.session_id = d.get("session_id")
            session.seq = int(d.get("seq") or 0)
            await session.dispatch("RESUMED", {"_trace": ["fakediscord"]})
        else:
            await session.send(gw.INVALID_SESSION, False)

    async def _on_request_members(self, session: gw.GatewaySession, d: dict[str, Any]) -> None:
        gids = d.get("guild_id")
        gid_list = gids if isinstance(gids, list) else [gids]
        for gid in gid_list:
            if gid is None or int(gid) != self.guild_id:
                continue
            query = d.get("query")
            user_ids = {int(u) for u in (d.get("user_ids") or [])}
            limit = int(d.get("limit") or 0)
            members = []
            for uid, m in self._members.items():
                if user_ids and uid not in user_ids:
                    continue
                if query and not m.name.lower().startswith(str(query).lower()):
                    continue
                members.append(self._member_json(uid))
            if limit:
                members = members[:limit]
            chunk: dict[str, Any] = {
                "guild_id": str(self.guild_id),
                "members": members,
                "chunk_index": 0,
                "chunk_count": 1,
                "not_found": [],
            }
            if d.get("nonce"):
                chunk["nonce"] = d["nonce"]
            if d.get("presences"):
                chunk["presences"] = []
            await session.dispatch("GUILD_MEMBERS_CHUNK", chunk)

    # ------------------------------------------------------------------ REST: misc

    async def _h_gateway_info(self, ctx: _Ctx) -> web.Response:
        data: dict[str, Any] = {"url": self.gateway_url.rstrip("/")}
        if ctx.path.endswith("/bot"):
            data["shards"] = 1
            data["session_start_limit"] = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        return self._ok(ctx, data)

    async def _h_me(self, ctx: _Ctx) -> web.Response:
        return self._ok(ctx, {**self._user_json(self.bot_user_id), "verified": True, "mfa_enabled": False})

    async def _h_user(self, ctx: _Ctx, user_id: str) -> web.Response:
        uid = int(user_id)
        if uid not in self._users:
            raise DiscordError(404, 10013, "Unknown User", rule=False)
        return self._ok(ctx, self._user_json(uid))

    async def _h_appinfo(self, ctx: _Ctx) -> web.Response:
        return self._ok(ctx, self._app_json())

    def _check_guild(self, guild_id: str | int | None) -> None:
        if guild_id is not None and int(guild_id) != self.guild_id:
            raise DiscordError(403, 50001, "Missing Access")

    async def _h_guild(self, ctx: _Ctx, guild_id: str) -> web.Response:
        self._check_guild(guild_id)
        return self._ok(ctx, self._guild_json())

    async def _h_guild_channels(self, ctx: _Ctx, guild_id: str) -> web.Response:
        self._check_guild(guild_id)
        return self._ok(ctx, self._guild_channels(self.guild_id))

    async def _h_guild_roles(self, ctx: _Ctx, guild_id: str) -> web.Response:
        self._check_guild(guild_id)
        return self._ok(ctx, [dict(r) for r in self._roles.values()])

    async def _h_guild_members(self, ctx: _Ctx, guild_id: str) -> web.Response:
        self._check_guild(guild_id)
        return self._ok(ctx, [self._member_json(uid) for uid in self._members])

    async def _h_guild_member(self, ctx: _Ctx, guild_id: str, user_id: str) -> web.Response:
        self._check_guild(guild_id)
        if int(user_id) not in self._members:
            raise DiscordError(404, 10007, "Unknown Member", rule=False)
        return self._ok(ctx, self._member_json(int(user_id)))

    # ------------------------------------------------------------------ REST: application commands

    def _check_app(self, app_id: str) -> None:
        if int(app_id) != self.app_id:
            raise DiscordError(403, 20012, "You are not authorized to perform this action on this application")

    def _scope(self, guild_id: str | None) -> Any:
        if guild_id is None:
            return "global"
        self._check_guild(guild_id)
        return int(guild_id)

    def _full_command(self, cmd: dict[str, Any], scope: Any, old: dict[str, Any] | None) -> dict[str, Any]:
        full: dict[str, Any] = {
            "type": 1,
            "description": "",
            "options": [],
            "default_member_permissions": None,
            "dm_permission": True,
            "nsfw": False,
            "integration_types": [0],
            "contexts": None,
            **copy.deepcopy(cmd),
        }
        full["id"] = old["id"] if old else str(snowflake())
        full["application_id"] = str(self.app_id)
        full["version"] = str(snowflake())
        if scope != "global":
            full["guild_id"] = str(scope)
        return full

    async def _h_commands_get(self, ctx: _Ctx, app_id: str, guild_id: str | None = None) -> web.Response:
        self._check_app(app_id)
        return self._ok(ctx, copy.deepcopy(self.commands.get(self._scope(guild_id), [])))

    async def _h_commands_put(self, ctx: _Ctx, app_id: str, guild_id: str | None = None) -> web.Response:
        self._check_app(app_id)
        scope = self._scope(guild_id)
        cmds = ctx.json if isinstance(ctx.json, list) else []
        validate_commands(cmds)
        existing = {(c["name"], c.get("type", 1)): c for c in self.commands.get(scope, [])}
        self.commands[scope] = [
            self._full_command(c, scope, existing.get((c.get("name"), c.get("type", 1)))) for c in cmds
        ]
        self._changed()
        return self._ok(ctx, copy.deepcopy(self.commands[scope]))

    async def _h_command_post(self, ctx: _Ctx, app_id: str, guild_id: str | None = None) -> web.Response:
        self._check_app(app_id)
        scope = self._scope(guild_id)
        validate_commands([ctx.body])
        current = self.commands.setdefault(scope, [])
        key = (ctx.body.get("name"), ctx.body.get("type", 1))
        old = next((c for c in current if (c["name"], c.get("type", 1)) == key), None)
        full = self._full_command(ctx.body, scope, old)
        if old is not None:
            current[current.index(old)] = full
        else:
            current.append(full)
        self._changed()
        return self._ok(ctx, copy.deepcopy(full), 200 if old else 201)

    async def _h_command_one(self, ctx: _Ctx, app_id: str, cmd_id: str, guild_id: str | None = None) -> web.Response:
        self._check_app(app_id)
        current = self.commands.setdefault(self._scope(guild_id), [])
        cmd = next((c for c in current if c["id"] == cmd_id), None)
        if cmd is None:
            raise DiscordError(404, 10063, "Unknown application command", rule=False)
        if ctx.method == "DELETE":
            current.remove(cmd)
            self._changed()
            return self._ok(ctx, None, 204)
        if ctx.method == "PATCH":
            cmd.update(copy.deepcopy(ctx.body))
            cmd["version"] = str(snowflake())
            self._changed()
        return self._ok(ctx, copy.deepcopy(cmd))

    async def _h_command_perms(self, ctx: _Ctx, app_id: str, guild_id: str) -> web.Response:
        self._check_app(app_id)
        self._check_guild(guild_id)
        return self._ok(ctx, [])

    # ------------------------------------------------------------------ messages (shared)

    def _channel_or_404(self, channel_id: str | int) -> dict[str, Any]:
        ch = self._channels.get(int(channel_id))
        if ch is None:
            raise DiscordError(404, 10003, "Unknown Channel")
        return ch

    def _attachments_from(self, body: dict[str, Any], files: list[dict[str, Any]]) -> list[dict[str, Any]]:
        meta = {str(a.get("id")): a for a in body.get("attachments") or [] if isinstance(a, dict)}
        out = []
        for i, f in enumerate(files):
            m = re.match(r"files\[(\d+)\]", f["field"])
            a = meta.get(m.group(1) if m else str(i), {})
            aid = snowflake()
            out.append(
                {
                    "id": str(aid),
                    "filename": a.get("filename") or f["filename"],
                    "description": a.get("description"),
                    "size": f["size"],
                    "content_type": f["content_type"],
                    "url": f"{self.url}/attachments/{aid}/{f['filename']}",
                    "proxy_url": f"{self.url}/attachments/{aid}/{f['filename']}",
                }
            )
        return out

    def _mentions(
        self, content: str | None, allowed: dict[str, Any] | None, reply_author: int | None
    ) -> tuple[list[int], list[int], bool]:
        text = content or ""
        users = [int(u) for u in re.findall(r"<@!?(\d+)>", text) if int(u) in self._users]
        roles = [int(r) for r in re.findall(r"<@&(\d+)>", text) if int(r) in self._roles]
        everyone = "@everyone" in text or "@here" in text
        if allowed is not None:
            parse = set(allowed.get("parse") or [])
            allowed_users = {int(u) for u in allowed.get("users") or []}
            allowed_roles = {int(r) for r in allowed.get("roles") or []}
            users = [u for u in users if "users" in parse or u in allowed_users]
            roles = [r for r in roles if "roles" in parse or r in allowed_roles]
            everyone = everyone and "everyone" in parse
            if reply_author is not None and allowed.get("replied_user"):
                users.append(reply_author)
        elif reply_author is not None:
            users.append(reply_author)
        bot_perms = self.member_permissions(self.bot_user_id)
        can_everyone = bool(bot_perms & P_MENTION_EVERYONE)
        roles = [r for r in roles if self._roles[r]["mentionable"] or can_everyone]
        everyone = everyone and can_everyone
        return list(dict.fromkeys(users)), list(dict.fromkeys(roles)), everyone

    def _new_message(
        self,
        channel_id: int,
        body: dict[str, Any],
        *,
        files: list[dict[str, Any]] | None = None,
        author_id: int | None = None,
        webhook_id: int | None = None,
        interaction: InteractionRecord | None = None,
        flags: int | None = None,
        mtype: int = 0,
        reference: dict[str, Any] | None = None,
    ) -> FakeMessage:
        embeds = [{"type": "rich", **e} for e in body.get("embeds") or ([body["embed"]] if body.get("embed") else [])]
        msg = FakeMessage(
            id=snowflake(),
            channel_id=channel_id,
            content=body.get("content") or None,
            embeds=embeds,
            components=copy.deepcopy(body.get("components") or []),
            allowed_mentions=body.get("allowed_mentions"),
            message_reference=reference,
            flags=(int(body.get("flags") or 0) & MESSAGE_FLAGS_SETTABLE) if flags is None else flags,
            author_id=author_id if author_id is not None else self.bot_user_id,
            webhook_id=webhook_id,
            interaction_id=interaction.id if interaction else None,
            attachments=self._attachments_from(body, files or []),
            tts=bool(body.get("tts")),
            nonce=body.get("nonce"),
            type=mtype,
        )
        reply_author = None
        if reference is not None:
            ref = self._messages.get(int(reference.get("message_id") or 0))
            reply_author = ref.author_id if ref else None
        msg.mentions, msg.mention_roles, msg.mention_everyone = self._mentions(
            msg.content, msg.allowed_mentions, reply_author
        )
        msg.history.append(copy.deepcopy(body))
        self._messages[msg.id] = msg
        self._channel_msgs.setdefault(channel_id, []).append(msg)
        if channel_id in self._channels and not msg.ephemeral:
            self._channels[channel_id]["last_message_id"] = str(msg.id)
        self._changed()
        return msg

    def _apply_edit(
        self,
        msg: FakeMessage,
        body: dict[str, Any],
        files: list[dict[str, Any]] | None = None,
        *,
        completing: bool = False,
    ) -> None:
        if "content" in body:
            msg.content = body["content"] or None
        if "embeds" in body:
            msg.embeds = [{"type": "rich", **e} for e in body["embeds"] or []]
        if "components" in body:
            msg.components = copy.deepcopy(body["components"] or [])
        if body.get("flags") is not None:
            changeable = FLAG_SUPPRESS_EMBEDS | FLAG_IS_COMPONENTS_V2
            msg.flags = (msg.flags & ~changeable) | (int(body["flags"]) & changeable)
        if "allowed_mentions" in body:
            msg.allowed_mentions = body["allowed_mentions"]
        if "attachments" in body or files:
            keep = {str(a.get("id")) for a in body.get("attachments") or [] if isinstance(a, dict)}
            kept = [a for a in msg.attachments if a["id"] in keep] if "attachments" in body else msg.attachments
            msg.attachments = kept + self._attachments_from(body, files or [])
        msg.mentions, msg.mention_roles, msg.mention_everyone = self._mentions(msg.content, msg.allowed_mentions, None)
        if msg.loading:
            msg.flags &= ~FLAG_LOADING
        if not completing:
            msg.edits += 1
            msg.edited_at = iso_now()
        msg.history.append(copy.deepcopy(body))
        self._changed()

    async def _emit_create(self, msg: FakeMessage) -> None:
        if msg.ephemeral or msg.channel_id not in self._channels:
            return
        data = self._message_json(msg)
        data["guild_id"] = str(self.guild_id)
        if msg.author_id in self._members and not msg.webhook_id:
            member = self._member_json(msg.author_id)
            member.pop("user")
            data["member"] = member
        await self._emit("MESSAGE_CREATE", data, intent=INTENT_GUILD_MESSAGES)

    async def _emit_update(self, msg: FakeMessage) -> None:
        if msg.ephemeral or msg.channel_id not in self._channels:
            return
        data = {**self._message_json(msg), "guild_id": str(self.guild_id)}
        await self._emit("MESSAGE_UPDATE", data, intent=INTENT_GUILD_MESSAGES)

    async def _emit_delete(self, msg: FakeMessage) -> None:
        if msg.ephemeral or msg.channel_id not in self._channels:
            return
        data = {"id": str(msg.id), "channel_id": str(msg.channel_id), "guild_id": str(self.guild_id)}
        await self._emit("MESSAGE_DELETE", data, intent=INTENT_GUILD_MESSAGES)

    # ------------------------------------------------------------------ REST: channels

    async def _h_channel(self, ctx: _Ctx, channel_id: str) -> web.Response:
        return self._ok(ctx, self._channel_json(int(self._channel_or_404(channel_id)["id"])))

    async def _h_typing(self, ctx: _Ctx, channel_id: str) -> web.Response:
        self._channel_or_404(channel_id)
        return self._ok(ctx, None, 204)

    def _channel_message(self, channel_id: str, message_id: str) -> FakeMessage:
        self._channel_or_404(channel_id)
        msg = self._messages.get(int(message_id))
        if msg is None or msg.channel_id != int(channel_id) or msg.deleted or msg.ephemeral:
            raise DiscordError(404, 10008, "Unknown Message")
        return msg

    async def _h_messages_list(self, ctx: _Ctx, channel_id: str) -> web.Response:
        self._channel_or_404(channel_id)
        limit = int(ctx.query.get("limit", 50))
        msgs = list(reversed(self.channel_messages(int(channel_id))))[:limit]
        return self._ok(ctx, [self._message_json(m) for m in msgs])

    async def _h_message_get(self, ctx: _Ctx, channel_id: str, message_id: str) -> web.Response:
        return self._ok(ctx, self._message_json(self._channel_message(channel_id, message_id)))

    def _check_send(self, cid: int) -> None:
        perms = self.member_permissions(self.bot_user_id, cid)
        if not perms & P_VIEW_CHANNEL:
            raise DiscordError(403, 50001, "Missing Access")
        if cid in self._denied or not perms & P_SEND_MESSAGES:
            raise DiscordError(403, 50013, "Missing Permissions")

    async def _h_message_create(self, ctx: _Ctx, channel_id: str) -> web.Response:
        ch = self._channel_or_404(channel_id)
        cid = int(ch["id"])
        if ch["type"] not in (0, 5, 10, 11, 12, 2):
            raise DiscordError(400, 50008, "Cannot send messages in a non-text channel")
        self._check_send(cid)
        body = ctx.body
        validate_message(body, require_content=True, has_files=bool(ctx.files))
        if body.get("enforce_nonce") and body.get("nonce") is not None:
            # Discord: a repeat of a recent nonce by the same author returns the first message, creates nothing
            for previous in reversed(self._channel_msgs.get(cid, [])):
                if previous.author_id == self.bot_user_id and str(previous.nonce) == str(body["nonce"]):
                    self.nonce_repeats += 1
                    return self._ok(ctx, self._message_json(previous))
        reference = body.get("message_reference")
        mtype = 0
        if reference:
            ref = self._messages.get(int(reference.get("message_id") or 0))
            ref_ok = ref is not None and not ref.deleted and ref.channel_id == int(reference.get("channel_id") or cid)
            if not ref_ok:
                if reference.get("fail_if_not_exists", True):
                    raise DiscordError(
                        400,
                        50035,
                        "Invalid Form Body",
                        {
                            "message_reference": {
                                "_errors": [{"code": "REPLIES_UNKNOWN_MESSAGE", "message": "Unknown message"}]
                            }
                        },
                    )
                reference = None
            else:
                reference = {
                    "type": 0,
                    "message_id": str(ref.id) if ref else None,
                    "channel_id": str(cid),
                    "guild_id": str(self.guild_id),
                }
                mtype = 19
        msg = self._new_message(cid, body, files=ctx.files, reference=reference, mtype=mtype)
        await self._emit_create(msg)
        return self._ok(ctx, self._message_json(msg))

    async def _h_message_edit(self, ctx: _Ctx, channel_id: str, message_id: str) -> web.Response:
        msg = self._channel_message(channel_id, message_id)
        body = ctx.body
        # the bot may edit its own messages, including (non-ephemeral) interaction responses
        if msg.author_id != self.bot_user_id or (msg.webhook_id and msg.webhook_id != self.app_id):
            only_flags = set(body) <= {"flags"}
            if not only_flags or not self.member_permissions(self.bot_user_id, msg.channel_id) & P_MANAGE_MESSAGES:
                raise DiscordError(403, 50005, "Cannot edit a message authored by another user")
        validate_message(body, require_content=False, partial=True)
        self._apply_edit(msg, body, ctx.files)
        await self._emit_update(msg)
        return self._ok(ctx, self._message_json(msg))

    async def _h_message_delete(self, ctx: _Ctx, channel_id: str, message_id: str) -> web.Response:
        msg = self._channel_message(channel_id, message_id)
        if msg.author_id != self.bot_user_id and not (
            self.member_permissions(self.bot_user_id, msg.channel_id) & P_MANAGE_MESSAGES
        ):
            raise DiscordError(403, 50013, "Missing Permissions")
        msg.deleted = True
        self._changed()
        await self._emit_delete(msg)
        return self._ok(ctx, None, 204)

    async def _h_reaction(self, ctx: _Ctx, channel_id: str, message_id: str, emoji: str) -> web.Response:
        self._channel_message(channel_id, message_id)
        return self._ok(ctx, None, 204)

    # ------------------------------------------------------------------ interactions: dispatch (test side)

    def _find_command(self, name: str, ctype: int, guild_id: int | None = None) -> dict[str, Any]:
        gid = guild_id or self.guild_id
        for scope in (gid, "global"):
            for cmd in self.commands.get(scope, []):
                if cmd["name"] == name and int(cmd.get("type", 1)) == ctype:
                    return cmd
        synced = {str(k): [c["name"] for c in v] for k, v in self.commands.items()}
        raise LookupError(f"command {name!r} (type {ctype}) was never synced to the fake; synced: {synced}")

    def _check_command_visible(self, cmd: dict[str, Any], user_id: int, channel_id: int) -> None:
        needed = cmd.get("default_member_permissions")
        if needed is None:
            return
        perms = self.member_permissions(user_id, channel_id)
        if perms & P_ADMINISTRATOR or user_id == self.owner_id:
            return
        if int(needed) == 0 or (perms & int(needed)) != int(needed):
            raise PermissionError(
                f"/{cmd['name']} has default_member_permissions={needed}: Discord would not show it to "
                f"{self._members[user_id].name} (permissions {perms})"
            )

    def _resolve_option(self, opt: dict[str, Any], value: Any, resolved: dict[str, dict[str, Any]]) -> dict[str, Any]:
        otype = int(opt["type"])
        name = opt["name"]
        if otype == 3:
            value = str(value)
        elif otype == 4:
            value = int(value)
        elif otype == 5:
            value = bool(value)
        elif otype == 10:
            value = float(value)
        elif otype in (6, 7, 8, 9):
            value = self._resolve_snowflake(otype, name, value, resolved)
        else:
            raise ValueError(f"option type {otype} ({name}) is not supported by the fake")
        if opt.get("choices"):
            allowed = [c["value"] for c in opt["choices"]]
            if value not in allowed:
                raise ValueError(f"option {name}={value!r} is not one of the command's choices {allowed}")
        for key, check in (("min_value", lambda v, lim: v >= lim), ("max_value", lambda v, lim: v <= lim)):
            if opt.get(key) is not None and otype in (4, 10) and not check(value, opt[key]):
                raise ValueError(f"option {name}={value!r} violates {key}={opt[key]}")
        if otype == 3:
            if opt.get("min_length") is not None and len(value) < opt["min_length"]:
                raise ValueError(f"option {name} shorter than min_length={opt['min_length']}")
            if opt.get("max_length") is not None and len(value) > opt["max_length"]:
                raise ValueError(f"option {name} longer than max_length={opt['max_length']}")
        return {"name": name, "type": otype, "value": value}

    def _resolve_snowflake(self, otype: int, name: str, value: Any, resolved: dict[str, dict[str, Any]]) -> str:
        def user(uid: int) -> str:
            resolved.setdefault("users", {})[str(uid)] = self._user_json(uid)
            if uid in self._members:
                member = self._member_json(uid, with_perms=True)
                member.pop("user")
                resolved.setdefault("members", {})[str(uid)] = member
            return str(uid)

        def role(rid: int) -> str:
            resolved.setdefault("roles", {})[str(rid)] = dict(self._roles[rid])
            return str(rid)

        if isinstance(value, str) and not value.isdigit():
            if otype in (6, 9) and value in self.user_ids:
                return user(self.user_ids[value])
            if otype in (8, 9) and value in self.role_ids:
                return role(self.role_ids[value])
            if otype == 7 and value in self.channel_ids:
                value = self.channel_ids[value]
            else:
                raise ValueError(f"option {name}: unknown user/role/channel name {value!r}")
        sid = int(value)
        if otype in (6, 9) and sid in self._users:
            return user(sid)
        if otype in (8, 9) and sid in self._roles:
            return role(sid)
        if otype == 7 and sid in self._channels:
            ch = self._channels[sid]
            resolved.setdefault("channels", {})[str(sid)] = {
                "id": ch["id"],
                "name": ch["name"],
                "type": ch["type"],
                "permissions": str(self.member_permissions(self.bot_user_id, sid)),
                "parent_id": ch.get("parent_id"),
                "nsfw": False,
                "flags": 0,
                "guild_id": str(self.guild_id),
            }
            return str(sid)
        raise ValueError(f"option {name}: {value!r} does not resolve to a known entity for option type {otype}")

    def _build_options(
        self,
        schema: list[dict[str, Any]],
        values: dict[str, Any],
        *,
        focused: str | None = None,
        focused_value: str = "",
    ) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
        by_name = {o["name"]: o for o in schema}
        resolved: dict[str, dict[str, Any]] = {}
        out: list[dict[str, Any]] = []
        unknown = set(values) - set(by_name)
        if focused is not None and focused not in by_name:
            unknown.add(focused)
        if unknown:
            raise ValueError(f"unknown options {sorted(unknown)}; the synced command has {sorted(by_name)}")
        for opt in schema:
            name = opt["name"]
            if name == focused:
                if not opt.get("autocomplete"):
                    raise ValueError(f"option {name} does not have autocomplete enabled in the synced command")
                out.append({"name": name, "type": opt["type"], "value": focused_value, "focused": True})
            elif name in values and values[name] is not None:
                out.append(self._resolve_option(opt, values[name], resolved))
            elif opt.get("required") and focused is None:
                raise ValueError(f"required option {name!r} missing (Discord would not let the user submit)")
        return out, resolved

    def _command_data(
        self,
        name: str,
        *,
        options: dict[str, Any] | None,
        subcommand: str | None,
        focused: str | None = None,
        focused_value: str = "",
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        cmd = self._find_command(name, 1)
        data: dict[str, Any] = {"id": cmd["id"], "name": cmd["name"], "type": 1}
        if cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        schema = cmd.get("options") or []
        path: list[dict[str, Any]] = []
        for part in (subcommand or "").split():
            sub = next((o for o in schema if o["name"] == part and o["type"] in (1, 2)), None)
            if sub is None:
                raise ValueError(f"/{name}: no subcommand (group) {part!r}")
            path.append(sub)
            schema = sub.get("options") or []
        if any(o.get("type") in (1, 2) for o in schema):
            raise ValueError(f"/{name} {subcommand or ''}: a subcommand is required")
        opts, resolved = self._build_options(schema, options or {}, focused=focused, focused_value=focused_value)
        for sub in reversed(path):
            opts = [{"name": sub["name"], "type": sub["type"], "options": opts}]
        data["options"] = opts
        if resolved:
            data["resolved"] = resolved
        return data, cmd

    async def _dispatch_interaction(
        self,
        itype: int,
        data: dict[str, Any],
        *,
        user_id: int,
        channel_id: int,
        name: str,
        message: FakeMessage | None = None,
        from_guild: int | None = None,
        dm: bool = False,
    ) -> InteractionRecord:
        session = self._session()
        assert session is not None
        iid = snowflake()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(96)
        payload: dict[str, Any] = {
            "id": str(iid),
            "application_id": str(self.app_id),
            "type": itype,
            "data": data,
            "token": token,
            "version": 1,
            "locale": "en-US",
            "entitlements": [],
            "entitlement_sku_ids": [],
            "authorizing_integration_owners": {"0": str(self.guild_id)},
            "attachment_size_limit": 10 * 1024 * 1024,
        }
        if dm:  # a direct message with the bot: no guild, a user instead of a member
            if user_id not in self._users:
                raise ValueError(f"unknown user {user_id}")
            channel_id = user_id + 1  # the DM channel's id (any snowflake the bot has not seen)
            payload.update(
                {
                    "channel_id": str(channel_id),
                    "channel": {"id": str(channel_id), "type": 1, "flags": 0, "recipients": [self._user_json(user_id)]},
                    "user": self._user_json(user_id),
                    "app_permissions": str(EVERYONE_DEFAULT),
                    "context": 1,
                }
            )
        elif from_guild is not None:  # another server the bot is in
            guild = self.other_guilds[from_guild]
            if user_id not in guild.members:
                raise ValueError(f"user {user_id} is not a member of guild {guild.name}")
            channel_id = guild.channel_id
            member = {**self._member_json(user_id), "roles": [str(r) for r in guild.members[user_id]]}
            member["permissions"] = str(EVERYONE_DEFAULT)
            payload.update(
                {
                    "guild_id": str(guild.id),
                    "guild": {"id": str(guild.id), "locale": "en-US", "features": []},
                    "channel_id": str(channel_id),
                    "channel": {**self._channel_json(channel_id), "permissions": str(EVERYONE_DEFAULT)},
                    "member": member,
                    "app_permissions": str(EVERYONE_DEFAULT),
                    "guild_locale": "en-US",
                    "context": 0,
                }
            )
        else:
            if user_id not in self._members:
                raise ValueError(f"user {user_id} is not a member of the fake guild (use add_member)")
            if channel_id not in self._channels:
                raise ValueError(f"channel {channel_id} is not in the fake guild")
            channel = {
                **self._channel_json(channel_id),
                "permissions": str(self.member_permissions(user_id, channel_id)),
            }
            payload.update(
                {
                    "guild_id": str(self.guild_id),
                    "guild": {"id": str(self.guild_id), "locale": "en-US", "features": []},
                    "channel_id": str(channel_id),
                    "channel": channel,
                    "member": self._member_json(user_id, channel_id=channel_id, with_perms=True),
                    "app_permissions": str(self.member_permissions(self.bot_user_id, channel_id)),
                    "guild_locale": "en-US",
                    "context": 0,
                }
            )
        if message is not None:
            payload["message"] = self._message_json(message)
        rec = InteractionRecord(
            id=iid,
            token=token,
            type=itype,
            name=name,
            user_id=user_id,
            channel_id=channel_id,
            payload=payload,
            dispatched_at=time.monotonic(),
            source_message=message,
            _waitable=self._waitable,
        )
        self.interactions.append(rec)
        self._by_interaction_id[iid] = rec
        self._by_token[token] = rec
        rec.dispatched_at = time.monotonic()
        await session.dispatch("INTERACTION_CREATE", payload)
        self._changed()
        return rec

    async def invoke_slash(
        self,
        name: str,
        *,
        user_id: int,
        options: dict[str, Any] | None = None,
        subcommand: str | None = None,
        channel_id: int | None = None,
        from_guild: int | None = None,
        dm: bool = False,
        as_global: bool = False,
    ) -> InteractionRecord:
        """Dispatch an APPLICATION_COMMAND interaction for a synced slash command; returns at once.

        options: {option_name: value}; users/roles/channels may be given as ids or by name ("alice", "ops").
        subcommand: "sub" or "group sub".
        from_guild (an add_guild id) / dm: the interaction comes from another server / a direct message, for
        the command as synced. Discord itself would only offer a guild command in its guild: these model a
        global registration left by an older version, or a client that bypasses the UI, so a test can show
        the bot still refuses. as_global: the command data carries no guild id (a global command's).
        """
        channel_id = channel_id or self.ops_channel_id
        data, cmd = self._command_data(name, options=options, subcommand=subcommand)
        if as_global:
            data.pop("guild_id", None)
        if from_guild is None and not dm:
            self._check_command_visible(cmd, user_id, channel_id)
        full = " ".join([name, *(subcommand or "").split()])
        return await self._dispatch_interaction(
            2, data, user_id=user_id, channel_id=channel_id, name=full, from_guild=from_guild, dm=dm
        )

    async def autocomplete(
        self,
        name: str,
        *,
        user_id: int,
        focused: str,
        value: str,
        options: dict[str, Any] | None = None,
        subcommand: str | None = None,
        channel_id: int | None = None,
        timeout: float | None = None,
    ) -> list[dict[str, Any]]:
        """Dispatch an APPLICATION_COMMAND_AUTOCOMPLETE interaction; returns the choices of the type-8 callback.

        Raises AssertionError if the bot's answer was rejected, TimeoutError if none came in time.
        """
        rec = await self.autocomplete_record(
            name,
            user_id=user_id,
            focused=focused,
            value=value,
            options=options,
            subcommand=subcommand,
            channel_id=channel_id,
        )
        await rec.wait_for(lambda r: r.choices is not None or bool(r.errors), timeout or self.ack_deadline + 2)
        if rec.choices is None:
            raise AssertionError(f"autocomplete for /{name} was rejected: {rec.errors}")
        return rec.choices

    async def autocomplete_record(
        self,
        name: str,
        *,
        user_id: int,
        focused: str,
        value: str,
        options: dict[str, Any] | None = None,
        subcommand: str | None = None,
        channel_id: int | None = None,
    ) -> InteractionRecord:
        channel_id = channel_id or self.ops_channel_id
        data, _ = self._command_data(name, options=options, subcommand=subcommand, focused=focused, focused_value=value)
        full = " ".join([name, *(subcommand or "").split()])
        return await self._dispatch_interaction(4, data, user_id=user_id, channel_id=channel_id, name=full)

    async def click_button(self, message: FakeMessage, custom_id: str, *, user_id: int) -> InteractionRecord:
        """Dispatch a MESSAGE_COMPONENT interaction for a button on a message the bot sent."""
        comp = self._clickable(message, custom_id, {2})
        if comp.get("style") in (5, 6):
            raise ValueError(f"button {custom_id!r} is a link/premium button: clicking it sends no interaction")
        return await self._dispatch_interaction(
            3,
            {"custom_id": custom_id, "component_type": 2},
            user_id=user_id,
            channel_id=message.channel_id,
            name=custom_id,
            message=message,
        )

    async def select(
        self, message: FakeMessage, custom_id: str, values: list[str], *, user_id: int
    ) -> InteractionRecord:
        """Dispatch a MESSAGE_COMPONENT interaction for a string select (type 3) on a message the bot sent."""
        comp = self._clickable(message, custom_id, {3})
        options = [o["value"] for o in comp.get("options") or []]
        bad = [v for v in values if v not in options]
        if bad:
            raise ValueError(f"select {custom_id!r} has no options {bad}; options are {options}")
        lo, hi = comp.get("min_values", 1), comp.get("max_values", 1)
        if not lo <= len(values) <= hi:
            raise ValueError(f"select {custom_id!r} takes {lo}..{hi} values, got {len(values)}")
        return await self._dispatch_interaction(
            3,
            {"custom_id": custom_id, "component_type": 3, "values": list(values)},
            user_id=user_id,
            channel_id=message.channel_id,
            name=custom_id,
            message=message,
        )

    async def submit_modal(
        self, opened_by: InteractionRecord, values: dict[str, Any], *, user_id: int | None = None
    ) -> InteractionRecord:
        """Submit the modal the bot opened (type-9 callback) on `opened_by`; values: {custom_id: text}
        (a list of values for selects inside labels). Dispatches a MODAL_SUBMIT interaction."""
        modals = [cb["data"] for cb in opened_by.callbacks if cb["type"] == 9]
        if not modals:
            raise ValueError(f"{opened_by!r} did not open a modal")
        modal = modals[-1]
        unknown = set(values)

        def answer(comp: dict[str, Any]) -> dict[str, Any]:
            cid = str(comp.get("custom_id"))
            unknown.discard(cid)
            if comp.get("type") == 4:
                text = str(values.get(cid, comp.get("value") or ""))
                if comp.get("required", True) and not text:
                    raise ValueError(f"modal text input {cid!r} is required")
                if comp.get("max_length") is not None and len(text) > comp["max_length"]:
                    raise ValueError(f"modal text input {cid!r} longer than {comp['max_length']}")
                if text and comp.get("min_length") is not None and len(text) < comp["min_length"]:
                    raise ValueError(f"modal text input {cid!r} shorter than {comp['min_length']}")
                return {"type": 4, "custom_id": cid, "value": text}
            chosen = values.get(cid, [])
            return {"type": comp.get("type"), "custom_id": cid, "values": list(chosen)}

        components: list[dict[str, Any]] = []
        for top in modal.get("components") or []:
            if top.get("type") == 1:
                components.append({"type": 1, "components": [answer(c) for c in top.get("components") or []]})
            elif top.get("type") == 18 and top.get("component"):
                components.append({"type": 18, "id": top.get("id", 0), "component": answer(top["component"])})
        if unknown:
            raise ValueError(f"modal {modal.get('custom_id')!r} has no inputs {sorted(unknown)}")
        return await self._dispatch_interaction(
            5,
            {"custom_id": modal["custom_id"], "components": components},
            user_id=user_id or opened_by.user_id,
            channel_id=opened_by.channel_id,
            name=str(modal["custom_id"]),
            message=opened_by.source_message,
        )

    def _clickable(self, message: FakeMessage, custom_id: str, types: set[int]) -> dict[str, Any]:
        if message.deleted:
            raise ValueError("message was deleted")
        if message.loading:
            raise ValueError("message is still a deferred 'thinking' placeholder")
        for comp in iter_components(message.components):
            if comp.get("custom_id") == custom_id and comp.get("type") in types:
                if comp.get("disabled"):
                    raise ValueError(f"component {custom_id!r} is disabled: Discord would not let the user use it")
                return comp
        ids = [c.get("custom_id") for c in iter_components(message.components) if c.get("custom_id")]
        raise ValueError(f"no enabled component {custom_id!r} on message {message.id}; custom_ids: {ids}")

    # ------------------------------------------------------------------ interactions: callbacks (bot side)

    def _interaction_callback_json(
        self, rec: InteractionRecord, cb_type: int, msg: FakeMessage | None
    ) -> dict[str, Any]:
        interaction: dict[str, Any] = {"id": str(rec.id), "type": rec.type}
        resource: dict[str, Any] = {"type": cb_type}
        if msg is not None:
            interaction["response_message_id"] = str(msg.id)
            interaction["response_message_loading"] = msg.loading
            interaction["response_message_ephemeral"] = msg.ephemeral
            resource["message"] = self._message_json(msg)
        return {"interaction": interaction, "resource": resource}

    async def _h_callback(self, ctx: _Ctx, interaction_id: str, token: str) -> web.Response:
        rec = self._by_interaction_id.get(int(interaction_id))
        if rec is None or rec.token != token:
            raise DiscordError(404, 10062, "Unknown interaction")
        ctx.record = rec
        now = time.monotonic()
        age = now - rec.dispatched_at
        if age > self.token_ttl:
            raise DiscordError(404, 10062, "Unknown interaction")
        if rec.acked:
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
        if age > self.ack_deadline:
            log.warning("fakediscord: interaction %s acknowledged after %.2fs (> %ss)", rec.id, age, self.ack_deadline)
            raise DiscordError(404, 10062, "Unknown interaction")
        body = ctx.body
        cb_type = body.get("type")
        data = body.get("data") or {}
        if cb_type not in ALLOWED_CALLBACKS.get(rec.type, set()):
            raise DiscordError(
                400,
                50035,
                "Invalid Form Body",
                {
                    "type": {
                        "_errors": [{"code": "INTERACTION_CALLBACK_TYPE_INVALID", "message": f"{cb_type} not valid"}]
                    }
                },
            )
        try:
            if cb_type == 4:
                validate_message(data, require_content=True, has_files=bool(ctx.files))
            elif cb_type == 7:
                validate_message(data, require_content=False, partial=True)
        except DiscordError as err:
            if err.errors is not None:  # callback bodies nest the message under "data"
                err.errors = {"data": err.errors}
            raise
        if cb_type == 8:
            validate_choices(data)
        elif cb_type == 9:
            if not data.get("custom_id") or not data.get("title") or len(str(data.get("title"))) > 45:
                raise DiscordError(
                    400, 50035, "Invalid Form Body", {"data": {"_errors": [{"code": "MODAL", "message": "bad modal"}]}}
                )

        rec.acked_at = now
        rec.callbacks.append({"type": cb_type, "data": copy.deepcopy(data)})
        msg: FakeMessage | None = None
        mtype = 20 if rec.type == 2 else 0
        if cb_type == 4:
            msg = self._new_message(
                rec.channel_id, data, files=ctx.files, interaction=rec, webhook_id=self.app_id, mtype=mtype
            )
            rec.original = msg
            rec.ephemeral = msg.ephemeral
            await self._emit_create(msg)
        elif cb_type == 5:
            flags = (int(data.get("flags") or 0) & FLAG_EPHEMERAL) | FLAG_LOADING
            msg = self._new_message(
                rec.channel_id, {}, interaction=rec, webhook_id=self.app_id, flags=flags, mtype=mtype
            )
            rec.original = msg
            rec.ephemeral = msg.ephemeral
            await self._emit_create(msg)
        elif cb_type in (6, 7) and rec.source_message is not None:
            msg = rec.source_message
            rec.original = msg
            rec.ephemeral = msg.ephemeral
            if cb_type == 7:
                self._apply_edit(msg, data, ctx.files)
                await self._emit_update(msg)
        self._changed()
        if ctx.flag("with_response"):
            return self._ok(ctx, self._interaction_callback_json(rec, cb_type, msg))
        return self._ok(ctx, None, 204)

    # ------------------------------------------------------------------ webhooks (interaction + incoming)

    def _interaction_webhook(self, ctx: _Ctx, webhook_id: str, token: str) -> InteractionRecord | None:
        if int(webhook_id) != self.app_id:
            return None
        rec = self._by_token.get(token)
        if rec is None:
            raise DiscordError(404, 10015, "Unknown Webhook")
        ctx.record = rec
        if time.monotonic() - rec.dispatched_at > self.token_ttl:
            raise DiscordError(401, 50027, "Invalid Webhook Token")
        if not rec.acked:
            # Discord only creates the interaction webhook once the interaction is acknowledged
            raise DiscordError(404, 10015, "Unknown Webhook")
        return rec

    def _check_incoming(self, webhook_id: str, token: str) -> None:
        if int(webhook_id) != self.incoming_webhook_id:
            raise DiscordError(404, 10015, "Unknown Webhook")
        if token != self.incoming_webhook_token:
            raise DiscordError(401, 50027, "Invalid Webhook Token")

    async def _h_webhook_get(self, ctx: _Ctx, webhook_id: str, token: str) -> web.Response:
        if self._interaction_webhook(ctx, webhook_id, token) is not None:
            raise DiscordError(404, 10015, "Unknown Webhook", rule=False)
        self._check_incoming(webhook_id, token)
        return self._ok(
            ctx,
            {
                "id": str(self.incoming_webhook_id),
                "type": 1,
                "guild_id": str(self.guild_id),
                "channel_id": str(self.incoming_webhook_channel_id),
                "name": "incoming-webhook",
                "avatar": None,
                "token": self.incoming_webhook_token,
                "application_id": None,
            },
        )

    async def _h_webhook_execute(self, ctx: _Ctx, webhook_id: str, token: str) -> web.Response:
        body = ctx.body
        rec = self._interaction_webhook(ctx, webhook_id, token)
        validate_message(body, require_content=True, has_files=bool(ctx.files))
        if rec is None:
            self._check_incoming(webhook_id, token)
            self.webhook_posts.append(copy.deepcopy(body))
            msg = self._new_message(
                self.incoming_webhook_channel_id,
                body,
                files=ctx.files,
                author_id=self.incoming_webhook_id,
                webhook_id=self.incoming_webhook_id,
            )
            await self._emit_create(msg)
            return self._ok(ctx, self._message_json(msg)) if ctx.flag("wait") else self._ok(ctx, None, 204)

        original = rec.original
        if rec.callbacks and rec.callbacks[0]["type"] == 5 and original is not None and original.loading:
            # Discord: a followup right after a DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE edits the loading message
            # (its ephemeral flag is ignored; the defer's is kept).
            self._apply_edit(original, body, ctx.files, completing=True)
            msg = original
            await self._emit_update(msg)
        else:
            flags = int(body.get("flags") or 0) & MESSAGE_FLAGS_SETTABLE
            msg = self._new_message(
                rec.channel_id, body, files=ctx.files, interaction=rec, webhook_id=self.app_id, flags=flags
            )
            await self._emit_create(msg)
        rec.followups.append(msg)
        self._changed()
        return self._ok(ctx, self._message_json(msg)) if ctx.flag("wait") else self._ok(ctx, None, 204)

    async def _h_webhook_message(self, ctx: _Ctx, webhook_id: str, token: str, message_id: str) -> web.Response:
        rec = self._interaction_webhook(ctx, webhook_id, token)
        msg: FakeMessage | None
        if rec is None:
            self._check_incoming(webhook_id, token)
            if message_id == "@original":
                raise DiscordError(404, 10008, "Unknown Message")
            msg = self._messages.get(int(message_id))
            if msg is None or msg.webhook_id != self.incoming_webhook_id or msg.deleted:
                raise DiscordError(404, 10008, "Unknown Message")
        elif message_id == "@original":
            msg = rec.original
        else:
            msg = next((m for m in rec.messages if m.id == int(message_id)), None)
        if msg is None or msg.deleted:
            raise DiscordError(404, 10008, "Unknown Message")
        if ctx.method == "GET":
            return self._ok(ctx, self._message_json(msg))
        if ctx.method == "DELETE":
            msg.deleted = True
            self._changed()
            await self._emit_delete(msg)
            return self._ok(ctx, None, 204)
        body = ctx.body
        validate_message(body, require_content=False, partial=True)
        self._apply_edit(msg, body, ctx.files, completing=msg.loading)
        await self._emit_update(msg)
        return self._ok(ctx, self._message_json(msg))
