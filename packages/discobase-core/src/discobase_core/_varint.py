"""Unsigned LEB128 varints and a bounds-checked byte reader (private helpers).

Every decoding failure raised by :class:`Reader` is a :class:`DatabaseCorruptionError`
naming ``where``, so format parsers built on it raise nothing else.
"""

from __future__ import annotations

from discobase_core.errors import DatabaseCorruptionError

__all__ = ["Reader", "decode_uvarint", "encode_uvarint", "uvarint_size", "write_uvarint"]

#: A value below 2**128 fits in 19 varint bytes.
MAX_UVARINT_BYTES = 19


def write_uvarint(out: bytearray, n: int) -> None:
    """Append the little-endian base-128 encoding of non-negative ``n`` to ``out``."""
    if n < 0:
        raise ValueError(f"uvarint must be non-negative, got {n}")
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def encode_uvarint(n: int) -> bytes:
    """The uvarint encoding of non-negative ``n``."""
    if 0 <= n < 0x80:
        return bytes((n,))
    out = bytearray()
    write_uvarint(out, n)
    return bytes(out)


def uvarint_size(n: int) -> int:
    """Encoded size of ``n`` in bytes."""
    return max(1, (n.bit_length() + 6) // 7)


def decode_uvarint(data: bytes, pos: int, *, max_bytes: int = MAX_UVARINT_BYTES) -> tuple[int, int]:
    """Decode one uvarint at ``pos``; returns ``(value, new_pos)``.

    Raises ``ValueError`` on truncation, on more than ``max_bytes`` bytes, or on a
    non-minimal encoding (a trailing zero byte), so each value has exactly one encoding.
    """
    result = 0
    shift = 0
    for i in range(max_bytes):
        if pos >= len(data):
            raise ValueError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            if b == 0 and i > 0:
                raise ValueError("non-minimal varint")
            return result, pos
        shift += 7
    raise ValueError(f"varint longer than {max_bytes} bytes")


class Reader:
    """Reads a byte string front to back; any overrun or bad varint is corruption."""

    __slots__ = ("data", "pos", "where")

    def __init__(self, data: bytes, *, where: str, pos: int = 0) -> None:
        self.data = data
        self.where = where
        self.pos = pos

    def _fail(self, reason: str) -> DatabaseCorruptionError:
        return DatabaseCorruptionError(
            f"{self.where}: {reason} at byte {self.pos}", where=self.where, reason=reason
        )

    def uvarint(self, max_bytes: int = MAX_UVARINT_BYTES) -> int:
        """One uvarint."""
        pos = self.pos
        if pos < len(self.data):
            b = self.data[pos]
            if b < 0x80:  # one byte: most lengths and counts (the record codec's hot path)
                self.pos = pos + 1
                return b
        try:
            value, self.pos = decode_uvarint(self.data, self.pos, max_bytes=max_bytes)
        except ValueError as exc:
            raise self._fail(str(exc)) from None
        return value

    def count(self, min_item_bytes: int = 1) -> int:
        """A uvarint count of items that take at least ``min_item_bytes`` bytes each.

        A count the remaining bytes cannot hold is corruption, raised before the caller
        allocates or loops: decoders built on this allocate only what the data justifies.
        """
        n = self.uvarint()
        if n * min_item_bytes > len(self.data) - self.pos:
            raise self._fail(
                f"a count of {n} items does not fit in the {len(self.data) - self.pos} bytes left"
            )
        return n

    def text(self) -> str:
        """A uvarint-length UTF-8 string; bad UTF-8 is corruption (never replaced)."""
        raw = self.take(self.uvarint())
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self._fail("a string is not valid UTF-8") from None

    def byte(self) -> int:
        """One byte."""
        if self.pos >= len(self.data):
            raise self._fail("truncated")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def view(self, n: int) -> memoryview:
        """The next ``n`` bytes, without copying them (a view of the data)."""
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise self._fail(f"truncated (wanted {n} bytes)")
        chunk = memoryview(self.data)[self.pos : end]
        self.pos = end
        return chunk

    def take(self, n: int) -> bytes:
        """The next ``n`` bytes."""
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise self._fail(f"truncated (wanted {n} bytes)")
        chunk = self.data[self.pos : end]
        self.pos = end
        return bytes(chunk)

    @property
    def remaining(self) -> int:
        """Bytes left to read."""
        return len(self.data) - self.pos

    def at_end(self) -> bool:
        """Whether every byte has been read."""
        return self.pos >= len(self.data)

    def expect_end(self) -> None:
        """Raise unless every byte has been read."""
        if self.pos != len(self.data):
            raise self._fail(f"{len(self.data) - self.pos} trailing bytes")
