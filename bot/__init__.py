"""pgrst-ops: keeps PostgREST schema caches healthy. Domain core; only bot/app.py knows Discord."""

__version__ = "0.1.0"
