"""One table on Discord: its channel's log, a group-committing writer, and a block cache.

Writes are appended to the table's channel as log blocks (discobase_core.log). Every
decision about them (which writes share a commit, which lane it goes to and when, the order
commits take effect, when to checkpoint) is made by the sans-IO `TableWriter`
(discobase_core.engine); this module is its driver: it performs the sends it hands out,
several at once (one per lane: the table channel and threads of it, which do not count
towards a server's 500 channels), and reports back. A caller's future resolves once its
commit is stored and applied, so `await save()` returns once the record is durable.
Checkpoints of the index (discobase_core.state) go to the table channel while the other
lanes go on writing, so opening a table reads a few history pages and directory pages, never
every record. Commits are numbered; replay merges the lanes by commit number.

Reads: a record lives at (lane, message id, entry). A big commit's messages are chunked
(discobase_core.log): each attachment holds a run of entries and is decodable on its own,
and its name says which, so a lookup downloads only the attachments holding the entries it
wants and caches them as chunks; replay and compaction read whole messages. What a lookup
or scan reads (history pages or single messages, which attachments, what the cache
answers) is decided by the sans-IO `ReadPlan` (discobase_core.reads); `_load_blocks`
performs its operations.

Only the holder of the database's lease writes (discobase/_lease.py): ids and commit numbers
come from its reservation, every nonce names its term, and a commit is acknowledged only
when its messages are stamped inside the lease. Readers ignore what a writer sent after its
lease ran out (fences). Damage is contained: a damaged checkpoint falls back to an older one
and the log, a lost lane thread or message makes only its own records unreadable, and each
is named (table, record ids, message) when a read needs it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import discord

from discobase._discord_io import ChannelIO, describe, file_names, translate
from discobase_core.codec import RecordCodec, unseal
from discobase_core.compaction import DeleteMessages, Listed
from discobase_core.engine import (
    CHECKPOINT_MESSAGES,
    ERASE_AFTER,
    SendCheckpoint,
    SendCommit,
    Settled,
    TableWriter,
)
from discobase_core.errors import (
    DatabaseCorruptionError,
    DatabaseTableError,
    DiscobaseError,
    NotFoundError,
    ReadOnlyError,
    RecordTooLargeError,
    RecordUnreadableError,
)
from discobase_core.hashing import FieldHasher, canonical_bytes, value_key
from discobase_core.lease import (
    COMMIT_BLOCK,
    RID_BLOCK,
    Fence,
    LeaseView,
    TableMark,
    merge_fences,
)
from discobase_core.log import (
    MAX_RECORD_BYTES,
    Delete,
    Entry,
    LogBlock,
    LogChunk,
    Put,
    assemble_chunks,
    chunk_files,
    decode_block,
    plan_blob,
)
from discobase_core.opening import LaneScan, Take, lanes_to_read, missing_commits
from discobase_core.reads import (
    BlockCache,
    FetchMessage,
    KnownMessages,
    ReadBlock,
    ReadOp,
    ReadPage,
    ReadPlan,
    Seen,
    Upcoming,
    decode_named_chunk,
)
from discobase_core.schema import TableSchema, check_compatible
from discobase_core.state import TableState, read_checkpoint, read_pages

if TYPE_CHECKING:
    from discobase._lease import Lease
    from discobase.table import Table

__all__ = ["CHECKPOINT_EVERY", "CompactionReport", "TableStore"]

log = logging.getLogger("discobase")

R = TypeVar("R", bound="Table")

CHECKPOINT_EVERY = CHECKPOINT_MESSAGES  # log messages between checkpoints at most
_FETCH_CONCURRENCY = 8
# Ids reserved ahead at most (after a crash, the next writer's ids jump by at most this).
_MAX_RIDS_AHEAD = 1 << 20
_Tail = list[tuple[int, discord.Message, bytes | None]]  # (lane, message, blob if read)


@dataclass(frozen=True, slots=True)
class CompactionReport:
    """What one `compact()` of a table did."""

    table: str
    messages_listed: int
    bytes_listed: int
    records_rewritten: int
    messages_deleted: int
    bytes_deleted: int
    messages_left: int  # garbage still to delete (Discord refused for now: retried later)


@dataclass(eq=False, slots=True)
class _Op:
    entry: Entry
    record: Table | None
    future: asyncio.Future[int]
    saving: bool = False  # the record's save(): its `_disco_saving` is cleared when over


def _maybe_sent(exc: BaseException) -> bool:
    """Whether a failed commit may have reached Discord (a send whose answer was lost, or
    a cancellation in the middle of one), as opposed to failing before anything was sent."""
    if isinstance(exc, DiscobaseError):
        return bool(exc.details.get("maybe_stored"))
    return not isinstance(exc, Exception)


def _seen(channel_io: ChannelIO, message: discord.Message) -> Seen[discord.Message]:
    """A message as the read planner sees it (discobase_core.reads)."""
    return Seen(message.id, channel_io.is_ours(message), tuple(file_names(message)), message)


class TableStore(Generic[R]):
    """The storage of one table; see the module docstring."""

    def __init__(
        self,
        model: type[R],
        name: str,
        channel_io: ChannelIO,
        *,
        cache_bytes: int,
        lanes: int = 4,
        lease: Lease | None = None,
        erase_after: float = ERASE_AFTER,
    ) -> None:
        self.model = model
        self.name = name
        self.io = channel_io  # lane 0, the table channel: checkpoints live here
        self.ios: list[ChannelIO | None] = [channel_io]  # None: a lane thread that is gone
        self.lane_count = max(1, lanes)
        self.lease = lease  # None: this store only reads
        self.hasher: FieldHasher[R] = FieldHasher(model)
        self.codec: RecordCodec[R] = RecordCodec(model, table=name)
        self.schema = TableSchema.from_model(name, model)
        self.state = TableState(table_schema=self.schema, fields=self.hasher.fields)
        self.engine: TableWriter | None = None  # the writer's scheduler (None: read-only)
        self._ops: dict[int, _Op] = {}  # queued or in-flight writes, by engine token
        self._pending_rids: dict[int, int] = {}
        self._wakeup = asyncio.Event()
        self._progress = asyncio.Event()  # set whenever an operation ends
        self._broken: DiscobaseError | None = None  # applying a commit failed: see _halt
        self._compacting: asyncio.Task[CompactionReport | None] | None = None
        # One compaction at a time: they share the engine's garbage lists, and one started
        # on its own during an explicit one left that one's last garbage undeleted.
        self._compaction_lock = asyncio.Lock()
        self.erase_after = erase_after
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._cache = BlockCache(cache_bytes)
        self._loading: dict[tuple[int, int], asyncio.Future[bytes | None]] = {}
        self._known: KnownMessages[discord.Message] = KnownMessages()
        self._replayed = (0, 0)  # log messages and bytes replayed at open
        self._wrote = False  # a database that only read leaves the channel as it found it
        self.notes: list[str] = []
        self.damage: list[str] = []  # what opening found damaged or missing, for people
        # The writer's term: its first commit number, reservations and last acknowledged.
        self.commits_from = 0
        self.rids_to = 0
        self._rids_marked: int | None = None  # next_rid at the last report
        self.commits_to = 0

    @property
    def acked(self) -> int:
        """The newest commit this process acknowledged (0: none)."""
        return self.engine.acked if self.engine is not None else 0

    @property
    def read_only(self) -> bool:
        return self.lease is None

    def _damaged(self, what: str) -> None:
        log.error("table %s: %s", self.name, what)
        self.damage.append(what)

    # -- opening ---------------------------------------------------------------------------

    async def open(self, view: LeaseView) -> None:
        """Load the latest readable checkpoint, replay the log after it (in every lane,
        ignoring what writers sent past their lease), reconcile the schema, and, as the
        writer, take this term's reservations and make sure the table has its lanes."""
        fences = view.fences(self.name)
        tail, checkpoint = await self._scan_table_channel(fences)
        self.state.fences = merge_fences(self.state.fences, fences)
        floor = self.state.replay_floor if checkpoint else 0
        if checkpoint is None:
            await self._discover_lanes()  # no checkpoint to name them
        await self._resolve_lanes()
        own_term = self.lease.term if self.lease is not None else None
        final = view.final_checkpoint(self.name, own_term=own_term)
        if lanes_to_read(checkpoint.id if checkpoint else None, final):
            for lane, channel_io in enumerate(self.ios[1:], start=1):
                if channel_io is not None:
                    tail += await self._lane_tail(lane, channel_io, floor)
        await self._replay(tail)
        self._check_acknowledged(view)
        changed = self._reconcile_schema()
        log.debug(
            "table %s: opened from checkpoint %s (floor %d), replayed %d messages: %d records, "
            "next commit %d",
            self.name,
            checkpoint.id if checkpoint else None,
            floor,
            len(tail),
            len(self.state),
            self.state.next_commit,
        )
        if self.lease is None:
            return
        before = self.state.fences
        rids, commits = view.reserved(self.name)
        self.state.next_rid = max(self.state.next_rid, rids)
        self.state.next_commit = max(self.state.next_commit, commits)
        self.commits_from = self.state.next_commit
        self.state.fences = merge_fences(before, [Fence(self.commits_from, None)])
        added = await self._ensure_lanes()
        self.engine = TableWriter.start(
            self.state,
            [io is not None for io in self.ios],
            checkpoint_messages=CHECKPOINT_EVERY,
            latest_checkpoint=checkpoint.id if checkpoint else 0,
        )
        self.engine.erase_after = self.erase_after
        self.engine.tail_messages, self.engine.tail_bytes = self._replayed
        if not checkpoint or changed or added or self.state.fences != before or tail:
            await self._send_checkpoint(self.engine.checkpoint())
        self._writer = asyncio.create_task(self._write_loop(), name=f"discobase-writer-{self.name}")

    async def _scan_table_channel(
        self, fences: Sequence[Fence]
    ) -> tuple[_Tail, discord.Message | None]:
        """The log messages the latest readable checkpoint does not cover, and that
        checkpoint (loaded into the state); `LaneScan` decides. A damaged checkpoint is
        named and skipped: the older one and the log since then give the same state."""
        tail: _Tail = []
        foreign = 0
        checkpoint: discord.Message | None = None
        scan = LaneScan(0, fences)
        async for message in self.io.history():
            if not self.io.is_ours(message):
                foreign += 1
                continue
            where = self.io.where(message.id)
            try:
                kind, commit, blob = await self._kind_of(self.io, message)
            except DatabaseCorruptionError as exc:
                self._damaged(f"skipped a damaged message: {exc.message}")
                continue
            take = scan.see(message.id, kind, commit, where=where)
            if take is Take.STOP:
                break
            if take is Take.TAIL:
                tail.append((0, message, blob))
            elif take is Take.LOAD:
                try:
                    await self._load_checkpoint(message, blob or await self.io.read(message))
                except DatabaseCorruptionError as exc:
                    self._damaged(f"checkpoint {where} is unreadable, using an older one: {exc}")
                    continue
                checkpoint = message
                scan.loaded(self.state.replay_floor)
        if foreign:
            log.info("table %s: ignored %d foreign messages in its channel", self.name, foreign)
        return tail, checkpoint

    @staticmethod
    async def _kind_of(
        channel_io: ChannelIO, message: discord.Message
    ) -> tuple[str, int, bytes | None]:
        """(kind, commit, blob if it had to be read) of one of our messages."""
        named = describe(message)
        if named is not None:
            return named[0], named[1], None
        blob = await channel_io.read(message)
        where = channel_io.where(message.id)
        kind, _ = unseal(blob, where=where)
        commit = 0
        if kind == "log":
            commit = decode_block(blob, where=where)[0].commit
        elif kind == "ckpt":  # its manifest's next commit is one past its own
            commit = read_checkpoint(blob, where=where)[0].next_commit - 1
        return kind, commit, blob

    async def _lane_tail(self, lane: int, channel_io: ChannelIO, floor: int) -> _Tail:
        """The log messages of a lane thread from commit `floor` on (newest first)."""
        tail: _Tail = []
        scan = LaneScan(lane, self.state.fences, floor)
        async for message in channel_io.history():
            if not channel_io.is_ours(message):
                continue
            try:
                kind, commit, blob = await self._kind_of(channel_io, message)
            except DatabaseCorruptionError as exc:
                self._damaged(f"skipped a damaged message in lane {lane}: {exc.message}")
                continue
            take = scan.see(message.id, kind, commit, where=channel_io.where(message.id))
            if take is Take.STOP:
                break
            if take is Take.TAIL:
                tail.append((lane, message, blob))
        return tail

    async def _discover_lanes(self) -> None:
        """The lane threads of a table whose checkpoints are all gone or damaged: the bot's
        threads of the table channel named `<channel>-lane-<n>` (lane n), archived ones
        included, so the records in them are found by the replay."""
        channel = self.io.channel
        if not isinstance(channel, discord.TextChannel):
            return
        pattern = re.compile(re.escape(channel.name) + r"-lane-(\d+)")
        threads = list(channel.threads)
        try:
            threads += [t async for t in channel.archived_threads(limit=None)]
        except discord.HTTPException as exc:
            raise translate(exc, f"listing the lane threads of {self.name}") from exc
        lanes: dict[int, int] = {}
        for thread in threads:
            match = pattern.fullmatch(thread.name)
            if match and thread.owner_id == self.io.bot_id:
                lanes.setdefault(int(match.group(1)), thread.id)
        if lanes:
            top = max(lanes)
            self.state.lanes = tuple(lanes.get(n, 0) for n in range(1, top + 1))
            log.warning(
                "table %s: found %d lane threads without a checkpoint", self.name, len(lanes)
            )

    async def _resolve_lanes(self) -> None:
        """ChannelIOs for the lane threads the checkpoint names (None for one that is gone:
        its records are unreadable, the others are not)."""
        guild = self.io.channel.guild
        for number, thread_id in enumerate(self.state.lanes[len(self.ios) - 1 :], start=1):
            thread = guild.get_thread(thread_id)
            if thread is None:
                try:
                    fetched = await guild.fetch_channel(thread_id)
                except discord.NotFound:
                    self._damaged(
                        f"lane thread {thread_id} (lane {number}) is gone (deleted?); the "
                        "records stored in it are unreadable"
                    )
                    self.ios.append(None)
                    continue
                except discord.HTTPException as exc:
                    raise translate(exc, f"opening lane {thread_id} of {self.name}") from exc
                if not isinstance(fetched, discord.Thread):
                    self._damaged(f"lane {thread_id} is not a thread; its records are unreadable")
                    self.ios.append(None)
                    continue
                thread = fetched
            self.ios.append(ChannelIO(thread, bot_id=self.io.bot_id))

    async def _ensure_lanes(self) -> bool:
        """Create the lane threads this table lacks; True if any was created."""
        channel = self.io.channel
        if not isinstance(channel, discord.TextChannel):
            return False
        created = False
        while sum(io is not None for io in self.ios) < self.lane_count:
            number = len(self.ios)
            try:
                thread = await channel.create_thread(
                    name=f"{channel.name}-lane-{number}",
                    type=discord.ChannelType.public_thread,
                    auto_archive_duration=10080,
                )
            except discord.HTTPException as exc:
                raise translate(exc, f"creating lane {number} of table {self.name}") from exc
            self.state.lanes = (*self.state.lanes, thread.id)
            self.ios.append(ChannelIO(thread, bot_id=self.io.bot_id))
            created = True
        return created

    async def _load_checkpoint(self, message: discord.Message, blob: bytes) -> None:
        where = self.io.where(message.id)
        manifest, pages = read_checkpoint(blob, where=where)
        pages_by_message: dict[int, Mapping[str, bytes | memoryview]] = {message.id: pages}
        others = manifest.page_messages - {0, message.id}
        semaphore = asyncio.Semaphore(_FETCH_CONCURRENCY)

        async def load(mid: int) -> None:
            async with semaphore:
                try:  # a page message listed with the checkpoint costs no request
                    other = self.io.listed.get(mid) or await self.io.fetch(mid)
                except DiscobaseError as exc:
                    if isinstance(exc.__cause__, discord.NotFound):
                        raise DatabaseCorruptionError(
                            f"page message {mid} of the checkpoint is gone",
                            where=self.io.where(mid),
                            reason="missing message",
                        ) from None
                    raise
                data = await self.io.read(other)
            kind, _ = unseal(data, where=self.io.where(mid))
            if kind == "ckpt":
                pages_by_message[mid] = read_checkpoint(data, where=self.io.where(mid))[1]
            else:
                pages_by_message[mid] = read_pages(data, where=self.io.where(mid))

        await asyncio.gather(*(load(mid) for mid in others))
        self.state = TableState.from_checkpoint(manifest, message.id, pages_by_message, where=where)

    async def _replay(self, tail: _Tail) -> None:
        semaphore = asyncio.Semaphore(_FETCH_CONCURRENCY)

        async def block_of(
            lane: int, message: discord.Message, blob: bytes | None
        ) -> LogBlock | None:
            channel_io = self.ios[lane]
            assert channel_io is not None
            try:
                if blob is not None:
                    return decode_block(blob, where=channel_io.where(message.id))[0]
                async with semaphore:
                    return await self._read_block(channel_io, message)
            except DatabaseCorruptionError as exc:
                self._damaged(f"a log message after the checkpoint is unreadable: {exc}")
                return None

        decoded = await asyncio.gather(*(block_of(*item) for item in tail))
        blocks = [
            (lane, message.id, block)
            for (lane, message, _), block in zip(tail, decoded, strict=True)
            if block is not None
        ]
        ignored = self.state.replay(blocks)
        if ignored:
            log.warning(
                "table %s: ignored %d messages of unfinished or fenced commits (never "
                "acknowledged)",
                self.name,
                len(ignored),
            )
        for _, message_id, block in blocks:
            self._cache.put(message_id, block)
        payloads = [e.payload for _, _, b in blocks for e in b.entries if isinstance(e, Put)]
        self._replayed = (len(blocks), sum(64 + len(p) for p in payloads))

    def _check_acknowledged(self, view: LeaseView) -> None:
        """Writers report their last acknowledged commit in the lease: a commit the log no
        longer holds was deleted by someone, and its writes are lost or reverted."""
        for what in missing_commits(view.acked(self.name), self.state.next_commit):
            self._damaged(what)

    def _reconcile_schema(self) -> bool:
        """Check the stored schema against the class; apply allowed changes. True if changed."""
        stored = self.state.table_schema
        self.notes = check_compatible(stored, self.schema)
        # A new field's value for older records is fixed once here and kept in the schema.
        schema = self.schema.evolve(stored, self.model)
        backfill = schema.backfill_values(self.model)
        for name in self.hasher.fields:
            if name not in self.state.fields:
                self.state.add_field(name, self.hasher.key(name, backfill[name]))
        self.codec = RecordCodec(self.model, table=self.name, backfill=backfill)
        for note in self.notes:
            log.info("table %s: %s", self.name, note)
        if stored == schema:
            return False
        self.state.table_schema = schema
        return True

    # -- the lease -------------------------------------------------------------------------

    def mark(self, final: bool = False) -> TableMark:
        """What this table reports in the next lease beat, reserving ids and commit
        numbers ahead (the writer never uses any beyond a landed beat's reservation). The
        final report, at release, gives back what was reserved and not used, so the next
        writer goes on where this one stopped."""
        if final:
            return TableMark(
                self.state.next_rid,
                self.state.next_commit,
                self.commits_from,
                self.acked,
                self._covering_checkpoint(),
            )
        # Ahead by at least twice the ids taken since the last report: a bulk load takes
        # ids faster than RID_BLOCK a beat, and a commit past the reservation waits for a
        # beat of its own, behind the lease channel's 5 sends per 5 s (seconds per commit).
        next_rid = self.state.next_rid
        taken = next_rid - (next_rid if self._rids_marked is None else self._rids_marked)
        self._rids_marked = next_rid
        ahead = min(max(RID_BLOCK, 2 * taken), _MAX_RIDS_AHEAD)
        if next_rid + ahead // 2 > self.rids_to:
            self.rids_to = next_rid + ahead
        if self.state.next_commit + COMMIT_BLOCK // 2 > self.commits_to:
            self.commits_to = self.state.next_commit + COMMIT_BLOCK
        return TableMark(self.rids_to, self.commits_to, self.commits_from, self.acked)

    def _covering_checkpoint(self) -> int:
        """The latest checkpoint's message id if it holds every commit this writer made
        (nothing queued, in flight, or numbered since it was planned); else 0."""
        engine = self.engine
        if (
            engine is None
            or self._broken is not None
            or not engine.idle
            or self.state.replay_floor != self.state.next_commit
        ):
            return 0
        return engine.latest_checkpoint

    def _read_only_error(self) -> ReadOnlyError:
        return ReadOnlyError(
            f"table {self.name} is open read-only",
            hint="open the Database without read_only=True to write",
            table=self.name,
        )

    def _writer_lease(self) -> Lease:
        if self.lease is None:
            raise self._read_only_error()
        return self.lease

    # -- writing ---------------------------------------------------------------------------

    def _keys(self, record: R) -> tuple[int, ...]:
        if self.state.fields == self.hasher.fields:  # the usual case: one order
            return self.hasher.key_tuple(record)
        keys = self.hasher.keys(record)
        return tuple(keys[name] for name in self.state.fields)

    def _enqueue(self, op: _Op) -> asyncio.Future[int]:
        lease = self._writer_lease()
        lease.check()
        if self._broken is not None:
            raise DatabaseTableError(
                f"table {self.name} stopped writing: {self._broken.message}",
                hint="open the database again to write",
            )
        if self._closing or self._writer is None or self._writer.done():
            raise DatabaseTableError(
                f"table {self.name} is closed", hint="open the database again to write"
            )
        assert self.engine is not None
        rid = op.entry.rid
        self._pending_rids[rid] = self._pending_rids.get(rid, 0) + 1
        self._ops[self.engine.submit(op.entry)] = op
        self._wakeup.set()
        return op.future

    def exists(self, rid: int) -> bool:
        return rid in self.state or rid in self._pending_rids

    def put(self, record: R, *, new: bool) -> asyncio.Future[int]:
        """Queue a write of `record` (encoded and checked now); the future gives its id.

        A record whose earlier write failed with its outcome unknown keeps its id, so
        writing it again stores it once whichever way the first attempt went."""
        self._writer_lease()
        payload = self.codec.encode(record)
        if len(payload) > MAX_RECORD_BYTES - 1024:
            raise RecordTooLargeError(
                f"this {self.name} record encodes to {len(payload)} bytes; a record can be at "
                f"most {MAX_RECORD_BYTES - 1024} bytes. Nothing was written.",
                size=len(payload),
                limit=MAX_RECORD_BYTES - 1024,
                table=self.name,
            )
        keys = self._keys(record)
        private = record._private()
        rid = private["_disco_id"]
        if rid is None:
            rid = self.state.allocate_rid()
        elif not new and not private["_disco_unsure"] and not self.exists(rid):
            raise NotFoundError(
                f"{self.name} record {rid} does not exist (deleted?)", table=self.name, id=rid
            )
        loop = asyncio.get_running_loop()
        future = self._enqueue(_Op(Put(rid, keys, payload), record, loop.create_future(), new))
        private["_disco_id"] = rid
        return future

    def delete(self, record: R) -> asyncio.Future[int]:
        self._writer_lease()
        rid = record.disco_id
        if rid is None or not (record._disco_unsure or self.exists(rid)):
            raise NotFoundError(
                f"this {self.name} record is not stored (never saved, or already deleted)",
                table=self.name,
                id=rid,
            )
        future = asyncio.get_running_loop().create_future()
        return self._enqueue(_Op(Delete(rid), record, future))

    def _nonce(self, channel_io: ChannelIO, commit: int, part: str) -> str:
        """Unique per writer term, channel, commit and part: a retried send carries the
        same nonce (Discord answers it with the message it already made), and no two
        writers ever share one."""
        term = self.lease.term if self.lease is not None else 0
        raw = f"{term}:{channel_io.channel.id}:{commit}:{part}".encode()
        return hashlib.sha1(raw).hexdigest()[:25]

    async def _write_loop(self) -> None:
        """Drive the engine: start what it hands out, wait for a result, a new write or a
        paced lane, repeat; at close, until everything queued is written."""
        engine = self.engine
        assert engine is not None
        loop = asyncio.get_running_loop()
        running: set[asyncio.Task[None]] = set()
        try:
            while True:
                # Without the lease every checkpoint fails at once: do not plan them.
                lost = self.lease is not None and self.lease.lost is not None
                checkpoints = not self._closing and not lost
                now = loop.time()
                if (
                    checkpoints
                    and self._compacting is None
                    and not self._compaction_lock.locked()
                    and engine.compaction_due(now)
                ):
                    self._compacting = asyncio.create_task(self._auto_compact())
                for op in engine.poll(now, checkpoints=checkpoints):
                    task = asyncio.create_task(self._perform(op))
                    running.add(task)
                    task.add_done_callback(running.discard)
                if self._broken is not None or (self._closing and engine.idle):
                    return
                self._wakeup.clear()
                wake = engine.wake_at(checkpoints=checkpoints)
                if wake is None:
                    await self._wakeup.wait()
                    continue
                # Not asyncio.wait_for: before Python 3.12 it can swallow a cancellation that
                # arrives as the event is set, and the loop then never ends (a crash() hung).
                timer = loop.call_at(wake, self._wakeup.set)
                try:
                    await self._wakeup.wait()
                finally:
                    timer.cancel()
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)

    async def _perform(self, op: SendCommit | SendCheckpoint | DeleteMessages) -> None:
        try:
            if isinstance(op, SendCommit):
                await self._send_commit(op)
            elif isinstance(op, DeleteMessages):
                await self._delete_messages(op)
            else:
                try:
                    await self._send_checkpoint(op)
                except DiscobaseError as exc:
                    log.warning("table %s: checkpoint failed, will retry: %s", self.name, exc)
        finally:
            self._wakeup.set()
            self._progress.set()

    async def _until(self, condition: Callable[[], bool]) -> None:
        """Wait until `condition()` holds, checking whenever an operation ends."""
        while not condition():
            if self.lease is not None and self.lease.lost is not None:
                raise self.lease.error(maybe_stored=False)  # no checkpoint can land now
            if self._closing or self._writer is None or self._writer.done():
                raise DatabaseTableError(
                    f"table {self.name} closed while waiting for its writer",
                    hint="keep the database open until compact() returns",
                )
            self._progress.clear()
            self._wakeup.set()
            await self._progress.wait()

    def _paced(self, lane: int, channel_io: ChannelIO) -> None:
        """Tell the engine what Discord left of `lane`'s send budget."""
        if self.engine is not None:
            remaining, resets_in = channel_io.send_budget()
            self.engine.paced(lane, asyncio.get_running_loop().time(), remaining, resets_in)

    async def _send_commit(self, op: SendCommit) -> None:
        engine = self.engine
        assert engine is not None
        lease = self._writer_lease()
        channel_io = self.ios[op.lane]
        assert channel_io is not None
        sent: list[int] = []
        try:
            await lease.ready_to_send()
            await lease.ensure(self.name, op.top_rid, op.commit)
            for block, plan in zip(op.blocks, op.plans, strict=True):
                try:
                    message = await channel_io.send(
                        plan, nonce=self._nonce(channel_io, op.commit, str(block.part))
                    )
                finally:
                    self._paced(op.lane, channel_io)
                sent.append(message.id)
            late = [mid for mid in sent if not lease.acknowledgeable(mid)]
            if late:
                await self._withdraw(channel_io, late)
                raise lease.error(maybe_stored=True)
        except BaseException as exc:
            attempted = bool(sent) or _maybe_sent(exc)
            self._settled(engine.failed(op.commit, exc, attempted=attempted))
            if not isinstance(exc, Exception):
                raise
            log.warning(
                "table %s: commit %d (%d writes) failed: %s",
                self.name,
                op.commit,
                sum(len(b.entries) for b in op.blocks),
                exc,
            )
            return
        if log.isEnabledFor(logging.DEBUG):  # the entries list is not built otherwise
            log.debug(
                "table %s: commit %d in lane %d, messages %s: %s",
                self.name,
                op.commit,
                op.lane,
                sent,
                [(type(e).__name__, e.rid) for b in op.blocks for e in b.entries][:8],
            )
        try:
            settled = engine.committed(op.commit, sent)
        except DiscobaseError as exc:  # the state refused the commit (corrupt or foreign)
            self._halt(exc)
            return
        self._settled(settled)

    def _halt(self, exc: DiscobaseError) -> None:
        """Stop writing this table after applying a commit failed: every write waiting
        fails with the reason, and so does every later one (the log on Discord is intact;
        reopening reads it again). Never a silent hang."""
        log.error("table %s: writing stopped: %s", self.name, exc)
        self._broken = exc
        for op in list(self._ops.values()):
            self._fail([op], exc, attempted=True)
        self._ops.clear()
        self._closing = True
        self._wakeup.set()

    def _settled(self, settled: list[Settled]) -> None:
        """Resolve the futures of writes whose commits are over (in commit order)."""
        for outcome in settled:
            ops = [self._ops.pop(token) for token in outcome.tokens]
            if outcome.error is not None:
                self._fail(ops, outcome.error, attempted=outcome.attempted)
                continue
            for message_id, block in outcome.stored:
                self._cache.put(message_id, block)
            self._wrote = True
            assert self.lease is not None
            self.lease.note_acked()
            for op in ops:
                self._settle(op)
                rid = op.entry.rid
                if op.record is not None:
                    private = op.record._private()
                    if op.saving:
                        private["_disco_saving"] = None
                    if private["_disco_id"] == rid:
                        private["_disco_unsure"] = False
                        if type(op.entry) is Delete and not self.exists(rid):
                            private["_disco_id"] = None
                if not op.future.done():
                    op.future.set_result(rid)

    def _fail(self, batch: list[_Op], exc: BaseException, *, attempted: bool) -> None:
        """Fail every write of a commit. A write that may have been stored keeps its id on
        its record, so the caller can write it again without storing it twice."""
        maybe = attempted
        for op in batch:
            self._settle(op)
            record = op.record
            if op.saving and record is not None:
                record._private()["_disco_saving"] = None
            if isinstance(op.entry, Put) and record is not None and record.disco_id == op.entry.rid:
                if maybe:
                    record._disco_unsure = True
                elif not self.exists(op.entry.rid):
                    record._disco_id = None
            if not op.future.done():
                op.future.set_exception(exc)

    async def _withdraw(self, channel_io: ChannelIO, message_ids: list[int]) -> None:
        """Delete messages sent after the lease ran out (best effort: readers ignore them
        anyway once another writer fenced this one off)."""
        try:
            await channel_io.delete(message_ids)
        except DiscobaseError as exc:
            log.warning("table %s: could not withdraw late messages: %s", self.name, exc)

    def _settle(self, op: _Op) -> None:
        rid = op.entry.rid
        left = self._pending_rids.get(rid, 0) - 1
        if left > 0:
            self._pending_rids[rid] = left
        else:
            self._pending_rids.pop(rid, None)

    async def _send_checkpoint(self, op: SendCheckpoint) -> None:
        """Write the checkpoint the engine planned: its pages, then its manifest."""
        engine = self.engine
        assert engine is not None
        try:
            lease = self._writer_lease()
            await lease.ready_to_send()
            await lease.ensure(self.name, op.top_rid, op.commit)
            page_ids: list[int] = []
            for number, blob in enumerate(op.plan.page_blobs):
                try:
                    message = await self.io.send(
                        plan_blob("pages", blob, commit=op.commit, inline=False),
                        nonce=self._nonce(self.io, op.commit, f"p{number}"),
                    )
                finally:
                    self._paced(0, self.io)
                page_ids.append(message.id)
            final = op.plan.final_blob(page_ids)
            try:
                message = await self.io.send(
                    plan_blob("ckpt", final, commit=op.commit),
                    nonce=self._nonce(self.io, op.commit, "ckpt"),
                )
            finally:
                self._paced(0, self.io)
            if not lease.acknowledgeable(message.id):
                await self._withdraw(self.io, [*page_ids, message.id])
                raise lease.error(maybe_stored=True)
        except BaseException:
            engine.checkpoint_failed(op)
            raise
        engine.checkpointed(op, page_ids, message.id)
        log.debug("table %s: checkpoint in message %d", self.name, message.id)

    async def _delete_messages(self, op: DeleteMessages) -> None:
        engine = self.engine
        assert engine is not None
        channel_io = self.ios[op.lane]
        log.debug(
            "table %s: deleting from lane %d: %s",
            self.name,
            op.lane,
            ", ".join(f"{m.message_id} ({m.kind} {m.commit})" for m in op.messages),
        )
        try:
            if channel_io is not None:  # a lane thread that is gone took its messages along
                await channel_io.erase([m.message_id for m in op.messages])
        except BaseException as exc:
            engine.delete_failed(op, asyncio.get_running_loop().time())
            if not isinstance(exc, Exception):
                raise
            log.warning("table %s: compaction could not delete messages: %s", self.name, exc)
            return
        engine.deleted(op)

    async def _auto_compact(self) -> CompactionReport | None:
        """A compaction the writer starts on its own (see `TableWriter.compaction_due`)."""
        try:
            report = await self.compact()
        except DiscobaseError as exc:
            log.warning("table %s: compaction stopped, will try again: %s", self.name, exc)
            if self.engine is not None:
                self.engine.compaction_failed(asyncio.get_running_loop().time())
            return None
        finally:
            self._compacting = None
        log.info(
            "table %s: compacted: %d records rewritten, %d messages (%d bytes) deleted",
            self.name,
            report.records_rewritten,
            report.messages_deleted,
            report.bytes_deleted,
        )
        return report

    async def compact(self) -> CompactionReport:
        """Reclaim space and erase what was deleted or overwritten, now: a checkpoint (so it
        covers the whole log), a sweep of every lane, the live records of messages that also
        hold dead ones written again, two more checkpoints, then the deletes. Writes go on
        meanwhile; see discobase_core.compaction for why nothing can be lost."""
        async with self._compaction_lock:
            return await self._compact()

    async def _compact(self) -> CompactionReport:
        engine = self.engine
        if engine is None:
            raise self._read_only_error()
        engine.compaction_started()
        before = (engine.compaction.deleted_messages, engine.compaction.deleted_bytes)
        failures = engine.compaction.failures
        rewritten = engine.compaction.rewritten_records
        await self.checkpoint()
        listing = await self._sweep()
        to_read = engine.sweep(listing)
        log.debug(
            "table %s: compaction swept %d messages (floor %d): %d to read, garbage %s",
            self.name,
            len(listing),
            self.state.replay_floor,
            len(to_read),
            sorted(engine.compaction.pending),
        )
        for lane in sorted({listed.lane for listed in to_read}):
            wanted = {listed.message_id: listed for listed in to_read if listed.lane == lane}
            blocks = await self._read_log_blocks(lane, set(wanted))
            for message_id, block in blocks.items():
                engine.swept(wanted[message_id], block)
        await self._until(lambda: not engine.rewriting)
        await self._retire(failures)
        # The checkpoints written while the rewrites went out are superseded now (at a
        # million records each is tens of MB): a second sweep, of the table channel's
        # checkpoints alone, retires them too.
        superseded = [listed for listed in await self._sweep(lanes=[0]) if listed.kind != "log"]
        engine.sweep(superseded)
        if engine.compaction.pending:
            await self._retire(failures)
        left = len(engine.compaction.deletable) + sum(
            len(op.messages) for op in engine.compaction.deleting.values()
        )
        if left:
            log.warning(
                "table %s: %d messages are left to delete (Discord refused for now); the "
                "writer tries again in the background",
                self.name,
                left,
            )
        return CompactionReport(
            table=self.name,
            messages_listed=len(listing),
            bytes_listed=sum(listed.size for listed in listing),
            records_rewritten=engine.compaction.rewritten_records - rewritten,
            messages_deleted=engine.compaction.deleted_messages - before[0],
            bytes_deleted=engine.compaction.deleted_bytes - before[1],
            messages_left=left,
        )

    async def _retire(self, failures: int) -> None:
        """Two checkpoints, after which the garbage found so far is needed by neither the
        newest nor the one before it; then its deletes (unless Discord refuses them)."""
        engine = self.engine
        assert engine is not None
        await self.checkpoint()  # the rewrites are in: the garbage retires
        await self.checkpoint()  # and now nothing needs it
        await self._until(lambda: not engine.deleting or engine.compaction.failures > failures)

    async def _sweep(self, lanes: Sequence[int] | None = None) -> list[Listed]:
        """Every one of our messages in every lane (or `lanes`), one history request per
        100."""
        listing: list[Listed] = []
        for lane, channel_io in enumerate(self.ios):
            if channel_io is None or (lanes is not None and lane not in lanes):
                continue
            async for message in channel_io.history():
                if not channel_io.is_ours(message):
                    continue
                try:
                    kind, commit, _ = await self._kind_of(channel_io, message)
                except DatabaseCorruptionError as exc:
                    log.warning("table %s: compaction skips %s", self.name, exc.message)
                    continue
                size = len(message.content) + sum(a.size for a in message.attachments)
                listing.append(Listed(lane, message.id, kind, commit, size))
        return listing

    async def _read_log_blocks(self, lane: int, wanted: set[int]) -> dict[int, LogBlock]:
        """The log blocks of messages `wanted` of `lane` (paged: 100 messages a request)."""
        channel_io = self.ios[lane]
        assert channel_io is not None
        found: dict[int, LogBlock] = {}
        pending = set(wanted)
        semaphore = asyncio.Semaphore(_FETCH_CONCURRENCY)

        async def block_of(message: discord.Message) -> LogBlock | None:
            try:
                async with semaphore:
                    return await self._read_block(channel_io, message)
            except DatabaseCorruptionError:
                return None  # damaged: compaction leaves it alone

        while pending:
            page = await channel_io.page_after(min(pending) - 1)
            chosen = [m for m in page if m.id in pending and channel_io.is_ours(m)]
            decoded = await asyncio.gather(*(block_of(m) for m in chosen))
            for message, block in zip(chosen, decoded, strict=True):
                pending.discard(message.id)
                if block is not None:
                    found[message.id] = block
            if len(page) < channel_io.PAGE:
                break
            pending = {mid for mid in pending if mid > page[-1].id}
        return found

    async def checkpoint(self) -> None:
        """Write a checkpoint now (once what is in flight has landed), e.g. after mending
        the index in place."""
        engine = self.engine
        if engine is None:
            raise self._read_only_error()
        target = engine.request_checkpoint()
        await self._until(lambda: engine.checkpoints_done >= target)

    async def close(self) -> None:
        """Write everything queued, then a checkpoint if anything changed."""
        self._closing = True
        self._wakeup.set()
        if self._compacting is not None:  # it resumes at the next open; nothing is lost
            self._compacting.cancel()
            await asyncio.gather(self._compacting, return_exceptions=True)
        if self._writer is not None:
            await self._writer
        if (
            self.lease is None
            or self.lease.lost is not None
            or self.engine is None
            or self._broken is not None
        ):
            return
        if self._wrote and self.engine.tail_messages and self.state.dirty():
            try:
                await self._send_checkpoint(self.engine.checkpoint())
            except DiscobaseError as exc:
                log.warning(
                    "table %s: final checkpoint failed (the log is intact): %s", self.name, exc
                )

    # -- reading ---------------------------------------------------------------------------

    async def _read_block(self, channel_io: ChannelIO, message: discord.Message) -> LogBlock:
        """The whole log block of one message, whatever its layout (every attachment of a
        chunked message). Raises DatabaseCorruptionError if any of it is damaged, or if the
        message holds no log block."""
        where = channel_io.where(message.id)
        names = file_names(message)
        if chunk_files(names) is None:
            return decode_block(await channel_io.read(message), where=where)[0]
        files = await channel_io.read_files(message)
        chunks = [self._decode_chunk(channel_io, message, name, data) for name, data in files]
        return assemble_chunks(chunks, where=where)

    @staticmethod
    def _decode_chunk(
        channel_io: ChannelIO, message: discord.Message, name: str, data: bytes
    ) -> LogChunk:
        where = f"attachment {name} of {channel_io.where(message.id)}"
        return decode_named_chunk(name, data, where=where)

    def _where(self, lane: int, message_id: int) -> str:
        channel_io = self.ios[lane] if lane < len(self.ios) else None
        return channel_io.where(message_id) if channel_io else f"message {message_id} (lane {lane})"

    async def _load_blocks(
        self,
        wanted: set[tuple[int, int, int]],
        ahead: Sequence[tuple[int, int, int]] = (),
    ) -> tuple[dict[tuple[int, int], bytes | None], dict[tuple[int, int], str]]:
        """The payloads of the `wanted` (lane, message id, entry) log entries, by (message
        id, entry) (None: the entry is a delete, or there is no such entry), and why each
        that cannot be read cannot (gone or damaged: a damaged chunk costs only its own
        entries). What to read is the `ReadPlan`'s to decide (discobase_core.reads; `ahead`:
        the entries the caller reads next, so a scan reads history pages, not messages one by
        one); this performs its operations. Entries another read is loading are awaited,
        not read twice."""
        lost = [lane for lane, channel_io in enumerate(self.ios) if channel_io is None]
        plan: ReadPlan[discord.Message] = ReadPlan(
            self.name,
            self._cache,
            self._known,
            wanted,
            ahead=ahead,
            lost_lanes=lost,
            where=self._where,
        )
        others: dict[tuple[int, int], asyncio.Future[bytes | None]] = {}
        mine: list[tuple[int, int, int]] = []
        for lane, message_id, entry in plan.cached():
            key = (message_id, entry)
            if key in self._loading:
                others[key] = self._loading[key]
            else:
                mine.append((lane, message_id, entry))
        loop = asyncio.get_running_loop()
        futures = {(mid, entry): loop.create_future() for _, mid, entry in mine}
        self._loading.update(futures)
        try:
            await self._drive_reads(plan, plan.start(mine))
            for key, payload in plan.found.items():
                future = futures.get(key)
                if future is not None and not future.done():
                    future.set_result(payload)
        except BaseException as exc:
            for future in futures.values():
                if not future.done():
                    future.set_exception(exc)
                    future.exception()  # retrieved: the waiters re-raise it
            raise
        finally:
            for key, future in futures.items():
                self._loading.pop(key, None)
                if not future.done():
                    future.set_exception(
                        RecordUnreadableError(plan.failed.get(key, "unreadable"), table=self.name)
                    )
                    future.exception()
        found, failed = plan.found, plan.failed
        for key, other in others.items():
            try:
                found[key] = await other
            except RecordUnreadableError as exc:
                failed[key] = exc.message
        return found, failed

    async def _drive_reads(
        self, plan: ReadPlan[discord.Message], first: list[ReadOp[discord.Message]]
    ) -> None:
        """Perform the plan's operations (up to _FETCH_CONCURRENCY at once) until it has
        none left; a failure that is not about one message's data fails the whole read."""
        semaphore = asyncio.Semaphore(_FETCH_CONCURRENCY)
        running: set[asyncio.Task[list[ReadOp[discord.Message]]]] = set()

        def launch(ops: list[ReadOp[discord.Message]]) -> None:
            for op in ops:
                running.add(asyncio.create_task(self._perform_read(plan, op, semaphore)))

        launch(first)
        try:
            while running:
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    running.discard(task)
                    launch(task.result())
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _perform_read(
        self,
        plan: ReadPlan[discord.Message],
        op: ReadOp[discord.Message],
        semaphore: asyncio.Semaphore,
    ) -> list[ReadOp[discord.Message]]:
        """One operation of a read plan, reported back to it: its next operations."""
        channel_io = self.ios[op.lane]
        assert channel_io is not None
        if isinstance(op, ReadPage):
            async with semaphore:
                page = await channel_io.page_after(op.after)
            return plan.page_read(op, [_seen(channel_io, message) for message in page])
        if isinstance(op, FetchMessage):
            try:
                async with semaphore:
                    message = await channel_io.fetch(op.message_id)
            except DiscobaseError as exc:
                if not isinstance(exc.__cause__, discord.NotFound):
                    raise
                return plan.fetched(op, None)
            return plan.fetched(op, _seen(channel_io, message))
        try:
            if isinstance(op, ReadBlock):
                if not op.message.names:  # inline: nothing to download
                    return plan.block_read(op, await channel_io.read(op.message.handle))
                async with semaphore:
                    blob = await channel_io.read(op.message.handle)
                return plan.block_read(op, blob)
            async with semaphore:
                files = await channel_io.read_files(op.message.handle, op.names)
            return plan.chunks_read(op, files)
        except DatabaseCorruptionError as exc:
            return plan.read_failed(op, exc.message)
        except DiscobaseError as exc:
            if not isinstance(exc.__cause__, discord.NotFound):
                raise
            return plan.read_failed(op, "gone", gone=True)

    def _unreadable(self, rids: Sequence[int], where: str, why: str) -> RecordUnreadableError:
        shown = ", ".join(map(str, rids[:20])) + (" ..." if len(rids) > 20 else "")
        return RecordUnreadableError(
            f"{self.name} record{'s' if len(rids) > 1 else ''} {shown} cannot be read: {why}",
            hint="the other records are unaffected; `discobase check` lists every damaged "
            "record, and saving a record again (record.update()) rewrites it",
            table=self.name,
            ids=list(rids),
            where=where,
            reason=why,
        )

    async def payloads(
        self, rids: Sequence[int], *, ahead: Sequence[tuple[int, int, int]] = ()
    ) -> list[tuple[int, bytes, str]]:
        """(id, encoded record, where it is stored) of the live records among `rids`, in
        their order; RecordUnreadableError names the records that are damaged or gone.
        `ahead`: (lane, message id, entry) of what the caller reads next (`Upcoming`)."""
        located = [(rid, loc) for rid in rids if (loc := self.state.location(rid)) is not None]
        loaded, failed = await self._load_blocks(
            {(loc.lane, loc.message_id, loc.entry) for _, loc in located}, ahead
        )
        if failed:
            (mid, _), why = min(failed.items())
            hit = [rid for rid, loc in located if (loc.message_id, loc.entry) in failed]
            error = self._unreadable(hit, f"message {mid}", why)
            # A follower's view may predate a compaction that moved these records: the
            # caller reads the table again (Database.refresh) and retries once.
            error.details["stale_view"] = self.lease is None and "is gone" in why
            raise error
        found: list[tuple[int, bytes, str]] = []
        for rid, loc in located:
            channel_io = self.ios[loc.lane]
            where = channel_io.where(loc.message_id) if channel_io else f"lane {loc.lane}"
            payload = loaded[(loc.message_id, loc.entry)]
            if payload is None:
                raise self._unreadable([rid], where, "its location holds no record")
            found.append((rid, payload, where))
        return found

    def upcoming(self, rids: Sequence[int]) -> Upcoming:
        """Where the records `rids` lie, in order, for a caller that reads them in batches
        (pass `.after(end of the batch)` as `payloads(ahead=...)`)."""
        return Upcoming(
            (loc.lane, loc.message_id, loc.entry) if loc is not None else None
            for loc in map(self.state.location, rids)
        )

    def decode(self, rid: int, payload: bytes, where: str) -> R:
        """The record `rid` from its stored bytes (damage named as RecordUnreadableError)."""
        try:
            record = self.codec.decode(payload, where=where)
        except DatabaseCorruptionError as exc:
            raise self._unreadable([rid], where, exc.message) from None
        record._disco_id = rid
        return record

    async def find(self, query: Mapping[str, Any], *, limit: int | None = None) -> list[R]:
        """Records matching every (field, value) of `query`, oldest first."""
        values = {name: self.hasher.validate(name, value) for name, value in query.items()}
        keys = {name: value_key(value) for name, value in values.items()}
        wanted = {name: canonical_bytes(value) for name, value in values.items()}
        rids = self.state.candidates(keys)
        found: list[R] = []
        step = 512
        upcoming = self.upcoming(rids if len(rids) > step else ())
        for start in range(0, len(rids), step):
            batch = rids[start : start + step]
            for rid, payload, where in await self.payloads(
                batch, ahead=upcoming.after(start + step)
            ):
                record = self.decode(rid, payload, where)
                if any(
                    canonical_bytes(getattr(record, name)) != value
                    for name, value in wanted.items()
                ):
                    continue  # a 64-bit hash collision: not a match
                found.append(record)
                if limit is not None and len(found) >= limit:
                    return found
        return found

    async def count(self, query: Mapping[str, Any]) -> int:
        if not query:
            return len(self.state)
        return len(await self.find(query))
