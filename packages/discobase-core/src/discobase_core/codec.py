"""The record codec, the versioned framing of every stored blob, and its text armour.

Three layers, each pure:

1. :class:`RecordCodec` turns a validated pydantic record into bytes and back, losslessly
   whatever the user's model (aliases, serializers, ``model_config``)::

       0xDB               1 byte   RECORD_MARKER (JSON never starts with it)
       b"o"               1 byte   the record, as a model value of discobase_core.values:
       field count        uvarint
       (name, value)...            python field names (UTF-8), values tagged and exact

   Records written by discobase before this encoding are pydantic JSON (they start with
   ``{``) and still decode. Decoding failures are corruption.
2. :func:`seal` / :func:`unseal` frame any payload::

       b"DSCB"            4 bytes  magic
       version            1 byte   FORMAT_VERSION of the writer
       kind length        1 byte   1..8
       kind               ASCII    [a-z0-9_-], e.g. b"rec", b"ixpage", b"schema"
       payload length     4 bytes  big-endian unsigned
       payload            bytes
       crc32              4 bytes  big-endian, zlib.crc32 over everything before it

   so a truncated, extended or edited blob is detected, and a blob written by a newer
   discobase is refused with a message that says so.
3. :func:`armor` / :func:`dearmor` carry bytes in message content: ``"dscb:"`` followed by
   unpadded URL-safe base64 (``A-Z a-z 0-9 - _`` only). No whitespace, no markdown or mention
   characters (``@ < > : * _`` ... except ``-`` and ``_``, which Discord keeps verbatim), so the
   text survives Discord unchanged; :func:`armored_length` tells callers whether bytes fit
   the 2,000-character content budget before anything is encoded.

Size budget (Discord's limits, which the adapter targets):

- :data:`CONTENT_LIMIT` = 2,000 characters of message content;
- :data:`ATTACHMENT_LIMIT` = 10 MiB per attachment;
- :data:`ATTACHMENTS_PER_MESSAGE` = 10;
- :data:`REQUEST_LIMIT` = 25 MiB per request (all attachments together).
"""

from __future__ import annotations

import base64
import binascii
import inspect
import re
import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import pydantic

from discobase_core._varint import write_uvarint
from discobase_core.errors import (
    DatabaseCorruptionError,
    DatabaseStorageError,
    InvalidRecordError,
    RecordTooLargeError,
)
from discobase_core.hashing import _short_repr, canonical_bytes, check_supported
from discobase_core.values import (
    ValueReader,
    decode_value,
    encode_value,
    enum_classes,
    read_fields,
    write_name,
    write_value,
)

__all__ = [
    "ARMOR_PREFIX",
    "ATTACHMENTS_PER_MESSAGE",
    "ATTACHMENT_LIMIT",
    "CONTENT_LIMIT",
    "FORMAT_VERSION",
    "MAGIC",
    "PRIVATE_INIT_MARK",
    "RECORD_MARKER",
    "REQUEST_LIMIT",
    "SEAL_OVERHEAD_MAX",
    "RecordCodec",
    "armor",
    "armored_length",
    "dearmor",
    "max_payload_for_content",
    "plain_fields",
    "seal",
    "sealed_length",
    "unseal",
]

#: Version of every binary format in this package (framing, index pages, hashing scheme).
FORMAT_VERSION = 1
#: Characters of message content Discord accepts per message.
CONTENT_LIMIT = 2000
#: Bytes per attachment (Discord's default upload limit).
ATTACHMENT_LIMIT = 10 * 1024 * 1024
#: Attachments per message.
ATTACHMENTS_PER_MESSAGE = 10
#: Bytes per request, all attachments together.
REQUEST_LIMIT = 25 * 1024 * 1024

MAGIC = b"DSCB"
ARMOR_PREFIX = "dscb:"
_KIND_RE = re.compile(rb"[a-z0-9_-]{1,8}")
_HEADER = struct.Struct(">4sBB")
_U32 = struct.Struct(">I")
#: Largest framing overhead: magic 4 + version 1 + kind length 1 + kind 8 + length 4 + crc 4.
SEAL_OVERHEAD_MAX = 4 + 1 + 1 + 8 + 4 + 4
_B64_RE = re.compile(r"[A-Za-z0-9_-]*")


def _kind_bytes(kind: str) -> bytes:
    raw = kind.encode("ascii", "replace")
    if not _KIND_RE.fullmatch(raw):
        raise ValueError(f"kind must be 1-8 characters of [a-z0-9_-], got {kind!r}")
    return raw


