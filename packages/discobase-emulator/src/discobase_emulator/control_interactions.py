"""Control API for what people do in the Discord client: run a slash command, click a button,
submit a modal; and for the roles that decide what they (and the bot) may do.

`POST /_emu/interactions` plays a member: it builds the INTERACTION_CREATE Discord would send
(the member's roles and `permissions` in the channel, the bot's `app_permissions`, options
typed by the registered command, `resolved` users, members, roles and channels) and dispatches
it to the bot. It refuses what the client would not let a person do: an unregistered command,
a command whose `default_member_permissions` the member lacks, a button that is not on the
message or is disabled, a modal the bot never opened. `GET /_emu/interactions/{id}` shows
what the bot answered, so a test can check it, and click a button of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Any

from aiohttp import web

from .commands import (
    CHAT_INPUT,
    MESSAGE_COMMAND,
    SUB_COMMAND,
    SUB_COMMAND_GROUP,
    USER_COMMAND,
    find_command,
)
from .core import CORE, Core
from .errors import APIError, json_response, unknown_channel, unknown_guild
from .interaction_state import (
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    MESSAGE_COMPONENT,
    MODAL_SUBMIT,
    Interaction,
)
from .interactions import find_message, render
from .models import channel_json, partial_member_json, role_json, user_json
from .permissions import (
    USE_APPLICATION_COMMANDS,
    VIEW_CHANNEL,
    base_permissions,
    channel_permissions,
)
from .store import Channel, Guild, Message, User

routes = web.RouteTableDef()

MiB = 1024 * 1024
SELECTS = (3, 5, 6, 7, 8)
TEXT_INPUT = 4
LABEL = 18


def _core(request: web.Request) -> Core:
    return request.app[CORE]


def refused(message: str) -> APIError:
    """The client would not let the member do this; nothing is dispatched."""
    return APIError(400, 0, message)


async def _body(request: web.Request) -> dict[str, Any]:
    data = await request.json() if request.can_read_body else {}
    if not isinstance(data, dict):
        raise APIError(400, 0, "expected a JSON object")
    return data


def _guild(core: Core, raw: Any) -> Guild:
    guild = core.state.store.guilds.get(int(raw))
    if guild is None:
        raise unknown_guild()
    return guild


def _bot_of(core: Core, guild: Guild, token: Any) -> User:
    """The bot the interaction goes to: the one with `token`, else the guild's first bot."""
    if token is not None:
        user = core.state.store.tokens.get(str(token))
        if user is None or user.id not in guild.members:
            raise APIError(400, 0, "that token's bot is not in the guild")
        return user
    for uid in guild.members:
        user = core.state.store.users[uid]
        if user.bot:
            return user
    raise APIError(400, 0, "no bot is a member of this guild")


def _member_with_permissions(
    core: Core, guild: Guild, channel: Channel, uid: int
) -> dict[str, Any]:
    return {
        **partial_member_json(guild, uid),
        "nick": None,
        "avatar": None,
        "pending": False,
        "permissions": str(channel_permissions(core.state.store, guild, channel, uid)),
    }


# --- options -----------------------------------------------------------------------------------


def _option_value(
    core: Core,
    guild: Guild,
    channel: Channel,
    spec: dict[str, Any],
    value: Any,
    resolved: dict[str, dict[str, Any]],
) -> Any:
    """A value as Discord sends it for the option's type, with `resolved` entries added."""
    otype = spec["type"]
    name = spec["name"]
    try:
        if otype == 3:
            out: Any = str(value)
        elif otype == 4:
            out = int(value)
        elif otype == 5:
            if not isinstance(value, bool):
                raise ValueError(value)
            out = value
        elif otype == 10:
            out = float(value)
        elif otype in (6, 7, 8, 9):
            out = str(int(value))
        else:
            raise refused(f"option {name!r}: type {otype} cannot be given here")
    except (TypeError, ValueError):
        raise refused(f"option {name!r}: {value!r} does not fit type {otype}") from None
    choices = spec.get("choices")
    if choices and out not in [c["value"] for c in choices]:
        raise refused(f"option {name!r}: {value!r} is not one of its choices")
    if otype in (6, 9) and int(out) in core.state.store.users:
        uid = int(out)
        resolved.setdefault("users", {})[out] = user_json(core.state.store.users[uid])
        if uid in guild.members:
            resolved.setdefault("members", {})[out] = _member_with_permissions(
                core, guild, channel, uid
            )
    elif otype in (8, 9) and int(out) in guild.roles:
        resolved.setdefault("roles", {})[out] = role_json(guild.roles[int(out)])
    elif otype == 7:
        target = core.state.store.channels.get(int(out))
        if target is None or target.guild_id != guild.id:
            raise refused(f"option {name!r}: no channel {out} in this guild")
        rendered = channel_json(core.state.store, target)
        rendered["permissions"] = str(
            channel_permissions(core.state.store, guild, target, guild.owner_id or 0)
        )
        resolved.setdefault("channels", {})[out] = rendered
    elif otype in (6, 8, 9):
        raise refused(f"option {name!r}: nothing with id {out} in this guild")
    return out


