"""An open-addressing multimap hash index, split into pages.

``HashIndex`` maps 64-bit keys (see :mod:`discobase_core.hashing`) to many non-negative
int values (record ids below 2**128). Every ``(key, value)`` pair has a slot of its own, so
ten thousand records sharing one field value cost ten thousand slots and nothing grows
without bound inside a slot.

Slot states: EMPTY (never used), LIVE (a pair), TOMBSTONE (a removed pair; stays until the
next rebuild so that probe chains through it are not cut).

Probe sequence (``FORMAT_VERSION`` 1), a pure function of ``(key, capacity)`` with
``mask = capacity - 1``; CPython ``setobject.c``'s "linear runs, then jump":

    j = key & mask; perturb = key
    loop:
        visit j, j+1, ..., j+LINEAR_PROBES-1   (mod capacity)   # one contiguous run
        perturb >>= PERTURB_SHIFT
        j = (5*j + 1 + perturb) & mask                          # dictobject.c's jump

A run of ``LINEAR_PROBES`` (8) neighbours stays inside one page most of the time (cheap:
one message), while the perturbed jump breaks up clusters from skewed keys. Once ``perturb``
reaches 0 (after 13 jumps for 64-bit keys) the jumps follow ``j -> 5j+1 mod 2**k``, a full
cycle, so every slot is eventually visited and a lookup always reaches an EMPTY slot.

Lookup walks the sequence, collecting the values of LIVE slots with the key (a slot the
sequence revisits counts once), and stops at the first EMPTY slot (a miss is ``[]``, never
an error). Insert refuses an exact pair that is already stored (an in-memory pair -> slot
map answers that without probing), then takes the first TOMBSTONE or EMPTY slot on the
key's chain, resuming where the key's previous insert stopped (so adding the n-th record
with one field value does not walk past the n-1 before it); the slot is never beyond the
chain's first EMPTY slot, so lookups reach it. Remove turns the pair's slot into a
TOMBSTONE. The in-memory maps are derived state: pages hold only the slots.

Resize policy: ``fill = live + tombstones``. An insert that would turn an EMPTY slot into a
LIVE one when ``fill + 1 > 2/3 * capacity`` first rebuilds the table at the smallest power of
two ``>= MIN_CAPACITY`` holding ``live + 1`` pairs at a load of at most 1/2. Without deletes
that doubles the capacity; when most of the fill is tombstones the rebuild keeps the same
capacity or shrinks (the only way the table shrinks). A rebuild re-inserts every live pair
(lossless: nothing is carried over from the old slots but the live pairs), drops every
tombstone, bumps ``epoch`` and dirties every page. At least one EMPTY slot always remains.

Pages: slots ``[n*slots_per_page, (n+1)*slots_per_page)`` form page ``n``. Insert and remove
dirty exactly the page of the one slot they write; a rebuild dirties all pages.
``encode_page(n)`` is a sealed blob (kind ``ixpage``) of::

    uvarint capacity, uvarint slots_per_page, uvarint page_no, uvarint epoch,
    then slot runs until the page's slots are covered:
      0x00 uvarint n         n EMPTY slots
      0x01 uvarint n         n TOMBSTONE slots
      0x02 key:8 uvarint v   one LIVE slot (key big-endian, value < 2**128: <= 19 bytes)

so a page never exceeds :func:`max_page_bytes` ``(slots_per_page)`` bytes
``= SEAL_OVERHEAD_MAX + 4*10 + 28*slots_per_page``.

Runs make pages small, and also make a capacity cheap to claim: ``from_pages`` allocates
slots only up to what the live pairs justify (or :data:`DECODE_FLOOR`), rebuilding a sparser
index from its live pairs instead (see its docstring).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from discobase_core._varint import Reader, write_uvarint
from discobase_core.codec import FORMAT_VERSION, SEAL_OVERHEAD_MAX, seal, unseal
from discobase_core.errors import DatabaseCorruptionError

__all__ = [
    "DECODE_FLOOR",
    "KEY_LIMIT",
    "LINEAR_PROBES",
    "MAX_CAPACITY",
    "MAX_LOAD_DEN",
    "MAX_LOAD_NUM",
    "MIN_CAPACITY",
    "PAGE_KIND",
    "PERTURB_SHIFT",
    "VALUE_LIMIT",
    "HashIndex",
    "ProbeStats",
    "max_page_bytes",
    "probe_sequence",
]

LINEAR_PROBES = 8
PERTURB_SHIFT = 5
MIN_CAPACITY = 8
#: Grow when fill would exceed MAX_LOAD_NUM / MAX_LOAD_DEN of capacity.
MAX_LOAD_NUM, MAX_LOAD_DEN = 2, 3
KEY_LIMIT = 1 << 64
VALUE_LIMIT = 1 << 128
#: Largest capacity a page may claim (2**32 slots; far beyond any Discord table).
MAX_CAPACITY = 1 << 32
#: Capacity ``from_pages`` allocates whatever the pages hold; beyond it, only what the live
#: pairs justify (see ``from_pages``).
DECODE_FLOOR = 1 << 16
PAGE_KIND = "ixpage"

_EMPTY = -1
_TOMB = -2
_RUN_EMPTY, _RUN_TOMB, _LIVE = 0, 1, 2
_MAX_SLOT_BYTES = 1 + 8 + 19


def max_page_bytes(slots_per_page: int) -> int:
    """Upper bound on ``len(encode_page(n))`` for pages of ``slots_per_page`` slots."""
    return SEAL_OVERHEAD_MAX + 4 * 10 + _MAX_SLOT_BYTES * slots_per_page


def probe_sequence(key: int, capacity: int) -> Iterator[int]:
    """The (infinite, possibly repeating) slot sequence of ``key`` in a table of
    ``capacity`` slots. Slots are revisited; every slot appears eventually."""
    mask = capacity - 1
    j = key & mask
    perturb = key
    while True:
        for i in range(LINEAR_PROBES):
            yield (j + i) & mask
        perturb >>= PERTURB_SHIFT
        j = (5 * j + 1 + perturb) & mask


def _max_probes(capacity: int) -> int:
    # 13 perturbed jumps, then a full 5j+1 cycle of starts: every slot is visited by then.
    return (14 + capacity) * LINEAR_PROBES


def _check_capacity(capacity: int) -> None:
    if capacity < MIN_CAPACITY or capacity & (capacity - 1):
        raise ValueError(f"capacity must be a power of two >= {MIN_CAPACITY}, got {capacity}")


def _capacity_for(live: int) -> int:
    """Smallest power of two >= MIN_CAPACITY holding ``live`` pairs at load <= 1/2."""
    cap = MIN_CAPACITY
    while live * 2 > cap:
        cap *= 2
    return cap


@dataclass(frozen=True, slots=True)
class ProbeStats:
    """Probe counts (slots examined, the final one included)."""

    pairs: int
    capacity: int
    load_factor: float
    mean_hit: float  # mean probes to reach a live pair (successful search)
    max_hit: int  # the longest of those: the longest probe run
    mean_miss: float  # mean probes of a lookup that finds nothing (to the EMPTY slot)
    max_miss: int
    mean_lookup: float  # mean probes of lookup(key) over the distinct live keys


class HashIndex:
    """Open-addressing multimap from 64-bit keys to non-negative ints (see module doc)."""

    __slots__ = (
        "_capacity",
        "_dirty",
        "_epoch",
        "_keys",
        "_live",
        "_mask",
        "_resume",
        "_slot_of",
        "_tombs",
        "_values",
        "slots_per_page",
    )

    def __init__(self, capacity: int = 64, *, slots_per_page: int = 512) -> None:
        _check_capacity(capacity)
        if slots_per_page < 1:
            raise ValueError(f"slots_per_page must be >= 1, got {slots_per_page}")
        self.slots_per_page = slots_per_page
        self._epoch = 0
        self._alloc(capacity)
        self._dirty: set[int] = set(range(self.page_count))

    def _alloc(self, capacity: int) -> None:
        self._capacity = capacity
        self._mask = capacity - 1
        self._keys: list[int] = [_EMPTY] * capacity
        self._values: list[int] = [0] * capacity
        self._live = 0
        self._tombs = 0
        self._slot_of: dict[tuple[int, int], int] = {}
        self._resume: dict[int, tuple[int, int, int]] = {}

    # ---------------------------------------------------------------- properties

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def tombstones(self) -> int:
        return self._tombs

    @property
    def fill(self) -> int:
        """Live pairs plus tombstones (what the resize policy counts)."""
        return self._live + self._tombs

    @property
    def load_factor(self) -> float:
        return self._live / self._capacity

    @property
    def epoch(self) -> int:
        """Number of rebuilds so far; stored in every page so pages of different
        generations are never mixed."""
        return self._epoch

    @property
    def page_count(self) -> int:
        return -(-self._capacity // self.slots_per_page)

    def __len__(self) -> int:
        return self._live

    def __repr__(self) -> str:
        return (
            f"HashIndex(len={self._live}, capacity={self._capacity}, "
            f"tombstones={self._tombs}, epoch={self._epoch})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HashIndex):
            return NotImplemented
        return (
            self._capacity == other._capacity
            and self.slots_per_page == other.slots_per_page
            and self._epoch == other._epoch
            and self._keys == other._keys
            and [v if k >= 0 else 0 for k, v in zip(self._keys, self._values, strict=True)]
            == [v if k >= 0 else 0 for k, v in zip(other._keys, other._values, strict=True)]
        )

    __hash__ = None  # type: ignore[assignment]

    # ---------------------------------------------------------------- operations

    @staticmethod
    def _check(key: int, value: int) -> None:
        if not 0 <= key < KEY_LIMIT:
            raise ValueError(f"key must be an unsigned 64-bit int, got {key}")
        if not 0 <= value < VALUE_LIMIT:
            raise ValueError(f"value must be a non-negative int below 2**128, got {value}")

    def lookup(self, key: int) -> list[int]:
        """Values stored under ``key``, in slot-visit order; ``[]`` on a miss."""
        if not 0 <= key < KEY_LIMIT:
            return []
        keys, values, mask = self._keys, self._values, self._mask
        found: dict[int, int] = {}  # slot -> value: a revisited slot counts once
        j = key & mask
        perturb = key
        budget = _max_probes(self._capacity)
        while budget > 0:
            for i in range(LINEAR_PROBES):
                s = (j + i) & mask
                k = keys[s]
                if k == key:
                    found[s] = values[s]
                elif k == _EMPTY:
                    return list(found.values())
            budget -= LINEAR_PROBES
            perturb >>= PERTURB_SHIFT
            j = (5 * j + 1 + perturb) & mask
        return list(found.values())  # pragma: no cover - unreachable while an EMPTY exists

    def __contains__(self, key: object) -> bool:
        return isinstance(key, int) and bool(self.lookup(key))

    def contains(self, key: int, value: int) -> bool:
        """Whether the exact pair is stored."""
        return (key, value) in self._slot_of

    def _free_slot(self, key: int) -> tuple[int, tuple[int, int, int]]:
        """The first TOMBSTONE or EMPTY slot on ``key``'s chain at or after its resume
        point, and the resume point just past it.

        The resume point (run start ``j``, ``perturb``, offset ``i``) only ever moves past
        LIVE slots or slots this call fills, and EMPTY slots never reappear until a rebuild
        (which forgets every resume point), so the slot returned is never beyond the chain's
        first EMPTY slot: lookups still reach it. Inserting the n-th value of one key costs
        O(1) amortised instead of walking past the n-1 before it.
        """
        keys, mask = self._keys, self._mask
        j, perturb, i = self._resume.get(key) or (key & mask, key, 0)
        budget = _max_probes(self._capacity)
        while budget > 0:
            while i < LINEAR_PROBES:
                s = (j + i) & mask
                if keys[s] < 0:
                    return s, (j, perturb, i + 1)
                i += 1
            budget -= LINEAR_PROBES
            perturb >>= PERTURB_SHIFT
            j = (5 * j + 1 + perturb) & mask
            i = 0
        raise AssertionError("no free slot")  # pragma: no cover - an EMPTY always remains

    def insert(self, key: int, value: int) -> bool:
        """Add the pair; ``False`` (and no change) if it is already present."""
        self._check(key, value)
        if (key, value) in self._slot_of:
            return False
        free, resume = self._free_slot(key)
        if self._keys[free] == _EMPTY and (self.fill + 1) * MAX_LOAD_DEN > (
            self._capacity * MAX_LOAD_NUM
        ):
            self._rebuild(_capacity_for(self._live + 1))
            free, resume = self._free_slot(key)
        self._resume[key] = resume
        self._place(free, key, value)
        self._dirty.add(free // self.slots_per_page)
        return True

    def _place(self, slot: int, key: int, value: int) -> None:
        if self._keys[slot] == _TOMB:
            self._tombs -= 1
        self._keys[slot] = key
        self._values[slot] = value
        self._slot_of[key, value] = slot
        self._live += 1

    def remove(self, key: int, value: int) -> bool:
        """Remove the pair (leaving a tombstone); ``False`` if it is absent."""
        found = self._slot_of.pop((key, value), -1)
        if found < 0:
            return False
        self._keys[found] = _TOMB
        self._values[found] = 0
        self._resume.pop(key, None)  # let this key's next insert reuse the tombstone
        self._live -= 1
        self._tombs += 1
        self._dirty.add(found // self.slots_per_page)
        return True

    def keys_values(self) -> Iterator[tuple[int, int]]:
        """Every live pair, in slot order."""
        for k, v in zip(self._keys, self._values, strict=True):
            if k >= 0:
                yield k, v

    def slot(self, n: int) -> tuple[int, int] | bool | None:
        """Slot ``n``: ``(key, value)`` if live, ``None`` if EMPTY, ``False`` if a tombstone."""
        k = self._keys[n]
        if k == _EMPTY:
            return None
        if k == _TOMB:
            return False
        return k, self._values[n]

    # ---------------------------------------------------------------- resize

    def _rebuild(self, capacity: int) -> None:
        pairs = list(self.keys_values())
        self._alloc(capacity)
        self._epoch += 1
        for key, value in pairs:
            free, self._resume[key] = self._free_slot(key)
            self._place(free, key, value)
        self._dirty = set(range(self.page_count))

    def rebuild(self, capacity: int | None = None) -> None:
        """Rebuild now (drops tombstones; dirties every page). ``capacity`` defaults to the
        policy's choice for the current live count; it must hold them below 2/3 load."""
        if capacity is None:
            capacity = _capacity_for(self._live)
        _check_capacity(capacity)
        if (self._live + 1) * MAX_LOAD_DEN > capacity * MAX_LOAD_NUM:
            raise ValueError(f"capacity {capacity} is too small for {self._live} pairs")
        self._rebuild(capacity)

    @classmethod
    def from_pairs(
        cls,
        pairs: Iterable[tuple[int, int]],
        *,
        capacity: int | None = None,
        slots_per_page: int = 512,
    ) -> HashIndex:
        """An index holding ``pairs``. With ``capacity``, pairs are placed at exactly that
        capacity with no automatic resize (any load below 1 is allowed: benchmarks use this
        to measure high loads); without it, the resize policy picks the capacity."""
        pairs = list(pairs)
        if capacity is None:
            index = cls(_capacity_for(len(pairs)), slots_per_page=slots_per_page)
            for key, value in pairs:
                index.insert(key, value)
            return index
        index = cls(capacity, slots_per_page=slots_per_page)
        for key, value in pairs:
            cls._check(key, value)
            if index._live + 1 >= capacity:
                raise ValueError(f"{len(pairs)} pairs do not fit in {capacity} slots")
            if (key, value) not in index._slot_of:
                free, index._resume[key] = index._free_slot(key)
                index._place(free, key, value)
        return index

    # ---------------------------------------------------------------- statistics

    def probe_count(self, key: int) -> int:
        """Slots ``lookup(key)`` examines (up to and including the EMPTY slot)."""
        keys = self._keys
        for n, s in enumerate(probe_sequence(key, self._capacity), 1):
            if keys[s] == _EMPTY:
                return n
        raise AssertionError("unreachable")  # pragma: no cover

    def stats(self, miss_keys: Iterable[int] = ()) -> ProbeStats:
        """Probe statistics over every live pair, and over ``miss_keys`` for misses."""
        keys, values, cap = self._keys, self._values, self._capacity
        hits: list[int] = []
        for slot, (k, v) in enumerate(zip(keys, values, strict=True)):
            if k < 0:
                continue
            for n, s in enumerate(probe_sequence(k, cap), 1):
                if s == slot:
                    hits.append(n)
                    break
                if keys[s] == _EMPTY:  # pragma: no cover - would mean a broken chain
                    raise AssertionError(f"pair in slot {slot} is unreachable")
            del v
        misses = [self.probe_count(k) for k in miss_keys]
        distinct = {k for k in keys if k >= 0}
        lookups = [self.probe_count(k) for k in distinct]
        return ProbeStats(
            pairs=self._live,
            capacity=cap,
            load_factor=self.load_factor,
            mean_hit=sum(hits) / len(hits) if hits else 0.0,
            max_hit=max(hits, default=0),
            mean_miss=sum(misses) / len(misses) if misses else math.nan,
            max_miss=max(misses, default=0),
            mean_lookup=sum(lookups) / len(lookups) if lookups else 0.0,
        )

    # ---------------------------------------------------------------- pages

    def dirty_pages(self) -> frozenset[int]:
        """Pages written since the last :meth:`mark_clean` (all of them after a rebuild)."""
        return frozenset(self._dirty)

    def mark_clean(self) -> None:
        """Forget dirtiness (call once the dirty pages are stored)."""
        self._dirty = set()

    def page_of(self, slot: int) -> int:
        """The page holding ``slot``."""
        return slot // self.slots_per_page

    def encode_page(self, page_no: int) -> bytes:
        """The sealed, self-describing encoding of page ``page_no``."""
        if not 0 <= page_no < self.page_count:
            raise ValueError(f"page {page_no} out of range (0..{self.page_count - 1})")
        out = bytearray()
        for n in (self._capacity, self.slots_per_page, page_no, self._epoch):
            write_uvarint(out, n)
        start = page_no * self.slots_per_page
        end = min(start + self.slots_per_page, self._capacity)
        keys, values = self._keys, self._values
        s = start
        while s < end:
            k = keys[s]
            if k >= 0:
                out.append(_LIVE)
                out += k.to_bytes(8, "big")
                write_uvarint(out, values[s])
                s += 1
                continue
            run_end = s + 1
            while run_end < end and keys[run_end] == k:
                run_end += 1
            out.append(_RUN_EMPTY if k == _EMPTY else _RUN_TOMB)
            write_uvarint(out, run_end - s)
            s = run_end
        return seal(PAGE_KIND, bytes(out))

    def encode_pages(self, pages: Iterable[int] | None = None) -> dict[int, bytes]:
        """``{n: encode_page(n)}`` for ``pages`` (default: the dirty pages)."""
        chosen = sorted(self._dirty if pages is None else pages)
        return {n: self.encode_page(n) for n in chosen}

    @classmethod
    def from_pages(cls, pages: Mapping[int, bytes]) -> HashIndex:
        """Rebuild an index from every one of its pages; validates everything and raises
        :class:`DatabaseCorruptionError` (``where="index page N"``) otherwise. The result
        has no dirty pages, unless it was compacted (below).

        Memory follows the bytes, not the claims: the pages are parsed into their live
        pairs and tombstone runs first (proportional to the bytes present), and the page
        set is checked against the capacity the pages claim before anything is allocated.
        A run of a billion EMPTY slots is a few bytes, so a capacity far beyond what the
        live pairs need (more than :data:`DECODE_FLOOR` slots and more than four times what
        a rebuild would choose) is not allocated: the index is rebuilt from its live pairs
        at the policy's capacity instead (lossless: lookups depend on the live pairs only),
        with a new epoch and every page dirty, so the next checkpoint stores the compact
        form. Legitimate pages only get there after most of their pairs were removed.
        """
        if not pages:
            raise DatabaseCorruptionError(
                "index: no pages", where="index", reason="no pages were given"
            )
        if not all(type(n) is int for n in pages):
            raise DatabaseCorruptionError(
                "index: page numbers must be ints", where="index", reason="bad page numbers"
            )
        header: tuple[int, int, int] | None = None
        live: list[tuple[int, int, int]] = []  # (slot, key, value)
        tombs: list[tuple[int, int]] = []  # (first slot, count)
        seen: set[tuple[int, int]] = set()
        for page_no in sorted(pages):
            where = f"index page {page_no}"

            def fail(reason: str, where: str = where) -> DatabaseCorruptionError:
                return DatabaseCorruptionError(f"{where}: {reason}", where=where, reason=reason)

            _, body = unseal(pages[page_no], where=where, kind=PAGE_KIND)
            reader = Reader(body, where=where)
            capacity, spp, stored_no, epoch = (reader.uvarint() for _ in range(4))
            if stored_no != page_no:
                raise fail(f"holds page {stored_no}, not page {page_no}")
            if capacity < MIN_CAPACITY or capacity & (capacity - 1) or capacity > MAX_CAPACITY:
                raise fail(f"bad capacity {capacity}")
            if spp < 1:
                raise fail(f"bad slots per page {spp} for capacity {capacity}")
            if header is None:
                header = (capacity, spp, epoch)
                count = -(-capacity // spp)
                extra = sorted(n for n in pages if not 0 <= n < count)
                if extra or len(pages) != count:
                    # Page numbers are distinct, so without extras some are missing; look
                    # for them among the first len(pages) + 1 only (count may be huge).
                    missing = [n for n in range(min(count, len(pages) + 1)) if n not in pages]
                    problem = f"missing pages {missing[:10]}" if missing else f"extra {extra[:10]}"
                    raise DatabaseCorruptionError(
                        f"index: expected pages 0..{count - 1}: {problem}",
                        where=f"index page {missing[0] if missing else extra[0]}",
                        reason="page set incomplete or has extra pages",
                    )
            elif header != (capacity, spp, epoch):
                raise fail(
                    f"capacity/slots per page/epoch {(capacity, spp, epoch)} disagree with "
                    f"the other pages {header}"
                )
            start = page_no * spp
            end = min(start + spp, capacity)
            s = start
            while s < end:
                tag = reader.byte()
                if tag == _LIVE:
                    k = int.from_bytes(reader.take(8), "big")
                    v = reader.uvarint()
                    if v >= VALUE_LIMIT:
                        raise fail(f"value {v} in slot {s} is beyond 2**128")
                    if (k, v) in seen:
                        raise fail(f"duplicate pair ({k}, {v}) in slot {s}")
                    seen.add((k, v))
                    live.append((s, k, v))
                    s += 1
                elif tag in (_RUN_EMPTY, _RUN_TOMB):
                    n = reader.uvarint()
                    if n < 1 or s + n > end:
                        raise fail(f"slot run of {n} overruns the page at slot {s}")
                    if tag == _RUN_TOMB:
                        tombs.append((s, n))
                    s += n
                else:
                    raise fail(f"unknown slot tag {tag} at slot {s}")
            reader.expect_end()
        assert header is not None
        capacity, spp, epoch = header
        tomb_count = sum(n for _, n in tombs)
        if len(live) + tomb_count >= capacity:
            raise DatabaseCorruptionError(
                "index: no empty slot (lookups could not terminate)",
                where="index",
                reason="no empty slot",
            )
        if capacity > max(DECODE_FLOOR, 4 * _capacity_for(len(live) + 1)):
            index = cls(_capacity_for(len(live) + 1), slots_per_page=spp)
            index._epoch = epoch + 1
            for _, key, value in live:
                free, index._resume[key] = index._free_slot(key)
                index._place(free, key, value)
            return index  # every page dirty: the compact form is stored at the next checkpoint
        index = cls(capacity, slots_per_page=spp)
        index._epoch = epoch
        keys = index._keys
        for first, n in tombs:
            keys[first : first + n] = [_TOMB] * n
        index._tombs = tomb_count
        for slot, key, value in live:
            index._place(slot, key, value)
        index._dirty = set()
        return index


assert FORMAT_VERSION == 1  # the probe sequence above is format version 1's
