"""Record codec round-trips, framing and armour: damage is always DatabaseCorruptionError."""

from __future__ import annotations

import datetime as dt
import string
from decimal import Decimal
from typing import Annotated, Any, Literal

import pytest
from core_models import Address, Color, Everything, Level, User
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

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
    plain_fields,
    seal,
    sealed_length,
    unseal,
)
from discobase_core.errors import (
    DatabaseCorruptionError,
    InvalidRecordError,
    UnsupportedTypeError,
)
from discobase_core.hashing import MAX_DEPTH, MAX_INT_BITS, FieldHasher, canonical_bytes

offsets = st.timedeltas(
    min_value=-dt.timedelta(hours=23, minutes=59), max_value=dt.timedelta(hours=23, minutes=59)
)
everything_st = st.builds(
    Everything,
    s=st.text(),
    i=st.integers(),
    f=st.floats(),
    b=st.booleans(),
    opt=st.none() | st.text(max_size=5),
    raw=st.binary(max_size=20),
    when=st.datetimes(timezones=st.none() | st.builds(dt.timezone, offsets)),
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


@settings(max_examples=60)
@given(everything_st)
def test_record_round_trip(record: Everything) -> None:
    codec = RecordCodec(Everything)
    data = codec.encode(record)
    back = codec.decode(data, where="test")
    assert canonical_bytes(back) == canonical_bytes(record)
    assert FieldHasher(Everything).keys(back) == FieldHasher(Everything).keys(record)
    assert codec.encode(back) == data or record.tags or record.frozen  # sets: any order
    assert repr(back.when.utcoffset()) == repr(record.when.utcoffset())


def test_user_encoding_known_answer() -> None:
    # The format of the discobase_core.codec docstring: marker, "o", field count, then
    # (python name, tagged value) pairs in declaration order.
    codec = RecordCodec(User)
    user = User(name="Peter", email="p@x.io", age=30, bio="hi")
    assert codec.encode(user) == (
        b"\xdbo\x04\x04names\x05Peter\x05emails\x06p@x.io\x03agei\x01\x1e\x03bios\x02hi"
    )
    assert codec.encode_many([user, user]) == [codec.encode(user)] * 2
    assert codec.decode_many([(codec.encode(user), "m1")]) == [user]


def test_records_stored_as_json_still_decode() -> None:
    # Records written before the lossless encoding are pydantic JSON with python names.
    codec = RecordCodec(User)
    old = b'{"name":"Peter","email":"p@example.com","age":30,"bio":"hi"}'
    assert codec.decode(old, where="m") == User(
        name="Peter", email="p@example.com", age=30, bio="hi"
    )

    # ... with python names (or aliases, if the model serialized by alias).
    class Keyed(BaseModel):
        key: str = Field(alias="Key Name")

    for data in (b'{"key":"k"}', b'{"Key Name":"k"}'):
        assert RecordCodec(Keyed).decode(data, where="m").key == "k"


def test_wrong_typed_assignment_is_refused_before_writing() -> None:
    codec = RecordCodec(User)
    user = User(name="Peter", email="p@example.com", age=30, bio="hi")
    user.age = "abc"  # type: ignore[assignment]
    with pytest.raises(InvalidRecordError):
        codec.encode(user)
    with pytest.raises(InvalidRecordError):
        codec.encode(Address(street="x", number=1))  # type: ignore[arg-type]


def test_non_finite_floats_round_trip() -> None:
    class Reading(BaseModel):
        value: float | None

    codec = RecordCodec(Reading)
    for value in (None, float("inf"), float("-inf"), -0.0, 5e-324):
        back = codec.decode(codec.encode(Reading(value=value)), where="t")
        assert repr(back.value) == repr(value)
    nan = codec.decode(codec.encode(Reading(value=float("nan"))), where="t").value
    assert nan is not None
    assert nan != nan


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
    middle = len(text) // 2
    edited = text[:middle] + ("A" if text[middle] != "A" else "B") + text[middle + 1 :]
    with pytest.raises(DatabaseCorruptionError):
        unseal(dearmor(edited, where="m"), where="m")


def test_datetime_round_trip_keeps_the_instant() -> None:
    class Event(BaseModel):
        at: dt.datetime

    codec = RecordCodec(Event)
    at = dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=5)))
    assert codec.decode(codec.encode(Event(at=at)), where="m").at == at


