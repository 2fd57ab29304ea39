"""Open planning: which messages of each lane an open takes, against a model of the truth."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from discobase_core.errors import DatabaseCorruptionError
from discobase_core.lease import DISCORD_EPOCH_MS, Fence
from discobase_core.opening import LaneScan, Take, lanes_to_read, missing_commits


@dataclass(frozen=True)
class Message:
    id: int
    kind: str  # log, ckpt or pages
    commit: int  # a checkpoint's: its next commit - 1
    floor: int = 0  # a checkpoint's replay_from
    damaged: bool = False


@st.composite
def table_channels(draw: st.DrawFn) -> list[Message]:
    """A table channel's messages, oldest first: commits in order, and checkpoints whose
    floor leaves up to three of the newest commits in flight (replayed, not covered)."""
    messages: list[Message] = []
    commit = floor = 0
    for step in range(draw(st.integers(0, 40))):
        what = draw(st.sampled_from(["log", "log", "log", "ckpt", "pages"]))
        if what == "log":
            commit += draw(st.integers(1, 3))  # other lanes took the numbers between
            messages.append(Message(step + 1, "log", commit))
        elif what == "ckpt":
            floor = max(floor, commit + 1 - draw(st.integers(0, 3)), 1)
            damaged = draw(st.booleans())
            messages.append(Message(step + 1, "ckpt", commit, floor, damaged))
        else:
            messages.append(Message(step + 1, "pages", commit))
    return messages


def open_table_channel(messages: list[Message]) -> tuple[list[int], Message | None]:
    """What the driver does: newest first, loading what `LOAD` offers unless damaged."""
    scan = LaneScan(0, [])
    tail: list[int] = []
    loaded = None
    for message in reversed(messages):
        take = scan.see(message.id, message.kind, message.commit)
        if take is Take.STOP:
            break
        if take is Take.TAIL:
            tail.append(message.id)
        elif take is Take.LOAD and not message.damaged:
            loaded = message
            scan.loaded(message.floor)
    return tail, loaded


@given(table_channels())
def test_the_open_takes_the_newest_readable_checkpoint_and_the_log_it_does_not_cover(
    messages: list[Message],
) -> None:
    tail, loaded = open_table_channel(messages)
    readable = [m for m in messages if m.kind == "ckpt" and not m.damaged]
    assert loaded == (readable[-1] if readable else None)
    floor = loaded.floor if loaded else 0
    expected = [m.id for m in reversed(messages) if m.kind == "log" and m.commit >= floor]
    assert tail == expected


def snowflake(ms: int) -> int:
    return (ms - DISCORD_EPOCH_MS) << 22


def test_a_lane_skips_what_a_writer_sent_past_its_lease_and_stops_below_the_floor() -> None:
    cutoff = 1_800_000_000_000
    scan = LaneScan(2, [Fence(1, cutoff), Fence(50, None)], floor=10)
    assert scan.see(snowflake(cutoff + 5), "log", 60) is Take.TAIL  # the current term
    assert scan.see(snowflake(cutoff + 1), "log", 40) is Take.SKIP  # sent past its cutoff
    assert scan.see(snowflake(cutoff - 1), "log", 12) is Take.TAIL
    assert scan.see(snowflake(cutoff - 2), "log", 9) is Take.STOP


def test_a_lane_thread_never_loads_a_checkpoint_and_an_unknown_kind_is_refused() -> None:
    assert LaneScan(1, [], floor=None).see(5, "ckpt", 3) is Take.SKIP
    with pytest.raises(DatabaseCorruptionError, match="newer version") as caught:
        LaneScan(0, []).see(5, "blob9", 3, where="message 5 in #user")
    assert caught.value.details["where"] == "message 5 in #user"


def test_lanes_are_read_unless_the_checkpoint_is_the_clean_closes() -> None:
    assert lanes_to_read(None, 0)
    assert lanes_to_read(7, 0)
    assert lanes_to_read(7, 9)  # the named one was damaged: an older one loaded
    assert not lanes_to_read(9, 9)


def test_missing_commits_name_the_term_and_the_range() -> None:
    assert missing_commits([(11, 4), (12, 9)], 10) == []
    (report,) = missing_commits([(11, 4), (12, 12)], 10)
    assert "commits 10..12" in report
    assert "term 12" in report
