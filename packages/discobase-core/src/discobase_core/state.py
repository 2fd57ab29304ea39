"""The in-memory state of one table, and its checkpoints: a sans-IO state machine.

The state is everything derived from the table's log: a directory (record id -> where its
latest version lives and its index keys) and one `HashIndex` per field (key -> record ids).
The adapter feeds it log blocks as they are written (live) or read back (replay), asks it
which records can match a query, and persists it as checkpoints so that opening a table reads
directory pages, not records.

Only the directory is persisted: the indexes are built from its keys when a checkpoint is
loaded (about as fast as parsing index pages was, for half the bytes), so a checkpoint writes
only the directory pages (2,048 record ids each) that were touched, not the hash pages that
every insert of a random key dirties. The manifest names, for every page, the message that
holds its latest version. When a checkpoint would leave pages spread over more than
`MAX_REF_MESSAGES` messages, it rewrites every page, so opening a table never fetches more
than a handful of messages.

Index keys are kept to their low `KEY_BITS` (48) bits, six bytes a key in a directory page
instead of eight: at a million records a key collision is still a few in a billion per
lookup, and a lookup compares the values of the records it reads anyway.

A checkpoint is a snapshot taken when it is planned: its pages and manifest describe the
commits applied by then, and its manifest's `replay_from` names the first commit it does not
cover (commits still in flight on other lanes when it was planned). Opening replays every
lane from there, so writes go on while a checkpoint is being written.
"""

from __future__ import annotations

import json
import struct
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import cast

from pydantic import BaseModel, ConfigDict, ValidationError

from discobase_core._varint import Reader, decode_uvarint, write_uvarint
from discobase_core.codec import seal, unseal
from discobase_core.errors import DatabaseCorruptionError
from discobase_core.index import VALUE_LIMIT, HashIndex
from discobase_core.lease import Fence, is_fenced
from discobase_core.log import MAX_BLOB_BYTES, Delete, Entry, LogBlock, Put
from discobase_core.schema import TableSchema

__all__ = [
    "DIRECTORY_SPAN",
    "KEY_BITS",
    "KEY_MASK",
    "MANIFEST_FORMAT",
    "MAX_REF_MESSAGES",
    "CheckpointPlan",
    "DirEntry",
    "Location",
    "Manifest",
    "TableState",
    "read_checkpoint",
    "read_pages",
]

DIRECTORY_SPAN = 2048
MANIFEST_FORMAT = 3  # see Manifest.format
#: The state keeps the low 48 bits of every index key (see `TableState`).
KEY_BITS = 48
KEY_MASK = (1 << KEY_BITS) - 1
_KEY_BYTES = KEY_BITS // 8
MAX_REF_MESSAGES = 8
SELF = 0  # in a manifest, "the checkpoint message itself"
# What one checkpoint message's sealed blob may hold beside its framing and page count.
_PACK_BUDGET = MAX_BLOB_BYTES - 1024
# A checkpoint rewrites every page when the messages holding the pages it keeps hold more
# than twice their bytes and this much more (the rest superseded): stored checkpoints stay
# within about twice the latest one.
_REWRITE_SLACK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Location:
    """Where a record version lives: the log message id, the entry number in its block, and
    the lane (0: the table channel, n: its n-th lane thread) that holds the message."""

    message_id: int
    entry: int
    lane: int = 0


@dataclass(frozen=True, slots=True)
class DirEntry:
    """One record's directory entry, as `TableState.directory` hands it out (built on
    demand: the state itself keeps entries in compact arrays, see `_DirPage`)."""

    location: Location
    keys: tuple[int, ...]


_SPAN_BITS = 11
assert DIRECTORY_SPAN == 1 << _SPAN_BITS
_SPAN_MASK = DIRECTORY_SPAN - 1
_NO_ROW = 0xFFFF  # in `_DirPage.row_of`: no record at this offset
_ODD_LANE = 0xFF  # in `_DirPage.lanes`: the location is in `_DirPage.odd`
_BIG_RID = 0xFFFF_FFFF - 2  # record ids from here on take the slow path (HashIndex._big)


