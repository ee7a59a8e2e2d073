"""Incident rules without I/O: resolutions and triggers, maintenance windows, flap detection, MTTR, durations."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bot.config import WEEKDAYS, MaintenanceWindow
from bot.core.records import Incident

# resolutions
AUTO_RECOVERED = "auto_recovered"


MANUAL_RELOAD = "manual_reload"


RECOVERED_BY_ITSELF = "recovered_by_itself"


AFTER_RESTART = "after_restart"


RESOLUTION_TEXT = {
    AUTO_RECOVERED: "auto-recovered by a schema reload",
    MANUAL_RELOAD: "fixed by a manual reload",
    RECOVERED_BY_ITSELF: "recovered by itself",
    AFTER_RESTART: "recovered after a restart",
}


# triggers
MONITOR, RELOAD, CLI = "monitor", "reload", "cli"


# -- maintenance windows ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ActiveWindow:
    window: MaintenanceWindow
    starts: datetime
    ends: datetime


def active_window(windows: Sequence[MaintenanceWindow], at: datetime) -> ActiveWindow | None:
    """The maintenance window covering `at`, if any (weekly, in the window's own time zone, DST-aware)."""
    for window in windows:
        tz = ZoneInfo(window.timezone)
        local = at.astimezone(tz)
        hour, minute = (int(x) for x in window.start.split(":"))
        target = WEEKDAYS.index(window.weekday)
        # the window could have started this week or (if it is long) up to 7 days ago
        for days_back in range(0, 8):
            day = (local - timedelta(days=days_back)).date()
            if day.weekday() != target:
                continue
            starts = datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)
            ends = starts + timedelta(minutes=window.duration_min)
            if starts <= local < ends:
                return ActiveWindow(window, starts.astimezone(UTC), ends.astimezone(UTC))
    return None


# -- flapping -----------------------------------------------------------------------------------------
class FlapDetector:
    """Counts healthy <-> unhealthy flips; more than `flips` within `window_s` is flapping."""

    def __init__(self, flips: int, window_s: float) -> None:
        self.flips = flips
        self.window = timedelta(seconds=window_s)
        self._times: deque[datetime] = deque()
        self._last: bool | None = None

    def record(self, healthy: bool, at: datetime) -> None:
        if self._last is not None and healthy != self._last:
            self._times.append(at)
        self._last = healthy
        self._trim(at)

    def _trim(self, at: datetime) -> None:
        while self._times and at - self._times[0] > self.window:
            self._times.popleft()

    def count(self, at: datetime) -> int:
        self._trim(at)
        return len(self._times)

    def flapping(self, at: datetime) -> bool:
        return self.count(at) > self.flips

    def stable(self, at: datetime) -> bool:
        """No flip within the window."""
        return self.count(at) == 0


# -- /incidents ---------------------------------------------------------------------------------------
def mttr_by_env(incidents: Sequence[Incident]) -> dict[str, tuple[float, int]]:
    """Mean time to recovery (seconds) and count of resolved incidents, per environment."""
    sums: dict[str, list[float]] = {}
    for incident in incidents:
        if incident.duration_s is not None:
            sums.setdefault(incident.env, []).append(incident.duration_s)
    return {env: (sum(values) / len(values), len(values)) for env, values in sums.items()}


def parse_duration(text: str) -> float:
    """'90s', '30m', '2h', '1h30m', '1d' -> seconds; ValueError with the accepted forms otherwise."""
    cleaned = text.strip().lower().replace(" ", "")
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhdw])", cleaned)
    if not parts or "".join(n + u for n, u in parts) != cleaned:
        raise ValueError(f"cannot read the duration {text[:20]!r}: use e.g. 30m, 2h, 1h30m, 1d")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError("the duration must be more than 0")
    return seconds


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
