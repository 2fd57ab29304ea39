"""Input checks that answer exactly as Discord does (status, JSON code, form-error shape)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web

from .core import MAX_FILE, MAX_READ, MAX_REQUEST
from .errors import APIError, form_error
from .state import Upload

MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_EMBED_TOTAL = 6000
MAX_FILES = 10
EMBED_FIELD_LIMITS = {"title": 256, "description": 4096}
MAX_FIELDS = 25
# Per-part limits; every part also counts towards the 6,000 characters of all embeds.
FIELD_LIMITS = {"name": 256, "value": 1024}
FOOTER_TEXT = 2048
AUTHOR_NAME = 256


def too_large() -> APIError:
    return APIError(413, 40005, "Request entity too large")


def invalid_json() -> APIError:
    return APIError(400, 50109, "The request body contains invalid JSON.")


async def read_any_json(request: web.Request) -> Any:
    """The JSON body, whatever its type (a bulk overwrite is a list); empty body gives {}."""
    if request.content_length is not None and request.content_length > MAX_REQUEST:
        raise too_large()
    raw = await request.read()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        raise invalid_json() from None


async def read_json(request: web.Request) -> dict[str, Any]:
    """The JSON object body (empty body gives {})."""
    data = await read_any_json(request)
    if not isinstance(data, dict):
        raise form_error(
            "_root", "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType"
        )
    return data


async def read_payload(request: web.Request) -> tuple[dict[str, Any], dict[int, Upload]]:
    """JSON body, or multipart `payload_json` + `files[n]`; enforces the 25 and 10 MiB limits."""
    if not request.content_type.startswith("multipart/"):
        return await read_json(request), {}
    declared = request.content_length
    if declared is not None and declared > MAX_READ:
        raise too_large()
    payload: dict[str, Any] = {}
    files: dict[int, Upload] = {}
    total = 0
    oversize = False
    reader = await request.multipart()
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader):  # nested multipart: not something Discord takes
            continue
        data = bytes(await part.read(decode=False))
        total += len(data)
        if total > MAX_READ:
            raise too_large()
        name = part.name or ""
        if name == "payload_json":
            try:
                loaded = json.loads(data or b"{}")
            except ValueError:
                raise invalid_json() from None
            if isinstance(loaded, dict):
                payload = loaded
        elif part.filename is not None:
            index = _file_index(name, len(files))
            if len(data) > MAX_FILE:
                oversize = True
            files[index] = Upload(part.filename, part.headers.get("Content-Type"), data, None)
        elif name in ("content", "nonce", "tts"):
            payload[name] = data.decode("utf-8", "replace")
    if total > MAX_REQUEST or oversize:
        raise too_large()
    return payload, files


def _file_index(name: str, fallback: int) -> int:
    if name.startswith("files[") and name.endswith("]"):
        try:
            return int(name[6:-1])
        except ValueError:
            return fallback
    if name.startswith("file"):
        digits = name[4:]
        return int(digits) if digits.isdigit() else fallback
    return fallback


def content_of(payload: dict[str, Any]) -> str | None:
    content = payload.get("content")
    if content is None:
        return None
    if not isinstance(content, str):
        content = str(content)
    if len(content) > MAX_CONTENT:
        raise form_error(
            "content", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT} or fewer in length."
        )
    return content


def embeds_of(payload: dict[str, Any]) -> list[dict[str, Any]] | None:
    embeds = payload.get("embeds")
    if embeds is None and isinstance(payload.get("embed"), dict):
        embeds = [payload["embed"]]
    if embeds is None:
        return None
    if not isinstance(embeds, list) or not all(isinstance(e, dict) for e in embeds):
        raise form_error("embeds", "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
    if len(embeds) > MAX_EMBEDS:
        raise form_error(
            "embeds", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_EMBEDS} or fewer in length."
        )
    total = 0
    for i, embed in enumerate(embeds):
        for key, limit in EMBED_FIELD_LIMITS.items():
            text = str(embed.get(key) or "")
            if len(text) > limit:
                raise form_error(
                    f"embeds.{i}.{key}",
                    "BASE_TYPE_MAX_LENGTH",
                    f"Must be {limit} or fewer in length.",
                )
            total += len(text)
        fields = embed.get("fields") or []
        if len(fields) > MAX_FIELDS:
            raise form_error(
                f"embeds.{i}.fields",
                "BASE_TYPE_MAX_LENGTH",
                f"Must be {MAX_FIELDS} or fewer in length.",
            )
        parts: list[tuple[str, Any, str, int]] = [
            (f"fields.{j}.{key}", f, key, limit)
            for j, f in enumerate(fields)
            for key, limit in FIELD_LIMITS.items()
        ]
        parts.append(("footer.text", embed.get("footer"), "text", FOOTER_TEXT))
        parts.append(("author.name", embed.get("author"), "name", AUTHOR_NAME))
        for path, holder, key, limit in parts:
            text = str((holder if isinstance(holder, dict) else {}).get(key) or "")
            if len(text) > limit:
                raise form_error(
                    f"embeds.{i}.{path}",
                    "BASE_TYPE_MAX_LENGTH",
                    f"Must be {limit} or fewer in length.",
                )
            total += len(text)
    if total > MAX_EMBED_TOTAL:
        raise form_error(
            "embeds",
            "MAX_EMBED_SIZE_EXCEEDED",
            f"Embed size exceeds maximum size of {MAX_EMBED_TOTAL}",
        )
    return embeds


def nonce_of(payload: dict[str, Any]) -> str | None:
    nonce = payload.get("nonce")
    if nonce is None:
        return None
    text = str(nonce)
    if len(text) > 25:
        raise form_error("nonce", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    return text


def snowflake_arg(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        out = int(value)
    except ValueError:
        raise form_error(name, "NUMBER_TYPE_COERCE", f'Value "{value}" is not snowflake.') from None
    if out < 0 or out >= 1 << 64:
        raise form_error(name, "NUMBER_TYPE_COERCE", f'Value "{value}" is not snowflake.')
    return out


def int_arg(value: str | None, name: str, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    try:
        out = int(value)
    except ValueError:
        raise form_error(name, "NUMBER_TYPE_COERCE", f'Value "{value}" is not int.') from None
    if out < low:
        raise form_error(
            name, "NUMBER_TYPE_MIN", f"int value should be greater than or equal to {low}."
        )
    if out > high:
        raise form_error(
            name, "NUMBER_TYPE_MAX", f"int value should be less than or equal to {high}."
        )
    return out


MAX_ROWS = 5
MAX_PER_ROW = 5
MAX_CUSTOM_ID = 100
EPHEMERAL = 1 << 6
SUPPRESS_EMBEDS = 1 << 2
SUPPRESS_NOTIFICATIONS = 1 << 12
LOADING = 1 << 7


def uploads_of(payload: dict[str, Any], files: dict[int, Upload]) -> list[Upload]:
    """New files in order, with filename/description overrides from `attachments`."""
    described: dict[int, dict[str, Any]] = {}
    for item in payload.get("attachments") or []:
        if (
            isinstance(item, dict)
            and str(item.get("id", "")).isdigit()
            and int(item["id"]) in files
        ):
            described[int(item["id"])] = item
    out = []
    for index in sorted(files):
        up = files[index]
        meta = described.get(index, {})
        out.append(
            Upload(
                str(meta.get("filename") or up.filename),
                up.content_type,
                up.data,
                meta.get("description"),
            )
        )
    return out


def components_of(payload: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Action rows of buttons and selects, checked as Discord checks them: 5 rows of 5,
    custom ids of 1 to 100 characters, unique in the message (a click names one by it)."""
    rows = payload.get("components")
    if rows is None:
        return None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise form_error(
            "components", "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType"
        )
    if len(rows) > MAX_ROWS:
        raise form_error(
            "components", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_ROWS} or fewer in length."
        )
    seen: set[str] = set()
    for i, row in enumerate(rows):
        children = row.get("components") if row.get("type") == 1 else None
        if children is None:
            continue
        if len(children) > MAX_PER_ROW:
            raise form_error(
                f"components.{i}.components",
                "BASE_TYPE_MAX_LENGTH",
                f"Must be {MAX_PER_ROW} or fewer in length.",
            )
        for j, child in enumerate(children):
            custom_id = child.get("custom_id") if isinstance(child, dict) else None
            if custom_id is None:
                continue
            at = f"components.{i}.components.{j}.custom_id"
            if not isinstance(custom_id, str) or not 1 <= len(custom_id) <= MAX_CUSTOM_ID:
                raise form_error(
                    at, "BASE_TYPE_BAD_LENGTH", f"Must be between 1 and {MAX_CUSTOM_ID} in length."
                )
            if custom_id in seen:
                raise form_error(
                    at, "COMPONENT_CUSTOM_ID_DUPLICATED", "Component custom id cannot be duplicated"
                )
            seen.add(custom_id)
    return rows


@dataclass
class Composed:
    """A new message's validated parts."""

    content: str
    embeds: list[dict[str, Any]] | None
    components: list[dict[str, Any]] | None
    uploads: list[Upload]
    flags: int


def compose(payload: dict[str, Any], files: dict[int, Upload], flag_mask: int) -> Composed:
    """The checks every new message gets, whether sent to a channel, as an interaction
    response or as a follow-up: content length, embed limits, components, attachment count,
    and not empty. `flag_mask` is the flags this kind of message may carry."""
    content = content_of(payload) or ""
    embeds = embeds_of(payload)
    components = components_of(payload)
    uploads = uploads_of(payload, files)
    if len(uploads) > MAX_FILES:
        raise APIError(400, 30015, "Maximum number of attachments in a message reached (10)")
    if (
        not content
        and not embeds
        and not uploads
        and not payload.get("sticker_ids")
        and not components
        and not payload.get("poll")
    ):
        raise APIError(400, 50006, "Cannot send an empty message")
    try:
        flags = int(payload.get("flags") or 0) & flag_mask
    except (TypeError, ValueError):
        raise form_error("flags", "NUMBER_TYPE_COERCE", "Value is not int.") from None
    return Composed(content, embeds, components, uploads, flags)
