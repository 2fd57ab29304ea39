"""Input checks that answer exactly as Discord does (status, JSON code, form-error shape)."""

from __future__ import annotations

import json
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


def too_large() -> APIError:
    return APIError(413, 40005, "Request entity too large")


def invalid_json() -> APIError:
    return APIError(400, 50109, "The request body contains invalid JSON.")


async def read_json(request: web.Request) -> dict[str, Any]:
    """The JSON object body (empty body gives {})."""
    if request.content_length is not None and request.content_length > MAX_REQUEST:
        raise too_large()
    raw = await request.read()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise invalid_json() from None
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
        if len(fields) > 25:
            raise form_error(
                f"embeds.{i}.fields", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
            )
        for f in fields:
            total += len(str(f.get("name") or "")) + len(str(f.get("value") or ""))
        total += len(str((embed.get("footer") or {}).get("text") or ""))
        total += len(str((embed.get("author") or {}).get("name") or ""))
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
