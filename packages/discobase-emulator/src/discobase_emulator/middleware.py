"""The REST front door: faults (including dropped and stalled connections), auth, the
invalid-request ban, global and per-route rate limits, metrics, and Discord-shaped errors, in
the order Discord applies them.

Everything under /api/v10 passes through here; the gateway, CDN and control API do not.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable

from aiohttp import web

from .core import API_PREFIX, CORE, USER, Core
from .errors import APIError, json_response
from .ratelimit import bucket_hash

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

BUCKET_OF = {
    "POST /channels/{channel_id}/messages": "message_create",
    "PATCH /channels/{channel_id}/messages/{message_id}": "message_edit",
    "POST /channels/{channel_id}/messages/bulk-delete": "bulk_delete",
    "GET /channels/{channel_id}/messages": "history",
    "GET /channels/{channel_id}/messages/{message_id}": "message_get",
    "GET /channels/{channel_id}/messages/pins": "pins",
    "PUT /channels/{channel_id}/messages/pins/{message_id}": "pins",
    "DELETE /channels/{channel_id}/messages/pins/{message_id}": "pins",
    "GET /channels/{channel_id}/pins": "pins",
    "PUT /channels/{channel_id}/pins/{message_id}": "pins",
    "DELETE /channels/{channel_id}/pins/{message_id}": "pins",
}
DELETE_MESSAGE = "DELETE /channels/{channel_id}/messages/{message_id}"
EDIT_MESSAGE = "PATCH /channels/{channel_id}/messages/{message_id}"
EDIT_CHANNEL = "PATCH /channels/{channel_id}"
# Interaction callbacks and webhook calls are authenticated by the token in their path.
NO_AUTH = {
    "GET /gateway",
    "POST /interactions/{interaction_id}/{token}/callback",
    "POST /webhooks/{application_id}/{token}",
    "GET /webhooks/{application_id}/{token}/messages/{message_id}",
    "PATCH /webhooks/{application_id}/{token}/messages/{message_id}",
    "DELETE /webhooks/{application_id}/{token}/messages/{message_id}",
}
TWO_WEEKS = 14 * 24 * 3600


def too_many(
    retry_after: float,
    scope: str,
    headers: dict[str, str],
    code: int | None = None,
    message: str = "You are being rate limited.",
) -> web.Response:
    """A 429 exactly as Discord sends it (discord.py needs the Via header and the JSON body)."""
    body: dict[str, object] = {
        "message": message,
        "retry_after": math.ceil(max(retry_after, 0.001) * 1000) / 1000,
        "global": scope == "global",
    }
    if code is not None:
        body["code"] = code
    out = dict(headers)
    out["Via"] = "1.1 google"
    out["Retry-After"] = str(max(1, math.ceil(retry_after)))
    out["X-RateLimit-Scope"] = scope
    if scope == "global":
        out["X-RateLimit-Global"] = "true"
    return json_response(body, 429, out)


async def _classify(core: Core, request: web.Request, route: str) -> tuple[str, str, str | None]:
    """(bucket name, top-level resource, hidden sub-limit) for one request."""
    info = request.match_info
    major = (
        info.get("channel_id")
        or info.get("guild_id")
        or info.get("token")
        or info.get("application_id")
        or ""
    )
    bucket = BUCKET_OF.get(route, route)
    hidden: str | None = None
    if route in (DELETE_MESSAGE, EDIT_MESSAGE):
        mid = int(info["message_id"])
        exists = bool(core.state.store.existing_ids(int(info["channel_id"]), [mid]))
        age = core.state.store.age_seconds(mid)
        if route == DELETE_MESSAGE:
            if not exists or age < 10:
                bucket = "message_delete_young"
            elif age > TWO_WEEKS:
                bucket = "message_delete_old"
            else:
                bucket = "message_delete"
        elif exists and age > 3600:
            hidden = "old_message_edit"
    elif route == EDIT_CHANNEL:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and ("name" in body or "topic" in body):
            hidden = "channel_rename"
    return bucket, major, hidden


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(API_PREFIX + "/"):
        return await handler(request)
    core = request.app[CORE]
    metrics = core.metrics
    limiter = core.limiter
    resource = request.match_info.route.resource
    exc = request.match_info.http_exception
    if exc is not None or resource is None:
        status = exc.status if exc is not None else 404
        reason = exc.reason if exc is not None else "Not Found"
        metrics.record(f"{request.method} <unknown route>", None, status)
        return json_response({"message": f"{status}: {reason}", "code": 0}, status)
    route = f"{request.method} {resource.canonical[len(API_PREFIX) :]}"
    faults = core.faults
    faulty = faults.applies(route)
    if faulty and faults.draw(faults.stall):
        metrics.record_fault("stall")
        await faults.hang()
        return _drop(request)
    if faulty and faults.draw(faults.drop_before):
        metrics.record_fault("drop_before")
        return _drop(request)
    # Drawn before handling, so the seeded sequence does not depend on what the handler does.
    drop_after = faulty and faults.draw(faults.drop_after)
    resp, bucket_key, scope = await _handle(core, request, handler, route, faulty)
    status = resp.status
    metrics.record(route, bucket_key, status, _body_size(resp))
    if status == 429 and scope:
        metrics.record_429(scope)
    if status in (401, 403) or (status == 429 and scope in ("user", "global")):
        limiter.count_invalid()
        metrics.invalid_requests += 1
    if drop_after and status < 400:
        metrics.record_fault("drop_after")
        return _drop(request)
    return resp


def _body_size(resp: web.StreamResponse) -> int:
    """The body bytes of an answer (headers not counted; 0 when not known in advance)."""
    body = resp.body if isinstance(resp, web.Response) else None
    if isinstance(body, bytes | bytearray):
        return len(body)
    return resp.content_length or 0


def _drop(request: web.Request) -> web.StreamResponse:
    """Close the connection without an answer, as a reset between Discord and the client.

    The client sees the server disconnect with no status line. The returned response is
    never sent: aiohttp finds the transport closed and gives up on it quietly.
    """
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=204)


async def _handle(
    core: Core, request: web.Request, handler: Handler, route: str, faulty: bool
) -> tuple[web.StreamResponse, str | None, str]:
    faults = core.faults
    limiter = core.limiter
    if faulty and faults.latency > 0:
        await asyncio.sleep(faults.latency)
    if faulty and faults.draw(faults.error_rate):
        status = faults.rng.choice(faults.statuses)
        core.metrics.record_fault("error")
        return (
            json_response({"message": f"{status}: Emulated server error", "code": 0}, status),
            None,
            "",
        )
    if faulty and faults.draw(faults.storm_429):
        core.metrics.record_fault("storm_429")
        return too_many(faults.storm_retry_after, "shared", {}), None, "shared"
    token = ""
    if route not in NO_AUTH:
        auth = request.headers.get("Authorization", "")
        token = auth[4:] if auth.startswith("Bot ") else auth
        user = core.state.store.tokens.get(token)
        if user is None:
            return APIError(401, 0, "401: Unauthorized").response(), None, ""
        request[USER] = user
    if limiter.banned():
        ban = web.Response(status=429, text="error code: 1015", content_type="text/plain")
        return ban, None, "ban"
    retry = limiter.check_global(token) if token else 0.0
    if retry > 0:
        return too_many(retry, "global", {}), None, "global"
    bucket, major, hidden = await _classify(core, request, route)
    bucket_key = f"{bucket_hash(bucket)}:{major}"
    verdict = limiter.hit(token, bucket, major)
    if verdict.limited:
        return too_many(verdict.retry_after, "user", verdict.headers), bucket_key, "user"
    if hidden is not None:
        retry = limiter.hit_hidden(token, hidden, major)
        if retry > 0:
            if hidden == "old_message_edit":
                return (
                    too_many(
                        retry,
                        "user",
                        verdict.headers,
                        30046,
                        "Maximum number of edits to messages older than 1 hour reached. "
                        "Try again later.",
                    ),
                    bucket_key,
                    "user",
                )
            return too_many(retry, "user", verdict.headers), bucket_key, "user"
    try:
        resp = await handler(request)
    except APIError as err:
        resp = err.response()
    except web.HTTPException as err:
        resp = json_response({"message": f"{err.status}: {err.reason}", "code": 0}, err.status)
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        log.warning("bad request on %s: %r", route, err)
        resp = json_response({"message": "Invalid Form Body", "code": 50035, "errors": {}}, 400)
    resp.headers.update(verdict.headers)
    return resp, bucket_key, ""
