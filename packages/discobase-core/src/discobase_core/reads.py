"""Read planning: which requests and downloads read a set of log entries, sans I/O.

A record lives at (lane, message id, entry number). Reading it takes two steps on Discord:
the message itself (its content, and its attachment names with fresh signed URLs), then,
unless the message holds its block inline, some of its attachments. A `ReadPlan` decides
both. It hands out operations (`ReadPage`, `FetchMessage`, `ReadBlock`, `ReadChunks`); the
driver performs them, in any order and as many at once as it likes, and reports each result
back (`page_read`, `fetched`, `block_read`, `chunks_read`, `read_failed`), which may hand out
more. When nothing is left to perform, `found` and `failed` hold the answer for every wanted
entry. The rules:

- An entry in the `BlockCache` (decoded entries, bounded in bytes) costs nothing. A message
  already seen (`KnownMessages`: the attachment lists of recent log messages, with their URLs)
  costs no request: only the attachments wanted are downloaded.
- Of the other wanted messages of a lane, one alone is fetched by id (one small request);
  two or more, or one that the entries read next (`ahead`) will follow in the same lane, are
  read a history page at a time (100 messages oldest first, one request) from the oldest one
  on. So a read never costs more requests than messages, and a scan of a lane costs about one
  request per 100 messages however its caller batches it.
- A wanted message a history page should have held, or a fetch did not find, is gone. A
  message gone, damaged, foreign or not a log message makes only its own entries unreadable,
  and a damaged chunk attachment only the entries it holds; each failure says why.
- Of a chunked message only the attachments holding wanted entries are downloaded (their
  names say which: discobase_core.log); a message of another layout (inline content, or a
  split blob) is read whole. Inline blocks that come along in a page are decoded into the
  cache (costing no download; their damage matters only to whoever wants them).

The plan never inspects the driver's message objects (`Seen.handle`); it only passes them
back in the operations that need them.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from discobase_core.codec import unseal
from discobase_core.errors import DatabaseCorruptionError
from discobase_core.log import (
    CHUNK_KIND,
    Entry,
    LogBlock,
    LogChunk,
    Put,
    chunk_files,
    chunk_for_entry,
    decode_block,
    decode_chunk,
    parse_file_name,
)

__all__ = [
    "KNOWN_MESSAGES",
    "MISS",
    "PAGE",
    "BlockCache",
    "FetchMessage",
    "KnownMessages",
    "ReadBlock",
    "ReadChunks",
    "ReadOp",
    "ReadPage",
    "ReadPlan",
    "Seen",
    "Upcoming",
    "decode_named_chunk",
]

M = TypeVar("M")

PAGE = 100  # messages per history request, Discord's maximum
KNOWN_MESSAGES = 4096  # log messages with attachments whose attachment lists are kept
_Payloads = tuple[bytes | None, ...]
Key = tuple[int, int]  # (message id, entry)


class _Miss:
    """Not in the block cache."""


MISS = _Miss()
_END = (-1, -1, -1)  # no more locations (Upcoming)


@dataclass(frozen=True, slots=True)
class Seen(Generic[M]):
    """A message as the driver saw it: whether discobase wrote it, its attachment names
    (none: its blob, if any, is the content), and the driver's own object for it."""

    message_id: int
    ours: bool
    names: tuple[str, ...]
    handle: M

    @property
    def kind(self) -> str | None:
        """The kind its attachment names say (``log`` for a chunked message); None for
        inline content, whose kind only decoding tells."""
        parsed = parse_file_name(self.names[0]) if self.names else None
        if parsed is None:
            return None
        return "log" if parsed[0] == CHUNK_KIND else parsed[0]


@dataclass(frozen=True, slots=True)
class ReadPage:
    """Read up to `PAGE` messages of `lane` after message `after`, oldest first."""

    lane: int
    after: int


@dataclass(frozen=True, slots=True)
class FetchMessage:
    """Fetch one message of `lane` by id (report None if it is gone)."""

    lane: int
    message_id: int


@dataclass(frozen=True, slots=True)
class ReadBlock(Generic[M]):
    """Read the sealed blob a message holds (its content, or all its attachments joined).
    `wanted` False: only to cache it along the way (its failures do not matter)."""

    lane: int
    message: Seen[M]
    wanted: bool


