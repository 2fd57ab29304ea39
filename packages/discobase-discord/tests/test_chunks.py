"""Chunked log messages: a big commit's message holds up to ten attachments, each one chunk
of its entries decodable on its own (discobase_core.log), so a cold lookup downloads only
the attachment that holds its record, and damage to one attachment hides only its records."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from discobase_test_support import TOKEN, MakeDb, crash
from test_damage import channel_id_of, garble

import discobase
from discobase_core.log import CHUNK_BYTES, chunk_files
from discobase_emulator import Emulator

BODY = "b" * 400
COUNT = 2500  # about 1 MiB in one commit: one message of ten chunks


def item_table(db: discobase.Database) -> type[Any]:
    class Item(discobase.Table):
        marker: str
        body: str = ""

    return db.table(name="Item")(Item)


async def opened(make_db: MakeDb) -> tuple[discobase.Database, type[Any]]:
    db = make_db()
    Item = item_table(db)
    db.login_task(TOKEN)
    await db.wait_ready()
    return db, Item


async def bulk(Item: type[Any]) -> list[Any]:
    """COUNT records saved in one commit (a bulk load)."""
    records = [Item(marker=f"m{i}", body=BODY) for i in range(COUNT)]
    await asyncio.gather(*(record.save() for record in records))
    return records


def chunk_names(emu: Emulator, channel_id: int, message_id: int) -> list[tuple[int, str]]:
    message = emu.core.state.store.get_message(channel_id, message_id)
    assert message is not None
    chunks = chunk_files([a.filename for a in message.attachments])
    assert chunks is not None, "expected a chunked log message"
    return chunks


async def test_a_cold_lookup_downloads_only_the_attachment_holding_its_record(
    make_db: MakeDb, emu: Emulator
) -> None:
    db, Item = await opened(make_db)
    saved = await bulk(Item)
    store = db._stores["Item"]
    target = saved[COUNT // 2]
    location = store.state.location(target.disco_id)
    assert location is not None
    chunks = chunk_names(emu, channel_id_of(db, location.lane), location.message_id)
    assert len(chunks) >= 5
    await db.close()

    _again, Item2 = await opened(make_db)
    mark = await emu.control.mark()
    assert [r.marker for r in await Item2.find(marker=target.marker)] == [target.marker]
    metrics = await emu.control.metrics(since=mark)
    assert metrics["cdn_requests"] == 1
    assert metrics["cdn_bytes"] <= CHUNK_BYTES + 4096
    assert metrics["requests"] == 1  # REST: the one message, not a page of 100
    # A neighbour in the same chunk is now warm; one in another chunk of the same message
    # costs one more file and no history request (the message's attachments are known).
    mark = await emu.control.mark()
    assert [r.marker for r in await Item2.find(marker=saved[COUNT // 2 + 1].marker)]
    assert (await emu.control.metrics(since=mark))["requests"] == 0
    firsts = [first for first, _ in chunks]
    chunk_of = firsts.index(max(f for f in firsts if f <= location.entry))
    other = next(
        r
        for r in saved
        if (loc := store.state.location(r.disco_id)) is not None
        and loc.message_id == location.message_id
        and max(f for f in firsts if f <= loc.entry) != firsts[chunk_of]
    )
    mark = await emu.control.mark()
    assert [r.marker for r in await Item2.find(marker=other.marker)] == [other.marker]
    metrics = await emu.control.metrics(since=mark)
    assert (metrics["requests"], metrics["cdn_requests"]) == (0, 1)


async def test_damage_to_one_attachment_hides_only_its_records(
    make_db: MakeDb, emu: Emulator
) -> None:
    db, Item = await opened(make_db)
    saved = await bulk(Item)
    store = db._stores["Item"]
    location = store.state.location(saved[0].disco_id)
    assert location is not None
    channel_id = channel_id_of(db, location.lane)
    chunks = chunk_names(emu, channel_id, location.message_id)
    assert len(chunks) >= 2
    assert chunks[0][0] == 0
    in_message = [
        (r, loc)
        for r in saved
        if (loc := store.state.location(r.disco_id)) is not None
        and loc.message_id == location.message_id
    ]
    await db.close()
    garble(emu, channel_id, location.message_id)  # its first attachment: chunk 0

    _again, Item2 = await opened(make_db)
    hidden = [r for r, loc in in_message if loc.entry < chunks[1][0]]
    shown = [r for r, loc in in_message if loc.entry >= chunks[1][0]]
    assert hidden
    assert shown
    for record in hidden[:: max(1, len(hidden) // 5)]:
        with pytest.raises(discobase.RecordUnreadableError) as caught:
            await Item2.find(marker=record.marker)
        assert caught.value.details["ids"] == [record.disco_id]
        assert str(location.message_id) in caught.value.details["where"]
    for record in shown[:: max(1, len(shown) // 20)]:
        assert [r.marker for r in await Item2.find(marker=record.marker)] == [record.marker]


async def test_a_crash_after_a_big_commit_replays_its_chunked_messages(
    make_db: MakeDb, emu: Emulator
) -> None:
    db, Item = await opened(make_db)
    await Item(marker="first").save()
    engine = db._stores["Item"].engine
    assert engine is not None
    engine.checkpoint_floor = 1 << 40  # no checkpoint by bytes: the crash replays the log
    saved = await bulk(Item)
    location = db._stores["Item"].state.location(saved[-1].disco_id)
    assert location is not None
    assert len(chunk_names(emu, channel_id_of(db, location.lane), location.message_id)) >= 2
    await crash(db)

    again, Item2 = await opened(make_db)
    assert again._stores["Item"]._replayed[0] >= 1  # the log after the checkpoint was read
    assert not again._stores["Item"].damage
    assert await Item2.count() == COUNT + 1
    for record in saved[::250]:
        [found] = await Item2.find(marker=record.marker)
        assert (found.disco_id, found.body) == (record.disco_id, BODY)


async def test_a_cold_scan_reads_a_history_page_not_each_message_alone(
    make_db: MakeDb, emu: Emulator
) -> None:
    db = make_db(lanes=1)
    Item = item_table(db)
    db.login_task(TOKEN)
    await db.wait_ready()
    for _ in range(3):  # three commits: three chunked messages of more entries than a batch
        await bulk(Item)
    await db.close()

    again = make_db(lanes=1)
    Item2 = item_table(again)
    again.login_task(TOKEN)
    await again.wait_ready()
    mark = await emu.control.mark()
    found = await Item2.find()
    assert len(found) == 3 * COUNT
    assert len({r.disco_id for r in found}) == 3 * COUNT
    metrics = await emu.control.metrics(since=mark)
    assert metrics["requests"] == 1  # one history page holds all three messages
    assert metrics["cdn_requests"] <= 3 * 10  # each chunk downloaded once
