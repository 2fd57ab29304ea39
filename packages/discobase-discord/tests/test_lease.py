"""One writer per database: a second writer waits or fails, a crashed holder's lease runs
out, a paused holder is fenced off, a rolling restart loses nothing, and readers open beside
the writer. Findings of the correctness issue: "Two writers lose acknowledged writes
silently" (two Databases in one process, two processes, a stale writer)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import signal
import sys
from pathlib import Path
from typing import Any, cast

import pytest
from discobase_test_support import GUILD, TOKEN, MakeDb, wait_until

import discobase
from discobase._discord_io import ChannelIO
from discobase._store import TableStore
from discobase_core.lease import RID_BLOCK
from discobase_emulator import Emulator

TTL = 3.0  # seconds: short leases keep the crash tests quick


def item_table(db: discobase.Database) -> type[Any]:
    @db.table
    class Item(discobase.Table):
        marker: str
        value: int = 0

    return Item


async def opened(make_db: MakeDb, **kwargs: Any) -> tuple[discobase.Database, type[Any]]:
    db = make_db(**kwargs)
    Item = item_table(db)
    db.login_task(TOKEN)
    await db.wait_ready()
    return db, Item


async def test_two_writers_in_one_process_one_waits_or_fails(make_db: MakeDb) -> None:
    first, Item1 = await opened(make_db)
    await asyncio.gather(*(Item1(marker=f"a{i}").save() for i in range(10)))

    impatient = make_db(lease_wait=0)
    item_table(impatient)
    impatient.login_task(TOKEN)
    with pytest.raises(discobase.LeaseHeldError) as caught:
        await impatient.wait_ready()
    assert caught.value.code == "lease_held"
    assert "read_only=True" in str(caught.value)

    patient = make_db(lease_wait=30)
    Item2 = item_table(patient)
    patient.login_task(TOKEN)
    await asyncio.sleep(0.5)
    assert not patient._events().is_set()  # still waiting for the lease
    await first.close()  # releases the lease: the waiting writer takes it at once
    await patient.wait_ready()
    await asyncio.gather(*(Item2(marker=f"b{i}").save() for i in range(10)))
    found = await Item2.find()
    assert sorted(r.marker for r in found) == sorted(
        [f"a{i}" for i in range(10)] + [f"b{i}" for i in range(10)]
    )
    assert len({r.disco_id for r in found}) == 20


async def test_writers_opening_a_new_database_at_once_share_its_channels(
    make_db: MakeDb, emu: Emulator
) -> None:
    """Discord has no create-if-absent: both create the category and the lease channel,
    then settle on the oldest of each, so they exclude each other and store in one place."""
    dbs = [make_db(lease_wait=30) for _ in range(2)]
    tables = [item_table(db) for db in dbs]
    for db in dbs:
        db.login_task(TOKEN)
    waits = {asyncio.ensure_future(db.wait_ready()): n for n, db in enumerate(dbs)}
    done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    first = waits[done.pop()]
    await tables[first](marker="first").save()
    await dbs[first].close()
    await asyncio.gather(*pending)
    second = 1 - first
    await tables[second](marker="second").save()
    assert sorted(r.marker for r in await tables[second].find()) == ["first", "second"]
    names = [c.data.get("name") for c in emu.core.state.store.channels.values()]
    assert names.count("discobase") == 1
    assert names.count("discobase-lease") == 1
    assert names.count("item") == 1


async def test_read_only_follower_sees_the_writer_after_refresh(make_db: MakeDb) -> None:
    writer, Item = await opened(make_db)
    await asyncio.gather(*(Item(marker=f"m{i}").save() for i in range(3)))
    reader = make_db(read_only=True)

    @reader.table
    class Item(discobase.Table):  # type: ignore[no-redef]
        marker: str
        value: int = 0

    reader.login_task(TOKEN)
    await reader.wait_ready()  # beside the writer: no lease needed
    assert await Item.count() == 3
    with pytest.raises(discobase.ReadOnlyError):
        await Item(marker="nope").save()
    for i in range(3, 5):
        await writer.tables["Item"](marker=f"m{i}").save()
    assert await Item.count() == 3
    await reader.refresh()
    assert sorted(r.marker for r in await Item.find()) == [f"m{i}" for i in range(5)]


async def test_close_releases_and_reopen_continues_ids(make_db: MakeDb) -> None:
    db, Item = await opened(make_db)
    saved = [await Item(marker=f"x{i}").save() for i in range(3)]
    await db.close()
    _again, Item2 = await opened(make_db, lease_wait=0)  # released: no wait at all
    new = await Item2(marker="y").save()
    assert new.disco_id not in {r.disco_id for r in saved}
    assert await Item2.count() == 4


WRITER = f"""
import asyncio, json, os, signal, sys
import discobase

