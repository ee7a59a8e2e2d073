"""The incident store: what callers import. IncidentStore is the interface they type against (interface.py);
StoreError what any store call raises when the store cannot be used (errors.py); open_store opens the store
the configuration names, today an SQLite file (sqlite/), migrated to the newest schema (migrations.py).

This face only re-exports, so the database behind it can change without touching a caller.
"""

from bot.store.errors import StoreError
from bot.store.interface import IncidentStore
from bot.store.sqlite import MEMORY, open_store

__all__ = ["MEMORY", "IncidentStore", "StoreError", "open_store"]
