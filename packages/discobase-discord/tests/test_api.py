"""The Database / Table API: lifecycle, declaring tables, records, queries, errors, limits,
hidden channels, foreign messages, and request counts (group commit) from the emulator."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import discord
import pydantic
import pytest
from discobase_test_support import GUILD, TOKEN, MakeDb, channel_named

import discobase
from discobase_emulator import Emulator


def user_table(db: discobase.Database) -> type[Any]:
    @db.table
    class User(discobase.Table):
        name: str
        age: int = 0

    return User


# -- connecting ----------------------------------------------------------------------------


async def test_api_url_from_environment(
    emu: Emulator, make_db: MakeDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISCOBASE_API_URL", emu.url)
    db = make_db(api_url=None)
    User = user_table(db)
    async with db.conn(TOKEN):
        await User(name="env").save()
        assert await User.count() == 1


async def test_login_blocks_until_close(make_db: MakeDb) -> None:
    db = make_db()
    User = user_table(db)
    login = asyncio.ensure_future(db.login(TOKEN))
    await asyncio.sleep(0)  # let the task start logging in
    await db.wait_ready()
    await User(name="a").save()
    assert not login.done()
    await db.close()
    async with asyncio.timeout(30):
        await login
    assert login.exception() is None


async def test_login_task_returns_the_task(make_db: MakeDb) -> None:
    db = make_db()
    User = user_table(db)
    task = db.login_task(TOKEN)
    assert isinstance(task, asyncio.Task)
    await db.wait_ready()
    assert not task.done()
    await User(name="a").save()
    await db.close()
    async with asyncio.timeout(30):
        await task


async def test_wait_ready_without_login_is_an_error(make_db: MakeDb) -> None:
    db = make_db()
    with pytest.raises(discobase.DiscobaseError):
        await db.wait_ready()


async def test_conn_yields_and_closes(make_db: MakeDb) -> None:
    db = make_db()
    User = user_table(db)
    async with db.conn(TOKEN) as opened:
        assert opened is db
        await User(name="a").save()
    assert db.bot is not None
    assert db.bot.is_closed()
    with pytest.raises(discobase.DiscobaseError):
        await User.find()


async def test_login_thread_and_run_sync(emu: Emulator, make_db: MakeDb) -> None:
    db = make_db()
    User = user_table(db)

    def synchronous_program() -> list[str]:
        thread = db.login_thread(TOKEN)
        assert isinstance(thread, threading.Thread)
        db.run_sync(db.wait_ready)
        user = User(name="Peter", age=3)
        saved = db.run_sync(user.save)
        assert saved is user
        assert user.disco_id is not None
        db.run_sync(User(name="Paul").save)
        found = db.run_sync(User.find, name="Peter")
        assert [u.name for u in db.run_sync(User.find(name="Paul"))] == ["Paul"]  # awaitable
        assert [u.age for u in found] == [3]
        assert db.run_sync(User.count) == 2
        names = [u.name for u in db.run_sync(User.find)]
        db.run_sync(db.close, timeout=30)
        thread.join(30)
        assert not thread.is_alive()
        return names

    # The emulator serves on this loop, so the synchronous program runs on another thread.
    assert await asyncio.to_thread(synchronous_program) == ["Peter", "Paul"]


async def test_run_sync_without_thread_is_an_error(make_db: MakeDb) -> None:
    db = make_db()
    with pytest.raises(discobase.DiscobaseError):
        db.run_sync(db.wait_ready)


async def test_no_print_and_logs_under_discobase(
    make_db: MakeDb, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    db = make_db(logging=True)
    User = user_table(db)
    async with db.conn(TOKEN):
        await User(name="a").save()
        await User.find(name="a")
    out = capsys.readouterr()
    assert out.out == ""
    assert any(r.name.startswith("discobase") for r in caplog.records)


# -- declaring tables ----------------------------------------------------------------------


async def test_table_decorator_errors(make_db: MakeDb) -> None:
    db = make_db()
    with pytest.raises(discobase.DatabaseTableError):
        db.table(int)  # type: ignore[type-var]

    class NotATable(pydantic.BaseModel):
        name: str

    with pytest.raises(discobase.DatabaseTableError):
        db.table(NotATable)  # type: ignore[type-var]

    @db.table
    class Thing(discobase.Table):
        name: str

    with pytest.raises(discobase.DatabaseTableError, match=r"(?i)thing"):

        @db.table
        class THING(discobase.Table):
            other: str

    with pytest.raises(discobase.UnsupportedTypeError) as info:

        @db.table
        class Bad(discobase.Table):
            fine: str
            handler: complex

    assert "handler" in str(info.value)
    assert "complex" in str(info.value)


async def test_undecorated_and_unbuilt_tables(make_db: MakeDb) -> None:
    class Loose(discobase.Table):
        name: str

    with pytest.raises(discobase.DatabaseTableError):
        await Loose.find()
    with pytest.raises(discobase.DatabaseTableError):
        Loose(name="x").save()

    db = make_db()
    User = user_table(db)
    with pytest.raises(discobase.DatabaseTableError):  # before login
        await User.find()
    async with db.conn(TOKEN):

        @db.table
        class Late(discobase.Table):
            name: str

        with pytest.raises(discobase.DatabaseTableError):
            await Late.find()
        with pytest.raises(discobase.DatabaseTableError):
            Late(name="x").save()
        await db.build_tables()
        await Late(name="x").save()
        assert [r.name for r in await Late.find()] == ["x"]


# -- records -------------------------------------------------------------------------------


async def test_ids_and_tasks(make_db: MakeDb) -> None:
    db = make_db()
    User = user_table(db)
    async with db.conn(TOKEN):
        user = User(name="a")
        assert user.disco_id is None
        assert user.__disco_id__ == -1
        task = user.save()
        assert isinstance(task, asyncio.Task)
        assert await task is user
        assert isinstance(user.disco_id, int)
        assert user.__disco_id__ == user.disco_id
        [found] = await User.find(name="a")
        assert found.disco_id == user.disco_id
        assert found.__disco_id__ != -1

        user.age = 5
        task = user.update()
        assert isinstance(task, asyncio.Task)
        assert await task is user
        task = user.commit()
        assert isinstance(task, asyncio.Task)
        assert await task is user
        other = User(name="b")
        assert await other.commit() is other
        assert other.disco_id is not None

        task = user.delete()
        assert isinstance(task, asyncio.Task)
        assert await task is user
        assert user.disco_id is None
        assert user.__disco_id__ == -1
        assert [u.name for u in await User.find()] == ["b"]


async def test_saved_record_equals_found_record(make_db: MakeDb) -> None:
    db = make_db()
    User = user_table(db)
    async with db.conn(TOKEN):
        user = await User(name="a", age=1).save()
        assert await User.find_unique(name="a") == user
        assert await User.find() == [user]


def test_private_attributes_start_as_pydantic_starts_them() -> None:
    """Table starts its records' private attributes itself (quicker than pydantic) only
    when that is all pydantic would do: a model_post_init of the schema's, a default
    factory or a mutable default keep pydantic's own start."""

    class Plain(discobase.Table):
        name: str

    class Child(Plain):
        _note: str = pydantic.PrivateAttr(default="n")

    class Hooked(Plain):
        def model_post_init(self, context: Any, /) -> None:
            self._seen = True

        _seen: bool = pydantic.PrivateAttr(default=False)

    class HookedChild(Hooked):
        pass

    class Factory(Plain):
        _items: list[int] = pydantic.PrivateAttr(default_factory=list)

    class Mutable(Plain):
        _items: list[int] = pydantic.PrivateAttr(default=[])

    fresh = {"_disco_id": None, "_disco_saving": None, "_disco_unsure": False}
    for cls in (Plain, Child):
        made = [cls(name="a"), cls.model_validate({"name": "a"}), cls.model_construct(name="a")]
        for record in made:
            assert record.__pydantic_private__ == {
                **fresh,
                **({"_note": "n"} if cls is Child else {}),
            }
        made[0]._disco_id = 5  # every record has a dict of its own
        assert made[1].disco_id is None
        assert cls(name="b").disco_id is None
        assert not hasattr(cls.model_post_init, "__wrapped__")  # Table's quick start
    for cls in (Hooked, HookedChild):
        assert cls(name="a")._seen is True
        assert cls.model_validate({"name": "a"})._seen is True
    for cls in (Factory, Mutable):
        first, second = cls(name="a"), cls(name="b")
        first._items.append(1)
        assert second._items == []
        assert first.disco_id is None
    for cls in (Hooked, HookedChild, Factory, Mutable):
        assert hasattr(cls.model_post_init, "__wrapped__")  # pydantic's own start


