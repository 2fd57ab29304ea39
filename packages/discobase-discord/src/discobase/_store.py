"""One table on Discord: its channel's log, a group-committing writer, and a block cache.

Writes are appended to the table's channel as log blocks (discobase_core.log). Concurrent
writes share commits: a single writer task takes everything queued, writes it in as few
messages as Discord's limits allow, and only then applies it to the in-memory state and
resolves each caller's future, so `await save()` returns once the record is durable.
Every `CHECKPOINT_EVERY` log messages (and at close) the writer appends a checkpoint of the
index (discobase_core.state), so opening a table reads one history page and a few index
pages, never every record.

Discord lets a bot send about 5 messages per 5 s per channel, so commits take turns over
several lanes: the table channel and threads of it (threads do not count towards a server's
500 channels). Commits are numbered; replay merges the lanes by commit number.
Checkpoints always go to the table channel.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import discord

from discobase._discord_io import ChannelIO, describe, translate
from discobase_core.codec import RecordCodec, unseal
from discobase_core.errors import (
    DatabaseCorruptionError,
    DatabaseTableError,
    DiscobaseError,
    NotFoundError,
    RecordTooLargeError,
)
from discobase_core.hashing import FieldHasher, canonical_bytes, value_key
from discobase_core.log import (
    MAX_RECORD_BYTES,
    Delete,
    Entry,
    LogBlock,
    Put,
    decode_block,
    plan_blob,
    plan_commit,
)
from discobase_core.schema import TableSchema, check_compatible
from discobase_core.state import TableState, read_checkpoint, read_pages

if TYPE_CHECKING:
    from discobase.table import Table

__all__ = ["CHECKPOINT_EVERY", "TableStore"]

log = logging.getLogger("discobase")

R = TypeVar("R", bound="Table")

CHECKPOINT_EVERY = 64  # log messages between checkpoints: bounds the replay at open
# Records per commit, in bytes: a commit is one message, and a cold read downloads the whole
# message holding a record, so commits stay small enough to read one record cheaply (a record
# bigger than this still gets a commit of its own, up to MAX_RECORD_BYTES).
_BATCH_BYTES = 2 * 1024 * 1024
_FETCH_CONCURRENCY = 8
_Payloads = tuple[bytes | None, ...]
_Tail = list[tuple[int, discord.Message, bytes | None]]  # (lane, message, blob if read)


@dataclass(eq=False)
class _Op:
    entry: Entry
    record: Table | None
    future: asyncio.Future[int] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def size(self) -> int:
        return 64 + (len(self.entry.payload) if isinstance(self.entry, Put) else 0)


class _BlockCache:
    """Decoded log blocks by message id, least recently used first out, bounded in bytes."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.size = 0
        self._blocks: OrderedDict[int, _Payloads] = OrderedDict()

    def get(self, message_id: int) -> _Payloads | None:
        payloads = self._blocks.get(message_id)
        if payloads is not None:
            self._blocks.move_to_end(message_id)
        return payloads

    def put(self, message_id: int, block: LogBlock) -> _Payloads:
        """Cache `block`; returns its payloads (None for deletes), by entry number."""
        payloads = tuple(e.payload if isinstance(e, Put) else None for e in block.entries)
        old = self._blocks.pop(message_id, None)
        if old is not None:
            self.size -= _weight(old)
        self._blocks[message_id] = payloads
        self.size += _weight(payloads)
        while self.size > self.budget and len(self._blocks) > 1:
            _, evicted = self._blocks.popitem(last=False)
            self.size -= _weight(evicted)
        return payloads


def _weight(payloads: _Payloads) -> int:
    return sum(len(p) for p in payloads if p is not None) + 16 * len(payloads)


