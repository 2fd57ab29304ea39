"""Users' findings about values, end to end through Database and Table: each test is named
after one (the core's tests pin the same rules at the unit level)."""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal
from typing import Any

import pytest
from discobase_test_support import TOKEN, MakeDb
from pydantic import ConfigDict, Field

import discobase
from discobase_core.errors import InvalidRecordError, QueryError


def people(db: discobase.Database) -> type[Any]:
    @db.table
    class Person(discobase.Table):
        имя: str
        key: str = Field(alias="Key Name")
        photo: bytes = b""

    return Person


async def test_unicode_field_name_reopens(make_db: MakeDb) -> None:
    db = make_db()
    Person = people(db)
    async with db.conn(TOKEN):
        saved = await Person.model_validate({"имя": "Пётр", "Key Name": "k"}).save()
    again = make_db()
    Person2 = people(again)
    async with again.conn(TOKEN):
        [found] = await Person2.find(имя="Пётр")
        assert found.model_dump() == saved.model_dump()


async def test_alias_round_trip(make_db: MakeDb) -> None:
    db = make_db()
    Person = people(db)
    async with db.conn(TOKEN):
        await Person.model_validate({"имя": "a", "Key Name": "v"}).save()
        [found] = await Person.find(key="v")
        assert found.key == "v"


async def test_non_utf8_bytes(make_db: MakeDb) -> None:
    db = make_db()
    Person = people(db)
    png = b"\x89PNG\r\n\x1a\n\xff\x00"
    async with db.conn(TOKEN):
        await Person.model_validate({"имя": "a", "Key Name": "k", "photo": png}).save()
        [found] = await Person.find(photo=png)
        assert found.photo == png


async def test_user_json_config_ignored(make_db: MakeDb) -> None:
    db = make_db()

    @db.table
    class Blob(discobase.Table):
        model_config = ConfigDict(ser_json_bytes="base64", validate_assignment=True)
        data: bytes
        ratio: float

    async with db.conn(TOKEN):
        await Blob(data=b"\xff\x00", ratio=float("inf")).save()
        [found] = await Blob.find()
        assert (found.data, found.ratio) == (b"\xff\x00", float("inf"))


async def test_huge_int(make_db: MakeDb) -> None:
    db = make_db()

    @db.table
    class Big(discobase.Table):
        n: int

    async with db.conn(TOKEN):
        await Big(n=10**5000 + 1).save()
        [found] = await Big.find(n=10**5000 + 1)
        assert found.n == 10**5000 + 1


async def test_deep_nesting_refused_at_save(make_db: MakeDb) -> None:
    db = make_db()

    @db.table
    class Tree(discobase.Table):
        node: list  # type: ignore[type-arg]

    deep: list[Any] = []
    for _ in range(200):
        deep = [deep]
    async with db.conn(TOKEN):
        with pytest.raises(InvalidRecordError, match="levels") as info:
            await Tree(node=deep).save()
        assert info.value.details["field"] == "node"
        assert await Tree.count() == 0


def priced(db: discobase.Database) -> type[Any]:
    @db.table
    class Product(discobase.Table):
        price: Decimal
        key: str
        tags: list  # type: ignore[type-arg]
        at: dt.datetime | None = None

    return Product


async def test_decimal_exponent_bounded(make_db: MakeDb) -> None:
    db = make_db()
    Product = priced(db)
    async with db.conn(TOKEN):
        await Product(price=Decimal("1.5"), key="k", tags=[]).save()
        started = time.perf_counter()
        with pytest.raises(QueryError, match="exponent"):
            await Product.find(price="1e999999999")
        assert time.perf_counter() - started < 1.0
        with pytest.raises(discobase.DiscobaseError, match="exponent"):
            await Product(price=Decimal("1e999999999"), key="k", tags=[]).save()
        assert await Product.count() == 1


async def test_lone_surrogate_query(make_db: MakeDb) -> None:
    db = make_db()
    Product = priced(db)
    async with db.conn(TOKEN):
        with pytest.raises(QueryError, match="surrogate"):
            await Product.find(key="\ud800")
        with pytest.raises(ValueError, match="surrogate"):  # QueryError is a ValueError too
            await Product.find(key="\ud800")
        with pytest.raises(InvalidRecordError, match="surrogate"):
            await Product(price=Decimal(1), key="\udfff", tags=[]).save()


async def test_deep_query_refused(make_db: MakeDb) -> None:
    db = make_db()
    Product = priced(db)
    deep: list[Any] = []
    for _ in range(1200):
        deep = [deep]
    async with db.conn(TOKEN):
        with pytest.raises(QueryError, match="levels deep"):
            await Product.find(tags=deep)
