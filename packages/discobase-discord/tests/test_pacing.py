"""Commits are paced over lanes by Discord's own rate-limit budget (discobase_core.engine), so
a stream of single writes never waits behind a lane discord.py has to put to sleep."""

from __future__ import annotations

from typing import Any

import pytest
from discobase_test_support import TOKEN, MakeDb

import discobase
from discobase._discord_io import ChannelIO
from discobase_emulator import Emulator


def notes_table(db: discobase.Database) -> type[Any]:
    @db.table
    class Note(discobase.Table):
        title: str

    return Note


async def test_send_budget_reads_what_discord_said(emu: Emulator, make_db: MakeDb) -> None:
    """discord.py keeps the rate-limit headers privately: this pins down that we read them."""
    await emu.control.set_profile("discord")
    db = make_db(lanes=1)
    Note = notes_table(db)
    db.login_task(TOKEN)
    await db.wait_ready()
    await Note(title="first").save()
    store = db._stores["Note"]
    remaining, resets_in = store.io.send_budget()
    assert remaining is not None
    assert 0 <= remaining < 5
    assert resets_in is not None
    assert 0 < resets_in <= 5


async def test_sequential_saves_never_spend_a_lanes_last_send(
    emu: Emulator, make_db: MakeDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """discord.py sleeps until the window resets inside the send that spends a bucket's
    last request; with the `discord` profile (5 per 5 s per channel), 14 awaited saves in a
    row over 3 lanes must never send on a lane with one request left."""
    db = make_db(lanes=3)
    Note = notes_table(db)
    db.login_task(TOKEN)
    await db.wait_ready()
    await emu.control.set_profile("discord")  # fresh windows: the open's sends do not count
    seen: list[tuple[int | None, float | None]] = []
    lanes = {io.channel.id for io in db._stores["Note"].ios if io is not None}
    send = ChannelIO.send

    async def spy(self: ChannelIO, *args: Any, **kwargs: Any) -> Any:
        if self.channel.id in lanes:
            seen.append(self.send_budget())
        return await send(self, *args, **kwargs)

    monkeypatch.setattr(ChannelIO, "send", spy)
    mark = await emu.control.mark()
    for i in range(14):
        await Note(title=f"n{i}").save()
    metrics = await emu.control.metrics(mark)
    assert metrics["http_429"]["total"] == 0
    known = [(left, resets) for left, resets in seen if left is not None and resets is not None]
    assert len(known) >= 10  # most sends followed an earlier one on the same lane
    spent = [(left, resets) for left, resets in known if left <= 1 and resets > 0]
    assert not spent, f"sent on a lane with its last request left: {spent}"
    assert sorted(n.title for n in await Note.find()) == sorted(f"n{i}" for i in range(14))
