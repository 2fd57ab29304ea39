"""The table writer (discobase_core.engine), driven synchronously by an in-memory fake of
Discord: lanes are lists of messages, sends complete whenever the test says."""

from __future__ import annotations

from dataclasses import dataclass, field

import pydantic
from hypothesis import given, settings
from hypothesis import strategies as st

from discobase_core.compaction import DeleteMessages, Listed
from discobase_core.engine import (
    CHECKPOINT_FLOOR_BYTES,
    SendCheckpoint,
    SendCommit,
    Settled,
    TableWriter,
)
from discobase_core.log import Delete, Entry, LogBlock, Put
from discobase_core.schema import TableSchema
from discobase_core.state import Location, TableState, read_checkpoint, read_pages


class Pair(pydantic.BaseModel):
    a: str
    b: int


SCHEMA = TableSchema.from_model("Pair", Pair)


def writer(lanes: int = 3) -> TableWriter:
    state = TableState(table_schema=SCHEMA, fields=("a", "b"))
    return TableWriter.start(state, [True] * lanes)


def put(rid: int, payload: bytes = b"x") -> Put:
    return Put(rid, (rid, 7), payload)


@dataclass
class FakeDiscord:
    """Messages by lane (id order is send order); checkpoints' pages by message."""

    lanes: dict[int, list[tuple[int, LogBlock]]] = field(default_factory=dict)
    pages: dict[int, dict[str, bytes]] = field(default_factory=dict)
    checkpoints: list[tuple[int, bytes]] = field(default_factory=list)
    kinds: dict[int, tuple[str, int]] = field(default_factory=dict)  # checkpoint messages
    next_id: int = 1000

    def listing(self) -> list[Listed]:
        """What a sweep of every lane finds."""
        found = [
            Listed(lane, mid, "log", block.commit, 10)
            for lane, messages in self.lanes.items()
            for mid, block in messages
        ]
        found += [Listed(0, mid, kind, commit, 10) for mid, (kind, commit) in self.kinds.items()]
        return found

    def block(self, listed: Listed) -> LogBlock:
        return dict(self.lanes[listed.lane])[listed.message_id]

    def delete(self, op: DeleteMessages) -> None:
        gone = {m.message_id for m in op.messages}
        for lane, messages in self.lanes.items():
            self.lanes[lane] = [(mid, b) for mid, b in messages if mid not in gone]
        self.checkpoints = [(mid, f) for mid, f in self.checkpoints if mid not in gone]
        for mid in gone:
            self.pages.pop(mid, None)
            self.kinds.pop(mid, None)

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def store(self, op: SendCommit, parts: int | None = None) -> list[int]:
        ids = []
        for block in op.blocks[:parts]:
            mid = self.new_id()
            self.lanes.setdefault(op.lane, []).append((mid, block))
            ids.append(mid)
        return ids

    def store_checkpoint(self, op: SendCheckpoint) -> tuple[list[int], int]:
        page_ids = []
        for blob in op.plan.page_blobs:
            mid = self.new_id()
            self.pages[mid] = read_pages(blob, where="fake")
            self.kinds[mid] = ("pages", op.commit)
            page_ids.append(mid)
        mid = self.new_id()
        final = op.plan.final_blob(page_ids)
        self.pages[mid] = read_checkpoint(final, where="fake")[1]
        self.kinds[mid] = ("ckpt", op.commit)
        self.checkpoints.append((mid, final))
        return page_ids, mid

    def reopen(self, newest: int = 1) -> TableState:
        """What a fresh process rebuilds: the newest checkpoint (or with `newest=2` the one
        before it, as when the newest is damaged), then every lane's log from its floor."""
        state = TableState(table_schema=SCHEMA, fields=("a", "b"))
        floor = 0
        if len(self.checkpoints) >= newest:
            mid, final = self.checkpoints[-newest]
            manifest, _ = read_checkpoint(final, where="fake")
            state = TableState.from_checkpoint(manifest, mid, self.pages, where="fake")
            floor = manifest.floor
        state.replay(
            (lane, mid, block)
            for lane, messages in self.lanes.items()
            for mid, block in messages
            if block.commit >= floor
        )
        return state