class TableStore(Generic[R]):
    """The storage of one table; see the module docstring."""

    def __init__(
        self, model: type[R], name: str, channel_io: ChannelIO, *, cache_bytes: int, lanes: int = 4
    ) -> None:
        self.model = model
        self.name = name
        self.io = channel_io  # lane 0, the table channel: checkpoints live here
        self.ios: list[ChannelIO] = [channel_io]
        self.lane_count = max(1, lanes)
        self._next_lane = 0
        self.hasher: FieldHasher[R] = FieldHasher(model)
        self.codec: RecordCodec[R] = RecordCodec(model, table=name)
        self.schema = TableSchema.from_model(name, model)
        self.state = TableState(table_schema=self.schema, fields=self.hasher.fields)
        self._queue: list[_Op] = []
        self._pending_rids: dict[int, int] = {}
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._cache = _BlockCache(cache_bytes)
        self._loading: dict[int, asyncio.Future[_Payloads]] = {}
        self._tail_messages = 0
        self._wrote = False  # a database that only read leaves the channel as it found it
        self.notes: list[str] = []

    # -- opening ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Load the latest checkpoint, replay the log after it (in every lane), reconcile
        the schema, and make sure the table has its lanes."""
        tail, checkpoint = await self._scan_table_channel()
        if checkpoint is not None:
            await self._load_checkpoint(*checkpoint)
        floor = self.state.next_commit if checkpoint is not None else 0
        await self._resolve_lanes()
        for lane, channel_io in enumerate(self.ios[1:], start=1):
            tail += await self._lane_tail(lane, channel_io, floor)
        await self._replay(tail)
        changed = self._reconcile_schema()
        added = await self._ensure_lanes()
        if checkpoint is None or changed or added:
            await self._checkpoint()
        self._writer = asyncio.create_task(self._write_loop(), name=f"discobase-writer-{self.name}")

    async def _scan_table_channel(self) -> tuple[_Tail, tuple[discord.Message, bytes] | None]:
        """The log messages newer than the latest checkpoint, and that checkpoint."""
        tail: _Tail = []
        foreign = 0
        async for message in self.io.history():
            if not self.io.is_ours(message):
                foreign += 1
                continue
            named = describe(message)
            blob: bytes | None = None
            if named is None:
                blob = await self.io.read(message)
                kind, _ = unseal(blob, where=self.io.where(message.id))
            else:
                kind = named[0]
            if kind == "ckpt":
                return tail, (message, blob or await self.io.read(message))
            if kind == "log":
                tail.append((0, message, blob))
            elif kind != "pages":
                raise DatabaseCorruptionError(
                    f"{self.io.where(message.id)} holds a {kind!r} blob this version of "
                    "discobase does not know; was it written by a newer version?",
                    where=self.io.where(message.id),
                    reason="unknown kind",
                )
        if foreign:
            log.info("table %s: ignored %d foreign messages in its channel", self.name, foreign)
        return tail, None

    async def _lane_tail(self, lane: int, channel_io: ChannelIO, floor: int) -> _Tail:
        """The log messages of a lane thread from commit `floor` on (newest first)."""
        tail: _Tail = []
        async for message in channel_io.history():
            if not channel_io.is_ours(message):
                continue
            named = describe(message)
            blob: bytes | None = None
            if named is None:
                blob = await channel_io.read(message)
                kind, _ = unseal(blob, where=channel_io.where(message.id))
                commit = (
                    decode_block(blob, where=channel_io.where(message.id))[0].commit
                    if kind == "log"
                    else 0
                )
            else:
                kind, commit = named
            if kind != "log":
                continue
            if commit < floor:
                break  # a lane's commits only grow: everything older is in the checkpoint
            tail.append((lane, message, blob))
        return tail

    async def _resolve_lanes(self) -> None:
        """ChannelIOs for the lane threads the checkpoint names."""
        guild = self.io.channel.guild
        for thread_id in self.state.lanes[len(self.ios) - 1 :]:
            thread = guild.get_thread(thread_id)
            if thread is None:
                try:
                    fetched = await guild.fetch_channel(thread_id)
                except discord.NotFound:
                    raise DatabaseCorruptionError(
                        f"lane thread {thread_id} of table {self.name} is gone (deleted?); "
                        "the records written to it are missing",
                        where=f"thread {thread_id}",
                        reason="missing lane",
                    ) from None
                except discord.HTTPException as exc:
                    raise translate(exc, f"opening lane {thread_id} of {self.name}") from exc
                if not isinstance(fetched, discord.Thread):
                    raise DatabaseCorruptionError(
                        f"lane {thread_id} of table {self.name} is not a thread",
                        where=f"channel {thread_id}",
                        reason="bad lane",
                    )
                thread = fetched
            self.ios.append(ChannelIO(thread, bot_id=self.io.bot_id))

    async def _ensure_lanes(self) -> bool:
        """Create the lane threads this table lacks; True if any was created."""
        channel = self.io.channel
        if not isinstance(channel, discord.TextChannel):
            return False
        created = False
        while len(self.ios) < self.lane_count:
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
        pages_by_message: dict[int, Mapping[str, bytes]] = {message.id: pages}
        others = {mid for mid in manifest.refs.values() if mid not in (0, message.id)}
        semaphore = asyncio.Semaphore(_FETCH_CONCURRENCY)

        async def load(mid: int) -> None:
            async with semaphore:
                other = await self.io.fetch(mid)
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

        async def blob_of(lane: int, message: discord.Message, blob: bytes | None) -> bytes:
            if blob is not None:
                return blob
            async with semaphore:
                return await self.ios[lane].read(message)

        blobs = await asyncio.gather(*(blob_of(*item) for item in tail))
        blocks: list[tuple[int, int, LogBlock]] = []
        for (lane, message, _), blob in zip(tail, blobs, strict=True):
            block, _ = decode_block(blob, where=self.ios[lane].where(message.id))
            blocks.append((lane, message.id, block))
        ignored = self.state.replay(blocks)
        if ignored:
            log.warning(
                "table %s: ignored %d messages of unfinished commits (never acknowledged)",
                self.name,
                len(ignored),
            )
        for _, message_id, block in blocks:
            self._cache.put(message_id, block)
        self._tail_messages = len(blocks)

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

    # -- writing ---------------------------------------------------------------------------

    def _keys(self, record: R) -> tuple[int, ...]:
        keys = self.hasher.keys(record)
        return tuple(keys[name] for name in self.state.fields)

    def _enqueue(self, op: _Op) -> asyncio.Future[int]:
        if self._closing or self._writer is None or self._writer.done():
            raise DatabaseTableError(
                f"table {self.name} is closed", hint="open the database again to write"
            )
        rid = op.entry.rid
        self._pending_rids[rid] = self._pending_rids.get(rid, 0) + 1
        self._queue.append(op)
        self._wakeup.set()
        return op.future

    def exists(self, rid: int) -> bool:
        return rid in self.state or rid in self._pending_rids

    def put(self, record: R, *, new: bool) -> asyncio.Future[int]:
        """Queue a write of `record` (encoded and checked now); the future gives its id."""
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
        rid = record.disco_id
        if rid is None:
            rid = self.state.allocate_rid()
        elif not new and not self.exists(rid):
            raise NotFoundError(
                f"{self.name} record {rid} does not exist (deleted?)", table=self.name, id=rid
            )
        record._disco_id = rid
        return self._enqueue(_Op(Put(rid, keys, payload), record))

    def delete(self, record: R) -> asyncio.Future[int]:
        rid = record.disco_id
        if rid is None or not self.exists(rid):
            raise NotFoundError(
                f"this {self.name} record is not stored (never saved, or already deleted)",
                table=self.name,
                id=rid,
            )
        return self._enqueue(_Op(Delete(rid), record))

    def _take_batch(self) -> list[_Op]:
        """The oldest queued writes that fit one commit (at least one)."""
        size = 0
        count = 0
        for op in self._queue:
            if count and size + op.size > _BATCH_BYTES:
                break
            size += op.size
            count += 1
        batch = self._queue[:count]
        del self._queue[:count]
        return batch

    def _nonce(self, channel_io: ChannelIO, commit: int, part: str) -> str:
        raw = f"{channel_io.channel.id}:{commit}:{part}".encode()
        return hashlib.sha1(raw).hexdigest()[:25]

    async def _commit(self, batch: list[_Op]) -> None:
        commit = self.state.allocate_commit()
        lane = self._next_lane
        self._next_lane = (lane + 1) % len(self.ios)
        channel_io = self.ios[lane]
        sent: list[tuple[int, LogBlock]] = []
        try:
            planned = plan_commit(
                [op.entry for op in batch], commit=commit, width=len(self.state.fields)
            )
            for block, plan in planned:
                message = await channel_io.send(
                    plan, nonce=self._nonce(channel_io, commit, str(block.part))
                )
                sent.append((message.id, block))
        except BaseException as exc:
            for op in batch:
                self._settle(op)
                if (
                    isinstance(op.entry, Put)
                    and op.record is not None
                    and not self.exists(op.entry.rid)
                ):
                    op.record._disco_id = None
                if not op.future.done():
                    op.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            log.warning("table %s: a commit of %d writes failed: %s", self.name, len(batch), exc)
            return
        for message_id, block in sent:
            self.state.apply(message_id, block, lane=lane, where=channel_io.where(message_id))
            self._cache.put(message_id, block)
        self._tail_messages += len(sent)
        self._wrote = True
        for op in batch:
            self._settle(op)
            deleted = isinstance(op.entry, Delete) and not self.exists(op.entry.rid)
            if deleted and op.record is not None and op.record.disco_id == op.entry.rid:
                op.record._disco_id = None
            if not op.future.done():
                op.future.set_result(op.entry.rid)

    def _settle(self, op: _Op) -> None:
        rid = op.entry.rid
        left = self._pending_rids.get(rid, 0) - 1
        if left > 0:
            self._pending_rids[rid] = left
        else:
            self._pending_rids.pop(rid, None)

    async def _checkpoint(self) -> None:
        commit = self.state.allocate_commit()
        plan = self.state.plan_checkpoint()
        page_ids: list[int] = []
        for number, blob in enumerate(plan.page_blobs):
            message = await self.io.send(
                plan_blob("pages", blob, commit=commit, inline=False),
                nonce=self._nonce(self.io, commit, f"p{number}"),
            )
            page_ids.append(message.id)
        final = plan.final_blob(page_ids)
        message = await self.io.send(
            plan_blob("ckpt", final, commit=commit), nonce=self._nonce(self.io, commit, "ckpt")
        )
        self.state.finish_checkpoint(plan, page_ids, message.id)
        self._tail_messages = 0
        log.debug("table %s: checkpoint in message %d", self.name, message.id)

    async def _write_loop(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._commit(self._take_batch())
            if self._tail_messages >= CHECKPOINT_EVERY:
                try:
                    await self._checkpoint()
                except DiscobaseError as exc:
                    log.warning("table %s: checkpoint failed, will retry: %s", self.name, exc)

    async def close(self) -> None:
        """Write everything queued, then a checkpoint if anything changed."""
        self._closing = True
        self._wakeup.set()
        if self._writer is not None:
            await self._writer
        if self._wrote and self._tail_messages and self.state.dirty():
            try:
                await self._checkpoint()
            except DiscobaseError as exc:
                log.warning(
                    "table %s: final checkpoint failed (the log is intact): %s", self.name, exc
                )

    # -- reading ---------------------------------------------------------------------------

    async def _load_blocks(self, wanted: set[tuple[int, int]]) -> dict[int, _Payloads]:
        """The log blocks of the `wanted` (lane, message id) pairs, by message id: from the
        cache, or read a history page (up to 100 messages, one request) at a time, so never
        more requests than messages, and records saved one by one are read 100 messages per
        request. Inline blocks that come along in a page are cached too."""
        found: dict[int, _Payloads] = {}
        others: dict[int, asyncio.Future[_Payloads]] = {}
        mine: dict[int, set[int]] = {}  # lane -> message ids this call reads
        for lane, message_id in wanted:
            cached = self._cache.get(message_id)
            if cached is not None:
                found[message_id] = cached
            elif message_id in self._loading:
                others[message_id] = self._loading[message_id]
            else:
                mine.setdefault(lane, set()).add(message_id)
        loop = asyncio.get_running_loop()
        futures = {mid: loop.create_future() for ids in mine.values() for mid in ids}
        self._loading.update(futures)
        try:
            for lane, pending in mine.items():
                channel_io = self.ios[lane]
                while pending:
                    page = await channel_io.page_after(min(pending) - 1)
                    for message, block in await self._blocks_of(channel_io, page, pending):
                        payloads = self._cache.put(message.id, block)
                        if message.id in pending:
                            pending.discard(message.id)
                            found[message.id] = payloads
                            futures[message.id].set_result(payloads)
                    last = page[-1].id if len(page) == channel_io.PAGE else None
                    missing = {mid for mid in pending if last is None or mid <= last}
                    if missing:
                        where = channel_io.where(min(missing))
                        raise DatabaseCorruptionError(
                            f"{where} holds records of table {self.name} but is gone "
                            "(deleted by someone?)",
                            hint="discobase never deletes its log messages; restore from an export",
                            where=where,
                            reason="missing message",
                        )
        except BaseException as exc:
            for future in futures.values():
                if not future.done():
                    future.set_exception(exc)
                    future.exception()  # retrieved: the waiters re-raise it
            raise
        finally:
            for mid in futures:
                self._loading.pop(mid, None)
        for mid, future in others.items():
            found[mid] = await future
        return found

    async def _blocks_of(
        self, channel_io: ChannelIO, page: Sequence[discord.Message], wanted: set[int]
    ) -> list[tuple[discord.Message, LogBlock]]:
        """Decode the log blocks of a history page: every wanted one, and the inline ones."""
        chosen: list[tuple[discord.Message, bytes | None]] = []
        for message in page:
            if not channel_io.is_ours(message):
                continue
            named = describe(message)
            if named is None:  # inline: decoding costs nothing but CPU
                blob = await channel_io.read(message)
                if unseal(blob, where=channel_io.where(message.id))[0] == "log":
                    chosen.append((message, blob))
            elif named[0] == "log" and message.id in wanted:
                chosen.append((message, None))
        semaphore = asyncio.Semaphore(_FETCH_CONCURRENCY)

        async def blob_of(message: discord.Message, blob: bytes | None) -> bytes:
            if blob is not None:
                return blob
            async with semaphore:
                return await channel_io.read(message)

        blobs = await asyncio.gather(*(blob_of(m, b) for m, b in chosen))
        return [
            (message, decode_block(blob, where=channel_io.where(message.id))[0])
            for (message, _), blob in zip(chosen, blobs, strict=True)
        ]

    async def find(self, query: Mapping[str, Any], *, limit: int | None = None) -> list[R]:
        """Records matching every (field, value) of `query`, oldest first."""
        values = {name: self.hasher.validate(name, value) for name, value in query.items()}
        keys = {name: value_key(value) for name, value in values.items()}
        wanted = {name: canonical_bytes(value) for name, value in values.items()}
        rids = self.state.candidates(keys)
        found: list[R] = []
        step = 512
        for start in range(0, len(rids), step):
            chunk = [(rid, self.state.location(rid)) for rid in rids[start : start + step]]
            located = [(rid, loc) for rid, loc in chunk if loc is not None]
            blocks = await self._load_blocks({(loc.lane, loc.message_id) for _, loc in located})
            for rid, loc in located:
                where = self.ios[loc.lane].where(loc.message_id)
                payload = blocks[loc.message_id][loc.entry]
                if payload is None:
                    raise DatabaseCorruptionError(
                        f"record {rid} of {self.name} points at a delete entry",
                        where=where,
                        reason="bad location",
                    )
                record = self.codec.decode(payload, where=where)
                if any(
                    canonical_bytes(getattr(record, name)) != value
                    for name, value in wanted.items()
                ):
                    continue  # a 64-bit hash collision: not a match
                record._disco_id = rid
                found.append(record)
                if limit is not None and len(found) >= limit:
                    return found
        return found

    async def count(self, query: Mapping[str, Any]) -> int:
        if not query:
            return len(self.state)
        return len(await self.find(query))
