"""Damage is contained, named and never silent (finding 6 of the correctness issue): a server
admin deleting or editing discobase's messages or lane threads costs only the records those
held, each read that needs one names the table, the record ids and the message, and the
rest of the table and the database open and work."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from discobase_test_support import TOKEN, MakeDb, channel_named, crash

import discobase
from discobase_core.codec import armor, seal
from discobase_emulator import Emulator


def item_table(db: discobase.Database, name: str = "Item") -> type[Any]:
    class Item(discobase.Table):
        marker: str
        value: int = 0

    return db.table(name=name)(Item)


async def opened(make_db: MakeDb, **kwargs: Any) -> tuple[discobase.Database, type[Any]]:
    db = make_db(**kwargs)
    Item = item_table(db)
    db.login_task(TOKEN)
    await db.wait_ready()
    return db, Item


def channel_id_of(db: discobase.Database, lane: int) -> int:
    store = db._stores["Item"]
    channel_io = store.ios[lane]
    assert channel_io is not None
    return channel_io.channel.id


def delete_message(emu: Emulator, channel_id: int, message_id: int) -> None:
    """What a server admin's "Delete Message" does."""
    state = emu.core.state
    state.delete_messages(state.store.channels[channel_id], [message_id])


def garble(emu: Emulator, channel_id: int, message_id: int) -> None:
    """Change one character in the middle of a message's content (an edit by someone), or
    one byte in the middle of its first attachment (damage in storage)."""
    state = emu.core.state
    message = state.store.get_message(channel_id, message_id)
    assert message is not None
    if message.attachments:
        attachment = message.attachments[0]
        data = bytearray(
            state.store.attachment_bytes(channel_id, attachment.id, attachment.filename) or b""
        )
        data[len(data) // 2] ^= 0x55
        state.store.db.execute(
            "UPDATE attachments SET data = ? WHERE id = ?", (bytes(data), attachment.id)
        )
        state.store.commit()
        return
    content = message.content
    assert content.startswith("dscb:")
    middle = len(content) // 2
    swapped = "A" if content[middle] != "A" else "B"
    changed = content[:middle] + swapped + content[middle + 1 :]
    state.edit_message(state.store.channels[channel_id], message, {"content": changed}, None, [])


async def test_deleted_tail_message_is_detected_and_never_reuses_an_id(
    make_db: MakeDb, emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    db, Item = await opened(make_db)
    first = await Item(marker="first").save()
    last = await Item(marker="last").save()  # its own commit, the newest log message
    location = db._stores["Item"].state.location(last.disco_id)
    assert location is not None
    lane_channel = channel_id_of(db, location.lane)
    await crash(db)
    delete_message(emu, lane_channel, location.message_id)

    caplog.set_level(logging.ERROR, logger="discobase")
    again, Item2 = await opened(make_db)
    damage = again._stores["Item"].damage
    assert any("missing from the log" in what for what in damage), damage
    assert "missing from the log" in caplog.text
    assert [r.marker for r in await Item2.find()] == ["first"]
    fresh = await Item2(marker="fresh").save()
    assert fresh.disco_id not in (first.disco_id, last.disco_id)


async def test_deleted_tail_update_is_detected_not_silently_reverted(
    make_db: MakeDb, emu: Emulator
) -> None:
    db, Item = await opened(make_db)
    record = await Item(marker="r", value=1).save()
    record.value = 2
    await record.update()
    location = db._stores["Item"].state.location(record.disco_id)
    assert location is not None
    lane_channel = channel_id_of(db, location.lane)
    await crash(db)
    delete_message(emu, lane_channel, location.message_id)
    again, Item2 = await opened(make_db)
    assert any("reverted" in what for what in again._stores["Item"].damage)
    assert [r.value for r in await Item2.find()] == [1]  # reverted, and reported as such


async def test_damaged_newest_checkpoint_falls_back_to_an_older_one(
    make_db: MakeDb, emu: Emulator
) -> None:
    db, Item = await opened(make_db)
    await asyncio.gather(*(Item(marker=f"a{i}").save() for i in range(20)))
    await db.close()
    db, Item = await opened(make_db)
    for i in range(5):
        await Item(marker=f"b{i}", value=i).save()
    table_channel = channel_id_of(db, 0)
    await db.close()
    newest = emu.core.state.store.history(table_channel, 1)[0]  # the final checkpoint
    garble(emu, table_channel, newest.id)

    again, Item2 = await opened(make_db)
    assert any(str(newest.id) in what for what in again._stores["Item"].damage)  # named
    markers = sorted(r.marker for r in await Item2.find())
    assert markers == sorted([f"a{i}" for i in range(20)] + [f"b{i}" for i in range(5)])
    assert (await Item2.find_unique(marker="b3")).value == 3


async def test_deleted_lane_thread_hides_only_its_records(make_db: MakeDb, emu: Emulator) -> None:
    db, Item = await opened(make_db, lanes=4)
    saved = [await Item(marker=f"m{i}").save() for i in range(12)]  # round robin over lanes
    store = db._stores["Item"]
    lane_of = {r.marker: store.state.location(r.disco_id).lane for r in saved}  # type: ignore[union-attr]
    assert set(lane_of.values()) == {0, 1, 2, 3}
    thread_id = channel_id_of(db, 2)
    await db.close()
    state = emu.core.state
    state.delete_channel(state.store.channels[thread_id])

    again, Item2 = await opened(make_db, lanes=4)
    assert any("gone" in what for what in again._stores["Item"].damage)
    lost = sorted(r.disco_id for r in saved if lane_of[r.marker] == 2)
    for record in saved:
        if lane_of[record.marker] == 2:
            with pytest.raises(discobase.RecordUnreadableError) as caught:
                await Item2.find(marker=record.marker)
            assert caught.value.details["ids"] == [record.disco_id]
            assert caught.value.details["table"] == "Item"
        else:
            assert [r.marker for r in await Item2.find(marker=record.marker)] == [record.marker]
    with pytest.raises(discobase.RecordUnreadableError) as caught:
        await Item2.find()
    assert caught.value.details["ids"] == lost
    assert await Item2.count() == 12
    await asyncio.gather(*(Item2(marker=f"n{i}").save() for i in range(8)))  # other lanes
    await again.close()
    _third, Item3 = await opened(make_db, lanes=4)
    readable = [r.marker for r in saved if lane_of[r.marker] != 2] + [f"n{i}" for i in range(8)]
    for marker in readable:
        assert [r.marker for r in await Item3.find(marker=marker)] == [marker]


async def test_one_edited_message_hides_only_its_own_records(
    make_db: MakeDb, emu: Emulator
) -> None:
    db, Item = await opened(make_db)
    saved = [await Item(marker=f"m{i}").save() for i in range(30)]  # 30 inline messages
    victim = saved[17]
    location = db._stores["Item"].state.location(victim.disco_id)
    assert location is not None
    lane_channel = channel_id_of(db, location.lane)
    await db.close()
    garble(emu, lane_channel, location.message_id)

    _again, Item2 = await opened(make_db)
    for record in saved:
        if record is victim:
            with pytest.raises(discobase.RecordUnreadableError) as caught:
                await Item2.find(marker=record.marker)
            assert caught.value.details["ids"] == [victim.disco_id]
            assert str(location.message_id) in caught.value.details["where"]
        else:
            assert [r.marker for r in await Item2.find(marker=record.marker)] == [record.marker]


async def test_a_damaged_table_does_not_stop_the_others(make_db: MakeDb, emu: Emulator) -> None:
    db = make_db()
    Broken = item_table(db, "Broken")
    Fine = item_table(db, "Fine")
    db.login_task(TOKEN)
    await db.wait_ready()
    await Broken(marker="x").save()
    await Fine(marker="y").save()
    await db.close()
    channel = channel_named(emu, "broken")
    assert channel is not None
    bot = next(user for user in emu.core.state.store.users.values() if user.bot)
    unknown = armor(seal("zzz", b"written by a future discobase"))
    emu.core.state.create_message(channel, bot, unknown, {"type": 0})

    again = make_db()
    Broken2 = item_table(again, "Broken")
    Fine2 = item_table(again, "Fine")
    again.login_task(TOKEN)
    await again.wait_ready()
    assert set(again.damaged) == {"Broken"}
    assert [r.marker for r in await Fine2.find()] == ["y"]
    with pytest.raises(discobase.DatabaseCorruptionError, match="does not know"):
        await Broken2.find()


async def test_every_checkpoint_damaged_still_opens_from_the_log(
    make_db: MakeDb, emu: Emulator
) -> None:
    """With no readable checkpoint, the lane threads are found by their names and the whole
    log is replayed: every record of every lane reads back."""
    db, Item = await opened(make_db, lanes=4)
    saved = [await Item(marker=f"m{i}").save() for i in range(9)]  # over all four lanes
    table_channel = channel_id_of(db, 0)
    await db.close()
    store = emu.core.state.store
    for message in store.history(table_channel, 100):
        names = [a.filename for a in message.attachments]
        if any(name.startswith(("ckpt", "pages")) for name in names) or (
            not names and "ckpt" in _kind(message.content)
        ):
            garble(emu, table_channel, message.id)
    again, Item2 = await opened(make_db, lanes=4)
    assert again._stores["Item"].damage  # each damaged checkpoint is named
    assert sorted(r.marker for r in await Item2.find()) == sorted(r.marker for r in saved)


def _kind(content: str) -> str:
    """The kind of blob an inline message holds ("" for anything else)."""
    from discobase_core.codec import dearmor, unseal

    try:
        return unseal(dearmor(content, where="test"), where="test")[0]
    except discobase.DatabaseCorruptionError:
        return ""


async def test_a_clean_close_lets_the_next_open_skip_the_lanes_and_a_crash_does_not(
    make_db: MakeDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The final checkpoint, named in the lease's release, holds everything: the next open
    reads no lane thread. After a crash (no release) or when another writer came after, the
    lanes are read, and what they hold is found."""
    lanes_read: list[int] = []
    lane_tail = discobase._store.TableStore._lane_tail

    async def spy(self: Any, lane: int, channel_io: Any, floor: int) -> Any:
        lanes_read.append(lane)
        return await lane_tail(self, lane, channel_io, floor)

    monkeypatch.setattr(discobase._store.TableStore, "_lane_tail", spy)
    db, Item = await opened(make_db, lanes=4)
    for i in range(8):  # round robin over the four lanes
        await Item(marker=f"a{i}").save()
    await db.close()

    db, Item = await opened(make_db, lanes=4)
    assert lanes_read == []
    assert sorted(r.marker for r in await Item.find()) == [f"a{i}" for i in range(8)]
    for i in range(8):  # then a crash: no final checkpoint, no release
        await Item(marker=f"b{i}").save()
    await crash(db)

    db, Item = await opened(make_db, lanes=4)
    assert lanes_read == [1, 2, 3]
    expected = sorted([f"a{i}" for i in range(8)] + [f"b{i}" for i in range(8)])
    assert sorted(r.marker for r in await Item.find()) == expected
    await db.close()

    lanes_read.clear()
    db, Item = await opened(make_db, lanes=4)
    assert lanes_read == []
    assert sorted(r.marker for r in await Item.find()) == expected
    await db.close()
