"""The control API's damage: an admin deleting messages, channels and threads, a person
altering a message, and bytes garbled in storage, each seen by clients as Discord shows it."""

from __future__ import annotations

import asyncio
import hashlib
import io
from typing import Any

import aiohttp
import discord
import pytest

from discobase_emulator import Emulator


def waiting(bot: Any, event: str) -> asyncio.Future[Any]:
    """A future for the next `event`, registered before the action that causes it."""
    return asyncio.ensure_future(bot.wait_for(event, timeout=5))


async def test_admin_deletes_a_message_with_message_delete(bot: Any, emulator: Emulator) -> None:
    channel = bot.guilds[0].text_channels[0]
    msg = await channel.send("doomed", file=discord.File(io.BytesIO(b"abc"), "a.bin"))
    deleted = waiting(bot, "raw_message_delete")
    out = await emulator.control.delete_message(channel.id, msg.id)
    assert out == {
        "deleted": "message",
        "id": str(msg.id),
        "channel_id": str(channel.id),
        "guild_id": str(channel.guild.id),
        "content_length": 6,
        "attachments": [str(msg.attachments[0].id)],
    }
    event = await deleted
    assert (event.message_id, event.channel_id) == (msg.id, channel.id)
    with pytest.raises(discord.NotFound) as err:
        await channel.fetch_message(msg.id)
    assert err.value.code == 10008
    with pytest.raises(RuntimeError, match="10008"):
        await emulator.control.delete_message(channel.id, msg.id)


async def test_admin_deletes_a_channel_and_its_threads(bot: Any, emulator: Emulator) -> None:
    guild = bot.guilds[0]
    channel = await guild.create_text_channel("victim")
    await channel.send("one")
    thread = await channel.create_thread(name="t", type=discord.ChannelType.public_thread)
    await thread.send("two")
    deleted = waiting(bot, "guild_channel_delete")
    out = await emulator.control.delete_channel(channel.id)
    assert out["deleted"] == "channel"
    assert out["channel"]["id"] == str(channel.id)
    assert out["threads"] == [str(thread.id)]
    assert out["messages"] == 3  # "one", the thread-created notice, and "two" in the thread
    assert (await deleted).id == channel.id
    with pytest.raises(discord.NotFound) as err:
        await bot.fetch_channel(channel.id)
    assert err.value.code == 10003
    with pytest.raises(discord.NotFound):
        await bot.fetch_channel(thread.id)


async def test_admin_deletes_a_thread_with_thread_delete(bot: Any, emulator: Emulator) -> None:
    channel = bot.guilds[0].text_channels[0]
    thread = await channel.create_thread(name="gone", type=discord.ChannelType.public_thread)
    deleted = waiting(bot, "raw_thread_delete")
    out = await emulator.control.delete_channel(thread.id)
    assert out["deleted"] == "thread"
    assert out["threads"] == []
    assert (await deleted).thread_id == thread.id
    assert bot.get_channel(channel.id) is not None  # the parent stays


async def test_alter_message_edits_as_discord_shows_it(bot: Any, emulator: Emulator) -> None:
    channel = bot.guilds[0].text_channels[0]
    msg = await channel.send("original")
    edited = waiting(bot, "raw_message_edit")
    out = await emulator.control.alter_message(channel.id, msg.id, "altered")
    assert (out["before"], out["after"]) == ("original", "altered")
    assert out["edited_timestamp"] is not None
    assert (await edited).data["content"] == "altered"
    fetched = await channel.fetch_message(msg.id)
    assert fetched.content == "altered"
    assert fetched.edited_at is not None