async def test_save_update_delete_misuse(make_db: MakeDb) -> None:
    db = make_db()
    User = user_table(db)
    async with db.conn(TOKEN):
        unsaved = User(name="unsaved")
        with pytest.raises(discobase.DatabaseStorageError):
            unsaved.update()
        with pytest.raises(discobase.DatabaseStorageError):
            unsaved.delete()
        saved = await User(name="saved").save()
        with pytest.raises(discobase.DatabaseStorageError):
            saved.save()
        await saved.delete()
        with pytest.raises(discobase.DatabaseStorageError):
            saved.delete()
        with pytest.raises(discobase.DatabaseStorageError):
            saved.update()
        assert await User.count() == 0
        # A deleted record can be saved again, as a new record.
        await saved.save()
        assert [u.name for u in await User.find()] == ["saved"]


async def test_wrong_type_assignment(make_db: MakeDb) -> None:
    db = make_db()
    User = user_table(db)
    user = User(name="a")
    with pytest.raises(pydantic.ValidationError):
        user.age = "not a number"
    with pytest.raises(pydantic.ValidationError):
        User(name="a", age="abc")


# -- queries -------------------------------------------------------------------------------


async def test_find_semantics(make_db: MakeDb) -> None:
    db = make_db()
    User = user_table(db)
    async with db.conn(TOKEN):
        for i in range(10):
            await User(name=f"u{i}", age=i % 3).save()
        assert [u.name for u in await User.find()] == [f"u{i}" for i in range(10)]
        assert [u.name for u in await User.find(age=1)] == ["u1", "u4", "u7"]
        assert [u.name for u in await User.find(age=1, limit=2)] == ["u1", "u4"]
        assert [u.name for u in await User.find(limit=3)] == ["u0", "u1", "u2"]
        assert await User.find(limit=0) == []
        assert len(await User.find(limit=100)) == 10
        assert [u.name for u in await User.find(age="2")] == ["u2", "u5", "u8"]  # lax mode
        assert [u.name for u in await User.find(name="u3", age=0)] == ["u3"]
        assert await User.find(name="u3", age=1) == []
        assert await User.count() == 10
        assert await User.count(age=0) == 4
        assert await User.count(name="nobody") == 0

        with pytest.raises(discobase.QueryError):
            await User.find(age="abc")
        with pytest.raises(discobase.QueryError) as info:
            await User.find(nickname="x")
        assert "name" in str(info.value)
        assert "age" in str(info.value)
        with pytest.raises(discobase.QueryError):
            await User.count(nickname="x")
        with pytest.raises(discobase.QueryError):
            await User.find_unique(nickname="x")


