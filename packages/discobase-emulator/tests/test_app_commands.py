"""Application commands: discord.py's `CommandTree.sync` against the emulator, and the raw
routes with Discord's validation (names, options, limits, upsert, ids kept across syncs)."""

from __future__ import annotations

from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands

from discobase_emulator import Emulator

TOKEN = "bot-token-1"


async def call(
    http: aiohttp.ClientSession, method: str, url: str, body: Any = None
) -> tuple[int, Any]:
    async with http.request(method, url, json=body) as resp:
        data = await resp.json() if resp.content_type == "application/json" else None
        return resp.status, data


async def ids(emulator: Emulator, http: aiohttp.ClientSession) -> tuple[str, str]:
    """(application id, guild id)."""
    _, me = await call(http, "GET", emulator.api_url + "/users/@me")
    _, guilds = await call(http, "GET", emulator.api_url + "/users/@me/guilds")
    return me["id"], guilds[0]["id"]


def slash(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "description": f"the {name} command", "type": 1, **extra}


async def test_tree_sync_registers_guild_commands(bot: Any, emulator: Emulator) -> None:
    tree = app_commands.CommandTree(bot)
    guild = bot.guilds[0]

    @tree.command(name="count", description="Count the records of a table", guild=guild)
    @app_commands.default_permissions(manage_guild=True)
    async def count(interaction: discord.Interaction, table: str, limit: int = 10) -> None:
        """Never run here: the test only syncs."""

    admin = app_commands.Group(name="admin", description="discobase administration")

    @admin.command(name="reindex", description="Rebuild an index")
    async def reindex(interaction: discord.Interaction, table: str) -> None:
        """Never run here: the test only syncs."""

    tree.add_command(admin, guild=guild)
    synced = await tree.sync(guild=guild)
    assert sorted(c.name for c in synced) == ["admin", "count"]
    by_name = {c.name: c for c in synced}
    assert by_name["count"].guild_id == guild.id
    assert by_name["count"].default_member_permissions == discord.Permissions(manage_guild=True)
    assert [o.name for o in by_name["count"].options] == ["table", "limit"]
    fetched = await tree.fetch_commands(guild=guild)
    assert {c.id for c in fetched} == {c.id for c in synced}
    again = await tree.sync(guild=guild)  # a second sync keeps the ids
    assert {c.id for c in again} == {c.id for c in synced}
    assert await tree.fetch_commands() == []  # nothing global