def snapshot(state: TableState) -> dict[int, tuple[int, int]]:
    out = {}
    for rid in state.rids():
        location = state.location(rid)
        assert location is not None
        out[rid] = (location.message_id, location.entry)
    return out


def test_queued_writes_share_one_commit() -> None:
    engine = writer()
    tokens = [engine.submit(put(rid)) for rid in (1, 2, 3)]
    [op] = engine.poll(0.0)
    assert isinstance(op, SendCommit)
    assert [e.rid for b in op.blocks for e in b.entries] == [1, 2, 3]
    settled = engine.committed(op.commit, FakeDiscord().store(op))
    assert settled == [Settled(op.commit, tuple(tokens), stored=settled[0].stored)]
    assert engine.state.rids() == [1, 2, 3]
    assert engine.idle


def test_commits_pipeline_over_free_lanes() -> None:
    engine = writer(lanes=3)
    lanes = []
    for rid in range(1, 5):
        engine.submit(put(rid))
        ops = engine.poll(0.0)
        lanes += [op.lane for op in ops if isinstance(op, SendCommit)]
    assert lanes == [0, 1, 2]  # a fourth waits for a lane to come back
    assert engine.writing


def test_commits_take_effect_in_commit_order() -> None:
    engine = writer(lanes=2)
    fake = FakeDiscord()
    engine.submit(put(1, b"old"))
    [first] = engine.poll(0.0)
    engine.submit(put(1, b"new"))
    [second] = engine.poll(0.0)
    assert isinstance(first, SendCommit)
    assert isinstance(second, SendCommit)
    late_ids = fake.store(second)
    assert engine.committed(second.commit, late_ids) == []  # waits for the first
    settled = engine.committed(first.commit, fake.store(first))
    assert [s.commit for s in settled] == [first.commit, second.commit]
    location = engine.state.location(1)
    assert location is not None
    assert location.message_id == late_ids[0]
    assert snapshot(fake.reopen()) == snapshot(engine.state)


def test_a_failed_commit_fails_only_its_writes() -> None:
    engine = writer(lanes=2)
    engine.submit(put(1))
    [first] = engine.poll(0.0)
    engine.submit(put(2))
    [second] = engine.poll(0.0)
    assert isinstance(first, SendCommit)
    assert isinstance(second, SendCommit)
    error = RuntimeError("503")
    assert engine.failed(first.commit, error, attempted=False) == [
        Settled(first.commit, (1,), error, False)
    ]
    [ok] = engine.committed(second.commit, FakeDiscord().store(second))
    assert ok.error is None
    assert engine.state.rids() == [2]


def test_a_lane_spreads_its_budget_over_its_window() -> None:
    engine = writer(lanes=1)
    engine.submit(put(1))
    [op] = engine.poll(0.0)
    assert isinstance(op, SendCommit)
    engine.paced(0, 0.0, remaining=4, resets_in=5.0)
    engine.committed(op.commit, FakeDiscord().store(op))
    engine.submit(put(2))
    assert engine.poll(0.5) == []
    assert engine.wake_at() == 1.25
    [op] = engine.poll(1.25)
    assert isinstance(op, SendCommit)
    # The last send of a window is kept: discord.py would sleep inside it.
    engine.paced(0, 3.75, remaining=1, resets_in=1.25)
    engine.committed(op.commit, FakeDiscord().store(op))
    engine.submit(put(3))
    wake = engine.wake_at()
    assert wake is not None
    assert 5.0 < wake < 5.1


