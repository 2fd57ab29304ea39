"""Stable hashing: known answers, cross-process stability, canonical equality, type support."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from decimal import Decimal
from typing import Any

import pytest
from core_models import Address, Color, Everything, Level, User
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from discobase_core.errors import InvalidRecordError, QueryError, UnsupportedTypeError
from discobase_core.hashing import (
    MAX_DEPTH,
    MAX_INT_BITS,
    FieldHasher,
    canonical_bytes,
    check_supported,
    string_key,
    value_key,
)

UTC = dt.UTC


def sha1_key(data: bytes) -> int:
    return int.from_bytes(hashlib.sha1(data).digest()[:8], "big")


# ------------------------------------------------------------------ known answers


def test_string_key_known_answers() -> None:
    # Pinned: changing any of these breaks every stored index.
    assert string_key("Peter") == 0x64CA93F83BB29B51 == 7262780043451079505
    assert string_key("") == 0xDA39A3EE5E6B4B0D
    assert string_key("foobar") == 0x8843D7F92416211D
    assert string_key("Pétér ☃") == sha1_key("Pétér ☃".encode())


def test_canonical_bytes_known_answers() -> None:
    assert canonical_bytes(None) == b"N"
    assert canonical_bytes(True) == b"T"
    assert canonical_bytes(False) == b"F"
    assert canonical_bytes(1) == b"i\x01\x01"
    assert canonical_bytes(-1) == b"i\x01\xff"
    assert canonical_bytes(255) == b"i\x02\x00\xff"
    assert canonical_bytes(0.5) == b"q\x01\x01\x01\x02"
    assert canonical_bytes("ab") == b"s\x02ab"
    assert canonical_bytes(b"ab") == b"b\x02ab"
    assert canonical_bytes([1, "a"]) == b"l\x02i\x01\x01s\x01a"
    assert canonical_bytes(dt.date(1, 1, 1)) == b"a\x01"
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert canonical_bytes(u) == b"U" + bytes.fromhex("12345678123456781234567812345678")
    assert value_key(1) == sha1_key(b"\xffi\x01\x01")
    assert value_key(None) == sha1_key(b"\xffN")


# ------------------------------------------------------------------ cross-process stability

FIXED_VALUES_SRC = """
import datetime as dt, uuid
from decimal import Decimal
from pydantic import BaseModel
class Inner(BaseModel):
    a: int
    b: list[str]
