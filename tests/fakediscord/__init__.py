"""A local fake Discord (REST + gateway, aiohttp) for end-to-end tests of a discord.py bot.

An unmodified ``discord.ext.commands.Bot`` connects to it once ``FakeDiscord.patch_discord()`` has pointed
``discord.http.Route.BASE`` and ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` at it. The fake
enforces Discord's interaction rules (3 s to acknowledge, one acknowledgement, no followups before it,
15 minute tokens) and message limits (content, embeds, components), and can inject 5xx / 429 / hangs.

Typical use::

    fake = FakeDiscord()
    await fake.start()
    with fake.patch_discord():
        bot = make_bot()                       # commands.Bot(..., guild_ready_timeout=0.05)
        task = asyncio.create_task(bot.start("fake-token"))
        await fake.wait_ready()
        await bot.wait_until_ready()
        await bot.tree.sync(guild=discord.Object(fake.guild_id))
        rec = await fake.invoke_slash("ping", user_id=fake.user_ids["alice"])
        await rec.wait_for(lambda r: r.followups)
        await bot.close()
        await task
    await fake.stop()
"""

from .models import DiscordError, FakeMessage, InteractionRecord, RequestLog
from .server import FakeDiscord

__all__ = ["DiscordError", "FakeDiscord", "FakeMessage", "InteractionRecord", "RequestLog"]