class _DirPage:
    """The directory entries of `DIRECTORY_SPAN` consecutive record ids, as parallel arrays
    with one row per live record (rows in no particular order; a delete moves the last row
    into the hole). About 16 + 8 * width bytes per record, against ~600 for a dict of
    frozen dataclasses, and a page costs only what its records need, however sparse.

    A location whose numbers do not fit the arrays (entry >= 2**32, lane >= 255, message id
    >= 2**64: never written by discobase, but a log may say so) is kept whole in `odd`.
    """

    __slots__ = ("entries", "keys", "lanes", "mids", "odd", "offsets", "row_of", "width")

    def __init__(self, width: int) -> None:
        self.width = width
        self.row_of = array("H", [_NO_ROW]) * DIRECTORY_SPAN  # offset -> row
        self.offsets = array("H")  # row -> offset
        self.mids = array("Q")
        self.entries = array("I")
        self.lanes = array("B")
        self.keys = array("Q")  # `width` keys per row
        self.odd: dict[int, Location] = {}  # offset -> location

    def location(self, row: int) -> Location:
        lane = self.lanes[row]
        if lane == _ODD_LANE:
            return self.odd[self.offsets[row]]
        return Location(self.mids[row], self.entries[row], lane)

    def set_location(self, row: int, message_id: int, entry: int, lane: int) -> None:
        offset = self.offsets[row]
        if message_id >> 64 or entry >> 32 or not 0 <= lane < _ODD_LANE:
            self.odd[offset] = Location(message_id, entry, lane)
            message_id = entry = 0
            lane = _ODD_LANE
        elif self.odd:
            self.odd.pop(offset, None)
        self.mids[row] = message_id
        self.entries[row] = entry
        self.lanes[row] = lane

    def append(self, offset: int, keys: array[int]) -> int:
        """A new row for `offset` (its location is set by the caller)."""
        row = len(self.offsets)
        self.offsets.append(offset)
        self.row_of[offset] = row
        self.mids.append(0)
        self.entries.append(0)
        self.lanes.append(0)
        self.keys.extend(keys)
        return row

    def drop(self, row: int) -> None:
        """Remove `row`, moving the last row into its place."""
        offset = self.offsets[row]
        last = len(self.offsets) - 1
        width = self.width
        if row != last:
            moved = self.offsets[last]
            self.offsets[row] = moved
            self.row_of[moved] = row
            self.mids[row] = self.mids[last]
            self.entries[row] = self.entries[last]
            self.lanes[row] = self.lanes[last]
            self.keys[row * width : row * width + width] = self.keys[last * width :]
        del self.offsets[last], self.mids[last], self.entries[last], self.lanes[last]
        del self.keys[last * width :]
        self.row_of[offset] = _NO_ROW
        if self.odd:
            self.odd.pop(offset, None)

    def widen(self, default_key: int) -> None:
        """Every row gets one more key, `default_key`."""
        width = self.width
        keys = array("Q")
        for row in range(len(self.offsets)):
            keys.extend(self.keys[row * width : row * width + width])
            keys.append(default_key)
        self.keys = keys
        self.width = width + 1


class _DirectoryView(Mapping[int, DirEntry]):
    """Read-only `rid -> DirEntry` view of a state's directory, oldest record first."""

    def __init__(self, state: TableState) -> None:
        self._state = state

    def __getitem__(self, rid: int) -> DirEntry:
        found = self._state._row(rid)
        if found is None:
            raise KeyError(rid)
        page, row = found
        keys = tuple(page.keys[row * page.width : (row + 1) * page.width])
        return DirEntry(page.location(row), keys)

    def __iter__(self) -> Iterator[int]:
        return iter(self._state.rids())

    def __len__(self) -> int:
        return len(self._state)

    def __contains__(self, rid: object) -> bool:
        return rid in self._state


class Manifest(BaseModel):
    """What a checkpoint says about the table (stored as JSON inside the sealed blob)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    #: 1: replay from `next_commit`; 2: from `replay_from` (commits in flight, pipelined);
    #: 3: no index pages (the indexes are built from the directory's keys at open), and
    #: compact directory pages (kind `dirc`: 48-bit keys, locations as deltas)
    format: int = MANIFEST_FORMAT
    table_schema: TableSchema
    fields: tuple[str, ...]
    next_rid: int
    next_commit: int
    records: int
    index_pages: dict[str, int] = {}  # formats 1 and 2 only: never read since format 3
    directory_pages: tuple[int, ...]
    refs: dict[str, int]
    lanes: tuple[int, ...] = ()
    #: (commits_from, cutoff_ms) of every writer term known, cutoff -1 while it holds the lease
    fences: tuple[tuple[int, int], ...] = ()
    #: the first commit this checkpoint does not cover (None: `next_commit`, as format 1 wrote)
    replay_from: int | None = None
    #: log messages holding dead entries, for compaction (None: not tracked, format 1)
    dirty_messages: tuple[int, ...] | None = None

    @property
    def page_messages(self) -> set[int]:
        """The messages holding the directory pages this checkpoint needs (`SELF` for its
        own): opening fetches only these, never the index pages of formats 1 and 2."""
        return {mid for key, mid in self.refs.items() if key.startswith("d:")}

    @property
    def floor(self) -> int:
        """Replay every lane's log from this commit on."""
        return self.next_commit if self.replay_from is None else self.replay_from


@dataclass
class CheckpointPlan:
    """A checkpoint to write: `page_blobs` first (one message each), then `final_blob`.

    Call `final_blob(ids)` with the message ids the page blobs got, send it, then hand the
    plan and the final message id to `TableState.finish_checkpoint`.
    """

    state: TableState
    packs: list[dict[str, bytes]]
    written: frozenset[str]
    snapshot: Manifest  # the table when planned (refs are filled in by `final_blob`)
    kept_refs: dict[str, int]  # pages this checkpoint does not rewrite: where they are

    @property
    def page_blobs(self) -> list[bytes]:
        return [seal("pages", _encode_pack(pack)) for pack in self.packs[:-1]]

    @property
    def size(self) -> int:
        """Bytes of the pages this checkpoint writes."""
        return sum(len(data) for pack in self.packs for data in pack.values())

    def refs(self, page_message_ids: Sequence[int]) -> dict[str, int]:
        refs = dict(self.kept_refs)
        for pack, mid in zip(self.packs[:-1], page_message_ids, strict=True):
            refs.update(dict.fromkeys(pack, mid))
        refs.update(dict.fromkeys(self.packs[-1], SELF))
        return refs

    def final_blob(self, page_message_ids: Sequence[int]) -> bytes:
        manifest = self.snapshot.model_copy(update={"refs": self.refs(page_message_ids)})
        body = bytearray()
        raw = manifest.model_dump_json(by_alias=True).encode()
        write_uvarint(body, len(raw))
        body += raw
        body += _encode_pack(self.packs[-1])
        return seal("ckpt", bytes(body))