async def test_find_unique(make_db: MakeDb) -> None:
    db = make_db()
    User = user_table(db)
    async with db.conn(TOKEN):
        await User(name="one", age=1).save()
        await User(name="two", age=2).save()
        await User(name="three", age=2).save()
        found = await User.find_unique(name="one")
        assert found is not None
        assert found.age == 1
        with pytest.raises(discobase.NotFoundError):
            await User.find_unique(name="none")
        with pytest.raises(discobase.MultipleResultsError):
            await User.find_unique(age=2)
        assert await User.find_unique(name="none", strict=False) is None
        first = await User.find_unique(age=2, strict=False)
        assert first is not None
        assert first.name == "two"


async def test_errors_share_one_base() -> None:
    for name in discobase.__all__:
        value = getattr(discobase, name)
        if isinstance(value, type) and name.endswith("Error"):
            assert issubclass(value, discobase.DiscobaseError), name
    assert issubclass(discobase.GuildNotFoundError, discobase.ConnectionFailedError)
    assert issubclass(discobase.RecordTooLargeError, discobase.DatabaseStorageError)


# -- limits --------------------------------------------------------------------------------


async def test_record_too_large_writes_nothing(emu: Emulator, make_db: MakeDb) -> None:
    db = make_db()

    @db.table
    class Blob(discobase.Table):
        name: str
        body: str

    async with db.conn(TOKEN):
        await Blob(name="small", body="x").save()
        mark = await emu.control.mark()
        huge = Blob(name="huge", body="x" * (25 * 1024 * 1024))
        with pytest.raises(discobase.RecordTooLargeError):
            await huge.save()
        assert huge.disco_id is None
        metrics = await emu.control.metrics(since=mark)
        assert metrics["by_route"].get("POST /channels/{channel_id}/messages", 0) == 0
        assert [b.name for b in await Blob.find()] == ["small"]
        # An update that grows a record past the limit is refused the same way.
        [small] = await Blob.find(name="small")
        small.body = "y" * (25 * 1024 * 1024)
        with pytest.raises(discobase.RecordTooLargeError):
            await small.update()
    db2 = make_db()

    @db2.table
    class Blob(discobase.Table):  # type: ignore[no-redef]
        name: str
        body: str

    async with db2.conn(TOKEN):
        assert [(b.name, b.body) for b in await Blob.find()] == [("small", "x")]


