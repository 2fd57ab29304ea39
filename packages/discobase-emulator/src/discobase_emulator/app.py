"""Assembles the aiohttp application: REST under /api/v10, the gateway, the CDN and /_emu.

The client_max_size is raised above Discord's 25 MiB so oversized uploads reach our own checks
and get Discord's 413/40005 instead of aiohttp's plain-text error.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from aiohttp import web

from . import commands, control_api, control_interactions, interactions, routes
from .core import API_PREFIX, CORE, MAX_READ, RESET, Core
from .errors import json_response
from .middleware import api_middleware


async def cdn(request: web.Request) -> web.StreamResponse:
    """Attachment download; the signature and expiry are checked like Discord's CDN."""
    core = request.app[CORE]
    core.metrics.cdn_requests += 1
    info = request.match_info
    try:
        cid, aid = int(info["channel_id"]), int(info["attachment_id"])
    except ValueError:
        return web.Response(status=404, text="Not Found")
    filename = info["filename"]
    path = f"/attachments/{cid}/{aid}/{quote(filename)}"
    q = request.query
    verdict = core.state.signer.check(path, q.get("ex"), q.get("is"), q.get("hm"))
    if verdict == 403:
        return web.Response(status=403, text="Forbidden")
    if verdict == 404:
        return web.Response(status=404, text="This content is no longer available.")
    data = core.state.store.attachment_bytes(cid, aid, filename)
    if data is None:
        return web.Response(status=404, text="Not Found")
    core.metrics.cdn_bytes += len(data)
    ctype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    return web.Response(body=data, content_type=ctype)


def build_app(core: Core, reset: Callable[[], Awaitable[None]]) -> web.Application:
    app = web.Application(
        middlewares=[api_middleware, control_api.control_errors], client_max_size=MAX_READ
    )
    app[CORE] = core
    app[RESET] = reset
    for route in [*routes.routes, *commands.routes, *interactions.routes]:
        assert isinstance(route, web.RouteDef)
        app.router.add_route(route.method, API_PREFIX + route.path, route.handler)
    app.router.add_routes(control_api.routes)
    app.router.add_routes(control_interactions.routes)
    app.router.add_get("/gateway", core.state.gateway.handle)
    app.router.add_get("/gateway/", core.state.gateway.handle)
    cdn_path = "/attachments/{channel_id}/{attachment_id}/{filename}"
    app.router.add_get(cdn_path, cdn)
    app.router.add_get("/media" + cdn_path, cdn)
    app.router.add_get("/", _root)
    return app


async def _root(request: web.Request) -> web.Response:
    return json_response({"name": "discobase-emulator", "api": API_PREFIX})
