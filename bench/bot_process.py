"""Run the real bot (`bot.app.main`) in its own process against a fake Discord at the given URL.

Only discord.py's two endpoints are pointed elsewhere, exactly as the tests do; nothing else changes.
"""

from __future__ import annotations

import sys

import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bot.app import main

if __name__ == "__main__":
    fake_url = sys.argv[1]
    Route.BASE = f"{fake_url}/api/v10"
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(f"{fake_url.replace('http', 'ws', 1)}/gateway/")
    sys.exit(main(sys.argv[2:]))
