"""What every handler needs: state, limiter, faults and settings, reachable from the aiohttp app.

One `Core` per emulator; handlers find it with `request.app[CORE]`.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .metrics import Metrics
from .ratelimit import RateLimiter
from .state import State
from .store import User

API_PREFIX = "/api/v10"
MiB = 1024 * 1024
MAX_REQUEST = 25 * MiB  # per request (40005 beyond it)
MAX_FILE = 10 * MiB  # per attachment, the default upload limit since 2025
MAX_READ = 64 * MiB  # we still read (and refuse) bodies up to this size


@dataclass
class Faults:
    """Injected failures: a share of REST calls answered with a 5xx or a 429 storm, and latency."""

    error_rate: float = 0.0
    statuses: tuple[int, ...] = (500, 502, 503)
    latency: float = 0.0
    storm_429: float = 0.0
    storm_retry_after: float = 0.05
    rng: random.Random = field(default_factory=lambda: random.Random(1234))


@dataclass
class Core:
    state: State
    limiter: RateLimiter
    metrics: Metrics
    allow_guild_create: bool = False
    faults: Faults = field(default_factory=Faults)


CORE: web.AppKey[Core] = web.AppKey("discobase_emulator_core", Core)
# aiohttp >= 3.13 wants typed request keys (plain strings warn); older versions take strings.
USER: Any = (
    web.RequestKey("discobase_emulator_user", User)
    if hasattr(web, "RequestKey")
    else "discobase_emulator_user"
)
RESET: web.AppKey[Callable[[], Awaitable[None]]] = web.AppKey("discobase_emulator_reset")


def user_of(request: web.Request) -> User:
    """The authenticated bot (set by the middleware before any REST handler runs)."""
    user: User = request[USER]
    return user
