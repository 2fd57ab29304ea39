"""The in-memory state of one table, and its checkpoints: a sans-IO state machine.

The state is everything derived from the table's log: a directory (record id -> where its
latest version lives and its index keys) and one `HashIndex` per field (key -> record ids).
The adapter feeds it log blocks as they are written (live) or read back (replay), asks it
which records can match a query, and persists it as checkpoints so that opening a table reads
index pages, not records.

A checkpoint writes only the pages that changed since the previous one: index pages reported
dirty by `HashIndex`, and directory pages (2,048 record ids each) that were touched. The
manifest names, for every page, the message that holds its latest version. When a checkpoint
would leave pages spread over more than `MAX_REF_MESSAGES` messages, it rewrites every page,
so opening a table never fetches more than a handful of messages.

A checkpoint is a snapshot taken when it is planned: its pages and manifest describe the
commits applied by then, and its manifest's `replay_from` names the first commit it does not
cover (commits still in flight on other lanes when it was planned). Opening replays every
lane from there, so writes go on while a checkpoint is being written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, ValidationError

from discobase_core._varint import Reader, write_uvarint
from discobase_core.codec import seal, unseal
from discobase_core.errors import DatabaseCorruptionError
from discobase_core.index import HashIndex
from discobase_core.lease import Fence, is_fenced
from discobase_core.log import MAX_BLOB_BYTES, Delete, LogBlock, Put
from discobase_core.schema import TableSchema

__all__ = [
    "DIRECTORY_SPAN",
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
MANIFEST_FORMAT = 2  # see Manifest.format
MAX_REF_MESSAGES = 8
SELF = 0  # in a manifest, "the checkpoint message itself"
_PACK_BUDGET = MAX_BLOB_BYTES - 64 * 1024


@dataclass(frozen=True, slots=True)
class Location:
    """Where a record version lives: the log message id, the entry number in its block, and
    the lane (0: the table channel, n: its n-th lane thread) that holds the message."""

    message_id: int
    entry: int
    lane: int = 0


@dataclass(frozen=True, slots=True)
class DirEntry:
    location: Location
    keys: tuple[int, ...]


class Manifest(BaseModel):
    """What a checkpoint says about the table (stored as JSON inside the sealed blob)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    #: 1: replay from `next_commit`; 2: from `replay_from` (commits in flight, pipelined)
    format: int = MANIFEST_FORMAT
    table_schema: TableSchema
    fields: tuple[str, ...]
    next_rid: int
    next_commit: int
    records: int
    index_pages: dict[str, int]
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


def _decode_pack(reader: Reader) -> dict[str, bytes]:
    """Inverse of :func:`_encode_pack`; bad UTF-8, a repeated key or a count the bytes cannot
    hold is corruption."""
    pages: dict[str, bytes] = {}
    count = reader.count(min_item_bytes=2)
    for _ in range(count):
        key = reader.text()
        if key in pages:
            raise DatabaseCorruptionError(
                f"{reader.where}: page {key} is stored twice",
                where=reader.where,
                reason="duplicate page",
            )
        pages[key] = reader.take(reader.uvarint())
    return pages


def read_pages(blob: bytes, *, where: str) -> dict[str, bytes]:
    """The pages a `pages` blob holds."""
    _, body = unseal(blob, where=where, kind="pages")
    reader = Reader(body, where=where)
    pages = _decode_pack(reader)
    reader.expect_end()
    return pages


def read_checkpoint(blob: bytes, *, where: str) -> tuple[Manifest, dict[str, bytes]]:
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


def _index_key(name: str, page: int) -> str:
    return f"i:{name}:{page}"


def _directory_key(page: int) -> str:
    return f"d:{page}"