def sealed_length(kind: str, n_payload: int) -> int:
    """Length of ``seal(kind, payload)`` for a payload of ``n_payload`` bytes."""
    return 4 + 1 + 1 + len(_kind_bytes(kind)) + 4 + n_payload + 4


def seal(kind: str, payload: bytes) -> bytes:
    """Frame ``payload`` with magic, format version, kind, length and a crc32."""
    raw_kind = _kind_bytes(kind)
    if len(payload) > 0xFFFFFFFF:
        raise RecordTooLargeError(
            f"payload of {len(payload)} bytes is too large to seal",
            size=len(payload),
            limit=0xFFFFFFFF,
        )
    body = b"".join(
        (
            _HEADER.pack(MAGIC, FORMAT_VERSION, len(raw_kind)),
            raw_kind,
            _U32.pack(len(payload)),
            payload,
        )
    )
    return body + _U32.pack(zlib.crc32(body))


def _corrupt(where: str, reason: str) -> DatabaseCorruptionError:
    return DatabaseCorruptionError(f"{where}: {reason}", where=where, reason=reason)


def unseal(
    blob: bytes | bytearray | memoryview, *, where: str, kind: str | None = None
) -> tuple[str, bytes]:
    """Check and strip the framing of ``blob``; returns ``(kind, payload)``.

    Raises only :class:`DatabaseCorruptionError` (naming ``where`` and the reason).
    """
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise _corrupt(where, f"expected bytes, got {type(blob).__name__}")
    blob = bytes(blob)
    if len(blob) < 6:
        raise _corrupt(where, f"truncated: {len(blob)} bytes is shorter than any header")
    magic, version, kind_len = _HEADER.unpack_from(blob, 0)
    if magic != MAGIC:
        raise _corrupt(where, f"bad magic {magic!r} (expected {MAGIC!r}): not a discobase blob")
    if version != FORMAT_VERSION:
        if version > FORMAT_VERSION:
            raise _corrupt(
                where,
                f"format version {version} was written by a newer discobase; "
                f"this one reads format version {FORMAT_VERSION}: upgrade discobase",
            )
        raise _corrupt(where, f"unknown format version {version}")
    if not 1 <= kind_len <= 8:
        raise _corrupt(where, f"bad kind length {kind_len}")
    pos = 6 + kind_len
    if len(blob) < pos + 4 + 4:
        raise _corrupt(where, f"truncated: {len(blob)} bytes ends inside the header")
    raw_kind = blob[6:pos]
    if not _KIND_RE.fullmatch(raw_kind):
        raise _corrupt(where, f"bad kind tag {raw_kind!r}")
    (length,) = _U32.unpack_from(blob, pos)
    pos += 4
    expected = pos + length + 4
    if len(blob) != expected:
        what = "truncated" if len(blob) < expected else "trailing bytes"
        raise _corrupt(
            where, f"length mismatch ({what}): header says {expected} bytes, got {len(blob)}"
        )
    (crc,) = _U32.unpack_from(blob, pos + length)
    if zlib.crc32(memoryview(blob)[: pos + length]) != crc:  # no copy of a big blob
        raise _corrupt(where, "checksum mismatch: the blob was edited or damaged")
    found = raw_kind.decode("ascii")
    if kind is not None and found != kind:
        raise _corrupt(where, f"wrong kind {found!r} (expected {kind!r})")
    return found, blob[pos : pos + length]


def armored_length(n_bytes: int) -> int:
    """Characters :func:`armor` produces for ``n_bytes`` bytes."""
    full, rest = divmod(n_bytes, 3)
    return len(ARMOR_PREFIX) + 4 * full + (rest + 1 if rest else 0)


def max_payload_for_content(limit: int = CONTENT_LIMIT) -> int:
    """The largest number of bytes whose armour fits in ``limit`` characters."""
    chars = limit - len(ARMOR_PREFIX)
    full, rest = divmod(chars, 4)
    return 3 * full + max(0, rest - 1)


def armor(blob: bytes) -> str:
    """ASCII text for message content: ``"dscb:"`` + unpadded URL-safe base64."""
    return ARMOR_PREFIX + base64.urlsafe_b64encode(blob).rstrip(b"=").decode("ascii")


