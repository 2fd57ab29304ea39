"""discobase's lossless value encoding: every supported value reads back exactly, with its
type; anything else decodes to DatabaseCorruptionError, in memory bounded by its bytes."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import tracemalloc
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from discobase_core._varint import encode_uvarint
from discobase_core.errors import DatabaseCorruptionError, InvalidRecordError
from discobase_core.hashing import MAX_DEPTH, canonical_bytes
from discobase_core.values import decode_value, encode_value

offsets = st.timedeltas(
    min_value=-dt.timedelta(hours=23, minutes=59, seconds=59),
    max_value=dt.timedelta(hours=23, minutes=59, seconds=59),
)
zones = st.none() | st.builds(dt.timezone, offsets)
hashable_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.builds(lambda a, e: a * 10**e, st.integers(), st.integers(0, 2000))
    | st.floats(allow_nan=False)
    | st.decimals(allow_nan=False)
    | st.text()
    | st.binary()
    | st.datetimes(timezones=zones)
    | st.dates()
    | st.times(timezones=zones)
    | st.uuids()
)
hashables = st.recursive(
    hashable_leaves,
    lambda inner: st.lists(inner, max_size=3).map(tuple) | st.frozensets(inner, max_size=3),
    max_leaves=8,
)
values = st.recursive(
    hashable_leaves | st.just(math.nan),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.sets(hashables, max_size=4)
        | st.frozensets(hashables, max_size=4)
        | st.dictionaries(hashables, inner, max_size=4)
    ),
    max_leaves=20,
)


def same(a: Any, b: Any) -> bool:
    """Equal, of the same types all the way down, with the same UTC offsets and folds."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return repr(a) == repr(b)
    if isinstance(a, Decimal):
        return str(a) == str(b)
    if isinstance(a, dt.datetime | dt.time):
        return bool(a == b and a.utcoffset() == b.utcoffset() and a.fold == b.fold)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(map(canonical_bytes, a)) == list(map(canonical_bytes, b)) and all(
            same(x, y) for x, y in zip(a.values(), b.values(), strict=True)
        )
    if isinstance(a, set | frozenset):
        return sorted(map(canonical_bytes, a)) == sorted(map(canonical_bytes, b))
    return bool(a == b)


@given(values)
def test_every_value_reads_back_exactly(value: Any) -> None:
    data = encode_value(value)
    assert same(decode_value(data, where="w"), value)


@given(st.binary(max_size=200))
def test_garbage_raises_only_corruption(junk: bytes) -> None:
    try:
        value = decode_value(junk, where="page 9")
    except DatabaseCorruptionError as exc:
        where = exc.details["where"]
    else:
        where = "page 9"
        assert same(decode_value(encode_value(value), where="w"), value)
    assert where == "page 9"


@given(values, st.data())
def test_damaged_values_raise_only_corruption(value: Any, data: st.DataObject) -> None:
    raw = bytearray(encode_value(value))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] = data.draw(st.integers(0, 255))
    del raw[data.draw(st.integers(0, len(raw))) :]
    with contextlib.suppress(DatabaseCorruptionError):
        decode_value(bytes(raw), where="w")


@pytest.mark.parametrize("tag", [b"l", b"u", b"e", b"g", b"m", b"s", b"b"])
def test_forged_counts_allocate_nothing(tag: bytes) -> None:
    # A count or length of 2**60 in a dozen bytes is refused before anything is built.
    forged = tag + encode_uvarint(1 << 60) + b"N" * 8
    tracemalloc.start()
    try:
        with pytest.raises(DatabaseCorruptionError, match=r"count|truncated"):
            decode_value(forged, where="w")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


def test_depth_is_bounded_both_ways() -> None:
    value: list[Any] = []
    for _ in range(MAX_DEPTH - 1):
        value = [value]
    assert decode_value(encode_value(value), where="w") == value
    with pytest.raises(InvalidRecordError, match="levels"):
        encode_value([value])
    forged = b"l\x01" * (MAX_DEPTH + 1) + b"N"
    with pytest.raises(DatabaseCorruptionError, match="levels"):
        decode_value(forged, where="w")
    with pytest.raises(DatabaseCorruptionError, match="levels"):
        decode_value(b"l\x01" * 5000 + b"N", where="w")


def test_strict_utf8_and_known_forms() -> None:
    with pytest.raises(DatabaseCorruptionError, match="UTF-8"):
        decode_value(b"s\x03\xed\xa0\x80", where="w")  # an encoded lone surrogate
    with pytest.raises(DatabaseCorruptionError, match="Decimal"):
        decode_value(b"c\x0b1e999999999", where="w")
    with pytest.raises(DatabaseCorruptionError, match="duplicate"):
        decode_value(b"e\x02i\x01\x01i\x01\x01", where="w")
    with pytest.raises(DatabaseCorruptionError, match="unhashable"):
        decode_value(b"m\x01l\x00N", where="w")
