"""Permission overwrites as Discord keeps them: PUT and DELETE one (204, CHANNEL_UPDATE),
PATCH the whole list, and every read (GET channel, the guild's channel list, the gateway's
cache) showing the same list. Permissions are stored, not enforced (bots are admins here)."""

from __future__ import annotations

from typing import Any

import aiohttp
import discord

from discobase_emulator import Emulator

ROLE, MEMBER = 0, 1


async def call(
    http: aiohttp.ClientSession, method: str, url: str, body: Any = None
) -> tuple[int, Any]:
    async with http.request(method, url, json=body) as resp:
        data = await resp.json() if resp.content_type == "application/json" else None
        return resp.status, data


async def setup(emulator: Emulator, http: aiohttp.ClientSession) -> tuple[str, str]:
    """(guild id, #general id)."""
    _, guilds = await call(http, "GET", emulator.api_url + "/users/@me/guilds")
    guild = guilds[0]["id"]
    _, channels = await call(http, "GET", f"{emulator.api_url}/guilds/{guild}/channels")
    return guild, channels[0]["id"]


async def overwrites_everywhere(
    emulator: Emulator, http: aiohttp.ClientSession, guild: str, channel: str
) -> list[dict[str, Any]]:
    """The channel's overwrites, checked to be the same in GET channel and the guild list."""
    _, got = await call(http, "GET", f"{emulator.api_url}/channels/{channel}")
    _, listed = await call(http, "GET", f"{emulator.api_url}/guilds/{guild}/channels")
    in_list = next(c for c in listed if c["id"] == channel)
    assert in_list["permission_overwrites"] == got["permission_overwrites"]
    out: list[dict[str, Any]] = got["permission_overwrites"]
    return out


async def test_put_and_delete_one_overwrite(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    guild, channel = await setup(emulator, http)
    url = f"{emulator.api_url}/channels/{channel}/permissions/{guild}"
    status, body = await call(http, "PUT", url, {"type": ROLE, "allow": "0", "deny": 1024})
    assert (status, body) == (204, None)
    assert await overwrites_everywhere(emulator, http, guild, channel) == [
        {"id": guild, "type": ROLE, "allow": "0", "deny": "1024"}
    ]
    status, _ = await call(http, "PUT", url, {"type": ROLE, "allow": "1024", "deny": "0"})
    assert status == 204  # replaces, never doubles
    assert await overwrites_everywhere(emulator, http, guild, channel) == [
        {"id": guild, "type": ROLE, "allow": "1024", "deny": "0"}
    ]
    assert await call(http, "DELETE", url) == (204, None)
    assert await overwrites_everywhere(emulator, http, guild, channel) == []
    status, body = await call(http, "DELETE", url)
    assert (status, body["code"]) == (404, 10009)


async def test_put_overwrite_checks_its_type(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    guild, channel = await setup(emulator, http)
    url = f"{emulator.api_url}/channels/{channel}/permissions/{guild}"
    for body in ({"allow": "0"}, {"type": 3}):
        status, answer = await call(http, "PUT", url, body)
        assert (status, answer["code"]) == (400, 50035)
        assert "type" in answer["errors"]["permission_overwrites"]["0"]
    assert await overwrites_everywhere(emulator, http, guild, channel) == []


async def test_patch_channel_replaces_the_list(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    guild, channel = await setup(emulator, http)
    url = f"{emulator.api_url}/channels/{channel}"
    first = [{"id": guild, "type": ROLE, "deny": "1024"}, {"id": "42", "type": MEMBER}]
    status, answer = await call(http, "PATCH", url, {"permission_overwrites": first})
    assert status == 200
    expected = [
        {"id": guild, "type": ROLE, "allow": "0", "deny": "1024"},
        {"id": "42", "type": MEMBER, "allow": "0", "deny": "0"},
    ]
    assert answer["permission_overwrites"] == expected
    assert await overwrites_everywhere(emulator, http, guild, channel) == expected
    status, answer = await call(http, "PATCH", url, {"permission_overwrites": []})
    assert (status, answer["permission_overwrites"]) == (200, [])


async def test_threads_refuse_overwrites(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    guild, channel = await setup(emulator, http)
    status, thread = await call(
        http, "POST", f"{emulator.api_url}/channels/{channel}/threads", {"name": "t", "type": 11}
    )
    assert status == 201
    url = f"{emulator.api_url}/channels/{thread['id']}/permissions/{guild}"
    status, answer = await call(http, "PUT", url, {"type": ROLE, "deny": "1024"})
    assert (status, answer["code"]) == (400, 50024)


async def test_discord_py_set_permissions_round_trips(bot: Any, emulator: Emulator) -> None:
    guild = bot.guilds[0]
    channel = await guild.create_text_channel(
        "hidden", overwrites={guild.default_role: discord.PermissionOverwrite(view_channel=False)}
    )
    member = guild.me
    updated = bot.wait_for("guild_channel_update", timeout=5)
    await channel.set_permissions(member, send_messages=True, read_messages=True)
    _, after = await updated
    assert after.overwrites_for(member).send_messages is True
    fetched = await bot.fetch_channel(channel.id)
    assert fetched.overwrites_for(guild.default_role).view_channel is False
    assert fetched.overwrites_for(member).read_messages is True
    await channel.set_permissions(member, overwrite=None)  # DELETE
    fetched = await bot.fetch_channel(channel.id)
    assert member not in fetched.overwrites