async def test_raw_command_routes(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    app, guild = await ids(emulator, http)
    base = f"{emulator.api_url}/applications/{app}/guilds/{guild}/commands"
    status, created = await call(http, "POST", base, slash("stats", default_member_permissions=32))
    assert status == 201
    assert created["default_member_permissions"] == "32"  # a string, as Discord answers
    assert created["guild_id"] == guild
    assert created["application_id"] == app
    status, again = await call(http, "POST", base, slash("stats", description="changed"))
    assert status == 200  # same name and type: an upsert, same id
    assert again["id"] == created["id"]
    assert again["description"] == "changed"
    status, edited = await call(http, "PATCH", f"{base}/{created['id']}", {"description": "x"})
    assert (status, edited["description"], edited["name"]) == (200, "x", "stats")
    assert edited["version"] != created["version"]
    status, got = await call(http, "GET", f"{base}/{created['id']}")
    assert (status, got["description"]) == (200, "x")
    status, _ = await call(http, "DELETE", f"{base}/{created['id']}")
    assert status == 204
    status, body = await call(http, "GET", f"{base}/{created['id']}")
    assert (status, body["code"]) == (404, 10063)
    glob = f"{emulator.api_url}/applications/{app}/commands"
    status, made = await call(http, "PUT", glob, [slash("ping"), {"name": "Inspect", "type": 2}])
    assert status == 200
    assert [(c["name"], c["type"], c["description"]) for c in made] == [
        ("ping", 1, "the ping command"),
        ("Inspect", 2, ""),
    ]
    assert "guild_id" not in made[0]
    status, _ = await call(http, "PUT", glob, [])
    _, left = await call(http, "GET", glob)
    assert (status, left) == (200, [])
    status, body = await call(http, "GET", f"{emulator.api_url}/applications/1234/commands")
    assert (status, body["code"]) == (403, 50001)  # another application's commands


@pytest.mark.parametrize(
    ("command", "path", "code"),
    [
        (slash("Upper"), ["0", "name"], "APPLICATION_COMMAND_INVALID_NAME"),
        (slash("has space"), ["0", "name"], "APPLICATION_COMMAND_INVALID_NAME"),
        (slash("x" * 33), ["0", "name"], "BASE_TYPE_BAD_LENGTH"),
        ({"name": "nodesc", "type": 1}, ["0", "description"], "BASE_TYPE_REQUIRED"),
        (slash("long", description="d" * 101), ["0", "description"], "BASE_TYPE_BAD_LENGTH"),
        (
            slash(
                "opts",
                options=[{"type": 3, "name": f"o{i}", "description": "d"} for i in range(26)],
            ),
            ["0", "options"],
            "BASE_TYPE_MAX_LENGTH",
        ),
        (
            slash(
                "order",
                options=[
                    {"type": 3, "name": "a", "description": "d"},
                    {"type": 3, "name": "b", "description": "d", "required": True},
                ],
            ),
            ["0", "options", "1"],
            "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
        ),
        (
            slash(
                "dup",
                options=[
                    {"type": 3, "name": "a", "description": "d"},
                    {"type": 4, "name": "a", "description": "d"},
                ],
            ),
            ["0", "options", "1", "name"],
            "APPLICATION_COMMAND_OPTIONS_DUPLICATE_NAME",
        ),
        (
            slash(
                "choices",
                options=[
                    {
                        "type": 3,
                        "name": "c",
                        "description": "d",
                        "choices": [{"name": str(i), "value": str(i)} for i in range(26)],
                    }
                ],
            ),
            ["0", "options", "0", "choices"],
            "BASE_TYPE_MAX_LENGTH",
        ),
        (
            slash(
                "big",
                options=[
                    {
                        "type": 3,
                        "name": "c",
                        "description": "d",
                        "choices": [{"name": "n" * 100, "value": "v" * 100} for _ in range(25)],
                    }
                ],
            ),
            ["0"],
            "APPLICATION_COMMAND_TOO_LARGE",
        ),
        (
            slash("perms", default_member_permissions="lots"),
            ["0", "default_member_permissions"],
            "NUMBER_TYPE_COERCE",
        ),
    ],
)
async def test_invalid_commands(
    emulator: Emulator,
    http: aiohttp.ClientSession,
    command: dict[str, Any],
    path: list[str],
    code: str,
) -> None:
    app, guild = await ids(emulator, http)
    url = f"{emulator.api_url}/applications/{app}/guilds/{guild}/commands"
    status, body = await call(http, "PUT", url, [command])
    assert (status, body["code"], body["message"]) == (400, 50035, "Invalid Form Body")
    errors = body["errors"]
    for part in path:
        errors = errors[part]
    assert errors["_errors"][0]["code"] == code
    _, listed = await call(http, "GET", url)
    assert listed == []  # a rejected overwrite changes nothing


async def test_duplicates_and_limits(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    app, guild = await ids(emulator, http)
    url = f"{emulator.api_url}/applications/{app}/guilds/{guild}/commands"
    status, body = await call(http, "PUT", url, [slash("same"), slash("same")])
    assert status == 400
    assert (
        body["errors"]["1"]["name"]["_errors"][0]["code"] == "APPLICATION_COMMANDS_DUPLICATE_NAME"
    )
    # a slash command and a user command may share a name
    status, _ = await call(http, "PUT", url, [slash("same"), {"name": "same", "type": 2}])
    assert status == 200
    hundred = [slash(f"c{i}") for i in range(100)]
    status, made = await call(http, "PUT", url, hundred)
    assert (status, len(made)) == (200, 100)
    status, body = await call(http, "POST", url, slash("c100"))
    assert (status, body["code"]) == (400, 30032)
    status, body = await call(http, "PUT", url, [*hundred, slash("c100")])
    assert (status, body["code"]) == (400, 30032)
    users = [{"name": f"U{i}", "type": 2} for i in range(16)]
    status, body = await call(http, "PUT", url, users)
    assert (status, body["code"]) == (400, 30032)


async def test_commands_survive_a_restart(tmp_path: Any) -> None:
    async with (
        Emulator(tokens=[TOKEN], guilds=["g"], profile="unlimited", data_dir=tmp_path) as emu,
        aiohttp.ClientSession(headers={"Authorization": f"Bot {TOKEN}"}) as http,
    ):
        app, guild = await ids(emu, http)
        url = f"{emu.api_url}/applications/{app}/guilds/{guild}/commands"
        _, made = await call(http, "PUT", url, [slash("keep")])
    async with (
        Emulator(tokens=[TOKEN], guilds=["g"], profile="unlimited", data_dir=tmp_path) as emu,
        aiohttp.ClientSession(headers={"Authorization": f"Bot {TOKEN}"}) as http,
    ):
        _, listed = await call(http, "GET", url.replace(url.split("/api/v10")[0], emu.url))
        assert [c["id"] for c in listed] == [made[0]["id"]]
