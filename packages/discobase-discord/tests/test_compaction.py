"""Compaction: what was overwritten or deleted is erased from Discord and its space
reclaimed, writes go on meanwhile, and a crash at any step loses nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from discobase_test_support import TOKEN, MakeDb, crash, wait_until

import discobase
from discobase._discord_io import describe
from discobase._store import TableStore
from discobase_core.codec import unseal
from discobase_core.log import Put, decode_block
from discobase_core.state import Location
from discobase_emulator import Emulator

SECRET = "forget-me-7f3a"


def notes_table(db: discobase.Database) -> type[Any]:
    @db.table
    class Note(discobase.Table):
        title: str
        body: str = ""

    return Note


async def stored_log(store: TableStore[Any]) -> list[tuple[int, int, int, Put | None]]:
    """(lane, message id, entry number, put or None for a delete) of every log entry
    stored in the table's lanes, read straight from Discord."""
    entries: list[tuple[int, int, int, Put | None]] = []
    for lane, channel_io in enumerate(store.ios):
        assert channel_io is not None
        async for message in channel_io.history():
            if not channel_io.is_ours(message):
                continue  # e.g. the "thread created" notices of the lanes
            named = describe(message)
            if named is not None and named[0] != "log":
                continue  # checkpoints and pages
            if named is None:
                blob = await channel_io.read(message)
                if unseal(blob, where="test")[0] != "log":
                    continue
                block = decode_block(blob, where="test")[0]
            else:
                block = await store._read_block(channel_io, message)
            for number, entry in enumerate(block.entries):
                entries.append(
                    (lane, message.id, number, entry if isinstance(entry, Put) else None)
                )
    return entries


async def churn(Note: type[Any]) -> dict[str, str]:
    """Saves, updates and deletes in several commits; returns the live titles -> bodies."""
    notes = list(await asyncio.gather(*(Note(title=f"n{i}", body="v1").save() for i in range(30))))
    secret = await Note(title="secret", body=SECRET).save()
    for note in notes[:10]:
        note.body = "v2"
        await note.update()
    await asyncio.gather(*(note.delete() for note in notes[20:]))
    await secret.delete()
    return {n.title: n.body for n in notes[:20]}


async def open_notes(make_db: MakeDb, **kwargs: Any) -> tuple[discobase.Database, type[Any]]:
    db = make_db(**kwargs)
    Note = notes_table(db)
    db.login_task(TOKEN)
    await db.wait_ready()
    return db, Note


async def test_compact_erases_deleted_and_overwritten_records(
    emu: Emulator, make_db: MakeDb
) -> None:
    db, Note = await open_notes(make_db)
    live = await churn(Note)
    store = db._stores["Note"]
    before = await stored_log(store)
    assert any(p is not None and SECRET.encode() in p.payload for _, _, _, p in before)
    [report] = await db.compact()
    assert report.messages_deleted > 0
    assert report.bytes_deleted > 0
    after = await stored_log(store)
    for lane, message_id, number, put in after:
        assert put is not None, f"a delete entry survived in message {message_id}"
        assert SECRET.encode() not in put.payload
        assert store.state.location(put.rid) == Location(message_id, number, lane), (
            f"an old version of record {put.rid} survived in message {message_id}"
        )
    assert {n.title: n.body for n in await Note.find()} == live
    await db.close()
    _, Again = await open_notes(make_db)
    assert {n.title: n.body for n in await Again.find()} == live
    assert await Again.find(body=SECRET) == []


async def test_writes_go_on_during_a_compaction(emu: Emulator, make_db: MakeDb) -> None:
    db, Note = await open_notes(make_db)
    live = await churn(Note)
    compaction = asyncio.create_task(db.compact())
    extra = [await Note(title=f"during{i}", body="x").save() for i in range(15)]
    for note in extra[:5]:
        note.body = "y"
        await note.update()
    await compaction
    live |= {n.title: n.body for n in extra}
    assert {n.title: n.body for n in await Note.find()} == live
    await db.close()
    _, Again = await open_notes(make_db)
    assert {n.title: n.body for n in await Again.find()} == live