def dearmor(text: str, *, where: str) -> bytes:
    """Inverse of :func:`armor`. Raises only :class:`DatabaseCorruptionError`."""
    if not isinstance(text, str):
        raise _corrupt(where, f"expected text, got {type(text).__name__}")
    if not text.startswith(ARMOR_PREFIX):
        raise _corrupt(where, f"not discobase text (missing {ARMOR_PREFIX!r} prefix)")
    body = text[len(ARMOR_PREFIX) :]
    if not _B64_RE.fullmatch(body):
        raise _corrupt(where, "armoured text holds characters outside URL-safe base64")
    if len(body) % 4 == 1:
        raise _corrupt(where, "armoured text has an impossible length (truncated?)")
    padded = body + "=" * (-len(body) % 4)
    try:
        data = base64.urlsafe_b64decode(padded)
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - regex rules this out
        raise _corrupt(where, f"bad base64: {exc}") from None
    if armor(data) != text:
        # Non-canonical trailing bits: not something armor() wrote.
        raise _corrupt(where, "armoured text is not canonical (edited?)")
    return data


M = TypeVar("M", bound=pydantic.BaseModel)

#: First byte of every record this version writes. Stored JSON records start with ``{``.
RECORD_MARKER = 0xDB
_HEAD = bytes((RECORD_MARKER, ord("o")))
_OLD_JSON = ord("{")
#: Types whose == (between two values of the same type) is canonical_bytes equality.
_PLAIN = frozenset({str, int, bool, bytes, type(None)})


#: The attribute (set to True) of a ``model_post_init`` that promises to do nothing but
#: start the record's private attributes, as pydantic's own does (discobase's Table has
#: a quicker one): such a hook cannot change what a record reads back as.
PRIVATE_INIT_MARK = "__discobase_private_init__"
#: Core schema types whose lax validation returns a value of exactly this type unchanged.
_PLAIN_SCHEMAS: dict[str, type] = {"str": str, "int": int, "bool": bool, "bytes": bytes}
# Keys of a plain model's core schema, its config, its fields and their defaults: anything
# else (a constraint, a validator, strict, a string transform...) may change a value.
_PLAIN_MODEL_KEYS = frozenset(
    {"type", "cls", "schema", "custom_init", "root_model", "post_init", "config", "ref"}
    | {"metadata"}
)
_PLAIN_CONFIG_KEYS = frozenset({"title", "extra_fields_behavior", "validate_by_name"})
_PLAIN_FIELDS_KEYS = frozenset({"type", "fields", "model_name", "computed_fields"})
_PLAIN_FIELD_KEYS = frozenset(
    {"type", "schema", "metadata", "validation_alias", "serialization_alias"}
    | {"serialization_exclude", "frozen"}
)
_PLAIN_DEFAULT_KEYS = frozenset({"type", "schema", "default", "default_factory"})


class _Probe(pydantic.BaseModel):
    _probe: int = pydantic.PrivateAttr(default=0)


#: pydantic's model_post_init of a model with private attributes and no hook of its own.
PYDANTIC_PRIVATE_INIT: Any = inspect.unwrap(_Probe.model_post_init)


def _only_private_init(model_cls: type[pydantic.BaseModel]) -> bool:
    hook = inspect.unwrap(model_cls.model_post_init)
    return hook is PYDANTIC_PRIVATE_INIT or getattr(hook, PRIVATE_INIT_MARK, False) is True


def plain_fields(model_cls: type[pydantic.BaseModel]) -> dict[str, type] | None:
    """Field name -> type, when validating the model (as reading a record back does) is
    the identity on any values of exactly those types: every field a bare ``str``,
    ``int``, ``bool`` or ``bytes`` (no constraint, validator, strict mode or string
    transform), no model validator, ``__init__`` or ``model_post_init`` of the model's
    own. Read from pydantic's compiled core schema, so nothing that can change a value
    (however it was declared) goes unseen. None for any other model."""
    try:
        schema: Any = model_cls.__pydantic_core_schema__
        if not isinstance(schema, dict) or schema.get("type") != "model":
            return None
        if not _PLAIN_MODEL_KEYS.issuperset(schema) or schema.get("custom_init"):
            return None
        if schema.get("root_model") or not _PLAIN_CONFIG_KEYS.issuperset(schema.get("config", {})):
            return None
        if schema.get("post_init") is not None and not _only_private_init(model_cls):
            return None
        inner = schema["schema"]
        if inner.get("type") != "model-fields" or not _PLAIN_FIELDS_KEYS.issuperset(inner):
            return None
        plain: dict[str, type] = {}
        for name, spec in inner["fields"].items():
            if spec.get("type") != "model-field" or not _PLAIN_FIELD_KEYS.issuperset(spec):
                return None
            field_schema = spec["schema"]
            if field_schema.get("type") == "default":
                if not _PLAIN_DEFAULT_KEYS.issuperset(field_schema):
                    return None
                field_schema = field_schema["schema"]
            if set(field_schema) != {"type"} or field_schema["type"] not in _PLAIN_SCHEMAS:
                return None
            plain[name] = _PLAIN_SCHEMAS[field_schema["type"]]
    except (AttributeError, KeyError, TypeError):  # not built yet, or a shape unknown here
        return None
    return plain if list(plain) == list(model_cls.model_fields) else None


