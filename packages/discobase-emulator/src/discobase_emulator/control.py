"""`EmulatorControl`: an aiohttp client for the control API, usable from another process."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp


class EmulatorControl:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    async def _call(self, method: str, path: str, body: Any = None, **params: str) -> Any:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        async with self._session.request(
            method, self.url + "/_emu" + path, json=body, params=params or None
        ) as resp:
            data = await resp.json(content_type=None)
            if resp.status >= 400:
                raise RuntimeError(f"emulator control {method} {path}: {resp.status} {data}")
            return data

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> EmulatorControl:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def health(self) -> dict[str, Any]:
        out: dict[str, Any] = await self._call("GET", "/health")
        return out

    async def reset(self) -> None:
        await self._call("POST", "/reset", {})

    async def add_token(self, token: str, name: str = "bot") -> dict[str, Any]:
        out: dict[str, Any] = await self._call("POST", "/tokens", {"token": token, "name": name})
        return out

    async def create_guild(self, name: str, members: Sequence[str] = ()) -> dict[str, Any]:
        out: dict[str, Any] = await self._call(
            "POST", "/guilds", {"name": name, "members": list(members)}
        )
        return out

    async def create_channel(self, guild_id: str | int, name: str, type: int = 0) -> dict[str, Any]:
        out: dict[str, Any] = await self._call(
            "POST", f"/guilds/{guild_id}/channels", {"name": name, "type": type}
        )
        return out

    async def mark(self) -> str:
        return str((await self._call("POST", "/mark", {}))["mark"])

    async def metrics(self, since: str | None = None) -> dict[str, Any]:
        params = {"since": since} if since is not None else {}
        out: dict[str, Any] = await self._call("GET", "/metrics", **params)
        return out

    async def storage(self, guild_id: str | int, *, messages: bool = False) -> dict[str, Any]:
        """Bytes a guild's channels and threads hold: per channel and totals (see the
        control API); `messages=True` adds every message's sizes and attachment names."""
        params = {"messages": "1"} if messages else {}
        out: dict[str, Any] = await self._call("GET", f"/guilds/{guild_id}/storage", **params)
        return out

    async def age_messages(self, seconds: float) -> None:
        await self._call("POST", "/age", {"seconds": seconds})

    async def set_profile(self, profile: str) -> None:
        await self._call("POST", "/profile", {"profile": profile})

    async def set_attachment_ttl(self, seconds: float) -> None:
        await self._call("POST", "/attachment-ttl", {"seconds": seconds})

    async def post_as_user(
        self, channel_id: str | int, content: str, username: str = "someone"
    ) -> dict[str, Any]:
        out: dict[str, Any] = await self._call(
            "POST",
            f"/channels/{channel_id}/user-messages",
            {"content": content, "username": username},
        )
        return out

    async def seed_messages(
        self,
        channel_id: str | int,
        contents: list[str],
        *,
        age_seconds: float = 0.0,
        author: str = "bot",
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = await self._call(
            "POST",
            f"/channels/{channel_id}/seed",
            {"contents": contents, "age_seconds": age_seconds, "author": author},
        )
        return out

    async def faults(
        self,
        error_rate: float = 0.0,
        statuses: Sequence[int] = (500, 502, 503),
        latency: float = 0.0,
        storm_429: float = 0.0,
        *,
        storm_retry_after: float = 0.05,
        drop_before: float = 0.0,
        drop_after: float = 0.0,
        stall: float = 0.0,
        stall_seconds: float = 30.0,
        only_routes: Sequence[str] = (),
        seed: int | None = None,
        gateway_disconnect: bool = False,
        gateway_reconnect: bool = False,
        invalid_session: bool = False,
        resumable: bool = False,
    ) -> dict[str, Any]:
        """Set REST faults (they persist until changed) and fire one-shot gateway triggers.

        `drop_before`/`drop_after` close a share of connections without an answer before or
        after the request is handled; `stall` hangs a share for `stall_seconds` then drops
        them; `only_routes` limits every REST fault to some routes ("POST", or
        "POST /channels/{channel_id}/messages"); `seed` reseeds the fault generator.
        """
        out: dict[str, Any] = await self._call(
            "POST",
            "/faults",
            {
                "error_rate": error_rate,
                "statuses": list(statuses),
                "latency": latency,
                "storm_429": storm_429,
                "storm_retry_after": storm_retry_after,
                "drop_before": drop_before,
                "drop_after": drop_after,
                "stall": stall,
                "stall_seconds": stall_seconds,
                "only_routes": list(only_routes),
                "seed": seed,
                "gateway_disconnect": gateway_disconnect,
                "gateway_reconnect": gateway_reconnect,
                "invalid_session": invalid_session,
                "resumable": resumable,
            },
        )
        return out

    # damage: what a server admin, a person or a bug can do behind the bot's back

    async def delete_message(self, channel_id: str | int, message_id: str | int) -> dict[str, Any]:
        """Delete a message as a server admin (MESSAGE_DELETE is dispatched)."""
        out: dict[str, Any] = await self._call(
            "DELETE", f"/channels/{channel_id}/messages/{message_id}"
        )
        return out

    async def delete_channel(self, channel_id: str | int) -> dict[str, Any]:
        """Delete a channel (and its threads) or a thread as a server admin."""
        out: dict[str, Any] = await self._call("DELETE", f"/channels/{channel_id}")
        return out

    async def alter_message(
        self, channel_id: str | int, message_id: str | int, content: str, *, silent: bool = False
    ) -> dict[str, Any]:
        """Replace a message's content, whoever wrote it (`silent`: no edit trace, no event)."""
        out: dict[str, Any] = await self._call(
            "PATCH",
            f"/channels/{channel_id}/messages/{message_id}",
            {"content": content, "silent": silent},
        )
        return out

    async def garble(
        self,
        channel_id: str | int,
        message_id: str | int,
        *,
        target: str = "content",
        attachment: int = 0,
        mode: str = "flip",
        offset: int | None = None,
        count: int = 1,
        mask: int = 0x01,
        data: bytes | None = None,
        length: int | None = None,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """Damage the stored bytes of a message's content or of one attachment."""
        out: dict[str, Any] = await self._call(
            "POST",
            f"/channels/{channel_id}/messages/{message_id}/garble",
            {
                "target": target,
                "attachment": attachment,
                "mode": mode,
                "offset": offset,
                "count": count,
                "mask": mask,
                "data": data.hex() if data else None,
                "length": length,
                "seed": seed,
            },
        )
        return out

    # interactions: what a member does in the Discord client

    async def run_command(
        self,
        guild_id: str | int,
        channel_id: str | int,
        command: str,
        options: dict[str, Any] | None = None,
        *,
        user_id: str | int | None = None,
        token: str | None = None,
        command_type: int = 1,
        target_id: str | int | None = None,
    ) -> dict[str, Any]:
        """Run a slash command ("name", or "group sub" for subcommands) as a member (default:
        the guild's owner); `command_type` 2 or 3 with `target_id` runs a user or message
        command. Answers {id, token, application_id, type, payload}."""
        out: dict[str, Any] = await self._call(
            "POST",
            "/interactions",
            {
                "type": "command",
                "guild_id": str(guild_id),
                "channel_id": str(channel_id),
                "command": command,
                "command_type": command_type,
                "target_id": None if target_id is None else str(target_id),
                "options": options or {},
                "user_id": None if user_id is None else str(user_id),
                "token": token,
            },
        )
        return out

    async def autocomplete(
        self,
        guild_id: str | int,
        channel_id: str | int,
        command: str,
        focused: str,
        options: dict[str, Any] | None = None,
        *,
        user_id: str | int | None = None,
        token: str | None = None,
    ) -> dict[str, Any]:
        """Type into option `focused` (its text so far in `options`): an autocomplete
        interaction; the bot's choices are in `interaction(id)["callback"]`."""
        out: dict[str, Any] = await self._call(
            "POST",
            "/interactions",
            {
                "type": "autocomplete",
                "guild_id": str(guild_id),
                "channel_id": str(channel_id),
                "command": command,
                "focused": focused,
                "options": options or {},
                "user_id": None if user_id is None else str(user_id),
                "token": token,
            },
        )
        return out

    async def click(
        self,
        guild_id: str | int,
        channel_id: str | int,
        message_id: str | int,
        custom_id: str,
        *,
        values: Sequence[str] | None = None,
        user_id: str | int | None = None,
        token: str | None = None,
    ) -> dict[str, Any]:
        """Use a button (or, with `values`, a select) on a message, as a member."""
        out: dict[str, Any] = await self._call(
            "POST",
            "/interactions",
            {
                "type": "component",
                "guild_id": str(guild_id),
                "channel_id": str(channel_id),
                "message_id": str(message_id),
                "custom_id": custom_id,
                "values": None if values is None else list(values),
                "user_id": None if user_id is None else str(user_id),
                "token": token,
            },
        )
        return out

    async def submit_modal(
        self,
        guild_id: str | int,
        channel_id: str | int,
        custom_id: str,
        fields: dict[str, str],
        *,
        user_id: str | int | None = None,
        token: str | None = None,
    ) -> dict[str, Any]:
        """Submit a modal the bot showed this member, with text input values by custom id."""
        out: dict[str, Any] = await self._call(
            "POST",
            "/interactions",
            {
                "type": "modal",
                "guild_id": str(guild_id),
                "channel_id": str(channel_id),
                "custom_id": custom_id,
                "fields": fields,
                "user_id": None if user_id is None else str(user_id),
                "token": token,
            },
        )
        return out

    async def interaction(self, interaction_id: str | int, *, wait: float = 0.0) -> dict[str, Any]:
        """What the bot answered: {acknowledged, callback, response_type, ephemeral,
        original, followups, age, expired, ...}; `wait` seconds at most for its callback."""
        params = {"wait": str(wait)} if wait > 0 else {}
        out: dict[str, Any] = await self._call("GET", f"/interactions/{interaction_id}", **params)
        return out

    async def age_interaction(self, interaction_id: str | int, seconds: float) -> dict[str, Any]:
        """Move an interaction's clock on (3 s to acknowledge, 15 min for its token)."""
        out: dict[str, Any] = await self._call(
            "POST", f"/interactions/{interaction_id}/age", {"seconds": seconds}
        )
        return out

    # roles and members

    async def create_role(
        self, guild_id: str | int, name: str, permissions: int = 0
    ) -> dict[str, Any]:
        out: dict[str, Any] = await self._call(
            "POST", f"/guilds/{guild_id}/roles", {"name": name, "permissions": str(permissions)}
        )
        return out

    async def edit_role(
        self, guild_id: str | int, role_id: str | int, permissions: int
    ) -> dict[str, Any]:
        """Change a role's permissions (the @everyone role's id is the guild's)."""
        out: dict[str, Any] = await self._call(
            "PATCH", f"/guilds/{guild_id}/roles/{role_id}", {"permissions": str(permissions)}
        )
        return out

    async def set_bot_permissions(
        self, guild_id: str | int, permissions: int, *, token: str | None = None
    ) -> dict[str, Any]:
        """What the bot's own role grants (default: administrator)."""
        out: dict[str, Any] = await self._call(
            "POST",
            f"/guilds/{guild_id}/bot-permissions",
            {"permissions": str(permissions), "token": token},
        )
        return out

    async def add_member(
        self, guild_id: str | int, username: str, roles: Sequence[str | int] = ()
    ) -> dict[str, Any]:
        """A person joins the guild with these roles; answers the member (with `user`)."""
        out: dict[str, Any] = await self._call(
            "POST",
            f"/guilds/{guild_id}/members",
            {"username": username, "roles": [str(r) for r in roles]},
        )
        return out

    async def set_member_roles(
        self, guild_id: str | int, user_id: str | int, roles: Sequence[str | int]
    ) -> dict[str, Any]:
        out: dict[str, Any] = await self._call(
            "PUT",
            f"/guilds/{guild_id}/members/{user_id}/roles",
            {"roles": [str(r) for r in roles]},
        )
        return out
