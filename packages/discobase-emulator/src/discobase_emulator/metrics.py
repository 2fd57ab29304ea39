"""Request counters for benchmarks: totals since start, or since a named mark.

`rest_bytes` counts the body bytes of REST answers (by route in `rest_bytes_by_route`) and
`cdn_bytes` those of attachment downloads, so a benchmark can tell what a client downloaded.

A mark is a snapshot of the counters; metrics since a mark are the difference, so readers in
other processes can measure one phase of a workload without resetting anything.
"""

from __future__ import annotations

import copy
import itertools
from collections import Counter
from typing import Any


class Metrics:
    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.by_route: Counter[str] = Counter()
        self.rest_bytes = 0
        self.rest_bytes_by_route: Counter[str] = Counter()
        self.by_bucket: Counter[str] = Counter()
        self.http_429: Counter[str] = Counter({"total": 0, "user": 0, "global": 0, "shared": 0})
        self.invalid_requests = 0
        self.cdn_requests = 0
        self.cdn_bytes = 0
        self.gateway_connections = 0
        self.status: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.marks: dict[str, dict[str, Any]] = {}

    def record(self, route: str, bucket: str | None, status: int, size: int = 0) -> None:
        """One REST request on `route` answered with `status` and a body of `size` bytes."""
        self.requests += 1
        self.by_route[route] += 1
        if size:
            self.rest_bytes += size
            self.rest_bytes_by_route[route] += size
        if bucket is not None:
            self.by_bucket[bucket] += 1
        self.status[str(status)] += 1

    def record_fault(self, kind: str) -> None:
        """One injected fault of `kind` (error, storm_429, drop_before, drop_after, stall)."""
        self.faults[kind] += 1

    def record_429(self, scope: str) -> None:
        self.http_429["total"] += 1
        if scope in ("user", "global", "shared"):  # a Cloudflare-style ban counts in total only
            self.http_429[scope] += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_route": dict(self.by_route),
            "rest_bytes": self.rest_bytes,
            "rest_bytes_by_route": dict(self.rest_bytes_by_route),
            "by_bucket": dict(self.by_bucket),
            "http_429": dict(self.http_429),
            "invalid_requests": self.invalid_requests,
            "cdn_requests": self.cdn_requests,
            "cdn_bytes": self.cdn_bytes,
            "gateway_connections": self.gateway_connections,
            "status": dict(self.status),
            "faults": dict(self.faults),
        }

    def mark(self) -> str:
        mark_id = f"m{next(self._ids)}"
        self.marks[mark_id] = copy.deepcopy(self.snapshot())
        return mark_id

    def since(self, mark_id: str | None) -> dict[str, Any]:
        now = self.snapshot()
        if mark_id is None:
            return now
        base = self.marks[mark_id]
        return _diff(now, base)


def _diff(now: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in now.items():
        if isinstance(value, dict):
            sub = _diff(value, base.get(key, {}))
            out[key] = {k: v for k, v in sub.items() if v} if key not in ("http_429",) else sub
        else:
            out[key] = value - base.get(key, 0)
    return out