@dataclass
class TableState:
    """Directory and indexes of one table; see the module docstring."""

    table_schema: TableSchema
    fields: tuple[str, ...]
    directory: dict[int, DirEntry] = field(default_factory=dict)
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

    def __post_init__(self) -> None:
        for name in self.fields:
            self.indexes.setdefault(name, HashIndex())

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
        return len(self.directory)

    def __contains__(self, rid: object) -> bool:
        return rid in self.directory

    def location(self, rid: int) -> Location | None:
        entry = self.directory.get(rid)
        return entry.location if entry else None

    def rids(self) -> list[int]:
        """Every live record id, oldest first."""
        return sorted(self.directory)

    def candidates(self, keys: Mapping[str, int]) -> list[int]:
        """Record ids whose index keys match every (field, key) given, oldest first.

        Keys are 64-bit hashes, so a caller that needs exact answers compares the values of
        the records it reads back (a hash collision is possible, just very unlikely).
        """
        if not keys:
            return self.rids()
        postings = sorted((self.indexes[name].lookup(key) for name, key in keys.items()), key=len)
        found = set(postings[0])
        for other in postings[1:]:
            if not found:
                break
            found.intersection_update(other)
        return sorted(found)

    # -- writes ----------------------------------------------------------------------------

    def _put(self, rid: int, keys: tuple[int, ...], location: Location) -> None:
        old = self.directory.get(rid)
        for position, name in enumerate(self.fields):
            new_key = keys[position]
            if old is not None and old.keys[position] == new_key:
                continue
            index = self.indexes[name]
            if old is not None:
                index.remove(old.keys[position], rid)
            index.insert(new_key, rid)
        self.directory[rid] = DirEntry(location, keys)
        self._dirty_directory.add(rid // DIRECTORY_SPAN)
        self.next_rid = max(self.next_rid, rid + 1)

    def _delete(self, rid: int) -> None:
        old = self.directory.pop(rid, None)
        if old is None:
            return
        for name, key in zip(self.fields, old.keys, strict=True):
            self.indexes[name].remove(key, rid)
        self._dirty_directory.add(rid // DIRECTORY_SPAN)

    def apply(self, message_id: int, block: LogBlock, *, lane: int = 0, where: str = "") -> None:
        """Apply one block stored in `message_id` of `lane` (its commit must be complete)."""
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
                self._put(entry.rid, entry.keys, Location(message_id, number, lane))
            elif isinstance(entry, Delete):
                self._delete(entry.rid)
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
        index = HashIndex()
        for rid, entry in self.directory.items():
            index.insert(default_key, rid)
            self.directory[rid] = DirEntry(entry.location, (*entry.keys, default_key))
        self.fields = (*self.fields, name)
        self.indexes[name] = index
        self._dirty_directory.update(rid // DIRECTORY_SPAN for rid in self.directory)

    # -- checkpoints -----------------------------------------------------------------------

    def _directory_pages(self) -> set[int]:
        return {rid // DIRECTORY_SPAN for rid in self.directory}

    def _encode_directory_page(self, page: int) -> bytes:
        out = bytearray()
        start = page * DIRECTORY_SPAN
        rids = [rid for rid in range(start, start + DIRECTORY_SPAN) if rid in self.directory]
        write_uvarint(out, len(self.fields))
        write_uvarint(out, len(rids))
        for rid in rids:
            entry = self.directory[rid]
            write_uvarint(out, rid - start)
            write_uvarint(out, entry.location.message_id)
            write_uvarint(out, entry.location.entry)
            write_uvarint(out, entry.location.lane)
            for key in entry.keys:
                out += key.to_bytes(8, "big")
        return seal("dirp", bytes(out))

    def _all_page_keys(self) -> dict[str, bytes | None]:
        keys: dict[str, bytes | None] = {}
        for name in self.fields:
            for page in range(self.indexes[name].page_count):
                keys[_index_key(name, page)] = None
        for page in sorted(self._directory_pages()):
            keys[_directory_key(page)] = None
        return keys

    def dirty(self) -> bool:
        """Whether anything changed since the last checkpoint."""
        return (
            self._force_full
            or bool(self._dirty_directory)
            or any(index.dirty_pages() for index in self.indexes.values())
        )

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
        dirty: set[str] = set()
        for name in self.fields:
            dirty.update(_index_key(name, page) for page in self.indexes[name].dirty_pages())
        dirty.update(_directory_key(page) for page in self._dirty_directory)
        dirty &= current.keys()
        dirty.update(key for key in current if key not in self.refs)
        kept = {self.refs[key] for key in current if key not in dirty}
        if full or len(kept) > MAX_REF_MESSAGES:
            dirty = set(current)
        packs: list[dict[str, bytes]] = [{}]
        size = 0
        for key in current:
            if key not in dirty:
                continue
            kind, _, rest = key.partition(":")
            if kind == "i":
                name, _, page = rest.rpartition(":")
                data = self.indexes[name].encode_page(int(page))
            else:
                data = self._encode_directory_page(int(rest))
            if packs[-1] and size + len(data) > _PACK_BUDGET:
                packs.append({})
                size = 0
            packs[-1][key] = data
            size += len(data)
        snapshot = self.manifest({})
        if replay_from is not None:
            snapshot = snapshot.model_copy(update={"replay_from": replay_from})
        kept_refs = {key: self.refs[key] for key in current if key not in dirty}
        for index in self.indexes.values():
            index.mark_clean()
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
            index_pages={name: self.indexes[name].page_count for name in self.fields},
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

    @classmethod
    def from_checkpoint(
        cls,
        manifest: Manifest,
        message_id: int,
        pages_by_message: Mapping[int, Mapping[str, bytes]],
        *,
        where: str,
    ) -> TableState:
        """Rebuild the state a checkpoint describes. `pages_by_message` holds the pages of
        every message the manifest refers to (the checkpoint message itself under its id)."""
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

        def page(key: str) -> bytes:
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
        for name in manifest.fields:
            count = manifest.index_pages.get(name, 0)
            state.indexes[name] = HashIndex.from_pages(
                {number: page(_index_key(name, number)) for number in range(count)}
            )
        width = len(manifest.fields)
        for number in manifest.directory_pages:
            key = _directory_key(number)
            page_where = f"{where}, directory page {number}"
            _, body = unseal(page(key), where=page_where, kind="dirp")
            reader = Reader(body, where=page_where)
            if reader.uvarint() != width:
                raise DatabaseCorruptionError(
                    f"directory page {number} at {where} has the wrong key width",
                    where=page_where,
                    reason="key width",
                )
            start = number * DIRECTORY_SPAN
            # An entry is at least four one-byte uvarints and its keys.
            for _ in range(reader.count(min_item_bytes=4 + 8 * width)):
                offset = reader.uvarint()
                if offset >= DIRECTORY_SPAN:
                    raise DatabaseCorruptionError(
                        f"directory page {number} at {where} holds record offset {offset}, "
                        f"beyond its {DIRECTORY_SPAN} records",
                        where=page_where,
                        reason="record offset",
                    )
                location = Location(reader.uvarint(), reader.uvarint(), reader.uvarint())
                keys = tuple(int.from_bytes(reader.take(8), "big") for _ in range(width))
                state.directory[start + offset] = DirEntry(location, keys)
            reader.expect_end()
        if len(state.directory) != manifest.records:
            raise DatabaseCorruptionError(
                f"checkpoint at {where} lists {manifest.records} records but its directory "
                f"holds {len(state.directory)}",
                where=where,
                reason="record count",
            )
        return state
