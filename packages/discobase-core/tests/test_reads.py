"""Read planning (discobase_core.reads), driven synchronously by an in-memory fake of Discord:
lanes are lists of messages in the three layouts (inline, chunked, split blob), some foreign,
deleted or damaged; requests and downloads are counted, operations performed in any order."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from hypothesis import example, given, settings
from hypothesis import strategies as st

from discobase_core.errors import DatabaseCorruptionError
from discobase_core.log import (
    LogBlock,
    Put,
    chunk_files,
    encode_block,
    plan_blob,
    plan_commit,
    read_blob,
)
from discobase_core.reads import (
    PAGE,
    BlockCache,
    FetchMessage,
    KnownMessages,
    ReadBlock,
    ReadChunks,
    ReadOp,
    ReadPage,
    ReadPlan,
    Seen,
    Upcoming,
)


@dataclass
class Msg:
    id: int
    ours: bool
    content: str
    files: dict[str, bytes]
    entries: dict[int, bytes | None]  # what it holds, by entry number (None: a delete)


@dataclass
class Fake:
    """Lanes of messages (id order is send order); counts what a reader asks of Discord."""

    lanes: dict[int, list[Msg]] = field(default_factory=dict)
    next_id: int = 1000
    commit: int = 0
    requests: dict[int, int] = field(default_factory=dict)  # lane -> pages and fetches
    downloads: int = 0  # attachment files

    def _add(self, lane: int, content: str, files: dict[str, bytes], entries: list[bytes]) -> Msg:
        self.next_id += 1
        message = Msg(self.next_id, True, content, files, dict(enumerate(entries)))
        self.lanes.setdefault(lane, []).append(message)
        return message

    def write(self, lane: int, payloads: list[bytes], *, split: bool = False) -> list[Msg]:
        """One commit of puts: inline or chunked as plan_commit decides, or a split blob
        (the layout before chunks)."""
        self.commit += 1
        entries = [Put(n, (n,), p) for n, p in enumerate(payloads)]
        if split:
            block = LogBlock(self.commit, 0, 1, tuple(entries))
            plan = plan_blob("log", encode_block(block, 1), commit=self.commit, inline=False)
            return [self._add(lane, "", dict(plan.files), payloads)]
        out = []
        for block, plan in plan_commit(entries, commit=self.commit, width=1, chunk_bytes=300):
            mine = [e.payload for e in block.entries if isinstance(e, Put)]
            out.append(self._add(lane, plan.content or "", dict(plan.files), mine))
        return out

    def foreign(self, lane: int) -> None:
        self.next_id += 1
        self.lanes.setdefault(lane, []).append(Msg(self.next_id, False, "hello", {}, {}))

    def seen(self, message: Msg) -> Seen[Msg]:
        return Seen(message.id, message.ours, tuple(message.files), message)

    def find(self, lane: int, message_id: int) -> Msg | None:
        return next((m for m in self.lanes.get(lane, []) if m.id == message_id), None)

    def perform(self, plan: ReadPlan[Msg], op: ReadOp[Msg]) -> list[ReadOp[Msg]]:
        where = f"message in lane {op.lane}"
        if isinstance(op, ReadPage):
            self.requests[op.lane] = self.requests.get(op.lane, 0) + 1
            later = [m for m in self.lanes.get(op.lane, []) if m.id > op.after]
            return plan.page_read(op, [self.seen(m) for m in later[:PAGE]])
        if isinstance(op, FetchMessage):
            self.requests[op.lane] = self.requests.get(op.lane, 0) + 1
            found = self.find(op.lane, op.message_id)
            return plan.fetched(op, None if found is None else self.seen(found))
        message = op.message.handle
        if self.find(op.lane, message.id) is None:
            return plan.read_failed(op, "gone", gone=True)
        if isinstance(op, ReadBlock):
            self.downloads += len(message.files)
            try:
                blob = read_blob(message.content, sorted(message.files.items()), where=where)
            except DatabaseCorruptionError as exc:
                return plan.read_failed(op, exc.message)
            return plan.block_read(op, blob)
        assert isinstance(op, ReadChunks)
        self.downloads += len(op.names)
        return plan.chunks_read(op, [(name, message.files[name]) for name in op.names])

    def run(self, plan: ReadPlan[Msg], order: random.Random | None = None) -> None:
        """Perform every operation, in a random order if `order` is given."""
        queue = plan.start()
        while queue:
            at = order.randrange(len(queue)) if order else 0
            queue += self.perform(plan, queue.pop(at))


def where(lane: int, message_id: int) -> str:
    return f"message {message_id} in lane {lane}"


def new_plan(
    cache: BlockCache,
    known: KnownMessages[Msg],
    wanted: list[tuple[int, int, int]],
    *,
    ahead: list[tuple[int, int, int]] | None = None,
    lost_lanes: list[int] | None = None,
) -> ReadPlan[Msg]:
    return ReadPlan(
        "T", cache, known, wanted, ahead=ahead or [], lost_lanes=lost_lanes or [], where=where
    )


def garble(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0xFF])


layouts = st.sampled_from(["inline", "chunked", "split", "foreign"])
message_specs = st.lists(
    st.tuples(st.integers(0, 2), layouts, st.integers(1, 12), st.sampled_from(["", "del", "dmg"])),
    min_size=1,
    max_size=25,
)


@settings(max_examples=150)
@given(message_specs, st.randoms(use_true_random=False), st.booleans(), st.booleans())
def test_every_wanted_entry_is_read_right_or_failed_for_its_own_damage(
    specs: list[tuple[int, str, int, str]],
    order: random.Random,
    lose_lane_2: bool,
    warm: bool,
) -> None:
    fake = Fake()
    broken: set[tuple[int, int]] = set()  # (message id, entry) that cannot be read
    everything: list[tuple[int, int, int]] = []
    truth: dict[tuple[int, int], bytes | None] = {}
    deleted: list[tuple[int, Msg]] = []
    for number, (lane, layout, count, fate) in enumerate(specs):
        if layout == "foreign":
            fake.foreign(lane)
            continue
        size = 8 if layout == "inline" else 120
        payloads = [bytes([number % 256, i]) * (size // 2) for i in range(count * 3)]
        for message in fake.write(lane, payloads, split=layout == "split"):
            for entry, payload in message.entries.items():
                everything.append((lane, message.id, entry))
                truth[(message.id, entry)] = payload
            if fate == "del":
                deleted.append((lane, message))
                broken.update((message.id, e) for e in message.entries)
            elif fate == "dmg":
                if not message.files:
                    message.content = message.content[:-4] + "AAAA"
                    broken.update((message.id, e) for e in message.entries)
                else:
                    chunks = chunk_files(list(message.files))
                    name = chunks[-1][1] if chunks else sorted(message.files)[-1]
                    message.files[name] = garble(message.files[name])
                    first = chunks[-1][0] if chunks else 0
                    broken.update((message.id, e) for e in message.entries if e >= first)
    if lose_lane_2:
        broken.update((mid, e) for lane, mid, e in everything if lane == 2)
    cache, known = BlockCache(1 << 30), KnownMessages[Msg]()
    wanted = order.sample(everything, min(len(everything), order.randrange(1, 40)))
    if warm:  # an earlier read (before the deletes) left some of it known or cached
        fake.run(new_plan(cache, known, order.sample(everything, len(everything) // 3)))
    for lane, message in deleted:
        fake.lanes[lane].remove(message)
    fake.requests.clear()
    plan = new_plan(cache, known, wanted, lost_lanes=[2] if lose_lane_2 else [])
    fake.run(plan, order)

    keys = {(mid, e) for _, mid, e in wanted}
    assert plan.found.keys() | plan.failed.keys() == keys
    assert not plan.found.keys() & plan.failed.keys()
    for key, payload in plan.found.items():
        assert payload == truth[key]
    if not warm:  # an entry cached before its message was damaged or deleted still reads
        assert set(plan.failed) == keys & broken
    for why in plan.failed.values():
        assert why
    # Never more requests than the messages wanted (of lanes that are there).
    wanted_messages = {(lane, mid) for lane, mid, _ in wanted if not (lose_lane_2 and lane == 2)}
    assert sum(fake.requests.values()) <= len(wanted_messages)


@settings(max_examples=40)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from(["inline", "chunked", "split"])),
        min_size=1,
        max_size=400,
    ),
    st.integers(1, 600),
    st.booleans(),
)
@example([(i % 4, ["inline", "chunked", "split"][i % 3]) for i in range(900)], 37, True)
@example([(0, "chunked")] * 250, 512, False)
def test_a_batched_scan_reads_about_one_page_per_100_messages_per_lane(
    specs: list[tuple[int, str]], batch: int, foreign: bool
) -> None:
    fake = Fake()
    locations: list[tuple[int, int, int]] = []
    truth: dict[tuple[int, int], bytes | None] = {}
    for number, (lane, layout) in enumerate(specs):
        if foreign and number % 7 == 0:
            fake.foreign(lane)
        size = 8 if layout == "inline" else 200
        payloads = [bytes([number % 256, i]) * (size // 2) for i in range(12)]
        for message in fake.write(lane, payloads, split=layout == "split"):
            for entry, payload in message.entries.items():
                locations.append((lane, message.id, entry))
                truth[(message.id, entry)] = payload
    cache, known = BlockCache(1 << 30), KnownMessages[Msg]()
    upcoming = Upcoming(locations)
    for start in range(0, len(locations), batch):
        wanted = locations[start : start + batch]
        plan = new_plan(cache, known, wanted, ahead=upcoming.after(start + batch))
        fake.run(plan)
        assert not plan.failed
        assert all(plan.found[(mid, e)] == truth[(mid, e)] for _, mid, e in wanted)
    for lane, messages in fake.lanes.items():
        assert fake.requests.get(lane, 0) <= math.ceil(len(messages) / PAGE), lane


def test_a_known_chunked_message_costs_no_request_and_one_download_per_chunk() -> None:
    fake = Fake()
    [message] = fake.write(0, [bytes([i]) * 100 for i in range(20)])
    assert len(message.files) >= 3
    cache, known = BlockCache(1 << 30), KnownMessages[Msg]()
    fake.run(new_plan(cache, known, [(0, message.id, 0)]))
    assert (fake.requests, fake.downloads) == ({0: 1}, 1)  # fetched alone, one chunk
    fake.run(new_plan(cache, known, [(0, message.id, 1)]))  # same chunk: cached
    fake.run(new_plan(cache, known, [(0, message.id, 19)]))  # another chunk: known
    assert (fake.requests, fake.downloads) == ({0: 1}, 2)


def test_a_read_that_needs_another_lane_page_after_a_full_one_goes_on() -> None:
    fake = Fake()
    messages = [m for i in range(250) for m in fake.write(1, [bytes([i % 256]) * 4])]
    wanted = [(1, messages[0].id, 0), (1, messages[-1].id, 0), (1, messages[120].id, 0)]
    plan = new_plan(BlockCache(1 << 30), KnownMessages[Msg](), wanted)
    fake.run(plan)
    assert not plan.failed
    assert fake.requests == {1: 3}  # a page from the first, another, then the last alone


def test_the_block_cache_keeps_to_its_budget() -> None:
    cache = BlockCache(1000)
    for mid in range(50):
        cache.put(mid, LogBlock(1, 0, 1, (Put(1, (1,), b"x" * 100),)))
        assert cache.size <= 1000
    assert cache.get(49, 0) == b"x" * 100
    assert not isinstance(cache.get(0, 0), bytes)  # the oldest went first


def test_records_read_stay_cached_when_their_chunks_are_pushed_out() -> None:
    """A thousand cold lookups each download a chunk far bigger than their record: the
    chunks push each other out, the records read stay (warm lookups cost nothing)."""
    cache = BlockCache(8000)
    chunk = LogBlock(1, 0, 1, tuple(Put(n, (1,), b"x" * 90 + bytes([n])) for n in range(40)))
    for mid in range(30):
        cache.put(mid, chunk)
        cache.keep(mid, mid, cache.get(mid, mid))  # what a lookup's plan does with its record
        assert cache.size + cache._hot_size <= 8000
    assert not isinstance(cache.get(0, 1), bytes)  # its chunk is gone
    for mid in range(30 - 1000 // 154, 30):  # what an eighth of the budget holds
        assert cache.get(mid, mid) == b"x" * 90 + bytes([mid])
    assert not isinstance(cache.get(0, 0), bytes)  # the oldest record went first


def test_upcoming_gives_the_next_messages_and_reads_no_further_than_it_needs() -> None:
    looked: list[int] = []

    def located() -> Iterator[tuple[int, int, int] | None]:
        for position in range(10_000):
            looked.append(position)
            yield None if position % 7 == 0 else (position % 2, position // 100, position % 100)

    upcoming = Upcoming(located())
    ahead = upcoming.after(250)
    assert [mid for _, mid, _ in ahead] == list(range(3, 3 + Upcoming.AHEAD))
    assert len(looked) < 20 * 100
    assert [mid for _, mid, _ in upcoming.after(1000)][:2] == [10, 11]
    assert upcoming.after(20_000) == []
