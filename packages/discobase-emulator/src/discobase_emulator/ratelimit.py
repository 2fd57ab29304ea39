"""Discord's rate limits: per-route buckets, hidden sub-limits, the global limit, invalid requests.

Buckets are fixed windows that open at the first hit, keyed by (token, bucket, top-level
resource), which is what discord.py's pre-emptive limiter models. Values are the observed ones
(research notes section 4.2); `fast` divides every window by 10; `unlimited` never answers 429
but still sends headers (with a limit large enough that discord.py never waits ahead of time).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import deque
from dataclasses import dataclass

PROFILES = ("discord", "fast", "unlimited")


@dataclass(frozen=True)
class Limit:
    count: int
    window: float  # seconds


# Per-route buckets for the `discord` profile. Keys are bucket names; routes map onto them.
DISCORD_BUCKETS: dict[str, Limit] = {
    "message_create": Limit(5, 5.0),
    "message_edit": Limit(5, 5.0),
    "message_delete_young": Limit(5, 1.0),  # message younger than 10 s, or unknown (404)
    "message_delete": Limit(3, 0.333),  # older than 10 s
    "message_delete_old": Limit(30, 4.0),  # older than 14 days
    "bulk_delete": Limit(1, 1.0),
    "history": Limit(5, 5.0),
    "message_get": Limit(5, 5.0),
    "pins": Limit(5, 5.0),
    "default": Limit(5, 5.0),
}
# Sub-limits Discord enforces without advertising them in the bucket headers.
DISCORD_HIDDEN: dict[str, Limit] = {
    "old_message_edit": Limit(3, 6.0),  # edits of messages older than 1 h, per channel: 30046
    "channel_rename": Limit(2, 600.0),  # channel name/topic changes, per channel
}
GLOBAL_LIMIT = Limit(50, 1.0)  # per bot token
INVALID_LIMIT = Limit(10_000, 600.0)  # 401/403/429 (not shared scope) per 10 minutes
UNLIMITED = 1_000_000


def bucket_hash(name: str) -> str:
    """An opaque, stable X-RateLimit-Bucket value for a bucket name."""
    return hashlib.sha1(name.encode()).hexdigest()[:32]


def ceil3(value: float) -> str:
    """Seconds with 3 decimals, rounded up (so clients never come back early)."""
    return f"{math.ceil(max(value, 0.0) * 1000) / 1000:.3f}"


@dataclass
class Window:
    reset_at: float  # monotonic
    used: int


@dataclass
class Verdict:
    """The outcome for one bucket: headers to send, or a 429 with retry_after."""

    limited: bool
    retry_after: float
    headers: dict[str, str]


class RateLimiter:
    """All rate-limit state for one emulator; switchable between profiles at runtime."""

    def __init__(self, profile: str = "discord") -> None:
        self.set_profile(profile)
        self.invalid: deque[float] = deque()

    def set_profile(self, profile: str) -> None:
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")
        self.profile = profile
        self.scale = 0.1 if profile == "fast" else 1.0
        self.enforce = profile != "unlimited"
        self.windows: dict[tuple[str, str, str], Window] = {}

    def reset(self) -> None:
        self.windows.clear()
        self.invalid.clear()

    def limit_of(self, name: str, hidden: bool = False) -> Limit:
        base = (DISCORD_HIDDEN if hidden else DISCORD_BUCKETS).get(name) or DISCORD_BUCKETS[
            "default"
        ]
        if name == "global":
            base = GLOBAL_LIMIT
        if not self.enforce:
            return Limit(UNLIMITED, base.window * self.scale)
        return Limit(base.count, base.window * self.scale)

    def _window(self, key: tuple[str, str, str], limit: Limit, now: float) -> Window:
        win = self.windows.get(key)
        if win is None or now >= win.reset_at:
            win = Window(now + limit.window, 0)
            self.windows[key] = win
        return win

    def check_global(self, token: str) -> float:
        """Count one request against the token's global limit; >0 means a global 429."""
        if not self.enforce:
            return 0.0
        now = time.monotonic()
        limit = self.limit_of("global")
        win = self._window((token, "global", ""), limit, now)
        if win.used >= limit.count:
            return win.reset_at - now
        win.used += 1
        return 0.0

    def hit(self, token: str, bucket: str, major: str) -> Verdict:
        """Take one token from a route bucket; headers always, 429 when the window is spent."""
        now = time.monotonic()
        limit = self.limit_of(bucket)
        win = self._window((token, bucket, major), limit, now)
        reset_after = win.reset_at - now
        headers = {
            "X-RateLimit-Limit": str(limit.count),
            "X-RateLimit-Bucket": bucket_hash(bucket),
            "X-RateLimit-Reset-After": ceil3(reset_after),
            "X-RateLimit-Reset": f"{math.ceil((time.time() + reset_after) * 1000) / 1000:.3f}",
        }
        if win.used >= limit.count:
            headers["X-RateLimit-Remaining"] = "0"
            return Verdict(True, reset_after, headers)
        win.used += 1
        headers["X-RateLimit-Remaining"] = str(limit.count - win.used)
        return Verdict(False, 0.0, headers)

    def hit_hidden(self, token: str, name: str, major: str) -> float:
        """A sub-limit that is not in the headers; >0 means a 429 with that retry_after."""
        if not self.enforce:
            return 0.0
        now = time.monotonic()
        limit = self.limit_of(name, hidden=True)
        win = self._window((token, "hidden:" + name, major), limit, now)
        if win.used >= limit.count:
            return win.reset_at - now
        win.used += 1
        return 0.0

    def count_invalid(self) -> None:
        now = time.monotonic()
        self.invalid.append(now)
        self._trim(now)

    def _trim(self, now: float) -> None:
        horizon = now - INVALID_LIMIT.window * self.scale
        while self.invalid and self.invalid[0] < horizon:
            self.invalid.popleft()

    def banned(self) -> bool:
        """True once the invalid-request budget is spent (Discord's temporary Cloudflare ban)."""
        if not self.enforce:
            return False
        self._trim(time.monotonic())
        return len(self.invalid) >= INVALID_LIMIT.count
