"""The bot's own permissions, computed as Discord computes them and enforced on its REST calls:
403/50013 "Missing Permissions", and 403/50001 "Missing Access" for a channel it cannot see.
By default a bot's role is administrator, so nothing changes for tests that do not ask."""

from __future__ import annotations

from typing import Any

import discord
import pytest

from discobase_emulator import Emulator

VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MANAGE_CHANNELS = 1 << 4
EVERYDAY = VIEW_CHANNEL | SEND_MESSAGES | READ_MESSAGE_HISTORY


async def wait_until(bot: Any, check: Any) -> None:
    """Wait for the gateway to bring discord.py's cache up to date (an event, not a delay)."""
    if check():
        return
    await bot.wait_for("guild_role_update", check=lambda before, after: check(), timeout=5)


async def test_default_bot_is_administrator(bot: Any) -> None:
    me = bot.guilds[0].me
    assert me.guild_permissions.administrator
    assert any(r.managed and r.tags.bot_id == bot.user.id for r in me.roles)


async def test_bot_role_permissions_are_enforced(bot: Any, emulator: Emulator) -> None:
    guild = bot.guilds[0]
    channel = guild.text_channels[0]
    ctl = emulator.control
    await ctl.edit_role(guild.id, guild.id, VIEW_CHANNEL)  # @everyone counts for bots too
    await ctl.set_bot_permissions(guild.id, EVERYDAY)
    await wait_until(bot, lambda: not guild.me.guild_permissions.administrator)
    assert guild.me.guild_permissions.send_messages  # discord.py sees what the server enforces
    with pytest.raises(discord.Forbidden) as err:
        await guild.create_text_channel("nope")
    assert (err.value.status, err.value.code) == (403, 50013)
    mine = await channel.send("mine")  # sending is allowed
    other = await ctl.post_as_user(channel.id, "theirs")
    theirs = await channel.fetch_message(int(other["id"]))
    with pytest.raises(discord.Forbidden) as err:
        await theirs.delete()
    assert err.value.code == 50013
    await mine.delete()  # a bot may always delete its own messages
    with pytest.raises(discord.Forbidden):
        await theirs.pin()
    with pytest.raises(discord.Forbidden):
        await channel.send(file=discord.File(__file__))  # no Attach Files
    with pytest.raises(discord.Forbidden):
        await channel.edit(name="renamed")
    await ctl.set_bot_permissions(guild.id, EVERYDAY | MANAGE_CHANNELS | MANAGE_MESSAGES)
    await wait_until(bot, lambda: guild.me.guild_permissions.manage_channels)
    created = await guild.create_text_channel("allowed")
    await theirs.delete()
    await created.delete()


async def test_channel_overwrites_are_enforced(bot: Any, emulator: Emulator) -> None:
    guild = bot.guilds[0]
    channel = guild.text_channels[0]
    ctl = emulator.control
    await ctl.seed_messages(channel.id, ["old"])
    await ctl.set_bot_permissions(guild.id, EVERYDAY | MANAGE_CHANNELS | (1 << 28))
    await wait_until(bot, lambda: not guild.me.guild_permissions.administrator)
    bot_role = next(r for r in guild.me.roles if r.managed)
    # An admin (the owner) denies the bot's role Send Messages in #general.
    await channel.set_permissions(bot_role, send_messages=False)
    with pytest.raises(discord.Forbidden) as err:
        await channel.send("hello")
    assert err.value.code == 50013
    # A member overwrite for the bot itself wins over its role's deny.
    await channel.set_permissions(guild.me, send_messages=True)
    await channel.send("hello again")
    await channel.set_permissions(bot_role, send_messages=False, read_message_history=False)
    assert [m async for m in channel.history()] == []  # Discord answers no messages
    await channel.set_permissions(bot_role, view_channel=False)
    with pytest.raises(discord.Forbidden) as err:
        await channel.send("hello")
    assert err.value.code == 50001  # a channel it cannot see: Missing Access
    with pytest.raises(discord.Forbidden) as err:
        await bot.http.get_channel(channel.id)
    assert err.value.code == 50001
    with pytest.raises(discord.Forbidden) as err:  # nor change it back
        await channel.set_permissions(bot_role, overwrite=None)
    assert err.value.code == 50001


async def test_everyone_role_and_member_roles(bot: Any, emulator: Emulator) -> None:
    guild = bot.guilds[0]
    ctl = emulator.control
    everyone = await ctl.edit_role(guild.id, guild.id, VIEW_CHANNEL)
    assert everyone["permissions"] == str(VIEW_CHANNEL)
    helpers = await ctl.create_role(guild.id, "helpers", SEND_MESSAGES)
    member = await ctl.add_member(guild.id, "helper", roles=[helpers["id"]])
    command_channel = guild.text_channels[0]
    fetched = await guild.fetch_member(int(member["user"]["id"]))
    assert [r.id for r in fetched.roles if not r.is_default()] == [int(helpers["id"])]
    perms = fetched.guild_permissions
    assert (perms.send_messages, perms.view_channel, perms.manage_messages) == (True, True, False)
    with pytest.raises(RuntimeError, match="Unknown Role"):
        await ctl.set_member_roles(guild.id, member["user"]["id"], ["1"])
    fetched_roles = await guild.fetch_roles()
    assert [r.name for r in fetched_roles] == ["@everyone", "bot", "helpers"]
    assert fetched_roles[0].permissions.value == VIEW_CHANNEL
    cleared = await ctl.set_member_roles(guild.id, member["user"]["id"], [])
    assert cleared["roles"] == []
    assert command_channel.permissions_for(guild.me).administrator  # the bot keeps its role


async def test_roles_survive_a_restart(tmp_path: Any) -> None:
    async with Emulator(tokens=["T"], guilds=["g"], data_dir=tmp_path) as emu:
        guild = next(iter(emu.core.state.store.guilds.values()))
        await emu.control.set_bot_permissions(guild.id, EVERYDAY)
    async with Emulator(tokens=["T"], guilds=["g"], data_dir=tmp_path) as emu:
        guild = next(iter(emu.core.state.store.guilds.values()))
        roles = [r for r in guild.roles.values() if r.bot_id is not None]
        assert [r.permissions for r in roles] == [EVERYDAY]


async def test_no_events_from_channels_the_bot_cannot_see(bot: Any, emulator: Emulator) -> None:
    guild = bot.guilds[0]
    ctl = emulator.control
    hidden = await guild.create_text_channel("hidden")
    visible = guild.text_channels[0]
    await ctl.set_bot_permissions(guild.id, EVERYDAY | MANAGE_CHANNELS | (1 << 28))
    bot_role = next(r for r in guild.me.roles if r.managed)
    await hidden.set_permissions(bot_role, view_channel=False)
    await ctl.post_as_user(hidden.id, "secret")
    await ctl.post_as_user(visible.id, "public")
    # One session gets its events in order: had "secret" been sent, it would be here first.
    messages = await bot.wait_for_event("message")
    assert [m.content for m in messages] == ["public"]
