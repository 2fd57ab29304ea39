"""Stored table schemas: self-describing bytes and change detection."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Literal

import pytest
from core_models import Color, Everything, Level, User
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from discobase_core.codec import RecordCodec
from discobase_core.errors import DatabaseCorruptionError, SchemaChangeError, UnsupportedTypeError
from discobase_core.hashing import FieldHasher, value_key
from discobase_core.schema import FieldSchema, TableSchema, check_compatible


def schema(model: type[BaseModel]) -> TableSchema:
    return TableSchema.from_model("user", model)


def test_schema_describes_the_table() -> None:
    s = schema(User)
    assert s.field_names == ("name", "email", "age", "bio")
    age = s.field("age")
    assert isinstance(age, FieldSchema)
    assert age.json_schema == {"type": "integer"}
    assert age.required
    assert age.type_repr == "int"
    assert s.field("nope") is None


def test_bytes_round_trip_and_are_canonical() -> None:
    for model in (User, Everything):
        s = schema(model)
        data = s.to_bytes()
        assert TableSchema.from_bytes(data, where="schema") == s
        assert TableSchema.from_bytes(data, where="schema").to_bytes() == data
        assert data.isascii()


@given(st.binary(max_size=200))
def test_from_bytes_garbage_raises_only_corruption(junk: bytes) -> None:
    with pytest.raises(DatabaseCorruptionError) as info:
        TableSchema.from_bytes(junk, where="table user schema")
    assert info.value.details["where"] == "table user schema"


def test_truncated_schema_is_corruption() -> None:
    data = schema(User).to_bytes()
    for n in range(0, len(data), 7):
        with pytest.raises(DatabaseCorruptionError):
            TableSchema.from_bytes(data[:n], where="s")


class UserV2(BaseModel):
    name: str
    email: str
    age: int
    bio: str
    nickname: str = "none"
    score: float = Field(default=0.0, description="ignored by the comparison")


class UserAgeDefault(BaseModel):
    name: str
    email: str
    age: int = 18
    bio: str


class UserMissingBio(BaseModel):
    name: str
    email: str
    age: int


class UserRequiredNew(BaseModel):
    name: str
    email: str
    age: int
    bio: str
    city: str


class UserAgeStr(BaseModel):
    name: str
    email: str
    age: str
    bio: str


def test_identical_schema_has_no_notes() -> None:
    assert check_compatible(schema(User), schema(User)) == []


def test_new_fields_with_defaults_are_allowed() -> None:
    notes = check_compatible(schema(User), schema(UserV2))
    assert len(notes) == 2
    assert "nickname" in notes[0]
    assert "default" in notes[0]
    notes = check_compatible(schema(User), schema(UserAgeDefault))
    assert notes == [
        "field 'age' is no longer required (default 18): it applies to records saved from "
        "now on; stored records keep their values"
    ]


@pytest.mark.parametrize(
    ("model", "words"),
    [
        (UserMissingBio, ["'bio'", "removed"]),
        (UserRequiredNew, ["'city'", "required"]),
        (UserAgeStr, ["'age'", "int", "str"]),
    ],
)
def test_incompatible_changes_are_explained(model: type[BaseModel], words: list[str]) -> None:
    with pytest.raises(SchemaChangeError) as info:
        check_compatible(schema(User), schema(model))
    err = info.value
    for word in words:
        assert word in str(err)
    assert "nothing was changed" in str(err)
    assert err.hint is not None
    assert "default" in err.hint
    assert err.details["table"] == "user"
    changes = err.details["changes"]
    assert isinstance(changes, list)
    assert len(changes) == 1


def test_every_incompatible_change_is_listed() -> None:
    class Mess(BaseModel):
        name: int
        city: str

    with pytest.raises(SchemaChangeError) as info:
        check_compatible(schema(User), schema(Mess))
    changes = info.value.details["changes"]
    assert isinstance(changes, list)
    assert len(changes) == 5  # email, age, bio removed; name retyped; city required


def test_newer_format_is_refused() -> None:
    stored = schema(User).model_copy(update={"format_version": 99})
    with pytest.raises(SchemaChangeError, match="newer discobase"):
        check_compatible(stored, schema(User))


# ------------------------------------------------------------------ schema history


class ItemV1(BaseModel):
    name: str


class ItemV2(BaseModel):
    name: str
    tag: str = "old"


class ItemV3(BaseModel):
    name: str
    tag: str = "new"


def test_changed_default_keeps_old_records_findable() -> None:
    # Run 1 stores Item(name); run 2 adds tag="old"; run 3 changes the default to "new".
    v1 = schema(ItemV1)
    v2 = schema(ItemV2).evolve(v1, ItemV2)
    assert v2.backfill_values() == {"tag": "old"}
    notes = check_compatible(v2, schema(ItemV3))
    assert notes == [
        "field 'tag' changed from default 'old' to default 'new': only records saved from "
        "now on get the new default; stored records keep their values"
    ]
    v3 = schema(ItemV3).evolve(v2, ItemV3)
    assert v3.backfill_values() == {"tag": "old"}  # kept for good
    assert v3.field("tag") is not None
    assert TableSchema.from_bytes(v3.to_bytes(), where="s") == v3
    # Records stored by run 1 read the backfill in run 3, not the class's current default.
    old = RecordCodec(ItemV1).encode(ItemV1(name="a"))
    codec = RecordCodec(ItemV3, backfill=v3.backfill_values())
    assert codec.decode(old, where="m") == ItemV3(name="a", tag="old")
    assert codec.decode(codec.encode(ItemV3(name="b")), where="m").tag == "new"


def test_default_factory_fixed_once() -> None:
    calls: list[int] = []

    def stamp() -> dt.datetime:
        calls.append(1)
        return dt.datetime(2024, 1, 1) + dt.timedelta(seconds=len(calls))

    class Stamped(BaseModel):
        name: str
        at: dt.datetime = Field(default_factory=stamp)

    notes = check_compatible(schema(ItemV1), schema(Stamped))
    assert "called once" in notes[0]
    evolved = schema(Stamped).evolve(schema(ItemV1), Stamped)
    assert len(calls) == 1
    fixed = evolved.backfill_values()["at"]
    assert fixed == dt.datetime(2024, 1, 1, 0, 0, 1)
    # Evolving again from the stored schema keeps the fixed value; no new call.
    again = schema(Stamped).evolve(evolved, Stamped)
    assert again.backfill_values() == {"at": fixed}
    assert len(calls) == 1
    codec = RecordCodec(Stamped, backfill=again.backfill_values())
    old = RecordCodec(ItemV1).encode(ItemV1(name="a"))
    assert {codec.decode(old, where="m").at for _ in range(3)} == {fixed}


def test_fields_present_from_the_start_have_no_backfill() -> None:
    s = schema(UserV2).evolve(schema(UserV2), UserV2)
    assert s == schema(UserV2)
    assert s.backfill_values() == {}


def test_a_default_that_cannot_be_stored_is_a_schema_change_error() -> None:
    class Bad(BaseModel):
        name: str
        n: int = "many"  # type: ignore[assignment]

    with pytest.raises(SchemaChangeError, match="'n'"):
        schema(Bad).evolve(schema(ItemV1), Bad)

    def broken() -> int:
        raise RuntimeError("no")

    class Broken(BaseModel):
        name: str
        n: int = Field(default_factory=broken)

    with pytest.raises(SchemaChangeError, match="factory"):
        schema(Broken).evolve(schema(ItemV1), Broken)


def test_a_damaged_backfill_is_corruption() -> None:
    v2 = schema(ItemV2).evolve(schema(ItemV1), ItemV2)
    field = v2.field("tag")
    assert field is not None
    for bad in ("***", base64.b64encode(b"s\x05ab").decode()):
        with pytest.raises(DatabaseCorruptionError, match="backfill"):
            field.model_copy(update={"backfill": bad}).backfill_value()


def test_added_enum_field_backfills_a_member() -> None:
    class Moody(BaseModel):
        name: str
        exact: Literal[Color.RED] = Color.RED
        level: Level = Level.HIGH

    evolved = schema(Moody).evolve(schema(ItemV1), Moody)
    backfill = evolved.backfill_values(Moody)
    assert backfill == {"exact": Color.RED, "level": Level.HIGH}
    assert type(backfill["level"]) is Level
    assert FieldHasher(Moody).key("exact", backfill["exact"]) == value_key(Color.RED)
    codec = RecordCodec(Moody, backfill=backfill)
    old = RecordCodec(ItemV1).encode(ItemV1(name="a"))
    assert codec.decode(old, where="m") == Moody(name="a")


def test_a_default_json_readers_refuse_keeps_the_schema_readable() -> None:
    """A 5,000-digit int default is valid JSON no JSON reader here accepts: stored as such,
    it made every checkpoint of its table unreadable (found by the generated-models test)."""

    class Huge(BaseModel):
        n: int = -60728 * 10**4663

    schema = TableSchema.from_model("Huge", Huge)
    assert TableSchema.from_bytes(schema.to_bytes(), where="test") == schema
    assert isinstance(schema.fields[0].default, str)


def test_a_schema_that_cannot_be_stored_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever makes a schema unreadable once stored is refused at @db.table time."""

    def unreadable(data: bytes, *, where: str) -> TableSchema:
        raise DatabaseCorruptionError(f"{where}: bad", where=where, reason="cannot parse")

    monkeypatch.setattr(TableSchema, "from_bytes", staticmethod(unreadable))
    with pytest.raises(UnsupportedTypeError, match="does not survive being stored: cannot parse"):
        TableSchema.from_model("User", User)
