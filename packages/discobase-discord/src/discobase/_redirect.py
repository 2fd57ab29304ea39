"""Pointing discord.py at another Discord API, such as the discobase emulator.

discord.py reads its REST base from `discord.http.Route.BASE` whenever it builds a request and
its gateway from `DiscordWebSocket.DEFAULT_GATEWAY` when it connects, so setting both class
attributes redirects every client in the process. This package does not depend on the
emulator (the emulator ships the same helper for its own tests).
"""

from __future__ import annotations

from collections.abc import Callable

import discord.gateway
import discord.http
import yarl

__all__ = ["point_discord_at", "split_api_url"]


def split_api_url(api_url: str) -> tuple[str, str]:
    """(REST base ending in /api/v10, gateway URL) for a server's base URL."""
    base = yarl.URL(api_url.rstrip("/"))
    if base.scheme not in ("http", "https") or not base.host:
        raise ValueError(
            f"api_url must be an http(s) URL like http://127.0.0.1:8787, got {api_url!r}"
        )
    root = str(base).removesuffix("/api/v10").rstrip("/")
    scheme = "wss" if base.scheme == "https" else "ws"
    gateway = str(yarl.URL(root).with_scheme(scheme).with_path("/gateway"))
    return f"{root}/api/v10", gateway


def point_discord_at(api_url: str) -> Callable[[], None]:
    """Redirect discord.py to `api_url`; returns a function that undoes it."""
    rest, gateway = split_api_url(api_url)
    old_rest = discord.http.Route.BASE
    old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = rest
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)

    def restore() -> None:
        discord.http.Route.BASE = old_rest
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway

    return restore
