"""discobase inside the application's own bot: one gateway connection, the bot's own
commands and events keep working, and closing the database leaves the bot running."""

from __future__ import annotations

from typing import Any

import discord
import pytest
from discobase_test_support import TOKEN, MakeDb, running_bot, wait_until
from discord.ext import commands

import discobase
from discobase._redirect import route_client
from discobase_emulator import Emulator


def notes(db: discobase.Database) -> type[Any]:
    @db.table
    class Note(discobase.Table):
        text: str

    return Note


class AppBot(commands.Bot):
    """A bot as users write them: a prefix command, an event handler, and the database
    attached in setup_hook."""

    def __init__(self, db: discobase.Database) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        super().__init__(command_prefix="!", intents=intents)
        self.db = db
        self.seen: list[str] = []

        @self.command()
        async def ping(ctx: commands.Context[Any]) -> None:
            await ctx.send("pong")

        @self.listen()
        async def on_message(message: discord.Message) -> None:
            self.seen.append(message.content)

    async def setup_hook(self) -> None:
        self.db.attach(self)


async def bot_answers(emu: Emulator, bot: AppBot, channel_id: int) -> None:
    await emu.control.post_as_user(channel_id, "!ping")
    store = emu.core.state.store
    await wait_until(
        lambda: any(m.content == "pong" for m in store.history(channel_id, 10)), limit_s=10
    )


async def test_attached_to_a_users_bot(make_db: MakeDb, emu: Emulator) -> None:
    mark = await emu.control.mark()
    db = make_db()
    bot = AppBot(db)  # attaches the database in its setup_hook
    route_client(bot.http, emu.url)  # what Database(..., api_url=) does for a bot it is given
    Note = notes(db)
    guild = next(iter(emu.core.state.store.guilds.values()))
    chat = await emu.control.create_channel(guild.id, name="general")
    async with running_bot(bot):
        await wait_until(bot.is_ready)  # setup_hook has attached the database by now
        await db.wait_ready()
        await Note(text="stored through the user's bot").save()
        assert [n.text for n in await Note.find()] == ["stored through the user's bot"]
        await bot_answers(emu, bot, int(chat["id"]))
        assert "!ping" in bot.seen
        metrics = await emu.control.metrics(mark)
        assert metrics["gateway_connections"] == 1

        await db.close()  # the database closes; the bot does not
        assert not bot.is_closed()
        await bot_answers(emu, bot, int(chat["id"]))

        again = make_db(bot=bot)
        Again = notes(again)
        await again.wait_ready()  # attaches by itself, the bot being ready already
        assert [n.text for n in await Again.find()] == ["stored through the user's bot"]
        await again.close()
        assert not bot.is_closed()
    assert (await emu.control.metrics(mark))["gateway_connections"] == 1


async def test_attach_refuses_a_bot_without_the_guilds_intent(make_db: MakeDb) -> None:
    bot = discord.Client(intents=discord.Intents.none())
    db = make_db()
    with pytest.raises(discobase.ConnectionFailedError, match="guilds intent"):
        db.attach(bot)
    await bot.close()


async def test_login_is_refused_for_a_database_of_the_users_bot(make_db: MakeDb) -> None:
    bot = discord.Client(intents=discord.Intents.default())
    db = make_db(bot=bot)
    with pytest.raises(discobase.DatabaseTableError, match="uses your bot"):
        await db.login(TOKEN)
    await bot.close()
