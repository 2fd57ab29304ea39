"""The record codec, the versioned framing of every stored blob, and its text armour.

Three layers, each pure:

1. :class:`RecordCodec` turns a validated pydantic record into compact JSON bytes (python
   field names, declaration order) and back. Decoding failures are corruption.
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
import re
import struct
import zlib
from collections.abc import Iterable, Sequence
from typing import Generic, TypeVar

import pydantic
from pydantic_core import PydanticSerializationError

from discobase_core.errors import DatabaseCorruptionError, InvalidRecordError, RecordTooLargeError
from discobase_core.hashing import canonical_bytes, check_supported

__all__ = [
    "ARMOR_PREFIX",
    "ATTACHMENTS_PER_MESSAGE",
    "ATTACHMENT_LIMIT",
    "CONTENT_LIMIT",
    "FORMAT_VERSION",
    "MAGIC",
    "REQUEST_LIMIT",
    "SEAL_OVERHEAD_MAX",
    "RecordCodec",
    "armor",
    "armored_length",
    "dearmor",
    "max_payload_for_content",
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


def unseal(blob: bytes, *, where: str, kind: str | None = None) -> tuple[str, bytes]:
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
    if zlib.crc32(blob[: pos + length]) != crc:
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


def _has_time_fields(model_cls: type[pydantic.BaseModel]) -> bool:
    """Whether any (nested) annotation mentions datetime or time."""
    text = " ".join(repr(f.annotation) for f in model_cls.model_fields.values())
    return "datetime" in text or "time" in text


class RecordCodec(Generic[M]):
    """JSON codec for the records of one table.

    ``encode`` dumps the record with python field names in declaration order (pydantic's
    Rust serializer, compact, no whitespace), refusing a record whose values no longer match
    its field types (:class:`InvalidRecordError`, before anything is written). Sets are
    dumped in iteration order; the bytes decode to the same record either way.
    ``decode`` validates JSON back into the model; any failure is
    :class:`DatabaseCorruptionError` naming ``where``.
    """

    def __init__(self, model_cls: type[M], *, table: str | None = None) -> None:
        check_supported(model_cls)
        self.model_cls = model_cls
        self.table = table or model_cls.__name__
        self._validate_json = model_cls.__pydantic_validator__.validate_json
        self._check_all = _has_time_fields(model_cls)

    def encode(self, record: M) -> bytes:
        """Compact JSON of ``record``."""
        if type(record) is not self.model_cls and not isinstance(record, self.model_cls):
            raise InvalidRecordError(
                f"expected a {self.model_cls.__name__} record, got {type(record).__name__}",
                table=self.table,
                reason="wrong type",
            )
        try:
            data = record.__pydantic_serializer__.to_json(record, warnings="error")
        except PydanticSerializationError as exc:
            raise InvalidRecordError(
                f"a {self.table} record holds a value that does not match its field type: {exc}",
                hint="assign values of the declared types (or enable validate_assignment)",
                table=self.table,
                reason=str(exc),
            ) from None
        if self._check_all or b"null" in data:
            # pydantic dumps inf and NaN as null by default, and writes UTC offsets to the
            # minute: make sure the bytes read back as this very record before they are
            # ever written (always for tables with datetime/time fields, else when a null
            # shows up).
            self._check_round_trip(record, data)
        return data

    def _check_round_trip(self, record: M, data: bytes) -> None:
        try:
            back = self._validate_json(data)
            same = canonical_bytes(back) == canonical_bytes(record)
        except pydantic.ValidationError:
            same = False
        if not same:
            raise InvalidRecordError(
                f"a {self.table} record does not survive JSON: a float inf/NaN is dumped as "
                "null, or a datetime/time has a UTC offset with seconds",
                hint="set model_config = ConfigDict(ser_json_inf_nan='constants') on the table "
                "for inf/NaN; convert datetimes to UTC before saving",
                table=self.table,
                reason="JSON round trip changes the record",
            )

    def encode_many(self, records: Iterable[M]) -> list[bytes]:
        """``[encode(r) for r in records]``."""
        encode = self.encode
        return [encode(r) for r in records]

    def decode(self, data: bytes, *, where: str) -> M:
        """Validate JSON ``data`` into a record."""
        try:
            record = self._validate_json(data)
        except pydantic.ValidationError as exc:
            reason = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or '<record>'}: {e['msg']}" for e in exc.errors()
            )
            raise _corrupt(where, f"not a valid {self.table} record: {reason}") from None
        except (TypeError, ValueError) as exc:
            raise _corrupt(where, f"not a valid {self.table} record: {exc}") from None
        return record  # type: ignore[no-any-return]

    def decode_many(self, items: Sequence[tuple[bytes, str]]) -> list[M]:
        """Decode ``(data, where)`` pairs."""
        decode = self.decode
        return [decode(data, where=where) for data, where in items]
