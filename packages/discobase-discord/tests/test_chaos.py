"""The chaos harness (chaos.py), small: a few killed writers per scenario, faults, an emulator
crash, and the verdict that nothing acknowledged was lost, doubled or changed.

`nox -s chaos` runs the full version (hundreds of kill points); this one keeps the harness
itself working in the default test run.
"""

from __future__ import annotations

import asyncio

import chaos
import pytest

SEED = 20261125


@pytest.mark.slow
async def test_small_chaos_run_loses_and_doubles_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Killed writers, a crashed emulator, 5xx answers, 429 storms, gateway drops,
    connections dropped before and after Discord stored a write, and (with the lease) two
    writers at once and a rolling restart."""
    async with asyncio.timeout(300):  # a hung writer or emulator fails the test, not CI
        code = await chaos.run(full=False, seed=SEED, profile="fast")
    out = capsys.readouterr().out
    assert "acknowledged" in out
    assert code == 0, out


def test_verifier_counts_losses_duplicates_and_wrong_values() -> None:
    """The verdict logic on a hand-made journal, so a harness bug cannot hide a real one."""
    t = iter(range(1, 100))

    def ev(kind: str, op: str, marker: str, value: int) -> dict[str, object]:
        return {"ev": kind, "op": op, "m": marker, "v": value, "t": next(t)}

    events = [
        ev("start", "save", "kept", 1),
        ev("ack", "save", "kept", 1),
        ev("start", "save", "lost", 2),
        ev("ack", "save", "lost", 2),
        ev("start", "save", "twice", 3),
        ev("ack", "save", "twice", 3),
        ev("start", "save", "stale", 4),
        ev("ack", "save", "stale", 4),
        ev("start", "update", "stale", 5),
        ev("ack", "update", "stale", 5),
        ev("start", "save", "inflight", 6),
        ev("ack", "save", "inflight", 6),
        ev("start", "update", "inflight", 7),  # killed before its answer
        ev("start", "save", "gone", 8),
        ev("ack", "save", "gone", 8),
        ev("start", "delete", "gone", 8),
        ev("ack", "delete", "gone", 8),
        ev("start", "delete", "maybe", 9),  # in flight: absent or present both fine
        ev("start", "save", "never", 10),  # never acknowledged, not stored: fine
    ]
    stored = [
        {"m": "kept", "v": 1},
        {"m": "twice", "v": 3},
        {"m": "twice", "v": 3},
        {"m": "stale", "v": 4},
        {"m": "inflight", "v": 7},
        {"m": "gone", "v": 8},
        {"m": "phantom", "v": 11},
    ]
    row = chaos.Row("unit")
    chaos.verify(events, stored, row)
    assert (row.acknowledged, row.lost, row.duplicated, row.wrong) == (8, 1, 1, 3), row.findings
    assert any(f.startswith("lost lost:") for f in row.findings)
    assert any(f.startswith("wrong stale:") for f in row.findings)
    assert any(f.startswith("wrong gone:") for f in row.findings)
    assert any(f.startswith("wrong phantom:") for f in row.findings)
    assert "skipped" in chaos.table([chaos.Row("rivals", note="skipped: no lease in this build")])
