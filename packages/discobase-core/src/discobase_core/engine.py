"""The write side of one table as a sans-IO state machine.

It decides which queued writes go into which commit, on which lane and when, in which order
commits take effect, and when a checkpoint is due. It does no I/O and reads no clock: the
driver (`discobase/_store.py`) feeds it events (writes submitted, a commit's messages sent
with their ids or failed, a lane's rate-limit budget after a send, the time as an argument)
and performs the operations it hands out (`SendCommit`, `SendCheckpoint`).

Why it is shaped like this:

- Discord lets a bot send about 5 messages per 5 s per channel, so a table writes over
  several lanes (its channel and threads of it) with one commit in flight per lane: several
  commits travel at once, and a commit goes to a lane with budget left, never behind a lane
  that has to sleep.
- A lane's budget (what Discord's rate-limit headers said after its last send) is spread
  evenly over its window instead of spent in a burst: a stream of single writes then waits
  at most a fraction of a second per write, instead of seconds whenever every lane's burst
  is gone at once.
- Commits take effect in commit order (a later commit may overwrite what an earlier one
  wrote): a commit that lands early waits for the ones before it, and every write learns its
  outcome (`Settled`) only once the state holds it.
- A checkpoint is due when the log written since the last one is as big as what a clean
  open downloads (so a crash reopen costs at most about twice a clean one), or holds too
  many messages. It is a snapshot (`TableState.plan_checkpoint`) written to lane 0 while the
  other lanes go on writing.
- Compaction (discobase_core.compaction) rides along: its rewrites are commits cut only
  when no write of the caller's waits, and its deletes never take a lane's send budget.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from discobase_core.compaction import Compaction, DeleteMessages, Listed
from discobase_core.log import Entry, LogBlock, MessagePlan, Put, plan_commit
from discobase_core.state import CheckpointPlan, TableState

__all__ = [
    "BATCH_BYTES",
    "CHECKPOINT_FLOOR_BYTES",
    "CHECKPOINT_MESSAGES",
    "ERASE_AFTER",
    "Operation",
    "SendCheckpoint",
    "SendCommit",
    "Settled",
    "TableWriter",
    "plan_size",
]

# Bytes of records per commit: a cold read downloads the whole message holding a record, so
# commits stay small enough to read one record cheaply (a bigger record gets its own commit).
BATCH_BYTES = 2 * 1024 * 1024
# Log messages between checkpoints at most: bounds the history pages a reopen reads.
CHECKPOINT_MESSAGES = 64
# A table whose checkpoint is smaller than this still checkpoints only every this many bytes.
CHECKPOINT_FLOOR_BYTES = 64 * 1024
# A deleted or overwritten record is erased by a compaction at most this long after (s).
ERASE_AFTER = 3600.0
# Compact sooner when this many versions died (or as many as the table has records, if more):
# stored bytes then stay within about twice the live ones.
_DEAD_VERSIONS = 1000
_SLEEP_MARGIN = 0.05  # seconds past a lane's reset before it is used again
_ENTRY_OVERHEAD = 64  # bytes a write adds to a commit besides its payload


@dataclass(frozen=True, slots=True)
class SendCommit:
    """Send `plans` in order to `lane`, then report `committed` or `failed`. Before the
    first send, the lease must reserve commit `commit` and record id `top_rid`."""

    commit: int
    lane: int
    blocks: tuple[LogBlock, ...]
    plans: tuple[MessagePlan, ...]
    top_rid: int


@dataclass(frozen=True, slots=True)
class SendCheckpoint:
    """Send `plan`'s page blobs, then its final blob, to lane 0; then report
    `checkpointed` or `checkpoint_failed`."""

    commit: int
    plan: CheckpointPlan
    top_rid: int


Operation = SendCommit | SendCheckpoint | DeleteMessages


@dataclass(frozen=True, slots=True)
class Settled:
    """The writes `tokens` of commit `commit` are over, in commit order: applied to the
    state (`error` None), or failed (`attempted`: some of it may be stored)."""

    commit: int
    tokens: tuple[int, ...]
    error: BaseException | None = None
    attempted: bool = False
    stored: tuple[tuple[int, LogBlock], ...] = ()  # (message id, block) of an applied commit


@dataclass
class _Flight:
    lane: int
    tokens: tuple[int, ...]
    blocks: tuple[LogBlock, ...]
    size: int
    message_ids: tuple[int, ...] | None = None
    error: BaseException | None = None
    attempted: bool = False

    @property
    def over(self) -> bool:
        return self.message_ids is not None or self.error is not None


@dataclass
class _Lane:
    alive: bool
    busy: bool = False
    ready_at: float = 0.0


@dataclass
class _Checkpoint:
    commit: int
    tail_messages: int
    tail_bytes: int


def plan_size(plan: MessagePlan) -> int:
    """Bytes a message holds (what reading it back downloads)."""
    return len(plan.content or "") + sum(len(data) for _, data in plan.files)


@dataclass
class TableWriter:
    """The write scheduler of one table; see the module docstring."""

    state: TableState
    lanes: list[_Lane]
    batch_bytes: int = BATCH_BYTES
    checkpoint_messages: int = CHECKPOINT_MESSAGES
    checkpoint_floor: int = CHECKPOINT_FLOOR_BYTES
    #: log written since the latest checkpoint was planned (what a crash reopen replays)
    tail_messages: int = 0
    tail_bytes: int = 0
    acked: int = 0  # the newest commit applied
    #: the message holding the latest durable checkpoint (0: none yet)
    latest_checkpoint: int = 0
    compaction: Compaction = field(default_factory=Compaction)
    _queue: deque[tuple[int, Entry]] = field(default_factory=deque)
    _queued_bytes: int = 0
    _tokens: int = 0
    _flights: dict[int, _Flight] = field(default_factory=dict)
    _checkpoint: _Checkpoint | None = None
    _requested: bool = False  # a checkpoint was asked for (compaction): due at once
    erase_after: float = ERASE_AFTER
    dead_versions: int = 0  # entries made dead since the last compaction started
    _dead_since: float | None = None  # when the table last went from clean to dirty
    #: durable checkpoints so far (a caller waiting for "the next one" compares this)
    checkpoints_done: int = 0

    @classmethod
    def start(
        cls,
        state: TableState,
        alive: Sequence[bool],
        *,
        checkpoint_messages: int = CHECKPOINT_MESSAGES,
        latest_checkpoint: int = 0,
    ) -> TableWriter:
        """A writer for `state` over lanes (`alive[n]`: lane n can be written), whose latest
        checkpoint is in message `latest_checkpoint`."""
        return cls(
            state,
            [_Lane(bool(a)) for a in alive],
            checkpoint_messages=checkpoint_messages,
            latest_checkpoint=latest_checkpoint,
        )

    # -- what the driver asks ---------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """Nothing queued, in flight or being checkpointed (deletes may still run)."""
        return (
            not self._queue
            and not self._flights
            and self._checkpoint is None
            and not self.compaction.rewrites
        )

    @property
    def deleting(self) -> bool:
        """Compaction has messages to delete, or deletes under way."""
        return bool(self.compaction.deletable or self.compaction.deleting)

    @property
    def rewriting(self) -> bool:
        """Compaction rewrites are queued or in flight."""
        return bool(self.compaction.rewrites) or any(not f.tokens for f in self._flights.values())

    @property
    def writing(self) -> bool:
        """Writes are queued or in flight (a checkpoint alone does not count)."""
        return bool(self._queue or self._flights)

    @property
    def clean_bytes(self) -> int:
        return self.state.checkpoint_bytes

    def checkpoint_due(self) -> bool:
        return (
            self._requested
            or self.tail_messages >= self.checkpoint_messages
            or self.tail_bytes >= max(self.clean_bytes, self.checkpoint_floor)
        )

    def compaction_due(self, now: float) -> bool:
        """Whether to start a compaction: dead entries have waited `erase_after` seconds
        (or tracking is off: a table from before it), or as many versions died as the table
        has records (then stored bytes are about twice the live ones)."""
        dirty = self.state.dirty_messages
        if dirty is not None and not dirty:
            self._dead_since = None
            return False
        if self._dead_since is None:
            self._dead_since = now
        return now - self._dead_since >= self.erase_after or self.dead_versions >= max(
            _DEAD_VERSIONS, len(self.state)
        )

    def compaction_started(self) -> None:
        """A compaction starts: the dead counted so far are its business."""
        self._dead_since = None
        self.dead_versions = 0

    def compaction_failed(self, now: float) -> None:
        """A compaction stopped early: try again `erase_after` from now."""
        self._dead_since = now
        self.dead_versions = 0

    def request_checkpoint(self) -> int:
        """Ask for a checkpoint planned from now on; returns the `checkpoints_done` count
        that says it is durable."""
        self._requested = True
        return self.checkpoints_done + (2 if self._checkpoint is not None else 1)

    def wake_at(self, *, checkpoints: bool = True) -> float | None:
        """When `poll` (or `compaction_due`) may say more than it did (a paced lane becomes
        ready, deletes stop backing off, dead records are due for erasing), or None if only
        an event (a result, a new write) can change that."""
        due = checkpoints and self._checkpoint is None and self.checkpoint_due()
        times = []
        if self.compaction.deletable:
            times.append(self.compaction.delete_after)
        if checkpoints and self._dead_since is not None:
            times.append(self._dead_since + self.erase_after)  # compaction_due then
        if self._queue or self.compaction.rewrites or due:
            times += [lane.ready_at for lane in self.lanes if lane.alive and not lane.busy]
        return min(times) if times else None

    # -- events ---------------------------------------------------------------------------

    def submit(self, entry: Entry) -> int:
        """Queue one write; returns its token (named again in `Settled`)."""
        self._tokens += 1
        self._queue.append((self._tokens, entry))
        self._queued_bytes += _size(entry)
        return self._tokens

    def add_lane(self, alive: bool = True) -> int:
        self.lanes.append(_Lane(alive))
        return len(self.lanes) - 1

    def paced(self, lane: int, now: float, remaining: int | None, resets_in: float | None) -> None:
        """Discord's budget for `lane` after a send at `now`: `remaining` sends until the
        window resets in `resets_in` s (None: unknown, so no pacing). The lane is next used
        once its share of the window has passed, so the budget lasts the whole window. The
        last send of a window is never used: discord.py sleeps until the reset inside the
        send that spends it, which would hold up that commit."""
        if remaining is None or resets_in is None:
            ready = now
        elif remaining <= 1:
            ready = now + max(resets_in, 0.0) + _SLEEP_MARGIN
        else:
            ready = now + max(resets_in, 0.0) / remaining
        self.lanes[lane].ready_at = max(self.lanes[lane].ready_at, ready)

    def poll(self, now: float, *, checkpoints: bool = True) -> list[Operation]:
        """Operations that can start now: commits for every free lane with budget (and a
        checkpoint when one is due, unless `checkpoints` is False)."""
        ops: list[Operation] = []
        reserve_lane_zero = False
        if checkpoints and self._checkpoint is None and self.checkpoint_due():
            zero = self.lanes[0]
            if not zero.busy and zero.ready_at <= now:
                ops.append(self.checkpoint())
            else:
                reserve_lane_zero = True
        while self._queue:
            lane = self._free_lane(now, skip_zero=reserve_lane_zero)
            if lane is None:
                break
            ops.append(self._dispatch(lane, self._take_batch()))
        while not self._queue and self.compaction.rewrites:
            lane = self._free_lane(now, skip_zero=reserve_lane_zero)
            if lane is None:
                break
            busy = {e.rid for f in self._flights.values() for b in f.blocks for e in b.entries}
            puts = self.compaction.take_rewrites(self.state, busy, self.batch_bytes)
            if puts:
                ops.append(self._dispatch(lane, [(0, put) for put in puts]))
        alive = [n for n, lane in enumerate(self.lanes) if lane.alive]
        ops.extend(self.compaction.take_deletes(alive, now))
        return ops

    # -- compaction ---------------------------------------------------------------------------

    def sweep(self, listing: Sequence[Listed]) -> list[Listed]:
        """Start a compaction from a listing of every message of the table's lanes;
        returns the log messages to read and hand to `swept`."""
        keep = set(self.state.refs.values()) | {self.latest_checkpoint}
        self.compaction_started()
        return self.compaction.sweep(
            self.state,
            listing,
            floor=self.state.replay_floor,
            keep=keep,
            latest=self.latest_checkpoint,
        )

    def swept(self, listed: Listed, block: LogBlock) -> int:
        """A listed log message's block; returns how many of its records will be
        rewritten (none if it holds no dead entry)."""
        return self.compaction.read(self.state, listed, block)

    def deleted(self, op: DeleteMessages) -> None:
        self.compaction.deleted(self.state, op)

    def delete_failed(self, op: DeleteMessages, now: float) -> None:
        self.compaction.delete_failed(op, now)

    def committed(self, commit: int, message_ids: Sequence[int]) -> list[Settled]:
        """Every message of `commit` was sent and acknowledged (`message_ids`, in order)."""
        flight = self._flights[commit]
        flight.message_ids = tuple(message_ids)
        self.lanes[flight.lane].busy = False
        return self._release()

    def failed(self, commit: int, error: BaseException, *, attempted: bool) -> list[Settled]:
        """`commit` failed (`attempted`: some of its messages may be stored)."""
        flight = self._flights[commit]
        flight.error = error
        flight.attempted = attempted
        self.lanes[flight.lane].busy = False
        return self._release()

    def checkpoint(self) -> SendCheckpoint:
        """Plan a checkpoint now (the driver also calls this at open and close, when
        nothing is in flight). Lane 0 is held until it is reported."""
        commit = self.state.allocate_commit()
        self._requested = False
        plan = self.state.plan_checkpoint(replay_from=self._oldest_in_flight())
        self.compaction.retire(self.state, floor=plan.snapshot.floor, kept_refs=plan.kept_refs)
        self._checkpoint = _Checkpoint(commit, self.tail_messages, self.tail_bytes)
        self.tail_messages = self.tail_bytes = 0
        self.lanes[0].busy = True
        return SendCheckpoint(commit, plan, self.state.next_rid - 1)

    def checkpointed(self, op: SendCheckpoint, page_ids: Sequence[int], message_id: int) -> None:
        """The checkpoint `op` is stored: its pages in `page_ids`, its final blob in
        `message_id`."""
        self.state.finish_checkpoint(op.plan, page_ids, message_id)
        self.state.replay_floor = op.plan.snapshot.floor
        self.latest_checkpoint = message_id
        self.checkpoints_done += 1
        self.compaction.checkpointed()
        self._checkpoint = None
        self.lanes[0].busy = False

    def checkpoint_failed(self, op: SendCheckpoint) -> None:
        """The checkpoint `op` was not stored: the log since the previous one still counts,
        and the next checkpoint rewrites every page."""
        pending = self._checkpoint
        if pending is not None and pending.commit == op.commit:
            self.tail_messages += pending.tail_messages
            self.tail_bytes += pending.tail_bytes
        self.state.abandon_checkpoint()
        self.compaction.checkpoint_failed()
        self._requested = True  # whoever waits for one still does
        self._checkpoint = None
        self.lanes[0].busy = False

    # -- inside -----------------------------------------------------------------------------

    def _oldest_in_flight(self) -> int:
        return min(self._flights, default=self.state.next_commit)

    def _free_lane(self, now: float, *, skip_zero: bool) -> int | None:
        """The ready lane that has waited longest, or None."""
        best: int | None = None
        for number, lane in enumerate(self.lanes):
            if not lane.alive or lane.busy or lane.ready_at > now or (skip_zero and number == 0):
                continue
            if best is None or lane.ready_at < self.lanes[best].ready_at:
                best = number
        return best

    def _take_batch(self) -> list[tuple[int, Entry]]:
        """The oldest queued writes that fit one commit (at least one)."""
        batch: list[tuple[int, Entry]] = []
        size = 0
        while self._queue:
            entry = self._queue[0][1]
            if batch and size + _size(entry) > self.batch_bytes:
                break
            batch.append(self._queue.popleft())
            size += _size(entry)
        self._queued_bytes -= size
        return batch

    def _dispatch(self, lane: int, batch: Sequence[tuple[int, Entry]]) -> SendCommit:
        """Cut a commit of `batch` ((token, entry) pairs; token 0: a compaction rewrite)."""
        commit = self.state.allocate_commit()
        entries = [entry for _, entry in batch]
        planned = plan_commit(entries, commit=commit, width=len(self.state.fields))
        blocks = tuple(block for block, _ in planned)
        plans = tuple(plan for _, plan in planned)
        size = sum(plan_size(plan) for plan in plans)
        tokens = tuple(t for t, _ in batch if t)
        self._flights[commit] = _Flight(lane, tokens, blocks, size)
        self.lanes[lane].busy = True
        return SendCommit(commit, lane, blocks, plans, max(e.rid for e in entries))

    def _release(self) -> list[Settled]:
        """Apply and settle the commits that are over, oldest first, up to the first one
        still in flight."""
        settled: list[Settled] = []
        while self._flights:
            commit = min(self._flights)
            flight = self._flights[commit]
            if not flight.over:
                break
            del self._flights[commit]
            if flight.error is not None:
                settled.append(Settled(commit, flight.tokens, flight.error, flight.attempted))
                continue
            assert flight.message_ids is not None
            for message_id, block in zip(flight.message_ids, flight.blocks, strict=True):
                self.dead_versions += sum(e.rid in self.state for e in block.entries)
                self.state.apply(message_id, block, lane=flight.lane)
            self.tail_messages += len(flight.blocks)
            self.tail_bytes += flight.size
            self.acked = max(self.acked, commit)
            stored = tuple(zip(flight.message_ids, flight.blocks, strict=True))
            settled.append(Settled(commit, flight.tokens, stored=stored))
        return settled


def _size(entry: Entry) -> int:
    return _ENTRY_OVERHEAD + (len(entry.payload) if isinstance(entry, Put) else 0)
