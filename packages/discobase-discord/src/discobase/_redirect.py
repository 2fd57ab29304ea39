"""Pointing one discord.py client at another Discord API, such as the discobase emulator.

discord.py builds each REST URL from the class attribute `Route.BASE` and connects to the
gateway at `DiscordWebSocket.DEFAULT_GATEWAY` (until READY names a resume URL). Setting those
class attributes would redirect every client in the process, and restoring them out of order
would send a later client to the real Discord. So the redirect is per client instead: its
`HTTPClient` rewrites the URL of each request it makes and of each gateway connection.

Interaction responses and follow-ups do not go through the `HTTPClient`: discord.py's webhook
adapter sends them on the client's aiohttp session itself. So the adapter's `request` is
wrapped once per process, and rewrites only the requests made on a session of a redirected
client (registered when that client logs in); every other client's go to Discord unchanged.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import discord.gateway
import discord.http
import discord.webhook.async_
import yarl

__all__ = ["route_client", "split_api_url"]


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


def route_client(http: Any, api_url: str) -> None:
    """Make the discord.py `HTTPClient` `http` talk to `api_url` instead of Discord."""
    rest, gateway = split_api_url(api_url)
    request: Callable[..., Awaitable[Any]] = http.request
    ws_connect: Callable[..., Awaitable[Any]] = http.ws_connect
    discord_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY

    async def routed_request(route: discord.http.Route, *args: Any, **kwargs: Any) -> Any:
        base = discord.http.Route.BASE
        if route.url.startswith(base):
            route.url = rest + route.url[len(base) :]
        return await request(route, *args, **kwargs)

    async def routed_ws_connect(url: str, *args: Any, **kwargs: Any) -> Any:
        target = yarl.URL(url)
        if target.host == discord_gateway.host:
            url = str(yarl.URL(gateway).with_query(target.query))
        return await ws_connect(url, *args, **kwargs)

    http.request = routed_request
    http.ws_connect = routed_ws_connect
    _route_interaction_answers(http, rest)


# The aiohttp session of each redirected client, and the REST base its answers go to.
_SESSIONS: weakref.WeakKeyDictionary[aiohttp.ClientSession, str] = weakref.WeakKeyDictionary()


def _route_interaction_answers(http: Any, rest: str) -> None:
    """Send the interaction answers of client `http` to `rest` too (see the module doc)."""
    _wrap_webhook_adapter()
    static_login: Callable[..., Awaitable[Any]] = http.static_login

    async def routed_static_login(*args: Any, **kwargs: Any) -> Any:
        user = await static_login(*args, **kwargs)
        _SESSIONS[http._HTTPClient__session] = rest  # a new session at each login
        return user

    http.static_login = routed_static_login
    session = getattr(http, "_HTTPClient__session", None)
    if isinstance(session, aiohttp.ClientSession):  # logged in already (attached late)
        _SESSIONS[session] = rest


def _wrap_webhook_adapter() -> None:
    adapter = discord.webhook.async_.AsyncWebhookAdapter
    if getattr(adapter.request, "__discobase_routed__", False):
        return
    request = adapter.request

    async def routed(
        self: Any, route: discord.http.Route, session: aiohttp.ClientSession, **kwargs: Any
    ) -> Any:
        rest = _SESSIONS.get(session)
        base = discord.http.Route.BASE
        if rest is not None and route.url.startswith(base):
            route.url = rest + route.url[len(base) :]
        return await request(self, route, session, **kwargs)

    routed.__discobase_routed__ = True  # type: ignore[attr-defined]
    adapter.request = routed  # type: ignore[method-assign]