@dataclass(frozen=True, slots=True)
class ReadChunks(Generic[M]):
    """Download the chunk attachments `names` of a chunked log message."""

    lane: int
    message: Seen[M]
    names: tuple[str, ...]


ReadOp = ReadPage | FetchMessage | ReadBlock[M] | ReadChunks[M]


class BlockCache:
    """Decoded log entries by (message id, first entry): whole blocks (first entry 0) and
    the chunks of chunked messages read one attachment at a time. Least recently used
    first out, bounded in bytes.

    The entries read out of cached blocks are also kept on their own, in an eighth of the
    budget: a cold lookup downloads a chunk of about 100 KiB for one record of a few hundred
    bytes, so a thousand lookups push each other's chunks out, but the records they read
    stay, and looking them up again costs nothing.
    """

    def __init__(self, budget: int) -> None:
        self.hot_budget = budget // 8
        self.budget = budget - self.hot_budget
        self.size = 0
        self._hot: OrderedDict[Key, bytes] = OrderedDict()
        self._hot_size = 0
        # (message id, first entry) -> (payloads, whether they run to the message's end)
        self._blocks: OrderedDict[Key, tuple[_Payloads, bool]] = OrderedDict()
        self._firsts: dict[int, list[int]] = {}  # message id -> its cached first entries

    def get(self, message_id: int, entry: int) -> bytes | _Miss | None:
        """The payload of entry `entry` of a message (None: a delete, or no such entry),
        or MISS if that part of the message is not cached."""
        hot = self._hot.get((message_id, entry))
        if hot is not None:
            self._hot.move_to_end((message_id, entry))
            return hot
        firsts = self._firsts.get(message_id)
        if not firsts:
            return MISS
        at = bisect.bisect_right(firsts, entry) - 1
        if at < 0:
            return MISS
        key = (message_id, firsts[at])
        payloads, to_end = self._blocks[key]
        self._blocks.move_to_end(key)
        offset = entry - firsts[at]
        if offset < len(payloads):
            return payloads[offset]
        return None if to_end else MISS

    def keep(self, message_id: int, entry: int, payload: bytes | None) -> None:
        """A read found this entry: keep it apart from its block (see the class doc)."""
        key = (message_id, entry)
        if payload is None or key in self._hot or 64 + len(payload) > self.hot_budget:
            return
        self._hot[key] = payload
        self._hot_size += 64 + len(payload)
        while self._hot_size > self.hot_budget:
            _, dropped = self._hot.popitem(last=False)
            self._hot_size -= 64 + len(dropped)

    def put(self, message_id: int, block: LogBlock) -> None:
        """Cache the whole block of a message."""
        for first in list(self._firsts.get(message_id, ())):
            self._drop((message_id, first))
        self._add(message_id, 0, block.entries, to_end=True)

    def put_chunk(self, message_id: int, chunk: LogChunk) -> None:
        """Cache one chunk of a chunked message."""
        if (message_id, chunk.first) in self._blocks:
            return
        to_end = chunk.first + len(chunk.entries) == chunk.total
        self._add(message_id, chunk.first, chunk.entries, to_end=to_end)

    def _add(self, message_id: int, first: int, entries: Sequence[Entry], *, to_end: bool) -> None:
        payloads = tuple(e.payload if isinstance(e, Put) else None for e in entries)
        self._blocks[(message_id, first)] = (payloads, to_end)
        bisect.insort(self._firsts.setdefault(message_id, []), first)
        self.size += _weight(payloads)
        while self.size > self.budget and len(self._blocks) > 1:
            self._drop(next(iter(self._blocks)))

    def _drop(self, key: Key) -> None:
        payloads, _ = self._blocks.pop(key)
        self.size -= _weight(payloads)
        firsts = self._firsts[key[0]]
        firsts.remove(key[1])
        if not firsts:
            del self._firsts[key[0]]


def _weight(payloads: _Payloads) -> int:
    return sum(len(p) for p in payloads if p is not None) + 16 * len(payloads)


