"""The paged open-addressing multimap against a dict-of-lists model."""

from __future__ import annotations

import contextlib
import itertools
import tracemalloc
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from discobase_core._varint import write_uvarint
from discobase_core.codec import seal
from discobase_core.errors import DatabaseCorruptionError
from discobase_core.index import (
    DECODE_FLOOR,
    LINEAR_PROBES,
    HashIndex,
    max_page_bytes,
    probe_sequence,
)

# Keys that collide on purpose: equal low bits (same home slot at every small capacity),
# some also equal in the next bits (same first jumps), plus a few unrelated keys.
CRAFTED_KEYS = [
    5,
    5 + (1 << 20),
    5 + (1 << 40),
    5 + (1 << 63),
    6,
    6 + (1 << 30),
    0,
    (1 << 64) - 1,
    0x64CA93F83BB29B51,
    0xDA39A3EE5E6B4B0D,
]
keys_st = st.sampled_from(CRAFTED_KEYS)
values_st = st.integers(0, 40) | st.sampled_from([(1 << 128) - 1, 1 << 64])


def test_probe_sequence_is_pure_and_covers_every_slot() -> None:
    for key in CRAFTED_KEYS:
        for capacity in (8, 64, 1024):
            seq = list(itertools.islice(probe_sequence(key, capacity), 14 * LINEAR_PROBES))
            assert seq == list(itertools.islice(probe_sequence(key, capacity), len(seq)))
            assert seq[0] == key % capacity
            seen: set[int] = set()
            for n, slot in enumerate(probe_sequence(key, capacity)):
                seen.add(slot)
                if len(seen) == capacity:
                    break
                assert n < (14 + capacity) * LINEAR_PROBES


def test_probe_sequence_known_answer() -> None:
    # Format version 1: pinned.
    seq = list(itertools.islice(probe_sequence(0x64CA93F83BB29B51, 1024), 12))
    assert seq == [849, 850, 851, 852, 853, 854, 855, 856, 368, 369, 370, 371]


def test_misses_return_empty_lists() -> None:
    index = HashIndex(8)
    assert index.lookup(5) == []
    for v in range(5):
        index.insert(5, v)
    assert index.lookup(5 + (1 << 20)) == []
    assert index.lookup(-1) == []
    assert index.lookup(1 << 64) == []
    assert index.remove(5 + (1 << 20), 0) is False
    assert 5 in index
    assert 6 not in index


def test_many_values_per_key_have_no_size_cliff() -> None:
    index = HashIndex()
    for v in range(5000):
        assert index.insert(42, v)
    assert sorted(index.lookup(42)) == list(range(5000))
    assert index.insert(42, 17) is False
    assert len(index) == 5000
    assert index.capacity == 8192
    for v in range(0, 5000, 2):
        assert index.remove(42, v)
    assert sorted(index.lookup(42)) == list(range(1, 5000, 2))


def test_resize_policy() -> None:
    index = HashIndex(8)
    for v in range(5):  # 5 * 3 <= 8 * 2
        index.insert(v, v)
    assert index.capacity == 8
    index.insert(5, 5)  # fill would become 6 > 16/3: grow
    assert index.capacity == 16
    assert index.epoch == 1
    # Mostly tombstones: rebuild at the same or a smaller capacity.
    big = HashIndex(8)
    for v in range(100):
        big.insert(v, v)
    cap = big.capacity
    for v in range(98):
        big.remove(v, v)
    for v in range(200, 260):
        big.insert(v, v)
    assert big.capacity <= cap
    assert sorted(big.keys_values()) == [(98, 98), (99, 99)] + [(v, v) for v in range(200, 260)]


def test_tombstone_reuse_does_not_duplicate() -> None:
    index = HashIndex(8)
    index.insert(5, 1)
    index.insert(5, 2)
    index.remove(5, 1)
    # (5, 2) sits after the tombstone: inserting it again must find it, not fill the hole.
    assert index.insert(5, 2) is False
    assert index.lookup(5) == [2]
    assert index.insert(5, 3) is True
    assert index.tombstones == 0
    assert sorted(index.lookup(5)) == [2, 3]


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="power of two"):
        HashIndex(12)
    index = HashIndex()
    with pytest.raises(ValueError, match="64-bit"):
        index.insert(1 << 64, 1)
    with pytest.raises(ValueError, match="2\\*\\*128"):
        index.insert(1, 1 << 128)
    with pytest.raises(ValueError, match="2\\*\\*128"):
        index.insert(1, -1)


# ------------------------------------------------------------------ pages


