"""Unmodified discord.py against the emulator: login, channels, messages, attachments, events."""

from __future__ import annotations

import io
from typing import Any

import discord
import pytest

from discobase_emulator import Emulator


def guild_of(bot: Any) -> discord.Guild:
    (guild,) = bot.guilds
    assert guild.name == "test-guild"
    return guild


async def test_login_and_ready(bot: Any, emulator: Emulator) -> None:
    assert bot.user is not None
    assert bot.user.bot
    guild = guild_of(bot)
    assert [c.name for c in guild.text_channels] == ["general"]
    metrics = await emulator.control.metrics()
    assert metrics["gateway_connections"] == 1
    assert metrics["by_route"]["GET /users/@me"] == 1
    assert metrics["by_route"]["GET /oauth2/applications/@me"] == 1


async def test_channel_lifecycle(bot: Any) -> None:
    guild = guild_of(bot)
    everyone = guild.default_role
    overwrites = {everyone: discord.PermissionOverwrite(read_messages=False)}
    channel = await guild.create_text_channel("My Table", topic="t", overwrites=overwrites)
    assert channel.name == "my-table"
    await bot.wait_for_event("channel_create")
    fetched = await bot.fetch_channel(channel.id)
    assert isinstance(fetched, discord.TextChannel)
    assert fetched.topic == "t"
    assert fetched.overwrites_for(everyone).read_messages is False
    edited = await channel.edit(topic="new topic")
    assert edited is not None
    assert edited.topic == "new topic"
    names = [c.name for c in await guild.fetch_channels()]
    assert "my-table" in names
    await channel.delete()
    await bot.wait_for_event("channel_delete")
    assert guild.get_channel(channel.id) is None
    with pytest.raises(discord.NotFound) as err:
        await bot.fetch_channel(channel.id)
    assert err.value.code == 10003


async def test_message_send_read_edit_delete(bot: Any) -> None:
    channel = guild_of(bot).text_channels[0]
    sent = await channel.send("hello")
    assert sent.content == "hello"
    events = await bot.wait_for_event("message")
    assert any(isinstance(m, discord.Message) and m.id == sent.id for m in events)
    fetched = await channel.fetch_message(sent.id)
    assert fetched.content == "hello"
    assert fetched.author == bot.user
    edited = await sent.edit(content="bye")
    assert edited.content == "bye"
    assert edited.edited_at is not None
    await bot.wait_for_event("edit")
    await sent.delete()
    await bot.wait_for_event("delete")
    with pytest.raises(discord.NotFound) as err:
        await channel.fetch_message(sent.id)
    assert err.value.code == 10008


async def test_attachments_up_and_down(bot: Any, emulator: Emulator) -> None:
    channel = guild_of(bot).text_channels[0]
    blob = bytes(range(256)) * 4096  # 1 MiB
    sent = await channel.send(
        "with files",
        files=[
            discord.File(io.BytesIO(blob), "blob.bin"),
            discord.File(io.BytesIO(b"hi"), "a.txt"),
        ],
    )
    assert [a.filename for a in sent.attachments] == ["blob.bin", "a.txt"]
    assert sent.attachments[0].size == len(blob)
    assert "ex=" in sent.attachments[0].url
    assert "hm=" in sent.attachments[0].url
    fetched = await channel.fetch_message(sent.id)
    assert await fetched.attachments[0].read() == blob
    assert await fetched.attachments[1].read() == b"hi"
    metrics = await emulator.control.metrics()
    assert metrics["cdn_requests"] == 2
    assert metrics["cdn_bytes"] == len(blob) + 2
    # v10 edit: keep only the listed attachment and add a new file
    edited = await fetched.edit(
        attachments=[fetched.attachments[1], discord.File(io.BytesIO(b"new"), "b.txt")]
    )
    assert [a.filename for a in edited.attachments] == ["a.txt", "b.txt"]
    assert await edited.attachments[1].read() == b"new"


async def test_bulk_delete_and_purge(bot: Any) -> None:
    channel = guild_of(bot).text_channels[0]
    msgs = [await channel.send(f"m{i}") for i in range(5)]
    await channel.delete_messages(msgs[:3])
    await bot.wait_for_event("bulk_delete")
    left = [m.content async for m in channel.history(limit=None)]
    assert left == ["m4", "m3"]
    deleted = await channel.purge(limit=None)
    assert len(deleted) == 2