VALUES = [
    "Peter", "", "ünïcödé", 0, 1, -1, 2**70, 1.5, -0.0, float("inf"), True, False, None,
    b"\\x00\\xff", dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    dt.datetime(2024, 5, 1, 12, 30), dt.date(2024, 5, 1), dt.time(23, 59, 1, 5),
    uuid.UUID("12345678-1234-5678-1234-567812345678"), Decimal("3.14"), Decimal("1.00"),
    {"b": 1, "a": [1, 2, {"z": None}]}, [1, "two", 3.0], (1, 2), {"x", "y", "z"},
    frozenset({3, 1, 2}), Inner(a=1, b=["p", "q"]),
]
"""


def _keys_in_subprocess(seed: str) -> list[int]:
    code = textwrap.dedent(FIXED_VALUES_SRC) + textwrap.dedent(
        """
        import json
        from discobase_core.hashing import value_key
        print(json.dumps([value_key(v) for v in VALUES]))
        """
    )
    env = dict(os.environ, PYTHONHASHSEED=seed)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return list(json.loads(out.stdout))


def test_keys_are_stable_across_processes() -> None:
    namespace: dict[str, Any] = {}
    exec(textwrap.dedent(FIXED_VALUES_SRC), namespace)
    here = [value_key(v) for v in namespace["VALUES"]]
    assert _keys_in_subprocess("1") == here
    assert _keys_in_subprocess("4242") == here


# ------------------------------------------------------------------ canonical equality


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (1, 1.0),
        (0, -0.0),
        (0.0, -0.0),
        (Decimal("1.0"), Decimal("1.00")),
        (Decimal("1.0"), 1),
        (Decimal("0.5"), 0.5),
        (Decimal("NaN"), float("nan")),
        (Decimal("-Infinity"), float("-inf")),
        (
            dt.datetime(2024, 1, 1, 12, tzinfo=UTC),
            dt.datetime(2024, 1, 1, 14, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        ),
        (dt.time(12, tzinfo=UTC), dt.time(13, tzinfo=dt.timezone(dt.timedelta(hours=1)))),
        ([1, 2], (1, 2)),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
        ({1: "x", 2: "y"}, {2.0: "y", 1.0: "x"}),
        ({"c", "a", "b"}, frozenset({"b", "c", "a"})),
        (Color.RED, "red"),
        (Level.HIGH, 2),
        (Address(street="x", number=1), Address(number=1, street="x")),
    ],
)
def test_equal_values_hash_equal(a: object, b: object) -> None:
    assert canonical_bytes(a) == canonical_bytes(b)
    assert value_key(a) == value_key(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (True, 1),
        (False, 0),
        (None, 0),
        ("1", 1),
        (b"a", "a"),
        (1, 1.5),
        ([1], {1}),
        ([], {}),
        (dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 1, tzinfo=UTC)),
        (dt.date(2024, 1, 1), dt.datetime(2024, 1, 1)),
        ([[1, 2], 3], [1, [2, 3]]),
        ({"a": "b"}, {"b": "a"}),
    ],
)
def test_unequal_values_hash_apart(a: object, b: object) -> None:
    assert canonical_bytes(a) != canonical_bytes(b)
    assert value_key(a) != value_key(b)


def test_strings_use_plain_sha1_and_non_strings_never_collide_with_them() -> None:
    assert value_key("Peter") == string_key("Peter")
    assert value_key(Color.GREEN) == string_key("green")
    # A non-string input starts with 0xFF, which no UTF-8 text contains.
    assert value_key(b"Peter") != string_key("Peter")


numbers = st.one_of(
    st.integers(),
    st.floats(allow_nan=False),
    st.decimals(allow_nan=False, allow_infinity=False, places=None),
)


@given(numbers, numbers)
def test_numbers_hash_equal_iff_equal(a: object, b: object) -> None:
    assert (canonical_bytes(a) == canonical_bytes(b)) == (a == b)


@given(
    st.datetimes(timezones=st.timezones()),
    st.datetimes(timezones=st.timezones()),
)
def test_aware_datetimes_hash_equal_iff_same_instant(a: dt.datetime, b: dt.datetime) -> None:
    same = a.astimezone(UTC) == b.astimezone(UTC) if a.utcoffset() is not None else a == b
    assert (value_key(a) == value_key(b)) == same


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(json_like, json_like)
def test_json_values_hash_equal_iff_equal(a: object, b: object) -> None:
    assert (canonical_bytes(a) == canonical_bytes(b)) == (a == b)


# ------------------------------------------------------------------ FieldHasher


def test_field_hasher_fields_and_fast_path_agree_with_validated_path() -> None:
    hasher = FieldHasher(User)
    assert hasher.fields == ("name", "email", "age", "bio")
    user = User(name="Peter", email="p@example.com", age=30, bio="hi")
    keys = hasher.keys(user)
    assert keys == {f: hasher.key(f, getattr(user, f)) for f in hasher.fields}
    assert keys["name"] == string_key("Peter")
    assert keys["age"] == value_key(30)
    assert hasher.key_tuple(user) == tuple(keys.values())


def test_field_hasher_validates_query_values() -> None:
    hasher = FieldHasher(Everything)
    assert hasher.key("f", 1) == hasher.key("f", 1.0)
    assert hasher.key("i", "30") == hasher.key("i", 30)
    assert hasher.key("uid", "12345678-1234-5678-1234-567812345678") == hasher.key(
        "uid", uuid.UUID("12345678123456781234567812345678")
    )
    assert hasher.key("dec", "1.00") == hasher.key("dec", Decimal(1))
    assert hasher.key("color", "red") == hasher.key("color", Color.RED)
    assert hasher.key("address", {"street": "x", "number": 1}) == hasher.key(
        "address", Address(street="x", number=1)
    )
    assert hasher.key("when", "2024-01-01T12:00:00Z") == hasher.key(
        "when", dt.datetime(2024, 1, 1, 13, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    )
    assert hasher.key("opt", None) == value_key(None)
    assert hasher.key("tags", ["a", "b"]) == hasher.key("tags", {"b", "a"})


def test_field_hasher_errors() -> None:
    hasher = FieldHasher(User)
    with pytest.raises(QueryError) as info:
        hasher.key("nmae", "Peter")
    assert "nmae" in str(info.value)
    assert "name, email, age, bio" in str(info.value)
    assert info.value.details["fields"] == ["name", "email", "age", "bio"]
    with pytest.raises(QueryError) as info:
        hasher.key("age", "thirty")
    assert "'age'" in str(info.value)
    assert "int" in str(info.value)
    assert info.value.details["expected"] == "int"


class WithObject(BaseModel):
    name: str
    blob: object


class WithComplex(BaseModel):
    values: list[complex]


class Nested(BaseModel):
    inner: WithComplex | None = None


@pytest.mark.parametrize(
    ("model", "field", "type_name"),
    [(WithObject, "blob", "object"), (WithComplex, "values", "complex"), (Nested, "inner", "")],
)
def test_unsupported_types_are_named(model: type[BaseModel], field: str, type_name: str) -> None:
    with pytest.raises(UnsupportedTypeError) as info:
        check_supported(model)
    assert info.value.details["field"] == field
    assert f"'{field}'" in str(info.value)
    assert type_name in str(info.value)
    assert "supported types" in str(info.value)
    with pytest.raises(UnsupportedTypeError):
        FieldHasher(model)


def test_everything_is_supported() -> None:
    check_supported(Everything)
    check_supported(User)


def test_unsupported_runtime_value_names_the_field() -> None:
    class Loose(BaseModel):
        items: list  # type: ignore[type-arg]

    hasher = FieldHasher(Loose)
    with pytest.raises(UnsupportedTypeError) as info:
        hasher.keys(Loose(items=[object()]))
    assert info.value.details["field"] == "items"
    assert "object" in str(info.value)


# ------------------------------------------------------------------ findings: bounded work


class Priced(BaseModel):
    price: Decimal
    key: str
    tags: list  # type: ignore[type-arg]
    n: int = 0


def test_decimal_exponent_bounded() -> None:
    # find(price="1e999999999") once froze the event loop building a billion-digit int.
    hasher = FieldHasher(Priced)
    for text in ("1e999999999", "-1e-999999999", "1" * 5000):
        started = time.perf_counter()
        with pytest.raises(QueryError, match="Decimal") as info:
            hasher.key("price", text)
        assert time.perf_counter() - started < 0.5
        assert isinstance(info.value, ValueError)
        assert info.value.details["field"] == "price"
    assert hasher.key("price", "1e4300") == value_key(Decimal("1e4300"))
    with pytest.raises(UnsupportedTypeError, match="exponent"):
        canonical_bytes(Decimal("1e999999999"))
    with pytest.raises(QueryError, match="bits"):
        hasher.key("n", 1 << (MAX_INT_BITS + 1))


def test_lone_surrogate_query() -> None:
    hasher = FieldHasher(Priced)
    with pytest.raises(QueryError, match="surrogate") as info:
        hasher.key("key", "\ud800")
    assert info.value.details["field"] == "key"
    with pytest.raises(InvalidRecordError, match="surrogate"):
        string_key("a\udfffb")
    with pytest.raises(InvalidRecordError, match="surrogate") as saved:
        hasher.keys(Priced(price=Decimal(1), key="\ud800", tags=[]))
    assert saved.value.details["field"] == "key"


def test_deep_query_refused() -> None:
    hasher = FieldHasher(Priced)
    deep: list[Any] = []
    for _ in range(1200):
        deep = [deep]
    with pytest.raises(QueryError, match="levels deep") as info:
        hasher.key("tags", deep)
    assert len(str(info.value)) < 400
    shallow: list[Any] = []
    for _ in range(MAX_DEPTH - 1):
        shallow = [shallow]
    assert hasher.key("tags", shallow) == value_key(shallow)


def test_query_error_messages_stay_short() -> None:
    with pytest.raises(QueryError) as info:
        FieldHasher(Priced).key("n", "x" * 100_000)
    assert len(str(info.value)) < 500