def test_an_exhausted_lane_waits_for_its_reset_and_others_go_on() -> None:
    engine = writer(lanes=2)
    engine.submit(put(1))
    [op] = engine.poll(0.0)
    assert isinstance(op, SendCommit)
    assert op.lane == 0
    engine.paced(0, 0.0, remaining=1, resets_in=3.0)
    engine.committed(op.commit, FakeDiscord().store(op))
    engine.submit(put(2))
    [other] = engine.poll(0.1)
    assert isinstance(other, SendCommit)
    assert other.lane == 1
    engine.paced(1, 0.1, remaining=0, resets_in=3.0)
    engine.committed(other.commit, FakeDiscord().store(other))
    engine.submit(put(3))
    assert engine.poll(2.0) == []
    wake = engine.wake_at()
    assert wake is not None
    assert 3.0 < wake < 3.1


def test_unknown_budget_does_not_pace() -> None:
    engine = writer(lanes=1)
    for rid in range(1, 4):
        engine.submit(put(rid))
        [op] = engine.poll(0.0)
        assert isinstance(op, SendCommit)
        engine.paced(0, 0.0, None, None)
        engine.committed(op.commit, FakeDiscord().store(op))


def test_a_checkpoint_is_due_by_bytes_and_never_holds_up_other_lanes() -> None:
    engine = writer(lanes=3)
    fake = FakeDiscord()
    big = b"x" * (CHECKPOINT_FLOOR_BYTES // 2)
    for rid in (1, 2):
        assert not engine.checkpoint_due()
        engine.submit(put(rid, big))
        [op] = engine.poll(0.0)
        assert isinstance(op, SendCommit)
        engine.committed(op.commit, fake.store(op))
    assert engine.checkpoint_due()
    engine.submit(put(4))
    ops = engine.poll(0.0)
    kinds = sorted(type(op).__name__ for op in ops)
    assert kinds == ["SendCheckpoint", "SendCommit"]
    commit = next(op for op in ops if isinstance(op, SendCommit))
    checkpoint = next(op for op in ops if isinstance(op, SendCheckpoint))
    assert commit.lane != 0
    assert checkpoint.plan.snapshot.floor == commit.commit  # it is still in flight
    engine.committed(commit.commit, fake.store(commit))
    engine.checkpointed(checkpoint, *fake.store_checkpoint(checkpoint))
    assert not engine.checkpoint_due()
    assert snapshot(fake.reopen()) == snapshot(engine.state)


def test_a_failed_checkpoint_keeps_its_tail_and_rewrites_everything_next() -> None:
    engine = writer(lanes=1)
    fake = FakeDiscord()

    def write(rid: int, payload: bytes) -> None:
        engine.submit(put(rid, payload))
        [op] = engine.poll(0.0)
        assert isinstance(op, SendCommit)
        engine.committed(op.commit, fake.store(op))

    for rid in range(1, 6000):  # several directory pages
        engine.submit(put(rid))
    while engine.writing:
        for op in engine.poll(0.0):
            assert isinstance(op, SendCommit)
            engine.committed(op.commit, fake.store(op))
    first = engine.checkpoint()
    engine.checkpointed(first, *fake.store_checkpoint(first))
    assert engine.clean_bytes > CHECKPOINT_FLOOR_BYTES
    write(1, b"y" * engine.clean_bytes)
    [checkpoint] = engine.poll(0.0)
    assert isinstance(checkpoint, SendCheckpoint)
    assert checkpoint.plan.kept_refs  # only the changed pages
    assert engine.tail_bytes == 0
    engine.checkpoint_failed(checkpoint)
    assert engine.checkpoint_due()
    assert engine.state.dirty()
    [again] = engine.poll(0.0)
    assert isinstance(again, SendCheckpoint)
    assert not again.plan.kept_refs  # every page rewritten
    engine.checkpointed(again, *fake.store_checkpoint(again))
    assert snapshot(fake.reopen()) == snapshot(engine.state)


def test_compaction_never_sets_a_record_back() -> None:
    """A rewrite found before a newer write of the same record lands (or while it is in
    flight on another lane) is dropped: the newer version stands."""
    run = Run(lanes=2)
    run.submit(Put(1, (1, 1), b"one-v1"))
    run.submit(Put(2, (2, 2), b"two-v1"))
    run.dispatch()
    run.drain()
    run.submit(Put(2, (2, 2), b"two-v2"))  # message 1 now holds a dead entry
    run.dispatch()
    run.drain()
    run.checkpoint()
    run.submit(Put(1, (1, 1), b"one-v2"))
    run.dispatch()
    [in_flight] = run.flying
    run.compact()  # finds one-v1 live in message 1: a rewrite is queued
    assert run.engine.compaction.rewrites
    run.now += 100  # every lane's budget is back
    run.dispatch()  # the other lane is free, but record 1 is busy
    assert run.flying == [in_flight]
    run.land(in_flight, 1)
    run.drain()
    run.check_reopen()
    assert run.model[1] == b"one-v2"


def test_a_commit_stored_but_not_yet_applied_is_never_garbage() -> None:
    """A commit that landed while an earlier one is still in flight holds no live record
    yet; compaction must not mistake its message for garbage."""
    run = Run(lanes=2)
    run.submit(Put(1, (1, 1), b"a"))
    run.dispatch()
    run.drain()
    run.checkpoint()
    run.now += 100  # every lane's budget is back
    run.submit(Put(2, (2, 2), b"b"))
    run.dispatch()
    run.submit(Put(3, (3, 3), b"c"))
    run.dispatch()
    first, second = run.flying
    run.land(second, 1)  # stored, waiting for the first
    run.compact()
    run.land(first, 1)
    run.drain()
    for _ in range(3):
        run.checkpoint()
        run.drain()
    run.check_reopen()


# -- the model test ---------------------------------------------------------------------------

steps = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(1, 12), st.integers(0, 3000)),
        st.tuples(st.just("delete"), st.integers(1, 12), st.just(0)),
        st.tuples(st.just("land"), st.integers(0, 7), st.integers(0, 2)),
        st.tuples(st.just("tick"), st.integers(0, 3), st.integers(0, 5)),
        st.tuples(st.just("compact"), st.just(0), st.just(0)),
    ),
    max_size=80,
)


