"""Interaction responses: the callback, the original response and follow-ups (webhook routes).

A bot answers an interaction once, within 3 seconds, with `POST /interactions/{id}/{token}/
callback`: 4 sends a message, 5 defers one (a "thinking" message with the LOADING flag), 6
acknowledges a component without changing anything, 7 edits the component's message, 8
answers an autocomplete with choices, 9 opens a modal. A second callback is 400/40060; one
after the deadline, or with a wrong token, is 404/10062. Then, for 15 minutes, the token
reaches the original response (`@original`) and follow-ups under
`/webhooks/{application_id}/{token}`; after that it is 401/50027. These routes take no bot
token (the interaction token is the credential), as on Discord.

Every message goes through the same checks as a channel message (`validate.compose`), and
sending needs no channel permission: Discord lets a bot answer wherever it was invoked.
Flag 64 makes a message ephemeral: kept with the interaction, never in the channel.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .core import CORE, Core
from .errors import APIError, form_error, json_response, unknown_channel, unknown_message
from .interaction_state import (
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    AUTOCOMPLETE_RESULT,
    CHANNEL_MESSAGE,
    DEFERRED_MESSAGE,
    DEFERRED_UPDATE,
    MESSAGE_COMPONENT,
    MODAL,
    MODAL_SUBMIT,
    UPDATE_MESSAGE,
    Interaction,
)
from .models import user_json
from .state import Upload
from .store import Channel, Message, User
from .validate import (
    EPHEMERAL,
    LOADING,
    SUPPRESS_EMBEDS,
    SUPPRESS_NOTIFICATIONS,
    components_of,
    compose,
    content_of,
    embeds_of,
    read_payload,
    uploads_of,
)

routes = web.RouteTableDef()

SEND_FLAGS = EPHEMERAL | SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS
MAX_MODAL_TITLE = 45


def _core(request: web.Request) -> Core:
    return request.app[CORE]


def unknown_interaction() -> APIError:
    return APIError(404, 10062, "Unknown interaction")


def already_acknowledged() -> APIError:
    return APIError(400, 40060, "Interaction has already been acknowledged.")


def invalid_webhook_token() -> APIError:
    return APIError(401, 50027, "Invalid Webhook Token")


def unknown_webhook() -> APIError:
    return APIError(404, 10015, "Unknown Webhook")


# --- rendering ---------------------------------------------------------------------------------


def _metadata(core: Core, inter: Interaction) -> dict[str, Any]:
    """The `interaction_metadata` Discord attaches to every message an interaction sends."""
    user = core.state.store.users[inter.user_id]
    out: dict[str, Any] = {
        "id": str(inter.id),
        "type": inter.type,
        "user": user_json(user),
        "authorizing_integration_owners": {"0": str(inter.guild_id)},
    }
    if inter.original_id is not None:
        out["original_response_message_id"] = str(inter.original_id)
    if inter.type == MESSAGE_COMPONENT and inter.message_id is not None:
        out["interacted_message_id"] = str(inter.message_id)
    return out


def render(core: Core, inter: Interaction, msg: Message) -> dict[str, Any]:
    """A response as the webhook routes answer it (with the guild id a channel GET omits)."""
    out = core.state.message(msg)
    out["guild_id"] = str(inter.guild_id)
    return out


# --- finding things ----------------------------------------------------------------------------


def _channel(core: Core, inter: Interaction) -> Channel:
    channel = core.state.store.channels.get(inter.channel_id)
    if channel is None:  # deleted since the interaction
        raise unknown_channel()
    return channel


def _bot(core: Core, inter: Interaction) -> User:
    return core.state.store.users[inter.application_id]


def find_message(core: Core, channel_id: int, message_id: int) -> Message | None:
    """A channel message, or an ephemeral one an interaction still holds."""
    msg = core.state.store.get_message(channel_id, message_id)
    if msg is None:
        msg = core.state.interactions.ephemeral_message(channel_id, message_id)
    return msg


def _by_token(core: Core, request: web.Request) -> Interaction:
    """The interaction a webhook route names; its token must be live and acknowledged."""
    inter = core.state.interactions.by_token.get(request.match_info["token"])
    if inter is None or inter.token_expired():
        raise invalid_webhook_token()
    if str(inter.application_id) != request.match_info["application_id"]:
        raise unknown_webhook()
    if not inter.acknowledged:
        raise unknown_webhook()
    return inter


def _target(core: Core, inter: Interaction, raw: str) -> Message:
    """`@original` or a follow-up id: only messages this interaction sent (or, after a
    component's deferred update, the message the component is on)."""
    if raw == "@original":
        mid = inter.original_id
    else:
        mid = int(raw) if raw.isdigit() else None
        if mid is not None and mid != inter.original_id and mid not in inter.followups:
            mid = None
    if mid is None or mid in inter.deleted:
        raise unknown_message()
    msg = inter.ephemeral.get(mid) or find_message(core, inter.channel_id, mid)
    if msg is None:
        raise unknown_message()
    return msg


# --- creating and changing messages ------------------------------------------------------------


def _new_message(
    core: Core, inter: Interaction, payload: dict[str, Any], files: dict[int, Upload]
) -> Message:
    parts = compose(payload, files, SEND_FLAGS)
    return _send(
        core, inter, parts.content, parts.embeds, parts.components, parts.uploads, parts.flags
    )


def _message_type(inter: Interaction) -> int:
    """20 answers a slash command, 23 a context-menu command, 0 anything else."""
    if inter.type != APPLICATION_COMMAND:
        return 0
    return 20 if inter.payload.get("data", {}).get("type", 1) == 1 else 23


def _send(
    core: Core,
    inter: Interaction,
    content: str,
    embeds: list[dict[str, Any]] | None,
    components: list[dict[str, Any]] | None,
    uploads: list[Upload],
    flags: int,
) -> Message:
    channel = _channel(core, inter)
    extra: dict[str, Any] = {
        "type": _message_type(inter),
        "interaction_metadata": _metadata(core, inter),
        "webhook_id": str(inter.application_id),
        "application_id": str(inter.application_id),
    }
    if embeds:
        extra["embeds"] = embeds
    if components:
        extra["components"] = components
    if flags:
        extra["flags"] = flags
    bot = _bot(core, inter)
    if flags & EPHEMERAL:
        msg = core.state.ephemeral_message(channel, bot, content, extra, uploads)
        inter.ephemeral[msg.id] = msg
        return msg
    return core.state.create_message(channel, bot, content, extra, uploads)


def _edit(
    core: Core,
    inter: Interaction,
    msg: Message,
    payload: dict[str, Any],
    files: dict[int, Upload],
) -> Message:
    """Edit a response or the component's message; the LOADING flag goes with the first edit."""
    changes: dict[str, Any] = {}
    if "content" in payload:
        changes["content"] = content_of(payload) or ""
    if "embeds" in payload or "embed" in payload:
        changes["embeds"] = embeds_of(payload) or []
    if "components" in payload:
        changes["components"] = components_of(payload) or []
    flags = int(msg.extra.get("flags", 0))
    if flags & LOADING:
        changes["flags"] = flags & ~LOADING
    keep: list[int] | None = None
    if payload.get("attachments") is not None:
        existing = {a.id for a in msg.attachments}
        keep = [
            int(a["id"])
            for a in payload["attachments"]
            if isinstance(a, dict) and str(a.get("id", "")).isdigit() and int(a["id"]) in existing
        ]
    uploads = uploads_of(payload, files)
    kept = len(msg.attachments) if keep is None else len(keep)
    if kept + len(uploads) > 10:
        raise APIError(400, 30015, "Maximum number of attachments in a message reached (10)")
    content_after = changes.get("content", msg.content)
    if (
        not content_after
        and not changes.get("embeds", msg.extra.get("embeds"))
        and not changes.get("components", msg.extra.get("components"))
        and kept + len(uploads) == 0
    ):
        raise APIError(400, 50006, "Cannot send an empty message")
    if flags & EPHEMERAL:
        core.state.apply_edit(msg, changes, keep, uploads)
        core.state.store.commit()
        return msg
    return core.state.edit_message(_channel(core, inter), msg, changes, keep, uploads)


def _delete(core: Core, inter: Interaction, msg: Message) -> None:
    inter.deleted.add(msg.id)
    if int(msg.extra.get("flags", 0)) & EPHEMERAL:
        inter.ephemeral.pop(msg.id, None)
        for other in core.state.interactions.by_id.values():
            other.ephemeral.pop(msg.id, None)
        if msg.attachments:
            core.state.store.delete_attachments([a.id for a in msg.attachments])
            core.state.store.commit()
        return
    core.state.delete_messages(_channel(core, inter), [msg.id])


# --- the callback ------------------------------------------------------------------------------

VALID_CALLBACKS = {
    APPLICATION_COMMAND: (CHANNEL_MESSAGE, DEFERRED_MESSAGE, MODAL),
    MESSAGE_COMPONENT: (CHANNEL_MESSAGE, DEFERRED_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE, MODAL),
    MODAL_SUBMIT: (CHANNEL_MESSAGE, DEFERRED_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE),
    AUTOCOMPLETE: (AUTOCOMPLETE_RESULT,),
}


def _choices(data: dict[str, Any]) -> None:
    """Autocomplete answers: at most 25 choices, names of 1 to 100 characters."""
    choices = data.get("choices")
    if not isinstance(choices, list):
        raise form_error(
            "data.choices", "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType"
        )
    if len(choices) > 25:
        raise form_error("data.choices", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    for i, choice in enumerate(choices):
        name = choice.get("name") if isinstance(choice, dict) else None
        if not isinstance(name, str) or not 1 <= len(name) <= 100:
            raise form_error(
                f"data.choices.{i}.name",
                "BASE_TYPE_BAD_LENGTH",
                "Must be between 1 and 100 in length.",
            )
        value = choice.get("value")
        if isinstance(value, str) and len(value) > 100:
            raise form_error(
                f"data.choices.{i}.value",
                "BASE_TYPE_BAD_LENGTH",
                "Must be between 1 and 100 in length.",
            )


def _modal(data: dict[str, Any]) -> None:
    """A modal needs a custom id, a title of up to 45 characters and 1 to 5 components."""
    custom_id = data.get("custom_id")
    if not isinstance(custom_id, str) or not 1 <= len(custom_id) <= 100:
        raise form_error(
            "data.custom_id", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
        )
    title = data.get("title")
    if not isinstance(title, str) or not 1 <= len(title) <= MAX_MODAL_TITLE:
        raise form_error(
            "data.title",
            "BASE_TYPE_BAD_LENGTH",
            f"Must be between 1 and {MAX_MODAL_TITLE} in length.",
        )
    components = data.get("components")
    if not isinstance(components, list) or not 1 <= len(components) <= 5:
        raise form_error(
            "data.components", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length."
        )


@routes.post(r"/interactions/{interaction_id:\d+}/{token}/callback")
async def callback(request: web.Request) -> web.Response:
    core = _core(request)
    inter = core.state.interactions.by_id.get(int(request.match_info["interaction_id"]))
    if inter is None or inter.token != request.match_info["token"]:
        raise unknown_interaction()
    if inter.acknowledged:
        raise already_acknowledged()
    if inter.too_late_to_ack():
        raise unknown_interaction()
    body, files = await read_payload(request)
    ctype = body.get("type")
    data = body.get("data") or {}
    if not isinstance(data, dict):
        raise form_error("data", "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
    valid = VALID_CALLBACKS.get(inter.type, ())
    if ctype not in valid:
        raise form_error("type", "BASE_TYPE_CHOICES", f"Value must be one of {valid}.")
    message: Message | None = None
    if ctype == CHANNEL_MESSAGE:
        message = _new_message(core, inter, data, files)
        inter.original_id = message.id
    elif ctype == DEFERRED_MESSAGE:
        flags = LOADING | (int(data.get("flags") or 0) & EPHEMERAL)
        message = _send(core, inter, "", None, None, [], flags)
        inter.original_id = message.id
    elif ctype in (DEFERRED_UPDATE, UPDATE_MESSAGE):
        if inter.message_id is None:
            raise form_error("type", "BASE_TYPE_CHOICES", f"Value must be one of {valid[:2]}.")
        inter.original_id = inter.message_id
        if ctype == UPDATE_MESSAGE:
            target = find_message(core, inter.channel_id, inter.message_id)
            if target is None:
                raise unknown_message()
            message = _edit(core, inter, target, data, files)
    elif ctype == AUTOCOMPLETE_RESULT:
        _choices(data)
    else:
        _modal(data)
        inter.modal_open = True
    inter.callback = {"type": ctype, "data": data}
    inter.answered.set()
    if request.query.get("with_response") not in ("1", "true", "True"):
        return web.Response(status=204)
    described: dict[str, Any] = {"id": str(inter.id), "type": inter.type}
    if message is not None:
        flags = int(message.extra.get("flags", 0))
        described.update(
            {
                "response_message_id": str(message.id),
                "response_message_loading": bool(flags & LOADING),
                "response_message_ephemeral": bool(flags & EPHEMERAL),
            }
        )
    resource: dict[str, Any] = {"type": ctype}
    if message is not None:
        resource["message"] = render(core, inter, message)
    return json_response({"interaction": described, "resource": resource})


# --- the original response and follow-ups ------------------------------------------------------


@routes.post(r"/webhooks/{application_id:\d+}/{token}")
async def follow_up(request: web.Request) -> web.Response:
    """A follow-up; after a deferred response the first one fills the "thinking" message
    (Discord's rule), later ones are new messages."""
    core = _core(request)
    inter = _by_token(core, request)
    payload, files = await read_payload(request)
    msg: Message | None = None
    if inter.original_id is not None and (inter.callback or {}).get("type") == DEFERRED_MESSAGE:
        original = inter.ephemeral.get(inter.original_id) or find_message(
            core, inter.channel_id, inter.original_id
        )
        if original is not None and int(original.extra.get("flags", 0)) & LOADING:
            compose(payload, files, SEND_FLAGS)  # the checks of a new message
            msg = _edit(core, inter, original, payload, files)
    if msg is None:
        msg = _new_message(core, inter, payload, files)
        inter.followups.append(msg.id)
    # For an interaction's follow-ups `wait` is always true: Discord answers the message.
    return json_response(render(core, inter, msg))


@routes.get(r"/webhooks/{application_id:\d+}/{token}/messages/{message_id}")
async def get_response(request: web.Request) -> web.Response:
    core = _core(request)
    inter = _by_token(core, request)
    return json_response(
        render(core, inter, _target(core, inter, request.match_info["message_id"]))
    )


@routes.patch(r"/webhooks/{application_id:\d+}/{token}/messages/{message_id}")
async def edit_response(request: web.Request) -> web.Response:
    core = _core(request)
    inter = _by_token(core, request)
    msg = _target(core, inter, request.match_info["message_id"])
    payload, files = await read_payload(request)
    return json_response(render(core, inter, _edit(core, inter, msg, payload, files)))


@routes.delete(r"/webhooks/{application_id:\d+}/{token}/messages/{message_id}")
async def delete_response(request: web.Request) -> web.Response:
    core = _core(request)
    inter = _by_token(core, request)
    _delete(core, inter, _target(core, inter, request.match_info["message_id"]))
    return web.Response(status=204)
