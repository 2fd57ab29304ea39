"""The single-writer lease of a database, decided from messages alone (sans-IO).

Discord offers no compare-and-swap, but it does give every message a snowflake: a total
order, stamped with Discord's own clock. The lease lives in one channel of the database,
where writers append three kinds of records (sealed, armoured JSON, kind ``lease``):

- ``claim``: "I take the lease". A claim is **valid** when nobody holds the lease: there
  is no earlier term, the last term was released, or the last valid record of the holder
  is older than the holder's lease length (its records carry it; :data:`LEASE_TTL_MS` by
  default) at the claim's own timestamp. Otherwise it is void. Its message id is the new
  term's number.
- ``beat``: the holder renews the lease and reports, per table, the ids and commit
  numbers it reserved and the last commit it acknowledged. A beat is valid only while
  its term still holds the lease (its timestamp is at most the previous valid record's
  plus the TTL, and no later claim superseded the term).
- ``release``: the holder gives the lease up at close (with its final report).

Every process folds the same messages in snowflake order and reaches the same verdict
(:func:`fold`), so there is no coordinator. Fencing follows from the same rule: a term
superseded by a claim was valid only up to its **cutoff**, the last valid record's time plus
the TTL. A writer acknowledges a commit only when the commit's message is stamped at least
:data:`ACK_MARGIN_MS` before its own lease expires, and readers ignore a term's log
messages stamped after its cutoff (:class:`Fence`), so a writer that was paused or cut off
past its lease can never get a write acknowledged that the next holder does not see.

Reservations make ids and commit numbers unique across terms: a holder uses only ids and
commit numbers below what a landed beat reserved, and a new holder starts above every
reservation it can see, so a deleted log message can never lead to a reused id.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from discobase_core.codec import armor, dearmor, seal, unseal
from discobase_core.errors import DatabaseCorruptionError

__all__ = [
    "ACK_MARGIN_MS",
    "COMMIT_BLOCK",
    "DISCORD_EPOCH_MS",
    "HEARTBEAT_MS",
    "LEASE_TTL_MS",
    "RID_BLOCK",
    "Fence",
    "LeaseRecord",
    "LeaseView",
    "TableMark",
    "decode_record",
    "encode_record",
    "fold",
    "is_fenced",
    "merge_fences",
    "snowflake_ms",
]

#: A holder that posts nothing for this long has lost the lease.
LEASE_TTL_MS = 30_000
#: How often a holder renews (a third of the TTL: two beats may fail before it expires).
HEARTBEAT_MS = 10_000
#: A commit stamped later than this before the holder's expiry is not acknowledged.
ACK_MARGIN_MS = 5_000
#: Ids and commit numbers a holder reserves at a time, per table, at least (a writer taking
#: ids faster reserves more, see discobase's TableStore.mark; a release gives back what it
#: did not use, so ids jump only after a crash).
RID_BLOCK = 4096
COMMIT_BLOCK = 1024
DISCORD_EPOCH_MS = 1_420_070_400_000

Kind = Literal["claim", "beat", "release"]


def snowflake_ms(snowflake: int) -> int:
    """Unix milliseconds at which Discord minted ``snowflake``."""
    return (snowflake >> 22) + DISCORD_EPOCH_MS


@dataclass(frozen=True, slots=True)
class TableMark:
    """What a holder reports about one table: ids below ``rids_to`` and commit numbers
    below ``commits_to`` are reserved; its term's commits start at ``commits_from``; the
    last commit it acknowledged is ``acked`` (0: none yet). In a release, ``checkpoint`` is
    the message id of a checkpoint covering every commit the term made (0: none does), so
    the next open need not read the lane threads (see `LeaseView.final_checkpoint`)."""

    rids_to: int
    commits_to: int
    commits_from: int
    acked: int = 0
    checkpoint: int = 0


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """One lease message's content (``term`` is 0 in a claim: its own id is the term)."""

    kind: Kind
    term: int = 0
    holder: str = ""
    tables: Mapping[str, TableMark] = field(default_factory=dict)
    ttl_ms: int = LEASE_TTL_MS  # the holder's lease length: every reader folds with it


