"""A client-side global rate limiter.

Discord allows a bot about 50 REST requests per second in all, and discord.py only limits
per route bucket: it learns about the global limit from 429s, and 429s count towards the
Cloudflare ban (10,000 invalid requests in 10 minutes). So every REST call discobase's
client makes first takes a token from this bucket, and the global limit is never reached.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["GlobalLimiter", "install_limiter"]


class GlobalLimiter:
    """A token bucket: `rate` requests per second on average, bursts of at most `burst`."""

    def __init__(self, rate: float = 40.0, burst: int = 20) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()
        self.waited = 0.0  # seconds spent waiting for tokens, for diagnostics

    async def acquire(self) -> None:
        """Wait until one request may go out (callers are served in arrival order)."""
        async with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens < 1:
                delay = (1 - self._tokens) / self.rate
                self.waited += delay
                await asyncio.sleep(delay)
                self._tokens = 1.0
                self._stamp = time.monotonic()
            self._tokens -= 1


def install_limiter(http: Any, limiter: GlobalLimiter) -> None:
    """Make every REST request of a discord.py `HTTPClient` wait for `limiter` first."""
    original: Callable[..., Awaitable[Any]] = http.request

    async def request(*args: Any, **kwargs: Any) -> Any:
        await limiter.acquire()
        return await original(*args, **kwargs)

    http.request = request
