"""End-to-end against real Discord: `pytest -m live` with DISCOBASE_LIVE_TOKEN (a bot token)
and DISCOBASE_LIVE_GUILD (the server's name or id; the bot must already be in it with the
permissions of discobase.REQUIRED_PERMISSIONS). Skipped when either is unset.

The tables are `LiveUser` and `LiveTyped` (channels #liveuser and #livetyped in the
"discobase" category); each test starts by deleting what an earlier run left in them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import discobase

TOKEN = os.environ.get("DISCOBASE_LIVE_TOKEN", "")
GUILD = os.environ.get("DISCOBASE_LIVE_GUILD", "")

pytestmark = [
    pytest.mark.live,
    pytest.mark.slow,
    pytest.mark.skipif(
        not (TOKEN and GUILD),
        reason="live Discord tests need DISCOBASE_LIVE_TOKEN (a bot token) and "
        "DISCOBASE_LIVE_GUILD (a server name or id the bot is in)",
    ),
]

LiveDb = Callable[[], discobase.Database]


@pytest.fixture
async def live_db(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[LiveDb]:
    """`live_db()`: a Database on the real server (never the emulator), closed at the end."""
    monkeypatch.delenv("DISCOBASE_API_URL", raising=False)
    made: list[discobase.Database] = []

    def make() -> discobase.Database:
        if GUILD.isdigit():
            db = discobase.Database("live", guild_id=int(GUILD))
        else:
            db = discobase.Database(GUILD)
        made.append(db)
        return db

    yield make
    for db in made:
        await db.close()


def tables(db: discobase.Database) -> tuple[type[Any], type[Any]]:
    @db.table
    class LiveUser(discobase.Table):
        name: str
        password: str
        age: int = 0

    @db.table
    class LiveTyped(discobase.Table):
        ratio: float
        when: dt.datetime
        uid: uuid.UUID
        items: list[int]
        maybe: str | None = None

    return LiveUser, LiveTyped


async def empty(*table_classes: type[Any]) -> None:
    for cls in table_classes:
        await asyncio.gather(*(record.delete() for record in await cls.find()))
        assert await cls.count() == 0


async def test_live_end_to_end(live_db: LiveDb) -> None:
    db = live_db()
    User, Typed = tables(db)
    async with db.conn(TOKEN):
        await empty(User, Typed)
        peter = await User(name="Peter", password="foobar", age=30).save()
        await User(name="Bob", password="foobar").save()
        assert peter.disco_id is not None

        assert [u.name for u in await User.find(name="Peter", password="foobar")] == ["Peter"]
        assert [u.name for u in await User.find(password="foobar")] == ["Peter", "Bob"]
        assert await User.find(name="Nobody") == []
        assert await User.find_unique(name="Nobody", strict=False) is None
        with pytest.raises(discobase.NotFoundError):
            await User.find_unique(name="Nobody")
        with pytest.raises(discobase.MultipleResultsError):
            await User.find_unique(password="foobar")
        assert [u.name for u in await User.find(age="30")] == ["Peter"]
        with pytest.raises(discobase.QueryError):
            await User.find(nickname="x")

        peter.password = "barfoo"
        await peter.update()
        assert [u.name for u in await User.find(password="barfoo")] == ["Peter"]
        bob = await User.find_unique(name="Bob")
        assert bob is not None
        await bob.delete()
        assert bob.disco_id is None
        assert await User.count() == 1

        await asyncio.gather(*(User(name=f"u{i}", password="many").save() for i in range(30)))
        assert await User.count(password="many") == 30

        when = dt.datetime(2024, 7, 1, 12, tzinfo=dt.UTC)
        uid = uuid.uuid4()
        await Typed(ratio=0.5, when=when, uid=uid, items=[1, 2]).save()
        assert len(await Typed.find(ratio=0.5, when=when, uid=uid, items=[1, 2], maybe=None)) == 1

    db2 = live_db()
    User2, Typed2 = tables(db2)
    async with db2.conn(TOKEN):
        assert [u.password for u in await User2.find(name="Peter")] == ["barfoo"]
        assert await User2.find(name="Bob") == []
        assert await User2.count(password="many") == 30
        assert await Typed2.count(uid=uid) == 1
        await empty(User2, Typed2)


async def test_live_channels_are_hidden(live_db: LiveDb) -> None:
    db = live_db()
    tables(db)
    async with db.conn(TOKEN):
        guild = db.guild
        assert guild is not None
        for channel in guild.channels:
            if channel.name in ("discobase", "liveuser", "livetyped"):
                assert channel.overwrites_for(guild.default_role).view_channel is False


async def test_live_bad_token_fails_fast(live_db: LiveDb) -> None:
    db = live_db()
    tables(db)
    async with asyncio.timeout(60):  # guards against a hang only
        with pytest.raises(discobase.ConnectionFailedError):
            async with db.conn("not-a-real-token"):
                pass
