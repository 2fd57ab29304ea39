"""Discord-shaped error bodies and the exact JSON Content-Type discord.py requires.

discord.py compares Content-Type to `application/json` exactly, so every JSON answer goes
through `json_response`; handlers raise `APIError` so a client mistake is never a 500.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

Headers = Mapping[str, str]


def dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def json_response(data: Any, status: int = 200, headers: Headers | None = None) -> web.Response:
    """A JSON response with `Content-Type: application/json` (no charset suffix)."""
    resp = web.Response(body=dumps(data), status=status, headers=headers)
    resp.content_type = "application/json"
    return resp


class APIError(Exception):
    """A Discord error: HTTP status, JSON code, message and optional form `errors`."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        errors: dict[str, Any] | None = None,
        headers: Headers | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors is not None:
            out["errors"] = self.errors
        return out

    def response(self) -> web.Response:
        return json_response(self.body(), self.status, self.headers)


def form_error(path: str, code: str, message: str) -> APIError:
    """400/50035 Invalid Form Body with one error at a dotted path ("content", "embeds.0")."""
    errors: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(path.split(".")):
        errors = {part: errors}
    return APIError(400, 50035, "Invalid Form Body", errors)


def unauthorized() -> APIError:
    return APIError(401, 0, "401: Unauthorized")


def unknown_channel() -> APIError:
    return APIError(404, 10003, "Unknown Channel")


def unknown_guild() -> APIError:
    return APIError(404, 10004, "Unknown Guild")


def unknown_message() -> APIError:
    return APIError(404, 10008, "Unknown Message")


def unknown_user() -> APIError:
    return APIError(404, 10013, "Unknown User")


def missing_access() -> APIError:
    return APIError(403, 50001, "Missing Access")
