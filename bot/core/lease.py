"""The leader lease's rules, without I/O: who may act, for how long, and what the server must be told.

Replicas sharing a PostgreSQL store elect one leader with a session advisory lock held on a dedicated
connection (bot/postgres/lease.py does the I/O). A replica is a standby until it holds the lock, the leader
while it holds it and keeps confirming it, and lost once a confirmation failed, timed out or is overdue: a lost
replica never leads again in this process (it exits and its supervisor restarts it as a standby).

The fence is `LeaseState.leading(now)`: true only while the last good confirmation *started* less than
`trusted_s` ago. The server drops a silent leader's session (so its lock) `release_s` after its last query
(`idle_session_timeout`), later than `trusted_s`, and that query started no earlier than the confirmation's start,
so a leader always stops trusting itself before a standby can hold the lock. The clock is injected (monotonic seconds).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

Fence = Callable[[], bool]  # "am I still the leader?": asked right before anything acts or is sent


def always_leading() -> bool:
    """The fence of a bot without replicas (an SQLite store): it always acts."""
    return True


DEFAULT_GROUP = "default"
LOCK_NAMESPACE = "pgrst-ops leader:"  # keeps the key away from other programs' advisory locks on that database


def lock_key(group: str) -> int:
    """The advisory lock key (a signed 64-bit integer) of a leader group; stable across processes and versions."""
    digest = hashlib.blake2b((LOCK_NAMESPACE + group).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass(frozen=True)
class LeaseTiming:
    """Every period follows from `lease_s`: how soon a standby takes over a leader that went silent."""

    lease_s: float
    retry_s: float = 1.0  # how often a standby tries the lock

    @property
    def check_every_s(self) -> float:
        """The leader confirms its connection this often..."""
        return self.lease_s / 3

    @property
    def check_timeout_s(self) -> float:
        """...and gives each confirmation this long."""
        return self.lease_s / 3

    @property
    def trusted_s(self) -> float:
        """How long after a good confirmation started the leader still acts: one missed or slow check ends it."""
        return 2 * self.lease_s / 3

    @property
    def release_s(self) -> float:
        """The server ends a session idle this long: a silent leader's lock is free by then, and a standby trying
        every `retry_s` holds it within `lease_s` of the leader's last query (for lease_s >= 6 * retry_s)."""
        return self.lease_s - min(self.retry_s, self.lease_s / 6)

    @property
    def reachable_s(self) -> float:
        """A standby whose last answer from the database is older than this says the store is unreachable."""
        return max(5.0, 3 * self.retry_s)

    def server_settings(self) -> dict[str, str]:
        """Session settings of the lease's connection, so the server itself releases a silent leader's lock.

        `idle_session_timeout` ends a session that sent nothing for `release_s` (a frozen process, a network cut:
        the leader queries every `check_every_s`). The keepalives and `tcp_user_timeout` let the server's
        kernel drop a peer that vanished, so no backend lingers; neither fires before `trusted_s` has passed
        since the peer's last packet, so neither releases the lock while the old leader may still act.
        """
        lease_ms = math.ceil(self.lease_s * 1000)
        idle = max(1, math.ceil(self.trusted_s))
        interval = max(1, math.floor(self.lease_s / 9))
        return {
            "idle_session_timeout": str(math.ceil(self.release_s * 1000)),
            "tcp_keepalives_idle": str(idle),
            "tcp_keepalives_interval": str(interval),
            "tcp_keepalives_count": "3",
            "tcp_user_timeout": str(lease_ms),
            "application_name": "pgrst-ops lease",
        }


class Role(StrEnum):
    STANDBY = "standby"
    LEADER = "leader"
    LOST = "lost"  # was the leader, is no longer; never leads again in this process


@dataclass
class LeaseState:
    timing: LeaseTiming
    role: Role = Role.STANDBY
    confirmed_at: float | None = None  # when the last good confirmation (or the winning attempt) started
    lost_reason: str | None = None
    epoch: int | None = None  # the leader generation this replica won (None: not recorded)

    def won(self, started_at: float) -> None:
        """The lock was granted to the attempt that started at `started_at`."""
        if self.role is Role.STANDBY:
            self.role, self.confirmed_at = Role.LEADER, started_at

    def confirmed(self, started_at: float) -> None:
        """A confirmation that started at `started_at` succeeded (a late answer never extends a lost lease)."""
        if self.role is Role.LEADER and self.confirmed_at is not None:
            self.confirmed_at = max(self.confirmed_at, started_at)

    def lose(self, reason: str) -> bool:
        """Leadership ends (the first reason is kept); True when this call ended it."""
        if self.role is not Role.LEADER:
            return False
        self.role, self.lost_reason = Role.LOST, reason
        return True

    def leading(self, now: float) -> bool:
        """The fence: the leader, and confirmed recently enough that no standby can hold the lock yet."""
        return (
            self.role is Role.LEADER
            and self.confirmed_at is not None
            and now - self.confirmed_at < self.timing.trusted_s
        )

    def overdue(self, now: float) -> str | None:
        """Why a leader must stop although no check failed (its checks ran too late), or None."""
        if self.role is Role.LEADER and not self.leading(now):
            return f"no confirmation of the lease for {self.timing.trusted_s:g} s"
        return None

    def next_check_at(self) -> float:
        return (self.confirmed_at or 0.0) + self.timing.check_every_s


def standby_unready(timing: LeaseTiming, reached_at: float | None, error: str | None, now: float) -> str | None:
    """Why a standby is not ready (the store's database does not answer its lease attempts), or None."""
    if reached_at is not None and now - reached_at <= timing.reachable_s:
        return None
    return f"standby: incident store unreachable ({error or 'no answer yet'})"
