"""End-to-end tests of the fake Discord through an unmodified discord.py client (tests/fakediscord)."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import warnings
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import discord
import httpx
import pytest
import pytest_asyncio
from discord import app_commands
from discord.ext import commands

from tests.fakediscord import FakeDiscord, FakeMessage

SERVICES = ["postgrest", "postgres", "pgbouncer", "supabase-auth", "supabase-storage"]


class DeployView(discord.ui.View):
    def __init__(self, bot: TinyBot) -> None:
        super().__init__(timeout=None)
        self.bot = bot

    @discord.ui.button(label="Confirm", style=discord.ButtonStyle.danger, custom_id="deploy:confirm")
    async def confirm(self, interaction: discord.Interaction, button: discord.ui.Button[DeployView]) -> None:
        self.bot.results["confirm_user"] = interaction.user.id
        await interaction.response.edit_message(content=f"deployed by {interaction.user.name}", view=None)

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.secondary, custom_id="deploy:cancel")
    async def cancel(self, interaction: discord.Interaction, button: discord.ui.Button[DeployView]) -> None:
        await interaction.response.edit_message(content="cancelled", view=None)


class ReasonModal(discord.ui.Modal, title="Why restart?"):
    reason: discord.ui.TextInput[ReasonModal] = discord.ui.TextInput(label="Reason", custom_id="reason", max_length=50)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"restart approved: {self.reason.value}")


class TinyBot(commands.Bot):
    """A minimal self-contained bot exercising the interaction paths the real bot uses."""

    def __init__(self, guild_id: int) -> None:
        super().__init__(
            command_prefix="!",
            intents=discord.Intents.default(),
            guild_ready_timeout=0.05,  # discord.py waits this long after the last GUILD_CREATE before on_ready
        )
        self.guild_id = guild_id
        self.results: dict[str, Any] = {}
        self.exceptions: dict[str, Exception] = {}
        self._register()

    async def setup_hook(self) -> None:
        guild = discord.Object(id=self.guild_id)
        self.tree.copy_global_to(guild=guild)
        await self.tree.sync(guild=guild)

    def _register(self) -> None:
        tree = self.tree

        @tree.command(name="ping", description="Defer, then answer with an embed followup")
        async def ping(interaction: discord.Interaction) -> None:
            await interaction.response.defer(thinking=True)
            embed = discord.Embed(title="pong", description=f"latency {self.latency * 1000:.0f} ms")
            embed.add_field(name="guild", value=str(interaction.guild_id))
            await interaction.followup.send(embed=embed)

        @tree.command(name="whoami", description="Echo the caller's roles and options")
        @app_commands.describe(target="someone else", count="a number")
        async def whoami(interaction: discord.Interaction, count: int, target: discord.Member | None = None) -> None:
            assert isinstance(interaction.user, discord.Member)
            self.results["whoami"] = {
                "user": interaction.user.id,
                "roles": sorted(r.name for r in interaction.user.roles),
                "count": count,
                "target": target.id if target else None,
                "target_roles": sorted(r.name for r in target.roles) if target else None,
                "channel": interaction.channel_id,
            }
            await interaction.response.send_message(f"you are {interaction.user.name}", ephemeral=True)

        @tree.command(name="deploy", description="Ask for confirmation with buttons")
        async def deploy(interaction: discord.Interaction, env: Literal["staging", "prod"]) -> None:
            await interaction.response.send_message(f"deploy to {env}?", view=DeployView(self))

        @tree.command(name="slow", description="Answers after 4 seconds (too late)")
        async def slow(interaction: discord.Interaction) -> None:
            await asyncio.sleep(4)
            try:
                await interaction.response.send_message("finally")
            except discord.HTTPException as exc:
                self.exceptions["slow"] = exc

        @tree.command(name="double", description="Acknowledges twice")
        async def double(interaction: discord.Interaction) -> None:
            await interaction.response.defer()
            # discord.py refuses a second response locally (InteractionResponded); forget the first one so
            # the second request reaches Discord, the way two processes / a retry would.
            interaction.response._response_type = None
            try:
                await interaction.response.send_message("second")
            except discord.HTTPException as exc:
                self.exceptions["double"] = exc

        @tree.command(name="bigembed", description="Sends an embed over Discord's limits")
        async def bigembed(interaction: discord.Interaction) -> None:
            try:
                await interaction.response.send_message(embed=discord.Embed(description="x" * 5000))
            except discord.HTTPException as exc:
                self.exceptions["bigembed"] = exc
                await interaction.response.send_message("embed too large", ephemeral=True)

        @tree.command(name="announce", description="Post to a channel")
        async def announce(
            interaction: discord.Interaction, text: str, channel: discord.TextChannel | None = None
        ) -> None:
            target = channel or interaction.channel
            assert isinstance(target, discord.TextChannel)
            await interaction.response.defer(ephemeral=True)
            try:
                msg = await target.send(text, allowed_mentions=discord.AllowedMentions(roles=True, users=False))
            except discord.HTTPException as exc:
                self.exceptions["announce"] = exc
                await interaction.followup.send(f"failed: {exc.code}", ephemeral=True)
                return
            await interaction.edit_original_response(content=f"posted {msg.jump_url}")

        async def service_autocomplete(
            interaction: discord.Interaction, current: str
        ) -> list[app_commands.Choice[str]]:
            return [app_commands.Choice(name=s, value=s) for s in SERVICES if s.startswith(current)][:25]

        @tree.command(name="restart", description="Restart a service")
        @app_commands.autocomplete(service=service_autocomplete)
        async def restart(interaction: discord.Interaction, service: str) -> None:
            await interaction.response.send_message(f"restarting {service}")

        @tree.command(name="why", description="Opens a modal")
        async def why(interaction: discord.Interaction) -> None:
            await interaction.response.send_modal(ReasonModal())

        pg = app_commands.Group(name="pg", description="PostgREST ops")

        @pg.command(name="reload", description="Reload the schema cache")
        async def reload(interaction: discord.Interaction, target: str, force: bool = False) -> None:
            self.results["reload"] = {"target": target, "force": force}
            await interaction.response.send_message(f"reloading {target} force={force}")

        tree.add_command(pg)


async def wait_until(predicate: Callable[[], object], limit: float = 5.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.01)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as f:
        yield f


@pytest_asyncio.fixture
async def bot(fake: FakeDiscord) -> AsyncIterator[TinyBot]:
    async with fake.run_bot(TinyBot(fake.guild_id)) as b:
        yield b
    assert len(fake.gateway_sessions) == 1, "the client reconnected: it choked on something the fake sent"


# --------------------------------------------------------------------------------------------- tests


async def test_login_ready_and_guild_cache(fake: FakeDiscord, bot: TinyBot) -> None:
    assert bot.user is not None and bot.user.id == fake.bot_user_id
    assert bot.application_id == fake.app_id
    guild = bot.get_guild(fake.guild_id)
    assert guild is not None and not guild.unavailable
    assert {r.name for r in guild.roles} >= {"@everyone", "ops", "ops-prod", "oncall"}
    assert guild.default_role.id == fake.guild_id
    ops = guild.get_channel(fake.ops_channel_id)
    assert isinstance(ops, discord.TextChannel) and ops.name == "ops-alerts"
    assert isinstance(guild.get_channel(fake.other_channel_id), discord.TextChannel)
    assert guild.me is not None and ops.permissions_for(guild.me).send_messages
    paths = [(r.method, r.path) for r in fake.requests]
    assert ("GET", "/users/@me") in paths and ("GET", "/oauth2/applications/@me") in paths
    session = fake.gateway_sessions[-1]
    assert session.compressor.kind == "zlib-stream"  # discord.py asked for transport compression
    assert session.identify is not None and session.identify["token"] == "fake-bot-token"


async def test_command_sync_lands_in_commands(fake: FakeDiscord, bot: TinyBot) -> None:
    names = {c["name"] for c in fake.commands[fake.guild_id]}
    assert names >= {"ping", "whoami", "deploy", "slow", "double", "bigembed", "announce", "restart", "pg"}
    assert fake.commands["global"] == []
    whoami = fake.command("whoami")
    assert [o["name"] for o in whoami["options"]] == ["count", "target"]
    assert whoami["guild_id"] == str(fake.guild_id)
    # fetch goes through GET and returns the same ids
    fetched = await bot.tree.fetch_commands(guild=discord.Object(fake.guild_id))
    assert {c.id for c in fetched} == {int(c["id"]) for c in fake.commands[fake.guild_id]}


async def test_slash_options_and_member_roles(fake: FakeDiscord, bot: TinyBot) -> None:
    alice, bob = fake.user_ids["alice"], fake.user_ids["bob"]
    rec = await fake.invoke_slash("whoami", user_id=alice, options={"count": 3, "target": "bob"})
    await rec.wait_for(lambda r: r.original is not None)
    seen = bot.results["whoami"]
    assert seen["user"] == alice
    assert seen["roles"] == ["@everyone", "ops", "ops-prod"]
    assert seen["count"] == 3
    assert seen["target"] == bob and seen["target_roles"] == ["@everyone", "ops"]
    assert seen["channel"] == fake.ops_channel_id
    assert rec.ephemeral and rec.callbacks[0]["type"] == 4
    assert rec.original is not None and rec.original.content == "you are alice"
    assert rec.original not in fake.channel_messages(fake.ops_channel_id)  # ephemeral: not in the channel
    with pytest.raises(ValueError, match="required option"):
        await fake.invoke_slash("whoami", user_id=alice)


async def test_subcommand(fake: FakeDiscord, bot: TinyBot) -> None:
    rec = await fake.invoke_slash(
        "pg", subcommand="reload", user_id=fake.user_ids["bob"], options={"target": "prod", "force": True}
    )
    await rec.wait_for(lambda r: r.original is not None)
    assert bot.results["reload"] == {"target": "prod", "force": True}
    assert rec.original is not None and rec.original.content == "reloading prod force=True"


async def test_defer_then_followup_with_embed(fake: FakeDiscord, bot: TinyBot) -> None:
    rec = await fake.invoke_slash("ping", user_id=fake.user_ids["carol"])
    await rec.wait_for(lambda r: bool(r.followups))
    assert [c["type"] for c in rec.callbacks] == [5]
    assert rec.deferred and not rec.ephemeral and not rec.errors
    msg = rec.followups[0]
    assert msg.embeds[0]["title"] == "pong"
    assert msg.embeds[0]["fields"][0] == {"name": "guild", "value": str(fake.guild_id), "inline": True}
    # Discord: the first followup after a deferred response replaces the "thinking" message
    assert msg is rec.original and not msg.loading
    assert msg in fake.channel_messages(fake.ops_channel_id)


async def test_button_click_round_trip(fake: FakeDiscord, bot: TinyBot) -> None:
    alice = fake.user_ids["alice"]
    rec = await fake.invoke_slash("deploy", user_id=alice, options={"env": "prod"})
    await rec.wait_for(lambda r: r.original is not None)
    msg: FakeMessage | None = rec.original
    assert msg is not None and msg.content == "deploy to prod?"
    assert [b["custom_id"] for b in msg.buttons()] == ["deploy:confirm", "deploy:cancel"]
    with pytest.raises(ValueError, match="not one of the command's choices"):
        await fake.invoke_slash("deploy", user_id=alice, options={"env": "dev"})

    click = await fake.click_button(msg, "deploy:confirm", user_id=alice)
    await click.wait_for(lambda r: r.acked)
    assert click.callbacks[0]["type"] == 7  # UPDATE_MESSAGE
    assert msg.content == "deployed by alice" and msg.components == [] and msg.edits == 1
    assert bot.results["confirm_user"] == alice
    with pytest.raises(ValueError, match="no enabled component"):
        await fake.click_button(msg, "deploy:confirm", user_id=alice)


async def test_late_ack_is_rejected(fake: FakeDiscord, bot: TinyBot) -> None:
    rec = await fake.invoke_slash("slow", user_id=fake.user_ids["alice"])
    # while nobody has acknowledged it, the interaction webhook does not exist yet (bypassing the bot here)
    async with httpx.AsyncClient() as client:
        resp = await client.post(f"{fake.api_base}/webhooks/{fake.app_id}/{rec.token}", json={"content": "early"})
    assert resp.status_code == 404 and resp.json()["code"] == 10015
    assert rec.errors[0]["code"] == 10015

    await rec.wait_for(lambda r: len(r.errors) == 2, timeout=6)
    assert rec.errors[1]["code"] == 10062 and rec.errors[1]["status"] == 404
    assert not rec.acked and rec.original is None
    await wait_until(lambda: "slow" in bot.exceptions)
    exc = bot.exceptions["slow"]
    assert isinstance(exc, discord.NotFound) and exc.code == 10062


async def test_double_ack_is_rejected(fake: FakeDiscord, bot: TinyBot) -> None:
    rec = await fake.invoke_slash("double", user_id=fake.user_ids["alice"])
    await rec.wait_for(lambda r: bool(r.errors))
    assert [c["type"] for c in rec.callbacks] == [5]
    assert rec.errors[0]["code"] == 40060
    await wait_until(lambda: "double" in bot.exceptions)
    exc = bot.exceptions["double"]
    assert isinstance(exc, discord.HTTPException) and exc.status == 400 and exc.code == 40060


async def test_oversized_embed_is_rejected(fake: FakeDiscord, bot: TinyBot) -> None:
    rec = await fake.invoke_slash("bigembed", user_id=fake.user_ids["alice"])
    await rec.wait_for(lambda r: r.acked)
    exc = bot.exceptions["bigembed"]
    assert isinstance(exc, discord.HTTPException) and exc.status == 400 and exc.code == 50035
    assert "4096" in str(exc)
    assert rec.errors[0]["code"] == 50035
    assert rec.errors[0]["errors"]["data"]["embeds"]["0"]["description"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH"
    assert rec.original is not None and rec.original.content == "embed too large"  # the fallback went through


async def test_channel_post_and_denied_channel(fake: FakeDiscord, bot: TinyBot) -> None:
    oncall = fake.role_ids["oncall"]
    rec = await fake.invoke_slash(
        "announce", user_id=fake.user_ids["alice"], options={"text": f"<@&{oncall}> schema cache stale"}
    )
    msg = await fake.wait_for_message(fake.ops_channel_id, lambda m: "schema cache" in (m.content or ""))
    assert msg.allowed_mentions == {"parse": ["everyone", "roles"], "replied_user": True}
    assert msg.mention_roles == [oncall]  # oncall is mentionable, so it really pings
    await rec.wait_for(lambda r: r.original is not None and not r.original.loading)
    assert rec.original is not None and rec.original.content is not None and str(msg.id) in rec.original.content

    fake.deny_channel(fake.other_channel_id)  # pushed to the bot as CHANNEL_UPDATE
    guild = bot.get_guild(fake.guild_id)
    other = bot.get_channel(fake.other_channel_id)
    assert guild is not None and isinstance(other, discord.TextChannel)
    await wait_until(lambda: not other.permissions_for(guild.me).send_messages)
    rec2 = await fake.invoke_slash(
        "announce", user_id=fake.user_ids["alice"], options={"text": "hi", "channel": fake.other_channel_id}
    )
    await rec2.wait_for(lambda r: bool(r.followups))
    exc = bot.exceptions["announce"]
    assert isinstance(exc, discord.Forbidden) and exc.code == 50013
    assert rec2.followups[0].content == "failed: 50013" and rec2.followups[0].ephemeral
    assert fake.channel_messages(fake.other_channel_id) == []


async def test_fail_next_500_then_retry(fake: FakeDiscord, bot: TinyBot) -> None:
    fake.fail_next("POST", r"^/channels/\d+/messages$", status=500)
    channel = bot.get_channel(fake.ops_channel_id)
    assert isinstance(channel, discord.TextChannel)
    sent = await channel.send("after a 500")
    posts = fake.requests_to("POST", r"^/channels/\d+/messages$")
    assert [r.status for r in posts] == [500, 200]
    assert posts[0].injected and posts[1].time - posts[0].time >= 0.9  # discord.py sleeps 1 s before retrying
    assert fake.channel_messages(fake.ops_channel_id)[-1].id == sent.id


async def test_429_retry_after_is_honoured(fake: FakeDiscord, bot: TinyBot) -> None:
    fake.fail_next("PATCH", r"^/channels/\d+/messages/\d+$", retry_after=0.4)
    channel = bot.get_channel(fake.ops_channel_id)
    assert isinstance(channel, discord.TextChannel)
    sent = await channel.send("v1")
    await sent.edit(content="v2")
    patches = fake.requests_to("PATCH", r"^/channels/\d+/messages/\d+$")
    assert [r.status for r in patches] == [429, 200]
    assert patches[1].time - patches[0].time >= 0.4
    stored = fake.message(sent.id)
    assert stored is not None and stored.content == "v2" and stored.edits == 1


async def test_429_on_interaction_webhook(fake: FakeDiscord, bot: TinyBot) -> None:
    # the webhook adapter (followups) has its own 429 handling; it needs the Via header like the REST client
    fake.fail_next("POST", r"^/webhooks/\d+/[^/]+$", retry_after=0.2)
    rec = await fake.invoke_slash("ping", user_id=fake.user_ids["alice"])
    await rec.wait_for(lambda r: bool(r.followups))
    assert [r.status for r in fake.requests_to("POST", r"^/webhooks/")] == [429, 200]


async def test_modal_round_trip(fake: FakeDiscord, bot: TinyBot) -> None:
    rec = await fake.invoke_slash("why", user_id=fake.user_ids["carol"])
    await rec.wait_for(lambda r: r.acked)
    assert rec.callbacks[0]["type"] == 9 and rec.original is None
    with pytest.raises(ValueError, match="longer than 50"):
        await fake.submit_modal(rec, {"reason": "x" * 51})
    sub = await fake.submit_modal(rec, {"reason": "cache stale"})
    await sub.wait_for(lambda r: r.original is not None)
    assert sub.original is not None and sub.original.content == "restart approved: cache stale"


async def test_hang_until_released(fake: FakeDiscord, bot: TinyBot) -> None:
    fake.fail_next("GET", r"^/channels/\d+$", hang=True)
    task = asyncio.create_task(bot.fetch_channel(fake.other_channel_id))
    await asyncio.sleep(0.3)
    assert not task.done()
    fake.release_hangs()
    channel = await asyncio.wait_for(task, 2)
    assert channel.id == fake.other_channel_id and fake.requests_to("GET", r"^/channels/")[0].status == 200


async def test_interaction_token_expires(fake: FakeDiscord, bot: TinyBot) -> None:
    rec = await fake.invoke_slash("ping", user_id=fake.user_ids["alice"])
    await rec.wait_for(lambda r: bool(r.followups))
    rec.dispatched_at -= 15 * 60 + 1  # pretend 15 minutes passed
    async with httpx.AsyncClient() as client:
        url = f"{fake.api_base}/webhooks/{fake.app_id}/{rec.token}/messages/@original"
        resp = await client.patch(url, json={"content": "too late"})
    assert resp.status_code == 401 and resp.json()["code"] == 50027


async def test_autocomplete(fake: FakeDiscord, bot: TinyBot) -> None:
    choices = await fake.autocomplete("restart", user_id=fake.user_ids["bob"], focused="service", value="postg")
    assert choices == [{"name": "postgrest", "value": "postgrest"}, {"name": "postgres", "value": "postgres"}]
    rec = await fake.invoke_slash("restart", user_id=fake.user_ids["bob"], options={"service": "pgbouncer"})
    await rec.wait_for(lambda r: r.original is not None)
    assert rec.original is not None and rec.original.content == "restarting pgbouncer"


def _rows(n_rows: int, per_row: int, *, label: str = "b", id_len: int = 4) -> list[dict[str, Any]]:
    return [
        {
            "type": 1,
            "components": [
                {"type": 2, "style": 1, "label": label, "custom_id": f"{r}-{i}-".ljust(id_len, "x")}
                for i in range(per_row)
            ],
        }
        for r in range(n_rows)
    ]


@pytest.mark.parametrize(
    ("body", "ok"),
    [
        ({"content": "x" * 2000}, True),
        ({"content": "x" * 2001}, False),
        ({"content": ""}, False),  # 50006 empty message
        ({"embeds": [{"title": "t" * 256, "description": "d" * 4096}]}, True),
        ({"embeds": [{"title": "t" * 257}]}, False),
        ({"embeds": [{"description": "d" * 4097}]}, False),
        ({"embeds": [{"fields": [{"name": "n", "value": "v"}] * 25}]}, True),
        ({"embeds": [{"fields": [{"name": "n", "value": "v"}] * 26}]}, False),
        ({"embeds": [{"fields": [{"name": "n" * 257, "value": "v"}]}]}, False),
        ({"embeds": [{"fields": [{"name": "n", "value": "v" * 1025}]}]}, False),
        ({"embeds": [{"footer": {"text": "f" * 2049}}]}, False),
        ({"embeds": [{"author": {"name": "a" * 257}}]}, False),
        ({"embeds": [{"description": "d" * 4000}, {"description": "d" * 2001}]}, False),  # > 6000 in total
        ({"embeds": [{"title": "t"}] * 10}, True),
        ({"embeds": [{"title": "t"}] * 11}, False),
        ({"components": _rows(5, 5)}, True),
        ({"components": _rows(6, 1)}, False),
        ({"components": _rows(1, 6)}, False),
        ({"components": _rows(1, 1, id_len=101)}, False),
        ({"components": _rows(1, 1, label="l" * 81)}, False),
    ],
)
async def test_message_limits(fake: FakeDiscord, body: dict[str, Any], ok: bool) -> None:
    async with httpx.AsyncClient(headers={"Authorization": "Bot t"}) as client:
        resp = await client.post(f"{fake.api_base}/channels/{fake.ops_channel_id}/messages", json=body)
    if ok:
        assert resp.status_code == 200, resp.text
    else:
        assert resp.status_code == 400 and resp.json()["code"] in (50035, 50006), resp.text
        assert fake.errors and fake.errors[-1]["code"] == resp.json()["code"]


async def test_members_intent_chunking_and_member_add(fake: FakeDiscord) -> None:
    intents = discord.Intents.default()
    intents.members = True
    with fake.patch_discord():
        b = commands.Bot(command_prefix="!", intents=intents, guild_ready_timeout=0.05)
        task = asyncio.create_task(b.start("fake-bot-token"))
        try:
            await asyncio.wait_for(b.wait_until_ready(), 5)
            guild = b.get_guild(fake.guild_id)
            assert guild is not None and guild.chunked
            assert {m.name for m in guild.members} >= {"alice", "bob", "carol", "pgrst-ops"}
            members = await asyncio.wait_for(guild.chunk(), 3)  # op 8 REQUEST_GUILD_MEMBERS
            assert len(members) == len(guild.members)
            zed = fake.add_member("zed", ["oncall"])  # dispatches GUILD_MEMBER_ADD
            await wait_until(lambda: guild.get_member(zed) is not None)
            member = guild.get_member(zed)
            assert member is not None and [r.name for r in member.roles] == ["@everyone", "oncall"]
        finally:
            await b.close()
            await asyncio.wait_for(task, 5)


async def test_reply_and_edit_of_interaction_message(fake: FakeDiscord, bot: TinyBot) -> None:
    rec = await fake.invoke_slash("deploy", user_id=fake.user_ids["bob"], options={"env": "staging"})
    await rec.wait_for(lambda r: r.original is not None)
    assert rec.original is not None
    channel = bot.get_channel(fake.ops_channel_id)
    assert isinstance(channel, discord.TextChannel)
    original = await channel.fetch_message(rec.original.id)
    reply = await original.reply("replying", mention_author=False)
    stored = fake.message(reply.id)
    assert stored is not None and stored.message_reference is not None
    assert stored.message_reference["message_id"] == str(rec.original.id) and stored.mentions == []
    await original.edit(content="edited through the channel endpoint")
    assert rec.original.content == "edited through the channel endpoint" and rec.original.edits == 1
    with pytest.raises(discord.HTTPException) as info:
        await channel.send("dangling", reference=discord.MessageReference(message_id=1, channel_id=channel.id))
    assert info.value.code == 50035


async def test_incoming_webhook_and_unknown_routes(fake: FakeDiscord) -> None:
    async with httpx.AsyncClient() as client:
        resp = await client.post(fake.incoming_webhook_url, params={"wait": "true"}, json={"content": "hook"})
        assert resp.status_code == 200 and resp.json()["content"] == "hook"
        resp = await client.post(fake.incoming_webhook_url, json={"embeds": [{"title": "t" * 300}]})
        assert resp.status_code == 400 and resp.json()["code"] == 50035
        resp = await client.post(
            f"{fake.api_base}/channels/1/messages", json={"content": "x"}, headers={"Authorization": "Bot x"}
        )
        assert resp.status_code == 404 and resp.json()["code"] == 10003
        resp = await client.get(f"{fake.api_base}/nope/123", headers={"Authorization": "Bot x"})
        assert resp.status_code == 404 and resp.json()["code"] == 0
    assert fake.webhook_posts == [{"content": "hook"}]
    assert [m.content for m in fake.channel_messages(fake.ops_channel_id)] == ["hook"]
    assert [r.path for r in fake.unhandled] == ["/nope/123"]


async def test_clean_shutdown(fake: FakeDiscord, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with fake.patch_discord():
            b = TinyBot(fake.guild_id)
            task = asyncio.create_task(b.start("fake-bot-token"))
            await fake.wait_ready()
            await asyncio.wait_for(b.wait_until_ready(), 5)
            await b.close()
            await asyncio.wait_for(task, 5)
        assert b.is_closed()
        session = b.http._HTTPClient__session  # type: ignore[attr-defined]
        assert session.closed
        await wait_until(lambda: all(s.closed for s in fake.gateway_sessions))
        del b, session, task
        gc.collect()
    import discord.http as dhttp

    assert dhttp.Route.BASE == "https://discord.com/api/v10"  # patch_discord restored it
    unclosed = [w for w in caught if "nclosed" in str(w.message)]
    assert unclosed == []
    assert not [r for r in caplog.records if "nclosed" in r.getMessage()]
    # discord.py calls ws.close(code=1000), but with aiohttp 3.14 its reader loop wins the race and the
    # frame on the wire carries 4000 (which real Discord treats as resumable, not a clean logout).
    assert fake.gateway_sessions[-1].close_code in (1000, 4000)


async def test_wrong_token_fails_login() -> None:
    async with FakeDiscord(bot_token="right-token") as fake:
        with pytest.raises(discord.LoginFailure):
            async with fake.run_bot(TinyBot(fake.guild_id), token="wrong-token"):
                pass  # pragma: no cover
        assert [r.status for r in fake.requests] == [401]


async def test_a_second_guild_a_dm_and_a_role_made_after_start() -> None:
    async with FakeDiscord() as fake:
        other = fake.add_guild("elsewhere", roles=["ops"], members={"mallory": ["ops"], "eve": []})
        seen: list[tuple[int | None, bool, list[str]]] = []
        bot = TinyBot(fake.guild_id)

        @bot.tree.command(name="where", description="Where the interaction came from")
        async def where(interaction: discord.Interaction) -> None:
            roles = [r.name for r in getattr(interaction.user, "roles", [])]
            seen.append((interaction.guild_id, isinstance(interaction.user, discord.Member), roles))
            await interaction.response.send_message("here", ephemeral=True)

        async with fake.run_bot(bot):
            guild = bot.get_guild(other.id)
            assert guild is not None and [r.name for r in guild.roles] == ["@everyone", "ops"]
            assert guild.get_channel(other.channel_id) is not None
            assert bot.get_guild(fake.guild_id).get_channel(other.channel_id) is None  # type: ignore[union-attr]
            mallory = fake.user_ids["mallory"]
            for kwargs in ({"from_guild": other.id}, {"dm": True}, {}):
                record = await fake.invoke_slash("where", user_id=mallory, **kwargs)  # type: ignore[arg-type]
                await record.wait_acked()
                assert not record.errors and record.ephemeral
            look_alike = fake.create_role("ops")
            fake.give_role(mallory, look_alike)
            await wait_until(lambda: bot.get_guild(fake.guild_id).get_role(look_alike) is not None)  # type: ignore[union-attr]
            record = await fake.invoke_slash("where", user_id=mallory)
            await record.wait_acked()
    assert seen[0] == (other.id, True, ["@everyone", "ops"])
    assert seen[1] == (None, False, [])  # a DM: a user, not a member
    assert seen[2] == (fake.guild_id, True, ["@everyone"])
    assert seen[3] == (fake.guild_id, True, ["@everyone", "ops"])
    assert fake.role_ids["ops"] != look_alike  # role_ids keeps the first role of a name