@dataclass(frozen=True, slots=True)
class Fence:
    """Log messages of table commits ``commits_from`` and up (until the next term's
    ``commits_from``) stamped after ``cutoff_ms`` were never acknowledged: ignore them."""

    commits_from: int
    cutoff_ms: int | None  # None: the term is still the holder (no cutoff yet)


@dataclass
class LeaseView:
    """The verdict of :func:`fold`."""

    term: int | None = None  # the current term, or None if nobody ever claimed
    holder: str = ""
    last_valid_ms: int = 0
    ttl_ms: int = LEASE_TTL_MS
    released: bool = False
    #: per term, in order: its claim's time, cutoff (None while current) and reports
    terms: dict[int, TermInfo] = field(default_factory=dict)

    @property
    def held(self) -> bool:
        return self.term is not None and not self.released

    @property
    def expires_ms(self) -> int:
        """When the current holder's lease runs out, unless it renews."""
        return self.last_valid_ms + self.ttl_ms

    def free_at(self, now_ms: int) -> bool:
        """Whether a claim stamped ``now_ms`` would be valid."""
        return not self.held or now_ms > self.expires_ms

    def reserved(self, table: str) -> tuple[int, int]:
        """(ids, commit numbers) reserved for ``table`` by any term seen: a new holder
        starts at or above both."""
        rids = commits = 0
        for info in self.terms.values():
            mark = info.tables.get(table)
            if mark is not None:
                rids = max(rids, mark.rids_to)
                commits = max(commits, mark.commits_to)
        return rids, commits

    def fences(self, table: str) -> list[Fence]:
        """The fences of ``table``'s log, oldest term first."""
        out: list[Fence] = []
        for info in self.terms.values():
            mark = info.tables.get(table)
            if mark is not None:
                out.append(Fence(mark.commits_from, info.cutoff_ms))
        return sorted(out, key=lambda f: f.commits_from)

    def final_checkpoint(self, table: str, *, own_term: int | None = None) -> int:
        """The checkpoint that holds all of ``table``: the one the newest term to write it
        named when it released the lease, if that term released it and no later term (but
        ``own_term``, this process's, which has written nothing yet) reported the table.
        0 when there is none: the log after the newest checkpoint must be read."""
        for term in sorted(self.terms, reverse=True):
            info = self.terms[term]
            mark = info.tables.get(table)
            if term == own_term or mark is None:
                continue
            return mark.checkpoint if info.released else 0
        return 0

    def acked(self, table: str) -> list[tuple[int, int]]:
        """(term, last acknowledged commit) of every term that reported ``table``."""
        return [
            (term, info.tables[table].acked)
            for term, info in self.terms.items()
            if table in info.tables and info.tables[table].acked
        ]


@dataclass
class TermInfo:
    claim_ms: int
    holder: str
    cutoff_ms: int | None = None
    tables: dict[str, TableMark] = field(default_factory=dict)
    times: list[int] = field(default_factory=list)  # its valid records' times
    released: bool = False


def fold(records: Iterable[tuple[int, LeaseRecord]]) -> LeaseView:
    """The lease's state after ``records``: (message id, record) pairs, in any order.

    What was read may start inside a term, or miss a term's claim (only the newest page is
    read). A term's number is its claim's message id, and only a writer whose claim was
    valid ever posts beats, so a beat of a term newer than the current one proves that claim:
    it is taken as made at its id's time, the older term's records stamped after it are void
    (they were late), and the older term's cutoff is its last record before the claim plus
    its lease length.
    """
    view = LeaseView()
    for message_id, record in sorted(records, key=lambda item: item[0]):
        at = snowflake_ms(message_id)
        if record.kind == "claim":
            if not view.free_at(at):
                continue  # void: the holder is alive
            _supersede(view, at)
            _begin(view, message_id, at, at, record)
            continue
        if record.term not in view.terms and (view.term is None or record.term > view.term):
            # Its claim is not in what was read: trust its first record read (the chain
            # from its claim to there cannot be checked) and end the older term at its claim.
            claimed = snowflake_ms(record.term)
            _supersede(view, claimed)
            _begin(view, record.term, claimed, at, record)
        current = view.terms.get(view.term) if view.term is not None else None
        if current is None or record.term != view.term or view.released or at > view.expires_ms:
            continue  # void: a record of a term that no longer holds the lease
        current.tables.update(record.tables)
        current.times.append(at)
        view.last_valid_ms = at
        if record.kind == "release":
            view.released = current.released = True
            current.cutoff_ms = at
    return view


