"""Collision benchmark: how uniformly realistic keys spread over the home slots.

For each key set (emails, sequential ints, short names, UUIDs) and capacity, the home slot
of every key (``key & (capacity - 1)``, the first slot of its probe sequence) is counted and
a chi-square uniformity statistic is computed over ``capacity`` bins with ``2 * capacity``
keys. Uniform hashing gives chi-square close to its degrees of freedom (``capacity - 1``); the
figure is printed beside the 1% critical value, above which uniformity would be rejected.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from discobase_core.hashing import string_key, value_key

CAPACITIES = [1024, 4096, 65536]
KEY_SETS: dict[str, Callable[[int], int]] = {
    "emails": lambda i: string_key(f"user{i}@example.com"),
    "sequential_ints": lambda i: value_key(i),
    "short_names": lambda i: string_key(f"u{i}"),
    "uuids": lambda i: value_key(uuid.uuid5(uuid.NAMESPACE_DNS, f"record-{i}")),
}


def critical_value(df: int, z: float = 2.326) -> float:
    """Chi-square quantile (Wilson-Hilferty); z = 2.326 is the 99th percentile."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def chi_square(keys: list[int], capacity: int) -> float:
    mask = capacity - 1
    counts = [0] * capacity
    for key in keys:
        counts[key & mask] += 1
    expected = len(keys) / capacity
    return sum((c - expected) ** 2 for c in counts) / expected


@pytest.mark.parametrize("capacity", CAPACITIES)
@pytest.mark.parametrize("key_set", list(KEY_SETS))
def test_slot_distribution(
    benchmark: Any, capsys: pytest.CaptureFixture[str], key_set: str, capacity: int
) -> None:
    make = KEY_SETS[key_set]
    keys = [make(i) for i in range(2 * capacity)]
    chi2 = benchmark.pedantic(chi_square, args=(keys, capacity), rounds=1, iterations=1)
    df = capacity - 1
    crit = critical_value(df)
    benchmark.extra_info.update(
        {"keys": len(keys), "chi_square": round(chi2, 1), "df": df, "critical_1pct": round(crit, 1)}
    )
    with capsys.disabled():
        print(
            f"\n[collision] {key_set:>15} capacity={capacity:>6} keys={len(keys):>6} "
            f"chi2={chi2:10.1f} df={df:>6} chi2/df={chi2 / df:.3f} critical(1%)={crit:10.1f} "
            f"{'uniform' if chi2 < crit else 'NOT uniform'}"
        )
    assert len(set(keys)) == len(keys)
    assert chi2 < crit
