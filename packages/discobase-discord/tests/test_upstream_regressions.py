"""One regression test per bug of discobase 1.0.0 that applies to the library
(shared/research/upstream_discobase.md, section 4), each named after the bug id and written
so that it would have caught that bug.

Not here: B8 (an internal slot counter; its effects are B3/B4), B15 (`clean()` does not
exist), B20 (Python 3.8/3.9 only; the docs' module-level pattern runs in
test_docs_examples.py), B24 (docs errors; the docs' examples run in test_docs_examples.py)
and B25/B26 (slash commands).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import logging
import uuid
from decimal import Decimal
from typing import Any

import pydantic
import pytest
from discobase_test_support import GUILD, TOKEN, MakeDb, channel_named

import discobase
from discobase_emulator import Emulator


class User(discobase.Table):
    name: str
    password: str


def user_table(db: discobase.Database) -> type[User]:
    """A fresh `User` table class registered on `db` (each Database needs its own class)."""

    @db.table
    class User(discobase.Table):
        name: str
        password: str

    return User  # type: ignore[return-value]


async def save_all(records: list[Any]) -> None:
    await asyncio.gather(*(record.save() for record in records))


# -- Queries and indexes -------------------------------------------------------------------


async def test_b1_several_fields_are_an_and_without_duplicates(make_db: MakeDb) -> None:
    db = make_db()
    User = user_table(db)
    async with db.conn(TOKEN):
        peter = await User(name="Peter", password="foobar").save()
        await User(name="Bob", password="foobar").save()
        await User(name="Peter", password="other").save()

        found = await User.find(name="Peter", password="foobar")
        assert [(u.name, u.password) for u in found] == [("Peter", "foobar")]
        assert found[0].disco_id == peter.disco_id
        unique = await User.find_unique(name="Peter", password="foobar")
        assert unique is not None
        assert unique.disco_id == peter.disco_id
        assert await User.find(name="Bob", password="other") == []
        assert await User.count(name="Peter", password="foobar") == 1
        assert [u.name for u in await User.find(password="foobar")] == ["Peter", "Bob"]


async def test_b2_misses_return_nothing(make_db: MakeDb) -> None:
    db = make_db()
    User = user_table(db)
    async with db.conn(TOKEN):
        # Enough values that many absent values hash to occupied home slots.
        await save_all([User(name=f"user{i}", password=f"pw{i % 7}") for i in range(200)])
        for i in range(200, 400):
            assert await User.find(name=f"user{i}") == []
            assert await User.find_unique(name=f"user{i}", strict=False) is None
            assert await User.count(name=f"user{i}") == 0
        with pytest.raises(discobase.NotFoundError):
            await User.find_unique(name="user999")
        assert await User.find(name="user5", password="pw6") == []


async def _check_every_field(User: type[Any], count: int) -> None:
    for i in range(count):
        assert [u.number for u in await User.find(name=f"name-{i}")] == [i]
        assert [u.name for u in await User.find(number=i)] == [f"name-{i}"]
        assert len(await User.find(group=i % 3)) == len(range(i % 3, count, 3))
    assert await User.count() == count


async def test_b3_b4_resizes_lose_no_entry(make_db: MakeDb) -> None:
    """300 inserts take the index from 8 slots through several doublings; every record stays
    findable by every field, including each insert that triggered a resize (B4), in this
    process and after reopening (B10)."""

    def schema(db: discobase.Database) -> type[Any]:
        @db.table
        class Row(discobase.Table):
            name: str
            number: int
            group: int

        return Row

    db = make_db()
    Row = schema(db)
    async with db.conn(TOKEN):
        for i in range(60):  # one commit per insert: every resize happens between saves
            await Row(name=f"name-{i}", number=i, group=i % 3).save()
            assert [r.number for r in await Row.find(name=f"name-{i}")] == [i]
        await save_all([Row(name=f"name-{i}", number=i, group=i % 3) for i in range(60, 300)])
        await _check_every_field(Row, 300)

    db2 = make_db()
    Row2 = schema(db2)
    async with db2.conn(TOKEN):
        await _check_every_field(Row2, 300)


async def test_b5_b7_probed_values_are_not_duplicated(make_db: MakeDb) -> None:
    db = make_db()
    User = user_table(db)
    async with db.conn(TOKEN):
        await save_all([User(name=f"u{i}", password="x") for i in range(100)])
        # B5: a second record with a value that already has an (often probed) entry.
        await save_all([User(name=f"u{i}", password="y") for i in range(100)])
        for i in range(100):
            found = await User.find(name=f"u{i}")
            assert sorted(u.password for u in found) == ["x", "y"]
            assert len({u.disco_id for u in found}) == 2
        # B7: delete, then reinsert the same values: tombstones keep the chains whole and
        # the reinserted value is found exactly once.
        for user in await User.find(password="x"):
            await user.delete()
        await save_all([User(name=f"u{i}", password="z") for i in range(100)])
        for i in range(100):
            found = await User.find(name=f"u{i}")
            assert sorted(u.password for u in found) == ["y", "z"]
        assert await User.count() == 200
        assert await User.find(password="x") == []


async def test_b6_update_and_delete_of_probed_entries(make_db: MakeDb) -> None:
    db = make_db()
    User = user_table(db)
    async with db.conn(TOKEN):
        users = [User(name=f"n{i}", password=f"p{i}") for i in range(150)]
        await save_all(users)
        renamed = users[0:150:3]
        deleted = users[1:150:3]
        untouched = users[2:150:3]
        for user in renamed:
            user.name = user.name + "-renamed"
        await asyncio.gather(*(u.update() for u in renamed), *(u.delete() for u in deleted))

        for user in untouched:
            assert [u.password for u in await User.find(name=user.name)] == [user.password]
        for user in renamed:
            assert [u.password for u in await User.find(name=user.name)] == [user.password]
            old = user.name.removesuffix("-renamed")
            assert await User.find(name=old) == []
        for user in deleted:
            assert await User.find(name=user.name) == []
            assert await User.find(password=user.password) == []
        assert await User.count() == 100


async def test_b9_concurrent_saves_of_one_value(make_db: MakeDb) -> None:
    db = make_db()
    User = user_table(db)
    async with db.conn(TOKEN):
        users = [User(name="same", password=str(i)) for i in range(50)]
        await save_all(users)
        ids = {u.disco_id for u in users}
        assert None not in ids
        assert len(ids) == 50
        found = await User.find(name="same")
        assert sorted(int(u.password) for u in found) == list(range(50))


async def test_b9_double_save_stores_once(make_db: MakeDb) -> None:
    db = make_db()
    User = user_table(db)
    async with db.conn(TOKEN):
        user = User(name="twice", password="x")
        first = user.save()
        try:
            second: asyncio.Task[Any] | None = user.save()
        except discobase.DatabaseStorageError:
            second = None
        await first
        if second is not None:
            await second
        assert len(await User.find(name="twice")) == 1
        assert await User.count() == 1
        # commit() twice in a row: the second is an update, still one record.
        other = User(name="committed", password="x")
        tasks = [other.commit()]
        other.password = "y"
        tasks.append(other.commit())
        await asyncio.gather(*tasks)
        assert [u.password for u in await User.find(name="committed")] == ["y"]


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Address(pydantic.BaseModel):
    street: str
    number: int
    tags: list[str] = []


AWARE = dt.datetime(2024, 7, 1, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
NAIVE = dt.datetime(2024, 7, 1, 12, 30, 5, 123456)
UID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def typed_table(db: discobase.Database) -> type[Any]:
    @db.table
    class Typed(discobase.Table):
        label: str
        ratio: float
        maybe: int | None
        flag: bool
        when: dt.datetime
        naive: dt.datetime
        day: dt.date
        uid: uuid.UUID
        amount: Decimal
        colour: Colour
        level: Level
        items: list[int]
        mapping: dict[str, int]
        pair: tuple[str, int]
        address: Address
        optional_address: Address | None = None

    return Typed


def typed_values(i: int) -> dict[str, Any]:
    return {
        "label": f"row{i}",
        "ratio": 0.1 * i,
        "maybe": None if i % 2 else i,
        "flag": bool(i % 2),
        "when": AWARE + dt.timedelta(days=i),
        "naive": NAIVE + dt.timedelta(seconds=i),
        "day": dt.date(2024, 1, 1) + dt.timedelta(days=i),
        "uid": uuid.UUID(int=UID.int + i),
        "amount": Decimal("1.10") + i,
        "colour": Colour.RED if i % 2 else Colour.GREEN,
        "level": Level.LOW if i % 3 else Level.HIGH,
        "items": [i, i + 1, i + 2],
        "mapping": {"a": i, "b": -i},
        "pair": (f"p{i}", i),
        "address": Address(street=f"street {i}", number=i, tags=["x"] * (i % 3)),
        "optional_address": None if i % 2 else Address(street="o", number=i),
    }


async def _check_typed(Typed: type[Any], count: int) -> None:
    for i in range(count):
        values = typed_values(i)
        for field, value in values.items():
            found = await Typed.find(**{field: value})
            assert f"row{i}" in [r.label for r in found], (field, value)
            for record in found:
                assert getattr(record, field) == value, field
        [record] = await Typed.find(label=f"row{i}")
        assert record.model_dump() == Typed(**values).model_dump()
    assert await Typed.count(maybe=None) == len(range(1, count, 2))
    assert await Typed.count(flag=True) == len(range(1, count, 2))


async def test_b12_every_field_type_is_stored_and_queryable(make_db: MakeDb) -> None:
    db = make_db()
    Typed = typed_table(db)
    async with db.conn(TOKEN):
        await save_all([Typed(**typed_values(i)) for i in range(6)])
        await _check_typed(Typed, 6)
        # A query value is validated with the field's type: equal values find the record.
        assert len(await Typed.find(ratio=0)) == 1
        assert len(await Typed.find(uid=str(UID))) == 1
        assert len(await Typed.find(colour="red")) == 3
        assert len(await Typed.find(day="2024-01-01")) == 1
        assert len(await Typed.find(amount="1.1")) == 1

    # Hashes are portable: a new Database (and index loaded from Discord) finds them too.
    db2 = make_db()
    Typed2 = typed_table(db2)
    async with db2.conn(TOKEN):
        await _check_typed(Typed2, 6)


async def test_b13_camel_case_field_names(make_db: MakeDb) -> None:
    def schema(db: discobase.Database) -> type[Any]:
        @db.table
        class AcctUser(discobase.Table):
            userId: int
            displayName: str
            isAdmin: bool = False

        return AcctUser

    db = make_db()
    AcctUser = schema(db)
    async with db.conn(TOKEN):
        await AcctUser(userId=7, displayName="Seven", isAdmin=True).save()
        await AcctUser(userId=8, displayName="Eight").save()
        assert [u.displayName for u in await AcctUser.find(userId=7)] == ["Seven"]
        assert [u.userId for u in await AcctUser.find(displayName="Eight")] == [8]
        assert [u.userId for u in await AcctUser.find(isAdmin=False)] == [8]

    db2 = make_db()
    AcctUser2 = schema(db2)
    async with db2.conn(TOKEN):
        assert [u.displayName for u in await AcctUser2.find(userId=7)] == ["Seven"]


async def test_b14_message_size_limits(make_db: MakeDb) -> None:
    """500 records sharing one value (1.0.0 broke at 96), records far above one message's
    2,000 characters, and a table with many long field names."""

    db = make_db()
    User = user_table(db)
    fields = {f"field_number_{i:03d}_long_name": (str, ...) for i in range(40)}
    Wide: type[Any] = pydantic.create_model("Wide", __base__=discobase.Table, **fields)  # type: ignore[call-overload]
    db.table(Wide)
    async with db.conn(TOKEN):
        await save_all([User(name=f"n{i}", password="shared") for i in range(500)])
        shared = await User.find(password="shared")
        assert len(shared) == 500
        assert len({u.disco_id for u in shared}) == 500
        assert sorted(u.name for u in shared) == sorted(f"n{i}" for i in range(500))
        assert await User.count(password="shared") == 500

        big = "é" * 20_000 + "x" * 30_000
        await User(name="big", password=big).save()
        [found] = await User.find(name="big")
        assert found.password == big
        assert [u.name for u in await User.find(password=big)] == ["big"]

        wide = Wide(**{name: f"v{i}" * 20 for i, name in enumerate(fields)})
        await wide.save()
        [found_wide] = await Wide.find(field_number_039_long_name="v39" * 20)
        assert found_wide.model_dump() == wide.model_dump()


def _versioned(db: discobase.Database, version: str) -> type[Any]:
    """Table `Person` in one of several schema versions."""
    if version == "v1":

        @db.table
        class Person(discobase.Table):
            name: str
            age: int

    elif version == "added-default":

        @db.table
        class Person(discobase.Table):  # type: ignore[no-redef]
            name: str
            age: int
            city: str = "nowhere"

    elif version == "removed":

        @db.table
        class Person(discobase.Table):  # type: ignore[no-redef]
            name: str

    elif version == "added-required":

        @db.table
        class Person(discobase.Table):  # type: ignore[no-redef]
            name: str
            age: int
            city: str

    elif version == "changed-type":

        @db.table
        class Person(discobase.Table):  # type: ignore[no-redef]
            name: str
            age: str

    return Person


@pytest.mark.parametrize("change", ["removed", "added-required", "changed-type"])
async def test_b16_incompatible_schema_change_is_refused(make_db: MakeDb, change: str) -> None:
    db = make_db()
    Person = _versioned(db, "v1")
    async with db.conn(TOKEN):
        await save_all([Person(name=f"p{i}", age=i) for i in range(5)])

    db2 = make_db()
    _versioned(db2, change)
    db2.login_task(TOKEN)
    with pytest.raises(discobase.SchemaChangeError):
        await db2.wait_ready()
    await db2.close()

    # Nothing was lost: the old class still opens the table with every record.
    db3 = make_db()
    Person3 = _versioned(db3, "v1")
    async with db3.conn(TOKEN):
        assert sorted(p.age for p in await Person3.find()) == list(range(5))
        assert [p.name for p in await Person3.find(age=3)] == ["p3"]


async def test_b16_incompatible_change_of_a_late_table(make_db: MakeDb) -> None:
    db = make_db()
    Person = _versioned(db, "v1")
    async with db.conn(TOKEN):
        await Person(name="a", age=1).save()

    db2 = make_db()
    async with db2.conn(TOKEN):
        _versioned(db2, "removed")
        with pytest.raises(discobase.SchemaChangeError):
            await db2.build_tables()


async def test_b16_added_field_with_default(make_db: MakeDb) -> None:
    db = make_db()
    Person = _versioned(db, "v1")
    async with db.conn(TOKEN):
        await save_all([Person(name=f"p{i}", age=i) for i in range(5)])

    db2 = make_db()
    Person2 = _versioned(db2, "added-default")
    async with db2.conn(TOKEN):
        old = await Person2.find(city="nowhere")
        assert sorted(p.age for p in old) == list(range(5))
        assert all(p.city == "nowhere" for p in old)
        await Person2(name="new", age=9, city="Paris").save()
        assert [p.name for p in await Person2.find(city="Paris")] == ["new"]
        [p2] = await Person2.find(name="p2")
        p2.city = "Rome"
        await p2.update()
        assert [p.name for p in await Person2.find(city="Rome")] == ["p2"]
        assert await Person2.count(city="nowhere") == 4

    db3 = make_db()
    Person3 = _versioned(db3, "added-default")
    async with db3.conn(TOKEN):
        assert await Person3.count(city="nowhere") == 4
        assert await Person3.count() == 6


async def test_b17_wrong_type_assignment_is_refused(make_db: MakeDb) -> None:
    db = make_db()
    Person = _versioned(db, "v1")
    async with db.conn(TOKEN):
        person = await Person(name="a", age=1).save()
        with pytest.raises(pydantic.ValidationError):
            person.age = "abc"
        assert person.age == 1
        await person.update()
        [stored] = await Person.find(name="a")
        assert stored.age == 1
        assert [p.name for p in await Person.find()] == ["a"]


# -- Lifecycle and connection --------------------------------------------------------------


async def test_b18_bad_token_fails_instead_of_hanging(make_db: MakeDb) -> None:
    db = make_db()
    user_table(db)
    # The timeout only guards against the hang this test is about.
    async with asyncio.timeout(30):
        with pytest.raises(discobase.ConnectionFailedError):
            async with db.conn("not-a-token"):
                pass
        db2 = make_db()
        db2.login_task("not-a-token")
        with pytest.raises(discobase.ConnectionFailedError):
            await db2.wait_ready()


async def test_b18_unreachable_api_fails_instead_of_hanging(make_db: MakeDb) -> None:
    db = make_db(api_url="http://127.0.0.1:9")  # nothing listens on the discard port
    async with asyncio.timeout(60):
        with pytest.raises(discobase.ConnectionFailedError):
            async with db.conn(TOKEN):
                pass


@pytest.mark.parametrize("trigger", ["invalid_session", "gateway_disconnect"])
async def test_b19_second_on_ready_or_reconnect(
    make_db: MakeDb, emu: Emulator, trigger: str
) -> None:
    db = make_db()
    User = user_table(db)
    async with db.conn(TOKEN):
        await User(name="before", password="x").save()
        assert db.bot is not None
        before = (await emu.control.metrics())["gateway_connections"]
        if trigger == "invalid_session":
            # A fresh IDENTIFY: discord.py fires on_ready a second time.
            ready_again = asyncio.ensure_future(db.bot.wait_for("ready"))
            await emu.control.faults(invalid_session=True)
            async with asyncio.timeout(30):
                await ready_again
        else:
            resumed = asyncio.ensure_future(db.bot.wait_for("resumed"))
            await emu.control.faults(gateway_disconnect=True)
            async with asyncio.timeout(30):
                await resumed
        assert (await emu.control.metrics())["gateway_connections"] > before
        await User(name="after", password="x").save()
        assert [u.name for u in await User.find(password="x")] == ["before", "after"]
    # Nothing was set up twice.
    names = [c.data.get("name") for c in emu.core.state.store.channels.values()]
    assert names.count("discobase") == 1
    assert names.count("user") == 1

    db2 = make_db()
    User2 = user_table(db2)
    async with db2.conn(TOKEN):
        assert [u.name for u in await User2.find()] == ["before", "after"]


async def test_b21_close_drains_background_writes(make_db: MakeDb) -> None:
    db = make_db()
    User = user_table(db)
    async with db.conn(TOKEN):
        first = await User(name="keep", password="0").save()
        for i in range(20):
            User(name=f"bg{i}", password="bg").save()  # never awaited
        first.password = "updated"
        first.update()
        (await User(name="gone", password="0").save()).delete()

    db2 = make_db()
    User2 = user_table(db2)
    async with db2.conn(TOKEN):
        assert sorted(u.name for u in await User2.find(password="bg")) == sorted(
            f"bg{i}" for i in range(20)
        )
        assert [u.password for u in await User2.find(name="keep")] == ["updated"]
        assert await User2.find(name="gone") == []


async def test_b22_background_failure_is_not_silent(
    make_db: MakeDb, emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    db = make_db()
    User = user_table(db)
    caplog.set_level(logging.WARNING, logger="discobase")
    async with db.conn(TOKEN):
        await User(name="ok", password="x").save()
        await emu.control.faults(error_rate=1.0, statuses=[400])
        # Awaited: the failure is raised to the caller, and the record stays unsaved.
        failed = User(name="lost", password="x")
        with pytest.raises(discobase.DiscobaseError):
            await failed.save()
        assert failed.disco_id is None
        # Never awaited: close() (the end of conn) reports it in the log.
        caplog.clear()
        User(name="never-awaited", password="x").save()
    await emu.control.faults()
    failures = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert failures, "a failed background write left no warning"

    db2 = make_db()
    User2 = user_table(db2)
    async with db2.conn(TOKEN):
        assert [u.name for u in await User2.find()] == ["ok"]


async def test_b23_guild_is_chosen_explicitly(make_db: MakeDb, emu: Emulator) -> None:
    # A missing server: a clear error with the invite URL, never a created server.
    db = make_db("No such server")
    user_table(db)
    db.login_task(TOKEN)
    with pytest.raises(discobase.GuildNotFoundError) as info:
        await db.wait_ready()
    error = info.value
    url = error.details["invite_url"]
    assert isinstance(url, str)
    assert url.startswith("https://discord.com/oauth2/authorize")
    assert url in str(error)
    assert "cannot create" in str(error)
    assert len(emu.core.state.store.guilds) == 1
    await db.close()

    # Two servers with the same name: refused unless guild_id picks one.
    created = await emu.control.create_guild(GUILD, members=[TOKEN])
    guild_id = int(created["id"])
    db2 = make_db()
    user_table(db2)
    db2.login_task(TOKEN)
    with pytest.raises(discobase.ConnectionFailedError, match="guild_id"):
        await db2.wait_ready()
    await db2.close()

    db3 = make_db(guild_id=guild_id)
    User = user_table(db3)
    async with db3.conn(TOKEN):
        assert db3.guild is not None
        assert db3.guild.id == guild_id
        await User(name="here", password="x").save()
    user_channel = channel_named(emu, "user")
    assert user_channel is not None
    assert user_channel.guild_id == guild_id
