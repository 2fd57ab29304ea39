"""Codec throughput: encode+hash and decode of the standard User record (WORKLOAD.md).

Bar: at least 50,000 records/s each way on one core.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from discobase_core.codec import RecordCodec
from discobase_core.hashing import FieldHasher

N = 20_000
BAR = 50_000
WORDS = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
    "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
    "sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu",
]  # fmt: skip


class User(BaseModel):
    name: str
    email: str
    age: int
    bio: str


def bio(i: int) -> str:
    words: list[str] = []
    x = i * 2654435761 % (1 << 32)
    while sum(len(w) + 1 for w in words) < 120:
        x = (x * 1103515245 + 12345) % (1 << 31)
        words.append(WORDS[x % len(WORDS)])
    return " ".join(words)[:120]


def users() -> list[User]:
    return [
        User(name=f"user{i:06d}", email=f"user{i}@example.com", age=18 + i % 80, bio=bio(i))
        for i in range(N)
    ]


def report(benchmark: Any, capsys: pytest.CaptureFixture[str], what: str) -> float:
    best = benchmark.stats.stats.min
    rate = N / best
    benchmark.extra_info.update({"records": N, "records_per_s": round(rate)})
    with capsys.disabled():
        print(f"\n[codec] {what}: {rate:,.0f} records/s (best of rounds, {N} records, bar {BAR:,})")
    return rate


def test_encode_and_hash(benchmark: Any, capsys: pytest.CaptureFixture[str]) -> None:
    records = users()
    codec = RecordCodec(User)
    hasher = FieldHasher(User)
    encode, keys = codec.encode, hasher.keys

    def run() -> int:
        total = 0
        for r in records:
            total += len(encode(r))
            keys(r)
        return total

    assert benchmark.pedantic(run, rounds=5, iterations=1) > 0
    assert report(benchmark, capsys, "encode+hash") >= BAR


def test_decode(benchmark: Any, capsys: pytest.CaptureFixture[str]) -> None:
    codec = RecordCodec(User)
    blobs = [codec.encode(r) for r in users()]
    decode = codec.decode

    def run() -> int:
        return len([decode(b, where="bench") for b in blobs])

    assert benchmark.pedantic(run, rounds=5, iterations=1) == N
    assert report(benchmark, capsys, "decode") >= BAR
