"""Discord failing under us (5xx answers, 429 storms) and records bigger than one file."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from discobase_test_support import TOKEN, MakeDb

import discobase
from discobase_emulator import Emulator


def notes_table(db: discobase.Database) -> type[Any]:
    @db.table
    class Note(discobase.Table):
        title: str
        body: str = ""

    return Note


async def test_5xx_answers_are_retried_and_nothing_is_lost_or_doubled(
    emu: Emulator, make_db: MakeDb
) -> None:
    db = make_db()
    Note = notes_table(db)
    db.login_task(TOKEN)
    await db.wait_ready()
    # 503 is not retried by discord.py itself: discobase's own retry (with a nonce) must be.
    # The emulator draws faults from a seeded generator, so this run is reproducible.
    await emu.control.faults(error_rate=0.3, statuses=(503,))
    mark = await emu.control.mark()
    for i in range(15):
        await Note(title=f"n{i}").save()
    saved_concurrently = await asyncio.gather(*(Note(title=f"c{i}").save() for i in range(20)))
    metrics = await emu.control.metrics(mark)
    await emu.control.faults()
    assert metrics["status"].get("503", 0) > 0  # the faults did hit
    assert len({n.disco_id for n in saved_concurrently}) == 20
    titles = sorted(n.title for n in await Note.find())
    assert titles == sorted([f"n{i}" for i in range(15)] + [f"c{i}" for i in range(20)])
    await db.close()
    reopened = make_db()
    Again = notes_table(reopened)
    reopened.login_task(TOKEN)
    await reopened.wait_ready()
    assert await Again.count() == 35


async def test_a_429_storm_is_waited_out_and_loses_nothing(emu: Emulator, make_db: MakeDb) -> None:
    db = make_db()
    Note = notes_table(db)
    db.login_task(TOKEN)
    await db.wait_ready()
    await emu.control.faults(storm_429=0.5, storm_retry_after=0.05)
    mark = await emu.control.mark()
    for i in range(10):
        await Note(title=f"s{i}").save()
    metrics = await emu.control.metrics(mark)
    await emu.control.faults()
    assert metrics["http_429"]["total"] > 0
    assert metrics["invalid_requests"] == 0  # storm 429s are "shared" scope: not counted
    assert sorted(n.title for n in await Note.find()) == [f"s{i}" for i in range(10)]


async def test_a_record_bigger_than_one_attachment_round_trips(make_db: MakeDb) -> None:
    db = make_db()
    Note = notes_table(db)
    db.login_task(TOKEN)
    await db.wait_ready()
    body = "x" * (12 * 1024 * 1024)  # more than one 10 MiB file: split over two of them
    await Note(title="big", body=body).save()
    await db.close()
    reopened = make_db()
    Again = notes_table(reopened)
    reopened.login_task(TOKEN)
    await reopened.wait_ready()
    found = await Again.find_unique(title="big")
    assert found.body == body


SENDS = ["POST /channels/{channel_id}/messages"]


async def reopened_titles(make_db: MakeDb) -> list[str]:
    db = make_db()
    Note = notes_table(db)
    db.login_task(TOKEN)
    await db.wait_ready()
    titles = sorted(n.title for n in await Note.find())
    await db.close()
    return titles


async def test_dropped_answers_are_retried_and_stored_once(emu: Emulator, make_db: MakeDb) -> None:
    """Finding 5: a connection dropped after Discord stored the message (the client cannot
    know) is retried with the same nonce, so it is stored once; a save that still fails
    says it may have been stored, and saving the same record again stores it once."""
    db = make_db()
    Note = notes_table(db)
    db.login_task(TOKEN)
    await db.wait_ready()
    await emu.control.faults(drop_after=0.3, drop_before=0.1, only_routes=SENDS, seed=7)
    mark = await emu.control.mark()
    notes = [Note(title=f"d{i}") for i in range(25)]
    for note in notes:
        failure = (await asyncio.gather(note.save(), return_exceptions=True))[0]
        if isinstance(failure, discobase.DiscobaseError):
            assert failure.details["maybe_stored"] is True
            assert note.disco_id is not None  # kept: the retry reuses it
            await note.save()  # what an app does on an uncertain failure
    concurrent = [Note(title=f"g{i}") for i in range(30)]
    results = await asyncio.gather(*(n.save() for n in concurrent), return_exceptions=True)
    for note, result in zip(concurrent, results, strict=True):
        if isinstance(result, BaseException):
            assert isinstance(result, discobase.DiscobaseError)
            await note.save()
    metrics = await emu.control.metrics(mark)
    await emu.control.faults()
    assert metrics["faults"]["drop_after"] > 0
    await db.close()
    expected = sorted([f"d{i}" for i in range(25)] + [f"g{i}" for i in range(30)])
    assert await reopened_titles(make_db) == expected


async def test_a_save_whose_outcome_is_unknown_can_be_retried_without_a_duplicate(
    emu: Emulator, make_db: MakeDb
) -> None:
    db = make_db()
    Note = notes_table(db)
    db.login_task(TOKEN)
    await db.wait_ready()
    await emu.control.faults(drop_after=1.0, only_routes=SENDS)  # stored, answer always lost
    note = Note(title="once")
    with pytest.raises(discobase.DiscobaseError) as caught:
        await note.save()  # every answer is dropped: it cannot succeed
    failure = caught.value
    await emu.control.faults()
    assert isinstance(failure, discobase.ConnectionFailedError)  # not aiohttp's own error
    assert failure.details["maybe_stored"] is True
    assert "may have been stored" in str(failure)
    first_id = note.disco_id
    await note.save()  # the app retries
    assert note.disco_id == first_id
    await db.close()
    assert await reopened_titles(make_db) == ["once"]


async def test_reads_ride_out_dropped_connections(emu: Emulator, make_db: MakeDb) -> None:
    db = make_db()
    Note = notes_table(db)
    db.login_task(TOKEN)
    await db.wait_ready()
    for i in range(12):
        await Note(title=f"r{i}").save()
    await db.close()
    await emu.control.faults(drop_before=0.2, drop_after=0.2, only_routes=["GET"], seed=3)
    assert await reopened_titles(make_db) == sorted(f"r{i}" for i in range(12))


async def test_a_commit_the_state_refuses_stops_writing_loudly(
    make_db: MakeDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If applying a stored commit fails (a corrupt state), writes fail with the reason,
    later ones too, and close() returns: never a hang."""
    db = make_db()
    Note = notes_table(db)
    db.login_task(TOKEN)
    await db.wait_ready()
    await Note(title="kept").save()
    engine = db._stores["Note"].engine
    assert engine is not None

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise discobase.DatabaseCorruptionError("the state refused it", where="test")

    monkeypatch.setattr(engine, "committed", refuse)
    with pytest.raises(discobase.DatabaseCorruptionError):
        await asyncio.wait_for(Note(title="refused").save(), 10)
    with pytest.raises(discobase.DatabaseTableError, match="stopped writing"):
        await Note(title="later").save()
    await asyncio.wait_for(db.close(), 10)
