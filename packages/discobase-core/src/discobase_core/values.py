"""discobase's own lossless encoding of field values: what a record's bytes hold.

Records used to be pydantic's JSON, which depends on the user's model: aliases
(``Field(alias="Key Name")`` wrote python names but read aliases), ``ser_json_bytes``, the
4,300-digit limit of ints in JSON, serde's nesting limit, non-UTF-8 ``bytes``... A value
written one way and read another is a lost record. This encoding depends on the values
alone: it writes the actual Python value of every field, tagged with its kind, and
:func:`decode_value` gives back plain Python values of the same kinds, which pydantic then
validates (by field name) into the model. Dict keys keep their types (``dict[int, str]``),
tuples stay tuples and sets stay sets, so they can be dict keys and set members again.

One tag byte, then the body; containers nest:

=====  ==============================================================================
tag    value
=====  ==============================================================================
``N``  None
``T``  True
``F``  False
``i``  int: uvarint byte length + two's-complement big-endian (at most MAX_INT_BITS)
``f``  float: 8 bytes IEEE 754 big-endian (every float, ``-0.0``, inf and NaN exactly)
``c``  Decimal: uvarint length + ``str(value)`` in ASCII (exact: digits, exponent, sign,
       NaN and sNaN); finite values within the hashing bounds
``s``  str: uvarint byte length + UTF-8 (strict: no lone surrogates)
``b``  bytes / bytearray: uvarint length + the bytes
``d``  naive datetime: uvarint proleptic ordinal, uvarint microseconds of the day, fold
       byte (0 or 1)
``D``  aware datetime: as ``d`` (wall time), then the UTC offset in microseconds as a
       signed ``i`` body (read back as a fixed-offset ``timezone``: the same instant and
       the same wall time)
``a``  date: uvarint proleptic ordinal
``t``  naive time: uvarint microseconds since midnight, fold byte
``z``  aware time: as ``t``, then the UTC offset like ``D``
``U``  UUID: the 16 raw bytes
``l``  list: uvarint count + items
``u``  tuple: uvarint count + items
``e``  set: uvarint count + members (iteration order)
``g``  frozenset: uvarint count + members
``m``  dict: uvarint count + (key, value) pairs in insertion order
``o``  pydantic model: uvarint count + (python field name as a raw uvarint-length UTF-8
       string, value) pairs in declaration order; read back as a ``dict`` by field name
``E``  Enum member: the class's ``__qualname__`` as a uvarint-length UTF-8 string, then
       the member's ``.value``. A :class:`ValueReader` that knows the class by that name
       (the record codec collects the Enum classes its model mentions) reads the member
       back, so ``Literal[Color.RED]``, enum dict keys and strict models validate; any
       other reader gives the plain value
=====  ==============================================================================

Containers and models nest at most :data:`~discobase_core.hashing.MAX_DEPTH`
levels, both ways. Encoding refuses what it cannot write exactly
(:class:`~discobase_core.errors.DatabaseStorageError` subclasses, naming the reason);
decoding raises only :class:`~discobase_core.errors.DatabaseCorruptionError` naming
``where``, and allocates only what the bytes present justify (every count is checked
against the bytes left before anything is built).
"""

from __future__ import annotations

import datetime as _dt
import decimal
import enum
import struct
import typing
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import pydantic

from discobase_core._varint import Reader, write_uvarint
from discobase_core.errors import DatabaseCorruptionError, InvalidRecordError, UnsupportedTypeError
from discobase_core.hashing import (
    MAX_DEPTH,
    MAX_INT_BITS,
    SUPPORTED_TYPES,
    _utf8,
    check_decimal,
    check_int,
    too_deep,
)

__all__ = [
    "ValueReader",
    "decode_value",
    "encode_value",
    "enum_classes",
    "read_fields",
    "read_value",
    "write_name",
    "write_value",
]

