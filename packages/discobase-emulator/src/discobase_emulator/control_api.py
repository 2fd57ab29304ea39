"""The control API under /_emu: reset, seeding, ageing, profiles, faults, damage and metrics.

It is outside auth and rate limits and is not counted in the REST metrics, so tests and
benchmarks can arrange and observe a scenario without disturbing what they measure. The
damage endpoints do what a server admin, a person or a bug could do to a database behind
the bot's back (delete a message or a channel, alter or garble what is stored), so tests can
check that discobase notices, names the damage and keeps the rest.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .core import CORE, RESET, Core
from .damage import MODES, garble, sha256
from .errors import APIError, json_response, unknown_channel, unknown_guild, unknown_message
from .models import guild_json, user_json
from .state import channel_defaults
from .store import Channel, Message, User

routes = web.RouteTableDef()


def _core(request: web.Request) -> Core:
    return request.app[CORE]


def _channel_of(core: Core, request: web.Request) -> Channel:
    """The channel named by the path, or Discord's 404 (10003)."""
    channel = core.state.store.channels.get(int(request.match_info["channel_id"]))
    if channel is None:
        raise unknown_channel()
    return channel


def _message_of(core: Core, channel: Channel, request: web.Request) -> Message:
    """The message named by the path, or Discord's 404 (10008)."""
    msg = core.state.store.get_message(channel.id, int(request.match_info["message_id"]))
    if msg is None:
        raise unknown_message()
    return msg


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    data = await request.json()
    if not isinstance(data, dict):
        raise APIError(400, 0, "expected a JSON object")
    return data


def _bot_for(core: Core, guild_id: int) -> User:
    guild = core.state.store.guilds[guild_id]
    for uid in guild.members:
        user = core.state.store.users[uid]
        if user.bot:
            return user
    raise APIError(400, 0, "no bot is a member of this guild")


@routes.get("/_emu/health")
async def health(request: web.Request) -> web.Response:
    return json_response({"ok": True, "profile": _core(request).limiter.profile})


@routes.post("/_emu/reset")
async def reset(request: web.Request) -> web.Response:
    await request.app[RESET]()
    return json_response({"ok": True})


@routes.post("/_emu/tokens")
async def add_token(request: web.Request) -> web.Response:
    core = _core(request)
    body = await _body(request)
    user = core.state.add_bot(str(body["token"]), str(body.get("name") or "bot"))
    return json_response(user_json(user))


@routes.post("/_emu/guilds")
async def create_guild(request: web.Request) -> web.Response:
    core = _core(request)
    body = await _body(request)
    members = []
    for token in body.get("members") or []:
        user = core.state.store.tokens.get(str(token))
        if user is None:
            raise APIError(400, 0, f"unknown token {token!r}")
        members.append(user.id)
    guild = core.state.create_guild(str(body["name"]), members)
    out = guild_json(guild)
    out["channels"] = [
        core.state.channel(c) for c in core.state.store.channels.values() if c.guild_id == guild.id
    ]
    return json_response(out)


@routes.post(r"/_emu/guilds/{guild_id:\d+}/channels")
async def create_channel(request: web.Request) -> web.Response:
    core = _core(request)
    guild = core.state.store.guilds.get(int(request.match_info["guild_id"]))
    if guild is None:
        raise unknown_guild()
    body = await _body(request)
    ctype = int(body.get("type") or 0)
    channel = core.state.create_channel(guild, ctype, channel_defaults(str(body["name"]), ctype))
    return json_response(core.state.channel(channel))


@routes.post("/_emu/mark")
async def mark(request: web.Request) -> web.Response:
    return json_response({"mark": _core(request).metrics.mark()})


@routes.get("/_emu/metrics")
async def metrics(request: web.Request) -> web.Response:
    since = request.query.get("since")
    core = _core(request)
    if since is not None and since not in core.metrics.marks:
        raise APIError(404, 0, f"unknown mark {since!r}")
    return json_response(core.metrics.since(since))


@routes.get(r"/_emu/guilds/{guild_id:\d+}/storage")
async def storage(request: web.Request) -> web.Response:
    """What a guild's channels and threads hold, in bytes, as Discord would store it: per
    channel (messages, content bytes in UTF-8, attachments, attachment bytes) and totals;
    `?messages=1` adds every message's sizes and attachment names, oldest first, so a
    benchmark can tell what kind of data takes the room."""
    core = _core(request)
    guild = core.state.store.guilds.get(int(request.match_info["guild_id"]))
    if guild is None:
        raise unknown_guild()
    channels = sorted(
        (c for c in core.state.store.channels.values() if c.guild_id == guild.id),
        key=lambda c: c.id,
    )
    per_message = request.query.get("messages", "") not in ("", "0", "false")
    sizes, messages = core.state.store.stored_bytes(
        [c.id for c in channels], per_message=per_message
    )
    keys = ("messages", "content_bytes", "attachments", "attachment_bytes")
    totals = dict.fromkeys(keys, 0)
    rows = []
    for channel in channels:
        size = sizes[channel.id]
        for key in keys:
            totals[key] += size[key]
        parent = channel.data.get("parent_id")
        rows.append(
            {
                "id": str(channel.id),
                "name": channel.data.get("name"),
                "type": channel.type,
                "parent_id": None if parent is None else str(parent),
                **size,
                "bytes": size["content_bytes"] + size["attachment_bytes"],
            }
        )
    totals["bytes"] = totals["content_bytes"] + totals["attachment_bytes"]
    out: dict[str, Any] = {"guild_id": str(guild.id), "channels": rows, "totals": totals}
    if per_message:
        out["messages"] = messages
    return json_response(out)


