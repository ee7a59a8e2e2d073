"""The Supabase Management API adapter: the client (management.py) and the cached view of each project (watch.py).

May import httpx, bot.config, bot.core and bot.httpread; nothing of bot/ops, bot/chat, bot/postgres or
bot/postgrest.
"""
