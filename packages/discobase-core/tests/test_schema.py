"""Stored table schemas: self-describing bytes and change detection."""

from __future__ import annotations

import pytest
from core_models import Everything, User
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from discobase_core.errors import DatabaseCorruptionError, SchemaChangeError
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
    assert notes == ["field 'age' is no longer required (it has a default now)"]


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
