"""The single-writer lease on Discord: the I/O around `discobase_core.lease`.

The lease lives in the `discobase-lease` channel of the database's category. A writer
`acquire()`s it (waiting for a live holder up to a timeout), renews it with a beat every
third of its length (30 s by default), and `release()`s it at close; every verdict (who
holds it, until when, which old writes are fenced off) comes from folding the channel's
messages in the core. A commit is acknowledged only if its message is stamped well inside
the lease (`acknowledgeable`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping

from discobase._discord_io import ChannelIO
from discobase_core.codec import ARMOR_PREFIX
from discobase_core.errors import (
    DatabaseCorruptionError,
    DiscobaseError,
    LeaseHeldError,
    LeaseLostError,
)
from discobase_core.lease import (
    ACK_MARGIN_MS,
    LEASE_TTL_MS,
    LeaseRecord,
    LeaseView,
    TableMark,
    decode_record,
    encode_record,
    fold,
    snowflake_ms,
)
from discobase_core.log import MessagePlan

__all__ = ["LEASE_CHANNEL", "Lease", "read_lease"]

log = logging.getLogger("discobase")

LEASE_CHANNEL = "discobase-lease"
_POLL_S = 1.0  # how often a waiting writer looks at the lease again
_CLOCK_SLACK_MS = 5_000
_ACKED_BEAT_S = 1.0  # how far our wall clock may be off Discord's before we wait instead


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def read_lease(io: ChannelIO) -> LeaseView:
    """The lease as its newest page of messages says (a beat every 10 s: 100 messages
    cover more than the TTL many times over)."""
    records: list[tuple[int, LeaseRecord]] = []
    for message in await io.page_before(None):
        if message.author.id != io.bot_id or not message.content.startswith(ARMOR_PREFIX):
            continue
        try:
            records.append((message.id, decode_record(message.content, where=io.where(message.id))))
        except DatabaseCorruptionError as exc:
            log.warning("ignoring a damaged lease message: %s", exc)
    return fold(records)


class Lease:
    """This process's hold on the database's single-writer lease."""

    def __init__(
        self,
        io: ChannelIO,
        *,
        report: Callable[[bool], Mapping[str, TableMark]],
        ttl: float = LEASE_TTL_MS / 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_ms = int(ttl * 1000)
        self.beat_s = ttl / 3  # two renewals may fail before the lease runs out
        self.margin_ms = min(ACK_MARGIN_MS, self.ttl_ms // 6)
        self.io = io
        self.holder = _holder()
        self.report = report  # the tables' marks for a beat (True: the final ones)
        self.clock = clock
        self.term: int | None = None
        self.view = LeaseView()  # as seen when the lease was acquired
        self.expires_ms = 0  # Discord's time at which the lease runs out unless renewed
        self.local_expiry = 0.0  # the same moment on our monotonic clock (never later)
        self.durable: dict[str, TableMark] = {}  # marks carried by a landed, valid record
        self.lost: str | None = None  # why this process may no longer write
        self._beating: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._urgent = False  # renew now, the lease is about to run out
        self._acked_news = False  # a commit was acknowledged since the last beat
        self._beat_lock = asyncio.Lock()

    # -- acquiring -------------------------------------------------------------------------

    async def acquire(self, wait: float | None) -> LeaseView:
        """Take the lease; wait up to `wait` seconds (None: forever) for a live holder,
        then raise LeaseHeldError. Returns the lease as it was before this term."""
        deadline = None if wait is None else self.clock() + wait
        seen: tuple[int, float] | None = None  # holder's last valid record, when we saw it
        announced = False
        while True:
            view = await read_lease(self.io)
            if view.held:
                if seen is None or seen[0] != view.last_valid_ms:
                    seen = (view.last_valid_ms, self.clock())
                stale_by_wall = time.time() * 1000 - view.expires_ms > _CLOCK_SLACK_MS
                stale_by_watch = self.clock() - seen[1] > view.ttl_ms / 1000
                if not (stale_by_wall or stale_by_watch):
                    if deadline is not None and self.clock() >= deadline:
                        raise LeaseHeldError(
                            f"another writer ({view.holder}) holds the database's lease",
                            hint="close the other process, open this one with read_only=True, "
                            "or wait longer (lease_wait=); a crashed writer's lease expires "
                            f"within {view.ttl_ms / 1000:g} s",
                            holder=view.holder,
                            expires_ms=view.expires_ms,
                        )
                    if not announced:
                        log.info("waiting for the lease held by %s", view.holder)
                        announced = True
                    remaining = None if deadline is None else deadline - self.clock()
                    await asyncio.sleep(_POLL_S if remaining is None else min(_POLL_S, remaining))
                    continue
            if await self._claim():
                return self.view
            seen = None

    async def _claim(self) -> bool:
        started = self.clock()
        record = LeaseRecord("claim", holder=self.holder, ttl_ms=self.ttl_ms)
        message = await self.io.send(
            MessagePlan(encode_record(record), ()), nonce=uuid.uuid4().hex[:25]
        )
        view = await read_lease(self.io)
        if view.term != message.id:
            log.info("lease claim %d lost to %s", message.id, view.holder)
            with contextlib.suppress(DiscobaseError):
                await self.io.delete([message.id])
            return False
        self.term = message.id
        self.view = view
        self._renewed(snowflake_ms(message.id), started, {})
        log.info("took the database lease (term %d)", self.term)
        return True

    def _renewed(self, at_ms: int, sent_at: float, marks: Mapping[str, TableMark]) -> None:
        self.expires_ms = at_ms + self.ttl_ms
        self.local_expiry = sent_at + self.ttl_ms / 1000
        self.durable.update(marks)

    # -- holding ---------------------------------------------------------------------------

    def start(self) -> None:
        """Renew the lease in the background until release()."""
        self._beating = asyncio.get_running_loop().create_task(
            self._beat_loop(), name="discobase-lease"
        )

    def note_acked(self) -> None:
        """A table acknowledged a commit: report it within a second, so a log message
        deleted later is noticed at the next open (at most one beat a second for this)."""
        if not self._acked_news:
            self._acked_news = True
            self._wake.set()

    async def _beat_loop(self) -> None:
        last = self.clock()
        while self.lost is None:
            due = last + self.beat_s
            if self._acked_news:
                due = min(due, last + _ACKED_BEAT_S)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, due - self.clock())):
                    await self._wake.wait()
            self._wake.clear()
            if self.clock() < due and not self._urgent:
                continue  # woken early for news that can wait until `due`
            self._urgent = False
            self._acked_news = False
            last = self.clock()
            try:
                await self.beat()
            except LeaseLostError:
                return
            except asyncio.CancelledError:
                raise
            except DiscobaseError as exc:
                log.warning("could not renew the lease: %s", exc)
                if self.clock() > self.local_expiry:
                    self._lose("its renewals failed for longer than the lease lasts")
                    return

    async def beat(self, kind: str = "beat") -> None:
        """Post a renewal (or the release) with every table's marks."""
        async with self._beat_lock:
            self.check()
            marks = dict(self.report(kind == "release"))
            record = LeaseRecord(
                "release" if kind == "release" else "beat",
                self.term or 0,
                self.holder,
                marks,
                self.ttl_ms,
            )
            started = self.clock()
            message = await self.io.send(
                MessagePlan(encode_record(record), ()), nonce=uuid.uuid4().hex[:25]
            )
            at = snowflake_ms(message.id)
            if at > self.expires_ms:
                self._lose(f"its renewal was stamped {at - self.expires_ms} ms after it expired")
                raise self.error(maybe_stored=False)
            self._renewed(at, started, marks)

    async def ensure(self, table: str, rid: int, commit: int) -> None:
        """Return once a landed beat reserves id `rid` and commit number `commit`, and
        names where this term's commits start. Readers fence a term's late messages by that
        start: a message sent before a beat named it would be judged by the previous term's
        fence, and ignored, after an acknowledgement (found by the chaos run)."""

        def covered(mark: TableMark | None) -> bool:
            return (
                mark is not None
                and rid < mark.rids_to
                and commit < mark.commits_to
                and 0 < mark.commits_from <= commit
            )

        if not covered(self.durable.get(table)):
            await self.beat()
            if not covered(self.durable.get(table)):
                raise AssertionError(f"table {table} did not reserve id {rid} / commit {commit}")

    def check(self) -> None:
        """Raise LeaseLostError (nothing was stored) if this process may no longer write."""
        if self.lost is None and self.term is None:
            self.lost = "it does not hold the lease (closed?)"
        if self.lost is None and self.clock() > self.local_expiry - self.margin_ms / 1000:
            self._urgent = True  # renew now
            self._wake.set()
            if self.clock() > self.local_expiry:
                self._lose("it was not renewed in time (was the process paused?)")
        if self.lost is not None:
            raise self.error(maybe_stored=False)

    async def ready_to_send(self) -> None:
        """Wait until the lease has enough time left to acknowledge a write sent now."""
        self.check()
        if self.clock() > self.local_expiry - self.margin_ms / 1000:
            await self.beat()

    def acknowledgeable(self, message_id: int) -> bool:
        """Whether a write stored in `message_id` is inside the lease (with a margin)."""
        ok = self.lost is None and snowflake_ms(message_id) <= self.expires_ms - self.margin_ms
        if not ok and self.lost is None:
            self._lose(f"message {message_id} was stamped too close to or after its expiry")
        return ok

    def _lose(self, why: str) -> None:
        if self.lost is None:
            log.error("this process lost the database lease: %s", why)
            self.lost = why

    def error(self, *, maybe_stored: bool) -> LeaseLostError:
        """The error a write gets once the lease is lost."""
        stored = (
            "; the write may have been stored: retrying it on the same record object after "
            "reopening is safe"
            if maybe_stored
            else "; nothing was stored"
        )
        return LeaseLostError(
            f"this process lost the database's single-writer lease: {self.lost}{stored}",
            hint="another writer may have taken over: close this Database and open it again",
            maybe_stored=maybe_stored,
        )

    async def release(self) -> None:
        """Give the lease up, reporting the final marks (nothing more is written after)."""
        if self._beating is not None:
            self._beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beating
        if self.lost is None and self.term is not None:
            try:
                await self.beat("release")
            except DiscobaseError as exc:
                log.warning("could not release the lease (it expires by itself): %s", exc)
        self.term = None
