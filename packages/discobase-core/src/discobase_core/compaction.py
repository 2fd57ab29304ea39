"""Reclaiming space and erasing what was deleted: which messages of a table can go, and when.

A sweep lists every message of a table's lanes. A log message the latest checkpoint covers
whose records have all been superseded or deleted is garbage. One that still holds live
records beside dead ones (an older version, a deleted record) is rewritten: the writer
writes its live records again at the head of the log, as ordinary commits, and only those
still stored there when the commit is cut (a record written since is never set back),
which leaves the message garbage. Page and checkpoint messages that the latest checkpoint
does not refer to are garbage too.

Garbage is deleted only once two checkpoints do not need it: the one planned after it
became garbage (it *retires* there) and the next one. So the newest checkpoint and the one
before it (the fallback if the newest is damaged) both still open exactly, and a crash at
any instant of a compaction loses nothing: until the deletes, everything is where it was;
after them, nothing needed is gone.

Deleting is Discord's business: bulk deletes (up to 100 messages, younger than 14 days), and
older messages one by one; the driver chooses by each message's age.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from discobase_core.log import LogBlock, Put
from discobase_core.state import Location, TableState

__all__ = ["Compaction", "DeleteMessages", "Listed", "Rewrite", "live_counts"]

DELETE_CHUNK = 100  # Discord's bulk delete takes at most 100 messages


@dataclass(frozen=True, slots=True)
class Listed:
    """One of our messages found by a sweep: its lane, id, blob kind, commit and bytes."""

    lane: int
    message_id: int
    kind: str
    commit: int
    size: int


@dataclass(frozen=True, slots=True)
class DeleteMessages:
    """Delete these messages of `lane` (nothing needs them any more); then report
    `deleted` or `delete_failed`."""

    lane: int
    messages: tuple[Listed, ...]


@dataclass(frozen=True, slots=True)
class Rewrite:
    """Write `put` again, if its record still lives at `location` when the commit is cut."""

    location: Location
    put: Put


@dataclass(frozen=True, slots=True)
class _Garbage:
    listed: Listed
    rids: frozenset[int]  # live in it when swept: it is garbage once none of them is


def live_counts(state: TableState) -> Counter[int]:
    """How many live records each log message holds."""
    counts: Counter[int] = Counter()
    for rid in state.rids():
        location = state.location(rid)
        if location is not None:
            counts[location.message_id] += 1
    return counts


@dataclass
class Compaction:
    """The compaction state of one table's writer; see the module docstring."""

    pending: dict[int, _Garbage] = field(default_factory=dict)  # by message id
    rewrites: deque[Rewrite] = field(default_factory=deque)
    retiring: list[Listed] = field(default_factory=list)  # at the checkpoint being written
    retired: list[Listed] = field(default_factory=list)  # at the latest durable checkpoint
    deletable: list[Listed] = field(default_factory=list)
    deleting: dict[int, DeleteMessages] = field(default_factory=dict)  # by lane
    delete_after: float = 0.0  # after failed deletes, wait until then (backing off)
    failures: int = 0  # failed delete requests in a row
    #: what this process deleted and rewrote so far
    deleted_messages: int = 0
    deleted_bytes: int = 0
    rewritten_records: int = 0

    @property
    def busy(self) -> bool:
        """Work is left: rewrites, garbage waiting for checkpoints, or deletes."""
        return bool(
            self.pending
            or self.rewrites
            or self.retiring
            or self.retired
            or self.deletable
            or self.deleting
        )

    def sweep(
        self,
        state: TableState,
        listing: Iterable[Listed],
        *,
        floor: int,
        keep: set[int],
        latest: int,
    ) -> list[Listed]:
        """Classify what a sweep listed. `floor`: the latest durable checkpoint's replay
        floor (log at or above it is the replay tail: never touched); `keep`: the messages
        that checkpoint (in message `latest`) refers to; checkpoint messages newer than it
        belong to one still being written. Returns the log messages to read (they hold live
        records: the driver decodes them and calls `read`)."""
        counts = live_counts(state)
        dirty = state.dirty_messages
        if dirty is None:  # not tracked yet: read every message, and track from now on
            state.dirty_messages = set()
        known = {g.message_id for g in (*self.retiring, *self.retired, *self.deletable)}
        known.update(m.message_id for op in self.deleting.values() for m in op.messages)
        to_read: list[Listed] = []
        for listed in listing:
            if listed.message_id in keep or listed.message_id in known:
                continue
            if listed.kind != "log" and listed.message_id > latest:
                continue
            if listed.kind == "log":
                if listed.commit >= floor:
                    continue
                if counts[listed.message_id]:
                    if dirty is None or listed.message_id in dirty:
                        to_read.append(listed)
                    continue
            self.pending[listed.message_id] = _Garbage(listed, frozenset())
        return to_read

    def read(self, state: TableState, listed: Listed, block: LogBlock) -> int:
        """A swept log message's block: if any entry is dead, queue its live records for
        rewriting (the message becomes garbage). Returns how many were queued."""
        live: list[Rewrite] = []
        for number, entry in enumerate(block.entries):
            location = Location(listed.message_id, number, listed.lane)
            if isinstance(entry, Put) and state.location(entry.rid) == location:
                # The keys as the table has them now (a field added since has its key).
                keys = state.directory[entry.rid].keys
                live.append(Rewrite(location, Put(entry.rid, keys, entry.payload)))
        if len(live) == len(block.entries):
            if state.dirty_messages is not None:
                state.dirty_messages.discard(listed.message_id)
            return 0  # every entry is live: nothing to reclaim here
        if state.dirty_messages is not None:
            state.dirty_messages.add(listed.message_id)  # until it is deleted
        self.rewrites.extend(live)
        self.pending[listed.message_id] = _Garbage(listed, frozenset(r.put.rid for r in live))
        return len(live)

    def take_rewrites(self, state: TableState, busy: set[int], budget: int) -> list[Put]:
        """Rewrites for one commit (about `budget` bytes): those whose record still lives
        where it was found and has no write queued or in flight (`busy`)."""
        puts: list[Put] = []
        size = 0
        while self.rewrites and (not puts or size < budget):
            rewrite = self.rewrites.popleft()
            rid = rewrite.put.rid
            if rid in busy or state.location(rid) != rewrite.location:
                continue  # written since: the newer version stands
            puts.append(rewrite.put)
            size += len(rewrite.put.payload) + 64
        self.rewritten_records += len(puts)
        return puts

    def retire(self, state: TableState, *, floor: int, kept_refs: Mapping[str, int]) -> None:
        """A checkpoint with replay floor `floor` is being planned: the garbage it does not
        need retires at it."""
        referenced = set(kept_refs.values())
        for message_id, garbage in list(self.pending.items()):
            listed = garbage.listed
            if listed.kind == "log":
                if listed.commit >= floor:
                    continue
                if any(_lives_in(state, rid, message_id) for rid in garbage.rids):
                    continue
            elif message_id in referenced:
                continue
            del self.pending[message_id]
            self.retiring.append(listed)

    def checkpointed(self) -> None:
        """The checkpoint being planned is durable: what retired at the one before is
        needed by neither, and can go."""
        self.deletable.extend(self.retired)
        self.retired, self.retiring = self.retiring, []

    def checkpoint_failed(self) -> None:
        for listed in self.retiring:
            self.pending[listed.message_id] = _Garbage(listed, frozenset())
        self.retiring = []

    def take_deletes(self, lanes: Iterable[int], now: float) -> list[DeleteMessages]:
        """Deletes to start now: up to 100 messages per lane, one batch per lane at a time
        (none while backing off after a failure)."""
        if now < self.delete_after:
            return []
        free = {lane for lane in lanes if lane not in self.deleting}
        ops: list[DeleteMessages] = []
        left: list[Listed] = []
        chosen: dict[int, list[Listed]] = {}
        for listed in self.deletable:
            batch = chosen.setdefault(listed.lane, [])
            if listed.lane in free and len(batch) < DELETE_CHUNK:
                batch.append(listed)
            else:
                left.append(listed)
        self.deletable = left
        for lane, batch in chosen.items():
            if batch:
                op = DeleteMessages(lane, tuple(batch))
                self.deleting[lane] = op
                ops.append(op)
        return ops

    def deleted(self, state: TableState, op: DeleteMessages) -> None:
        self.failures = 0
        if state.dirty_messages is not None:
            state.dirty_messages.difference_update(m.message_id for m in op.messages)
        self.deleting.pop(op.lane, None)
        self.deleted_messages += len(op.messages)
        self.deleted_bytes += sum(m.size for m in op.messages)

    def delete_failed(self, op: DeleteMessages, now: float) -> None:
        """Try again later, backing off (1 s, 2 s, ... up to 5 minutes): a message already
        gone counts as deleted (the driver says so), so this is Discord failing."""
        self.deleting.pop(op.lane, None)
        self.deletable.extend(op.messages)
        self.failures += 1
        self.delete_after = now + min(300.0, 2.0 ** (self.failures - 1))


def _lives_in(state: TableState, rid: int, message_id: int) -> bool:
    location = state.location(rid)
    return location is not None and location.message_id == message_id