db = discobase.Database({GUILD!r}, guild_ready_timeout=0.1, lease_ttl=float(sys.argv[2]),
                        lease_wait=120)

@db.table
class Item(discobase.Table):
    marker: str
    value: int = 0

def say(**fields):
    print(json.dumps(fields), flush=True)

async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    db.login_task(sys.argv[1])
    await db.wait_ready()
    say(event="ready")
    name = sys.argv[3]
    count = int(sys.argv[4])
    i = 0
    while not stop.is_set() and (count < 0 or i < count):
        record = Item(marker=f"{{name}}-{{i}}")
        try:
            await record.save()
            say(event="ack", marker=record.marker, id=record.disco_id)
        except discobase.DiscobaseError as exc:
            say(event="fail", marker=record.marker, code=exc.code,
                maybe=bool(exc.details.get("maybe_stored")))
            if isinstance(exc, discobase.LeaseLostError):
                break
        i += 1
        await asyncio.sleep(float(sys.argv[5]))
    await db.close()
    say(event="closed")

asyncio.run(main())
"""


class Writer:
    """A writer process: saves `count` records (-1: until SIGTERM), one every `pause` s,
    printing a JSON line for every acknowledged or failed save."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(
        cls, emu: Emulator, tmp_path: Path, name: str, *, count: int, pause: float = 0.05
    ) -> Writer:
        script = tmp_path / "writer.py"
        script.write_text(WRITER)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            TOKEN,
            str(TTL),
            name,
            str(count),
            str(pause),
            env={"DISCOBASE_API_URL": emu.url, "PYTHONWARNINGS": "ignore", "PATH": ""},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.events.append(json.loads(line))

    def seen(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event]

    async def finish(self, limit: float = 60) -> None:
        async with asyncio.timeout(limit):
            await self.proc.wait()
            await self._reader

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()


async def all_markers(make_db: MakeDb) -> dict[str, int]:
    db, Item = await opened(make_db, lease_ttl=TTL, lease_wait=60)
    found = await Item.find()
    await db.close()
    markers = [r.marker for r in found]
    assert len(markers) == len(set(markers)), "a record was stored twice"
    assert len({r.disco_id for r in found}) == len(found)
    return {r.marker: r.disco_id for r in found}


async def test_two_writer_processes_at_once_lose_nothing(
    emu: Emulator, tmp_path: Path, make_db: MakeDb
) -> None:
    writers = await asyncio.gather(
        Writer.start(emu, tmp_path, "p", count=15),
        Writer.start(emu, tmp_path, "q", count=15),
    )
    try:
        for writer in writers:
            await writer.finish(120)
    finally:
        for writer in writers:
            writer.kill()
    acked = {e["marker"] for w in writers for e in w.seen("ack")}
    assert len(acked) == 30
    assert set(await all_markers(make_db)) == acked


async def test_rolling_restart_waits_for_the_old_writer_and_loses_nothing(
    emu: Emulator, tmp_path: Path, make_db: MakeDb
) -> None:
    old = await Writer.start(emu, tmp_path, "old", count=-1)
    new: Writer | None = None
    try:
        await wait_until(lambda: len(old.seen("ack")) >= 5)
        new = await Writer.start(emu, tmp_path, "new", count=5)
        await asyncio.sleep(1.0)
        assert not new.seen("ready")  # waiting for the lease
        old.proc.send_signal(signal.SIGTERM)  # the deploy stops the old process
        await old.finish()
        await new.finish()
    finally:
        old.kill()
        if new is not None:
            new.kill()
    assert new.seen("ready")
    acked = {e["marker"] for w in (old, new) for e in w.seen("ack")}
    assert len(new.seen("ack")) == 5
    assert set(await all_markers(make_db)) == acked


async def test_killed_writer_lease_runs_out_and_ids_are_never_reused(
    emu: Emulator, tmp_path: Path, make_db: MakeDb
) -> None:
    old = await Writer.start(emu, tmp_path, "old", count=-1)
    try:
        await wait_until(lambda: len(old.seen("ack")) >= 8)
        old.proc.send_signal(signal.SIGKILL)
        await old.finish()
    finally:
        old.kill()
    acked = {e["marker"]: e["id"] for e in old.seen("ack")}
    _db, Item = await opened(make_db, lease_ttl=TTL, lease_wait=30)  # waits out the lease
    found = {r.marker: r.disco_id for r in await Item.find()}
    assert acked.items() <= found.items()
    fresh = await Item(marker="fresh").save()
    assert fresh.disco_id not in set(found.values())
    assert fresh.disco_id > max(found.values())