def test_sub_minute_utc_offsets_round_trip() -> None:
    # Historic zones (LMT) have offsets with seconds; ISO 8601 as pydantic writes it drops
    # them. The lossless encoding keeps the offset to the microsecond.
    class Event(BaseModel):
        at: dt.datetime
        note: str | None = None

    odd = dt.timezone(dt.timedelta(minutes=-16, seconds=-8))
    at = dt.datetime(1912, 1, 1, tzinfo=odd)
    back = RecordCodec(Event).decode(RecordCodec(Event).encode(Event(at=at)), where="m").at
    assert back == at
    assert back.utcoffset() == at.utcoffset()


# ------------------------------------------------------------------ findings: lossless records


def test_alias_round_trip() -> None:
    # Every kind of alias: the codec writes and reads python names, so none of them matter.
    class Inner(BaseModel):
        model_config = ConfigDict(alias_generator=to_camel)
        some_value: int

    class Aliased(BaseModel):
        model_config = ConfigDict(alias_generator=lambda name: name.upper())
        key: str = Field(alias="Key Name")
        choice: int = Field(validation_alias=AliasChoices("c", "choice_alias"))
        shown: str = Field(serialization_alias="Shown As")
        generated: bool
        inner: Inner

    codec = RecordCodec(Aliased)
    record = Aliased.model_validate(
        {
            "Key Name": "k",
            "c": 2,
            "SHOWN": "s",
            "GENERATED": True,
            "INNER": {"someValue": 3},
        }
    )
    assert codec.decode(codec.encode(record), where="m") == record


def test_non_utf8_bytes() -> None:
    class Blob(BaseModel):
        data: bytes

    codec = RecordCodec(Blob)
    png = Blob(data=b"\x89PNG\r\n\x1a\n\x00\xff")
    assert codec.decode(codec.encode(png), where="m") == png


def test_user_json_config_ignored() -> None:
    # The model's JSON settings and serializers shape its JSON, never what discobase stores.
    class Configured(BaseModel):
        model_config = ConfigDict(
            ser_json_bytes="base64", ser_json_timedelta="float", ser_json_inf_nan="null"
        )
        data: bytes
        ratio: float
        when: dt.datetime

        @field_serializer("when")
        def _year_only(self, value: dt.datetime) -> int:
            return value.year

    codec = RecordCodec(Configured)
    record = Configured(data=b"\xff\x00", ratio=float("inf"), when=dt.datetime(2024, 5, 6, 7))
    back = codec.decode(codec.encode(record), where="m")
    assert back.data == b"\xff\x00"
    assert back.ratio == float("inf")
    assert back.when == dt.datetime(2024, 5, 6, 7)


def test_huge_int() -> None:
    class Big(BaseModel):
        n: int

    codec = RecordCodec(Big)
    for n in (10**5000, -(10**5000) + 1, 2**MAX_INT_BITS - 1):
        assert codec.decode(codec.encode(Big(n=n)), where="m").n == n
    with pytest.raises(UnsupportedTypeError, match="bits") as info:
        codec.encode(Big(n=2**MAX_INT_BITS))
    assert info.value.details["field"] == "n"


