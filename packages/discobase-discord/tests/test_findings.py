"""Regression tests for the correctness issue's findings 5 (faults at open), 8 (privacy and
routing) and 9 (the smaller ones), each named after its finding."""

from __future__ import annotations

import asyncio
import gc
import logging
import warnings
from typing import Any

import pytest
from discobase_test_support import GUILD, TOKEN, MakeDb, channel_named

import discobase
from discobase_emulator import Emulator


async def ready(db: discobase.Database) -> discobase.Database:
    db.login_task(TOKEN)
    await db.wait_ready()
    return db


# -- 5: connection faults ---------------------------------------------------------------


async def test_opens_survive_five_percent_503(make_db: MakeDb, emu: Emulator) -> None:
    db = await ready(make_db())

    @db.table
    class Item(discobase.Table):
        n: int

    await db.build_tables()
    await asyncio.gather(*(Item(n=i).save() for i in range(50)))
    for i in range(10):
        await Item(n=100 + i).save()  # one message each: the scans at open page through them
    await db.close()
    await emu.control.faults(error_rate=0.05, statuses=[503])
    for _ in range(8):
        again = make_db()

        @again.table
        class Item(discobase.Table):  # type: ignore[no-redef]
            n: int

        await ready(again)
        assert await Item.count() == 60
        assert len(await Item.find()) == 60
        await again.close()


# -- 8: privacy and routing -------------------------------------------------------------


def hidden_from_everyone(emu: Emulator, name: str) -> bool:
    channel = channel_named(emu, name)
    assert channel is not None
    guild_id = channel.guild_id  # @everyone's role id is the guild id
    for overwrite in channel.data.get("permission_overwrites", []):
        if int(overwrite["id"]) == guild_id:
            return bool(int(overwrite["deny"]) & 1024)  # VIEW_CHANNEL
    return False


async def test_adopted_public_category_and_channel_are_made_private(
    make_db: MakeDb, emu: Emulator
) -> None:
    guild = next(iter(emu.core.state.store.guilds.values()))
    category = await emu.control.create_channel(guild.id, name="discobase", type=4)
    await emu.control.create_channel(guild.id, name="user", type=0)
    table_channel = channel_named(emu, "user")
    assert table_channel is not None
    table_channel.data["parent_id"] = category["id"]  # made by a person, in the category
    emu.core.state.update_channel(table_channel)
    assert not hidden_from_everyone(emu, "discobase")
    assert not hidden_from_everyone(emu, "user")
    db = make_db()

    @db.table
    class User(discobase.Table):
        name: str

    await ready(db)
    await User(name="x").save()
    assert hidden_from_everyone(emu, "discobase")
    assert hidden_from_everyone(emu, "user")


async def test_api_url_is_per_database(make_db: MakeDb, emu: Emulator) -> None:
    async with Emulator(tokens=[TOKEN], guilds=[GUILD], profile="unlimited") as other:
        # A failed open first: nothing it did may send the next database elsewhere.
        broken = make_db(api_url="http://127.0.0.1:9")
        broken.login_task(TOKEN)
        with pytest.raises(discobase.ConnectionFailedError):
            await broken.wait_ready()
        first = make_db(api_url=emu.url)
        second = make_db(api_url=other.url)

        @first.table
        class A(discobase.Table):
            text: str

        @second.table
        class B(discobase.Table):
            text: str

        await asyncio.gather(ready(first), ready(second))
        await asyncio.gather(A(text="here").save(), B(text="there").save())
        assert channel_named(emu, "a") is not None
        assert channel_named(emu, "b") is None
        assert channel_named(other, "b") is not None
        assert channel_named(other, "a") is None
        await second.close()


# -- 9: the smaller ones ----------------------------------------------------------------


async def test_lanes_setting_is_used(make_db: MakeDb, emu: Emulator) -> None:
    db = make_db(lanes=2)

    @db.table
    class Item(discobase.Table):
        n: int

    await ready(db)
    threads = [c for c in emu.core.state.store.channels.values() if c.is_thread]
    assert len(threads) == 1
    for i in range(4):
        await Item(n=i).save()
    lanes = {db._stores["Item"].state.location(i).lane for i in range(1, 5)}  # type: ignore[union-attr]
    assert lanes == {0, 1}


def test_one_class_cannot_belong_to_two_databases(make_db: MakeDb) -> None:
    first, second = make_db(), make_db()

    class Item(discobase.Table):
        n: int

    first.table(Item)
    with pytest.raises(discobase.DatabaseTableError, match="already a table of"):
        second.table(Item)


@pytest.mark.parametrize("field", ["delete", "save", "update", "find", "count", "limit"])
def test_fields_shadowing_table_methods_are_refused(make_db: MakeDb, field: str) -> None:
    db = make_db()
    with warnings.catch_warnings():  # pydantic itself only warns
        warnings.simplefilter("ignore", UserWarning)
        model: Any = type("Shadow", (discobase.Table,), {"__annotations__": {field: int}})
    with pytest.raises(discobase.DatabaseTableError, match=f"field '{field}'"):
        db.table(model)


def test_tables_colliding_after_channel_naming_are_refused(make_db: MakeDb) -> None:
    db = make_db()

    class Café(discobase.Table):
        n: int

    class Cafè(discobase.Table):
        n: int

    db.table(Café)
    with pytest.raises(discobase.DatabaseTableError, match="share the channel #caf-"):
        db.table(Cafè)


async def test_explicit_table_name_survives_a_class_rename(make_db: MakeDb) -> None:
    db = make_db()

    @db.table(name="people")
    class Person(discobase.Table):
        name: str

    await ready(db)
    await Person(name="Ada").save()
    await db.close()
    again = make_db()

    @again.table(name="people")
    class Human(discobase.Table):
        name: str

    await ready(again)
    assert [h.name for h in await Human.find()] == ["Ada"]


async def test_gathered_saves_store_every_valid_record(make_db: MakeDb) -> None:
    db = make_db()

    @db.table
    class Item(discobase.Table):
        n: int

    await ready(db)
    records = [Item(n=i) for i in range(10)]
    records[4] = Item.model_construct(n="not a number")  # bypasses validation
    results = await asyncio.gather(*(r.save() for r in records), return_exceptions=True)
    assert isinstance(results[4], discobase.InvalidRecordError)
    assert sorted(r.n for r in await Item.find()) == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    with pytest.raises(discobase.InvalidRecordError):
        await asyncio.gather(*(r.save() for r in [Item(n=20), Item.model_construct(n="x")]))


def test_invalid_record_error_is_exported() -> None:
    assert issubclass(discobase.InvalidRecordError, discobase.DiscobaseError)
    assert "InvalidRecordError" in discobase.__all__


async def test_failed_open_leaves_no_unretrieved_task(
    make_db: MakeDb, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")
    db = make_db(name="No such server")
    db.login_task(TOKEN)
    with pytest.raises(discobase.GuildNotFoundError):
        await db.wait_ready()
    await db.close()
    del db
    gc.collect()
    await asyncio.sleep(0)
    assert "never retrieved" not in caplog.text


async def test_limit_must_be_a_non_negative_integer(make_db: MakeDb) -> None:
    db = make_db()

    @db.table
    class Item(discobase.Table):
        n: int

    await ready(db)
    for bad in (-1, 1.5, "3"):
        with pytest.raises(discobase.QueryError):
            await Item.find(limit=bad)
