"""Tables without their classes: stored schemas, classes rebuilt from them, text values."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import uuid
from typing import Literal, Optional

import pydantic
import pytest
from discobase_test_support import TOKEN, MakeDb

import discobase
from discobase import _catalog as catalog
from discobase_core.hashing import FieldHasher, canonical_bytes
from discobase_core.schema import TableSchema, check_compatible
from discobase_core.state import KEY_MASK
from discobase_emulator import Emulator


class Color(enum.Enum):
    red = "red"
    blue = "blue"


class Address(pydantic.BaseModel):
    city: str
    zip: int = 0


class Everything(discobase.Table):
    name: str
    age: int = 3
    ratio: float
    ok: bool
    nothing: None = None
    maybe: Optional[int] = None  # noqa: UP045 - the other spelling is tested too
    either: int | None = None
    blob: bytes
    when: dt.datetime
    day: dt.date
    clock: dt.time
    ident: uuid.UUID
    price: decimal.Decimal
    tags: list[str] = pydantic.Field(default_factory=list)
    counts: dict[str, int]
    members: set[int]
    frozen: frozenset[str]
    pair: tuple[int, str]
    many: tuple[int, ...]
    color: Color = Color.red
    address: Address
    addresses: list[Address]
    kind: Literal["x", "y"]
    mixed: int | str


def _sample() -> Everything:
    return Everything(
        name="Ada",
        ratio=0.5,
        ok=True,
        blob=b"\x00\x01",
        when=dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC),
        day=dt.date(2024, 5, 1),
        clock=dt.time(12, 30),
        ident=uuid.UUID(int=7),
        price=decimal.Decimal("1.50"),
        tags=["a", "b"],
        counts={"a": 1},
        members={1, 2},
        frozen=frozenset({"z"}),
        pair=(1, "one"),
        many=(1, 2, 3),
        color=Color.blue,
        address=Address(city="Oslo"),
        addresses=[Address(city="Rome", zip=1)],
        kind="y",
        mixed="m",
    )


def test_a_rebuilt_class_has_the_stored_schema_and_hashes_values_alike() -> None:
    stored = TableSchema.from_model("Everything", Everything)
    rebuilt = catalog.model_from_schema(stored)
    again = TableSchema.from_model("Everything", rebuilt)
    assert check_compatible(stored, again) == []
    # Equal schemas: opening the table with the rebuilt class rewrites no checkpoint.
    assert again == stored
    record = _sample()
    copy = rebuilt.model_validate_json(record.model_dump_json())
    assert FieldHasher(Everything).keys(record) == FieldHasher(rebuilt).keys(copy)
    assert canonical_bytes(copy) != b""  # hashable throughout
    assert copy.model_dump(mode="json") == record.model_dump(mode="json")
    assert type(copy.price) is decimal.Decimal
    assert copy.price == decimal.Decimal("1.50")
    assert isinstance(copy.members, set)
    assert isinstance(copy.frozen, frozenset)
    assert isinstance(copy.address, pydantic.BaseModel)
    assert copy.color.value == "blue"  # type: ignore[attr-defined]


def test_defaults_of_a_rebuilt_class() -> None:
    rebuilt = catalog.model_from_schema(TableSchema.from_model("Everything", Everything))
    fields = rebuilt.model_fields
    assert fields["age"].default == 3
    assert fields["tags"].default_factory is list
    assert fields["color"].default.value == "red"
    assert fields["name"].is_required()


@pytest.mark.parametrize(
    ("field", "text", "expected"),
    [
        ("name", "42", "42"),
        ("name", "", ""),
        ("age", "42", 42),
        ("ratio", "0.25", 0.25),
        ("ok", "true", True),
        ("maybe", "", None),
        ("maybe", "null", None),
        ("maybe", "7", 7),
        ("when", "2024-05-01T12:00:00Z", dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)),
        ("day", "2024-05-01", dt.date(2024, 5, 1)),
        ("ident", str(uuid.UUID(int=7)), uuid.UUID(int=7)),
        ("price", "1.50", decimal.Decimal("1.50")),
        ("tags", '["a","b"]', ["a", "b"]),
        ("members", "[2,1]", {1, 2}),
        ("pair", '[1,"one"]', (1, "one")),
        ("color", "blue", Color.blue),
        ("kind", "x", "x"),
        ("address", '{"city":"Oslo"}', Address(city="Oslo")),
    ],
)
def test_parse_text_uses_the_field_type(field: str, text: str, expected: object) -> None:
    assert catalog.parse_text(Everything, field, text) == expected


@pytest.mark.parametrize(
    ("field", "text", "words"),
    [
        ("age", "abc", "field 'age' of type int"),
        ("when", "yesterday", "field 'when' of type datetime"),
        ("nope", "1", "has no field 'nope'"),
        ("kind", "z", "field 'kind'"),
    ],
)
def test_parse_text_refuses_what_the_type_refuses(field: str, text: str, words: str) -> None:
    with pytest.raises(discobase.QueryError) as caught:
        catalog.parse_text(Everything, field, text)
    assert words in caught.value.message
    assert caught.value.hint


def test_parse_assignments_and_text_of_round_trip() -> None:
    record = _sample()
    texts = {name: catalog.text_of(getattr(record, name)) for name in Everything.model_fields}
    back = catalog.record_from_text(Everything, texts)
    assert back.model_dump() == record.model_dump()
    with pytest.raises(discobase.QueryError, match="is not FIELD=VALUE"):
        catalog.parse_assignments(Everything, ["age"])
    assert catalog.parse_assignments(Everything, ["age=5", "name=x=y"]) == {
        "age": 5,
        "name": "x=y",
    }


def test_parse_record_refuses_unknown_fields_but_ignores_the_id() -> None:
    class Small(discobase.Table):
        name: str

    assert catalog.parse_record(Small, {"_id": 4, "name": "a"}).name == "a"
    with pytest.raises(discobase.QueryError, match="has no field 'nmae'"):
        catalog.parse_record(Small, {"nmae": "a"})
    with pytest.raises(discobase.QueryError, match="must be a JSON object"):
        catalog.parse_record(Small, [1])


async def test_a_table_opens_without_its_class(make_db: MakeDb, emu: Emulator) -> None:
    writer = make_db()

    @writer.table
    class Pet(discobase.Table):
        name: str
        kind: Color = Color.red
        owner: Address | None = None
        born: dt.date | None = None

    async with writer.conn(TOKEN):
        await Pet(name="Rex", owner=Address(city="Oslo"), born=dt.date(2020, 1, 2)).save()
        await Pet(name="Tom", kind=Color.blue).save()

    reader = make_db(read_only=True)  # beside any writer, and writes nothing
    async with reader.conn(TOKEN):
        mark = await emu.control.mark()
        tables = await discobase.stored_tables(reader)
        assert [(t.name, t.records) for t in tables] == [("Pet", 2)]
        assert tables[0].schema.field_names == ("name", "kind", "owner", "born")
        cls = await discobase.open_table(reader, "pet")  # names ignore case
        assert cls.__name__ == "Pet"
        routes = (await emu.control.metrics(since=mark))["by_route"]
        assert not [route for route in routes if route.startswith(("POST", "PATCH", "PUT"))]
        assert await cls.count() == 2
        rex = await cls.find_unique(name="Rex")
        assert rex is not None
        assert rex.owner.city == "Oslo"
        blues = await cls.find(**discobase.parse_assignments(cls, ["kind=blue"]))
        assert [r.name for r in blues] == ["Tom"]  # type: ignore[attr-defined]
        with pytest.raises(discobase.ReadOnlyError):
            await catalog.parse_record(cls, {"name": "Kit"}).save()

    editor = make_db()  # a writer opens the table without its class too
    async with editor.conn(TOKEN):
        cls = await discobase.open_table(editor, "Pet")
        rex = await cls.find_unique(name="Rex")
        new = catalog.parse_record(cls, {"name": "Kit", "born": "2021-03-04"})
        await new.save()
        assert new.disco_id == 3
        await catalog.update_record(cls, 3, {"kind": "blue"})
        assert await cls.count(kind="blue") == 2
        await rex.delete()
        assert [t.records for t in await discobase.stored_tables(editor)] == [2]
        with pytest.raises(discobase.DatabaseTableError, match="has no table 'Cat'"):
            await discobase.open_table(editor, "Cat")
        with pytest.raises(discobase.NotFoundError):
            await catalog.get_record(cls, 1)

    again = make_db()  # the original class still opens what the rebuilt one wrote

    @again.table
    class Pet(discobase.Table):  # type: ignore[no-redef]
        name: str
        kind: Color = Color.red
        owner: Address | None = None
        born: dt.date | None = None

    async with again.conn(TOKEN):
        names = sorted(p.name for p in await Pet.find(kind=Color.blue))
        assert names == ["Kit", "Tom"]


class Note(discobase.Table):
    text: str
    level: int = 0


async def test_check_finds_a_record_an_index_misses_and_repair_reindexes_it(
    make_db: MakeDb,
) -> None:
    db = make_db()
    notes = db.table(type("Note", (Note,), {}))
    async with db.conn(TOKEN):
        saved = [await notes(text=f"n{i}", level=i % 2).save() for i in range(5)]
        healthy = await catalog.verify_table(notes)
        assert (healthy.ok, healthy.checked, healthy.records) == (True, 5, 5)
        victim = saved[2].disco_id
        assert victim is not None
        store = notes._store()
        # Damage, as a bug would leave it: the level index forgets record 3.
        level_key = store.hasher.key("level", 0) & KEY_MASK
        assert store.state.indexes["level"].remove(level_key, victim)
        assert await notes.count(level=0) == 2
        damaged = await catalog.verify_table(notes)
        assert damaged.problems == [(victim, "not found through the index of level")]
        repaired = await catalog.verify_table(notes, repair=True)
        assert repaired.repaired == [victim]
        assert await notes.count(level=0) == 3
        assert store.state.indexes["level"].remove(level_key, victim)  # damaged again
        await store.checkpoint()

    db = make_db()
    notes = db.table(type("Note", (Note,), {}))
    async with db.conn(TOKEN):  # indexes are built from the directory: the damage is gone
        assert (await catalog.verify_table(notes)).ok
        assert await notes.count(level=0) == 3
        assert await notes.count() == 5


async def test_iter_records_reads_in_chunks_oldest_first(make_db: MakeDb) -> None:
    db = make_db()

    @db.table
    class Row(discobase.Table):
        n: int

    async with db.conn(TOKEN):
        for n in range(7):
            await Row(n=n).save()
        seen = [r.n async for r in catalog.iter_records(Row, chunk=3)]  # type: ignore[attr-defined]
        assert seen == list(range(7))
        stats = await catalog.table_stats(Row)
        assert stats.records == 7
        codec = Row._store().codec
        assert stats.live_bytes == sum(len(codec.encode(r)) for r in await Row.find())
        assert stats.messages >= 8  # 7 commits and at least one checkpoint
        assert stats.stored_bytes > stats.live_bytes
        assert stats.lanes == 4
        assert sum(stats.probe_histogram.values()) == 7
        assert stats.fields["n"]["load_factor"] > 0