# -- Discord side --------------------------------------------------------------------------


async def test_channels_are_hidden_from_everyone(make_db: MakeDb) -> None:
    db = make_db()
    user_table(db)

    @db.table
    class Other(discobase.Table):
        name: str

    async with db.conn(TOKEN):
        guild = db.guild
        assert guild is not None
        ours = [c for c in guild.channels if c.category is not None or c.name == "discobase"]
        assert {c.name for c in ours} >= {"discobase", "user", "other"}
        for channel in ours:
            everyone = channel.overwrites_for(guild.default_role)
            assert everyone.view_channel is False, channel.name
            assert channel.permissions_for(guild.me).view_channel


async def test_channels_are_hidden_in_the_emulator(emu: Emulator, make_db: MakeDb) -> None:
    """The same, read from the emulator's own state (what another client would see)."""
    db = make_db()
    user_table(db)
    async with db.conn(TOKEN):
        pass
    guild = next(iter(emu.core.state.store.guilds.values()))
    everyone = guild.id  # the @everyone role's id is the guild's id
    for name in ("discobase", "user"):
        channel = channel_named(emu, name)
        assert channel is not None
        overwrites = {int(o["id"]): o for o in channel.data.get("permission_overwrites", [])}
        deny = int(overwrites[everyone]["deny"])
        assert deny & discord.Permissions(view_channel=True).value


async def test_foreign_messages_are_ignored(emu: Emulator, make_db: MakeDb) -> None:
    db = make_db()
    User = user_table(db)
    async with db.conn(TOKEN):
        await User(name="a").save()
        channel = channel_named(emu, "user")
        assert channel is not None
        await emu.control.post_as_user(channel.id, "hi, what is this channel?", username="bob")
        await User(name="b").save()
        await emu.control.post_as_user(channel.id, "dbs1 not really", username="eve")
        await emu.control.seed_messages(channel.id, ["a bot-looking message"], author="user")
        assert [u.name for u in await User.find()] == ["a", "b"]
        await User(name="c").save()

    for _ in range(2):  # reopened twice: the second open reads the first one's checkpoint
        db2 = make_db()
        User2 = user_table(db2)
        async with db2.conn(TOKEN):
            assert [u.name for u in await User2.find()] == ["a", "b", "c"]
            await emu.control.post_as_user(channel.id, "still here", username="bob")
            await User2(name="d").save()
            await (await User2.find_unique(name="d")).delete()  # type: ignore[union-attr]


# -- request counts (the emulator counts every REST request) -------------------------------


