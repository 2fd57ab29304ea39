"""The admin slash commands (`Database(..., commands=True)`), driven through the emulator's
interaction API as Discord members: every subcommand as an administrator and as a plain
member, find's pages over 160 records (and after a restart of the bot), malformed values,
delete's confirmation, reset's typed confirmation, registration only when it changed, and
embeds within Discord's limits whatever the records hold."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import discord
import pytest
from discobase_test_support import TOKEN, MakeDb, running_bot, wait_until
from discord import app_commands
from discord.ext import commands

import discobase
from discobase._commands import (
    EMBED_FIELDS,
    EMBED_TOTAL,
    FIELD_VALUE_MAX,
    MARK,
    REFUSAL,
    fit_embed,
    split_conditions,
)
from discobase._redirect import route_client
from discobase_core.state import KEY_MASK
from discobase_emulator import Emulator, EmulatorControl

ADMINISTRATOR = 1 << 3
SUBCOMMANDS = ["check", "delete", "find", "insert", "reset", "schema", "stats", "update"]
COMMAND_ROUTES = (
    "POST /applications/{application_id}/guilds/{guild_id}/commands",
    "PUT /applications/{application_id}/guilds/{guild_id}/commands",
    "PUT /applications/{application_id}/commands",
)


class Fields(discobase.Table):
    name: str
    age: int
    note: str = ""


@dataclass
class Server:
    """An open database with its admin commands, and the people who use them."""

    db: discobase.Database
    table: type[Fields]
    ctl: EmulatorControl
    guild_id: int
    channel_id: int
    admin: str  # a member whose role has Administrator (not the server's owner)
    plain: str  # a member without any permission beyond @everyone's


def users(db: discobase.Database) -> type[Fields]:
    @db.table
    class User(Fields):
        pass

    return User


async def open_server(make_db: MakeDb, emu: Emulator, **kwargs: Any) -> Server:
    db = make_db(commands=True, **kwargs)
    table = users(db)
    db.login_task(TOKEN)
    await db.wait_ready()
    assert db.guild is not None
    general = discord.utils.get(db.guild.text_channels, name="general")
    assert general is not None
    ctl = emu.control
    role = await ctl.create_role(db.guild.id, "admins", ADMINISTRATOR)
    admin = await ctl.add_member(db.guild.id, "alice", roles=[role["id"]])
    plain = await ctl.add_member(db.guild.id, "bob")
    return Server(db, table, ctl, db.guild.id, general.id, admin["user"]["id"], plain["user"]["id"])


@pytest.fixture
async def server(make_db: MakeDb, emu: Emulator) -> Server:
    return await open_server(make_db, emu)


async def settle(
    ctl: EmulatorControl, iid: str, done: Callable[[dict[str, Any]], bool] | None = None
) -> dict[str, Any]:
    """What the bot answered once `done` holds (default: acknowledged and no longer
    "thinking"); the bot answers asynchronously, so this polls the emulator."""

    def finished(seen: dict[str, Any]) -> bool:
        original = seen["original"]
        if seen["callback"] is None:
            return False
        if seen["response_type"] == 9:
            return True
        return original is not None and not original["flags"] & 128

    check = done or finished
    async with asyncio.timeout(30):
        while True:
            seen = await ctl.interaction(iid, wait=5)
            if check(seen):
                return seen
            await asyncio.sleep(0.02)


async def run(
    s: Server, command: str, options: dict[str, Any] | None = None, *, user: str | None = None
) -> dict[str, Any]:
    """Run `/discobase <command>` as `user` (default: the administrator); the settled answer."""
    started = await s.ctl.run_command(
        s.guild_id, s.channel_id, f"discobase {command}", options, user_id=user or s.admin
    )
    return await settle(s.ctl, started["id"])


async def click(
    s: Server,
    message: dict[str, Any],
    custom_id: str,
    done: Callable[[dict[str, Any]], bool],
    *,
    user: str | None = None,
) -> dict[str, Any]:
    started = await s.ctl.click(
        s.guild_id, s.channel_id, message["id"], custom_id, user_id=user or s.admin
    )
    return await settle(s.ctl, started["id"], done)


async def submit(
    s: Server, seen: dict[str, Any], value: str, *, user: str | None = None
) -> dict[str, Any]:
    """Submit the modal the answer `seen` opened, its one text input set to `value`."""
    modal = seen["callback"]["data"]
    text_input = modal["components"][0]["components"][0]["custom_id"]
    started = await s.ctl.submit_modal(
        s.guild_id, s.channel_id, modal["custom_id"], {text_input: value}, user_id=user or s.admin
    )
    return await settle(s.ctl, started["id"])


def modal_text(seen: dict[str, Any]) -> str:
    assert seen["response_type"] == 9
    value: str = seen["callback"]["data"]["components"][0]["components"][0].get("value", "")
    return value


def embed_of(seen: dict[str, Any]) -> dict[str, Any]:
    assert seen["ephemeral"] is True
    embeds = seen["original"]["embeds"]
    assert len(embeds) == 1, seen["original"]
    embed: dict[str, Any] = embeds[0]
    return embed


def buttons(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        button["label"]: button for row in message["components"] for button in row["components"]
    }


def footer(seen: dict[str, Any]) -> str:
    text: str = embed_of(seen)["footer"]["text"]
    return text


def ids_on(seen: dict[str, Any]) -> list[int]:
    return [int(field["name"].removeprefix("id ")) for field in embed_of(seen)["fields"]]


def on_page(number: int, pages: int) -> Callable[[dict[str, Any]], bool]:
    return lambda seen: footer(seen) == f"Page {number} of {pages}"


def refused(seen: dict[str, Any]) -> bool:
    return seen["ephemeral"] is True and seen["original"]["content"] == REFUSAL


async def fill(table: type[Fields], count: int) -> list[Fields]:
    records = [table(name=f"user{n}", age=n % 10) for n in range(count)]
    await asyncio.gather(*(record.save() for record in records))
    return records


async def let_everyone_run(db: discobase.Database) -> None:
    """What a server admin can do in the integration settings (and a client can fake):
    show /discobase to every member. The handlers must still refuse them."""
    bot, guild = db.bot, db.guild
    assert bot is not None
    assert bot.application_id is not None
    assert guild is not None
    present = await bot.http.get_guild_commands(bot.application_id, guild.id)
    command = next(c for c in present if c["name"] == "discobase")
    route = discord.http.Route(  # discord.py's edit_guild_command drops this field
        "PATCH",
        "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}",
        application_id=bot.application_id,
        guild_id=guild.id,
        command_id=command["id"],
    )
    edited = await bot.http.request(route, json={"default_member_permissions": None})
    assert edited["default_member_permissions"] is None


# -- registration ---------------------------------------------------------------------------


async def test_registered_once_as_an_admin_only_guild_command(
    make_db: MakeDb, emu: Emulator
) -> None:
    mark = await emu.control.mark()
    s = await open_server(make_db, emu)
    bot = s.db.bot
    assert bot is not None
    assert bot.application_id is not None
    assert await bot.http.get_global_commands(bot.application_id) == []
    (found,) = await bot.http.get_guild_commands(bot.application_id, s.guild_id)
    command: dict[str, Any] = dict(found)
    assert command["name"] == "discobase"
    assert command["default_member_permissions"] == str(ADMINISTRATOR)
    assert sorted(o["name"] for o in command["options"]) == SUBCOMMANDS
    routes = (await emu.control.metrics(since=mark))["by_route"]
    assert [routes.get(r, 0) for r in COMMAND_ROUTES] == [1, 0, 0]  # one upsert, no sync

    await s.db.close()
    mark = await emu.control.mark()
    again = make_db(commands=True)
    users(again)
    again.login_task(TOKEN)
    await again.wait_ready()
    routes = (await emu.control.metrics(since=mark))["by_route"]
    assert [routes.get(r, 0) for r in COMMAND_ROUTES] == [0, 0, 0]  # unchanged: no request

    await let_everyone_run(again)  # Discord's copy now differs from discobase's
    await again.close()
    mark = await emu.control.mark()
    third = make_db(commands=True)
    users(third)
    third.login_task(TOKEN)
    await third.wait_ready()
    routes = (await emu.control.metrics(since=mark))["by_route"]
    assert [routes.get(r, 0) for r in COMMAND_ROUTES] == [1, 0, 0]
    assert third.bot is not None
    (found,) = await third.bot.http.get_guild_commands(bot.application_id, s.guild_id)
    assert found["default_member_permissions"] == str(ADMINISTRATOR)


async def test_a_users_own_discobase_command_is_not_replaced(
    make_db: MakeDb, emu: Emulator
) -> None:
    db = make_db(commands=True)

    class Client(discord.Client):
        async def setup_hook(self) -> None:
            db.attach(self)

    client = Client(intents=discord.Intents.default())
    route_client(client.http, emu.url)
    tree = app_commands.CommandTree(client)
    guild = next(iter(emu.core.state.store.guilds.values()))

    @tree.command(name="discobase", description="mine", guild=discord.Object(guild.id))
    async def mine(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("mine")

    task = asyncio.create_task(client.start(TOKEN))
    try:
        await wait_until(lambda: db.bot is client)  # attached in setup_hook
        with pytest.raises(discobase.DatabaseTableError, match="already has a /discobase"):
            await db.wait_ready()
        assert tree.get_command("discobase", guild=discord.Object(guild.id)) is mine
    finally:
        await client.close()
        with contextlib.suppress(Exception):
            await task


# -- find -------------------------------------------------------------------------------------


async def test_find_pages_through_160_records(server: Server) -> None:
    s = server
    records = await fill(s.table, 160)
    seen = await run(s, "find", {"table": "User"})
    embed = embed_of(seen)
    assert embed["title"] == "User: 160 records"
    assert footer(seen) == "Page 1 of 16"
    assert embed["fields"][0]["value"] == 'name: user0\nage: 0\nnote: ""'
    page = buttons(seen["original"])
    assert page["Previous"]["disabled"] is True
    assert page["Next"]["disabled"] is False
    shown = ids_on(seen)
    message = seen["original"]
    for number in range(2, 17):
        seen = await click(
            s,
            message,
            buttons(message)["Next"]["custom_id"],
            on_page(number, 16),
        )
        message = seen["original"]
        shown += ids_on(seen)
    assert shown == [record.disco_id for record in records]  # each once, oldest first
    assert buttons(message)["Next"]["disabled"] is True
    seen = await click(
        s,
        message,
        buttons(message)["Previous"]["custom_id"],
        lambda seen: footer(seen) == "Page 15 of 16",
    )
    assert ids_on(seen) == [r.disco_id for r in records[140:150]]

    seen = await run(s, "find", {"table": "user", "where": "age=7"})  # any case
    assert embed_of(seen)["title"] == "User: 16 records"
    assert embed_of(seen)["description"] == "where age=7"
    assert footer(seen) == "Page 1 of 2"
    seen = await click(
        s,
        seen["original"],
        buttons(seen["original"])["Next"]["custom_id"],
        lambda seen: footer(seen) == "Page 2 of 2",
    )
    assert ids_on(seen) == [r.disco_id for r in records if r.age == 7][10:]


async def test_find_with_several_conditions_and_spaces(server: Server) -> None:
    s = server
    await s.table(name="Peter Smith", age=42).save()
    await s.table(name="Peter Smith", age=41).save()
    seen = await run(s, "find", {"table": "User", "where": "name=Peter Smith age=42"})
    assert embed_of(seen)["title"] == "User: 1 record"
    assert embed_of(seen)["fields"][0]["value"].startswith("name: Peter Smith\nage: 42")
    assert "components" not in seen["original"] or not seen["original"]["components"]


@pytest.mark.parametrize(
    ("where", "says"),
    [
        ("age=forty", "'forty' is not a valid value for field 'age' of type int"),
        ("color=red", "User has no field 'color'"),
        ("just words", "'just words' is not FIELD=VALUE"),
    ],
)
async def test_find_with_malformed_conditions(server: Server, where: str, says: str) -> None:
    seen = await run(server, "find", {"table": "User", "where": where})
    assert seen["ephemeral"] is True
    assert "QueryError" in seen["original"]["content"]
    assert says in seen["original"]["content"]


async def test_find_in_an_unknown_table(server: Server) -> None:
    seen = await run(server, "find", {"table": "Nope"})
    assert seen["ephemeral"] is True
    assert "has no table 'Nope' (tables: User)" in seen["original"]["content"]


async def test_find_keeps_embeds_within_discords_limits(server: Server) -> None:
    s = server
    big = [s.table(name="x" * 3000, age=n, note="*" * 900) for n in range(12)]
    await asyncio.gather(*(record.save() for record in big))
    seen = await run(s, "find", {"table": "User"})  # the emulator refuses oversize embeds
    embed = embed_of(seen)
    assert len(embed["fields"]) == 10
    assert all(len(f["value"]) <= FIELD_VALUE_MAX for f in embed["fields"])
    assert all(f["value"].endswith(MARK) for f in embed["fields"])
    assert footer(seen) == "Page 1 of 2"


def test_fit_embed_cuts_everything_visibly() -> None:
    fields = [(f"name {n}" * 100, "v" * 5000) for n in range(40)]
    embed = fit_embed("t" * 1000, "d" * 9000, fields, "f" * 3000)
    parts = [embed.title or "", embed.description or "", embed.footer.text or ""]
    parts += [f"{f.name}{f.value}" for f in embed.fields]
    assert sum(map(len, parts)) <= EMBED_TOTAL
    assert len(embed.fields) == EMBED_FIELDS
    assert embed.fields[-1].value == "16 more not shown"
    assert (embed.title or "").endswith(MARK)
    assert len(embed.title or "") == 256
    assert (embed.description or "").endswith(MARK)
    assert all((f.value or "").endswith(MARK) for f in embed.fields[:-1])
    small = fit_embed("title", "", [("a", "b")])
    assert (small.title, small.fields[0].name, small.fields[0].value) == ("title", "a", "b")


def test_conditions_split_before_field_names_only() -> None:
    assert split_conditions(Fields, "") == []
    assert split_conditions(Fields, "name=Peter Smith age=42") == ["name=Peter Smith", "age=42"]
    assert split_conditions(Fields, "note=a b=c  age=1") == ["note=a b=c", "age=1"]
    assert split_conditions(Fields, 'note=["x", "y"]') == ['note=["x", "y"]']


# -- insert and update ------------------------------------------------------------------------


async def test_insert_through_a_form(server: Server) -> None:
    s = server
    seen = await run(s, "insert", {"table": "User"})
    assert modal_text(seen) == "name=\nage=\nnote="  # required fields blank, defaults given
    assert seen["callback"]["data"]["title"] == "Insert into User"
    done = await submit(s, seen, "name=Ann Lee\nage=41\n")
    assert done["original"]["content"].startswith("Inserted record ")
    (ann,) = await s.table.find(name="Ann Lee")
    assert (ann.age, ann.note) == (41, "")
    assert "fields" not in embed_of(done)
    assert embed_of(done)["description"] == 'name: Ann Lee\nage: 41\nnote: ""'


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("name=Bo\nage=forty", "'forty' is not a valid value for field 'age' of type int"),
        ("name=Bo", "invalid User record: age: Field required"),
        ("name=Bo\nage=3\ncolor=red", "User has no field 'color'"),
        ("name=Bo\nage 3", "'age 3' is not FIELD=VALUE"),
        ("name=Bo\nname=Al\nage=3", "field 'name' is given twice"),
    ],
)
async def test_insert_refuses_malformed_values(server: Server, text: str, says: str) -> None:
    s = server
    seen = await run(s, "insert", {"table": "User"})
    done = await submit(s, seen, text)
    assert done["ephemeral"] is True
    assert says in done["original"]["content"]
    assert await s.table.count() == 0


async def test_update_through_a_form_with_the_current_values(server: Server) -> None:
    s = server
    (record,) = await fill(s.table, 1)
    seen = await run(s, "update", {"table": "User", "id": record.disco_id})
    assert modal_text(seen) == "name=user0\nage=0\nnote="
    done = await submit(s, seen, "age=30\nnote=moved")
    assert done["original"]["content"] == f"Updated record {record.disco_id} of User."
    (stored,) = await s.table.find(name="user0")
    assert (stored.disco_id, stored.age, stored.note) == (record.disco_id, 30, "moved")

    seen = await run(s, "update", {"table": "User", "id": record.disco_id})
    done = await submit(s, seen, "age=thirty")
    assert "'thirty' is not a valid value for field 'age'" in done["original"]["content"]
    assert (await s.table.find(name="user0"))[0].age == 30

    seen = await run(s, "update", {"table": "User", "id": 9999})
    assert seen["response_type"] == 4  # no form: an error
    assert "NotFoundError" in seen["original"]["content"]
    assert "no record with id 9999" in seen["original"]["content"]


# -- delete and reset -------------------------------------------------------------------------


async def test_delete_after_confirmation(server: Server) -> None:
    s = server
    first, second = await fill(s.table, 2)
    seen = await run(s, "delete", {"table": "User", "id": first.disco_id})
    assert embed_of(seen)["title"] == f"Delete User {first.disco_id}?"
    message = seen["original"]
    assert sorted(buttons(message)) == ["Cancel", "Delete"]
    assert await s.table.count() == 2  # nothing yet

    cancelled = await click(
        s, message, buttons(message)["Cancel"]["custom_id"], lambda x: x["callback"] is not None
    )
    assert cancelled["original"]["content"] == "Not deleted."
    assert cancelled["original"]["components"] == []
    assert await s.table.count() == 2

    seen = await run(s, "delete", {"table": "User", "id": first.disco_id})
    message = seen["original"]
    deleted = await click(
        s,
        message,
        buttons(message)["Delete"]["custom_id"],
        lambda x: x["original"]["content"].startswith("Deleted"),
    )
    assert deleted["original"]["content"] == f"Deleted record {first.disco_id} of User."
    assert [r.disco_id for r in await s.table.find()] == [second.disco_id]

    seen = await run(s, "delete", {"table": "User", "id": first.disco_id})  # gone already
    assert "components" not in seen["original"] or not seen["original"]["components"]
    assert f"no record with id {first.disco_id}" in seen["original"]["content"]


async def test_reset_needs_the_databases_name_typed(server: Server) -> None:
    s = server
    await fill(s.table, 30)
    seen = await run(s, "reset", {"table": "User"})
    assert seen["callback"]["data"]["title"] == "Reset User"
    asked = seen["callback"]["data"]["components"][0]["components"][0]
    assert (asked["label"], asked["placeholder"]) == (
        "Type the database's name to confirm",
        s.db.name,
    )
    done = await submit(s, seen, "yes")
    assert "Not reset" in done["original"]["content"]
    assert "Nothing was deleted" in done["original"]["content"]
    assert await s.table.count() == 30

    seen = await run(s, "reset", {"table": "User"})
    done = await submit(s, seen, s.db.name)
    assert done["original"]["content"] == "Reset User: deleted 30 records."
    assert await s.table.count() == 0
    await s.table(name="after", age=1).save()  # the table still works
    assert await s.table.count() == 1


# -- schema, stats, check ---------------------------------------------------------------------


async def test_schema_stats_and_check(server: Server) -> None:
    s = server
    await fill(s.table, 3)
    seen = await run(s, "schema", {"table": "User"})
    fields = {f["name"]: f["value"] for f in embed_of(seen)["fields"]}
    assert fields == {"name": "str", "age": "int", "note": 'str = ""'}
    seen = await run(s, "schema")
    assert embed_of(seen)["title"] == "1 tables"
    assert embed_of(seen)["fields"][0]["name"] == "User (3 records)"

    seen = await run(s, "stats", {"table": "User"})
    stats = {f["name"]: f["value"] for f in embed_of(seen)["fields"]}
    assert stats["records"] == "3"
    assert int(stats["bytes (live records)"]) > 0
    assert int(stats["bytes stored (messages)"]) >= int(stats["bytes (live records)"])
    assert s.db.guild is not None
    assert stats["channels used in the server"] == f"{len(s.db.guild.channels)} of 500"
    seen = await run(s, "stats")
    stats = {f["name"]: f["value"] for f in embed_of(seen)["fields"]}
    assert stats["User"] == "3 records"
    assert embed_of(seen)["title"] == f"{s.db.name}: 3 records"

    seen = await run(s, "check")
    assert embed_of(seen)["title"] == "check: ok"
    assert embed_of(seen)["fields"][0]["name"] == "User: 3 of 3 records checked, ok"


async def test_check_reports_what_the_clis_check_finds(server: Server) -> None:
    s = server
    (record,) = await fill(s.table, 1)
    store = s.table._store()
    assert record.disco_id is not None
    lost = store.state.indexes["age"].remove(store.hasher.key("age", 0) & KEY_MASK, record.disco_id)
    assert lost  # an index entry lost
    seen = await run(s, "check", {"table": "User"})
    assert embed_of(seen)["title"] == "check: problems found"
    field = embed_of(seen)["fields"][0]
    assert field["name"] == "User: 1 of 1 records checked, 1 problems"
    assert field["value"] == f"record {record.disco_id}: not found through the index of age"


# -- who may ----------------------------------------------------------------------------------


COMMANDS: list[tuple[str, dict[str, Any]]] = [
    ("find", {"table": "User"}),
    ("insert", {"table": "User"}),
    ("update", {"table": "User", "id": 0}),
    ("delete", {"table": "User", "id": 0}),
    ("schema", {}),
    ("stats", {}),
    ("check", {}),
    ("reset", {"table": "User"}),
]


async def test_every_command_refuses_a_plain_member(server: Server) -> None:
    s = server
    await fill(s.table, 2)
    for command, options in COMMANDS:  # Discord does not show them the command
        with pytest.raises(RuntimeError, match="default_member_permissions"):
            await s.ctl.run_command(
                s.guild_id, s.channel_id, f"discobase {command}", options, user_id=s.plain
            )
    await let_everyone_run(s.db)
    for command, options in COMMANDS:  # shown to everyone: the handler refuses
        seen = await run(s, command, options, user=s.plain)
        assert refused(seen), (command, seen)
        assert seen["response_type"] == 4  # no form opened
    assert await s.table.count() == 2


async def test_buttons_refuse_a_member_who_lost_administrator(server: Server) -> None:
    s = server
    records = await fill(s.table, 15)
    page = await run(s, "find", {"table": "User"})
    confirm = await run(s, "delete", {"table": "User", "id": records[0].disco_id})
    form = await run(s, "insert", {"table": "User"})
    await s.ctl.set_member_roles(s.guild_id, s.admin, [])  # no longer an administrator
    message = page["original"]
    seen = await click(
        s, message, buttons(message)["Next"]["custom_id"], lambda x: x["callback"] is not None
    )
    assert refused(seen)
    message = confirm["original"]
    for label in ("Delete", "Cancel"):
        seen = await click(
            s, message, buttons(message)[label]["custom_id"], lambda x: x["callback"] is not None
        )
        assert refused(seen)
    seen = await submit(s, form, "name=Eve\nage=1")
    assert refused(seen)
    assert await s.table.count() == 15
    current = await s.ctl.interaction(page["id"])
    assert footer({**current, "ephemeral": True}) == "Page 1 of 2"  # the page did not turn


async def test_the_applications_owner_may_run_them(make_db: MakeDb, emu: Emulator) -> None:
    """An attached commands.Bot whose owner is a member without Administrator: the owner
    may, another plain member may not; the bot's own slash command keeps working."""
    db = make_db(commands=True)
    table = users(db)
    bot = commands.Bot(command_prefix="!", intents=discord.Intents.default())
    route_client(bot.http, emu.url)
    guild = next(iter(emu.core.state.store.guilds.values()))
    owner = await emu.control.add_member(guild.id, "carol")
    stranger = await emu.control.add_member(guild.id, "dave")
    bot.owner_id = int(owner["user"]["id"])

    @bot.tree.command(name="hello", description="the bot's own", guild=discord.Object(guild.id))
    async def hello(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("hello")

    async with running_bot(bot):
        await wait_until(bot.is_ready)
        await bot.tree.sync(guild=discord.Object(guild.id))
        db.attach(bot)
        await db.wait_ready()
        assert db.guild is not None
        general = discord.utils.get(db.guild.text_channels, name="general")
        assert general is not None
        s = Server(db, table, emu.control, guild.id, general.id, owner["user"]["id"], "")
        await fill(table, 2)
        await let_everyone_run(s.db)
        seen = await run(s, "find", {"table": "User"})  # as the owner
        assert embed_of(seen)["title"] == "User: 2 records"
        seen = await run(s, "stats", user=stranger["user"]["id"])
        assert refused(seen)
        started = await emu.control.run_command(guild.id, general.id, "hello")
        seen = await settle(emu.control, started["id"])
        assert seen["original"]["content"] == "hello"
        await db.close()
        assert bot.tree.get_command("discobase", guild=discord.Object(guild.id)) is None
        assert not bot.is_closed()  # the application's bot keeps running


# -- restart ----------------------------------------------------------------------------------


async def test_buttons_of_an_old_message_work_after_a_restart(
    make_db: MakeDb, emu: Emulator
) -> None:
    s = await open_server(make_db, emu)
    records = await fill(s.table, 25)
    page = await run(s, "find", {"table": "User", "where": "age=3"})
    assert footer(page) == "Page 1 of 1"
    page = await run(s, "find", {"table": "User"})
    confirm = await run(s, "delete", {"table": "User", "id": records[5].disco_id})
    await s.db.close()  # the bot stops: its client, views and handlers are gone

    db = make_db(commands=True)  # a new process: a new Database and client
    table = users(db)
    db.login_task(TOKEN)
    await db.wait_ready()
    message = page["original"]
    seen = await click(
        s, message, buttons(message)["Next"]["custom_id"], lambda x: footer(x) == "Page 2 of 3"
    )
    assert ids_on(seen) == [r.disco_id for r in records[10:20]]
    message = seen["original"]
    seen = await click(
        s, message, buttons(message)["Next"]["custom_id"], lambda x: footer(x) == "Page 3 of 3"
    )
    assert ids_on(seen) == [r.disco_id for r in records[20:]]
    message = confirm["original"]
    seen = await click(
        s,
        message,
        buttons(message)["Delete"]["custom_id"],
        lambda x: x["original"]["content"].startswith("Deleted"),
    )
    assert await table.count() == 24
    assert records[5].disco_id not in [r.disco_id for r in await table.find()]


# -- tables, suggestions, read-only -----------------------------------------------------------


async def test_table_names_are_suggested_to_admins_only(server: Server) -> None:
    s = server

    async def choices(user: str) -> list[dict[str, Any]]:
        started = await s.ctl.autocomplete(
            s.guild_id, s.channel_id, "discobase find", "table", {"table": "us"}, user_id=user
        )
        seen = await settle(s.ctl, started["id"], lambda x: x["callback"] is not None)
        found: list[dict[str, Any]] = seen["callback"]["data"]["choices"]
        return found

    assert await choices(s.admin) == [{"name": "User", "value": "User"}]
    await let_everyone_run(s.db)
    assert await choices(s.plain) == []


async def test_a_stored_table_without_its_class(make_db: MakeDb, emu: Emulator) -> None:
    """Tables another program declared open from their stored schema, as in the CLI."""
    writer = make_db()

    @writer.table
    class Pet(discobase.Table):
        species: str
        legs: int = 4

    async with writer.conn(TOKEN):
        await Pet(species="cat").save()
        await Pet(species="bird", legs=2).save()
    s = await open_server(make_db, emu)  # declares User only
    seen = await run(s, "find", {"table": "Pet", "where": "legs=2"})
    assert embed_of(seen)["title"] == "Pet: 1 record"
    assert embed_of(seen)["fields"][0]["value"] == "species: bird\nlegs: 2"
    seen = await run(s, "schema")
    assert [f["name"] for f in embed_of(seen)["fields"]] == ["Pet (2 records)", "User (0 records)"]
    seen = await run(s, "insert", {"table": "Pet"})
    assert modal_text(seen) == "species=\nlegs=4"
    done = await submit(s, seen, "species=spider\nlegs=8")
    assert done["original"]["content"].startswith("Inserted record")
    seen = await run(s, "check")
    assert embed_of(seen)["title"] == "check: ok"
    assert [f["name"] for f in embed_of(seen)["fields"]] == [
        "Pet: 3 of 3 records checked, ok",
        "User: 0 of 0 records checked, ok",
    ]


async def test_a_read_only_database_says_why_it_cannot_write(
    make_db: MakeDb, emu: Emulator
) -> None:
    writer = make_db()
    users(writer)
    async with writer.conn(TOKEN):
        pass
    s = await open_server(make_db, emu, read_only=True)
    seen = await run(s, "insert", {"table": "User"})
    done = await submit(s, seen, "name=Ann\nage=3")
    assert "ReadOnlyError" in done["original"]["content"]
    seen = await run(s, "find", {"table": "User"})
    assert embed_of(seen)["title"] == "User: 0 records"