async def test_a_crash_at_any_step_of_a_compaction_loses_nothing(
    emu: Emulator, make_db: MakeDb
) -> None:
    """Stop (as a killed process would) after each step: the sweep and rewrites, the first
    checkpoint after them, the second (the deletes start)."""
    db, Note = await open_notes(make_db)
    live = await churn(Note)
    await db.close()
    for stop_after in range(3):
        db, Note = await open_notes(make_db)
        store = db._stores["Note"]
        engine = store.engine
        assert engine is not None
        await store.checkpoint()
        for listed in engine.sweep(await store._sweep()):
            blocks = await store._read_log_blocks(listed.lane, {listed.message_id})
            engine.swept(listed, blocks[listed.message_id])
        store._wakeup.set()
        await wait_until(lambda e=engine: not e.rewriting)  # crash() wants no write in flight
        for _ in range(stop_after):
            await store.checkpoint()
        if stop_after == 2:  # the garbage is deletable now: crash with deletes under way
            await wait_until(
                lambda e=engine: bool(e.compaction.deleting) or e.compaction.deleted_messages > 0
            )
        await crash(db)
        db, Note = await open_notes(make_db)
        assert {n.title: n.body for n in await Note.find()} == live, f"stop after {stop_after}"
        await db.close()


async def test_messages_older_than_14_days_are_deleted_one_by_one(
    emu: Emulator, make_db: MakeDb
) -> None:
    """Discord refuses to bulk-delete messages older than 14 days (error 50034). Discord
    dates a message by its id; the emulator's aging moves its clock instead, so here the
    bulk request is refused and the fallback deletes the messages one by one."""
    db, Note = await open_notes(make_db)
    live = await churn(Note)
    await emu.control.age_messages(15 * 86400)
    mark = await emu.control.mark()
    [report] = await db.compact()
    metrics = await emu.control.metrics(mark)
    assert report.messages_deleted > 0
    assert report.messages_left == 0
    assert metrics["status"].get("204", 0) >= report.messages_deleted  # one by one
    assert {n.title: n.body for n in await Note.find()} == live


async def test_a_follower_opened_after_a_compaction_reads_everything(
    emu: Emulator, make_db: MakeDb
) -> None:
    db, Note = await open_notes(make_db)
    live = await churn(Note)
    await db.compact()
    _, Follower = await open_notes(make_db, read_only=True)
    assert {n.title: n.body for n in await Follower.find()} == live


async def test_a_read_only_database_cannot_compact(make_db: MakeDb) -> None:
    db, _ = await open_notes(make_db)
    await db.close()
    follower, _ = await open_notes(make_db, read_only=True)
    try:
        await follower.compact()
    except discobase.ReadOnlyError:
        pass
    else:
        raise AssertionError("a read-only database compacted")


async def test_the_writer_erases_on_its_own_after_erase_after(
    emu: Emulator, make_db: MakeDb
) -> None:
    """No compact() call: a deleted record is gone from Discord `erase_after` seconds on."""
    db, Note = await open_notes(make_db, erase_after=0.5)
    live = await churn(Note)
    store = db._stores["Note"]

    async def secret_stored() -> bool:
        return any(
            p is not None and SECRET.encode() in p.payload for *_, p in await stored_log(store)
        )

    assert await secret_stored()
    engine = store.engine
    assert engine is not None
    # The writer's own compaction: started, its deletes done, nothing left to do.
    await wait_until(
        lambda: (
            engine.compaction.deleted_messages > 0
            and store._compacting is None
            and not engine.compaction.busy
        )
    )
    assert not await secret_stored()
    assert {n.title: n.body for n in await Note.find()} == live
    await db.close()
    _, Again = await open_notes(make_db)
    assert {n.title: n.body for n in await Again.find()} == live


