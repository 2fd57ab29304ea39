"""Opening a table: which messages of each lane the open takes (sans-IO).

The driver lists every lane newest first and hands each of our messages to `LaneScan.see`
with its kind and commit number; the answer says what to do with it. The table channel
(lane 0) holds log messages, checkpoints and checkpoint page messages; the lane threads hold
log messages. The open takes the newest checkpoint that loads (the driver loads it and
reports `loaded`, or skips it if it is damaged and asks about the next message), then every
log message at or after the checkpoint's floor (its `replay_from`: commits still in flight
when it was planned) in every lane, and stops reading a lane at its first message below the
floor, since a lane's commits only grow. Messages a writer sent past its lease (fenced) were
never acknowledged and are skipped.

`lanes_to_read` decides whether the lane threads need reading at all: not after a clean
close (the lease's release names a checkpoint holding everything, see
`LeaseView.final_checkpoint`). `missing_commits` names acknowledged commits the log no
longer holds.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from discobase_core.errors import DatabaseCorruptionError
from discobase_core.lease import Fence, is_fenced

__all__ = ["LaneScan", "Take", "lanes_to_read", "missing_commits"]


class Take(enum.Enum):
    """What the open does with one message of a lane."""

    SKIP = "skip"  # not needed (fenced, a page message, an older checkpoint)
    TAIL = "tail"  # a log message to replay
    LOAD = "load"  # a checkpoint to load: report `loaded(floor)`, or skip it if damaged
    STOP = "stop"  # this message and everything older is covered by the checkpoint


@dataclass
class LaneScan:
    """The open's reading of one lane, newest message first.

    `floor` is the first commit to replay: a lane thread knows it from the start (the
    loaded checkpoint's, or 0 without one); the table channel learns it from the checkpoint
    it loads (None until then: every log message counts, and the first checkpoint seen is
    loaded).
    """

    lane: int
    fences: Sequence[Fence]
    floor: int | None = None

    def see(self, message_id: int, kind: str, commit: int, *, where: str = "") -> Take:
        if is_fenced(self.fences, commit, message_id):
            return Take.SKIP  # written by a writer past its lease: never acknowledged
        if self.floor is not None:
            if commit < self.floor:
                return Take.STOP
            return Take.TAIL if kind == "log" else Take.SKIP
        if kind == "log":
            return Take.TAIL
        if kind == "ckpt" and self.lane == 0:
            return Take.LOAD
        if kind in ("ckpt", "pages"):
            return Take.SKIP
        where = where or f"message {message_id}"
        raise DatabaseCorruptionError(
            f"{where} holds a {kind!r} blob this version of discobase does not know; was it "
            "written by a newer version?",
            where=where,
            reason="unknown kind",
        )

    def loaded(self, floor: int) -> None:
        """The checkpoint offered by the last `see` loaded: replay from commit `floor` on."""
        self.floor = floor


def lanes_to_read(checkpoint: int | None, final_checkpoint: int) -> bool:
    """Whether the open must read the lane threads: unless the loaded checkpoint (its
    message id, None if none loaded) is the one the last writer's release named as holding
    everything (`final_checkpoint`, 0 if none)."""
    return checkpoint is None or checkpoint != final_checkpoint


def missing_commits(acked: Iterable[tuple[int, int]], next_commit: int) -> list[str]:
    """Damage reports for writer terms that acknowledged commits at or past `next_commit`
    (the first commit the opened log does not hold): someone deleted those messages."""
    return [
        f"commits {next_commit}..{last} acknowledged by writer term {term} are missing from "
        "the log (messages deleted?): the records they saved are lost and the updates they "
        "made are reverted"
        for term, last in acked
        if last >= next_commit
    ]