class KnownMessages(Generic[M]):
    """The log messages with attachments seen lately, by (lane, message id): reading
    another part of one costs no request. Least recently used first out, at most `limit`.
    (An expired attachment URL is the driver's to refresh.)"""

    def __init__(self, limit: int = KNOWN_MESSAGES) -> None:
        self.limit = limit
        self._messages: OrderedDict[tuple[int, int], Seen[M]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._messages)

    def __contains__(self, key: object) -> bool:
        return key in self._messages

    def get(self, lane: int, message_id: int) -> Seen[M] | None:
        seen = self._messages.get((lane, message_id))
        if seen is not None:
            self._messages.move_to_end((lane, message_id))
        return seen

    def remember(self, lane: int, seen: Seen[M]) -> None:
        if not (seen.ours and seen.names and seen.kind == "log"):
            return  # inline blocks are cached decoded instead; other kinds are never read
        self._messages[(lane, seen.message_id)] = seen
        self._messages.move_to_end((lane, seen.message_id))
        while len(self._messages) > self.limit:
            self._messages.popitem(last=False)

    def forget(self, lane: int, message_id: int) -> None:
        self._messages.pop((lane, message_id), None)


def decode_named_chunk(name: str, data: bytes, *, where: str) -> LogChunk:
    """One chunk attachment, checked against what its name says it holds."""
    chunk = decode_chunk(data, where=where)[0]
    if parse_file_name(name) != (CHUNK_KIND, chunk.commit, chunk.first):
        raise DatabaseCorruptionError(
            f"{where} holds entries from {chunk.first}, not what its name says",
            where=where,
            reason="bad chunk name",
        )
    return chunk


class Upcoming:
    """The messages a batched scan reaches next. Given the locations of the entries it will
    read, in reading order (None: no location), `after(position)` gives the first location
    of each of the next `AHEAD` messages from that position on, to pass as a `ReadPlan`'s
    `ahead`: then a batch reads history pages even when it wants a single message (a message
    can hold thousands of entries, more than a batch). Lazy, for positions that only grow:
    a scan that stops early (a limit) never looks at the rest."""

    AHEAD = 16

    def __init__(self, located: Iterable[tuple[int, int, int] | None]) -> None:
        self._source = iter(located)
        self._position = 0  # of the next location to look at
        self._last: int | None = None  # message id of the previous location
        self._marks: deque[tuple[int, tuple[int, int, int]]] = deque()

    def after(self, position: int) -> list[tuple[int, int, int]]:
        while self._marks and self._marks[0][0] < position:
            self._marks.popleft()
        while len(self._marks) < self.AHEAD:
            where = next(self._source, _END)
            if where is _END:
                break
            at = self._position
            self._position += 1
            if where is None or where[1] == self._last:
                continue
            self._last = where[1]
            if at >= position:
                self._marks.append((at, where))
        return [where for _, where in self._marks]


@dataclass
class _Lane:
    wanted: dict[int, set[int]] = field(default_factory=dict)  # message id -> entries, unseen
    ahead: set[int] = field(default_factory=set)  # messages the next reads want, not cached
    busy: bool = False  # a page or fetch is in flight