def test_one_insert_dirties_only_the_page_it_wrote() -> None:
    index = HashIndex(1024, slots_per_page=16)
    for v in range(300):
        index.insert(v * 7919, v)
    index.mark_clean()
    assert index.dirty_pages() == frozenset()
    before = [index.slot(n) for n in range(index.capacity)]
    index.insert(123456789, 1)
    written = [n for n in range(index.capacity) if index.slot(n) != before[n]]
    assert len(written) == 1
    assert index.dirty_pages() == {written[0] // 16}
    index.mark_clean()
    index.remove(123456789, 1)
    assert index.dirty_pages() == {written[0] // 16}
    index.mark_clean()
    index.remove(123456789, 1)  # absent: no write
    index.insert(0, 0)  # present: no write
    assert index.dirty_pages() == frozenset()


def test_resize_dirties_every_page() -> None:
    index = HashIndex(8, slots_per_page=4)
    for v in range(5):
        index.insert(v, v)
    index.mark_clean()
    index.insert(99, 99)
    assert index.capacity == 16
    assert index.dirty_pages() == frozenset(range(4))


def pages_of(index: HashIndex) -> dict[int, bytes]:
    return {n: index.encode_page(n) for n in range(index.page_count)}


@given(
    st.lists(st.tuples(keys_st | st.integers(0, (1 << 64) - 1), values_st), max_size=80),
    st.lists(st.integers(0, 79), max_size=30),
    st.sampled_from([1, 3, 8, 64]),
)
def test_pages_round_trip_exactly(
    pairs: list[tuple[int, int]], removals: list[int], spp: int
) -> None:
    index = HashIndex(8, slots_per_page=spp)
    for k, v in pairs:
        index.insert(k, v)
    for r in removals:
        if r < len(pairs):
            index.remove(*pairs[r])
    pages = pages_of(index)
    for blob in pages.values():
        assert len(blob) <= max_page_bytes(spp)
    again = HashIndex.from_pages(pages)
    assert again == index
    assert list(again.keys_values()) == list(index.keys_values())
    assert again.tombstones == index.tombstones
    assert len(again) == len(index)
    assert again.dirty_pages() == frozenset()
    for k, _ in pairs:
        assert again.lookup(k) == index.lookup(k)


def test_max_page_bytes_is_reached_by_the_worst_page() -> None:
    index = HashIndex(8, slots_per_page=8)
    big = (1 << 128) - 1
    for n in range(5):
        index.insert((1 << 64) - 1 - n, big - n)
    blob = index.encode_page(0)
    assert len(blob) <= max_page_bytes(8)


def test_from_pages_rejects_bad_page_sets() -> None:
    index = HashIndex(64, slots_per_page=16)
    for v in range(20):
        index.insert(v, v)
    pages = pages_of(index)
    with pytest.raises(DatabaseCorruptionError) as info:
        HashIndex.from_pages({n: b for n, b in pages.items() if n != 2})
    assert info.value.details["where"] == "index page 2"
    with pytest.raises(DatabaseCorruptionError):
        HashIndex.from_pages({**pages, 4: pages[0]})
    with pytest.raises(DatabaseCorruptionError) as info:
        HashIndex.from_pages({0: pages[1], 1: pages[0], 2: pages[2], 3: pages[3]})
    assert info.value.details["where"] == "index page 0"
    with pytest.raises(DatabaseCorruptionError):
        HashIndex.from_pages({})
    # Pages from two generations are never mixed.
    other = HashIndex(64, slots_per_page=16)
    for v in range(20):
        other.insert(v, v)
    other.rebuild(64)
    with pytest.raises(DatabaseCorruptionError, match="disagree"):
        HashIndex.from_pages({**pages, 3: other.encode_page(3)})


@given(st.binary(max_size=200))
def test_from_pages_of_garbage_raises_only_corruption(junk: bytes) -> None:
    with pytest.raises(DatabaseCorruptionError):
        HashIndex.from_pages({0: junk})
    with pytest.raises(DatabaseCorruptionError):
        HashIndex.from_pages({0: seal("ixpage", junk)})


@given(st.data())
def test_from_pages_of_damaged_pages_raises_only_corruption(data: st.DataObject) -> None:
    index = HashIndex(16, slots_per_page=8)
    for v in range(8):
        index.insert(v * 1000003, v)
    pages = pages_of(index)
    n = data.draw(st.sampled_from(sorted(pages)))
    blob = bytearray(pages[n])
    how = data.draw(st.sampled_from(["flip", "truncate", "extend"]))
    if how == "flip":
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] ^= 1 << data.draw(st.integers(0, 7))
    elif how == "truncate":
        del blob[data.draw(st.integers(0, len(blob) - 1)) :]
    else:
        blob += data.draw(st.binary(min_size=1, max_size=8))
    with pytest.raises(DatabaseCorruptionError) as info:
        HashIndex.from_pages({**pages, n: bytes(blob)})
    assert info.value.details["where"] == f"index page {n}"


# ------------------------------------------------------------------ stats


def test_stats() -> None:
    index = HashIndex.from_pairs(((k * 2654435761) % (1 << 64), k) for k in range(500))
    stats = index.stats(miss_keys=range(1 << 40, (1 << 40) + 200))
    assert stats.pairs == 500
    assert 1 <= stats.mean_hit <= stats.max_hit
    assert stats.mean_miss >= 1
    fixed = HashIndex.from_pairs([(k, k) for k in range(900)], capacity=1024)
    assert fixed.capacity == 1024
    assert fixed.load_factor == 900 / 1024
    assert sorted(fixed.keys_values()) == [(k, k) for k in range(900)]


# ------------------------------------------------------------------ model-based


class IndexMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.index = HashIndex(8, slots_per_page=4)
        self.model: dict[int, Counter[int]] = {}

    @rule(key=keys_st, value=values_st)
    def insert(self, key: int, value: int) -> None:
        expected = value not in self.model.get(key, Counter())
        assert self.index.insert(key, value) is expected
        self.model.setdefault(key, Counter())[value] = 1

    @rule(key=keys_st, value=values_st)
    def remove(self, key: int, value: int) -> None:
        expected = value in self.model.get(key, Counter())
        assert self.index.remove(key, value) is expected
        if expected:
            del self.model[key][value]

    @precondition(lambda self: any(self.model.values()))
    @rule(data=st.data())
    def remove_existing(self, data: st.DataObject) -> None:
        pairs = sorted((k, v) for k, c in self.model.items() for v in c)
        key, value = data.draw(st.sampled_from(pairs))
        assert self.index.remove(key, value)
        del self.model[key][value]

    @rule(key=keys_st, values=st.lists(st.integers(100, 400), min_size=5, max_size=30))
    def insert_many(self, key: int, values: list[int]) -> None:
        for value in values:
            self.insert(key, value)

    @rule(key=keys_st | st.integers(0, (1 << 64) - 1))
    def lookup(self, key: int) -> None:
        assert Counter(self.index.lookup(key)) == self.model.get(key, Counter())

    @rule()
    def rebuild(self) -> None:
        self.index.rebuild()

    @rule()
    def reload_from_pages(self) -> None:
        again = HashIndex.from_pages(pages_of(self.index))
        assert again == self.index
        self.index = again

    @invariant()
    def consistent(self) -> None:
        index = self.index
        assert len(index) == sum(len(c) for c in self.model.values())
        assert index.fill < index.capacity
        assert index.capacity & (index.capacity - 1) == 0
        assert Counter(index.keys_values()) == Counter(
            (k, v) for k, c in self.model.items() for v in c
        )
        for key in CRAFTED_KEYS:
            assert Counter(index.lookup(key)) == self.model.get(key, Counter())


IndexMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestIndexMachine = IndexMachine.TestCase


# ------------------------------------------------------------------ bounded decoding


def _forged_page(capacity: int, spp: int, body: bytes, *, page_no: int = 0) -> bytes:
    head = bytearray()
    for n in (capacity, spp, page_no, 0):
        write_uvarint(head, n)
    return seal("ixpage", bytes(head) + body)


def test_page_claiming_huge_capacity() -> None:
    # A 20-byte re-sealed page claiming 2**31 empty slots once made open allocate ~32 GiB.
    page = _forged_page(
        1 << 31, 1 << 31, b"\x02" + (7).to_bytes(8, "big") + b"\x05" + _run(0, (1 << 31) - 1)
    )
    assert len(page) < 64
    tracemalloc.start()
    try:
        index = HashIndex.from_pages({0: page})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    assert index.lookup(7) == [5]
    assert index.capacity <= DECODE_FLOOR
    assert index.dirty_pages() == frozenset(range(index.page_count))  # compact form next
    # ... and claiming 2**31 pages of one slot each fails before allocating anything.
    with pytest.raises(DatabaseCorruptionError, match="missing pages"):
        HashIndex.from_pages({0: _forged_page(1 << 31, 1, _run(0, 1))})


def _run(tag: int, n: int) -> bytes:
    out = bytearray([tag])
    write_uvarint(out, n)
    return bytes(out)


def test_sparse_index_after_mass_removal_is_compacted_losslessly() -> None:
    index = HashIndex(8, slots_per_page=512)
    for v in range(50_000):
        index.insert(v * 7919, v)
    for v in range(50_000 - 10):
        index.remove(v * 7919, v)
    again = HashIndex.from_pages(pages_of(index))
    assert again.capacity < index.capacity
    assert sorted(again.keys_values()) == sorted(index.keys_values())
    assert again.epoch == index.epoch + 1
    for v in range(50_000 - 12, 50_000):
        assert again.lookup(v * 7919) == index.lookup(v * 7919)


@settings(max_examples=200)
@given(
    st.integers(3, 40).map(lambda bits: 1 << bits),
    st.integers(0, 40).map(lambda bits: 1 << bits),
    st.lists(
        st.tuples(st.sampled_from([0, 1, 2]), st.integers(0, 1 << 45), st.integers(0, 2**64 - 1)),
        max_size=12,
    ),
)
def test_garbled_pages_decode_in_bounded_memory(
    capacity: int, spp: int, runs: list[tuple[int, int, int]]
) -> None:
    """Whatever a page claims, decoding it allocates memory in proportion to its bytes (or
    raises DatabaseCorruptionError)."""
    body = bytearray()
    for tag, n, key in runs:
        if tag == 2:
            body += b"\x02" + key.to_bytes(8, "big")
            write_uvarint(body, n)
        else:
            body += _run(tag, n)
    page = _forged_page(capacity, spp, bytes(body))
    tracemalloc.start()
    try:
        with contextlib.suppress(DatabaseCorruptionError):
            HashIndex.from_pages({0: page})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024