def _reasons(exc: pydantic.ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or '<record>'}: {e['msg']}" for e in exc.errors()[:5]
    )


class RecordCodec(Generic[M]):
    """The codec of the records of one table.

    ``encode`` writes the actual Python value of every declared field (``record.__dict__``,
    by python name, declaration order) with discobase's own tagged encoding
    (:mod:`discobase_core.values`), so neither aliases nor the model's JSON settings nor
    serializers matter. Before returning, it reads the bytes back exactly as a later
    ``find`` will and checks that every field equals the saved one (under
    :func:`~discobase_core.hashing.canonical_bytes`, the equality of the index): a record
    that would not read back (a validator that changes what it is given, a value beyond
    the bounds, a lone surrogate...) is refused with an
    :class:`~discobase_core.errors.DatabaseStorageError` naming the field, before anything
    is written. That read-back is skipped when it cannot find anything: the model is
    plain (:func:`plain_fields`: validating it is the identity) and every value is of
    exactly its field's plain type, which the value encoding stores exactly (a string
    that is not UTF-8 is refused while writing).

    ``decode`` reads the fields back into plain Python values, adds the ``backfill`` value
    of every field a record predates (the value fixed when the field was added to the
    table, see :mod:`discobase_core.schema`), and validates them by field name
    (``by_name=True``, lax mode: the plain values rebuild tuples, sets, enums and nested
    models). Any failure is :class:`~discobase_core.errors.DatabaseCorruptionError` naming
    ``where``.
    """

    def __init__(
        self,
        model_cls: type[M],
        *,
        table: str | None = None,
        backfill: Mapping[str, object] | None = None,
    ) -> None:
        check_supported(model_cls)
        self.model_cls = model_cls
        self.table = table or model_cls.__name__
        self.fields: tuple[str, ...] = tuple(model_cls.model_fields)
        self._field_set = frozenset(self.fields)
        head = bytearray(_HEAD)
        write_uvarint(head, len(self.fields))
        self._head = bytes(head)
        plan: list[tuple[str, bytes]] = []
        for name in self.fields:
            prefix = bytearray()
            write_name(prefix, name)
            plan.append((name, bytes(prefix)))
        self._plan = tuple(plan)
        self._backfill: dict[str, bytes] = {}
        for name, value in (backfill or {}).items():
            if name not in model_cls.model_fields:
                raise ValueError(f"backfill for {name!r}, which {model_cls.__name__} lacks")
            self._backfill[name] = encode_value(value)
        self._enums = enum_classes(model_cls)
        plain = plain_fields(model_cls)
        self._plain = tuple(plain.items()) if plain is not None else None
        self._validate = model_cls.model_validate
        self._validate_json = model_cls.model_validate_json

    @property
    def backfill(self) -> dict[str, object]:
        """The value each backfilled field reads as in records that predate it."""
        return {
            name: decode_value(raw, where="backfill", enums=self._enums)
            for name, raw in self._backfill.items()
        }

    def _write(self, record: M) -> bytes:
        out = bytearray(self._head)
        values = record.__dict__
        name = ""
        try:
            for name, prefix in self._plan:
                out += prefix
                write_value(out, values[name])
        except DatabaseStorageError as exc:
            details = {**exc.details, "field": name, "table": self.table}
            raise type(exc)(
                f"field {name!r} of a {self.table} record: {exc.message}",
                hint=exc.hint,
                **details,
            ) from None
        return bytes(out)

    def encode(self, record: M) -> bytes:
        """The bytes of ``record``; refuses (before anything is written) a record that
        would not read back as itself."""
        if type(record) is not self.model_cls and not isinstance(record, self.model_cls):
            raise InvalidRecordError(
                f"expected a {self.model_cls.__name__} record, got {type(record).__name__}",
                table=self.table,
                reason="wrong type",
            )
        if record.__pydantic_extra__:
            raise InvalidRecordError(
                f"a {self.table} record holds extra fields "
                f"({', '.join(map(repr, record.__pydantic_extra__))}) that no field declares; "
                "discobase stores declared fields only",
                hint="declare the fields, or set model_config = ConfigDict(extra='ignore')",
                table=self.table,
                reason="extra fields",
            )
        data = self._write(record)
        plain = self._plain
        if plain is not None:
            values = record.__dict__
            for name, kind in plain:
                if type(values[name]) is not kind:
                    break
            else:
                return data  # reading it back would give these very values
        self._check_round_trip(record, data)
        return data

    def _check_round_trip(self, record: M, data: bytes) -> None:
        where = f"a {self.table} record being saved"
        try:
            back = self._decode_new(data, where=where)
        except DatabaseCorruptionError as exc:
            raise InvalidRecordError(
                f"a {self.table} record would not read back: {exc.details.get('reason')}",
                hint="assign values of the declared types (or enable validate_assignment); "
                "validators must accept the values they produce",
                table=self.table,
                reason=str(exc.details.get("reason")),
            ) from None
        saved, read = record.__dict__, back.__dict__
        for name in self.fields:
            before, after = saved[name], read[name]
            if type(before) is type(after) and type(before) in _PLAIN and before == after:
                continue  # equal exactly as canonical_bytes would say, without encoding
            if canonical_bytes(before) != canonical_bytes(after):
                raise InvalidRecordError(
                    f"field {name!r} of a {self.table} record would read back as "
                    f"{_short_repr(read[name])}, not as the saved {_short_repr(saved[name])}",
                    hint="a validator or type that changes the value it is given cannot be "
                    "stored as is; store the validated form",
                    table=self.table,
                    field=name,
                    reason="round trip changes the value",
                )

    def encode_many(self, records: Iterable[M]) -> list[bytes]:
        """``[encode(r) for r in records]``."""
        encode = self.encode
        return [encode(r) for r in records]

    def _corrupt_record(self, where: str, reason: str) -> DatabaseCorruptionError:
        return _corrupt(where, f"not a valid {self.table} record: {reason}")

    def _decode_new(self, data: bytes, *, where: str) -> M:
        reader = ValueReader(data, where=where, pos=1, enums=self._enums)
        if reader.byte() != _HEAD[1]:
            raise self._corrupt_record(where, "bad record tag")
        fields = read_fields(reader)
        reader.expect_end()
        if not self._field_set.issuperset(fields):
            unknown = [name for name in fields if name not in self._field_set]
            raise self._corrupt_record(where, f"fields {unknown} are not in the table")
        for name, raw in self._backfill.items():
            if name not in fields:
                fields[name] = decode_value(
                    raw, where=f"{where}, backfill of {name!r}", enums=self._enums
                )
        try:
            return self._validate(fields, strict=False, by_name=True, by_alias=False)
        except pydantic.ValidationError as exc:
            raise self._corrupt_record(where, _reasons(exc)) from None
        except (TypeError, ValueError) as exc:  # raised by a validator of the model
            raise self._corrupt_record(where, f"{type(exc).__name__}: {exc}") from None

    def _decode_json(self, data: bytes, *, where: str) -> M:
        """A record stored as pydantic JSON by an earlier discobase: python field names, or
        aliases where the model said ``serialize_by_alias``; both are accepted."""
        try:
            record = self._validate_json(data, by_name=True, by_alias=True)
            missing = [name for name in self._backfill if name not in record.model_fields_set]
            if missing:
                values = dict(record.__dict__)
                for name in missing:
                    values[name] = decode_value(
                        self._backfill[name],
                        where=f"{where}, backfill of {name!r}",
                        enums=self._enums,
                    )
                record = self._validate(values, strict=False, by_name=True, by_alias=False)
        except pydantic.ValidationError as exc:
            raise self._corrupt_record(where, _reasons(exc)) from None
        except (TypeError, ValueError) as exc:
            raise self._corrupt_record(where, str(exc)) from None
        return record

    def decode(self, data: bytes, *, where: str) -> M:
        """The record ``data`` holds (either encoding)."""
        first = data[0] if data else -1
        if first == RECORD_MARKER:
            return self._decode_new(data, where=where)
        if first == _OLD_JSON:
            return self._decode_json(data, where=where)
        raise self._corrupt_record(where, f"unknown record encoding (first byte {first})")

    def decode_many(self, items: Sequence[tuple[bytes, str]]) -> list[M]:
        """Decode ``(data, where)`` pairs."""
        decode = self.decode
        return [decode(data, where=where) for data, where in items]