class ReadPlan(Generic[M]):
    """The reads of one set of wanted log entries; see the module docstring.

    `where(lane, message_id)` names a message in failures; `lost_lanes` are lanes whose
    channel is gone (their entries are unreadable)."""

    def __init__(
        self,
        table: str,
        cache: BlockCache,
        known: KnownMessages[M],
        wanted: Iterable[tuple[int, int, int]],
        *,
        ahead: Iterable[tuple[int, int, int]] = (),
        lost_lanes: Iterable[int] = (),
        where: Callable[[int, int], str],
    ) -> None:
        self.table = table
        self.cache = cache
        self.known = known
        self.where = where
        self.found: dict[Key, bytes | None] = {}  # None: a delete, or no such entry
        self.failed: dict[Key, str] = {}  # why an entry cannot be read
        self._lost = set(lost_lanes)
        self._lanes: dict[int, _Lane] = {}
        self._wanted = list(wanted)
        self._ahead = list(ahead)
        self._reading: dict[int, set[int]] = {}  # message id -> entries being downloaded

    # -- starting ----------------------------------------------------------------------------

    def cached(self) -> list[tuple[int, int, int]]:
        """Answer what the cache and lost lanes answer; the wanted entries left to read."""
        left: list[tuple[int, int, int]] = []
        for lane, message_id, entry in self._wanted:
            held = self.cache.get(message_id, entry)
            if not isinstance(held, _Miss):
                self.found[(message_id, entry)] = held
                self.cache.keep(message_id, entry, held)
            elif lane in self._lost:
                self.failed[(message_id, entry)] = (
                    f"lane {lane} of table {self.table} is gone (deleted?)"
                )
            else:
                left.append((lane, message_id, entry))
        self._wanted = left
        return left

    def start(self, wanted: Iterable[tuple[int, int, int]] | None = None) -> list[ReadOp[M]]:
        """The first operations. `wanted`: the entries to read (default: what `cached`
        left); a driver that shares reads between callers passes those nobody else reads."""
        if wanted is None:
            wanted = self.cached()
        for lane, message_id, entry in wanted:
            self._lane(lane).wanted.setdefault(message_id, set()).add(entry)
        for lane, message_id, entry in self._ahead:
            if lane in self._lanes and isinstance(self.cache.get(message_id, entry), _Miss):
                self._lanes[lane].ahead.add(message_id)
        ops: list[ReadOp[M]] = []
        for lane in sorted(self._lanes):
            ops += self._next(lane)
        return ops

    def _lane(self, lane: int) -> _Lane:
        return self._lanes.setdefault(lane, _Lane())

    def _next(self, lane: int) -> list[ReadOp[M]]:
        """Read the wanted messages of `lane` already known; ask for the others."""
        state = self._lanes[lane]
        ops: list[ReadOp[M]] = []
        for message_id in list(state.wanted):
            seen = self.known.get(lane, message_id)
            if seen is not None:
                ops += self._read(lane, seen, state.wanted.pop(message_id))
        if state.busy or not state.wanted:
            return ops
        state.busy = True
        unseen = state.wanted.keys() | {m for m in state.ahead if (lane, m) not in self.known}
        if len(unseen) == 1:
            ops.append(FetchMessage(lane, next(iter(state.wanted))))
        else:
            ops.append(ReadPage(lane, min(state.wanted) - 1))
        return ops

    # -- events ------------------------------------------------------------------------------

    def page_read(self, op: ReadPage, page: Sequence[Seen[M]]) -> list[ReadOp[M]]:
        """The messages after `op.after`, oldest first (a full page: more may follow)."""
        state = self._lanes[op.lane]
        state.busy = False
        ops = self._take(op.lane, page)
        last = page[-1].message_id if len(page) >= PAGE else None
        for message_id in [m for m in state.wanted if last is None or m <= last]:
            self._gone(op.lane, message_id, state.wanted.pop(message_id))
        state.ahead = {m for m in state.ahead if last is not None and m > last}
        return ops + self._next(op.lane)

    def fetched(self, op: FetchMessage, seen: Seen[M] | None) -> list[ReadOp[M]]:
        """The message `op` asked for (None: it is gone)."""
        state = self._lanes[op.lane]
        state.busy = False
        ops = self._take(op.lane, [seen] if seen is not None else [])
        entries = state.wanted.pop(op.message_id, None)
        if entries is not None:
            self._gone(op.lane, op.message_id, entries)
        return ops + self._next(op.lane)

    def block_read(self, op: ReadBlock[M], blob: bytes) -> list[ReadOp[M]]:
        """The sealed blob of `op.message`."""
        message_id = op.message.message_id
        entries = self._reading.pop(message_id, set()) if op.wanted else set()
        where = self.where(op.lane, message_id)
        try:
            if not op.wanted and unseal(blob, where=where)[0] != "log":
                return []
            block = decode_block(blob, where=where)[0]
        except DatabaseCorruptionError as exc:
            self._fail(message_id, entries, exc.message)
            return []
        self.cache.put(message_id, block)
        for entry in entries:
            held = block.entries[entry] if entry < len(block.entries) else None
            self._found(message_id, entry, held.payload if isinstance(held, Put) else None)
        return []

    def chunks_read(self, op: ReadChunks[M], files: Sequence[tuple[str, bytes]]) -> list[ReadOp[M]]:
        """(name, bytes) of the chunk attachments `op` asked for."""
        message_id = op.message.message_id
        names = op.message.names
        entries = self._reading.pop(message_id, set())
        by_name: dict[str, list[int]] = {}
        for entry in entries:
            by_name.setdefault(chunk_for_entry(names, entry) or "", []).append(entry)
        got = dict(files)
        for name in op.names:
            where = f"attachment {name} of {self.where(op.lane, message_id)}"
            if name not in got:
                self._fail(message_id, by_name.get(name, ()), f"{where} was not downloaded")
                continue
            try:
                chunk = decode_named_chunk(name, got[name], where=where)
            except DatabaseCorruptionError as exc:
                self._fail(message_id, by_name.get(name, ()), exc.message)
                continue
            self.cache.put_chunk(message_id, chunk)
            for entry in by_name.get(name, ()):
                offset = entry - chunk.first
                held = chunk.entries[offset] if offset < len(chunk.entries) else None
                self._found(message_id, entry, held.payload if isinstance(held, Put) else None)
        return []

    def read_failed(self, op: ReadOp[M], why: str, *, gone: bool = False) -> list[ReadOp[M]]:
        """`op` failed for a reason that concerns only its message (damaged, or `gone`)."""
        if isinstance(op, ReadPage | FetchMessage):
            raise ValueError("a page or fetch that fails fails the whole read")
        message_id = op.message.message_id
        if gone:
            self.known.forget(op.lane, message_id)
            why = f"{self.where(op.lane, message_id)} is gone (deleted by someone?)"
        if isinstance(op, ReadChunks) or op.wanted:
            self._fail(message_id, self._reading.pop(message_id, set()), why)
        return []

    # -- helpers -----------------------------------------------------------------------------

    def _take(self, lane: int, page: Sequence[Seen[M]]) -> list[ReadOp[M]]:
        """Remember the messages of a page and read what is wanted of them."""
        state = self._lanes[lane]
        ops: list[ReadOp[M]] = []
        for seen in page:
            if not seen.ours:
                continue  # foreign: a wanted one is reported gone
            self.known.remember(lane, seen)
            entries = state.wanted.pop(seen.message_id, None)
            if entries:
                ops += self._read(lane, seen, entries)
            elif not seen.names and not self._cached_whole(seen.message_id):
                ops.append(ReadBlock(lane, seen, wanted=False))  # inline: decoding is free
        return ops

    def _found(self, message_id: int, entry: int, payload: bytes | None) -> None:
        self.found[(message_id, entry)] = payload
        self.cache.keep(message_id, entry, payload)

    def _cached_whole(self, message_id: int) -> bool:
        return not isinstance(self.cache.get(message_id, 0), _Miss)

    def _read(self, lane: int, seen: Seen[M], entries: set[int]) -> list[ReadOp[M]]:
        """The downloads that read `entries` of a seen message (each message is read once
        per plan: it leaves the lane's wanted messages when it is seen)."""
        message_id = seen.message_id
        if seen.kind not in (None, "log"):
            self._fail(message_id, entries, "its message holds no log entries")
            return []
        if chunk_files(seen.names) is None:
            self._reading[message_id] = set(entries)
            return [ReadBlock(lane, seen, wanted=True)]
        names: set[str] = set()
        for entry in entries:
            name = chunk_for_entry(seen.names, entry)
            if name is None:  # the message starts past it: an attachment is missing
                self._fail(message_id, [entry], "no attachment holds its entry")
                continue
            names.add(name)
            self._reading.setdefault(message_id, set()).add(entry)
        if not names:
            return []
        ordered = tuple(name for name in seen.names if name in names)
        return [ReadChunks(lane, seen, ordered)]

    def _gone(self, lane: int, message_id: int, entries: Iterable[int]) -> None:
        self.known.forget(lane, message_id)
        self._fail(
            message_id, entries, f"{self.where(lane, message_id)} is gone (deleted by someone?)"
        )

    def _fail(self, message_id: int, entries: Iterable[int], why: str) -> None:
        for entry in entries:
            self.failed[(message_id, entry)] = why