@routes.post("/_emu/age")
async def age(request: web.Request) -> web.Response:
    body = await _body(request)
    _core(request).state.age(float(body["seconds"]))
    return json_response({"ok": True})


@routes.post("/_emu/profile")
async def profile(request: web.Request) -> web.Response:
    body = await _body(request)
    try:
        _core(request).limiter.set_profile(str(body["profile"]))
    except ValueError as err:
        raise APIError(400, 0, str(err)) from None
    return json_response({"ok": True})


@routes.post("/_emu/attachment-ttl")
async def attachment_ttl(request: web.Request) -> web.Response:
    body = await _body(request)
    _core(request).state.signer.ttl = float(body["seconds"])
    return json_response({"ok": True})


@routes.post(r"/_emu/channels/{channel_id:\d+}/user-messages")
async def post_as_user(request: web.Request) -> web.Response:
    core = _core(request)
    channel = _channel_of(core, request)
    body = await _body(request)
    user = core.state.human(str(body.get("username") or "someone"))
    guild = core.state.store.guilds[channel.guild_id]
    core.state.join(guild, user)
    msg = core.state.create_message(channel, user, str(body.get("content") or ""), {"type": 0})
    return json_response(core.state.message(msg))


@routes.post(r"/_emu/channels/{channel_id:\d+}/seed")
async def seed(request: web.Request) -> web.Response:
    core = _core(request)
    channel = _channel_of(core, request)
    body = await _body(request)
    contents = [str(c) for c in body.get("contents") or []]
    age_s = float(body.get("age_seconds") or 0.0)
    if body.get("author", "bot") == "user":
        guild = core.state.store.guilds[channel.guild_id]
        author = core.state.store.users[guild.owner_id or _bot_for(core, guild.id).id]
    else:
        author = _bot_for(core, channel.guild_id)
    start = time.time() - age_s
    out = []
    for i, content in enumerate(contents):
        mid = core.state.ids.at(start + i * 0.001) if age_s > 0 else None
        msg = core.state.create_message(
            channel, author, content, {"type": 0}, message_id=mid, dispatch=False
        )
        out.append(core.state.message(msg))
    return json_response(out)


@routes.post("/_emu/faults")
async def faults(request: web.Request) -> web.Response:
    """Set every REST fault at once (a field left out is off) and fire gateway triggers."""
    core = _core(request)
    body = await _body(request)
    f = core.faults
    f.release()  # stalls under the old settings end now
    f.error_rate = float(body.get("error_rate", 0.0))
    f.statuses = tuple(int(s) for s in body.get("statuses", (500, 502, 503)))
    f.latency = float(body.get("latency", 0.0))
    f.storm_429 = float(body.get("storm_429", 0.0))
    f.storm_retry_after = float(body.get("storm_retry_after", 0.05))
    f.drop_before = float(body.get("drop_before", 0.0))
    f.drop_after = float(body.get("drop_after", 0.0))
    f.stall = float(body.get("stall", 0.0))
    f.stall_seconds = float(body.get("stall_seconds", 30.0))
    f.only_routes = tuple(str(r) for r in body.get("only_routes") or ())
    if body.get("seed") is not None:
        f.rng.seed(int(body["seed"]))
    done: dict[str, int] = {}
    if body.get("gateway_disconnect"):
        done["disconnected"] = await core.state.gateway.close_all(4000)
    if body.get("gateway_reconnect"):
        done["reconnect"] = await core.state.gateway.send_op(7, None)
    if body.get("invalid_session"):
        done["invalid_session"] = await core.state.gateway.send_op(
            9, bool(body.get("resumable", False))
        )
    return json_response({"ok": True, **done})


@routes.delete(r"/_emu/channels/{channel_id:\d+}/messages/{message_id:\d+}")
async def admin_delete_message(request: web.Request) -> web.Response:
    """A server admin deletes a message (Discord dispatches MESSAGE_DELETE, as here)."""
    core = _core(request)
    channel = _channel_of(core, request)
    msg = _message_of(core, channel, request)
    core.state.delete_messages(channel, [msg.id])
    return json_response(
        {
            "deleted": "message",
            "id": str(msg.id),
            "channel_id": str(channel.id),
            "guild_id": str(channel.guild_id),
            "content_length": len(msg.content),
            "attachments": [str(a.id) for a in msg.attachments],
        }
    )