async def test_silent_alteration_leaves_no_trace(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    channel = await first_channel(emulator, http)
    msg = await post(http, emulator, channel, "quiet")
    out = await emulator.control.alter_message(channel, msg["id"], "qu1et", silent=True)
    assert out["edited_timestamp"] is None
    got = await get(http, emulator, channel, msg["id"])
    assert (got["content"], got["edited_timestamp"]) == ("qu1et", None)


async def test_garble_content_flip_and_replace(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    channel = await first_channel(emulator, http)
    msg = await post(http, emulator, channel, "abcdef")
    out = await emulator.control.garble(channel, msg["id"], offset=2)
    assert out["offsets"] == [2]
    assert (out["content_before"], out["content_after"]) == ("abcdef", "abbdef")  # c ^ 1 = b
    assert out["sha256_before"] == hashlib.sha256(b"abcdef").hexdigest()
    assert out["sha256_after"] == hashlib.sha256(b"abbdef").hexdigest()
    got = await get(http, emulator, channel, msg["id"])
    assert (got["content"], got["edited_timestamp"]) == ("abbdef", None)
    out = await emulator.control.garble(
        channel, msg["id"], mode="replace", offset=0, count=3, data=b"\xff"
    )
    assert out["offsets"] == [0, 1, 2]
    assert out["content_after"] == "\ufffd\ufffd\ufffddef"  # invalid UTF-8 reads as U+FFFD
    seeded = [
        (await emulator.control.garble(channel, msg["id"], mode="flip", seed=7))["offsets"]
        for _ in range(2)
    ]
    assert seeded[0] == seeded[1]  # the same seed picks the same offset


async def test_garble_attachment_keeps_metadata_consistent(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    channel = await first_channel(emulator, http)
    form = aiohttp.FormData()
    form.add_field("payload_json", '{"content": "files"}', content_type="application/json")
    form.add_field("files[0]", b"0123456789", filename="a.bin")
    form.add_field("files[1]", b"second", filename="b.bin")
    async with http.post(f"{emulator.api_url}/channels/{channel}/messages", data=form) as resp:
        msg = await resp.json()
    out = await emulator.control.garble(
        channel, msg["id"], target="attachment", attachment=1, offset=0, mask=0x20
    )
    assert out["attachment_id"] == msg["attachments"][1]["id"]
    assert (out["size_before"], out["size_after"]) == (6, 6)
    got = await get(http, emulator, channel, msg["id"])
    assert [a["size"] for a in got["attachments"]] == [10, 6]
    assert [a["id"] for a in got["attachments"]] == [a["id"] for a in msg["attachments"]]
    assert await download(http, got["attachments"][1]["url"]) == b"Second"
    assert await download(http, got["attachments"][0]["url"]) == b"0123456789"
    out = await emulator.control.garble(
        channel, msg["id"], target="attachment", mode="truncate", length=4
    )
    assert (out["size_before"], out["size_after"]) == (10, 4)
    got = await get(http, emulator, channel, msg["id"])
    assert got["attachments"][0]["size"] == 4  # Discord reports the size of what it holds
    assert await download(http, got["attachments"][0]["url"]) == b"0123"


async def test_garble_refuses_nonsense(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    channel = await first_channel(emulator, http)
    msg = await post(http, emulator, channel, "text")
    bad: list[dict[str, Any]] = [
        {"target": "attachment"},  # no attachment
        {"mode": "melt"},
        {"offset": 4},
        {"target": "embeds"},
    ]
    for options in bad:
        with pytest.raises(RuntimeError, match=r"40[04]"):
            await emulator.control.garble(channel, msg["id"], **options)
    with pytest.raises(RuntimeError, match="10003"):
        await emulator.control.garble(1, msg["id"])


async def first_channel(emulator: Emulator, http: aiohttp.ClientSession) -> str:
    async with http.get(emulator.api_url + "/users/@me/guilds") as resp:
        guild_id = (await resp.json())[0]["id"]
    async with http.get(f"{emulator.api_url}/guilds/{guild_id}/channels") as resp:
        return str((await resp.json())[0]["id"])


async def post(
    http: aiohttp.ClientSession, emulator: Emulator, channel: str, content: str
) -> dict[str, Any]:
    url = f"{emulator.api_url}/channels/{channel}/messages"
    async with http.post(url, json={"content": content}) as resp:
        assert resp.status == 200
        out: dict[str, Any] = await resp.json()
        return out


async def get(
    http: aiohttp.ClientSession, emulator: Emulator, channel: str, message_id: str
) -> dict[str, Any]:
    async with http.get(f"{emulator.api_url}/channels/{channel}/messages/{message_id}") as resp:
        assert resp.status == 200
        out: dict[str, Any] = await resp.json()
        return out


async def download(http: aiohttp.ClientSession, url: str) -> bytes:
    async with http.get(url) as resp:
        assert resp.status == 200
        return await resp.read()