def test_deep_nesting_refused_at_save() -> None:
    class Tree(BaseModel):
        node: list  # type: ignore[type-arg]

    def nest(levels: int) -> list[Any]:
        value: list[Any] = []
        for _ in range(levels - 1):
            value = [value]
        return value

    codec = RecordCodec(Tree)
    ok = Tree(node=nest(MAX_DEPTH))
    assert codec.decode(codec.encode(ok), where="m") == ok
    with pytest.raises(InvalidRecordError, match="64 levels") as info:
        codec.encode(Tree(node=nest(MAX_DEPTH + 1)))
    assert info.value.details["field"] == "node"
    with pytest.raises(InvalidRecordError):
        codec.encode(Tree(node=nest(200)))


def test_lone_surrogate_refused_at_save() -> None:
    codec = RecordCodec(User)
    with pytest.raises(InvalidRecordError, match="surrogate") as info:
        codec.encode(User(name="\ud800", email="", age=1, bio=""))
    assert info.value.details["field"] == "name"
    assert isinstance(info.value, ValueError)


def test_decimal_exponent_bounded_at_save() -> None:
    class Price(BaseModel):
        price: Decimal

    codec = RecordCodec(Price)
    for fine in ("1e4300", "-1e-4300", "-0", "1.2300"):
        back = codec.decode(codec.encode(Price(price=Decimal(fine))), where="m").price
        assert str(back) == str(Decimal(fine))
    with pytest.raises(UnsupportedTypeError, match="exponent") as info:
        codec.encode(Price(price=Decimal("1e999999999")))
    assert info.value.details["field"] == "price"


def test_dict_keys_keep_their_types() -> None:
    class Keys(BaseModel):
        by_int: dict[int, str]
        by_tuple: dict[tuple[int, str], frozenset[int]]
        by_enum: dict[Color, Level]

    codec = RecordCodec(Keys)
    record = Keys(
        by_int={1: "a", -2: "b"},
        by_tuple={(1, "x"): frozenset({1, 2})},
        by_enum={Color.RED: Level.HIGH},
    )
    back = codec.decode(codec.encode(record), where="m")
    assert back == record
    assert list(back.by_int) == [1, -2]


def test_validator_that_changes_values_is_refused() -> None:
    # Reading a record validates it again: a validator that is not idempotent would read
    # back something else than was saved, so such a record is refused before writing.
    class Counter(BaseModel):
        n: Annotated[int, AfterValidator(lambda v: v + 1)]

    with pytest.raises(InvalidRecordError, match="'n'") as info:
        RecordCodec(Counter).encode(Counter(n=1))
    assert info.value.details["field"] == "n"


def test_extra_fields_are_refused() -> None:
    class Open(BaseModel):
        model_config = ConfigDict(extra="allow")
        a: int

    with pytest.raises(InvalidRecordError, match="extra"):
        RecordCodec(Open).encode(Open(a=1, b=2))


def test_backfill_fills_fields_a_record_predates() -> None:
    class V1(BaseModel):
        name: str

    class V2(BaseModel):
        name: str
        tag: str = "new"
        tags: list[str] = []

    old_new = RecordCodec(V1).encode(V1(name="a"))
    old_json = b'{"name":"a"}'
    codec = RecordCodec(V2, backfill={"tag": "old", "tags": ["x"]})
    for data in (old_new, old_json):
        first = codec.decode(data, where="m")
        assert (first.tag, first.tags) == ("old", ["x"])
        first.tags.append("y")  # every record gets its own copy
        assert codec.decode(data, where="m").tags == ["x"]
    assert codec.backfill == {"tag": "old", "tags": ["x"]}
    fresh = V2(name="b", tag="t")
    assert codec.decode(codec.encode(fresh), where="m") == fresh


def test_record_with_unknown_field_is_corruption() -> None:
    data = RecordCodec(User).encode(User(name="a", email="b", age=1, bio=""))

    class Fewer(BaseModel):
        name: str

    with pytest.raises(DatabaseCorruptionError, match="email"):
        RecordCodec(Fewer).decode(data, where="m")