class Run:
    """One table writer against the fake Discord, and a model of what it acknowledged."""

    def __init__(self, lanes: int) -> None:
        self.engine = TableWriter.start(
            TableState(table_schema=SCHEMA, fields=("a", "b")),
            [True] * lanes,
            checkpoint_messages=3,
        )
        self.fake = FakeDiscord()
        self.now = 0.0
        self.flying: list[SendCommit | SendCheckpoint | DeleteMessages] = []
        self.submitted: dict[int, Entry] = {}
        self.settled_tokens: list[int] = []
        self.settled_commits: list[int] = []
        self.model: dict[int, bytes] = {}

    def submit(self, entry: Entry) -> None:
        self.submitted[self.engine.submit(entry)] = entry

    def settle(self, outcomes: list[Settled]) -> None:
        for outcome in outcomes:
            self.settled_commits.append(outcome.commit)
            self.settled_tokens.extend(outcome.tokens)
            if outcome.error is None:
                for token in outcome.tokens:
                    entry = self.submitted[token]
                    if isinstance(entry, Put):
                        self.model[entry.rid] = entry.payload
                    else:
                        self.model.pop(entry.rid, None)

    def dispatch(self) -> None:
        for op in self.engine.poll(self.now):
            if isinstance(op, SendCommit):
                busy = [o.lane for o in self.flying if isinstance(o, SendCommit)]
                assert op.lane not in busy
            self.flying.append(op)

    def compact(self) -> None:
        for listed in self.engine.sweep(self.fake.listing()):
            self.engine.swept(listed, self.fake.block(listed))

    def land(self, op: SendCommit | SendCheckpoint | DeleteMessages, outcome: int) -> None:
        """Complete `op`: outcome 0 fails it (a multi-part commit may leave a part)."""
        self.flying.remove(op)
        if isinstance(op, DeleteMessages):
            if outcome == 0:
                self.engine.delete_failed(op, self.now)
            else:
                self.fake.delete(op)
                self.engine.deleted(op)
        elif isinstance(op, SendCheckpoint):
            if outcome == 0:
                self.engine.checkpoint_failed(op)
            else:
                self.engine.checkpointed(op, *self.fake.store_checkpoint(op))
        elif outcome == 0:
            self.fake.store(op, parts=len(op.blocks) - 1)
            self.settle(self.engine.failed(op.commit, RuntimeError("lost"), attempted=True))
        else:
            self.engine.paced(op.lane, self.now, remaining=outcome % 3, resets_in=2.0)
            self.settle(self.engine.committed(op.commit, self.fake.store(op)))

    def drain(self) -> None:
        while not self.engine.idle or self.engine.deleting or self.flying:
            self.now += 10
            self.dispatch()
            for op in list(self.flying):
                self.land(op, 1)

    def checkpoint(self) -> None:
        op = self.engine.checkpoint()
        self.engine.checkpointed(op, *self.fake.store_checkpoint(op))

    def check_reopen(self) -> None:
        """Both the newest checkpoint and the one before it open to the acknowledged state,
        and every record reads back as last acknowledged."""
        assert snapshot(self.fake.reopen()) == snapshot(self.engine.state)
        assert snapshot(self.fake.reopen(newest=2)) == snapshot(self.engine.state)
        assert self.engine.state.rids() == sorted(self.model)
        for rid, payload in self.model.items():
            location = self.engine.state.location(rid)
            assert location is not None
            block = dict(self.fake.lanes[location.lane])[location.message_id]
            entry = block.entries[location.entry]
            assert isinstance(entry, Put)
            assert entry.payload == payload, f"record {rid} reads back an older version"


