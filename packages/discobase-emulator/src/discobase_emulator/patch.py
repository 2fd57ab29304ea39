"""Point an unmodified discord.py at an emulator: the two class attributes it reads its URLs from.

`discord.http.Route.BASE` is read each time a Route is built and
`discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY` when a connection opens, so patching them
before `Client.start()` redirects REST and gateway. discord.py is imported lazily: the
emulator itself never depends on it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def point_discord_at(url: str) -> Callable[[], None]:
    """Send discord.py's REST and gateway to `url` ("http://host:port"); returns an undo."""
    http: Any = importlib.import_module("discord.http")
    gateway: Any = importlib.import_module("discord.gateway")
    yarl: Any = importlib.import_module("yarl")
    base = url.rstrip("/")
    ws = "ws" + base.removeprefix("http") + "/gateway"
    old_base = http.Route.BASE
    old_gateway = gateway.DiscordWebSocket.DEFAULT_GATEWAY
    http.Route.BASE = base + "/api/v10"
    gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(ws)

    def restore() -> None:
        http.Route.BASE = old_base
        gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway

    return restore


@contextmanager
def use_emulator(url: str) -> Iterator[None]:
    """Context-manager form of `point_discord_at`."""
    restore = point_discord_at(url)
    try:
        yield
    finally:
        restore()
