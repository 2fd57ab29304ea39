"""What benchmarks read from the emulator: bytes downloaded (REST answers and CDN files) and
bytes stored per channel and thread."""

from __future__ import annotations

import io
from typing import Any

import aiohttp
import discord
import pytest

from discobase_emulator import Emulator


async def test_rest_bytes_count_answer_bodies(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    mark = await emulator.control.mark()
    async with http.get(emulator.api_url + "/users/@me") as resp:
        body = await resp.read()
    async with http.get(emulator.api_url + "/no/such/route") as resp:
        await resp.read()
    since = await emulator.control.metrics(mark)
    assert since["requests"] == 2
    assert since["rest_bytes_by_route"] == {"GET /users/@me": len(body)}
    assert since["rest_bytes"] == len(body)
    assert since["cdn_bytes"] == 0


async def test_history_bytes_and_downloads_are_counted(bot: Any, emulator: Emulator) -> None:
    channel = bot.guilds[0].text_channels[0]
    await channel.send("x" * 1000, file=discord.File(io.BytesIO(b"a" * 5000), "a.bin"))
    mark = await emulator.control.mark()
    messages = [m async for m in channel.history(limit=10)]
    data = await messages[0].attachments[0].read()
    since = await emulator.control.metrics(mark)
    route = "GET /channels/{channel_id}/messages"
    assert since["rest_bytes_by_route"][route] > 1000  # the content comes back in the page
    assert since["rest_bytes"] == since["rest_bytes_by_route"][route]
    assert since["cdn_requests"] == 1
    assert since["cdn_bytes"] == len(data) == 5000


async def test_storage_per_channel_and_thread(bot: Any, emulator: Emulator) -> None:
    guild = bot.guilds[0]
    channel = guild.text_channels[0]
    # Creating a thread posts a system message in its channel: make it first, then count.
    thread = await channel.create_thread(name="lane", type=discord.ChannelType.public_thread)
    before = await emulator.control.storage(guild.id)
    base = {row["id"]: row for row in before["channels"]}[str(channel.id)]
    await channel.send("héllo")  # 6 bytes in UTF-8
    with_file = await channel.send("f", files=[discord.File(io.BytesIO(b"1" * 300), "log-7-0.bin")])
    await thread.send("abc", file=discord.File(io.BytesIO(b"2" * 40), "x.bin"))
    report = await emulator.control.storage(guild.id)
    assert report["guild_id"] == str(guild.id)
    assert "messages" not in report
    rows = {row["id"]: row for row in report["channels"]}
    main = rows[str(channel.id)]
    assert main["messages"] - base["messages"] == 2
    assert main["content_bytes"] - base["content_bytes"] == 7
    assert (main["attachments"], main["attachment_bytes"]) == (1, 300)
    assert main["bytes"] - base["bytes"] == 307
    lane = rows[str(thread.id)]
    assert lane["parent_id"] == str(channel.id)
    assert lane["name"] == "lane"
    assert (lane["messages"], lane["bytes"]) == (1, 43)
    assert report["totals"]["bytes"] == sum(row["bytes"] for row in report["channels"])
    assert report["totals"]["bytes"] - before["totals"]["bytes"] == 350
    detailed = await emulator.control.storage(guild.id, messages=True)
    listed = {m["id"]: m for m in detailed["messages"]}
    assert listed[str(with_file.id)] == {
        "id": str(with_file.id),
        "channel_id": str(channel.id),
        "content_bytes": 1,
        "attachments": [{"filename": "log-7-0.bin", "bytes": 300}],
    }
    assert len(listed) == before["totals"]["messages"] + 3
    await with_file.delete()
    after = await emulator.control.storage(guild.id)
    assert after["totals"]["bytes"] == report["totals"]["bytes"] - 301


async def test_storage_of_an_unknown_guild(emulator: Emulator) -> None:
    with pytest.raises(RuntimeError, match="404"):
        await emulator.control.storage(1234)
