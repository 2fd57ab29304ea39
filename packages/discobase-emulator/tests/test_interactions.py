"""Interactions end to end with an unmodified discord.py: a slash command with options, a
button on its answer, a modal, deferring and follow-ups; then the raw rules (one callback
within 3 seconds, a 15-minute token, message limits) and the member's permissions."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands

from discobase_emulator import Emulator

MANAGE_GUILD = 1 << 5
ADMINISTRATOR = 1 << 3
SEND_MESSAGES = 1 << 11
VIEW_CHANNEL = 1 << 10


async def call(
    http: aiohttp.ClientSession, method: str, url: str, body: Any = None, **kw: Any
) -> tuple[int, Any]:
    async with http.request(method, url, json=body, **kw) as resp:
        data = await resp.json() if resp.content_type == "application/json" else None
        return resp.status, data


class Answered:
    """Bot callbacks report here once they have answered, so tests wait on events, not time."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def put(self, name: str, value: Any = None) -> None:
        self.queue.put_nowait((name, value))

    async def next(self, name: str) -> Any:
        got, value = await asyncio.wait_for(self.queue.get(), 5)
        assert got == name
        return value


class Rename(discord.ui.Modal, title="Rename a table"):
    new_name: discord.ui.TextInput[Rename] = discord.ui.TextInput(
        label="New name", custom_id="new_name", max_length=20
    )

    def __init__(self, answered: Answered) -> None:
        super().__init__(custom_id="rename-modal")
        self.answered = answered

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"renamed to {self.new_name.value}")
        self.answered.put("modal", self.new_name.value)