def test_enum_members_read_back_as_members() -> None:
    # Literal[Color.RED] accepts the member only: the codec rebuilds members by class name.
    class Tagged(BaseModel):
        model_config = ConfigDict(strict=True)
        exact: Literal[Color.RED]
        level: Level
        by_color: dict[Color, list[Level]]

    codec = RecordCodec(Tagged)
    record = Tagged(exact=Color.RED, level=Level.HIGH, by_color={Color.GREEN: [Level.LOW]})
    back = codec.decode(codec.encode(record), where="m")
    assert back == record
    assert type(back.level) is Level


def test_a_validator_raising_type_error_is_refused_at_save() -> None:
    class Picky(BaseModel):
        n: int

        @field_validator("n", mode="plain")
        @classmethod
        def _only_once(cls, value: object) -> int:
            if not isinstance(value, str):
                raise TypeError("wants text")
            return int(value)

    record = Picky.model_construct(n=1)
    with pytest.raises(InvalidRecordError, match="TypeError") as info:
        RecordCodec(Picky).encode(record)
    assert info.value.code == "invalid_record"


class _Plain(BaseModel):
    name: str
    age: int = 0
    flag: bool = False
    raw: bytes = b""
    nick: str = Field(default="", alias="Nick")


def test_plain_models_are_told_apart() -> None:
    # plain_fields() says when reading a record back cannot change it, so encode() may skip
    # the read-back; anything that can change a value on validation makes a model not plain.
    assert plain_fields(_Plain) == {
        "name": str,
        "age": int,
        "flag": bool,
        "raw": bytes,
        "nick": str,
    }
    assert plain_fields(User) is not None

    class Constrained(BaseModel):
        name: Annotated[str, Field(max_length=3)]

    class Validated(BaseModel):
        n: int

        @field_validator("n")
        @classmethod
        def _same(cls, value: int) -> int:
            return value

    class ModelValidated(BaseModel):
        n: int

        @model_validator(mode="after")
        def _same(self) -> ModelValidated:
            return self

    class Stripped(BaseModel):
        model_config = ConfigDict(str_strip_whitespace=True)
        name: str

    class Strict(BaseModel):
        model_config = ConfigDict(strict=True)
        name: str

    class Hooked(BaseModel):
        name: str

        def model_post_init(self, context: Any, /) -> None:
            self.name = self.name.upper()

    class HookedPrivate(Hooked):
        _seen: bool = PrivateAttr(default=False)

    class Private(BaseModel):
        name: str
        _seen: bool = PrivateAttr(default=False)

    class Floating(BaseModel):
        x: float

    class Maybe(BaseModel):
        name: str | None

    for model in (
        Constrained,
        Validated,
        ModelValidated,
        Stripped,
        Strict,
        Hooked,
        HookedPrivate,
        Floating,
        Maybe,
        Everything,
    ):
        assert plain_fields(model) is None, model.__name__
    assert plain_fields(Private) == {"name": str}


def test_plain_records_skip_the_read_back_and_others_do_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    codec = RecordCodec(_Plain)
    checked: list[object] = []
    monkeypatch.setattr(codec, "_check_round_trip", lambda record, data: checked.append(record))
    record = _Plain(name="a", age=1, flag=True, raw=b"x", Nick="n")
    assert codec.decode(codec.encode(record), where="m") == record
    assert checked == []
    # A value not of exactly its field's type (a model_construct, an unvalidated
    # assignment, a subclass) is read back as before.
    for odd in (
        _Plain.model_construct(name="a", age="1"),
        _Plain.model_construct(name="a", age=True),
        _Plain.model_construct(name=Color.RED),
    ):
        codec.encode(odd)
        assert checked[-1] is odd
    with pytest.raises(InvalidRecordError):
        RecordCodec(_Plain).encode(_Plain.model_construct(name="a", age="abc"))
    with pytest.raises(InvalidRecordError, match="surrogate"):
        RecordCodec(_Plain).encode(_Plain(name="\ud800"))
