"""Discord snowflakes: real timestamps in the top 42 bits, so clients can derive ages from ids.

discord.py reads message age from the id (purge's 14-day switch, delete sub-buckets), so ids
must be genuine timestamps. Fresh ids are strictly increasing even within one millisecond.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

DISCORD_EPOCH_MS = 1420070400000


def ms_of(snowflake: int) -> int:
    """Unix milliseconds encoded in a snowflake."""
    return (snowflake >> 22) + DISCORD_EPOCH_MS


def from_ms(ms: int, low: int = 0) -> int:
    """The smallest snowflake for unix milliseconds `ms` (plus `low` in the 22 low bits)."""
    return ((ms - DISCORD_EPOCH_MS) << 22) | (low & 0x3FFFFF)


def age_seconds(snowflake: int, now: float | None = None) -> float:
    """Seconds since the snowflake was minted."""
    return (now if now is not None else time.time()) - ms_of(snowflake) / 1000.0


def iso(ms: int) -> str:
    """ISO-8601 timestamp as Discord formats it (microseconds, +00:00)."""
    return datetime.fromtimestamp(ms / 1000.0, tz=UTC).isoformat(timespec="microseconds")


def parse_iso(text: str) -> float:
    """Unix seconds from an ISO-8601 timestamp."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class SnowflakeGenerator:
    """Mints ids: `next()` is strictly increasing; `at()` back-dates but stays unique."""

    def __init__(self, floor: int = 0) -> None:
        self._last = floor
        self._counter = 0

    def bump(self, floor: int) -> None:
        """Never mint an id at or below `floor` again (used after loading persisted state)."""
        self._last = max(self._last, floor)

    def next(self) -> int:
        candidate = from_ms(int(time.time() * 1000))
        if candidate <= self._last:
            candidate = self._last + 1
        self._last = candidate
        return candidate

    def at(self, unix_seconds: float) -> int:
        """An id for a past moment; the low bits carry a counter so back-dated ids stay unique."""
        self._counter = (self._counter + 1) & 0x3FFFFF
        return from_ms(int(unix_seconds * 1000), self._counter)