@routes.delete(r"/_emu/channels/{channel_id:\d+}")
async def admin_delete_channel(request: web.Request) -> web.Response:
    """A server admin deletes a channel or a thread, with everything in it.

    Discord dispatches CHANNEL_DELETE (THREAD_DELETE for a thread); deleting a channel also
    deletes its threads, and its messages are gone for good.
    """
    core = _core(request)
    channel = _channel_of(core, request)
    store = core.state.store
    threads = [
        c for c in store.channels.values() if c.is_thread and c.data.get("parent_id") == channel.id
    ]
    messages = store.count_messages(channel.id) + sum(store.count_messages(t.id) for t in threads)
    rendered = core.state.delete_channel(channel)
    return json_response(
        {
            "deleted": "thread" if channel.is_thread else "channel",
            "channel": rendered,
            "threads": [str(t.id) for t in threads],
            "messages": messages,
        }
    )


@routes.patch(r"/_emu/channels/{channel_id:\d+}/messages/{message_id:\d+}")
async def alter_message(request: web.Request) -> web.Response:
    """Change a message's content as a person or a bug might, whoever wrote it.

    Body: {"content": str, "silent": bool}. By default it is an edit as Discord shows any
    edit (edited_timestamp, MESSAGE_UPDATE); `silent` leaves neither trace.
    """
    core = _core(request)
    channel = _channel_of(core, request)
    msg = _message_of(core, channel, request)
    body = await _body(request)
    content = body["content"]
    if not isinstance(content, str):
        raise APIError(400, 0, "content must be a string")
    before = msg.content
    core.state.alter_message(channel, msg, content, silent=bool(body.get("silent", False)))
    rendered = core.state.message(msg)
    return json_response(
        {
            "id": str(msg.id),
            "channel_id": str(channel.id),
            "before": before,
            "after": msg.content,
            "edited_timestamp": rendered["edited_timestamp"],
        }
    )


@routes.post(r"/_emu/channels/{channel_id:\d+}/messages/{message_id:\d+}/garble")
async def garble_message(request: web.Request) -> web.Response:
    """Damage the stored bytes of a message's content or of one of its attachments.

    Body: {"target": "content"|"attachment", "attachment": position (default 0), "mode":
    "flip"|"replace"|"truncate", "offset", "count", "mask", "data" (hex, for replace),
    "length" (for truncate), "seed"}. Nothing is dispatched and edited_timestamp stays:
    this is damage Discord itself would not know about. An attachment keeps its id, name
    and URL; its `size` follows its bytes, as Discord reports the size of what it stores.
    Content is garbled as UTF-8 and read back with invalid sequences replaced (U+FFFD).
    """
    core = _core(request)
    channel = _channel_of(core, request)
    msg = _message_of(core, channel, request)
    body = await _body(request)
    target = str(body.get("target", "content"))
    mode = str(body.get("mode", "flip"))
    if mode not in MODES:
        raise APIError(400, 0, f"mode must be one of {MODES}")
    seed = body.get("seed")
    rng = random.Random(int(seed)) if seed is not None else core.faults.rng
    replacement = bytes.fromhex(str(body["data"])) if body.get("data") else None
    options: dict[str, Any] = {
        "mode": mode,
        "offset": None if body.get("offset") is None else int(body["offset"]),
        "count": int(body.get("count", 1)),
        "mask": int(body.get("mask", 1)),
        "replacement": replacement,
        "length": None if body.get("length") is None else int(body["length"]),
    }
    out: dict[str, Any] = {"id": str(msg.id), "channel_id": str(channel.id), "target": target}
    if target == "content":
        before = msg.content.encode()
        damaged = garble(before, rng, **options)
        core.state.alter_message(
            channel, msg, damaged.data.decode("utf-8", errors="replace"), silent=True
        )
        out.update({"content_before": before.decode(), "content_after": msg.content})
    elif target == "attachment":
        position = int(body.get("attachment", 0))
        if not 0 <= position < len(msg.attachments):
            raise APIError(404, 0, f"the message has no attachment at position {position}")
        att = msg.attachments[position]
        stored = core.state.store.attachment_bytes(channel.id, att.id, att.filename)
        before = stored if stored is not None else b""
        damaged = garble(before, rng, **options)
        core.state.store.replace_attachment_bytes(att.id, damaged.data)
        core.state.store.commit()
        out.update({"attachment_id": str(att.id), "filename": att.filename})
    else:
        raise APIError(400, 0, "target must be 'content' or 'attachment'")
    out.update(
        {
            "mode": mode,
            "offsets": damaged.offsets,
            "size_before": len(before),
            "size_after": len(damaged.data),
            "sha256_before": sha256(before),
            "sha256_after": sha256(damaged.data),
        }
    )
    return json_response(out)


@web.middleware
async def control_errors(
    request: web.Request,
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> web.StreamResponse:
    """Control answers are JSON even on mistakes (KeyError for a missing field gives 400)."""
    if not request.path.startswith("/_emu/"):
        resp: web.StreamResponse = await handler(request)
        return resp
    try:
        return await handler(request)
    except APIError as err:
        return err.response()
    except (KeyError, ValueError, TypeError) as err:
        return json_response({"message": f"bad control request: {err!r}", "code": 0}, 400)
