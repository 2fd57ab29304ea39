"""The table log: what one Discord message of a table channel holds, and how a commit is cut
into messages.

A table channel is append-only. Every message the bot writes there holds exactly one sealed
blob (see `codec.seal`): either armored into the message content, when it fits in 2,000
characters, or cut into attachment files `<kind>-<n>.dscb` (at most 10 MiB each) whose
concatenation in name order is the blob. Two kinds of blob exist:

- ``log``: a block of log entries (puts and deletes of records), part `part` of `parts` of
  commit `commit`. A commit too big for one message spans several consecutive messages; a
  reader applies a commit only when all its parts are present, so a crash halfway through a
  commit leaves nothing half-applied.
- ``ckpt`` / ``pages``: a checkpoint of the table state (see `state.py`).

Records never move: a record lives at (message id, entry number) until a newer put or a
delete of its id supersedes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from discobase_core._varint import Reader, write_uvarint
from discobase_core.codec import (
    ARMOR_PREFIX,
    ATTACHMENT_LIMIT,
    ATTACHMENTS_PER_MESSAGE,
    CONTENT_LIMIT,
    REQUEST_LIMIT,
    armor,
    armored_length,
    dearmor,
    seal,
    unseal,
)
from discobase_core.errors import DatabaseCorruptionError, RecordTooLargeError

__all__ = [
    "FILE_SUFFIX",
    "MAX_BLOB_BYTES",
    "MAX_RECORD_BYTES",
    "Delete",
    "Entry",
    "LogBlock",
    "MessagePlan",
    "Put",
    "decode_block",
    "encode_block",
    "file_name",
    "is_discobase_message",
    "parse_file_name",
    "plan_blob",
    "plan_commit",
    "read_blob",
]

FILE_SUFFIX = ".dscb"
# A multipart request carries some framing around the files; stay well inside 25 MiB.
MAX_BLOB_BYTES = min(ATTACHMENT_LIMIT * ATTACHMENTS_PER_MESSAGE, REQUEST_LIMIT - 1024 * 1024)
# Room for the block header and the entry's own header inside one message.
MAX_RECORD_BYTES = MAX_BLOB_BYTES - 4096

_OP_PUT = 1
_OP_DELETE = 2


@dataclass(frozen=True, slots=True)
class Put:
    """Store `payload` (an encoded record) under record id `rid`, with its index keys."""

    rid: int
    keys: tuple[int, ...]
    payload: bytes


@dataclass(frozen=True, slots=True)
class Delete:
    """Remove record `rid`."""

    rid: int


Entry = Put | Delete


@dataclass(frozen=True, slots=True)
class LogBlock:
    """The entries one message holds: part `part` (0-based) of `parts` of commit `commit`."""

    commit: int
    part: int
    parts: int
    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class MessagePlan:
    """One message to send: armored `content`, or attachment `files` (name, bytes)."""

    content: str | None
    files: tuple[tuple[str, bytes], ...]


def _encode_entry(entry: Entry, width: int) -> bytes:
    out = bytearray()
    if isinstance(entry, Put):
        if len(entry.keys) != width:
            raise ValueError(f"put of record {entry.rid} has {len(entry.keys)} keys, not {width}")
        out.append(_OP_PUT)
        write_uvarint(out, entry.rid)
        for key in entry.keys:
            out += key.to_bytes(8, "big")
        write_uvarint(out, len(entry.payload))
        out += entry.payload
    else:
        out.append(_OP_DELETE)
        write_uvarint(out, entry.rid)
    return bytes(out)


def _encode_parts(
    commit: int, part: int, parts: int, width: int, encoded: Sequence[bytes]
) -> bytes:
    out = bytearray()
    for number in (commit, part, parts, width, len(encoded)):
        write_uvarint(out, number)
    for item in encoded:
        out += item
    return seal("log", bytes(out))


def encode_block(block: LogBlock, width: int) -> bytes:
    """The sealed blob for one log block; `width` is the number of index keys per put."""
    encoded = [_encode_entry(entry, width) for entry in block.entries]
    return _encode_parts(block.commit, block.part, block.parts, width, encoded)


def decode_block(blob: bytes, *, where: str) -> tuple[LogBlock, int]:
    """Decode a sealed log blob into its block and key width; corruption names `where`."""
    _, body = unseal(blob, where=where, kind="log")
    reader = Reader(body, where=where)
    commit, part, parts, width = (reader.uvarint() for _ in range(4))
    count = reader.count(min_item_bytes=2)  # an operation byte and a record id at least
    if parts == 0 or part >= parts:
        raise DatabaseCorruptionError(
            f"log block at {where} says it is part {part} of {parts}",
            where=where,
            reason="bad part numbers",
        )
    entries: list[Entry] = []
    for _ in range(count):
        op = reader.byte()
        rid = reader.uvarint()
        if op == _OP_PUT:
            if width * 8 > reader.remaining:
                raise DatabaseCorruptionError(
                    f"log block at {where} claims {width} index keys per record, more than "
                    "its bytes hold",
                    where=where,
                    reason="key width",
                )
            keys = tuple(int.from_bytes(reader.take(8), "big") for _ in range(width))
            payload = reader.take(reader.uvarint())
            entries.append(Put(rid, keys, payload))
        elif op == _OP_DELETE:
            entries.append(Delete(rid))
        else:
            raise DatabaseCorruptionError(
                f"unknown log operation {op} at {where}", where=where, reason="unknown operation"
            )
    reader.expect_end()
    return LogBlock(commit, part, parts, tuple(entries)), width


def file_name(kind: str, commit: int, number: int) -> str:
    """The name of attachment `number` of a `kind` blob written by commit `commit`: readers
    learn both from the name alone, without downloading the file."""
    return f"{kind}-{commit}-{number}{FILE_SUFFIX}"


def parse_file_name(name: str) -> tuple[str, int, int] | None:
    """(kind, commit, number) of one of our attachment names; None for anything else."""
    if not name.endswith(FILE_SUFFIX):
        return None
    parts = name.removesuffix(FILE_SUFFIX).split("-")
    if len(parts) != 3 or not parts[0] or not (parts[1].isdigit() and parts[2].isdigit()):
        return None
    return parts[0], int(parts[1]), int(parts[2])


def plan_blob(kind: str, blob: bytes, *, commit: int, inline: bool = True) -> MessagePlan:
    """How one sealed blob goes into a message: content when it fits, else attachment files."""
    if len(blob) > MAX_BLOB_BYTES:
        raise RecordTooLargeError(
            f"a {kind} blob of {len(blob)} bytes does not fit in one Discord message "
            f"({MAX_BLOB_BYTES} bytes)",
            size=len(blob),
            limit=MAX_BLOB_BYTES,
        )
    if inline and armored_length(len(blob)) <= CONTENT_LIMIT:
        return MessagePlan(armor(blob), ())
    files = tuple(
        (file_name(kind, commit, n), blob[start : start + ATTACHMENT_LIMIT])
        for n, start in enumerate(range(0, len(blob), ATTACHMENT_LIMIT))
    )
    return MessagePlan(None, files)


def plan_commit(
    entries: Sequence[Entry], *, commit: int, width: int
) -> list[tuple[LogBlock, MessagePlan]]:
    """Cut one commit into as few messages as Discord's limits allow: each part's block and
    the message that carries it.

    Refuses, before anything is written, an entry that cannot fit in one message.
    """
    encoded = [_encode_entry(entry, width) for entry in entries]
    for entry, item in zip(entries, encoded, strict=True):
        if len(item) > MAX_RECORD_BYTES:
            raise RecordTooLargeError(
                f"record {entry.rid} encodes to {len(item)} bytes; one record can be at most "
                f"{MAX_RECORD_BYTES} bytes (10 attachments of 10 MiB, 25 MiB per request)",
                size=len(item),
                limit=MAX_RECORD_BYTES,
            )
    groups: list[list[int]] = [[]]
    size = 0
    for position, item in enumerate(encoded):
        if groups[-1] and size + len(item) > MAX_RECORD_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(position)
        size += len(item)
    parts = len(groups)
    planned: list[tuple[LogBlock, MessagePlan]] = []
    for part, group in enumerate(groups):
        block = LogBlock(commit, part, parts, tuple(entries[i] for i in group))
        blob = _encode_parts(commit, part, parts, width, [encoded[i] for i in group])
        planned.append((block, plan_blob("log", blob, commit=commit)))
    return planned


def is_discobase_message(content: str, file_names: Iterable[str]) -> bool:
    """Whether a message looks like one of ours (anything else in a channel is foreign)."""
    names = list(file_names)
    if names:
        return all(parse_file_name(name) is not None for name in names)
    return content.startswith(ARMOR_PREFIX)


def read_blob(content: str, files: Sequence[tuple[str, bytes]], *, where: str) -> bytes:
    """The sealed blob a message holds (its content, or its files joined in name order)."""
    if not files:
        return dearmor(content, where=where)

    def order(item: tuple[str, bytes]) -> int:
        parsed = parse_file_name(item[0])
        if parsed is None:
            raise DatabaseCorruptionError(
                f"unexpected attachment {item[0]!r} at {where}",
                where=where,
                reason="bad attachment name",
            )
        return parsed[2]

    ordered = sorted(files, key=order)
    if [order(item) for item in ordered] != list(range(len(ordered))):
        raise DatabaseCorruptionError(
            f"attachments at {where} are not a complete sequence", where=where, reason="missing"
        )
    return b"".join(data for _, data in ordered)
