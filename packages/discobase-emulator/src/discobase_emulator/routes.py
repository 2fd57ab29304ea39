"""REST handlers under /api/v10: users, guilds, channels, threads, messages, pins.

Each handler checks access and input the way Discord does, calls `State` (which commits and
dispatches), and answers with Discord's JSON. Rate limits and auth happen in the middleware.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from .core import CORE, Core, user_of
from .errors import (
    APIError,
    form_error,
    json_response,
    missing_access,
    unknown_channel,
    unknown_guild,
    unknown_message,
)
from .models import application_json, guild_json, roles_json, user_json
from .permissions import (
    ATTACH_FILES,
    CREATE_PRIVATE_THREADS,
    CREATE_PUBLIC_THREADS,
    MANAGE_CHANNELS,
    MANAGE_MESSAGES,
    MANAGE_ROLES,
    MANAGE_THREADS,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    VIEW_CHANNEL,
    base_permissions,
    channel_permissions,
    require,
)
from .snowflake import from_ms, iso, parse_iso
from .state import channel_defaults
from .store import Channel, Guild, Message, User
from .validate import (
    SUPPRESS_EMBEDS,
    SUPPRESS_NOTIFICATIONS,
    components_of,
    compose,
    content_of,
    embeds_of,
    int_arg,
    nonce_of,
    read_json,
    read_payload,
    snowflake_arg,
    uploads_of,
)

MAX_CHANNELS = 500
MAX_PER_CATEGORY = 50
MAX_PINS = 250
MAX_ACTIVE_THREADS = 1000
BULK_MAX_AGE = 14 * 24 * 3600
NONCE_WINDOW = 5 * 60
CHANNEL_TYPES = (0, 2, 4, 5, 13, 15)
ARCHIVE_DURATIONS = (60, 1440, 4320, 10080)

routes = web.RouteTableDef()


def _core(request: web.Request) -> Core:
    return request.app[CORE]


def _id(request: web.Request, name: str) -> int:
    return int(request.match_info[name])


def _guild(request: web.Request, user: User) -> Guild:
    guild = _core(request).state.store.guilds.get(_id(request, "guild_id"))
    if guild is None:
        raise unknown_guild()
    if user.id not in guild.members:
        raise missing_access()
    return guild


def _channel(request: web.Request, user: User, needed: int = 0) -> Channel:
    """The channel in the path, if the bot can see it (else 403/50001, as Discord answers for
    a channel one cannot view) and holds the `needed` permissions in it (else 403/50013)."""
    store = _core(request).state.store
    channel = store.channels.get(_id(request, "channel_id"))
    if channel is None:
        raise unknown_channel()
    guild = store.guilds.get(channel.guild_id)
    if guild is None or user.id not in guild.members:
        raise missing_access()
    perms = channel_permissions(store, guild, channel, user.id)
    if not perms & VIEW_CHANNEL:
        raise missing_access()
    require(perms, needed)
    return channel


def _perms(request: web.Request, user: User, channel: Channel) -> int:
    store = _core(request).state.store
    return channel_permissions(store, store.guilds[channel.guild_id], channel, user.id)


def _message(request: web.Request, channel: Channel) -> Message:
    msg = _core(request).state.store.get_message(channel.id, _id(request, "message_id"))
    if msg is None:
        raise unknown_message()
    return msg


def _no_content() -> web.Response:
    return web.Response(status=204)


# --- users, application, gateway -------------------------------------------------------------


@routes.get("/users/@me")
async def get_me(request: web.Request) -> web.Response:
    return json_response(_core(request).state.me(user_of(request)))


@routes.get(r"/users/{user_id:\d+}")
async def get_user(request: web.Request) -> web.Response:
    user = _core(request).state.store.users.get(_id(request, "user_id"))
    if user is None:
        raise APIError(404, 10013, "Unknown User")
    return json_response(user_json(user))


@routes.get("/oauth2/applications/@me")
async def get_application(request: web.Request) -> web.Response:
    return _application(request)


def _application(request: web.Request) -> web.Response:

    state = _core(request).state
    owner = next((u for u in state.store.users.values() if not u.bot), None)
    return json_response(application_json(user_of(request), owner))


@routes.get("/applications/@me")
async def get_application_v2(request: web.Request) -> web.Response:
    return _application(request)


@routes.get("/gateway")
async def get_gateway(request: web.Request) -> web.Response:
    return json_response({"url": _core(request).state.gateway_url})


@routes.get("/gateway/bot")
async def get_gateway_bot(request: web.Request) -> web.Response:
    return json_response(
        {
            "url": _core(request).state.gateway_url,
            "shards": 1,
            "session_start_limit": {
                "total": 1000,
                "remaining": 999,
                "reset_after": 14400000,
                "max_concurrency": 1,
            },
        }
    )


@routes.get("/users/@me/guilds")
async def my_guilds(request: web.Request) -> web.Response:
    user = user_of(request)
    q = request.query
    limit = int_arg(q.get("limit"), "limit", 200, 1, 200)
    before = snowflake_arg(q.get("before"), "before")
    after = snowflake_arg(q.get("after"), "after")
    guilds = sorted(
        (g for g in _core(request).state.store.guilds.values() if user.id in g.members),
        key=lambda g: g.id,
    )
    if before is not None:
        guilds = [g for g in guilds if g.id < before][-limit:]
    else:
        guilds = [g for g in guilds if after is None or g.id > after][:limit]
    counts = q.get("with_counts") in ("true", "1", "True")
    out = []
    for g in guilds:
        item: dict[str, Any] = {
            "id": str(g.id),
            "name": g.name,
            "icon": None,
            "banner": None,
            "owner": g.owner_id == user.id,
            "permissions": str(base_permissions(g, user.id)),
            "features": [],
        }
        if counts:
            item["approximate_member_count"] = len(g.members)
            item["approximate_presence_count"] = 0
        out.append(item)
    return json_response(out)


# --- guilds -----------------------------------------------------------------------------------


@routes.post("/guilds")
async def create_guild(request: web.Request) -> web.Response:
    core = _core(request)
    user = user_of(request)
    if not core.allow_guild_create:
        raise APIError(403, 20001, "Bots cannot use this endpoint")
    body = await read_json(request)
    name = str(body.get("name") or "")
    if not 2 <= len(name) <= 100:
        raise form_error("name", "BASE_TYPE_BAD_LENGTH", "Must be between 2 and 100 in length.")
    guild = core.state.create_guild(name, [user.id], owner_id=user.id)
    return json_response(core.state.guild_create(guild, available=False) | {"members": []})


@routes.get(r"/guilds/{guild_id:\d+}")
async def get_guild(request: web.Request) -> web.Response:
    guild = _guild(request, user_of(request))
    counts = request.query.get("with_counts") in ("true", "1", "True")
    return json_response(guild_json(guild, counts=counts))


@routes.delete(r"/guilds/{guild_id:\d+}")
async def delete_guild(request: web.Request) -> web.Response:
    user = user_of(request)
    guild = _guild(request, user)
    if guild.owner_id != user.id:
        raise missing_access()
    _core(request).state.delete_guild(guild)
    return _no_content()


@routes.get(r"/guilds/{guild_id:\d+}/channels")
async def guild_channels(request: web.Request) -> web.Response:
    guild = _guild(request, user_of(request))
    state = _core(request).state
    chans = [c for c in state.store.channels.values() if c.guild_id == guild.id and not c.is_thread]
    return json_response([state.channel(c) for c in chans])


@routes.get(r"/guilds/{guild_id:\d+}/threads/active")
async def active_threads(request: web.Request) -> web.Response:
    guild = _guild(request, user_of(request))
    state = _core(request).state
    threads = [
        state.channel(c)
        for c in state.store.channels.values()
        if c.guild_id == guild.id and c.is_thread and not c.data["thread_metadata"]["archived"]
    ]
    return json_response({"threads": threads, "members": []})


@routes.get(r"/guilds/{guild_id:\d+}/roles")
async def list_roles(request: web.Request) -> web.Response:
    """The guild's roles, @everyone first (they change through the control API only)."""
    return json_response(roles_json(_guild(request, user_of(request))))