_F64 = struct.Struct(">d")
_US_PER_DAY = 86_400_000_000
_MAX_ORDINAL = _dt.date.max.toordinal()
_MAX_INT_BYTES = MAX_INT_BITS // 8 + 1
_ONE_US = _dt.timedelta(microseconds=1)


def _write_int(out: bytearray, n: int) -> None:
    if n.bit_length() > MAX_INT_BITS:
        check_int(n)
    raw = n.to_bytes((n.bit_length() + 8) // 8, "big", signed=True)
    write_uvarint(out, len(raw))
    out += raw


def _write_text(out: bytearray, text: str) -> None:
    raw = _utf8(text)
    write_uvarint(out, len(raw))
    out += raw


def write_name(out: bytearray, name: str) -> None:
    """Append a field name as the ``o`` tag writes it (uvarint length + UTF-8)."""
    _write_text(out, name)


def _td_us(td: _dt.timedelta) -> int:
    return (td.days * 86_400 + td.seconds) * 1_000_000 + td.microseconds


def _time_us(value: _dt.time | _dt.datetime) -> int:
    return ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond


def write_value(out: bytearray, value: object, depth: int = 0) -> None:
    """Append the encoding of ``value`` to ``out`` (``depth``: levels already entered)."""
    t = type(value)
    if t is str:
        out += b"s"
        _write_text(out, value)  # type: ignore[arg-type]
    elif t is int:
        out += b"i"
        _write_int(out, value)  # type: ignore[arg-type]
    elif value is None:
        out += b"N"
    elif t is bool:
        out += b"T" if value else b"F"
    elif t is float:
        out += b"f"
        out += _F64.pack(value)
    elif isinstance(value, enum.Enum):
        out += b"E"
        _write_text(out, type(value).__qualname__)
        write_value(out, value.value, depth)
    elif isinstance(value, int):  # an int subclass (bool cannot be subclassed)
        out += b"i"
        _write_int(out, int(value))
    elif isinstance(value, str):
        out += b"s"
        _write_text(out, str(value))
    elif isinstance(value, float):
        out += b"f"
        out += _F64.pack(float(value))
    elif isinstance(value, decimal.Decimal):
        check_decimal(value)
        raw = str(value).encode("ascii")
        out += b"c"
        write_uvarint(out, len(raw))
        out += raw
    elif isinstance(value, bytes | bytearray):
        out += b"b"
        write_uvarint(out, len(value))
        out += value
    elif isinstance(value, _dt.datetime):
        offset = value.utcoffset()
        out += b"d" if offset is None else b"D"
        write_uvarint(out, value.toordinal())
        write_uvarint(out, _time_us(value))
        out.append(value.fold)
        if offset is not None:
            _write_int(out, _td_us(offset))
    elif isinstance(value, _dt.date):
        out += b"a"
        write_uvarint(out, value.toordinal())
    elif isinstance(value, _dt.time):
        offset = value.utcoffset()
        out += b"t" if offset is None else b"z"
        write_uvarint(out, _time_us(value))
        out.append(value.fold)
        if offset is not None:
            _write_int(out, _td_us(offset))
    elif isinstance(value, uuid.UUID):
        out += b"U"
        out += value.bytes
    else:
        _write_container(out, value, depth + 1)


def _write_container(out: bytearray, value: object, depth: int) -> None:
    if depth > MAX_DEPTH and isinstance(
        value, pydantic.BaseModel | list | tuple | Mapping | set | frozenset
    ):
        raise too_deep()
    if isinstance(value, pydantic.BaseModel):
        if value.__pydantic_extra__:
            raise InvalidRecordError(
                f"a {type(value).__name__} holds extra fields "
                f"({', '.join(map(repr, value.__pydantic_extra__))}) that no field declares; "
                "discobase stores declared fields only",
                hint="declare the fields, or set model_config = ConfigDict(extra='ignore')",
                reason="extra fields",
            )
        fields = value.__dict__
        names = type(value).model_fields
        out += b"o"
        write_uvarint(out, len(names))
        for name in names:
            _write_text(out, name)
            write_value(out, fields[name], depth)
    elif isinstance(value, list | tuple | set | frozenset):
        out += _SEQUENCE_TAGS.get(type(value)) or _sequence_tag(value)
        write_uvarint(out, len(value))
        for item in value:
            write_value(out, item, depth)
    elif isinstance(value, Mapping):
        out += b"m"
        write_uvarint(out, len(value))
        for key, item in value.items():
            write_value(out, key, depth)
            write_value(out, item, depth)
    else:
        raise UnsupportedTypeError(
            f"cannot store a value of type {type(value).__name__}; supported: {SUPPORTED_TYPES}",
            type=type(value).__name__,
        )


_SEQUENCE_TAGS: dict[type, bytes] = {list: b"l", tuple: b"u", set: b"e", frozenset: b"g"}


def _sequence_tag(value: object) -> bytes:
    if isinstance(value, list):
        return b"l"
    if isinstance(value, tuple):
        return b"u"
    if isinstance(value, set):
        return b"e"
    return b"g"


def encode_value(value: object) -> bytes:
    """The encoding of one value (see the module docstring)."""
    out = bytearray()
    write_value(out, value)
    return bytes(out)


# --------------------------------------------------------------------------- decoding


class ValueReader(Reader):
    """A :class:`~discobase_core._varint.Reader` that also knows Enum classes by
    ``__qualname__``, to read ``E`` values back as members."""

    __slots__ = ("enums",)

    def __init__(
        self,
        data: bytes,
        *,
        where: str,
        pos: int = 0,
        enums: Mapping[str, type[enum.Enum]] | None = None,
    ) -> None:
        super().__init__(data, where=where, pos=pos)
        self.enums: Mapping[str, type[enum.Enum]] = enums or {}


def _read_enum(reader: Reader, depth: int) -> Any:
    name = _read_text(reader)
    value = read_value(reader, depth)
    cls = reader.enums.get(name) if isinstance(reader, ValueReader) else None
    if cls is None:
        return value
    try:
        return cls(value)
    except (ValueError, TypeError):
        return value  # no such member (any more): validation decides


def _fail(reader: Reader, reason: str) -> DatabaseCorruptionError:
    return DatabaseCorruptionError(
        f"{reader.where}: {reason} at byte {reader.pos}", where=reader.where, reason=reason
    )


def _read_int(reader: Reader) -> int:
    size = reader.uvarint()
    if size == 0 or size > _MAX_INT_BYTES:
        raise _fail(reader, f"bad int length {size}")
    return int.from_bytes(reader.take(size), "big", signed=True)


def _read_text(reader: Reader) -> str:
    data, pos = reader.data, reader.pos
    if pos < len(data) and data[pos] < 0x80 and pos + 1 + data[pos] <= len(data):
        # The hot path of record decoding: a short string, sliced directly.
        end = pos + 1 + data[pos]
        try:
            text = data[pos + 1 : end].decode("utf-8")
        except UnicodeDecodeError:
            raise _fail(reader, "a string is not valid UTF-8") from None
        reader.pos = end
        return text
    raw = reader.take(reader.uvarint())
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _fail(reader, "a string is not valid UTF-8") from None


def _read_count(reader: Reader, per_item: int) -> int:
    """A count of items of at least ``per_item`` bytes each: never more than the bytes left
    can hold, so a forged count cannot make the decoder allocate."""
    count = reader.uvarint()
    if count * per_item > reader.remaining:
        raise _fail(reader, f"a count of {count} items overruns the {reader.remaining} bytes left")
    return count


def _read_fold(reader: Reader) -> int:
    fold = reader.byte()
    if fold > 1:
        raise _fail(reader, f"bad fold {fold}")
    return fold


def _read_offset(reader: Reader) -> _dt.timezone:
    us = _read_int(reader)
    try:
        return _dt.timezone(us * _ONE_US)
    except (ValueError, OverflowError):
        raise _fail(reader, f"bad UTC offset of {us} microseconds") from None


def _read_wall(reader: Reader) -> tuple[_dt.date, int]:
    ordinal = reader.uvarint()
    if not 1 <= ordinal <= _MAX_ORDINAL:
        raise _fail(reader, f"bad date ordinal {ordinal}")
    us = reader.uvarint()
    if us >= _US_PER_DAY:
        raise _fail(reader, f"bad time of day ({us} microseconds)")
    return _dt.date.fromordinal(ordinal), us


def _clock(us: int, fold: int, tz: _dt.tzinfo | None) -> _dt.time:
    seconds, micro = divmod(us, 1_000_000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return _dt.time(hour, minute, second, micro, tzinfo=tz, fold=fold)


def read_value(reader: Reader, depth: int = 0) -> Any:
    """Read one value written by :func:`write_value`."""
    data, pos = reader.data, reader.pos
    if pos + 2 < len(data) and data[pos] == 0x69 and 0 < data[pos + 1] <= 8:
        # The hot path of record decoding: an int of up to 8 bytes.
        end = pos + 2 + data[pos + 1]
        if end <= len(data):
            reader.pos = end
            return int.from_bytes(data[pos + 2 : end], "big", signed=True)
    tag = reader.byte()
    if tag == 0x73:  # s
        return _read_text(reader)
    if tag == 0x69:  # i
        return _read_int(reader)
    reader_fn = _READERS.get(tag)
    if reader_fn is None:
        raise _fail(reader, f"unknown value tag {tag}")
    return reader_fn(reader, depth)


def _read_float(reader: Reader, depth: int) -> float:
    value: float = _F64.unpack(reader.take(8))[0]
    return value


def _read_decimal(reader: Reader, depth: int) -> decimal.Decimal:
    raw = reader.take(reader.uvarint())
    try:
        value = decimal.Decimal(raw.decode("ascii"))
    except (UnicodeDecodeError, decimal.InvalidOperation):
        raise _fail(reader, "not a Decimal") from None
    if raw != str(value).encode("ascii"):
        raise _fail(reader, "a Decimal is not in the form discobase writes")
    try:
        check_decimal(value)
    except UnsupportedTypeError:
        raise _fail(reader, "a Decimal beyond the bounds discobase writes") from None
    return value


def _read_datetime(reader: Reader, depth: int, *, aware: bool) -> _dt.datetime:
    day, us = _read_wall(reader)
    fold = _read_fold(reader)
    tz = _read_offset(reader) if aware else None
    return _dt.datetime.combine(day, _clock(us, fold, tz))


def _read_date(reader: Reader, depth: int) -> _dt.date:
    ordinal = reader.uvarint()
    if not 1 <= ordinal <= _MAX_ORDINAL:
        raise _fail(reader, f"bad date ordinal {ordinal}")
    return _dt.date.fromordinal(ordinal)


def _read_time(reader: Reader, depth: int, *, aware: bool) -> _dt.time:
    us = reader.uvarint()
    if us >= _US_PER_DAY:
        raise _fail(reader, f"bad time of day ({us} microseconds)")
    fold = _read_fold(reader)
    tz = _read_offset(reader) if aware else None
    return _clock(us, fold, tz)


def _enter(reader: Reader, depth: int) -> int:
    depth += 1
    if depth > MAX_DEPTH:
        raise _fail(reader, f"values nest more than {MAX_DEPTH} levels deep")
    return depth


def _read_items(reader: Reader, depth: int) -> list[Any]:
    depth = _enter(reader, depth)
    return [read_value(reader, depth) for _ in range(_read_count(reader, 1))]


def _read_hashable(reader: Reader, depth: int, make: Callable[[list[Any]], Any]) -> Any:
    items = _read_items(reader, depth)
    try:
        made = make(items)
    except TypeError:
        raise _fail(reader, "an unhashable set member") from None
    if len(made) != len(items):
        raise _fail(reader, "duplicate set members")
    return made


def _read_dict(reader: Reader, depth: int) -> dict[Any, Any]:
    depth = _enter(reader, depth)
    count = _read_count(reader, 2)
    out: dict[Any, Any] = {}
    for _ in range(count):
        key = read_value(reader, depth)
        try:
            out[key] = read_value(reader, depth)
        except TypeError:
            raise _fail(reader, "an unhashable dict key") from None
    if len(out) != count:
        raise _fail(reader, "duplicate dict keys")
    return out


def _read_model(reader: Reader, depth: int) -> dict[str, Any]:
    depth = _enter(reader, depth)
    count = _read_count(reader, 2)
    out: dict[str, Any] = {}
    for _ in range(count):
        name = _read_text(reader)
        out[name] = read_value(reader, depth)
    if len(out) != count:
        raise _fail(reader, "duplicate field names")
    return out


_READERS: dict[int, Callable[[Reader, int], Any]] = {
    ord("N"): lambda reader, depth: None,
    ord("T"): lambda reader, depth: True,
    ord("F"): lambda reader, depth: False,
    ord("f"): _read_float,
    ord("c"): _read_decimal,
    ord("b"): lambda reader, depth: reader.take(reader.uvarint()),
    ord("d"): lambda reader, depth: _read_datetime(reader, depth, aware=False),
    ord("D"): lambda reader, depth: _read_datetime(reader, depth, aware=True),
    ord("a"): _read_date,
    ord("t"): lambda reader, depth: _read_time(reader, depth, aware=False),
    ord("z"): lambda reader, depth: _read_time(reader, depth, aware=True),
    ord("U"): lambda reader, depth: uuid.UUID(bytes=reader.take(16)),
    ord("l"): _read_items,
    ord("u"): lambda reader, depth: tuple(_read_items(reader, depth)),
    ord("e"): lambda reader, depth: _read_hashable(reader, depth, set),
    ord("g"): lambda reader, depth: _read_hashable(reader, depth, frozenset),
    ord("m"): _read_dict,
    ord("o"): _read_model,
    ord("E"): _read_enum,
}


def read_fields(reader: Reader) -> dict[str, Any]:
    """The body of an ``o`` value (a model's fields by name) at the top level: its field
    values are at level 0, as in :func:`write_value`."""
    return _read_model(reader, -1)


def enum_classes(model_cls: type[pydantic.BaseModel]) -> dict[str, type[enum.Enum]]:
    """The Enum classes ``model_cls`` mentions anywhere (nested models, containers,
    unions, Literal members), by ``__qualname__``; a name two classes share is left out
    (its values then read back as plain values, which validation converts)."""
    found: dict[str, set[type[enum.Enum]]] = {}
    seen: set[int] = set()

    def walk(annotation: object) -> None:
        if id(annotation) in seen:
            return
        seen.add(id(annotation))
        if isinstance(annotation, enum.Enum):
            annotation = type(annotation)
        if isinstance(annotation, type):
            if issubclass(annotation, enum.Enum):
                found.setdefault(annotation.__qualname__, set()).add(annotation)
            elif issubclass(annotation, pydantic.BaseModel):
                for info in annotation.model_fields.values():
                    walk(info.annotation)
        for arg in typing.get_args(annotation):
            walk(arg)

    for info in model_cls.model_fields.values():
        walk(info.annotation)
    return {name: next(iter(classes)) for name, classes in found.items() if len(classes) == 1}


def decode_value(
    data: bytes, *, where: str, enums: Mapping[str, type[enum.Enum]] | None = None
) -> Any:
    """The value :func:`encode_value` wrote into ``data`` (all of it), Enum members of
    ``enums`` (see :func:`enum_classes`) as members; anything else is
    :class:`~discobase_core.errors.DatabaseCorruptionError` naming ``where``."""
    reader = ValueReader(data, where=where, enums=enums)
    value = read_value(reader)
    reader.expect_end()
    return value
