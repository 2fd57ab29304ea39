"""Byte-level damage for the control API's `garble`: what bit rot, a bad proxy or a buggy
tool could do to a stored message, so tests can check that a reader notices and names it.

Pure functions over bytes; the control API chooses the target (content or one attachment)
and stores the result.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

MODES = ("flip", "replace", "truncate")


@dataclass
class Garbled:
    data: bytes
    offsets: list[int]


def garble(
    data: bytes,
    rng: random.Random,
    *,
    mode: str = "flip",
    offset: int | None = None,
    count: int = 1,
    mask: int = 0x01,
    replacement: bytes | None = None,
    length: int | None = None,
) -> Garbled:
    """Damage `data` and say which offsets changed.

    `flip` XORs `count` bytes from `offset` with `mask` (0x01 by default, which keeps ASCII
    text ASCII, so the damage is a wrong character and not an encoding error); `replace`
    overwrites them with `replacement` (repeated or cut to `count`; random bytes when not
    given); `truncate` keeps the first `length` bytes (default: half). Without `offset`
    a random one is drawn from `rng`.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if mode == "truncate":
        keep = len(data) // 2 if length is None else length
        if not 0 <= keep < len(data):
            raise ValueError(f"length must be in 0..{len(data) - 1}, not {keep}")
        return Garbled(data[:keep], list(range(keep, len(data))))
    if not data:
        raise ValueError("nothing to garble: the payload is empty")
    if count < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    start = rng.randrange(len(data)) if offset is None else offset
    if not 0 <= start < len(data):
        raise ValueError(f"offset must be in 0..{len(data) - 1}, not {start}")
    end = min(len(data), start + count)
    out = bytearray(data)
    if mode == "flip":
        if not 1 <= mask <= 0xFF:
            raise ValueError(f"mask must be in 1..255, not {mask}")
        for i in range(start, end):
            out[i] ^= mask
    else:
        span = end - start
        fill = replacement if replacement else rng.randbytes(span)
        out[start:end] = (fill * (span // len(fill) + 1))[:span]
    changed = [i for i in range(start, end) if out[i] != data[i]]
    return Garbled(bytes(out), changed)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
