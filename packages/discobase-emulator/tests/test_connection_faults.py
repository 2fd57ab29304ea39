"""Dropped and stalled connections: before handling (nothing happened), after handling (the
write is stored but the client never hears so), stalls past a client's timeout, the route
filter, and the counters in metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest

from discobase_emulator import Emulator

TOKEN = "bot-token-1"
SEND = "POST /channels/{channel_id}/messages"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # A fresh connection per request, so a dropped one never poisons the next request.
    connector = aiohttp.TCPConnector(force_close=True)
    headers = {"Authorization": f"Bot {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        yield session


async def general(emulator: Emulator, http: aiohttp.ClientSession) -> str:
    async with http.get(emulator.api_url + "/users/@me/guilds") as resp:
        guild_id = (await resp.json())[0]["id"]
    async with http.get(f"{emulator.api_url}/guilds/{guild_id}/channels") as resp:
        return str((await resp.json())[0]["id"])


async def contents(emulator: Emulator, http: aiohttp.ClientSession, channel: str) -> list[str]:
    async with http.get(f"{emulator.api_url}/channels/{channel}/messages") as resp:
        assert resp.status == 200
        return [m["content"] for m in await resp.json()]


async def send(emulator: Emulator, http: aiohttp.ClientSession, channel: str, text: str) -> Any:
    url = f"{emulator.api_url}/channels/{channel}/messages"
    async with http.post(url, json={"content": text}) as resp:
        return await resp.json()


async def test_drop_before_handling_stores_nothing(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    channel = await general(emulator, http)
    mark = await emulator.control.mark()
    await emulator.control.faults(drop_before=1.0, only_routes=[SEND])
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await send(emulator, http, channel, "never")
    assert await contents(emulator, http, channel) == []  # reads are not in only_routes
    await emulator.control.faults()
    metrics = await emulator.control.metrics(mark)
    assert metrics["faults"] == {"drop_before": 1}
    assert SEND not in metrics["by_route"]  # never answered, never handled


async def test_drop_after_handling_stores_the_write(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    channel = await general(emulator, http)
    mark = await emulator.control.mark()
    await emulator.control.faults(drop_after=1.0, only_routes=["POST"])
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await send(emulator, http, channel, "stored anyway")
    assert await contents(emulator, http, channel) == ["stored anyway"]
    await emulator.control.faults()
    metrics = await emulator.control.metrics(mark)
    assert metrics["faults"] == {"drop_after": 1}
    assert metrics["by_route"][SEND] == 1  # it was handled


async def test_drop_after_an_error_answer_is_not_a_drop(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """Only a handled success is dropped: a refused request changed nothing worth hiding."""
    channel = await general(emulator, http)
    await emulator.control.faults(drop_after=1.0, only_routes=[SEND])
    answer = await send(emulator, http, channel, "x" * 2001)
    assert answer["code"] == 50035
    await emulator.control.faults()


async def test_discord_py_sees_a_dropped_send_that_was_stored(bot: Any, emulator: Emulator) -> None:
    channel = bot.guilds[0].text_channels[0]
    await emulator.control.faults(drop_after=1.0, only_routes=[SEND])
    with pytest.raises(aiohttp.ClientConnectionError):
        await channel.send("did it?")
    await emulator.control.faults()
    assert [m.content async for m in channel.history()] == ["did it?"]


async def test_stall_outlasts_the_client_timeout_and_handles_nothing(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    channel = await general(emulator, http)
    mark = await emulator.control.mark()
    await emulator.control.faults(stall=1.0, stall_seconds=60, only_routes=[SEND])
    url = f"{emulator.api_url}/channels/{channel}/messages"
    with pytest.raises(TimeoutError):
        async with http.post(
            url, json={"content": "stalled"}, timeout=aiohttp.ClientTimeout(total=0.2)
        ):
            pass
    await emulator.control.faults()  # releases the stall: it drops, unhandled
    assert await contents(emulator, http, channel) == []
    metrics = await emulator.control.metrics(mark)
    assert metrics["faults"] == {"stall": 1}


async def test_only_routes_and_seed_make_faults_selective_and_reproducible(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    channel = await general(emulator, http)
    await emulator.control.faults(error_rate=1.0, statuses=(502,), only_routes=["GET /users/@me"])
    async with http.get(emulator.api_url + "/users/@me") as resp:
        assert resp.status == 502
    assert (await send(emulator, http, channel, "fine"))["content"] == "fine"

    async def pattern() -> list[int]:
        await emulator.control.faults(error_rate=0.5, seed=42, only_routes=["/users/@me"])
        out = []
        for _ in range(12):
            async with http.get(emulator.api_url + "/users/@me") as resp:
                out.append(resp.status)
        return out

    first = await pattern()
    assert await pattern() == first
    assert {200} < set(first)  # some failed, some did not
    await emulator.control.faults()


async def test_stop_is_not_held_up_by_a_stall(http: aiohttp.ClientSession) -> None:
    async with Emulator(tokens=[TOKEN], guilds=["g"], profile="unlimited") as emulator:
        await emulator.control.faults(stall=1.0, stall_seconds=3600)
        with pytest.raises(TimeoutError):
            async with http.get(
                emulator.api_url + "/users/@me", timeout=aiohttp.ClientTimeout(total=0.2)
            ):
                pass
    # leaving the block stopped the emulator: reaching here at all is the assertion


async def test_discord_py_send_dropped_before_handling_is_not_stored(
    bot: Any, emulator: Emulator
) -> None:
    """discord.py does not retry a connection closed without an answer; nothing is stored."""
    channel = bot.guilds[0].text_channels[0]
    await emulator.control.faults(drop_before=1.0, only_routes=[SEND])
    with pytest.raises((aiohttp.ClientConnectionError, discord.HTTPException)):
        await channel.send("lost in transit")
    await emulator.control.faults()
    assert [m.content async for m in channel.history()] == []
