"""What every handler needs: state, limiter, faults and settings, reachable from the aiohttp app.

One `Core` per emulator; handlers find it with `request.app[CORE]`.
"""

from __future__ import annotations

import asyncio
import contextlib
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
    """Injected failures on REST calls: what a flaky network or a struggling Discord does.

    `error_rate` answers a share with a 5xx from `statuses`; `storm_429` with a shared-scope
    429; `latency` delays every call. Dropped connections close the socket without any
    answer: `drop_before` before the request is handled (nothing happened), `drop_after`
    once it has been handled and committed (the write happened, but the client cannot know:
    the case exactly-once writes must survive). `stall` hangs a share for `stall_seconds`
    (longer than a client's timeout) and then drops them unhandled, as an overloaded edge
    does. `only_routes` limits every fault to matching routes: each entry is a method
    ("POST"), a route template ("POST /channels/{channel_id}/messages") or a template without
    its method ("/channels/{channel_id}/messages"); empty means every route.
    """

    error_rate: float = 0.0
    statuses: tuple[int, ...] = (500, 502, 503)
    latency: float = 0.0
    storm_429: float = 0.0
    storm_retry_after: float = 0.05
    drop_before: float = 0.0
    drop_after: float = 0.0
    stall: float = 0.0
    stall_seconds: float = 30.0
    only_routes: tuple[str, ...] = ()
    rng: random.Random = field(default_factory=lambda: random.Random(1234))
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    def applies(self, route: str) -> bool:
        """Whether faults may hit `route` ("METHOD /template")."""
        if not self.only_routes:
            return True
        method, _, template = route.partition(" ")
        return any(entry in (method, template, route) for entry in self.only_routes)

    def draw(self, share: float) -> bool:
        """True for about `share` of calls (seeded, so a run is reproducible)."""
        return share > 0 and self.rng.random() < share

    async def hang(self) -> None:
        """Stall for `stall_seconds`, or until `release()` (new faults, reset or stop), so a
        stalled request never holds up the emulator's shutdown."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._release.wait(), self.stall_seconds)

    def release(self) -> None:
        """End every stall in progress (they drop their connection at once)."""
        self._release.set()
        self._release = asyncio.Event()


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