@routes.get(r"/guilds/{guild_id:\d+}/members/{user_id:\d+}")
async def get_member(request: web.Request) -> web.Response:
    guild = _guild(request, user_of(request))
    uid = _id(request, "user_id")
    if uid not in guild.members:
        raise APIError(404, 10007, "Unknown Member")
    return json_response(_core(request).state.member(guild, uid))


@routes.get(r"/guilds/{guild_id:\d+}/members")
async def list_members(request: web.Request) -> web.Response:
    guild = _guild(request, user_of(request))
    limit = int_arg(request.query.get("limit"), "limit", 1, 1, 1000)
    after = snowflake_arg(request.query.get("after"), "after") or 0
    ids = sorted(u for u in guild.members if u > after)[:limit]
    state = _core(request).state
    return json_response([state.member(guild, u) for u in ids])


def _overwrites(raw: Any, field: str = "permission_overwrites") -> list[dict[str, Any]]:
    """Discord's overwrite list: ids and types required (0 role, 1 member), bitfields as
    strings; a later entry for the same id replaces an earlier one."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise form_error(field, "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
    out: dict[str, dict[str, Any]] = {}
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or "id" not in item:
            raise form_error(f"{field}.{i}.id", "BASE_TYPE_REQUIRED", "This field is required")
        if item.get("type") is None:
            raise form_error(f"{field}.{i}.type", "BASE_TYPE_REQUIRED", "This field is required")
        if item["type"] not in (0, 1, "0", "1"):
            raise form_error(
                f"{field}.{i}.type", "BASE_TYPE_CHOICES", "Value must be one of (0, 1)."
            )
        oid = str(snowflake_arg(str(item["id"]), f"{field}.{i}.id"))
        out[oid] = {
            "id": oid,
            "type": int(item["type"]),
            "allow": str(int(item.get("allow") or 0)),
            "deny": str(int(item.get("deny") or 0)),
        }
    return list(out.values())


def _no_overwrites_on_threads(channel: Channel) -> None:
    """Threads take their parent's permissions: Discord refuses overwrites on them."""
    if channel.is_thread:
        raise APIError(400, 50024, "Cannot execute action on this channel type")


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise form_error("name", "BASE_TYPE_REQUIRED", "This field is required")
    if len(name) > 100:
        raise form_error("name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
    return name


def _normalise_name(name: str, ctype: int) -> str:
    if ctype in (0, 5, 15):
        return "-".join(name.strip().lower().split())
    return name.strip()


def _check_topic(topic: Any) -> str | None:
    if topic is None:
        return None
    text = str(topic)
    if len(text) > 1024:
        raise form_error("topic", "BASE_TYPE_BAD_LENGTH", "Must be between 0 and 1024 in length.")
    return text


def _check_parent(core: Core, guild_id: int, parent: Any, ctype: int) -> int | None:
    if parent is None:
        return None
    pid = snowflake_arg(str(parent), "parent_id")
    cat = core.state.store.channels.get(pid or 0)
    if cat is None or cat.guild_id != guild_id or cat.type != 4 or ctype == 4:
        raise form_error("parent_id", "CHANNEL_PARENT_INVALID_TYPE", "Not a category")
    children = sum(1 for c in core.state.store.channels.values() if c.data.get("parent_id") == pid)
    if children >= MAX_PER_CATEGORY:
        raise form_error(
            "parent_id",
            "CHANNEL_PARENT_MAX_CHANNELS",
            f"Category has reached its maximum of {MAX_PER_CATEGORY} channels",
        )
    return pid


@routes.post(r"/guilds/{guild_id:\d+}/channels")
async def create_channel(request: web.Request) -> web.Response:
    core = _core(request)
    user = user_of(request)
    guild = _guild(request, user)
    require(base_permissions(guild, user.id), MANAGE_CHANNELS)
    body = await read_json(request)
    ctype = body.get("type") or 0
    if ctype not in CHANNEL_TYPES:
        raise form_error("type", "BASE_TYPE_CHOICES", f"Value must be one of {CHANNEL_TYPES}.")
    name = _normalise_name(_check_name(body.get("name")), ctype)
    count = sum(
        1 for c in core.state.store.channels.values() if c.guild_id == guild.id and not c.is_thread
    )
    if count >= MAX_CHANNELS:
        raise APIError(400, 30013, f"Maximum number of guild channels reached ({MAX_CHANNELS})")
    data = channel_defaults(name, ctype)
    data["parent_id"] = _check_parent(core, guild.id, body.get("parent_id"), ctype)
    data["permission_overwrites"] = _overwrites(body.get("permission_overwrites"))
    if ctype in (0, 5):
        data["topic"] = _check_topic(body.get("topic"))
    data["nsfw"] = bool(body.get("nsfw", False))
    data["rate_limit_per_user"] = int(body.get("rate_limit_per_user") or 0)
    data["position"] = body.get("position")
    channel = core.state.create_channel(guild, ctype, data)
    return json_response(core.state.channel(channel), 201)


# --- channels ---------------------------------------------------------------------------------


@routes.get(r"/channels/{channel_id:\d+}")
async def get_channel(request: web.Request) -> web.Response:
    channel = _channel(request, user_of(request))
    return json_response(_core(request).state.channel(channel))


@routes.patch(r"/channels/{channel_id:\d+}")
async def edit_channel(request: web.Request) -> web.Response:
    core = _core(request)
    user = user_of(request)
    channel = _channel(request, user)
    body = await read_json(request)
    _may_manage(request, user, channel)
    if "permission_overwrites" in body:
        require(_perms(request, user, channel), MANAGE_ROLES)
    d = channel.data
    if "name" in body:
        d["name"] = _normalise_name(_check_name(body["name"]), channel.type)
    if channel.is_thread:
        meta = d["thread_metadata"]
        for key in ("archived", "locked", "invitable"):
            if key in body and body[key] is not None:
                if key == "archived" and bool(body[key]) != meta["archived"]:
                    meta["archive_timestamp"] = iso(int(time.time() * 1000))
                meta[key] = bool(body[key])
        if body.get("auto_archive_duration") is not None:
            if body["auto_archive_duration"] not in ARCHIVE_DURATIONS:
                raise form_error("auto_archive_duration", "BASE_TYPE_CHOICES", "Invalid duration")
            meta["auto_archive_duration"] = body["auto_archive_duration"]
    else:
        if "topic" in body and channel.type in (0, 5):
            d["topic"] = _check_topic(body["topic"])
        if "parent_id" in body:
            d["parent_id"] = _check_parent(core, channel.guild_id, body["parent_id"], channel.type)
        if "permission_overwrites" in body:  # replaces the whole list, as on Discord
            d["permission_overwrites"] = _overwrites(body["permission_overwrites"])
        if body.get("position") is not None:
            d["position"] = int(body["position"])
        if "nsfw" in body:
            d["nsfw"] = bool(body["nsfw"])
        if body.get("type") in (0, 5) and channel.type in (0, 5):
            channel.type = int(body["type"])
    if "rate_limit_per_user" in body:
        d["rate_limit_per_user"] = int(body["rate_limit_per_user"] or 0)
    core.state.update_channel(channel)
    return json_response(core.state.channel(channel))


def _may_manage(request: web.Request, user: User, channel: Channel) -> None:
    """Manage Channels for a channel; for a thread, Manage Threads unless the bot made it."""
    perms = _perms(request, user, channel)
    if channel.is_thread:
        if channel.data.get("owner_id") != user.id:
            require(perms, MANAGE_THREADS)
    else:
        require(perms, MANAGE_CHANNELS)


@routes.delete(r"/channels/{channel_id:\d+}")
async def delete_channel(request: web.Request) -> web.Response:
    user = user_of(request)
    channel = _channel(request, user)
    _may_manage(request, user, channel)
    return json_response(_core(request).state.delete_channel(channel))


@routes.put(r"/channels/{channel_id:\d+}/permissions/{overwrite_id:\d+}")
async def put_overwrite(request: web.Request) -> web.Response:
    """Create or replace one overwrite: 204, CHANNEL_UPDATE dispatched."""
    channel = _channel(request, user_of(request), MANAGE_ROLES)
    _no_overwrites_on_threads(channel)
    body = await read_json(request)
    oid = request.match_info["overwrite_id"]
    item = _overwrites([{**body, "id": oid}])[0]
    rest = [o for o in channel.data.get("permission_overwrites", []) if o["id"] != oid]
    channel.data["permission_overwrites"] = [*rest, item]
    _core(request).state.update_channel(channel)
    return _no_content()


@routes.delete(r"/channels/{channel_id:\d+}/permissions/{overwrite_id:\d+}")
async def delete_overwrite(request: web.Request) -> web.Response:
    """Remove one overwrite: 204 and CHANNEL_UPDATE; 404/10009 when there is none."""
    channel = _channel(request, user_of(request), MANAGE_ROLES)
    _no_overwrites_on_threads(channel)
    oid = request.match_info["overwrite_id"]
    current = channel.data.get("permission_overwrites", [])
    if not any(o["id"] == oid for o in current):
        raise APIError(404, 10009, "Unknown Overwrite")
    channel.data["permission_overwrites"] = [o for o in current if o["id"] != oid]
    _core(request).state.update_channel(channel)
    return _no_content()


@routes.post(r"/channels/{channel_id:\d+}/typing")
async def typing(request: web.Request) -> web.Response:
    _channel(request, user_of(request))
    return _no_content()


# --- threads ----------------------------------------------------------------------------------


@routes.get(r"/channels/{channel_id:\d+}/threads/archived/public")
async def archived_public_threads(request: web.Request) -> web.Response:
    """A channel's archived public threads, newest archived first (Discord pages them by
    `before`, an archive timestamp; `limit` 2..100)."""
    user = user_of(request)
    parent = _channel(request, user)
    require(_perms(request, user, parent), READ_MESSAGE_HISTORY)
    state = _core(request).state
    limit = int(request.query.get("limit", "50"))
    if not 2 <= limit <= 100:
        raise form_error("limit", "NUMBER_TYPE_MIN", "Value must be between 2 and 100.")
    before = request.query.get("before")
    archived = sorted(
        (
            c
            for c in state.store.channels.values()
            if c.is_thread
            and c.type == 11
            and c.data.get("parent_id") == parent.id
            and c.data["thread_metadata"]["archived"]
            and (before is None or c.data["thread_metadata"]["archive_timestamp"] < before)
        ),
        key=lambda c: str(c.data["thread_metadata"]["archive_timestamp"]),
        reverse=True,
    )
    page = archived[:limit]
    return json_response(
        {
            "threads": [state.channel(c) for c in page],
            "members": [],
            "has_more": len(archived) > limit,
        }
    )


def _thread_args(core: Core, parent: Channel, body: dict[str, Any]) -> tuple[str, int]:
    if parent.type not in (0, 5) or parent.is_thread:
        raise APIError(400, 50024, "Cannot execute action on this channel type")
    name = _check_name(body.get("name"))
    auto = body.get("auto_archive_duration") or 4320
    if auto not in ARCHIVE_DURATIONS:
        raise form_error(
            "auto_archive_duration",
            "BASE_TYPE_CHOICES",
            "Value must be one of (60, 1440, 4320, 10080).",
        )
    active = sum(
        1
        for c in core.state.store.channels.values()
        if c.guild_id == parent.guild_id
        and c.is_thread
        and not c.data["thread_metadata"]["archived"]
    )
    if active >= MAX_ACTIVE_THREADS:
        raise APIError(400, 160006, "Maximum number of active threads reached")
    return name, auto


@routes.post(r"/channels/{channel_id:\d+}/threads")
async def start_thread(request: web.Request) -> web.Response:
    core = _core(request)
    user = user_of(request)
    parent = _channel(request, user)
    body = await read_json(request)
    name, auto = _thread_args(core, parent, body)
    ttype = body.get("type")
    if ttype is None:
        raise form_error("type", "BASE_TYPE_REQUIRED", "This field is required")
    if ttype not in (10, 11, 12):
        raise form_error("type", "BASE_TYPE_CHOICES", "Value must be one of (10, 11, 12).")
    needed = CREATE_PRIVATE_THREADS if ttype == 12 else CREATE_PUBLIC_THREADS
    require(_perms(request, user, parent), needed)
    thread = core.state.create_thread(parent, user, name, int(ttype), auto)
    core.state.create_message(
        parent,
        user,
        name,
        {
            "type": 18,
            "message_reference": {"channel_id": str(thread.id), "guild_id": str(parent.guild_id)},
        },
    )
    return json_response(core.state.channel(thread), 201)


@routes.post(r"/channels/{channel_id:\d+}/messages/{message_id:\d+}/threads")
async def start_thread_from_message(request: web.Request) -> web.Response:
    core = _core(request)
    user = user_of(request)
    parent = _channel(request, user)
    msg = _message(request, parent)
    require(_perms(request, user, parent), CREATE_PUBLIC_THREADS | READ_MESSAGE_HISTORY)
    body = await read_json(request)
    name, auto = _thread_args(core, parent, body)
    if msg.id in core.state.store.channels or "thread_id" in msg.extra:
        raise APIError(400, 160004, "A thread has already been created for this message")
    thread = core.state.create_thread(parent, user, name, 11, auto, thread_id=msg.id)
    msg.extra["thread_id"] = thread.id
    core.state.store.update_message(msg)
    core.state.store.commit()
    return json_response(core.state.channel(thread), 201)


@routes.put(r"/channels/{channel_id:\d+}/thread-members/@me")
async def join_thread(request: web.Request) -> web.Response:
    return _thread_member(request)


def _thread_member(request: web.Request) -> web.Response:
    channel = _channel(request, user_of(request))
    if not channel.is_thread:
        raise APIError(400, 50024, "Cannot execute action on this channel type")
    return _no_content()


@routes.delete(r"/channels/{channel_id:\d+}/thread-members/@me")
async def leave_thread(request: web.Request) -> web.Response:
    return _thread_member(request)


# --- messages ---------------------------------------------------------------------------------


@routes.get(r"/channels/{channel_id:\d+}/messages")
async def history(request: web.Request) -> web.Response:
    core = _core(request)
    user = user_of(request)
    channel = _channel(request, user)
    q = request.query
    limit = int_arg(q.get("limit"), "limit", 50, 1, 100)
    around = snowflake_arg(q.get("around"), "around")
    before = snowflake_arg(q.get("before"), "before")
    after = snowflake_arg(q.get("after"), "after")
    if around is not None:
        before = after = None
    elif before is not None:
        after = None
    if not _perms(request, user, channel) & READ_MESSAGE_HISTORY:
        return json_response([])  # Discord returns no messages rather than an error
    msgs = core.state.store.history(channel.id, limit, before=before, after=after, around=around)
    return json_response([core.state.message(m) for m in msgs])


@routes.post(r"/channels/{channel_id:\d+}/messages")
async def create_message(request: web.Request) -> web.Response:
    core = _core(request)
    user = user_of(request)
    channel = _channel(request, user)
    if channel.type == 4:
        raise APIError(400, 50008, "Cannot send messages in a non-text channel")
    payload, files = await read_payload(request)
    nonce = nonce_of(payload)
    parts = compose(payload, files, SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS)
    perms = _perms(request, user, channel)
    require(perms, SEND_MESSAGES_IN_THREADS if channel.is_thread else SEND_MESSAGES)
    if parts.uploads:
        require(perms, ATTACH_FILES)
    content, embeds, uploads, components = (
        parts.content,
        parts.embeds,
        parts.uploads,
        parts.components,
    )
    if channel.is_thread and channel.data["thread_metadata"].get("locked"):
        raise APIError(400, 50083, "Operation was performed on an archived thread")
    if nonce is not None and payload.get("enforce_nonce"):
        since = from_ms(int((time.time() - NONCE_WINDOW) * 1000))
        existing = core.state.store.find_nonce(user.id, nonce, since)
        if existing is not None:
            return json_response(core.state.message(existing) | {"nonce": nonce})
    extra: dict[str, Any] = {"type": 0}
    if embeds:
        extra["embeds"] = embeds
    if components:
        extra["components"] = components
    if payload.get("tts"):
        extra["tts"] = payload.get("tts") in (True, "true", "True")
    if parts.flags:
        extra["flags"] = parts.flags
    ref = payload.get("message_reference")
    if isinstance(ref, dict) and ref.get("message_id") is not None:
        ref_channel = snowflake_arg(
            str(ref.get("channel_id") or channel.id), "message_reference.channel_id"
        )
        ref_id = snowflake_arg(str(ref["message_id"]), "message_reference.message_id") or 0
        target = core.state.store.get_message(ref_channel or channel.id, ref_id)
        if target is None:
            if ref.get("fail_if_not_exists", True):
                raise form_error(
                    "message_reference",
                    "MESSAGE_REFERENCE_UNKNOWN_MESSAGE",
                    "Unknown message",
                )
        else:
            extra["type"] = 19
            extra["message_reference"] = {
                "type": 0,
                "message_id": str(target.id),
                "channel_id": str(target.channel_id),
                "guild_id": str(channel.guild_id),
            }
    msg = core.state.create_message(channel, user, content, extra, uploads, nonce)
    out = core.state.message(msg)
    if nonce is not None:
        out["nonce"] = payload.get("nonce")
    return json_response(out)


@routes.get(r"/channels/{channel_id:\d+}/messages/{message_id:\d+}")
async def get_message(request: web.Request) -> web.Response:
    core = _core(request)
    channel = _channel(request, user_of(request), READ_MESSAGE_HISTORY)
    return json_response(core.state.message(_message(request, channel)))


@routes.patch(r"/channels/{channel_id:\d+}/messages/{message_id:\d+}")
async def edit_message(request: web.Request) -> web.Response:
    core = _core(request)
    user = user_of(request)
    channel = _channel(request, user)
    msg = _message(request, channel)
    payload, files = await read_payload(request)
    if channel.is_thread and channel.data["thread_metadata"]["archived"]:
        raise APIError(400, 50083, "Operation was performed on an archived thread")
    changes: dict[str, Any] = {}
    if "content" in payload:
        changes["content"] = content_of(payload) or ""
    if "embeds" in payload or "embed" in payload:
        changes["embeds"] = embeds_of(payload) or []
    if "components" in payload:
        changes["components"] = components_of(payload) or []
    if msg.author_id != user.id and (changes or files or "attachments" in payload):
        raise APIError(403, 50005, "Cannot edit a message authored by another user")
    if "flags" in payload and payload["flags"] is not None:
        changes["flags"] = int(payload["flags"]) & (1 << 2)
    keep: list[int] | None = None
    if "attachments" in payload and payload["attachments"] is not None:
        existing = {a.id for a in msg.attachments}
        keep = []
        for item in payload["attachments"]:
            if isinstance(item, dict) and str(item.get("id", "")).isdigit():
                aid = int(item["id"])
                if aid in existing:
                    keep.append(aid)
    uploads = uploads_of(payload, files)
    kept = len(msg.attachments) if keep is None else len(keep)
    if kept + len(uploads) > 10:
        raise APIError(400, 30015, "Maximum number of attachments in a message reached (10)")
    content_after = changes.get("content", msg.content)
    embeds_after = changes.get("embeds", msg.extra.get("embeds"))
    comps_after = changes.get("components", msg.extra.get("components"))
    if not content_after and not embeds_after and not comps_after and kept + len(uploads) == 0:
        raise APIError(400, 50006, "Cannot send an empty message")
    msg = core.state.edit_message(channel, msg, changes, keep, uploads)
    return json_response(core.state.message(msg))


@routes.delete(r"/channels/{channel_id:\d+}/messages/{message_id:\d+}")
async def delete_message(request: web.Request) -> web.Response:
    core = _core(request)
    user = user_of(request)
    channel = _channel(request, user)
    msg = _message(request, channel)
    if msg.author_id != user.id:
        require(_perms(request, user, channel), MANAGE_MESSAGES)
    core.state.delete_messages(channel, [msg.id])
    return _no_content()


@routes.post(r"/channels/{channel_id:\d+}/messages/bulk-delete")
async def bulk_delete(request: web.Request) -> web.Response:
    core = _core(request)
    channel = _channel(request, user_of(request), MANAGE_MESSAGES)
    body = await read_json(request)
    raw = body.get("messages")
    if raw is None:
        raise form_error("messages", "BASE_TYPE_REQUIRED", "This field is required")
    if not isinstance(raw, list):
        raise form_error(
            "messages", "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType"
        )
    if len(raw) < 2:
        raise form_error("messages", "BASE_TYPE_MIN_LENGTH", "Must be 2 or more in length.")
    if len(raw) > 100:
        raise form_error("messages", "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
    ids = [snowflake_arg(str(x), "messages") or 0 for x in raw]
    if len(set(ids)) != len(ids):
        raise form_error("messages", "SET_TYPE_ALREADY_CONTAINS_VALUE", "Duplicate message IDs.")
    now = time.time()
    if any(core.state.store.age_seconds(i, now) > BULK_MAX_AGE for i in ids):
        raise APIError(400, 50034, "You can only bulk delete messages that are under 14 days old.")
    found = core.state.store.existing_ids(channel.id, ids)
    core.state.delete_messages(channel, sorted(found) if len(found) != 1 else found)
    return _no_content()


# --- pins -------------------------------------------------------------------------------------


async def _pin(request: web.Request, pinned: bool) -> web.Response:
    core = _core(request)
    user = user_of(request)
    channel = _channel(request, user, MANAGE_MESSAGES)
    msg = _message(request, channel)
    if pinned and msg.pinned_ms is None and core.state.store.count_pins(channel.id) >= MAX_PINS:
        raise APIError(400, 30003, f"Maximum number of pins reached ({MAX_PINS})")
    if msg.extra.get("type", 0) not in (0, 19):
        raise APIError(400, 50021, "Cannot execute action on a system message")
    core.state.set_pinned(channel, msg, user, pinned)
    return _no_content()


@routes.put(r"/channels/{channel_id:\d+}/messages/pins/{message_id:\d+}")
async def pin(request: web.Request) -> web.Response:
    return await _pin(request, True)


@routes.delete(r"/channels/{channel_id:\d+}/messages/pins/{message_id:\d+}")
async def unpin(request: web.Request) -> web.Response:
    return await _pin(request, False)


@routes.put(r"/channels/{channel_id:\d+}/pins/{message_id:\d+}")
async def pin_legacy(request: web.Request) -> web.Response:
    return await _pin(request, True)


@routes.delete(r"/channels/{channel_id:\d+}/pins/{message_id:\d+}")
async def unpin_legacy(request: web.Request) -> web.Response:
    return await _pin(request, False)


@routes.get(r"/channels/{channel_id:\d+}/messages/pins")
async def list_pins(request: web.Request) -> web.Response:
    core = _core(request)
    channel = _channel(request, user_of(request))
    limit = int_arg(request.query.get("limit"), "limit", 50, 1, 50)
    before_raw = request.query.get("before")
    pins = core.state.store.pinned(channel.id)
    if before_raw:
        try:
            cutoff = int(parse_iso(before_raw) * 1000)
        except ValueError:
            raise form_error("before", "DATE_TYPE_CONVERT", "Could not parse date.") from None
        pins = [m for m in pins if (m.pinned_ms or 0) < cutoff]
    page = pins[:limit]
    return json_response(
        {
            "items": [
                {"pinned_at": iso(m.pinned_ms or 0), "message": core.state.message(m)} for m in page
            ],
            "has_more": len(pins) > limit,
        }
    )


@routes.get(r"/channels/{channel_id:\d+}/pins")
async def list_pins_legacy(request: web.Request) -> web.Response:
    core = _core(request)
    channel = _channel(request, user_of(request))
    return json_response([core.state.message(m) for m in core.state.store.pinned(channel.id)[:50]])
