"""What both incident stores (sqlite/, postgres/) do alike: an outbox row as read back, and opening or giving up.

Imports the records and the store's errors only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

from bot.core.records import OutboxRow
from bot.store.errors import StoreError

log = logging.getLogger("bot.store")


class _Openable(Protocol):
    async def open(self) -> Any: ...

    async def close(self) -> None: ...


S = TypeVar("S", bound=_Openable)


def pending_row(r: Mapping[str, Any]) -> OutboxRow:
    """An unsent outbox row as either database returns it (payload and meta stored as JSON text)."""
    return OutboxRow(
        r["id"],
        r["env"],
        r["kind"],
        json.loads(r["payload"]),
        json.loads(r["meta"]),
        r["nonce"],
        r["attempts"],
        None,
        None,
    )


async def opened(store: S) -> S | None:
    """The store, opened and migrated; None (and one clear error in the log) when it cannot be opened."""
    try:
        await store.open()
    except StoreError as err:
        log.error("%s: incidents are kept in memory only; probing and alerting go on", err)
        await store.close()
        return None
    return store