def _options(
    core: Core,
    guild: Guild,
    channel: Channel,
    specs: list[dict[str, Any]],
    path: list[str],
    given: dict[str, Any],
    resolved: dict[str, dict[str, Any]],
    focused: str | None = None,
) -> list[dict[str, Any]]:
    """The interaction's `options`: subcommands nest by `path`, values follow their specs.

    With `focused` (an autocomplete) required options may still be missing and the focused
    one is sent as typed so far: a string, marked `focused`.
    """
    if path:
        spec = next((s for s in specs if s["name"] == path[0]), None)
        if spec is None or spec["type"] not in (SUB_COMMAND, SUB_COMMAND_GROUP):
            raise refused(f"no subcommand {path[0]!r}")
        inner = _options(
            core, guild, channel, spec.get("options", []), path[1:], given, resolved, focused
        )
        return [{"type": spec["type"], "name": spec["name"], "options": inner}]
    if any(s["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP) for s in specs):
        raise refused("this command needs a subcommand")
    by_name = {s["name"]: s for s in specs}
    unknown = set(given) - set(by_name)
    if unknown:
        raise refused(f"the command has no option {sorted(unknown)[0]!r}")
    if focused is not None and not by_name.get(focused, {}).get("autocomplete"):
        raise refused(f"option {focused!r} has no autocomplete")
    out = []
    for spec in specs:
        name = spec["name"]
        if name == focused:
            typed = str(given.get(name, ""))
            out.append({"type": spec["type"], "name": name, "value": typed, "focused": True})
            continue
        if name not in given:
            if spec.get("required") and focused is None:
                raise refused(f"option {name!r} is required")
            continue
        value = _option_value(core, guild, channel, spec, given[name], resolved)
        out.append({"type": spec["type"], "name": name, "value": value})
    return out


# --- the three kinds of interaction ------------------------------------------------------------


def _command_data(
    core: Core,
    guild: Guild,
    channel: Channel,
    bot: User,
    uid: int,
    body: dict[str, Any],
    focused: str | None = None,
) -> dict[str, Any]:
    """The `data` of a command (or autocomplete) interaction, refused as the client would."""
    ctype = int(body.get("command_type") or CHAT_INPUT)
    if ctype not in (CHAT_INPUT, USER_COMMAND, MESSAGE_COMMAND):
        raise APIError(400, 0, "command_type must be 1 (slash), 2 (user) or 3 (message)")
    name = str(body["command"])
    words = name.split() if ctype == CHAT_INPUT else [name]
    if not words:
        raise refused("command is empty")
    cmd = find_command(core, bot.id, guild.id, words[0], ctype)
    if cmd is None:
        raise refused(f"no command {words[0]!r} of type {ctype} is registered for this guild")
    perms = channel_permissions(core.state.store, guild, channel, uid)
    if not perms & USE_APPLICATION_COMMANDS:
        raise refused("the member may not use application commands in this channel")
    needed = cmd.data.get("default_member_permissions")
    if needed is not None and (perms & int(needed)) != int(needed):
        raise refused(
            f"the member lacks the command's default_member_permissions ({needed}): "
            "Discord does not show it to them"
        )
    resolved: dict[str, dict[str, Any]] = {}
    data: dict[str, Any] = {"id": str(cmd.id), "name": cmd.data["name"], "type": ctype}
    if ctype == CHAT_INPUT:
        given = body.get("options") or {}
        if not isinstance(given, dict):
            raise APIError(400, 0, "options must be an object of option name to value")
        data["options"] = _options(
            core, guild, channel, cmd.data.get("options", []), words[1:], given, resolved, focused
        )
    else:
        data["target_id"] = _target(core, guild, channel, ctype, body.get("target_id"), resolved)
    if cmd.guild_id is not None:
        data["guild_id"] = str(cmd.guild_id)
    if resolved:
        data["resolved"] = resolved
    return data


def _target(
    core: Core,
    guild: Guild,
    channel: Channel,
    ctype: int,
    raw: Any,
    resolved: dict[str, dict[str, Any]],
) -> str:
    """A context-menu command's target (a member, or a message in the channel), resolved."""
    if raw is None:
        raise refused("a user or message command needs `target_id`")
    target = str(int(raw))
    if ctype == USER_COMMAND:
        _option_value(core, guild, channel, {"type": 6, "name": "target"}, target, resolved)
        return target
    msg = find_message(core, channel.id, int(target))
    if msg is None:
        raise refused(f"no message {target} in the channel")
    resolved["messages"] = {target: {**core.state.message(msg), "guild_id": str(guild.id)}}
    return target


def _component(msg: Message, custom_id: str) -> dict[str, Any] | None:
    for row in msg.extra.get("components", []):
        for child in row.get("components", []) if isinstance(row, dict) else []:
            if isinstance(child, dict) and child.get("custom_id") == custom_id:
                return child
    return None


def _component_data(msg: Message, body: dict[str, Any]) -> dict[str, Any]:
    custom_id = str(body["custom_id"])
    component = _component(msg, custom_id)
    if component is None:
        raise refused(f"the message has no component {custom_id!r}")
    if component.get("disabled"):
        raise refused(f"component {custom_id!r} is disabled")
    ctype = int(component.get("type", 2))
    data: dict[str, Any] = {"custom_id": custom_id, "component_type": ctype}
    if ctype in SELECTS:
        values = body.get("values")
        if not isinstance(values, list):
            raise refused("a select needs `values`")
        low, high = int(component.get("min_values", 1)), int(component.get("max_values", 1))
        if not low <= len(values) <= high:
            raise refused(f"a select of {low} to {high} values was given {len(values)}")
        if ctype == 3:
            allowed = {o.get("value") for o in component.get("options", [])}
            if any(v not in allowed for v in values):
                raise refused("a value is not one of the select's options")
        data["values"] = [str(v) for v in values]
    return data


def _modal_components(modal: dict[str, Any], fields: dict[str, Any]) -> list[dict[str, Any]]:
    """The submitted components, mirroring the modal's layout (rows or labels)."""

    def fill(item: dict[str, Any]) -> dict[str, Any]:
        custom_id = item.get("custom_id")
        value = fields.get(str(custom_id))
        required = item.get("required", True)
        if value is None:
            if required:
                raise refused(f"text input {custom_id!r} is required")
            value = ""
        value = str(value)
        low, high = int(item.get("min_length") or 0), int(item.get("max_length") or 4000)
        if value and not low <= len(value) <= high:
            raise refused(f"text input {custom_id!r} takes {low} to {high} characters")
        return {"type": TEXT_INPUT, "custom_id": custom_id, "value": value}

    out: list[dict[str, Any]] = []
    for top in modal.get("components", []):
        if top.get("type") == 1:
            children = [fill(c) for c in top.get("components", []) if c.get("type") == TEXT_INPUT]
            out.append({"type": 1, "components": children})
        elif top.get("type") == LABEL and (top.get("component") or {}).get("type") == TEXT_INPUT:
            out.append({"type": LABEL, "component": fill(top["component"])})
    return out


def _ephemeral_owner(core: Core, message: Message) -> int | None:
    """The only member who sees an ephemeral message (None for a channel message)."""
    for inter in core.state.interactions.by_id.values():
        if message.id in inter.ephemeral:
            return inter.user_id
    return None


# --- endpoints ---------------------------------------------------------------------------------


@routes.post("/_emu/interactions")
async def dispatch(request: web.Request) -> web.Response:
    """Body: {guild_id, channel_id, user_id?, token?, type: "command"|"autocomplete"|
    "component"|"modal", command?, command_type?, target_id?, options?, focused?,
    message_id?, custom_id?, values?, fields?}.
    Answer: {id, token, application_id, type, payload} (payload as dispatched)."""
    core = _core(request)
    body = await _body(request)
    guild = _guild(core, body["guild_id"])
    channel = core.state.store.channels.get(int(body["channel_id"]))
    if channel is None or channel.guild_id != guild.id:
        raise unknown_channel()
    uid = int(body.get("user_id") or guild.owner_id or 0)
    if uid not in guild.members:
        raise refused(f"user {uid} is not a member of the guild")
    bot = _bot_of(core, guild, body.get("token"))
    if not channel_permissions(core.state.store, guild, channel, uid) & VIEW_CHANNEL:
        raise refused("the member cannot see this channel")
    kind = str(body.get("type", "command"))
    message: Message | None = None
    source: Interaction | None = None
    if kind == "command":
        itype = APPLICATION_COMMAND
        data = _command_data(core, guild, channel, bot, uid, body)
    elif kind == "autocomplete":
        itype = AUTOCOMPLETE
        data = _command_data(core, guild, channel, bot, uid, body, str(body["focused"]))
    elif kind == "component":
        itype = MESSAGE_COMPONENT
        message = find_message(core, channel.id, int(body["message_id"]))
        if message is None:
            raise refused("no such message in the channel (or it is no longer reachable)")
        owner = _ephemeral_owner(core, message)
        if owner is not None and owner != uid:
            raise refused("an ephemeral message is only visible to the member it answered")
        data = _component_data(message, body)
    elif kind == "modal":
        itype = MODAL_SUBMIT
        custom_id = str(body["custom_id"])
        source = next(
            (
                i
                for i in reversed(core.state.interactions.by_id.values())
                if i.user_id == uid
                and i.application_id == bot.id
                and i.modal_open
                and i.callback is not None
                and i.callback["data"].get("custom_id") == custom_id
                and not i.token_expired()
            ),
            None,
        )
        if source is None:
            raise refused(f"no modal {custom_id!r} is open for this member")
        assert source.callback is not None
        fields = body.get("fields") or {}
        data = {
            "custom_id": custom_id,
            "components": _modal_components(source.callback["data"], fields),
        }
        if source.message_id is not None:
            message = find_message(core, source.channel_id, source.message_id)
        source.modal_open = False  # submitting closes the modal
    else:
        raise APIError(400, 0, "type must be 'command', 'autocomplete', 'component' or 'modal'")
    store = core.state.store
    inter = Interaction(
        id=core.state.ids.next(),
        token="aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48),
        application_id=bot.id,
        type=itype,
        guild_id=guild.id,
        channel_id=channel.id,
        user_id=uid,
        payload={},
        message_id=None if message is None else message.id,
    )
    payload: dict[str, Any] = {
        "id": str(inter.id),
        "application_id": str(bot.id),
        "type": itype,
        "data": data,
        "guild_id": str(guild.id),
        "guild": {"id": str(guild.id), "locale": "en-US", "features": []},
        "channel_id": str(channel.id),
        "channel": channel_json(store, channel),
        "member": {
            **_member_with_permissions(core, guild, channel, uid),
            "user": user_json(store.users[uid]),
        },
        "token": inter.token,
        "version": 1,
        "app_permissions": str(channel_permissions(store, guild, channel, bot.id)),
        "locale": "en-US",
        "guild_locale": "en-US",
        "entitlements": [],
        "authorizing_integration_owners": {"0": str(guild.id)},
        "context": 0,
        "attachment_size_limit": 10 * MiB,
    }
    if message is not None:
        payload["message"] = {**core.state.message(message), "guild_id": str(guild.id)}
    inter.payload = payload
    core.state.interactions.add(inter)
    core.state.gateway.dispatch("INTERACTION_CREATE", payload, guild.id, only_user=bot.id)
    return json_response(
        {
            "id": str(inter.id),
            "token": inter.token,
            "application_id": str(bot.id),
            "type": itype,
            "payload": payload,
        }
    )


def interaction_json(core: Core, inter: Interaction) -> dict[str, Any]:
    """What the bot answered: the callback, the original response, follow-ups."""

    def show(mid: int | None) -> dict[str, Any] | None:
        if mid is None or mid in inter.deleted:
            return None
        msg = inter.ephemeral.get(mid) or find_message(core, inter.channel_id, mid)
        if msg is None:
            return None
        out = render(core, inter, msg)
        out["ephemeral"] = bool(int(msg.extra.get("flags", 0)) & 64)
        return out

    original = show(inter.original_id)
    return {
        "id": str(inter.id),
        "type": inter.type,
        "guild_id": str(inter.guild_id),
        "channel_id": str(inter.channel_id),
        "user_id": str(inter.user_id),
        "acknowledged": inter.acknowledged,
        "callback": inter.callback,
        "response_type": None if inter.callback is None else inter.callback["type"],
        "ephemeral": bool(original and original["ephemeral"]),
        "original": original,
        "followups": [m for m in (show(f) for f in inter.followups) if m is not None],
        "age": inter.age(),
        "expired": inter.token_expired(),
    }


def _interaction(core: Core, request: web.Request) -> Interaction:
    inter = core.state.interactions.by_id.get(int(request.match_info["interaction_id"]))
    if inter is None:
        raise APIError(404, 10062, "Unknown interaction")
    return inter


@routes.get(r"/_emu/interactions/{interaction_id:\d+}")
async def read(request: web.Request) -> web.Response:
    """`?wait=SECONDS` first waits (at most that long) for the bot's callback, so a test
    reads the answer as soon as there is one instead of guessing how long it takes."""
    core = _core(request)
    inter = _interaction(core, request)
    wait = float(request.query.get("wait") or 0)
    if wait > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(inter.answered.wait(), wait)
    return json_response(interaction_json(core, inter))


@routes.post(r"/_emu/interactions/{interaction_id:\d+}/age")
async def age(request: web.Request) -> web.Response:
    """Move an interaction's clock on by `seconds`: past 3 s it can no longer be
    acknowledged, past 15 minutes its token is dead, with no test waiting for either."""
    core = _core(request)
    inter = _interaction(core, request)
    inter.created -= float((await _body(request))["seconds"])
    return json_response(interaction_json(core, inter))


# --- roles and members -------------------------------------------------------------------------


def _permissions_arg(raw: Any) -> int:
    value = int(str(raw))
    if value < 0:
        raise ValueError(raw)
    return value


@routes.post(r"/_emu/guilds/{guild_id:\d+}/roles")
async def create_role(request: web.Request) -> web.Response:
    """Body: {name, permissions: "bitfield"}. GUILD_ROLE_CREATE is dispatched."""
    core = _core(request)
    guild = _guild(core, request.match_info["guild_id"])
    body = await _body(request)
    role = core.state.create_role(
        guild, str(body["name"]), _permissions_arg(body.get("permissions", 0))
    )
    return json_response(role_json(role))


@routes.patch(r"/_emu/guilds/{guild_id:\d+}/roles/{role_id:\d+}")
async def edit_role(request: web.Request) -> web.Response:
    """Body: {permissions?, name?}; the @everyone role's id is the guild's."""
    core = _core(request)
    guild = _guild(core, request.match_info["guild_id"])
    role = guild.roles.get(int(request.match_info["role_id"]))
    if role is None:
        raise APIError(404, 10011, "Unknown Role")
    body = await _body(request)
    if "permissions" in body:
        role.permissions = _permissions_arg(body["permissions"])
    if "name" in body:
        role.name = str(body["name"])
    core.state.update_role(role)
    return json_response(role_json(role))


@routes.post(r"/_emu/guilds/{guild_id:\d+}/bot-permissions")
async def bot_permissions(request: web.Request) -> web.Response:
    """Body: {permissions, token?}: what the bot's own (managed) role grants. The default is
    administrator; anything less is then enforced on the bot's REST calls."""
    core = _core(request)
    guild = _guild(core, request.match_info["guild_id"])
    body = await _body(request)
    bot = _bot_of(core, guild, body.get("token"))
    role = core.state.bot_role(guild, bot.id)
    if role is None:
        raise APIError(400, 0, "the bot has no role in this guild")
    role.permissions = _permissions_arg(body["permissions"])
    core.state.update_role(role)
    return json_response({**role_json(role), "effective": str(base_permissions(guild, bot.id))})


@routes.post(r"/_emu/guilds/{guild_id:\d+}/members")
async def add_member(request: web.Request) -> web.Response:
    """Body: {username, roles?: [role ids]}: a person joins (GUILD_MEMBER_ADD) with roles."""
    core = _core(request)
    guild = _guild(core, request.match_info["guild_id"])
    body = await _body(request)
    user = core.state.human(str(body["username"]))
    core.state.join(guild, user)
    roles = _roles_arg(guild, body.get("roles") or [])
    if roles:
        core.state.set_member_roles(guild, user.id, roles)
    return json_response(core.state.member(guild, user.id))


def _roles_arg(guild: Guild, raw: Any) -> list[int]:
    roles = [int(r) for r in raw]
    unknown = [r for r in roles if r not in guild.roles or r == guild.id]
    if unknown:
        raise APIError(404, 10011, f"Unknown Role {unknown[0]}")
    return roles


@routes.put(r"/_emu/guilds/{guild_id:\d+}/members/{user_id:\d+}/roles")
async def set_roles(request: web.Request) -> web.Response:
    """Body: {roles: [role ids]}: replaces the member's roles (a bot keeps its managed role)."""
    core = _core(request)
    guild = _guild(core, request.match_info["guild_id"])
    uid = int(request.match_info["user_id"])
    if uid not in guild.members:
        raise APIError(404, 10007, "Unknown Member")
    body = await _body(request)
    core.state.set_member_roles(guild, uid, _roles_arg(guild, body["roles"]))
    return json_response(core.state.member(guild, uid))
