"""Whether PostgREST listens for the reload NOTIFY: the listener's state as the catalog shows it (pure data)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ListenerState(StrEnum):
    PRESENT = "present"
    ABSENT = "absent"
    UNKNOWN = "unknown"  # the monitoring role may not read other sessions' queries


@dataclass(frozen=True)
class ListenerSession:
    """A session of this database that LISTENs on the channel, as pg_stat_activity shows it."""

    application_name: str
    usename: str
    client_addr: str | None
    postgrest: bool  # logs in as the authenticator role

    def describe(self) -> str:
        where = f", from {self.client_addr}" if self.client_addr else ""
        who = f"{self.application_name or 'no application_name'} (user {self.usename or '?'}{where})"
        return who if self.postgrest else f"{who}, not PostgREST"


@dataclass(frozen=True)
class ListenerStatus:
    state: ListenerState
    listeners: int
    postgrest_backends: int
    detail: str
    sessions: tuple[ListenerSession, ...] = ()  # who listens
    pooled_backends: int = 0  # PostgREST sessions whose application_name is a pooler's
