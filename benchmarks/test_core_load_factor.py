"""Load-factor benchmark: probe counts of the index at fixed loads, beside the textbook.

The index probes a linear run of LINEAR_PROBES (8) slots, then jumps with CPython's
perturbed recurrence (setobject.c's scheme). Short runs behave like linear probing, long
chains like uniform hashing, so both textbook expectations are printed:

- linear probing (Knuth): hit 1/2 (1 + 1/(1-a)), miss 1/2 (1 + 1/(1-a)^2);
- uniform hashing:        hit (1/a) ln(1/(1-a)), miss 1/(1-a).

"hit" is the probes to reach a stored pair; "miss" the probes of a lookup of an absent key
up to and including the EMPTY slot that ends it. Each index is built at exactly the target
load (bypassing the automatic resize at 2/3); the timed part is 5,000 hit lookups.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from discobase_core.hashing import string_key
from discobase_core.index import HashIndex

CAPACITY = 1 << 15
LOADS = [0.25, 0.5, 0.67, 0.75, 0.9]


def textbook(a: float) -> dict[str, float]:
    return {
        "linear_hit": 0.5 * (1 + 1 / (1 - a)),
        "linear_miss": 0.5 * (1 + 1 / (1 - a) ** 2),
        "uniform_hit": (1 / a) * math.log(1 / (1 - a)),
        "uniform_miss": 1 / (1 - a),
    }


@pytest.mark.parametrize("load", LOADS)
def test_probe_counts(benchmark: Any, capsys: pytest.CaptureFixture[str], load: float) -> None:
    n = int(CAPACITY * load)
    keys = [string_key(f"user{i}@example.com") for i in range(n)]
    index = HashIndex.from_pairs(((k, i) for i, k in enumerate(keys)), capacity=CAPACITY)
    assert index.capacity == CAPACITY
    misses = [string_key(f"absent{i}@example.com") for i in range(10_000)]
    stats = index.stats(miss_keys=misses)

    sample = keys[:5000]

    def lookups() -> int:
        return sum(len(index.lookup(k)) for k in sample)

    assert benchmark(lookups) == len(sample)
    book = textbook(load)
    benchmark.extra_info.update(
        {
            "load": load,
            "mean_hit": round(stats.mean_hit, 3),
            "mean_miss": round(stats.mean_miss, 3),
            "longest_probe_run": stats.max_hit,
            "longest_miss": stats.max_miss,
            **{k: round(v, 3) for k, v in book.items()},
        }
    )
    with capsys.disabled():
        print(
            f"\n[load] a={load:.2f} pairs={n:>6} hit={stats.mean_hit:6.3f} "
            f"(linear {book['linear_hit']:6.3f}, uniform {book['uniform_hit']:6.3f}) "
            f"miss={stats.mean_miss:7.3f} (linear {book['linear_miss']:7.3f}, "
            f"uniform {book['uniform_miss']:6.3f}) longest run={stats.max_hit} "
            f"longest miss={stats.max_miss}"
        )
    assert stats.mean_hit <= book["linear_hit"] * 1.25
    assert stats.mean_miss <= book["linear_miss"] * 1.25