async def test_group_commit_request_counts(emu: Emulator, make_db: MakeDb) -> None:
    db = make_db()
    User = user_table(db)
    async with db.conn(TOKEN):
        await User(name="warmup").save()

        mark = await emu.control.mark()
        await asyncio.gather(*(User(name=f"u{i}", age=i).save() for i in range(100)))
        saves = (await emu.control.metrics(since=mark))["requests"]
        assert saves <= 5, saves

        mark = await emu.control.mark()
        await User(name="single").save()
        single = (await emu.control.metrics(since=mark))["requests"]
        assert single <= 2, single

        users = await User.find()
        assert len(users) == 102
        for user in users[:50]:
            user.age += 1000
        mark = await emu.control.mark()
        await asyncio.gather(*(u.update() for u in users[:50]), *(u.delete() for u in users[50:]))
        writes = (await emu.control.metrics(since=mark))["requests"]
        assert writes <= 5, writes

        mark = await emu.control.mark()
        for i in range(100):
            await User.find(name=f"u{i}")
            await User.find(name=f"absent{i}")
        await User.count()
        reads = (await emu.control.metrics(since=mark))["requests"]
        assert reads <= 2, reads  # warm: the index and recent blocks are in memory

        assert (await emu.control.metrics())["http_429"]["total"] == 0


async def test_reopen_reads_few_messages(emu: Emulator, make_db: MakeDb) -> None:
    db = make_db()
    User = user_table(db)
    async with db.conn(TOKEN):
        for start in range(0, 1000, 100):
            await asyncio.gather(*(User(name=f"u{i}").save() for i in range(start, start + 100)))

    db2 = make_db()
    User2 = user_table(db2)
    mark = await emu.control.mark()
    async with db2.conn(TOKEN):
        opened = (await emu.control.metrics(since=mark))["requests"]
        assert opened <= 20, opened
        mark = await emu.control.mark()
        assert [u.name for u in await User2.find(name="u500")] == ["u500"]
        cold = (await emu.control.metrics(since=mark))["requests"]
        assert cold <= 3, cold
        assert await User2.count() == 1000


async def test_table_name_to_channel_and_two_databases(emu: Emulator, make_db: MakeDb) -> None:
    """Two Database objects on one server in sequence, each with its own tables."""
    db = make_db()

    @db.table
    class BookMark(discobase.Table):
        title: str

    async with db.conn(TOKEN):
        await BookMark(title="t").save()
    assert channel_named(emu, "bookmark") is not None

    db2 = make_db(GUILD)

    @db2.table
    class BookMark(discobase.Table):  # type: ignore[no-redef]
        title: str

    async with db2.conn(TOKEN):
        assert [b.title for b in await BookMark.find()] == ["t"]


async def test_no_429_under_rate_limits(emu: Emulator, make_db: MakeDb) -> None:
    """With Discord's limits enforced (the "fast" profile: every window / 10), a burst of
    saves, one-by-one saves, updates and deletes get no 429 at all."""
    await emu.control.set_profile("fast")
    db = make_db()
    User = user_table(db)
    async with db.conn(TOKEN):
        users = [User(name=f"u{i}", age=i) for i in range(300)]
        await asyncio.gather(*(u.save() for u in users))
        for i in range(40):
            await User(name=f"single{i}").save()
        for user in users[:40]:
            user.age = -1
            await user.update()
        await asyncio.gather(*(u.delete() for u in users[40:80]))
        assert await User.count() == 300
        assert await User.count(age=-1) == 40
    metrics = await emu.control.metrics()
    assert metrics["http_429"]["total"] == 0, metrics["http_429"]


async def test_wait_ready_right_after_creating_a_login_task(make_db: MakeDb) -> None:
    db = make_db()
    user_table(db)
    task = asyncio.create_task(db.login(TOKEN))
    await db.wait_ready()  # the task has not started yet: wait_ready must still wait for it
    await db.close()
    await task


async def test_writes_without_an_event_loop_say_how_to_make_them(make_db: MakeDb) -> None:
    db = make_db()
    User = user_table(db)
    db.login_task(TOKEN)
    await db.wait_ready()

    def synchronous_save() -> None:
        User(name="Peter").save()

    with pytest.raises(discobase.DatabaseTableError) as err:
        await asyncio.to_thread(synchronous_save)
    assert "run_sync" in str(err.value)
    assert await User.count() == 0
