"""The control API and the patch helper."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import aiohttp
import discord
import discord.gateway
import discord.http
import pytest

from discobase_emulator import Emulator, EmulatorControl, point_discord_at, use_emulator


async def test_patch_helper_is_reversible(emulator: Emulator) -> None:
    before = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    restore = point_discord_at(emulator.url)
    assert emulator.api_url == discord.http.Route.BASE
    assert str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == emulator.gateway_url
    restore()
    assert before == (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    with use_emulator(emulator.url):
        assert emulator.api_url == discord.http.Route.BASE
    assert before[0] == discord.http.Route.BASE


async def test_tokens_guilds_and_reset(emulator: Emulator, login: Any) -> None:
    ctl = EmulatorControl(emulator.url)
    try:
        user = await ctl.add_token("second", name="other")
        assert user["bot"] is True
        assert user["username"] == "other"
        guild = await ctl.create_guild("shared", members=["second", "bot-token-1"])
        assert guild["name"] == "shared"
        async with login(emulator, token="second") as bot:
            assert [g.name for g in bot.guilds] == ["shared"]
            assert str(bot.guilds[0].id) == guild["id"]
        await ctl.reset()
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                emulator.api_url + "/users/@me", headers={"Authorization": "Bot second"}
            ) as resp,
        ):
            assert resp.status == 401
        metrics = await ctl.metrics()
        assert metrics["requests"] == 1
    finally:
        await ctl.close()


async def test_post_as_user_dispatches(bot: Any, emulator: Emulator) -> None:
    channel = bot.guilds[0].text_channels[0]
    msg = await emulator.control.post_as_user(channel.id, "hi from a human", username="alice")
    assert msg["author"]["username"] == "alice"
    events = await bot.wait_for_event("message")
    human = [m for m in events if m.content == "hi from a human"]
    assert human
    assert not human[0].author.bot


async def test_seed_and_age(bot: Any, emulator: Emulator) -> None:
    channel = bot.guilds[0].text_channels[0]
    seeded = await emulator.control.seed_messages(
        channel.id, ["a", "b", "c"], age_seconds=20 * 24 * 3600
    )
    assert [m["content"] for m in seeded] == ["a", "b", "c"]
    old = await channel.fetch_message(int(seeded[0]["id"]))
    assert (discord.utils.utcnow() - old.created_at).days >= 19
    fresh = await channel.send("fresh")
    await emulator.control.age_messages(2 * 3600)
    history = [m async for m in channel.history(limit=None)]
    aged = next(m for m in history if m.content == "fresh")
    # Ids never change (clients keep them, as on Discord); the server's age of the message
    # does, and so does the timestamp it reports.
    assert aged.id == fresh.id
    raw = await bot.http.get_message(channel.id, fresh.id)
    created = datetime.fromisoformat(raw["timestamp"])
    assert (discord.utils.utcnow() - created).total_seconds() > 7000
    # bulk delete refuses anything older than 14 days with Discord's code
    with pytest.raises(discord.HTTPException) as err:
        await channel.delete_messages([old, aged])
    assert err.value.code == 50034


async def test_metrics_since_mark(bot: Any, emulator: Emulator) -> None:
    channel = bot.guilds[0].text_channels[0]
    await channel.send("before")
    mark = await emulator.control.mark()
    await channel.send("after")
    since = await emulator.control.metrics(mark)
    assert since["requests"] == 1
    assert since["by_route"] == {"POST /channels/{channel_id}/messages": 1}
    assert since["status"] == {"200": 1}
    assert len(since["by_bucket"]) == 1
    total = await emulator.control.metrics()
    assert total["requests"] > since["requests"]


async def test_faults(emulator: Emulator) -> None:
    headers = {"Authorization": "Bot bot-token-1"}
    async with aiohttp.ClientSession() as session:
        await emulator.control.faults(error_rate=1.0, statuses=(503,))
        async with session.get(emulator.api_url + "/users/@me", headers=headers) as resp:
            assert resp.status == 503
        await emulator.control.faults(storm_429=1.0)
        async with session.get(emulator.api_url + "/users/@me", headers=headers) as resp:
            assert resp.status == 429
            assert resp.headers["X-RateLimit-Scope"] == "shared"
            assert resp.headers["Via"] == "1.1 google"
        await emulator.control.faults(latency=0.05)
        async with session.get(emulator.api_url + "/users/@me", headers=headers) as resp:
            assert resp.status == 200
        await emulator.control.faults()
    metrics = await emulator.control.metrics()
    assert metrics["http_429"]["shared"] == 1
    assert metrics["invalid_requests"] == 0  # shared-scope 429s are not invalid requests