@settings(max_examples=300, deadline=None)
@given(steps, st.integers(1, 4))
def test_the_writer_against_a_model_of_the_truth(
    script: list[tuple[str, int, int]], lanes: int
) -> None:
    """Random writes, sends landing out of order, failures (with or without a stored part),
    budgets, checkpoints and compactions. Whatever happens: each write settles exactly once,
    in commit order; a lane never carries two commits; the state holds exactly the writes
    that settled without error (applied in commit order); a fresh process rebuilding from
    the fake Discord whenever nothing is in flight sees that same state, from the newest
    checkpoint or the one before it; and after a compaction and two checkpoints, no
    superseded or deleted record is stored anywhere."""
    run = Run(lanes)
    for action, a, b in script:
        if action == "put":
            run.submit(Put(a, (a, b), str(b).encode()))
        elif action == "delete":
            run.submit(Delete(a))
        elif action == "tick":
            run.now += a
        elif action == "compact":
            run.compact()
        elif run.flying:
            run.land(run.flying[a % len(run.flying)], b)
        run.dispatch()
        if not run.engine.writing and not run.flying:  # a crash now loses nothing acked
            run.check_reopen()
    run.drain()
    assert sorted(run.settled_tokens) == sorted(run.submitted)
    assert len(set(run.settled_tokens)) == len(run.settled_tokens)
    assert run.settled_commits == sorted(run.settled_commits)
    assert run.engine.state.rids() == sorted(run.model)
    run.check_reopen()
    # A full compaction (a checkpoint first, so it covers the whole log; then two more):
    # then only live records are stored.
    run.checkpoint()
    run.compact()
    run.drain()
    run.checkpoint()
    run.checkpoint()
    run.drain()
    run.check_reopen()
    state = run.engine.state
    for lane, messages in run.fake.lanes.items():
        for mid, block in messages:
            for number, entry in enumerate(block.entries):
                assert isinstance(entry, Put), f"a delete survived in {mid}"
                assert state.location(entry.rid) == Location(mid, number, lane), (
                    f"record {entry.rid}: a dead version survived in {mid}"
                )
    assert {rid: state.location(rid) is not None for rid in run.model} == dict.fromkeys(
        run.model, True
    )
