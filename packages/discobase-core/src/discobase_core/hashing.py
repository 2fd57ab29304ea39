"""Stable hashing of field values into 64-bit index keys.

A key is the first 8 bytes (big-endian) of a sha1 digest, as an unsigned int:

- a ``str`` value (and an Enum whose value is a ``str``) hashes its UTF-8 bytes:
  ``string_key(s) = sha1(s.encode("utf-8"))[:8]``. This is a fixed part of the design.
- any other value hashes ``b"\\xff" + canonical_bytes(value)``. ``0xFF`` never occurs in
  UTF-8, so a non-string key input can never equal a string key input.

Python's ``hash()`` is salted per process and never used. Keys are the same in every
process, on every machine, and for every ``FORMAT_VERSION == 1`` reader.

Canonical encoding (``canonical_bytes``), one tag byte then the body; containers nest:

=====  ==============================================================================
tag    value
=====  ==============================================================================
``N``  None
``T``  True            (bool is kept apart from the int 1)
``F``  False
``i``  an integral number: int, integral float (``1.0``, ``-0.0``), integral Decimal
       (``Decimal("1.00")``): uvarint length + minimal-ish two's-complement big-endian
``q``  a non-integral finite number (float or Decimal): its exact reduced fraction, two
       ints encoded as ``i`` bodies (numerator, denominator), so ``0.5 == Decimal("0.5")``
``x``  ``+`` / ``-`` infinity or ``n`` NaN (every NaN encodes alike)
``s``  str: uvarint byte length + UTF-8
``b``  bytes / bytearray: uvarint length + bytes
``D``  aware datetime: microseconds since 1970-01-01T00:00Z of the instant (signed ``i``
       body), so equal instants in different zones encode alike
``d``  naive datetime: the same count read as if the wall time were UTC. A naive value is
       never equal to an aware one (as in Python, where they compare unequal)
``a``  date: uvarint proleptic Gregorian ordinal
``t``  naive time: uvarint microseconds since midnight
``z``  aware time: signed microseconds since midnight minus its UTC offset
``U``  UUID: the 16 raw bytes (equivalent to the canonical lowercase hex form)
``l``  list or tuple (same encoding): uvarint count + items
``m``  dict / mapping: uvarint count + (key, value) pairs sorted by the key's encoding
``e``  set / frozenset: uvarint count + members' encodings, sorted
``o``  pydantic model: uvarint count + (field name as ``s``, value) pairs sorted by name
=====  ==============================================================================

An Enum member encodes as its ``.value``. Anything else raises
:class:`~discobase_core.errors.UnsupportedTypeError`.

Bounds (the same in hashing, in the record codec and at save, so a value that can be saved
can be found, and hashing any value costs time and memory proportional to its size):

- containers and models nest at most :data:`MAX_DEPTH` levels (InvalidRecordError);
- an int has at most :data:`MAX_INT_BITS` bits (UnsupportedTypeError);
- a finite Decimal has at most :data:`MAX_DECIMAL_DIGITS` digits and an exponent within
  ``±MAX_DECIMAL_EXPONENT`` (UnsupportedTypeError): ``Decimal("1e999999999")`` is a dozen
  bytes, but its exact fraction is a billion-digit int;
- a string must encode as UTF-8: no lone surrogates such as ``"\\ud800"``
  (InvalidRecordError).

:class:`FieldHasher` turns each of these into a :class:`~discobase_core.errors.QueryError`
for a query value.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import enum
import hashlib
import reprlib
import types
import typing
import uuid
from collections.abc import Mapping
from typing import Any, Generic, Literal, TypeVar, Union, get_args, get_origin

import pydantic

from discobase_core._varint import write_uvarint
from discobase_core.errors import (
    DatabaseStorageError,
    InvalidRecordError,
    QueryError,
    UnsupportedTypeError,
)

__all__ = [
    "MAX_DECIMAL_DIGITS",
    "MAX_DECIMAL_EXPONENT",
    "MAX_DEPTH",
    "MAX_INT_BITS",
    "NON_STRING_PREFIX",
    "SUPPORTED_TYPES",
    "FieldHasher",
    "canonical_bytes",
    "check_decimal",
    "check_int",
    "check_supported",
    "string_key",
    "too_deep",
    "value_key",
]

#: Prefix of every non-string key input; never a byte of UTF-8.
NON_STRING_PREFIX = b"\xff"
#: Human-readable list of what a field may be (used in error messages).
SUPPORTED_TYPES = (
    "str, int, float, bool, None, bytes, datetime, date, time, UUID, Decimal, Enum, "
    "tuple, list, dict, set, frozenset, nested pydantic models, and Optional / unions / "
    "Literal / Annotated of those"
)

#: Deepest nesting of containers and models in a value (a field's value is level 0).
MAX_DEPTH = 64
#: Largest int, in bits (about 315,000 decimal digits).
MAX_INT_BITS = 1 << 20
#: Largest |exponent| (and |adjusted exponent|) of a finite Decimal.
MAX_DECIMAL_EXPONENT = 4300
#: Most digits of a finite Decimal.
MAX_DECIMAL_DIGITS = 4300

_sha1 = hashlib.sha1
_from_bytes = int.from_bytes
_EPOCH = _dt.datetime(1970, 1, 1)
_US_PER_DAY = 86_400_000_000


def _utf8(value: str) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRecordError(
            f"a string holds a lone surrogate ({value[exc.start : exc.end]!r} at index "
            f"{exc.start}), which is not text and cannot be stored as UTF-8",
            hint="strings must be valid Unicode text; store raw data in a bytes field",
            reason="lone surrogate",
        ) from None


def string_key(value: str) -> int:
    """The key of a string: the first 8 bytes of sha1 over its UTF-8 bytes."""
    return _from_bytes(_sha1(_utf8(value)).digest()[:8], "big")


def check_int(n: int) -> None:
    """Refuse an int beyond :data:`MAX_INT_BITS` (UnsupportedTypeError)."""
    if n.bit_length() > MAX_INT_BITS:
        raise UnsupportedTypeError(
            f"an int of {n.bit_length()} bits is beyond the {MAX_INT_BITS} bits discobase "
            "stores and indexes",
            type="int",
            reason="int too large",
        )


def check_decimal(value: decimal.Decimal) -> None:
    """Refuse a finite Decimal whose exact value would need a huge int: too many digits, or
    an exponent beyond ``±MAX_DECIMAL_EXPONENT`` (checked without building the int)."""
    if not value.is_finite():
        return
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    adjusted = exponent + len(digits) - 1
    if (
        len(digits) > MAX_DECIMAL_DIGITS
        or abs(exponent) > MAX_DECIMAL_EXPONENT
        or abs(adjusted) > MAX_DECIMAL_EXPONENT
    ):
        raise UnsupportedTypeError(
            f"a Decimal with {len(digits)} digits and exponent {exponent} is beyond what "
            f"discobase stores and indexes (at most {MAX_DECIMAL_DIGITS} digits and an "
            f"exponent within ±{MAX_DECIMAL_EXPONENT}): its exact value would be a "
            "gigantic number",
            type="Decimal",
            reason="Decimal out of range",
        )


def too_deep() -> InvalidRecordError:
    """The error for a value nested deeper than :data:`MAX_DEPTH`."""
    return InvalidRecordError(
        f"a value nests containers or models more than {MAX_DEPTH} levels deep",
        hint="flatten the value, or store it as bytes",
        reason="too deep",
    )


def _int_body(n: int, out: bytearray) -> None:
    if n.bit_length() > MAX_INT_BITS:
        check_int(n)
    raw = n.to_bytes((n.bit_length() + 8) // 8, "big", signed=True)
    write_uvarint(out, len(raw))
    out += raw


def _td_us(td: _dt.timedelta) -> int:
    return (td.days * 86_400 + td.seconds) * 1_000_000 + td.microseconds


def _number(num: int, den: int, out: bytearray) -> None:
    if den == 1:
        out += b"i"
        _int_body(num, out)
    else:
        out += b"q"
        _int_body(num, out)
        _int_body(den, out)


def _encode(value: object, out: bytearray, depth: int = 0) -> None:
    t = type(value)
    if t is str:
        raw = _utf8(value)  # type: ignore[arg-type]
        out += b"s"
        write_uvarint(out, len(raw))
        out += raw
        return
    if t is int:
        out += b"i"
        _int_body(value, out)  # type: ignore[arg-type]
        return
    if value is None:
        out += b"N"
        return
    if t is bool:
        out += b"T" if value else b"F"
        return
    if isinstance(value, enum.Enum):
        _encode(value.value, out, depth)
        return
    if isinstance(value, bool):  # pragma: no cover - bool cannot be subclassed
        out += b"T" if value else b"F"
        return
    if isinstance(value, int):
        out += b"i"
        _int_body(int(value), out)
        return
    if isinstance(value, str):
        _encode(str(value), out, depth)
        return
    if isinstance(value, float):
        if value != value:
            out += b"xn"
        elif value in (float("inf"), float("-inf")):
            out += b"x+" if value > 0 else b"x-"
        elif value.is_integer():
            out += b"i"
            _int_body(int(value), out)
        else:
            _number(*value.as_integer_ratio(), out)
        return
    if isinstance(value, decimal.Decimal):
        if value.is_nan():
            out += b"xn"
        elif value.is_infinite():
            out += b"x+" if value > 0 else b"x-"
        else:
            check_decimal(value)
            _number(*value.as_integer_ratio(), out)
        return
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        out += b"b"
        write_uvarint(out, len(raw))
        out += raw
        return
    if isinstance(value, _dt.datetime):
        offset = value.utcoffset()
        us = _td_us(value.replace(tzinfo=None, fold=0) - _EPOCH)
        if offset is None:
            out += b"d"
        else:
            out += b"D"
            us -= _td_us(offset)
        _int_body(us, out)
        return
    if isinstance(value, _dt.date):
        out += b"a"
        write_uvarint(out, value.toordinal())
        return
    if isinstance(value, _dt.time):
        us = ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000
        us += value.microsecond
        offset = value.utcoffset()
        if offset is None:
            out += b"t"
            write_uvarint(out, us)
        else:
            out += b"z"
            _int_body(us - _td_us(offset), out)
        return
    if isinstance(value, uuid.UUID):
        out += b"U"
        out += value.bytes
        return
    if isinstance(value, pydantic.BaseModel | list | tuple | Mapping | set | frozenset):
        depth += 1
        if depth > MAX_DEPTH:
            raise too_deep()
    if isinstance(value, pydantic.BaseModel):
        names = sorted(type(value).model_fields)
        out += b"o"
        write_uvarint(out, len(names))
        for name in names:
            _encode(name, out, depth)
            _encode(getattr(value, name), out, depth)
        return
    if isinstance(value, list | tuple):
        out += b"l"
        write_uvarint(out, len(value))
        for item in value:
            _encode(item, out, depth)
        return
    if isinstance(value, Mapping):
        pairs = sorted((_canonical(k, depth), _canonical(v, depth)) for k, v in value.items())
        out += b"m"
        write_uvarint(out, len(pairs))
        for k, v in pairs:
            out += k
            out += v
        return
    if isinstance(value, set | frozenset):
        members = sorted(_canonical(m, depth) for m in value)
        out += b"e"
        write_uvarint(out, len(members))
        for m in members:
            out += m
        return
    raise UnsupportedTypeError(
        f"cannot hash a value of type {type(value).__name__}; supported: {SUPPORTED_TYPES}",
        type=type(value).__name__,
    )


def _canonical(value: object, depth: int) -> bytes:
    out = bytearray()
    _encode(value, out, depth)
    return bytes(out)


def canonical_bytes(value: object) -> bytes:
    """One canonical encoding of an already-validated value (see the module docstring).

    Raises a :class:`~discobase_core.errors.DatabaseStorageError` for a value beyond the
    bounds above, and :class:`~discobase_core.errors.UnsupportedTypeError` for a type
    outside :data:`SUPPORTED_TYPES`.
    """
    return _canonical(value, 0)


def value_key(value: object) -> int:
    """The key of any supported value: :func:`string_key` for strings (and str-valued
    Enums), else sha1 over ``NON_STRING_PREFIX + canonical_bytes(value)``."""
    while isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, str):
        return string_key(value)
    out = bytearray(NON_STRING_PREFIX)
    _encode(value, out)
    return _from_bytes(_sha1(out).digest()[:8], "big")


def _int_key(value: int) -> int:
    raw = value.to_bytes((value.bit_length() + 8) // 8, "big", signed=True)
    # NON_STRING_PREFIX, tag "i", one-byte uvarint length (ints below 2**1015), bytes.
    if len(raw) < 0x80:
        return _from_bytes(_sha1(b"\xffi" + bytes((len(raw),)) + raw).digest()[:8], "big")
    return value_key(value)  # pragma: no cover - enormous ints


_TRUE_KEY = value_key(True)
_FALSE_KEY = value_key(False)


# --------------------------------------------------------------------------- type support

_LEAF_TYPES: tuple[type, ...] = (
    str,
    int,
    float,
    bool,
    bytes,
    _dt.datetime,
    _dt.date,
    _dt.time,
    uuid.UUID,
    decimal.Decimal,
    enum.Enum,
    pydantic.BaseModel,
)
_CONTAINERS: tuple[type, ...] = (list, tuple, dict, set, frozenset)


def _type_repr(annotation: object) -> str:
    if annotation is type(None):
        return "None"
    if isinstance(annotation, type) and get_origin(annotation) is None:
        return annotation.__name__
    return repr(annotation).replace("typing.", "").replace("datetime.", "")


def _unsupported(annotation: object, seen: set[int]) -> object | None:
    """The first unsupported (sub-)annotation in ``annotation``, or None."""
    if annotation is type(None) or annotation is None:
        return None
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _unsupported(get_args(annotation)[0], seen)
    if origin is Literal:
        for arg in get_args(annotation):
            if arg is not None and not isinstance(arg, str | int | bool | bytes | enum.Enum):
                return annotation
        return None
    if origin is Union or origin is types.UnionType:
        for arg in get_args(annotation):
            bad = _unsupported(arg, seen)
            if bad is not None:
                return bad
        return None
    if origin is not None:
        if origin not in _CONTAINERS:
            return annotation
        for arg in get_args(annotation):
            if arg is Ellipsis:
                continue
            bad = _unsupported(arg, seen)
            if bad is not None:
                return bad
        return None
    if isinstance(annotation, type):
        if annotation in _CONTAINERS:
            return None  # bare container: items are checked when hashed
        if issubclass(annotation, pydantic.BaseModel):
            if id(annotation) in seen:
                return None
            seen.add(id(annotation))
            for info in annotation.model_fields.values():
                bad = _unsupported(info.annotation, seen)
                if bad is not None:
                    return bad
            return None
        if issubclass(annotation, _LEAF_TYPES):
            return None
    return annotation


def check_supported(model_cls: type[pydantic.BaseModel]) -> None:
    """Raise :class:`UnsupportedTypeError` naming the first field whose type cannot be
    hashed and stored (see :data:`SUPPORTED_TYPES`)."""
    for name, info in model_cls.model_fields.items():
        bad = _unsupported(info.annotation, set())
        if bad is not None:
            whole = _type_repr(info.annotation)
            part = _type_repr(bad)
            inner = "" if part == whole else f" (because of {part})"
            raise UnsupportedTypeError(
                f"field {name!r} of {model_cls.__name__} has type {whole}{inner}, which "
                f"discobase cannot store or index; supported types: {SUPPORTED_TYPES}",
                hint="change the field's type to one of the supported types",
                field=name,
                type=whole,
                table=model_cls.__name__,
            )


# --------------------------------------------------------------------------- FieldHasher

M = TypeVar("M", bound=pydantic.BaseModel)

_STR, _INT, _BOOL, _OTHER = range(4)
_FAST: dict[object, int] = {str: _STR, int: _INT, bool: _BOOL}


class FieldHasher(Generic[M]):
    """Index keys for the fields of one table schema (a pydantic model class).

    ``key(field, value)`` validates a query value with the field's own type first (so
    ``"30"`` finds ``age=30`` and ``1`` finds ``1.0``) and raises :class:`QueryError` for an
    unknown field or an invalid value. ``keys(record)`` hashes every field of a validated
    record, hashing plain str / int / bool values directly.
    """

    def __init__(self, model_cls: type[M]) -> None:
        check_supported(model_cls)
        self.model_cls = model_cls
        self.fields: tuple[str, ...] = tuple(model_cls.model_fields)
        self._adapters: dict[str, pydantic.TypeAdapter[Any]] = {}
        plan: list[tuple[str, int]] = []
        for name, info in model_cls.model_fields.items():
            ann = info.annotation
            kind = _OTHER
            if not info.metadata:
                kind = _OTHER if ann is None else _FAST.get(ann, _OTHER)
            plan.append((name, kind))
        self._plan = tuple(plan)

    def type_repr(self, field: str) -> str:
        """Readable type of ``field``."""
        return _type_repr(self.model_cls.model_fields[field].annotation)

    def _adapter(self, field: str) -> pydantic.TypeAdapter[Any]:
        adapter = self._adapters.get(field)
        if adapter is None:
            info = self.model_cls.model_fields[field]
            ann: Any = info.annotation
            if info.metadata:
                ann = typing.Annotated[(ann, *info.metadata)]
            adapter = pydantic.TypeAdapter(ann)
            self._adapters[field] = adapter
        return adapter

    def validate(self, field: str, value: object) -> object:
        """``value`` validated (and coerced) with ``field``'s type, else QueryError.

        The validated value is also checked against the bounds of the module docstring (a
        query for ``Decimal("1e999999999")``, a lone surrogate or a list nested a thousand
        deep is refused in microseconds), so hashing it afterwards cannot fail or stall.
        """
        if field not in self.model_cls.model_fields:
            raise QueryError(
                f"{self.model_cls.__name__} has no field {field!r}; "
                f"its fields are: {', '.join(self.fields)}",
                field=field,
                fields=list(self.fields),
                table=self.model_cls.__name__,
            )
        expected = self.type_repr(field)
        try:
            validated = self._adapter(field).validate_python(value)
            canonical_bytes(validated)
        except pydantic.ValidationError as exc:
            reason = str(exc.errors()[0]["msg"])
        except DatabaseStorageError as exc:
            reason = exc.message
        except RecursionError:
            reason = f"the value nests more than {MAX_DEPTH} levels deep"
        else:
            return validated
        raise QueryError(
            f"{_short_repr(value)} is not a valid value for field {field!r} of type "
            f"{expected}: {reason}",
            field=field,
            expected=expected,
            table=self.model_cls.__name__,
            reason=reason,
        ) from None

    def key(self, field: str, value: object) -> int:
        """The index key of ``field == value`` (validated first; QueryError otherwise)."""
        return value_key(self.validate(field, value))

    def keys(self, record: M) -> dict[str, int]:
        """Keys of every field of ``record`` (declaration order).

        A value beyond the bounds of the module docstring raises the
        :class:`~discobase_core.errors.DatabaseStorageError` subclass that names it, with
        ``field`` in its details.
        """
        return dict(zip(self.fields, self.key_tuple(record), strict=True))

    def key_tuple(self, record: M) -> tuple[int, ...]:
        """``tuple(keys(record).values())``: keys in field order (built directly: every
        save hashes its record)."""
        values = record.__dict__
        out: list[int] = []
        append = out.append
        for name, kind in self._plan:
            v = values[name]
            t = type(v)
            try:
                if kind == _STR and t is str:
                    append(_from_bytes(_sha1(v.encode("utf-8")).digest()[:8], "big"))
                elif kind == _INT and t is int:
                    append(_int_key(v))
                elif kind == _BOOL and t is bool:
                    append(_TRUE_KEY if v else _FALSE_KEY)
                else:
                    append(value_key(v))
            except UnicodeEncodeError:
                raise _for_field(_utf8_error(v), name) from None
            except DatabaseStorageError as exc:
                raise _for_field(exc, name) from None
        return tuple(out)


def _utf8_error(value: str) -> DatabaseStorageError:
    try:
        _utf8(value)
    except DatabaseStorageError as exc:
        return exc
    raise AssertionError("unreachable")  # pragma: no cover - called only after a failure


def _for_field(exc: DatabaseStorageError, field: str) -> DatabaseStorageError:
    """The same error, its message prefixed with the field it is about."""
    details = {**exc.details, "field": field}
    return type(exc)(f"field {field!r}: {exc.message}", hint=exc.hint, **details)


_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = _REPR.maxother = 60


def _short_repr(value: object, limit: int = 80) -> str:
    """A repr of ``value`` cut to about ``limit`` characters: error messages stay readable
    (and cheap) whatever the size or depth of a query value (``repr`` of an int of 5,000
    digits even raises)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"<an int of {value.bit_length()} bits>"
    try:
        text = _REPR.repr(value)
    except (RecursionError, ValueError):
        return f"<a {type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