def _encode_pack(pages: Mapping[str, bytes]) -> bytes:
    """uvarint count, then (uvarint length + UTF-8 page key, uvarint length + page) pairs.

    Page keys hold field names, which may be any text (``i:имя:0``): UTF-8 both ways.
    """
    out = bytearray()
    write_uvarint(out, len(pages))
    for key, data in pages.items():
        raw = key.encode("utf-8")
        write_uvarint(out, len(raw))
        out += raw
        write_uvarint(out, len(data))
        out += data
    return bytes(out)


def _decode_pack(reader: Reader) -> dict[str, memoryview]:
    """Inverse of :func:`_encode_pack`; bad UTF-8, a repeated key or a count the bytes cannot
    hold is corruption. Pages are views of the blob: a million records' checkpoint is
    tens of MB, parsed page by page, never copied whole."""
    pages: dict[str, memoryview] = {}
    count = reader.count(min_item_bytes=2)
    for _ in range(count):
        key = reader.text()
        if key in pages:
            raise DatabaseCorruptionError(
                f"{reader.where}: page {key} is stored twice",
                where=reader.where,
                reason="duplicate page",
            )
        pages[key] = reader.view(reader.uvarint())
    return pages


def read_pages(blob: bytes, *, where: str) -> dict[str, memoryview]:
    """The pages a `pages` blob holds."""
    _, body = unseal(blob, where=where, kind="pages")
    reader = Reader(body, where=where)
    pages = _decode_pack(reader)
    reader.expect_end()
    return pages


def read_checkpoint(blob: bytes, *, where: str) -> tuple[Manifest, dict[str, memoryview]]:
    """The manifest a `ckpt` blob holds, and the pages stored beside it."""
    _, body = unseal(blob, where=where, kind="ckpt")
    reader = Reader(body, where=where)
    raw = reader.take(reader.uvarint())
    try:
        manifest = Manifest.model_validate_json(raw)
    except ValidationError as exc:
        raise DatabaseCorruptionError(
            f"unreadable checkpoint manifest at {where}: {exc.error_count()} errors",
            where=where,
            reason="bad manifest",
        ) from None
    if manifest.format > MANIFEST_FORMAT:
        raise DatabaseCorruptionError(
            f"the checkpoint at {where} is in format {manifest.format}, newer than this "
            f"discobase reads ({MANIFEST_FORMAT}); upgrade discobase to open this table",
            where=where,
            reason="newer format",
        )
    pages = _decode_pack(reader)
    reader.expect_end()
    return manifest, pages


def _packed_size(key: str, data: bytes) -> int:
    """Bytes a page takes in a pack: its key and data with their uvarint lengths."""
    raw = len(key.encode("utf-8"))
    return raw + len(data) + _uvarint_size(raw) + _uvarint_size(len(data))


