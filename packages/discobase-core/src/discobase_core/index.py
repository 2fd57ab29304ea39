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
an error). Insert refuses an exact pair that is already stored, then takes the first
TOMBSTONE or EMPTY slot on the key's chain, resuming where the key's previous insert stopped
when that key's chain is long (so adding the n-th record with one field value does not walk
past the n-1 before it); the slot is never beyond the chain's first EMPTY slot, so lookups
reach it. Remove turns the pair's slot into a TOMBSTONE. The in-memory layout (see
``HashIndex``) is not the page format: pages hold only the slots.

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
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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

# Slot codes of the in-memory array('I'): a LIVE slot holds its value + _OFFSET, or _BIG
# when the value does not fit (then it is in a dict beside the array).
_EMPTY, _TOMB, _OFFSET, _BIG = 0, 1, 2, 0xFFFF_FFFF
_INLINE_LIMIT = _BIG - _OFFSET
_BIG_VALUE = (1 << 64) - 1  # in from_pages' array('Q') of values: "see the dict"
_BITMAP_VALUES = 1 << 27
_SEEN, _NEW_DERIVED, _NEW_EXPLICIT = 0, 1, 2
_RUN_EMPTY, _RUN_TOMB, _LIVE = 0, 1, 2
_LIVE_BYTE = bytes((_LIVE,))
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
    """Open-addressing multimap from 64-bit keys to non-negative ints (see module doc).

    In memory a slot is one 32-bit code in an ``array('I')`` (EMPTY, TOMBSTONE, or the value
    plus 2), about 4 bytes per slot instead of the ~200 of a Python object graph. Keys are
    not stored per slot when the index is given ``key_of`` (value -> its key, or None): the
    table state already holds every record's keys in its directory, so a slot's key is
    derived from its value. A pair whose key is not ``key_of(value)`` (or every pair of an
    index without ``key_of``) is *explicit*: its key is kept in a dict beside the slots.
    The owner of ``key_of`` must remove a derived pair before ``key_of`` of its value changes.
    ``all_pairs``, optional, returns how many values have a key and every such
    ``(key_of(v), v)``: resizes read them in bulk (see ``_rebuild``).
    """

    __slots__ = (
        "_all_pairs",
        "_big",
        "_capacity",
        "_codes",
        "_dirty",
        "_epoch",
        "_explicit",
        "_holes",
        "_key_of",
        "_live",
        "_mask",
        "_resume",
        "_slot_of",
        "_tombs",
        "_where",
        "slots_per_page",
    )

    def __init__(
        self,
        capacity: int = 64,
        *,
        slots_per_page: int = 512,
        key_of: Callable[[int], int | None] | None = None,
        all_pairs: Callable[[], tuple[int, Iterable[tuple[int, int]]]] | None = None,
    ) -> None:
        _check_capacity(capacity)
        if slots_per_page < 1:
            raise ValueError(f"slots_per_page must be >= 1, got {slots_per_page}")
        self.slots_per_page = slots_per_page
        self._key_of = key_of
        self._all_pairs = all_pairs
        self._epoch = 0
        self._alloc(capacity)
        self._dirty: set[int] = set(range(self.page_count))

    def _alloc(self, capacity: int) -> None:
        self._capacity = capacity
        self._mask = capacity - 1
        self._codes = array("I", bytes(4 * capacity))  # every slot EMPTY (code 0)
        self._big: dict[int, int] = {}  # slot -> value, for values too big for a code
        self._explicit: dict[int, int] = {}  # slot -> key, for explicit pairs
        self._slot_of: dict[tuple[int, int], int] = {}  # explicit pair -> slot
        self._live = 0
        self._tombs = 0
        self._resume: dict[int, tuple[int, int, int]] = {}
        # Tombstones left on the chain of a key with a resume point (a key many values
        # share): its next inserts fill them, and its resume point stays where it was.
        self._holes: dict[int, list[int]] = {}
        # value -> its derived pair's slot + 1 (0: unknown), a hint checked before use:
        # unindexing one of the n values of a shared key would otherwise walk its chain.
        # Set by inserts on a shared key's chain and by every walk of `_find` for what it
        # passes (so a chain is walked about once), never by bulk builds: an index opened
        # and only read holds none.
        self._where = array("I")

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
            and all(self.slot(n) == other.slot(n) for n in range(self._capacity))
        )

    __hash__ = None  # type: ignore[assignment]

    # ---------------------------------------------------------------- slots

    def _value_at(self, slot: int) -> int:
        code = self._codes[slot]
        return self._big[slot] if code == _BIG else code - _OFFSET

    def _key_at(self, slot: int) -> int:
        """The key of LIVE ``slot``: explicit, or derived from its value."""
        key = self._explicit.get(slot)
        if key is None:
            assert self._key_of is not None
            key = self._key_of(self._value_at(slot))
            assert key is not None, "a derived pair outlived its key"
        return key

    def _derived(self, key: int, value: int) -> bool:
        """Whether the pair would be stored derived (its key is ``key_of(value)``)."""
        return self._key_of is not None and self._key_of(value) == key

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
        codes, mask, explicit, big, key_of = (
            self._codes,
            self._mask,
            self._explicit,
            self._big,
            self._key_of,
        )
        found: dict[int, int] = {}  # slot -> value: a revisited slot counts once
        j = key & mask
        perturb = key
        budget = _max_probes(self._capacity)
        while budget > 0:
            for i in range(LINEAR_PROBES):
                s = (j + i) & mask
                code = codes[s]
                if code < _OFFSET:
                    if code == _EMPTY:
                        return list(found.values())
                    continue
                value = big[s] if code == _BIG else code - _OFFSET
                k = explicit.get(s) if explicit else None
                if k is None:
                    assert key_of is not None
                    k = key_of(value)
                if k == key:
                    found[s] = value
            budget -= LINEAR_PROBES
            perturb >>= PERTURB_SHIFT
            j = (5 * j + 1 + perturb) & mask
        return list(found.values())  # pragma: no cover - unreachable while an EMPTY exists

    def __contains__(self, key: object) -> bool:
        return isinstance(key, int) and bool(self.lookup(key))

    def contains(self, key: int, value: int) -> bool:
        """Whether the exact pair is stored."""
        return self._find(key, value) >= 0

    def _find(self, key: int, value: int) -> int:
        """The slot of the pair, or -1. A derived pair is looked for along ``key``'s chain
        (comparing values only), so finding one of n values sharing a key costs O(n)."""
        slot = self._slot_of.get((key, value), -1)
        if slot >= 0 or not 0 <= key < KEY_LIMIT or not self._derived(key, value):
            return slot
        codes, mask, explicit = self._codes, self._mask, self._explicit
        code = value + _OFFSET if value < _INLINE_LIMIT else _BIG
        where = self._where
        if value < len(where):
            hinted = where[value] - 1
            if hinted >= 0 and codes[hinted] == code and hinted not in explicit:
                return hinted
        j = key & mask
        perturb = key
        budget = _max_probes(self._capacity)
        hints = len(where)
        while budget > 0:
            for i in range(LINEAR_PROBES):
                s = (j + i) & mask
                c = codes[s]
                if c == code and s not in explicit and (c != _BIG or self._big[s] == value):
                    return s
                if c == _EMPTY:
                    return -1
                if _OFFSET <= c < _BIG and s not in explicit:  # hint what the walk passes
                    if c - _OFFSET < hints:
                        where[c - _OFFSET] = s + 1
                    else:
                        self._hint(c - _OFFSET, s)
                        where = self._where
                        hints = len(where)
            budget -= LINEAR_PROBES
            perturb >>= PERTURB_SHIFT
            j = (5 * j + 1 + perturb) & mask
        return -1  # pragma: no cover - unreachable while an EMPTY exists

    def _free_slot(self, key: int) -> tuple[int, tuple[int, int, int], int]:
        """The first TOMBSTONE or EMPTY slot on ``key``'s chain at or after its resume
        point, the resume point just past it, and how many slots were walked past.

        The resume point (run start ``j``, ``perturb``, offset ``i``) only ever moves past
        LIVE slots or slots this call fills, and EMPTY slots never reappear until a rebuild
        (which forgets every resume point), so the slot returned is never beyond the chain's
        first EMPTY slot: lookups still reach it. Resume points are kept only for keys whose
        insert walked far (keys shared by many values), so inserting the n-th value of one
        key costs O(1) amortised while unique keys cost no memory.
        """
        codes, mask = self._codes, self._mask
        j, perturb, i = self._resume.get(key) or (key & mask, key, 0)
        hole = self._take_hole(key) if self._holes else -1
        if hole >= 0:
            return hole, (j, perturb, i), 0
        walked = 0
        budget = _max_probes(self._capacity)
        while budget > 0:
            while i < LINEAR_PROBES:
                s = (j + i) & mask
                if codes[s] < _OFFSET:
                    return s, (j, perturb, i + 1), walked
                i += 1
                walked += 1
            budget -= LINEAR_PROBES
            perturb >>= PERTURB_SHIFT
            j = (5 * j + 1 + perturb) & mask
            i = 0
        raise AssertionError("no free slot")  # pragma: no cover - an EMPTY always remains

    def _take_hole(self, key: int) -> int:
        """A tombstone on ``key``'s chain to fill (see ``_holes``), or -1."""
        holes = self._holes.get(key)
        while holes:
            slot = holes.pop()
            if self._codes[slot] == _TOMB:  # not taken since by a key whose chain crosses
                return slot
        self._holes.pop(key, None)
        return -1

    def _hint(self, value: int, slot: int) -> None:
        """Remember where ``value``'s derived pair is (for values up to about twice the
        capacity: record ids are dense, and the hint costs 4 bytes a value)."""
        where = self._where
        if value >= len(where):
            if value >= 2 * self._capacity + 65536:
                return
            # Grown rarely and in big steps (at first to the capacity): an array doubled
            # many times leaves the allocator holding its old copies.
            grown = array("I", [0]) * max(value + 1, 2 * len(where), self._capacity)
            grown[: len(where)] = where
            self._where = where = grown
        where[value] = slot + 1

    def insert(self, key: int, value: int) -> bool:
        """Add the pair; ``False`` (and no change) if it is already present."""
        self._check(key, value)
        if self._find(key, value) >= 0:
            return False
        self._add(key, value, explicit=not self._derived(key, value))
        return True

    def _add(self, key: int, value: int, *, explicit: bool = False) -> None:
        """Insert a pair known to be valid and absent (the table state's fast path)."""
        free, resume, walked = self._free_slot(key)
        if self._codes[free] == _EMPTY and (self._live + self._tombs + 1) * MAX_LOAD_DEN > (
            self._capacity * MAX_LOAD_NUM
        ):
            pending = 0 if explicit or not self._derived(key, value) else 1
            if self._rebuild(_capacity_for(self._live + 1), pending):
                return
            free, resume, walked = self._free_slot(key)
        if walked >= LINEAR_PROBES or key in self._resume:
            self._resume[key] = resume
        self._place(free, key, value, explicit)
        self._dirty.add(free // self.slots_per_page)

    def _put_derived(self, key: int, value: int) -> None:
        """Index ``value`` under ``key``, its key now: the owner of ``key_of`` calls this
        after storing the key, knowing no derived pair of ``value`` is here (so no probe
        for a duplicate; an explicit twin, which only damage leaves, is kept instead)."""
        if self._key_of is None or self._slot_of:
            self.insert(key, value)
            return
        # The common case, inlined: _add without its calls. Resume points matter here:
        # a key shared by many records (an age, a flag) resumes past its earlier values.
        codes, mask, resume = self._codes, self._mask, self._resume
        if self._holes and value < _INLINE_LIMIT:
            hole = self._take_hole(key)
            if hole >= 0:
                codes[hole] = value + _OFFSET
                self._tombs -= 1
                self._live += 1
                self._dirty.add(hole // self.slots_per_page)
                self._hint(value, hole)
                return
        point = resume.get(key) if resume else None
        j, perturb, i = point or (key & mask, key, 0)
        walked = 0
        while value < _INLINE_LIMIT and walked < 4 * LINEAR_PROBES:
            if i == LINEAR_PROBES:  # past a run (a resume point may stop there): jump
                perturb >>= PERTURB_SHIFT
                j = (5 * j + 1 + perturb) & mask
                i = 0
            s = (j + i) & mask
            code = codes[s]
            i += 1
            if code < _OFFSET:
                if code == _TOMB:
                    self._tombs -= 1
                elif (self._live + self._tombs + 1) * MAX_LOAD_DEN > (
                    self._capacity * MAX_LOAD_NUM
                ):
                    break  # time to grow: _add rebuilds
                codes[s] = value + _OFFSET
                self._live += 1
                self._dirty.add(s // self.slots_per_page)
                if point is not None or walked >= LINEAR_PROBES:
                    resume[key] = (j, perturb, i)
                    self._hint(value, s)
                return
            walked += 1
        self._add(key, value)

    def _put_many_derived(self, keys: Sequence[int], values: Sequence[int]) -> None:
        """``_put_derived`` of many pairs (a block of new records): when the resize policy
        would grow the index during the batch, grow it once, straight to the capacity the
        policy would reach, placing the batch with the owner's pairs; otherwise place them
        in one tight loop. Falls back to one by one when tombstones or explicit pairs make
        the outcome unpredictable."""
        n = len(values)
        if (
            self._key_of is None
            or self._slot_of
            or self._tombs
            or (values and max(values) >= _INLINE_LIMIT)
        ):
            for key, value in zip(keys, values, strict=True):
                self._put_derived(key, value)
            return
        # The policy, one insert at a time into EMPTY slots: the insert made at `live`
        # pairs grows the table when (live + 1) * 3 > capacity * 2.
        capacity, rebuilds = self._capacity, 0
        while self._live + n > capacity * MAX_LOAD_NUM // MAX_LOAD_DEN:
            capacity = _capacity_for(capacity * MAX_LOAD_NUM // MAX_LOAD_DEN + 1)
            rebuilds += 1
        if rebuilds:
            epoch = self._epoch
            placed = self._rebuild(capacity, pending=n)
            self._epoch = epoch + rebuilds  # as many generations as one by one
            if placed:
                return
        codes, mask, dirty, spp = self._codes, self._mask, self._dirty, self.slots_per_page
        for key, value in zip(keys, values, strict=True):
            free = key & mask
            if codes[free] == _EMPTY:  # the common case, as in _rebuild
                codes[free] = value + _OFFSET
                dirty.add(free // spp)
                continue
            point = self._resume.get(key) if self._resume else None
            j, perturb, i = point or (free, key, 0)
            walked = 0
            while True:
                if i == LINEAR_PROBES:
                    perturb >>= PERTURB_SHIFT
                    j = (5 * j + 1 + perturb) & mask
                    i = 0
                free = (j + i) & mask
                i += 1
                if codes[free] == _EMPTY:  # no tombstones: checked above
                    break
                walked += 1
            codes[free] = value + _OFFSET
            dirty.add(free // spp)
            if walked >= LINEAR_PROBES or point is not None:
                self._resume[key] = (j, perturb, i)
        self._live += n

    def _drop_derived(self, key: int, value: int) -> None:
        """Unindex ``value`` from ``key``, its key still: call before the key changes."""
        found = self._find(key, value)
        if found >= 0:
            self._clear(found, key, value)

    def _place(self, slot: int, key: int, value: int, explicit: bool) -> None:
        codes = self._codes
        if codes[slot] == _TOMB:
            self._tombs -= 1
        if value < _INLINE_LIMIT:
            codes[slot] = value + _OFFSET
        else:
            codes[slot] = _BIG
            self._big[slot] = value
        if explicit:
            self._explicit[slot] = key
            self._slot_of[key, value] = slot
        elif key in self._resume:  # a shared key's long chain (see `_where`)
            self._hint(value, slot)
        self._live += 1

    def remove(self, key: int, value: int) -> bool:
        """Remove the pair (leaving a tombstone); ``False`` if it is absent."""
        found = self._find(key, value)
        if found < 0:
            return False
        self._clear(found, key, value)
        return True

    def _clear(self, slot: int, key: int, value: int) -> None:
        if self._codes[slot] == _BIG:
            del self._big[slot]
        if self._explicit.pop(slot, None) is not None:
            del self._slot_of[key, value]
        self._codes[slot] = _TOMB
        if key in self._resume:  # this key's next insert fills the tombstone
            self._holes.setdefault(key, []).append(slot)
        self._live -= 1
        self._tombs += 1
        self._dirty.add(slot // self.slots_per_page)

    def keys_values(self) -> Iterator[tuple[int, int]]:
        """Every live pair, in slot order."""
        for s, code in enumerate(self._codes):
            if code >= _OFFSET:
                yield self._key_at(s), self._value_at(s)

    def slot(self, n: int) -> tuple[int, int] | bool | None:
        """Slot ``n``: ``(key, value)`` if live, ``None`` if EMPTY, ``False`` if a tombstone."""
        code = self._codes[n]
        if code == _EMPTY:
            return None
        if code == _TOMB:
            return False
        return self._key_at(n), self._value_at(n)

    # ---------------------------------------------------------------- resize

    def _rebuild(self, capacity: int, pending: int = 0) -> bool:
        """Re-place every live pair at ``capacity``, and the ``pending`` derived pairs about
        to be added (their keys already stored by the owner) when that is free; True if it
        placed them.

        When ``all_pairs`` says the owner holds exactly ``pending`` more keys than this
        index has derived pairs, the derived pairs plus the pending ones are the owner's
        pairs (derived pairs are distinct values with keys): they are read from it in bulk
        instead of slot by slot through ``key_of`` (the bulk load case, about twice as
        fast). Otherwise the old slots are walked. Either way no list of every pair is
        built: a resize of a million pairs stays small.
        """
        old_codes, old_big, old_explicit = self._codes, self._big, self._explicit
        key_of = self._key_of
        derived_pairs: Iterable[tuple[int, int]] | None = None
        placed = False
        if pending and self._all_pairs is not None and key_of is not None:
            count, pairs = self._all_pairs()
            if count == self._live - len(old_explicit) + pending:
                derived_pairs, placed = pairs, True
        if derived_pairs is None:
            derived_pairs = self._derived_slots(old_codes, old_big, old_explicit)
        self._alloc(capacity)
        self._epoch += 1
        for slot, key in old_explicit.items():
            code = old_codes[slot]
            value = old_big[slot] if code == _BIG else code - _OFFSET
            free, past, walked = self._free_slot(key)
            if walked >= LINEAR_PROBES or key in self._resume:
                self._resume[key] = past
            self._place(free, key, value, True)
        codes, mask, resume, big = self._codes, self._mask, self._resume, self._big
        live = self._live
        for key, value in derived_pairs:
            free = key & mask
            if codes[free] == _EMPTY and value < _INLINE_LIMIT:
                # The common case: the chain's first slot is free. (In a fresh table a key
                # with a resume point never finds its first slot EMPTY.)
                codes[free] = value + _OFFSET
                live += 1
                continue
            point = resume.get(key) if resume else None
            j, perturb, i = point or (free, key, 0)
            walked = 0
            while True:
                if i == LINEAR_PROBES:  # past a run (a resume point may stop there): jump
                    perturb >>= PERTURB_SHIFT
                    j = (5 * j + 1 + perturb) & mask
                    i = 0
                free = (j + i) & mask
                if codes[free] == _EMPTY:  # no tombstones in a fresh table
                    break
                i += 1
                walked += 1
            if walked >= LINEAR_PROBES or point is not None:
                resume[key] = (j, perturb, i + 1)
            if value < _INLINE_LIMIT:
                codes[free] = value + _OFFSET
            else:
                codes[free] = _BIG
                big[free] = value
            live += 1
        self._live = live
        self._dirty = set(range(self.page_count))
        return placed

    def _derived_slots(
        self, codes: array[int], big: dict[int, int], explicit: dict[int, int]
    ) -> Iterator[tuple[int, int]]:
        """(key, value) of every derived pair among ``codes``, in slot order."""
        key_of = self._key_of
        for s, code in enumerate(codes):
            if code < _OFFSET or s in explicit:
                continue
            value = big[s] if code == _BIG else code - _OFFSET
            assert key_of is not None
            key = key_of(value)
            assert key is not None, "a derived pair outlived its key"
            yield key, value

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
                free, point, walked = index._free_slot(key)
                if walked >= LINEAR_PROBES or key in index._resume:
                    index._resume[key] = point
                index._place(free, key, value, True)
        return index

    # ---------------------------------------------------------------- statistics

    def probe_count(self, key: int) -> int:
        """Slots ``lookup(key)`` examines (up to and including the EMPTY slot)."""
        codes = self._codes
        for n, s in enumerate(probe_sequence(key, self._capacity), 1):
            if codes[s] == _EMPTY:
                return n
        raise AssertionError("unreachable")  # pragma: no cover

    def stats(self, miss_keys: Iterable[int] = ()) -> ProbeStats:
        """Probe statistics over every live pair, and over ``miss_keys`` for misses."""
        codes, cap = self._codes, self._capacity
        hits: list[int] = []
        distinct: set[int] = set()
        for slot, code in enumerate(codes):
            if code < _OFFSET:
                continue
            k = self._key_at(slot)
            distinct.add(k)
            for n, s in enumerate(probe_sequence(k, cap), 1):
                if s == slot:
                    hits.append(n)
                    break
                if codes[s] == _EMPTY:  # pragma: no cover - would mean a broken chain
                    raise AssertionError(f"pair in slot {slot} is unreachable")
        misses = [self.probe_count(k) for k in miss_keys]
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
        codes, explicit, key_of = self._codes, self._explicit, self._key_of
        s = start
        while s < end:
            code = codes[s]
            if code >= _OFFSET:
                # _key_at and write_uvarint inlined: this runs for every pair at checkpoints.
                value = self._big[s] if code == _BIG else code - _OFFSET
                key = explicit.get(s) if explicit else None
                if key is None:
                    assert key_of is not None
                    key = key_of(value)
                    assert key is not None, "a derived pair outlived its key"
                out += _LIVE_BYTE
                out += key.to_bytes(8, "big")
                if value < 0x80:
                    out.append(value)
                elif value < 0x4000:
                    out += bytes((value & 0x7F | 0x80, value >> 7))
                elif value < 0x20_0000:
                    out += bytes((value & 0x7F | 0x80, (value >> 7) & 0x7F | 0x80, value >> 14))
                else:
                    write_uvarint(out, value)
                s += 1
                continue
            run_end = s + 1
            while run_end < end and codes[run_end] == code:
                run_end += 1
            out.append(_RUN_EMPTY if code == _EMPTY else _RUN_TOMB)
            write_uvarint(out, run_end - s)
            s = run_end
        return seal(PAGE_KIND, bytes(out))

    def encode_pages(self, pages: Iterable[int] | None = None) -> dict[int, bytes]:
        """``{n: encode_page(n)}`` for ``pages`` (default: the dirty pages)."""
        chosen = sorted(self._dirty if pages is None else pages)
        return {n: self.encode_page(n) for n in chosen}

    @classmethod
    def from_pages(
        cls,
        pages: Mapping[int, bytes],
        *,
        key_of: Callable[[int], int | None] | None = None,
        all_pairs: Callable[[], tuple[int, Iterable[tuple[int, int]]]] | None = None,
    ) -> HashIndex:
        """Rebuild an index from every one of its pages; validates everything and raises
        :class:`DatabaseCorruptionError` (``where="index page N"``) otherwise. The result
        has no dirty pages, unless it was compacted (below). ``key_of`` and ``all_pairs`` are
        as for the constructor: pairs whose key ``key_of`` gives are stored derived.

        Memory follows the bytes, not the claims: the pages are parsed into their live
        pairs and tombstone runs first (compact arrays, proportional to the bytes present),
        and the page set is checked against the capacity the pages claim before anything is
        allocated. A run of a billion EMPTY slots is a few bytes, so a capacity far beyond
        what the live pairs need (more than :data:`DECODE_FLOOR` slots and more than four
        times what a rebuild would choose) is not allocated: the index is rebuilt from its
        live pairs at the policy's capacity instead (lossless: lookups depend on the live
        pairs only), with a new epoch and every page dirty, so the next checkpoint stores the
        compact form. Legitimate pages only get there after most of their pairs were removed.
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
        live_slots = array("Q")
        live_keys = array("Q")
        live_values = array("Q")  # _BIG_VALUE: the value is in big_values
        big_values: dict[int, int] = {}  # position in the live arrays -> value
        seen = _PairSet(key_of)
        bits = seen._bits
        explicit_positions: list[int] = []  # positions in the live arrays
        tombs: list[tuple[int, int]] = []  # (first slot, count)
        # When the claimed capacity is in proportion to the bytes given (4 bytes a slot, at
        # most 8 times the bytes), slots are written straight into the index's array.
        total_bytes = sum(len(page) for page in pages.values())
        direct: HashIndex | None = None
        direct_codes: array[int] | None = None
        placed = 0  # derived pairs written straight into direct_codes
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
                if capacity <= max(DECODE_FLOOR, 2 * total_bytes):
                    direct = cls(capacity, slots_per_page=spp, key_of=key_of, all_pairs=all_pairs)
                    direct_codes = direct._codes
            elif header != (capacity, spp, epoch):
                raise fail(
                    f"capacity/slots per page/epoch {(capacity, spp, epoch)} disagree with "
                    f"the other pages {header}"
                )
            start = page_no * spp
            end = min(start + spp, capacity)
            s = start
            data = reader.data
            size = len(data)
            while s < end:
                pos = reader.pos
                # The common case, inlined: a LIVE slot with a value of 1 to 3 bytes (minimal
                # encodings only; anything else takes the general path, which judges it).
                v = -1
                if pos + 12 <= size and data[pos] == _LIVE:
                    b = data[pos + 9]
                    if b < 0x80:
                        v, after = b, pos + 10
                    else:
                        b2 = data[pos + 10]
                        if 0 < b2 < 0x80:
                            v, after = (b & 0x7F) | b2 << 7, pos + 11
                        elif b2 >= 0x80 and 0 < data[pos + 11] < 0x80:
                            v = (b & 0x7F) | (b2 & 0x7F) << 7 | data[pos + 11] << 14
                            after = pos + 12
                elif pos + 2 < size and data[pos] in (_RUN_EMPTY, _RUN_TOMB) and data[pos + 1]:
                    # A run of 1 to 127 slots, inlined too.
                    n = data[pos + 1]
                    if n < 0x80:
                        if s + n > end:
                            raise fail(f"slot run of {n} overruns the page at slot {s}")
                        if data[pos] == _RUN_TOMB:
                            tombs.append((s, n))
                        s += n
                        reader.pos = pos + 2
                        continue
                if v >= 0:
                    k = int.from_bytes(data[pos + 1 : pos + 9], "big")
                    reader.pos = after
                else:
                    tag = reader.byte()
                    if tag in (_RUN_EMPTY, _RUN_TOMB):
                        n = reader.uvarint()
                        if n < 1 or s + n > end:
                            raise fail(f"slot run of {n} overruns the page at slot {s}")
                        if tag == _RUN_TOMB:
                            tombs.append((s, n))
                        s += n
                        continue
                    if tag != _LIVE:
                        raise fail(f"unknown slot tag {tag} at slot {s}")
                    k = int.from_bytes(reader.take(8), "big")
                    v = reader.uvarint()
                    if v >= VALUE_LIMIT:
                        raise fail(f"value {v} in slot {s} is beyond 2**128")
                if key_of is not None and v < _BITMAP_VALUES and key_of(v) == k:
                    # A derived pair (the common case): seen.add inlined.
                    byte, bit = v >> 3, 1 << (v & 7)
                    if byte >= len(bits):
                        bits.extend(bytes(max(byte + 1 - len(bits), len(bits))))
                    if bits[byte] & bit:
                        raise fail(f"duplicate pair ({k}, {v}) in slot {s}")
                    bits[byte] |= bit
                    if direct_codes is not None:
                        direct_codes[s] = v + _OFFSET
                        placed += 1
                    else:
                        live_values.append(v)
                        live_slots.append(s)
                        live_keys.append(k)
                    s += 1
                    continue
                kind = seen.add(k, v)
                if kind == _SEEN:
                    raise fail(f"duplicate pair ({k}, {v}) in slot {s}")
                if kind == _NEW_EXPLICIT:
                    explicit_positions.append(len(live_slots))
                if v < _BIG_VALUE:
                    live_values.append(v)
                else:
                    big_values[len(live_values)] = v
                    live_values.append(_BIG_VALUE)
                live_slots.append(s)
                live_keys.append(k)
                s += 1
            reader.expect_end()
        del seen
        assert header is not None
        capacity, spp, epoch = header
        live = placed + len(live_slots)
        tomb_count = sum(n for _, n in tombs)
        if live + tomb_count >= capacity:
            raise DatabaseCorruptionError(
                "index: no empty slot (lookups could not terminate)",
                where="index",
                reason="no empty slot",
            )

        def value(position: int) -> int:
            v = live_values[position]
            return big_values[position] if v == _BIG_VALUE else v

        compact = capacity > max(DECODE_FLOOR, 4 * _capacity_for(live + 1))
        if compact and direct is None:
            index = cls(
                _capacity_for(live + 1), slots_per_page=spp, key_of=key_of, all_pairs=all_pairs
            )
            index._epoch = epoch + 1
            for position in range(live):
                key, v = live_keys[position], value(position)
                free, point, walked = index._free_slot(key)
                if walked >= LINEAR_PROBES or key in index._resume:
                    index._resume[key] = point
                index._place(free, key, v, not index._derived(key, v))
            return index  # every page dirty: the compact form is stored at the next checkpoint
        # (An index is falsy while it is empty: `direct or ...` would drop it.)
        index = (
            direct
            if direct is not None
            else cls(capacity, slots_per_page=spp, key_of=key_of, all_pairs=all_pairs)
        )
        index._epoch = epoch
        codes = index._codes
        for first, n in tombs:
            codes[first : first + n] = array("I", [_TOMB]) * n
        index._tombs = tomb_count
        if key_of is None:
            for position in range(live):
                index._place(live_slots[position], live_keys[position], value(position), True)
        else:
            # Derived pairs (checked by `seen` above) cost one code each; the rest as usual.
            for position, slot in enumerate(live_slots):
                v = live_values[position]
                if v < _INLINE_LIMIT:
                    codes[slot] = v + _OFFSET
                else:
                    index._big[slot] = value(position)
                    codes[slot] = _BIG
            for position in explicit_positions:
                slot, key = live_slots[position], live_keys[position]
                index._explicit[slot] = key
                index._slot_of[key, value(position)] = slot
            index._live = live
        index._dirty = set()
        if compact:  # pages written straight in, far sparser than needed: compact now
            index._rebuild(_capacity_for(live + 1))
        return index


class _PairSet:
    """The pairs seen while decoding pages, to refuse a repeated one. Derived pairs (the
    common case) are remembered by value in a bitmap (one bit per value below 2**27), so
    checking a million pairs costs kilobytes, not a set of a million tuples."""

    __slots__ = ("_bits", "_key_of", "_pairs", "_values")

    def __init__(self, key_of: Callable[[int], int | None] | None) -> None:
        self._key_of = key_of
        self._bits = bytearray()
        self._values: set[int] = set()
        self._pairs: set[tuple[int, int]] = set()

    def add(self, key: int, value: int) -> int:
        """Remember the pair: _SEEN if it was seen before, else whether it is derived."""
        if self._key_of is None or self._key_of(value) != key:
            if (key, value) in self._pairs:
                return _SEEN
            self._pairs.add((key, value))
            return _NEW_EXPLICIT
        if value >= _BITMAP_VALUES:
            if value in self._values:
                return _SEEN
            self._values.add(value)
            return _NEW_DERIVED
        byte, bit = value >> 3, 1 << (value & 7)
        bits = self._bits
        if byte >= len(bits):
            bits.extend(bytes(max(byte + 1 - len(bits), len(bits))))
        if bits[byte] & bit:
            return _SEEN
        bits[byte] |= bit
        return _NEW_DERIVED


assert FORMAT_VERSION == 1  # the probe sequence above is format version 1's
