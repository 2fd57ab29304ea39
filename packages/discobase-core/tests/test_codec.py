"""Record codec round-trips, framing and armour: damage is always DatabaseCorruptionError."""

from __future__ import annotations

import datetime as dt
import string

import pytest
from core_models import Address, Color, Everything, Level, User
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from discobase_core.codec import (
    ARMOR_PREFIX,
    ATTACHMENT_LIMIT,
    CONTENT_LIMIT,
    FORMAT_VERSION,
    SEAL_OVERHEAD_MAX,
    RecordCodec,
    armor,
    armored_length,
    dearmor,
    max_payload_for_content,
    seal,
    sealed_length,
    unseal,
)
from discobase_core.errors import DatabaseCorruptionError, InvalidRecordError
from discobase_core.hashing import FieldHasher, canonical_bytes

minute_offsets = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: dt.timedelta(minutes=m))
everything_st = st.builds(
    Everything,
    s=st.text(),
    i=st.integers(),
    f=st.floats(),
    b=st.booleans(),
    opt=st.none() | st.text(max_size=5),
    raw=st.binary(max_size=20).filter(lambda b: _utf8(b)),
    # Whole-minute offsets: pydantic writes ISO offsets to the minute (see test below).
    when=st.datetimes(timezones=st.none() | st.builds(dt.timezone, minute_offsets)),
    day=st.dates(),
    clock=st.times(),
    uid=st.uuids(),
    dec=st.decimals(allow_nan=False, allow_infinity=False),
    color=st.sampled_from(Color),
    level=st.sampled_from(Level),
    pair=st.tuples(st.integers(), st.text()),
    items=st.lists(st.integers(), max_size=5),
    mapping=st.dictionaries(st.text(max_size=5), st.integers(), max_size=4),
    tags=st.sets(st.text(max_size=5), max_size=4),
    frozen=st.frozensets(st.integers(), max_size=4),
    address=st.builds(Address, street=st.text(max_size=10), number=st.integers()),
    lit=st.sampled_from(["a", "b"]),
    short=st.text(max_size=20),
    union=st.integers() | st.text(max_size=5),
)


def _utf8(b: bytes) -> bool:
    # pydantic dumps bytes as UTF-8 text by default (ser_json_bytes="utf8").
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@settings(max_examples=60)
@given(everything_st)
def test_record_round_trip(record: Everything) -> None:
    codec = RecordCodec(Everything)
    data = codec.encode(record)
    back = codec.decode(data, where="test")
    assert canonical_bytes(back) == canonical_bytes(record)
    assert FieldHasher(Everything).keys(back) == FieldHasher(Everything).keys(record)
    assert codec.encode(back) == data or record.tags or record.frozen  # sets: any order


def test_user_encoding_is_compact_json_with_python_names() -> None:
    codec = RecordCodec(User)
    user = User(name="Peter", email="p@example.com", age=30, bio="hi")
    assert codec.encode(user) == b'{"name":"Peter","email":"p@example.com","age":30,"bio":"hi"}'
    assert codec.encode_many([user, user]) == [codec.encode(user)] * 2
    assert codec.decode_many([(codec.encode(user), "m1")]) == [user]


def test_wrong_typed_assignment_is_refused_before_writing() -> None:
    codec = RecordCodec(User)
    user = User(name="Peter", email="p@example.com", age=30, bio="hi")
    user.age = "abc"  # type: ignore[assignment]
    with pytest.raises(InvalidRecordError):
        codec.encode(user)
    with pytest.raises(InvalidRecordError):
        codec.encode(Address(street="x", number=1))  # type: ignore[arg-type]


def test_non_finite_floats_are_never_silently_nulled() -> None:
    class Reading(BaseModel):
        value: float | None

    codec = RecordCodec(Reading)
    assert codec.decode(codec.encode(Reading(value=None)), where="t") == Reading(value=None)
    with pytest.raises(InvalidRecordError, match="ser_json_inf_nan"):
        codec.encode(Reading(value=float("inf")))


@given(st.binary(max_size=100))
def test_decode_garbage_raises_only_corruption(junk: bytes) -> None:
    with pytest.raises(DatabaseCorruptionError) as info:
        RecordCodec(User).decode(junk, where="message 42")
    assert info.value.details["where"] == "message 42"


def test_decode_wrong_record_names_the_field() -> None:
    with pytest.raises(DatabaseCorruptionError, match="age"):
        RecordCodec(User).decode(b'{"name":"a","email":"b","age":"x","bio":""}', where="m")


# ------------------------------------------------------------------ framing


@given(
    st.text(alphabet=string.ascii_lowercase + string.digits + "_-", min_size=1, max_size=8),
    st.binary(max_size=300),
)
def test_seal_round_trip(kind: str, payload: bytes) -> None:
    blob = seal(kind, payload)
    assert len(blob) == sealed_length(kind, len(payload)) <= len(payload) + SEAL_OVERHEAD_MAX
    assert unseal(blob, where="w") == (kind, payload)
    assert unseal(blob, where="w", kind=kind) == (kind, payload)
    assert blob[:4] == b"DSCB"
    assert blob[4] == FORMAT_VERSION