def _begin(view: LeaseView, term: int, claimed_ms: int, valid_ms: int, record: LeaseRecord) -> None:
    """Term `term`, claimed at `claimed_ms`, holds the lease from now on; its lease runs from
    `valid_ms` (its claim, or its first record read)."""
    view.term = term
    view.holder = record.holder
    view.ttl_ms = record.ttl_ms
    view.released = False
    view.last_valid_ms = valid_ms
    tables = dict(record.tables) if record.kind == "claim" else {}
    view.terms[term] = TermInfo(claimed_ms, record.holder, tables=tables, times=[valid_ms])


def _supersede(view: LeaseView, claimed_ms: int) -> None:
    """A valid claim at `claimed_ms` ends the current term (unless it was released)."""
    current = view.terms.get(view.term) if view.term is not None else None
    if current is None or view.released:
        return
    before = [t for t in current.times if t < claimed_ms]
    last = max(before) if before else current.claim_ms
    current.cutoff_ms = min(last + view.ttl_ms, claimed_ms)


def encode_record(record: LeaseRecord) -> str:
    """Message content for ``record`` (armoured, ASCII, well under 2,000 characters for a
    few dozen tables; the caller checks the length)."""
    body = {
        "k": record.kind,
        "t": record.term,
        "h": record.holder,
        "l": record.ttl_ms,
        "m": {
            name: [m.rids_to, m.commits_to, m.commits_from, m.acked]
            + ([m.checkpoint] if m.checkpoint else [])
            for name, m in record.tables.items()
        },
    }
    raw = json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    return armor(seal("lease", raw))


def decode_record(content: str, *, where: str) -> LeaseRecord:
    """Inverse of :func:`encode_record`; anything else is a DatabaseCorruptionError."""
    _, raw = unseal(dearmor(content, where=where), where=where, kind="lease")
    try:
        body = json.loads(raw)
        kind = body["k"]
        if kind not in ("claim", "beat", "release"):
            raise ValueError(f"unknown lease record {kind!r}")
        tables: dict[str, TableMark] = {}
        for name, values in dict(body["m"]).items():
            if not 4 <= len(values) <= 5:
                raise ValueError(f"{len(values)} numbers for table {name}")
            tables[str(name)] = TableMark(*(int(v) for v in values))
        ttl = int(body["l"])
        if not 0 < ttl <= 3_600_000:
            raise ValueError(f"lease length {ttl} ms out of range")
        return LeaseRecord(kind, int(body["t"]), str(body["h"]), tables, ttl)
    except (ValueError, KeyError, TypeError) as exc:
        raise DatabaseCorruptionError(
            f"{where}: not a lease record: {exc}", where=where, reason="bad lease record"
        ) from None


def is_fenced(fences: Iterable[Fence], commit: int, message_id: int) -> bool:
    """Whether the log message `message_id` holding `commit` was written by a term after
    its cutoff (never acknowledged: readers ignore it). Commits older than every fence come
    from before the lease existed and are kept."""
    owner: Fence | None = None
    for fence in fences:
        if fence.commits_from <= commit and (
            owner is None or fence.commits_from > owner.commits_from
        ):
            owner = fence
    return (
        owner is not None
        and owner.cutoff_ms is not None
        and snowflake_ms(message_id) > owner.cutoff_ms
    )


def merge_fences(*sources: Iterable[Fence]) -> list[Fence]:
    """One fence per term (by ``commits_from``) from several sources; a known cutoff wins
    over an open one (a term still holding the lease in an older record)."""
    merged: dict[int, Fence] = {}
    for source in sources:
        for fence in source:
            known = merged.get(fence.commits_from)
            if known is None or known.cutoff_ms is None:
                merged[fence.commits_from] = fence
    return sorted(merged.values(), key=lambda f: f.commits_from)