def _uvarint_size(n: int) -> int:
    return max(1, (n.bit_length() + 6) // 7)


def _manifest_size(snapshot: Manifest, page_keys: Iterable[str]) -> int:
    """An upper bound on the manifest's bytes in the final blob once `refs` names every page
    (at a million records that is thousands of pages: hundreds of KiB)."""
    ref_bytes = sum(len(json.dumps(key)) + 24 for key in page_keys)  # "key": <id>,
    return len(snapshot.model_dump_json(by_alias=True)) + ref_bytes + 10


def _read_dirp(reader: Reader, width: int) -> _DirPage:
    """The rows of a `dirp` page (formats 1 and 2) after its width: uvarint count, then per
    record uvarint offset, message id, entry and lane, and `width` 64-bit keys (kept to their
    low `KEY_BITS`). Bytes are parsed in place, without a Reader call per number: this loop
    ran once per record at every open."""
    unpack_keys = struct.Struct(f">{width}Q").unpack_from
    rows = _DirPage(width)
    count = reader.count(min_item_bytes=4 + 8 * width)  # four uvarints and the keys
    data, pos = reader.data, reader.pos
    last_mid, last_raw = -1, b""  # the previous entry's message id, and its bytes
    for _ in range(count):
        offset = data[pos]
        if offset < 0x80:
            pos += 1
        elif 0 < data[pos + 1] < 0x80:  # two bytes (offsets up to 2,047)
            offset = (offset & 0x7F) | data[pos + 1] << 7
            pos += 2
        else:
            offset, pos = decode_uvarint(data, pos)
        if offset >= DIRECTORY_SPAN:
            raise _offset_error(reader.where, offset)
        # Records of one message are neighbours: a varint is prefix-free, so the
        # same bytes as the previous id are the same id (no decoding needed).
        if last_raw and data[pos : pos + len(last_raw)] == last_raw:
            message_id = last_mid
            pos += len(last_raw)
        else:
            message_id, after = decode_uvarint(data, pos)
            last_mid, last_raw = message_id, bytes(data[pos:after])
            pos = after
        entry = data[pos]
        if entry < 0x80:
            pos += 1
        elif 0 < data[pos + 1] < 0x80:  # two bytes (entries up to 16,383)
            entry = (entry & 0x7F) | data[pos + 1] << 7
            pos += 2
        else:
            entry, pos = decode_uvarint(data, pos)
        lane = data[pos]
        if lane < 0x80:
            pos += 1
        else:
            lane, pos = decode_uvarint(data, pos)
        keys = [key & KEY_MASK for key in unpack_keys(data, pos)]
        pos += 8 * width
        row = rows.row_of[offset]
        if row != _NO_ROW:  # a repeated offset: the later entry wins, as ever
            rows.keys[row * width : row * width + width] = array("Q", keys)
        elif message_id >> 64 or entry >> 32 or lane >= _ODD_LANE:
            row = rows.append(offset, array("Q", keys))
        else:  # the common case, inlined
            rows.row_of[offset] = len(rows.offsets)
            rows.offsets.append(offset)
            rows.mids.append(message_id)
            rows.entries.append(entry)
            rows.lanes.append(lane)
            rows.keys.extend(keys)
            continue
        rows.set_location(row, message_id, entry, lane)
    reader.pos = pos
    return rows


def _read_dirc(reader: Reader, width: int) -> _DirPage:
    """The rows of a `dirc` page after its width (see `TableState._encode_directory_page`)."""
    rows = _DirPage(width)
    count = reader.count(min_item_bytes=3 + _KEY_BYTES * width)
    data, pos = reader.data, reader.pos
    offsets, mids, entries, lanes, row_of = (
        rows.offsets,
        rows.mids,
        rows.entries,
        rows.lanes,
        rows.row_of,
    )
    odd: list[tuple[int, int, int, int]] = []  # (row, message id, entry, lane) too big
    offset, mid, lane, entry = -1, -1, 0, -1
    for row in range(count):
        gap = data[pos]
        if gap < 0x80:
            pos += 1
        else:
            gap, pos = decode_uvarint(data, pos)
        offset += gap + 1
        if offset >= DIRECTORY_SPAN:
            raise _offset_error(reader.where, offset)
        marker = data[pos]
        if marker == 0:  # the previous record's message
            if mid < 0:
                raise ValueError("the first record names no message")
            pos += 1
            zigzag = data[pos]
            if zigzag < 0x80:
                pos += 1
            else:
                zigzag, pos = decode_uvarint(data, pos)
            entry += (zigzag >> 1 if not zigzag & 1 else -((zigzag + 1) >> 1)) + 1
            if entry < 0:
                raise ValueError(f"a negative entry number {entry}")
        else:
            marker, pos = decode_uvarint(data, pos)
            mid = marker - 1
            lane, pos = decode_uvarint(data, pos)
            entry, pos = decode_uvarint(data, pos)
        row_of[offset] = row
        offsets.append(offset)
        if mid >> 64 or entry >> 32 or lane >= _ODD_LANE:
            odd.append((row, mid, entry, lane))
            mids.append(0)
            entries.append(0)
            lanes.append(0)
        else:
            mids.append(mid)
            entries.append(entry)
            lanes.append(lane)
    rows.keys = _unpack_keys(data[pos : pos + count * width * _KEY_BYTES], count * width)
    reader.pos = pos + count * width * _KEY_BYTES
    for row, mid, entry, lane in odd:
        rows.set_location(row, mid, entry, lane)
    return rows


def _pack_keys(keys: array[int]) -> bytes:
    """Keys (below 2**48) as six-byte big-endian numbers, back to back."""
    wide = array("Q", keys)
    if sys.byteorder == "little":
        wide.byteswap()
    raw = wide.tobytes()
    packed = bytearray(len(keys) * _KEY_BYTES)
    for byte in range(_KEY_BYTES):  # the low six of each eight bytes, one slice at a time
        packed[byte::_KEY_BYTES] = raw[8 - _KEY_BYTES + byte :: 8]
    return bytes(packed)


def _unpack_keys(packed: bytes | memoryview, count: int) -> array[int]:
    """Inverse of `_pack_keys` for `count` keys."""
    if len(packed) != count * _KEY_BYTES:
        raise ValueError(f"{len(packed)} bytes of keys for {count} keys")
    raw = bytearray(count * 8)
    for byte in range(_KEY_BYTES):
        raw[8 - _KEY_BYTES + byte :: 8] = packed[byte::_KEY_BYTES]
    keys = array("Q", bytes(raw))
    if sys.byteorder == "little":
        keys.byteswap()
    return keys


def _offset_error(where: str, offset: int) -> DatabaseCorruptionError:
    return DatabaseCorruptionError(
        f"{where} holds record offset {offset}, beyond its {DIRECTORY_SPAN} records",
        where=where,
        reason="record offset",
    )


def _directory_key(page: int) -> str:
    return f"d:{page}"


@dataclass
class TableState:
    """Directory and indexes of one table; see the module docstring."""

    table_schema: TableSchema
    fields: tuple[str, ...]
    # The directory: page number (rid // DIRECTORY_SPAN) -> its live records (`_DirPage`).
    # Never reassigned: the indexes' key_of closures hold it.
    _pages: dict[int, _DirPage] = field(default_factory=dict, repr=False)
    _count: int = field(default=0, repr=False)  # records in the directory
    indexes: dict[str, HashIndex] = field(default_factory=dict)
    next_rid: int = 1
    next_commit: int = 1
    refs: dict[str, int] = field(default_factory=dict)
    lanes: tuple[int, ...] = ()  # channel ids of the lane threads (lane n is lanes[n - 1])
    fences: list[Fence] = field(default_factory=list)  # see discobase_core.lease
    _dirty_directory: set[int] = field(default_factory=set)
    #: the commit the loaded checkpoint's replay starts from (0: no checkpoint, replay all)
    replay_floor: int = 0
    #: log messages holding a dead entry (an overwritten or deleted record, a delete);
    #: None when unknown (a checkpoint written before discobase tracked them)
    dirty_messages: set[int] | None = field(default_factory=set)
    _force_full: bool = False  # a planned checkpoint failed: rewrite every page next time
    # Bytes of each stored page version the refs name, and of all the pages each checkpoint
    # message holds: a message whose pages were mostly superseded still counts whole.
    _page_bytes: dict[str, int] = field(default_factory=dict, repr=False)
    _message_bytes: dict[int, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for position, name in enumerate(self.fields):
            self.indexes.setdefault(name, self._new_index(position))

    def _new_index(self, position: int) -> HashIndex:
        return HashIndex(key_of=self._key_getter(position), all_pairs=self._pairs_getter(position))

    def _pairs_getter(self, position: int) -> Callable[[], tuple[int, Iterable[tuple[int, int]]]]:
        """`all_pairs` for the index of field `position`: (key, record id) of every record,
        read from the directory's arrays in bulk (index resizes use it)."""
        pages = self._pages

        def pairs() -> Iterator[tuple[int, int]]:
            return chain.from_iterable(
                zip(
                    page.keys[position :: page.width],
                    map((number << _SPAN_BITS).__add__, page.offsets),
                    strict=True,
                )
                for number, page in pages.items()
            )

        return lambda: (self._count, pairs())

    def _key_getter(self, position: int) -> Callable[[int], int | None]:
        """`key_of` for the index of field `position`: its key of a record, read from the
        directory, so index slots need not store keys (see `HashIndex`)."""
        pages = self._pages

        def key_of(rid: int) -> int | None:
            page = pages.get(rid >> _SPAN_BITS)
            if page is None:
                return None
            row = page.row_of[rid & _SPAN_MASK]
            if row == _NO_ROW:
                return None
            return page.keys[row * page.width + position]

        return key_of

    def _row(self, rid: int) -> tuple[_DirPage, int] | None:
        page = self._pages.get(rid >> _SPAN_BITS)
        if page is None:
            return None
        row = page.row_of[rid & _SPAN_MASK]
        return None if row == _NO_ROW else (page, row)

    @property
    def directory(self) -> Mapping[int, DirEntry]:
        """Record id -> `DirEntry`, read-only (entries are built on demand)."""
        return _DirectoryView(self)

    # -- identity --------------------------------------------------------------------------

    def allocate_rid(self) -> int:
        rid = self.next_rid
        self.next_rid += 1
        return rid

    def allocate_commit(self) -> int:
        commit = self.next_commit
        self.next_commit += 1
        return commit

    # -- reads -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._count

    def __contains__(self, rid: object) -> bool:
        return isinstance(rid, int) and self._row(rid) is not None

    def location(self, rid: int) -> Location | None:
        found = self._row(rid)
        return None if found is None else found[0].location(found[1])

    def rids(self) -> list[int]:
        """Every live record id, oldest first."""
        found: list[int] = []
        for number in sorted(self._pages):
            start = number << _SPAN_BITS
            found.extend(start + offset for offset in sorted(self._pages[number].offsets))
        return found

    def candidates(self, keys: Mapping[str, int]) -> list[int]:
        """Record ids whose index keys match every (field, key) given, oldest first.

        Keys are hashes (their low `KEY_BITS` bits count), so a caller that needs exact
        answers compares the values of the records it reads back (a hash collision is
        possible, just very unlikely).
        """
        if not keys:
            return self.rids()
        postings = sorted(
            (self.indexes[name].lookup(key & KEY_MASK) for name, key in keys.items()), key=len
        )
        found = set(postings[0])
        for other in postings[1:]:
            if not found:
                break
            found.intersection_update(other)
        return sorted(found)

    def reindex(self, name: str, key: int, rid: int) -> bool:
        """Give record `rid` the pair (`key`, `rid`) in the index of `name` again (the
        catalog's repair of an index that lost it); False if it was there. The indexes are
        rebuilt from the directory at every open, so this mends the open state only."""
        return self.indexes[name].insert(key & KEY_MASK, rid)

    # -- writes ----------------------------------------------------------------------------

    def _put(
        self,
        rid: int,
        keys: tuple[int, ...],
        location: tuple[int, int, int],
        indexes: Sequence[HashIndex],
    ) -> None:
        """Store the record's location and keys; move its index entries if keys changed.

        The directory is written before a new key is indexed and after an old one is
        unindexed: an index derives a slot's key from the directory (see `HashIndex`).
        """
        if not 0 <= rid < VALUE_LIMIT:
            raise ValueError(f"record id must be a non-negative int below 2**128, got {rid}")
        try:
            packed = array("Q", keys)
        except OverflowError:
            raise ValueError(f"index keys must be unsigned 64-bit ints, got {keys}") from None
        packed = array("Q", [key & KEY_MASK for key in packed])
        number = rid >> _SPAN_BITS
        page = self._pages.get(number)
        if page is None:
            page = self._pages[number] = _DirPage(len(self.fields))
        offset = rid & _SPAN_MASK
        row = page.row_of[offset]
        message_id, entry, lane = location
        if row == _NO_ROW:
            row = len(page.offsets)
            page.offsets.append(offset)
            page.row_of[offset] = row
            page.keys.extend(packed)
            if message_id >> 64 or entry >> 32 or not 0 <= lane < _ODD_LANE:
                page.mids.append(0)
                page.entries.append(0)
                page.lanes.append(0)
                page.set_location(row, message_id, entry, lane)
            else:
                page.mids.append(message_id)
                page.entries.append(entry)
                page.lanes.append(lane)
            self._count += 1
            for index, key in zip(indexes, packed, strict=True):
                index._put_derived(key, rid)
        else:
            page.set_location(row, message_id, entry, lane)
            stored = page.keys
            base = row * page.width
            for position, index in enumerate(indexes):
                new_key = packed[position]
                old_key = stored[base + position]
                if old_key != new_key:
                    index._drop_derived(old_key, rid)
                    stored[base + position] = new_key
                    index._put_derived(new_key, rid)
        self._dirty_directory.add(number)
        if rid >= self.next_rid:
            self.next_rid = rid + 1

    def _put_new(
        self, entries: Sequence[Entry], message_id: int, lane: int, indexes: Sequence[HashIndex]
    ) -> bool:
        """Apply a block of puts of new, distinct record ids in bulk (a bulk load, and most
        live commits): rows first, then each index takes its pairs in one call. False, and
        nothing changed, for any other block (`apply` then goes entry by entry)."""
        width = len(self.fields)
        if (
            len(entries) < 16
            or message_id >> 64
            or len(entries) >> 32
            or not 0 <= lane < _ODD_LANE
            or not all(type(entry) is Put and len(entry.keys) == width for entry in entries)
        ):
            return False
        puts = cast("Sequence[Put]", entries)
        try:
            rids = array("Q", [put.rid for put in puts])
            keys = array("Q", [key for put in puts for key in put.keys])
        except (OverflowError, TypeError):
            return False
        keys = array("Q", [key & KEY_MASK for key in keys])
        if (
            max(rids) >= _BIG_RID
            or len(set(rids)) != len(rids)
            or any(map(self.__contains__, rids))
        ):
            return False
        pages = self._pages
        for number, rid in enumerate(rids):
            page_no = rid >> _SPAN_BITS
            page = pages.get(page_no)
            if page is None:
                page = pages[page_no] = _DirPage(width)
            offset = rid & _SPAN_MASK
            page.row_of[offset] = len(page.offsets)
            page.offsets.append(offset)
            page.mids.append(message_id)
            page.entries.append(number)
            page.lanes.append(lane)
            page.keys.extend(keys[number * width : number * width + width])
            self._dirty_directory.add(page_no)
        self._count += len(rids)
        for position, index in enumerate(indexes):
            index._put_many_derived(keys[position::width], rids)
        self.next_rid = max(self.next_rid, max(rids) + 1)
        return True

    def _delete(self, rid: int, indexes: Sequence[HashIndex]) -> None:
        found = self._row(rid)
        if found is None:
            return
        page, row = found
        base = row * page.width
        for position, index in enumerate(indexes):
            index._drop_derived(page.keys[base + position], rid)
        page.drop(row)
        self._count -= 1
        number = rid >> _SPAN_BITS
        if not page.offsets:
            del self._pages[number]
        self._dirty_directory.add(number)

    def apply(self, message_id: int, block: LogBlock, *, lane: int = 0, where: str = "") -> None:
        """Apply one block stored in `message_id` of `lane` (its commit must be complete)."""
        indexes = [self.indexes[name] for name in self.fields]
        if self._put_new(block.entries, message_id, lane, indexes):
            self.next_commit = max(self.next_commit, block.commit + 1)
            return
        for number, entry in enumerate(block.entries):
            if self.dirty_messages is not None:
                # A message now holds a dead entry: compaction reads it (and only those).
                old = self.location(entry.rid)
                if old is not None:
                    self.dirty_messages.add(old.message_id)
                if isinstance(entry, Delete):
                    self.dirty_messages.add(message_id)
            if isinstance(entry, Put):
                if len(entry.keys) != len(self.fields):
                    raise DatabaseCorruptionError(
                        f"record {entry.rid} at {where or message_id} has {len(entry.keys)} "
                        f"index keys but the table has {len(self.fields)} fields",
                        where=where or str(message_id),
                        reason="key width",
                    )
                self._put(entry.rid, entry.keys, (message_id, number, lane), indexes)
            elif isinstance(entry, Delete):
                self._delete(entry.rid, indexes)
        self.next_commit = max(self.next_commit, block.commit + 1)

    def replay(self, blocks: Iterable[tuple[int, int, LogBlock]]) -> list[int]:
        """Apply the complete commits among `blocks`: (lane, message id, block) triples from
        any number of lanes, in any order (commits are numbered, and applied in order).

        Returns the message ids of incomplete commits and of fenced ones (written by a
        writer past its lease), which were never acknowledged and are ignored.
        """
        ignored: list[int] = []
        pending: list[tuple[int, int, LogBlock]] = []
        for lane, message_id, block in sorted(blocks, key=lambda b: (b[2].commit, b[2].part, b[1])):
            # Even an ignored commit's number is spent: its nonces must never be reused.
            self.next_commit = max(self.next_commit, block.commit + 1)
            if is_fenced(self.fences, block.commit, message_id):
                ignored.append(message_id)  # a writer past its lease: never acknowledged
                continue
            if pending and (block.commit != pending[0][2].commit or block.part != len(pending)):
                ignored.extend(mid for _, mid, _ in pending)
                pending = []
            if block.part != len(pending):
                ignored.append(message_id)
                continue
            pending.append((lane, message_id, block))
            if len(pending) == block.parts:
                for part_lane, mid, part in pending:
                    self.apply(mid, part, lane=part_lane)
                pending = []
        ignored.extend(mid for _, mid, _ in pending)
        return ignored

    def add_field(self, name: str, default_key: int) -> None:
        """A field added to the schema (with a default): every existing record has it."""
        if not 0 <= default_key < 1 << 64:
            raise ValueError(f"index keys must be unsigned 64-bit ints, got {default_key}")
        default_key &= KEY_MASK
        for page in self._pages.values():
            page.widen(default_key)
        self.fields = (*self.fields, name)
        self._build_indexes([len(self.fields) - 1])
        self._dirty_directory.update(self._pages)

    def _build_indexes(self, positions: Iterable[int]) -> None:
        """(Re)build the indexes of the fields at `positions` from the directory's keys.
        The bulk path fills two arrays sized once (record ids and one field's keys): arrays
        grown a page at a time would leave the allocator holding tens of MB at a million
        records after they are freed."""
        count = self._count
        bulk = count and max(self._pages) >> 53 == 0  # every record id fits an array
        rids = keys = array("Q")
        if bulk:
            rids, keys = array("Q", [0]) * count, array("Q", [0]) * count
            at = 0
            for number, page in self._pages.items():
                rows = len(page.offsets)
                rids[at : at + rows] = array("Q", map((number << _SPAN_BITS).__add__, page.offsets))
                at += rows
        for position in positions:
            index = self._new_index(position)
            if bulk:
                at = 0
                for page in self._pages.values():
                    rows = len(page.offsets)
                    keys[at : at + rows] = page.keys[position :: page.width]
                    at += rows
                index._put_many_derived(keys, rids)
            else:
                key_of = self._key_getter(position)
                for rid in self.rids():
                    key = key_of(rid)
                    assert key is not None
                    index._put_derived(key, rid)
            self.indexes[self.fields[position]] = index

    # -- checkpoints -----------------------------------------------------------------------

    def _directory_pages(self) -> set[int]:
        return set(self._pages)

    def _encode_directory_page(self, number: int) -> bytes:
        """A `dirc` page: uvarint width, uvarint count, then each record's location in
        offset order, then every record's keys.

        A location is: uvarint offset gap (offset - previous offset - 1; the first: the
        offset), uvarint message (0: the previous record's, whose lane it shares; else the
        id + 1, then uvarint lane), uvarint entry (in the previous record's message: the
        zigzag of entry - previous entry - 1; else the entry). A bulk load's records are
        three bytes of location. The keys follow as `width` six-byte big-endian numbers per
        record, in the same order.
        """
        page = self._pages[number]
        width = page.width
        out = bytearray()
        write_uvarint(out, width)
        write_uvarint(out, len(page.offsets))
        row_of = page.row_of
        keys = array("Q")
        last_offset, last_mid, last_lane, last_entry = -1, -1, -1, -1
        for offset in range(DIRECTORY_SPAN):
            row = row_of[offset]
            if row == _NO_ROW:
                continue
            write_uvarint(out, offset - last_offset - 1)
            last_offset = offset
            location = page.location(row)
            mid, entry, lane = location.message_id, location.entry, location.lane
            if mid == last_mid and lane == last_lane:
                out.append(0)
                gap = entry - last_entry - 1
                write_uvarint(out, gap << 1 if gap >= 0 else (-gap << 1) - 1)
            else:
                write_uvarint(out, mid + 1)
                write_uvarint(out, lane)
                write_uvarint(out, entry)
                last_mid, last_lane = mid, lane
            last_entry = entry
            keys.extend(page.keys[row * width : row * width + width])
        out += _pack_keys(keys)
        return seal("dirc", bytes(out))

    def _all_page_keys(self) -> dict[str, None]:
        return dict.fromkeys(_directory_key(page) for page in sorted(self._directory_pages()))

    @property
    def checkpoint_bytes(self) -> int:
        """Bytes of the pages the latest checkpoint names: what a clean open downloads."""
        return sum(self._page_bytes.get(key, 0) for key in self.refs)

    def dirty(self) -> bool:
        """Whether anything changed since the last checkpoint."""
        return self._force_full or bool(self._dirty_directory)

    def plan_checkpoint(
        self, *, full: bool = False, replay_from: int | None = None
    ) -> CheckpointPlan:
        """A snapshot of the table now, as the pages to write: the dirty ones, or all of them
        when `full` or when the unchanged pages are spread over too many messages.

        The pages count as clean from here on, so changes made while the checkpoint is being
        written dirty them again; `replay_from` is the first commit the snapshot does not
        cover (the oldest still in flight). If the checkpoint fails, call
        `abandon_checkpoint` so the next one rewrites every page.
        """
        full = full or self._force_full
        current = self._all_page_keys()
        dirty = {_directory_key(page) for page in self._dirty_directory}
        dirty &= current.keys()
        dirty.update(key for key in current if key not in self.refs)
        kept_keys = [key for key in current if key not in dirty]
        kept = {self.refs[key] for key in kept_keys}
        held = sum(self._message_bytes.get(mid, 0) for mid in kept)
        needed = sum(self._page_bytes.get(key, 0) for key in kept_keys)
        if full or len(kept) > MAX_REF_MESSAGES or held > 2 * needed + _REWRITE_SLACK:
            dirty = set(current)  # a full rewrite: the old messages all become garbage
        packs: list[dict[str, bytes]] = [{}]
        size = 0
        for key in current:
            if key not in dirty:
                continue
            data = self._encode_directory_page(int(key.partition(":")[2]))
            cost = _packed_size(key, data)
            if packs[-1] and size + cost > _PACK_BUDGET:
                packs.append({})
                size = 0
            packs[-1][key] = data
            size += cost
        snapshot = self.manifest({})
        if replay_from is not None:
            snapshot = snapshot.model_copy(update={"replay_from": replay_from})
        if packs[-1] and size + _manifest_size(snapshot, current) > _PACK_BUDGET:
            packs.append({})  # the manifest goes alone: with the last pages it would not fit
        kept_refs = {key: self.refs[key] for key in current if key not in dirty}
        self._dirty_directory.clear()
        self._force_full = False
        return CheckpointPlan(self, packs, frozenset(dirty), snapshot, kept_refs)

    def abandon_checkpoint(self) -> None:
        """A planned checkpoint was not written: the next one rewrites every page."""
        self._force_full = True

    def manifest(self, refs: Mapping[str, int]) -> Manifest:
        """The manifest of the table now; `refs` (where each page is) may be filled later."""
        current = self._all_page_keys()
        return Manifest(
            table_schema=self.table_schema,
            fields=self.fields,
            next_rid=self.next_rid,
            next_commit=self.next_commit,
            records=len(self.directory),
            directory_pages=tuple(sorted(self._directory_pages())),
            refs={key: refs[key] for key in current if key in refs},
            lanes=self.lanes,
            fences=tuple(
                (f.commits_from, -1 if f.cutoff_ms is None else f.cutoff_ms) for f in self.fences
            ),
            dirty_messages=None
            if self.dirty_messages is None
            else tuple(sorted(self.dirty_messages)),
        )

    def finish_checkpoint(
        self, plan: CheckpointPlan, page_message_ids: Sequence[int], message_id: int
    ) -> None:
        """Record that `plan` is durable: its final blob went into message `message_id`."""
        refs = plan.refs(page_message_ids)
        self.refs = {key: (message_id if mid == SELF else mid) for key, mid in refs.items()}
        for pack, mid in zip(plan.packs, (*page_message_ids, message_id), strict=True):
            self._message_bytes[mid] = sum(map(len, pack.values()))
            self._page_bytes.update((key, len(data)) for key, data in pack.items())
        referenced = set(self.refs.values())
        for mid in [mid for mid in self._message_bytes if mid not in referenced]:
            del self._message_bytes[mid]
        for key in [key for key in self._page_bytes if key not in self.refs]:
            del self._page_bytes[key]

    def _load_directory(
        self, manifest: Manifest, page: Callable[[str], bytes | memoryview], where: str
    ) -> None:
        """Read the directory pages of a checkpoint into compact rows (before the indexes,
        which are built from their keys). Pages are `dirc` (format 3) or `dirp` (formats 1
        and 2, 64-bit keys and whole locations)."""
        width = len(manifest.fields)
        for number in manifest.directory_pages:
            page_where = f"{where}, directory page {number}"
            kind, body = unseal(page(_directory_key(number)), where=page_where)
            if kind not in ("dirc", "dirp"):
                raise DatabaseCorruptionError(
                    f"{page_where} holds a {kind!r} blob, not a directory page",
                    where=page_where,
                    reason="wrong kind",
                )
            reader = Reader(body, where=page_where)
            if reader.uvarint() != width:
                raise DatabaseCorruptionError(
                    f"directory page {number} at {where} has the wrong key width",
                    where=page_where,
                    reason="key width",
                )
            if number in self._pages:
                continue  # listed twice in the manifest: the same page, read once
            try:
                read = _read_dirc if kind == "dirc" else _read_dirp
                rows = read(reader, width)
            except (ValueError, IndexError, struct.error) as exc:
                raise DatabaseCorruptionError(
                    f"{page_where}: truncated or bad entry ({exc})",
                    where=page_where,
                    reason="bad directory entry",
                ) from None
            reader.expect_end()
            if rows.offsets:
                self._pages[number] = rows
                self._count += len(rows.offsets)

    @classmethod
    def from_checkpoint(
        cls,
        manifest: Manifest,
        message_id: int,
        pages_by_message: Mapping[int, Mapping[str, bytes | memoryview]],
        *,
        where: str,
    ) -> TableState:
        """Rebuild the state a checkpoint describes. `pages_by_message` holds the directory
        pages of the messages the manifest refers to (the checkpoint message itself under
        its id); index pages (formats 1 and 2) are not needed: see `Manifest.page_messages`."""
        if (
            len(set(manifest.fields)) != len(manifest.fields)
            or min(manifest.next_rid, manifest.next_commit, manifest.records, 0) < 0
        ):
            raise DatabaseCorruptionError(
                f"checkpoint at {where} lists a field twice or a negative count",
                where=where,
                reason="bad manifest",
            )
        refs = {key: (message_id if mid == SELF else mid) for key, mid in manifest.refs.items()}

        def page(key: str) -> bytes | memoryview:
            mid = refs.get(key)
            data = pages_by_message.get(mid, {}).get(key) if mid is not None else None
            if data is None:
                raise DatabaseCorruptionError(
                    f"checkpoint at {where} refers to page {key} in message {mid}, "
                    "which does not hold it",
                    where=where,
                    reason="missing page",
                )
            return data

        state = cls(
            table_schema=manifest.table_schema,
            fields=manifest.fields,
            next_rid=manifest.next_rid,
            next_commit=manifest.next_commit,
            refs=refs,
            lanes=manifest.lanes,
            replay_floor=manifest.floor,
            dirty_messages=None
            if manifest.dirty_messages is None
            else set(manifest.dirty_messages),
            fences=[
                Fence(start, None if cutoff < 0 else cutoff) for start, cutoff in manifest.fences
            ],
        )
        state._load_directory(manifest, page, where)
        for mid, pages in pages_by_message.items():
            state._message_bytes[mid] = sum(len(data) for data in pages.values())
        for key, mid in refs.items():
            data = pages_by_message.get(mid, {}).get(key)
            if data is not None:
                state._page_bytes[key] = len(data)
        if state._count != manifest.records:
            raise DatabaseCorruptionError(
                f"checkpoint at {where} lists {manifest.records} records but its directory "
                f"holds {state._count}",
                where=where,
                reason="record count",
            )
        state._build_indexes(range(len(manifest.fields)))
        return state