class Confirm(discord.ui.View):
    def __init__(self, answered: Answered) -> None:
        super().__init__(timeout=60)
        self.answered = answered

    @discord.ui.button(label="Drop", style=discord.ButtonStyle.danger, custom_id="drop")
    async def drop(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        button.disabled = True
        await interaction.response.edit_message(content="dropped", view=self)
        self.answered.put("drop", interaction.user.id)

    @discord.ui.button(label="Refresh", custom_id="refresh")
    async def refresh(
        self, interaction: discord.Interaction, button: discord.ui.Button[Any]
    ) -> None:
        await interaction.response.defer()  # on a component: type 6, nothing changes yet
        self.answered.put("deferred", interaction.response.type)
        await interaction.edit_original_response(content="refreshed")  # the button's message
        self.answered.put("refresh")

    @discord.ui.button(label="Rename", custom_id="rename")
    async def rename(
        self, interaction: discord.Interaction, button: discord.ui.Button[Any]
    ) -> None:
        await interaction.response.send_modal(Rename(self.answered))
        self.answered.put("rename")


async def setup_tree(bot: Any, answered: Answered) -> app_commands.CommandTree[Any]:
    tree = app_commands.CommandTree(bot)
    guild = bot.guilds[0]

    @tree.command(name="drop", description="Drop a table", guild=guild)
    @app_commands.default_permissions(manage_guild=True)
    async def drop(interaction: discord.Interaction, table: str, rows: int = 0) -> None:
        perms = interaction.permissions
        await interaction.response.send_message(
            f"drop {table} ({rows} rows)?", ephemeral=True, view=Confirm(answered)
        )
        answered.put("command", (table, rows, perms.manage_guild, interaction.app_permissions))

    @tree.command(name="stats", description="Slow statistics", guild=guild)
    async def stats(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.followup.send("first")  # fills the "thinking" message
        await interaction.followup.send("secret", ephemeral=True)
        await interaction.edit_original_response(content="edited")
        answered.put("stats")

    await tree.sync(guild=guild)
    return tree


async def test_command_button_and_modal(bot: Any, emulator: Emulator) -> None:
    answered = Answered()
    await setup_tree(bot, answered)
    ctl = emulator.control
    guild = bot.guilds[0]
    channel = guild.text_channels[0]
    run = await ctl.run_command(guild.id, channel.id, "drop", {"table": "users", "rows": 3})
    table, rows, manage_guild, app_perms = await answered.next("command")
    assert (table, rows, manage_guild) == ("users", 3, True)  # the owner has everything
    assert app_perms.administrator
    seen = await ctl.interaction(run["id"])
    assert seen["response_type"] == 4
    assert seen["ephemeral"] is True
    original = seen["original"]
    assert original["content"] == "drop users (3 rows)?"
    assert original["flags"] & 64
    assert original["interaction_metadata"]["id"] == run["id"]
    buttons = [c["custom_id"] for row in original["components"] for c in row["components"]]
    assert buttons == ["drop", "refresh", "rename"]
    assert [m async for m in channel.history()] == []  # ephemeral: not in the channel

    click = await ctl.click(guild.id, channel.id, original["id"], "refresh")
    assert (
        await answered.next("deferred") == discord.InteractionResponseType.deferred_message_update
    )
    await answered.next("refresh")
    refreshed = await ctl.interaction(click["id"])
    assert refreshed["response_type"] == 6
    assert refreshed["original"]["id"] == original["id"]
    assert refreshed["original"]["content"] == "refreshed"
    assert refreshed["ephemeral"] is True

    click = await ctl.click(guild.id, channel.id, original["id"], "drop")
    assert await answered.next("drop") == guild.owner_id
    clicked = await ctl.interaction(click["id"])
    assert clicked["response_type"] == 7
    assert clicked["original"]["id"] == original["id"]
    assert clicked["original"]["content"] == "dropped"
    assert clicked["original"]["components"][0]["components"][0]["disabled"] is True
    with pytest.raises(RuntimeError, match="disabled"):
        await ctl.click(guild.id, channel.id, original["id"], "drop")

    await ctl.click(guild.id, channel.id, original["id"], "rename")
    await answered.next("rename")
    with pytest.raises(RuntimeError, match="required"):
        await ctl.submit_modal(guild.id, channel.id, "rename-modal", {})
    submit = await ctl.submit_modal(guild.id, channel.id, "rename-modal", {"new_name": "people"})
    assert submit["payload"]["data"]["components"][0]["components"][0]["custom_id"] == "new_name"
    assert await answered.next("modal") == "people"
    with pytest.raises(RuntimeError, match="no modal"):  # submitting closed it
        await ctl.submit_modal(guild.id, channel.id, "rename-modal", {"new_name": "again"})
    submitted = await ctl.interaction(submit["id"])
    assert submitted["original"]["content"] == "renamed to people"
    assert submitted["ephemeral"] is False
    history = [m async for m in channel.history()]
    assert [m.content for m in history] == ["renamed to people"]


async def test_defer_follow_ups_and_edit(bot: Any, emulator: Emulator) -> None:
    answered = Answered()
    await setup_tree(bot, answered)
    guild = bot.guilds[0]
    channel = guild.text_channels[0]
    run = await emulator.control.run_command(guild.id, channel.id, "stats")
    await answered.next("stats")
    seen = await emulator.control.interaction(run["id"])
    assert seen["response_type"] == 5
    assert seen["original"]["content"] == "edited"
    assert not seen["original"]["flags"] & 128  # no longer "thinking"
    assert [(f["content"], f["ephemeral"]) for f in seen["followups"]] == [("secret", True)]
    assert [m.content async for m in channel.history()] == ["edited"]


async def test_member_permissions_and_hidden_commands(bot: Any, emulator: Emulator) -> None:
    answered = Answered()
    await setup_tree(bot, answered)
    ctl = emulator.control
    guild = bot.guilds[0]
    channel = guild.text_channels[0]
    plain = await ctl.add_member(guild.id, "plain")
    with pytest.raises(RuntimeError, match="default_member_permissions"):
        await ctl.run_command(
            guild.id, channel.id, "drop", {"table": "t"}, user_id=plain["user"]["id"]
        )
    mods = await ctl.create_role(guild.id, "mods", MANAGE_GUILD)
    mod = await ctl.add_member(guild.id, "mod", roles=[mods["id"]])
    assert mod["roles"] == [mods["id"]]
    await ctl.set_bot_permissions(guild.id, VIEW_CHANNEL | SEND_MESSAGES)
    run = await ctl.run_command(
        guild.id, channel.id, "drop", {"table": "t"}, user_id=mod["user"]["id"]
    )
    _, _, manage_guild, app_perms = await answered.next("command")
    assert manage_guild is True
    assert not app_perms.administrator  # the bot's role no longer grants it
    member = run["payload"]["member"]
    assert member["roles"] == [mods["id"]]
    assert int(member["permissions"]) & MANAGE_GUILD
    assert not int(member["permissions"]) & ADMINISTRATOR
    assert int(run["payload"]["app_permissions"]) & SEND_MESSAGES
    answer = (await ctl.interaction(run["id"]))["original"]
    with pytest.raises(RuntimeError, match="only visible"):  # someone else's ephemeral answer
        await ctl.click(guild.id, channel.id, answer["id"], "drop", user_id=plain["user"]["id"])
    await ctl.set_bot_permissions(guild.id, ADMINISTRATOR)  # to manage the overwrites
    await channel.set_permissions(guild.default_role, view_channel=False)
    with pytest.raises(RuntimeError, match="cannot see"):
        await ctl.run_command(
            guild.id, channel.id, "drop", {"table": "t"}, user_id=mod["user"]["id"]
        )
    with pytest.raises(RuntimeError, match="no option"):
        await ctl.run_command(guild.id, channel.id, "drop", {"nope": 1})
    with pytest.raises(RuntimeError, match="required"):
        await ctl.run_command(guild.id, channel.id, "drop", {})
    with pytest.raises(RuntimeError, match="registered"):
        await ctl.run_command(guild.id, channel.id, "unknown")


# --- raw rules -----------------------------------------------------------------------------------


async def raw_interaction(emulator: Emulator, http: aiohttp.ClientSession) -> dict[str, Any]:
    """A slash command registered and run without a bot connected: the test answers it."""
    _, me = await call(http, "GET", emulator.api_url + "/users/@me")
    _, guilds = await call(http, "GET", emulator.api_url + "/users/@me/guilds")
    guild = guilds[0]["id"]
    _, channels = await call(http, "GET", f"{emulator.api_url}/guilds/{guild}/channels")
    url = f"{emulator.api_url}/applications/{me['id']}/guilds/{guild}/commands"
    await call(http, "PUT", url, [{"name": "ping", "description": "ping"}])
    run = await emulator.control.run_command(guild, channels[0]["id"], "ping")
    run["callback"] = f"{emulator.api_url}/interactions/{run['id']}/{run['token']}/callback"
    run["webhook"] = f"{emulator.api_url}/webhooks/{me['id']}/{run['token']}"
    return run


async def test_one_callback_within_three_seconds(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    run = await raw_interaction(emulator, http)
    status, _ = await call(http, "POST", run["webhook"] + "?wait=true", {"content": "early"})
    assert status == 404  # no follow-up before the interaction is acknowledged
    bad = run["callback"].replace(run["token"], "x" + run["token"][1:])
    status, body = await call(http, "POST", bad, {"type": 4, "data": {"content": "hi"}})
    assert (status, body["code"]) == (404, 10062)
    status, body = await call(http, "POST", run["callback"], {"type": 7, "data": {}})
    assert (status, body["code"]) == (400, 50035)  # update needs a component's message
    status, body = await call(
        http,
        "POST",
        run["callback"] + "?with_response=true",
        {"type": 4, "data": {"content": "hi"}},
    )
    assert status == 200
    assert body["interaction"]["id"] == run["id"]
    assert body["resource"]["message"]["content"] == "hi"
    status, body = await call(
        http, "POST", run["callback"], {"type": 4, "data": {"content": "again"}}
    )
    assert (status, body["code"], body["message"]) == (
        400,
        40060,
        "Interaction has already been acknowledged.",
    )
    late = await raw_interaction(emulator, http)
    await emulator.control.age_interaction(late["id"], 3.5)
    status, body = await call(http, "POST", late["callback"], {"type": 5})
    assert (status, body["code"]) == (404, 10062)


async def test_token_lasts_fifteen_minutes(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    run = await raw_interaction(emulator, http)
    status, _ = await call(http, "POST", run["callback"], {"type": 5, "data": {"flags": 64}})
    assert status == 204
    status, original = await call(http, "GET", run["webhook"] + "/messages/@original")
    assert status == 200
    assert original["flags"] == 64 | 128  # ephemeral and loading
    status, edited = await call(
        http, "PATCH", run["webhook"] + "/messages/@original", {"content": "done"}
    )
    assert (status, edited["content"], edited["flags"]) == (200, "done", 64)
    status, follow = await call(http, "POST", run["webhook"] + "?wait=true", {"content": "more"})
    assert status == 200
    status, _ = await call(http, "DELETE", f"{run['webhook']}/messages/{follow['id']}")
    assert status == 204
    status, body = await call(http, "GET", f"{run['webhook']}/messages/{follow['id']}")
    assert (status, body["code"]) == (404, 10008)
    await emulator.control.age_interaction(run["id"], 14 * 60)
    status, _ = await call(http, "GET", run["webhook"] + "/messages/@original")
    assert status == 200
    await emulator.control.age_interaction(run["id"], 61)
    status, body = await call(http, "POST", run["webhook"] + "?wait=true", {"content": "late"})
    assert (status, body["code"]) == (401, 50027)
    status, body = await call(http, "GET", run["webhook"] + "/messages/@original")
    assert (status, body["code"]) == (401, 50027)


async def test_responses_get_message_limits(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    run = await raw_interaction(emulator, http)
    fields = [{"name": "n", "value": "v"} for _ in range(26)]
    too_many = {"type": 4, "data": {"embeds": [{"title": "t", "fields": fields}]}}
    status, body = await call(http, "POST", run["callback"], too_many)
    assert (status, body["code"]) == (400, 50035)
    assert "fields" in body["errors"]["embeds"]["0"]
    huge = {"embeds": [{"description": "d" * 4000}, {"description": "d" * 2001}]}
    status, body = await call(http, "POST", run["callback"], {"type": 4, "data": huge})
    assert (status, body["code"]) == (400, 50035)
    status, body = await call(http, "POST", run["callback"], {"type": 4, "data": {}})
    assert (status, body["code"]) == (400, 50006)
    dup = [
        {
            "type": 1,
            "components": [
                {"type": 2, "style": 1, "label": "a", "custom_id": "same"},
                {"type": 2, "style": 1, "label": "b", "custom_id": "same"},
            ],
        }
    ]
    status, body = await call(
        http, "POST", run["callback"], {"type": 4, "data": {"components": dup}}
    )
    assert (status, body["code"]) == (400, 50035)
    status, _ = await call(http, "POST", run["callback"], {"type": 4, "data": {"content": "ok"}})
    assert status == 204  # refused answers did not use up the acknowledgement
    status, body = await call(http, "POST", run["webhook"] + "?wait=true", {"content": "x" * 2001})
    assert (status, body["code"]) == (400, 50035)
    status, body = await call(
        http, "PATCH", run["webhook"] + "/messages/@original", {"embeds": [{"title": "t" * 257}]}
    )
    assert (status, body["code"]) == (400, 50035)


async def test_global_group_with_resolved_options(bot: Any, emulator: Emulator) -> None:
    """A global command group; users, roles and channels arrive resolved, as discord.py's
    transformers need them."""
    answered = Answered()
    tree = app_commands.CommandTree(bot)
    admin = app_commands.Group(name="admin", description="discobase administration")

    @admin.command(name="grant", description="Let a member edit a table")
    async def grant(
        interaction: discord.Interaction,
        member: discord.Member,
        role: discord.Role,
        where: discord.TextChannel,
        level: app_commands.Range[int, 1, 3] = 1,
    ) -> None:
        await interaction.response.send_message("granted", ephemeral=True)
        answered.put("grant", (member, role, where, level))

    tree.add_command(admin)
    await tree.sync()
    ctl = emulator.control
    guild = bot.guilds[0]
    channel = guild.text_channels[0]
    editors = await ctl.create_role(guild.id, "editors", 0)
    alice = await ctl.add_member(guild.id, "alice", roles=[editors["id"]])
    options = {
        "member": alice["user"]["id"],
        "role": editors["id"],
        "where": str(channel.id),
        "level": 2,
    }
    run = await ctl.run_command(guild.id, channel.id, "admin grant", options)
    member, role, where, level = await answered.next("grant")
    assert isinstance(member, discord.Member)
    assert (member.name, [r.id for r in member.roles if not r.is_default()]) == (
        "alice",
        [int(editors["id"])],
    )
    assert (role.id, where.id, level) == (int(editors["id"]), channel.id, 2)
    data = run["payload"]["data"]
    assert "guild_id" not in data  # a global command
    assert data["options"][0]["type"] == 1
    assert data["options"][0]["name"] == "grant"
    with pytest.raises(RuntimeError, match="subcommand"):
        await ctl.run_command(guild.id, channel.id, "admin", {})
    with pytest.raises(RuntimeError, match="does not fit"):
        await ctl.run_command(guild.id, channel.id, "admin grant", {**options, "level": "high"})
    # the ephemeral answer's buttons (had it any) are the asker's alone; so is the message
    seen = await ctl.interaction(run["id"])
    assert seen["ephemeral"] is True
    assert seen["original"]["interaction_metadata"]["user"]["id"] == str(guild.owner_id)


async def test_context_menus_and_autocomplete(bot: Any, emulator: Emulator) -> None:
    answered = Answered()
    tree = app_commands.CommandTree(bot)
    guild = bot.guilds[0]
    channel = guild.text_channels[0]

    @tree.context_menu(name="Inspect record", guild=guild)
    async def inspect(interaction: discord.Interaction, message: discord.Message) -> None:
        await interaction.response.send_message(f"record {message.content}", ephemeral=True)
        answered.put("inspect", message.id)

    @tree.context_menu(name="Grant access", guild=guild)
    async def grant(interaction: discord.Interaction, member: discord.Member) -> None:
        await interaction.response.send_message(f"granted {member.name}")
        answered.put("grant", member.id)

    @tree.command(name="find", description="Find records", guild=guild)
    async def find(interaction: discord.Interaction, table: str) -> None:
        """Never run here: the test only autocompletes."""

    @find.autocomplete("table")
    async def tables(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        names = ["users", "posts", "uploads"]
        answered.put("typed", current)
        return [app_commands.Choice(name=n, value=n) for n in names if n.startswith(current)]

    await tree.sync(guild=guild)
    ctl = emulator.control
    record = await ctl.post_as_user(channel.id, "peter")
    run = await ctl.run_command(
        guild.id, channel.id, "Inspect record", command_type=3, target_id=record["id"]
    )
    assert await answered.next("inspect") == int(record["id"])
    seen = await ctl.interaction(run["id"])
    assert seen["original"]["content"] == "record peter"
    assert seen["original"]["type"] == 23  # a context-menu command's answer
    someone = await ctl.add_member(guild.id, "someone")
    await ctl.run_command(
        guild.id, channel.id, "Grant access", command_type=2, target_id=someone["user"]["id"]
    )
    assert await answered.next("grant") == int(someone["user"]["id"])
    typed = await ctl.autocomplete(guild.id, channel.id, "find", "table", {"table": "u"})
    assert await answered.next("typed") == "u"
    option = typed["payload"]["data"]["options"][0]
    assert (option["value"], option["focused"]) == ("u", True)
    seen = await ctl.interaction(typed["id"], wait=5)  # the choices are sent after `tables`
    assert seen["response_type"] == 8
    assert [c["value"] for c in seen["callback"]["data"]["choices"]] == ["users", "uploads"]
    assert seen["original"] is None
    with pytest.raises(RuntimeError, match="type 2"):
        await ctl.run_command(guild.id, channel.id, "Inspect record", command_type=2, target_id=1)


async def test_answers_need_no_channel_permission(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """Discord lets a bot answer wherever it was invoked, even where it may not send."""
    run = await raw_interaction(emulator, http)
    guild, channel = run["payload"]["guild_id"], run["payload"]["channel_id"]
    await emulator.control.set_bot_permissions(guild, 0)
    await emulator.control.edit_role(guild, guild, VIEW_CHANNEL | (1 << 31))
    url = f"{emulator.api_url}/channels/{channel}/messages"
    status, body = await call(http, "POST", url, {"content": "direct"})
    assert (status, body["code"]) == (403, 50013)
    status, _ = await call(http, "POST", run["callback"], {"type": 4, "data": {"content": "a"}})
    assert status == 204
    status, follow = await call(http, "POST", run["webhook"], {"content": "b"})
    assert (status, follow["content"]) == (200, "b")  # wait is implied for follow-ups
    status, _ = await call(http, "DELETE", run["webhook"] + "/messages/@original")
    assert status == 204
    status, body = await call(http, "GET", run["webhook"] + "/messages/@original")
    assert (status, body["code"]) == (404, 10008)
    seen = await emulator.control.interaction(run["id"])
    assert seen["original"] is None
    assert [f["content"] for f in seen["followups"]] == ["b"]