async def test_paused_writer_is_fenced_off(emu: Emulator, tmp_path: Path, make_db: MakeDb) -> None:
    """SIGSTOP the holder past its lease; another writer takes over and writes; SIGCONT:
    the old writer acknowledges nothing more, and every acknowledged write of both is
    there exactly once."""
    old = await Writer.start(emu, tmp_path, "old", count=-1, pause=0.1)
    try:
        await wait_until(lambda: len(old.seen("ack")) >= 5)
        old.proc.send_signal(signal.SIGSTOP)
        stopped_acks = len(old.seen("ack"))
        db, Item = await opened(make_db, lease_ttl=TTL, lease_wait=30)
        mine = [await Item(marker=f"new-{i}").save() for i in range(5)]
        old.proc.send_signal(signal.SIGCONT)
        await old.finish(30)  # it learns it lost the lease and stops
    finally:
        old.kill()
    failures = old.seen("fail")
    assert failures
    assert failures[-1]["code"] == "lease_lost"
    # At most the write that was in flight at SIGSTOP completes after SIGCONT.
    assert len(old.seen("ack")) <= stopped_acks + 1
    acked = {e["marker"] for e in old.seen("ack")} | {r.marker for r in mine}
    maybe = {e["marker"] for e in failures if e["maybe"]}
    await db.close()
    stored = set(await all_markers(make_db))
    assert acked <= stored
    assert stored <= acked | maybe


async def test_writes_stay_readable_when_the_claim_is_pages_behind(
    make_db: MakeDb, emu: Emulator
) -> None:
    """Readers fold only the newest page of the lease channel: a long-running writer's claim
    falls out of it, and its commits must still be attributed to it (not fenced off)."""
    db, Item = await opened(make_db)
    lease = db._lease
    assert lease is not None
    await Item(marker="early").save()
    for _ in range(110):  # more than a page of beats after the claim
        await lease.beat()
    await Item(marker="late").save()
    assert lease._beating is not None
    lease._beating.cancel()  # killed: no release, the lease just stops being renewed
    for store in db._stores.values():
        assert store._writer is not None
        store._writer.cancel()
    db._stores.clear()
    db._lease = None
    reader = make_db(read_only=True)
    Seen = item_table(reader)
    reader.login_task(TOKEN)
    await reader.wait_ready()
    assert sorted(r.marker for r in await Seen.find()) == ["early", "late"]


async def test_nothing_is_sent_before_a_beat_names_where_the_terms_commits_start(
    make_db: MakeDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Readers attribute a log message to the term whose reported start precedes its
    commit. A commit sent before any landed beat reported this term's start would be judged
    by the previous term's fence (long expired) and ignored after being acknowledged: the
    chaos run lost saves that way when a writer died right after opening."""
    first, Item = await opened(make_db)  # the default 30 s lease: no routine beat soon
    await Item(marker="a").save()
    await first.close()
    db = make_db()
    Item = item_table(db)
    reported: list[int] = []
    send = ChannelIO.send

    async def spy(self: ChannelIO, *args: Any, **kwargs: Any) -> Any:
        if self.channel.name.startswith("item") and db._lease is not None:
            mark = db._lease.durable.get("Item")
            reported.append(mark.commits_from if mark else 0)
        return await send(self, *args, **kwargs)

    monkeypatch.setattr(ChannelIO, "send", spy)
    db.login_task(TOKEN)
    await db.wait_ready()  # the open writes a checkpoint of the new term
    # As when a beat lands while the table is still opening (seen under 429 storms): the
    # latest landed beat reserved ids and commits but did not know the term's start yet.
    assert db._lease is not None
    mark = db._lease.durable["Item"]
    db._lease.durable["Item"] = dataclasses.replace(mark, commits_from=0)
    await Item(marker="b").save()
    assert reported
    assert all(start > 0 for start in reported), reported


def test_a_writer_reserves_ids_ahead_of_its_pace() -> None:
    """A bulk load takes ids faster than RID_BLOCK a beat: each beat reserves at least
    twice what was taken since the one before, so the next burst of saves needs no beat
    of its own (beats wait behind the lease channel's 5 sends per 5 s). Unused ids are
    given back at release."""

    class Item(discobase.Table):
        marker: str

    store = TableStore(Item, "Item", cast(Any, None), cache_bytes=1 << 20)
    store.state.next_rid = 100
    assert store.mark().rids_to == 100 + RID_BLOCK
    for _ in range(3):
        store.state.next_rid += 10_000  # a burst of saves took ids
        mark = store.mark()
        assert mark.rids_to >= store.state.next_rid + 10_000  # the same burst again fits
    assert store.mark().rids_to == mark.rids_to  # idle: the reservation stays
    store.state.next_rid += 10**9
    assert store.mark().rids_to == store.state.next_rid + (1 << 20)  # bounded
    assert store.mark(final=True).rids_to == store.state.next_rid