def test_seal_rejects_bad_kinds() -> None:
    for kind in ("", "toolongkind", "Upper", "sp ace", "ü"):
        with pytest.raises(ValueError, match="kind"):
            seal(kind, b"")


def test_unseal_reasons() -> None:
    blob = seal("rec", b"hello")
    cases = {
        "bad magic": b"XXXX" + blob[4:],
        "newer discobase": blob[:4] + bytes([FORMAT_VERSION + 1]) + blob[5:],
        "truncated": blob[:-1],
        "trailing": blob + b"!",
        "checksum": blob[:-5] + b"H" + blob[-4:],
    }
    for reason, bad in cases.items():
        with pytest.raises(DatabaseCorruptionError, match=reason) as info:
            unseal(bad, where="message 7")
        assert info.value.details["where"] == "message 7"
        assert "message 7" in str(info.value)
    with pytest.raises(DatabaseCorruptionError, match="wrong kind"):
        unseal(blob, where="m", kind="ixpage")


@given(st.binary(max_size=80))
def test_unseal_garbage_raises_only_corruption(junk: bytes) -> None:
    with pytest.raises(DatabaseCorruptionError):
        unseal(junk, where="w")


@given(st.binary(max_size=60), st.data())
def test_any_damage_to_a_sealed_blob_is_detected(payload: bytes, data: st.DataObject) -> None:
    blob = bytearray(seal("rec", payload))
    how = data.draw(st.sampled_from(["flip", "truncate", "extend", "swap"]))
    if how == "flip":
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] ^= 1 << data.draw(st.integers(0, 7))
    elif how == "truncate":
        del blob[data.draw(st.integers(0, len(blob) - 1)) :]
    elif how == "extend":
        blob += data.draw(st.binary(min_size=1, max_size=5))
    else:
        i = data.draw(st.integers(0, len(blob) - 2))
        if blob[i] == blob[i + 1]:
            return
        blob[i], blob[i + 1] = blob[i + 1], blob[i]
    with pytest.raises(DatabaseCorruptionError):
        unseal(bytes(blob), where="w")


# ------------------------------------------------------------------ armour


@given(st.binary(max_size=400))
def test_armor_round_trip_and_is_discord_safe(blob: bytes) -> None:
    text = armor(blob)
    assert len(text) == armored_length(len(blob))
    assert text.startswith(ARMOR_PREFIX)
    assert text.isascii()
    assert text == text.strip()
    assert set(text[len(ARMOR_PREFIX) :]) <= set(string.ascii_letters + string.digits + "-_")
    assert dearmor(text, where="w") == blob


def test_content_budget() -> None:
    n = max_payload_for_content()
    assert armored_length(n) <= CONTENT_LIMIT < armored_length(n + 1)
    assert ATTACHMENT_LIMIT == 10 * 1024 * 1024


@given(st.text(max_size=60))
def test_dearmor_garbage_raises_only_corruption(text: str) -> None:
    try:
        data = dearmor(text, where="w")
    except DatabaseCorruptionError:
        return
    assert armor(data) == text


@pytest.mark.parametrize(
    "text", ["", "dscb", "DSCB:AAAA", "dscb:A", "dscb:AB=", "dscb:A B", " dscb:AAAA", "dscb:AB"]
)
def test_dearmor_rejects(text: str) -> None:
    with pytest.raises(DatabaseCorruptionError):
        dearmor(text, where="w")


def test_whole_pipeline_detects_edits() -> None:
    codec = RecordCodec(User)
    user = User(name="Peter", email="p@example.com", age=30, bio="hi")
    text = armor(seal("rec", codec.encode(user)))
    _, payload = unseal(dearmor(text, where="m"), where="m", kind="rec")
    assert codec.decode(payload, where="m") == user
    edited = text.replace("UGV0ZXI", "UGF1bCI")  # an edit of the base64 of "Peter"
    if edited != text:
        with pytest.raises(DatabaseCorruptionError):
            unseal(dearmor(edited, where="m"), where="m")


def test_datetime_round_trip_keeps_the_instant() -> None:
    class Event(BaseModel):
        at: dt.datetime

    codec = RecordCodec(Event)
    at = dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=5)))
    assert codec.decode(codec.encode(Event(at=at)), where="m").at == at


def test_sub_minute_utc_offsets_are_refused_not_corrupted() -> None:
    # Historic zones (LMT) have offsets with seconds; ISO 8601 as pydantic writes it drops
    # them, which would move the instant. The codec refuses such a record.
    class Event(BaseModel):
        at: dt.datetime
        note: str | None = None

    odd = dt.timezone(dt.timedelta(minutes=-16, seconds=-8))
    with pytest.raises(InvalidRecordError):
        RecordCodec(Event).encode(Event(at=dt.datetime(1912, 1, 1, tzinfo=odd)))