async def test_a_follower_opened_before_a_compaction_reads_on(
    emu: Emulator, make_db: MakeDb
) -> None:
    """The writer's compaction deletes messages the follower's view still points at: the
    follower reads the table again and answers right, instead of calling it damaged."""
    db, Note = await open_notes(make_db)
    live = await churn(Note)
    _, Follower = await open_notes(make_db, read_only=True, cache_bytes=1)  # reads Discord
    await db.compact()
    assert {n.title: n.body for n in await Follower.find()} == live
    assert (await Follower.find_unique(title="n11")).body == live["n11"]


async def test_compaction_after_a_field_was_added(emu: Emulator, make_db: MakeDb) -> None:
    """Records written before a field existed are rewritten with the new field's key."""
    db, Note = await open_notes(make_db)
    live = await churn(Note)
    await db.close()

    async def open_starred() -> tuple[discobase.Database, type[Any]]:
        db = make_db()

        @db.table
        class Note(discobase.Table):
            title: str
            body: str = ""
            stars: int = 0

        db.login_task(TOKEN)
        await db.wait_ready()
        return db, Note

    db, Starred = await open_starred()
    [report] = await db.compact()
    assert report.records_rewritten > 0
    assert {n.title: n.body for n in await Starred.find(stars=0)} == live
    await db.close()
    _, Again = await open_starred()
    assert {n.title: n.body for n in await Again.find(stars=0)} == live


async def test_a_compaction_fails_when_the_lease_is_lost(make_db: MakeDb) -> None:
    """Found by the chaos run: a writer that lost its lease waited for checkpoints that
    could never land, and its compaction (and the program awaiting it) hung."""
    db, Note = await open_notes(make_db)
    await churn(Note)
    assert db._lease is not None
    db._lease._lose("a test pulls it")
    with pytest.raises(discobase.LeaseLostError):
        await asyncio.wait_for(db.compact(), 10)


@pytest.mark.parametrize("erase_after", [3600.0, 0.05])
async def test_checkpoints_the_rewrites_needed_are_erased_too(
    make_db: MakeDb, erase_after: float
) -> None:
    """Rewriting many live records takes checkpoints of their own on the way (by bytes);
    once the compaction is over those are superseded, and it deletes them as well: only
    the newest checkpoints and the messages holding pages they use stay (at a million
    records a checkpoint is tens of MB: found by benchmarks/scale.py). With a short
    `erase_after` the writer wants to compact on its own meanwhile: it waits (sharing the
    garbage lists, it made the explicit compaction leave its last garbage behind)."""
    db, Note = await open_notes(make_db, erase_after=erase_after)
    notes = [Note(title=f"n{i}", body="x" * 400) for i in range(1500)]
    for start in range(0, len(notes), 100):  # many messages, each to be half rewritten
        await asyncio.gather(*(note.save() for note in notes[start : start + 100]))
    for note in notes[::2]:
        note.body = "y" * 400
    await asyncio.gather(*(note.update() for note in notes[::2]))
    store = db._stores["Note"]
    written_before = store.engine.checkpoints_done
    await db.compact()
    assert store.engine.checkpoints_done - written_before > 4  # rewrites took checkpoints

    table = store.ios[0]
    assert table is not None
    left = [
        m.id
        async for m in table.history()
        if table.is_ours(m) and (await TableStore._kind_of(table, m))[0] != "log"
    ]
    # The newest checkpoint, the two before it (the newest when the second sweep ran goes
    # at the next compaction), and the messages holding the pages they use.
    needed = set(left[:3]) | set(store.state.refs.values())
    assert set(left) <= needed, f"{len(set(left) - needed)} superseded checkpoints were left"
    assert sorted((n.title, n.body) for n in await Note.find()) == sorted(
        (n.title, n.body) for n in notes
    )
    await db.close()
