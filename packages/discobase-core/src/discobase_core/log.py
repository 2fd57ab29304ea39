"""The table log: what one Discord message of a table channel holds, and how a commit is cut
into messages.

A table channel is append-only. Every message the bot writes there holds one of three
layouts, told apart by its attachment names alone:

- **inline**: one sealed blob (see `codec.seal`) armored into the message content, when it
  fits in 2,000 characters;
- **split blob** (``<kind>-<commit>-<n>.dscb``): one sealed blob cut into attachment files of
  at most 10 MiB whose concatenation in name order is the blob. Checkpoints and pages are
  written this way, and so were every large log message before chunked messages existed (a
  log record too big for one chunk attachment, over 10 MiB, still is);
- **chunked log message** (``logc-<commit>-<first>.dscb``): up to 10 attachments, each one
  sealed ``logc`` blob on its own, a *chunk* holding entries ``first ..`` of the message (about
  `CHUNK_BYTES` of entries each; a bigger entry gets a chunk of its own). Every chunk repeats
  the commit, part, part count, key width and the message's total entry count, so a reader
  that wants one entry downloads only the attachment whose name covers it, and a damaged
  attachment costs only its own entries.

Kinds of blob:

- ``log``: a block of log entries (puts and deletes of records), part `part` of `parts` of
  commit `commit`. A commit too big for one message spans several consecutive messages; a
  reader applies a commit only when all its parts are present, so a crash halfway through a
  commit leaves nothing half-applied. A message is sent in one request, so its attachments
  land together or not at all: the part stays the unit of a commit.
- ``logc``: one chunk of a log message's block (see above).
- ``ckpt`` / ``pages``: a checkpoint of the table state (see `state.py`).

Records never move: a record lives at (message id, entry number) until a newer put or a
delete of its id supersedes it. Entry numbers count across the whole message, whatever its
layout.
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
    "CHUNK_BYTES",
    "CHUNK_KIND",
    "FILE_SUFFIX",
    "MAX_BLOB_BYTES",
    "MAX_RECORD_BYTES",
    "Delete",
    "Entry",
    "LogBlock",
    "LogChunk",
    "MessagePlan",
    "Put",
    "assemble_chunks",
    "chunk_files",
    "chunk_for_entry",
    "decode_block",
    "decode_chunk",
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

# Entries per chunk attachment: a cold lookup downloads one chunk, so this bounds its cost
# (the bar is 128 KiB per lookup, with the message's own JSON on top); ten chunks fill a
# message with 1.1 MiB, so a 2 MiB commit (engine.BATCH_BYTES) takes two sends.
CHUNK_BYTES = 112 * 1024
CHUNK_KIND = "logc"
# A chunk of one entry must still be one attachment; bigger entries use a split blob.
_MAX_CHUNK_ENTRY = ATTACHMENT_LIMIT - 4096
# A chunk's framing: seal (22 bytes at most) and seven uvarints of 10 bytes at most.
_CHUNK_OVERHEAD = 22 + 70

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
class LogChunk:
    """Entries `first` .. `first + len(entries)` of a log message holding `total` entries,
    part `part` of `parts` of commit `commit`: one attachment of a chunked message."""

    commit: int
    part: int
    parts: int
    first: int
    total: int
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
    _check_parts(part, parts, where)
    entries = _read_entries(reader, width, where)
    return LogBlock(commit, part, parts, entries), width


def _check_parts(part: int, parts: int, where: str) -> None:
    if parts == 0 or part >= parts:
        raise DatabaseCorruptionError(
            f"log block at {where} says it is part {part} of {parts}",
            where=where,
            reason="bad part numbers",
        )


def _encode_chunk(
    commit: int, part: int, parts: int, width: int, first: int, total: int, encoded: Sequence[bytes]
) -> bytes:
    out = bytearray()
    for number in (commit, part, parts, width, first, total, len(encoded)):
        write_uvarint(out, number)
    for item in encoded:
        out += item
    return seal(CHUNK_KIND, bytes(out))


def decode_chunk(blob: bytes, *, where: str) -> tuple[LogChunk, int]:
    """Decode one chunk attachment into its chunk and key width; corruption names `where`."""
    _, body = unseal(blob, where=where, kind=CHUNK_KIND)
    reader = Reader(body, where=where)
    commit, part, parts, width, first, total = (reader.uvarint() for _ in range(6))
    _check_parts(part, parts, where)
    entries = _read_entries(reader, width, where)
    if first + len(entries) > total:
        raise DatabaseCorruptionError(
            f"log chunk at {where} holds entries {first}..{first + len(entries) - 1} of a "
            f"message of {total}",
            where=where,
            reason="bad chunk bounds",
        )
    return LogChunk(commit, part, parts, first, total, entries), width


def assemble_chunks(chunks: Sequence[LogChunk], *, where: str) -> LogBlock:
    """The block of a chunked message from all its chunks (in any order); refuses chunks
    that disagree, overlap or leave entries out."""
    ordered = sorted(chunks, key=lambda c: c.first)
    if not ordered:
        raise DatabaseCorruptionError(f"no log chunks at {where}", where=where, reason="missing")
    head = ordered[0]
    entries: list[Entry] = []
    for chunk in ordered:
        same = (chunk.commit, chunk.part, chunk.parts, chunk.total)
        if same != (head.commit, head.part, head.parts, head.total):
            raise DatabaseCorruptionError(
                f"the log chunks at {where} disagree about their commit",
                where=where,
                reason="mixed chunks",
            )
        if chunk.first != len(entries):
            raise DatabaseCorruptionError(
                f"the log chunks at {where} are not a complete sequence",
                where=where,
                reason="missing",
            )
        entries += chunk.entries
    if len(entries) != head.total:
        raise DatabaseCorruptionError(
            f"the log chunks at {where} hold {len(entries)} of {head.total} entries",
            where=where,
            reason="missing",
        )
    return LogBlock(head.commit, head.part, head.parts, tuple(entries))


def _read_entries(reader: Reader, width: int, where: str) -> tuple[Entry, ...]:
    count = reader.count(min_item_bytes=2)  # an operation byte and a record id at least
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
    return tuple(entries)


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
    entries: Sequence[Entry], *, commit: int, width: int, chunk_bytes: int = CHUNK_BYTES
) -> list[tuple[LogBlock, MessagePlan]]:
    """Cut one commit into as few messages as Discord's limits allow: each part's block and
    the message that carries it.

    A part whose block fits in message content goes inline. Any other is a chunked message:
    its entries cut into chunks of about `CHUNK_BYTES` (an entry bigger than that gets a chunk
    of its own), up to 10 chunk attachments and 24 MiB per message. An entry too big for one
    attachment (over 10 MiB) gets a message of its own, a split blob as before chunks.

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
    # Chunks (runs of entry positions), then messages (runs of chunks); None: a split blob.
    chunks: list[list[int]] = []
    size = 0
    for position, item in enumerate(encoded):
        if len(item) > _MAX_CHUNK_ENTRY:
            chunks.append([position])
            chunks.append([])  # nothing joins an entry that needs a message of its own
            size = 0
            continue
        if not chunks or (chunks[-1] and size + len(item) > chunk_bytes):
            chunks.append([])
            size = 0
        chunks[-1].append(position)
        size += len(item)
    chunks = [chunk for chunk in chunks if chunk] or [[]]
    messages: list[tuple[list[list[int]], bool]] = []  # (chunks, split blob)
    size = 0
    for chunk in chunks:
        weight = sum(len(encoded[i]) for i in chunk) + _CHUNK_OVERHEAD
        split = len(chunk) == 1 and len(encoded[chunk[0]]) > _MAX_CHUNK_ENTRY
        last = messages[-1] if messages else None
        if (
            last is None
            or split
            or last[1]
            or len(last[0]) >= ATTACHMENTS_PER_MESSAGE
            or size + weight > MAX_BLOB_BYTES
        ):
            messages.append(([], split))
            size = 0
        messages[-1][0].append(chunk)
        size += weight
    parts = len(messages)
    planned: list[tuple[LogBlock, MessagePlan]] = []
    for part, (groups, split) in enumerate(messages):
        positions = [i for chunk in groups for i in chunk]
        block = LogBlock(commit, part, parts, tuple(entries[i] for i in positions))
        blob = _encode_parts(commit, part, parts, width, [encoded[i] for i in positions])
        if split or armored_length(len(blob)) <= CONTENT_LIMIT:
            planned.append((block, plan_blob("log", blob, commit=commit)))
            continue
        files: list[tuple[str, bytes]] = []
        first = 0
        for chunk in groups:
            data = _encode_chunk(
                commit, part, parts, width, first, len(positions), [encoded[i] for i in chunk]
            )
            files.append((file_name(CHUNK_KIND, commit, first), data))
            first += len(chunk)
        planned.append((block, MessagePlan(None, tuple(files))))
    return planned


def chunk_files(file_names: Sequence[str]) -> list[tuple[int, str]] | None:
    """(first entry, name) of each chunk attachment of a chunked log message, by first
    entry; None for a message of another layout."""
    chunks: list[tuple[int, str]] = []
    for name in file_names:
        parsed = parse_file_name(name)
        if parsed is None or parsed[0] != CHUNK_KIND:
            return None
        chunks.append((parsed[2], name))
    return sorted(chunks) or None


def chunk_for_entry(file_names: Sequence[str], entry: int) -> str | None:
    """The attachment of a chunked log message that holds entry `entry` (the last chunk
    starting at or before it), from the names alone; None if the message is not chunked."""
    chunks = chunk_files(file_names)
    if chunks is None:
        return None
    found: str | None = None
    for first, name in chunks:
        if first > entry:
            break
        found = name
    return found


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
