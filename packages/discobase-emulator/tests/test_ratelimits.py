"""Rate-limit conformance, counted in requests and 429s (not in wall time)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from discobase_emulator import Emulator

TOKEN = "rl-token"


@pytest.fixture
async def fast() -> AsyncIterator[Emulator]:
    async with Emulator(tokens=[TOKEN], guilds=["g"], profile="fast") as emu:
        yield emu


async def general_id(emu: Emulator, session: aiohttp.ClientSession) -> str:
    headers = {"Authorization": f"Bot {TOKEN}"}
    async with session.get(emu.api_url + "/users/@me/guilds", headers=headers) as resp:
        guild_id = (await resp.json())[0]["id"]
    async with session.get(f"{emu.api_url}/guilds/{guild_id}/channels", headers=headers) as resp:
        return str((await resp.json())[0]["id"])


async def test_discord_py_concurrent_sends_get_no_429(fast: Emulator, login: Any) -> None:
    async with login(fast, token=TOKEN) as bot:
        channel = bot.guilds[0].text_channels[0]
        mark = await fast.control.mark()
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.gather(*(channel.send(f"m{i}") for i in range(12)))
        elapsed = loop.time() - start
        metrics = await fast.control.metrics(mark)
    assert metrics["by_route"]["POST /channels/{channel_id}/messages"] == 12
    assert metrics["http_429"]["total"] == 0
    # 12 sends at 5 per 0.5 s need three windows: the client must have waited at least two.
    assert elapsed >= 0.9


async def test_client_ignoring_headers_gets_429s(fast: Emulator) -> None:
    async with aiohttp.ClientSession() as session:
        channel = await general_id(fast, session)
        headers = {"Authorization": f"Bot {TOKEN}"}
        url = f"{fast.api_url}/channels/{channel}/messages"
        statuses = []
        limited: list[tuple[dict[str, str], Any]] = []
        for i in range(7):
            async with session.post(url, json={"content": str(i)}, headers=headers) as resp:
                statuses.append(resp.status)
                if resp.status == 429:
                    limited.append((dict(resp.headers), await resp.json()))
                else:
                    assert resp.headers["X-RateLimit-Limit"] == "5"
                    assert resp.headers["X-RateLimit-Remaining"] == str(4 - i)
                    assert float(resp.headers["X-RateLimit-Reset-After"]) <= 0.5
                    assert "X-RateLimit-Bucket" in resp.headers
                    assert "." in resp.headers["X-RateLimit-Reset"]
    assert statuses == [200] * 5 + [429] * 2
    hdrs, body = limited[0]
    assert hdrs["Content-Type"] == "application/json"
    assert hdrs["Via"] == "1.1 google"
    assert hdrs["X-RateLimit-Scope"] == "user"
    assert hdrs["X-RateLimit-Remaining"] == "0"
    assert int(hdrs["Retry-After"]) >= 1
    assert "X-RateLimit-Global" not in hdrs
    assert body["global"] is False
    assert 0 < body["retry_after"] <= 0.5
    assert body["message"] == "You are being rate limited."
    metrics = await fast.control.metrics()
    assert metrics["http_429"] == {"total": 2, "user": 2, "global": 0, "shared": 0}
    assert metrics["invalid_requests"] == 2


async def test_global_limit_across_channels(fast: Emulator, login: Any) -> None:
    async with login(fast, token=TOKEN) as bot:
        guild = bot.guilds[0]
        channels = [guild.text_channels[0]]
        for i in range(14):
            guild_json = await fast.control.create_channel(guild.id, f"c{i}")
            channels.append(await bot.fetch_channel(int(guild_json["id"])))
        # The discord profile: 50 requests/s per bot; fast's 50 per 0.1 s is out of reach here.
        await fast.control.set_profile("discord")
        mark = await fast.control.mark()
        # 60 sends, 4 per channel (under the 5-per-window bucket), fired at once.
        await asyncio.gather(*(c.send(f"x{i}") for c in channels for i in range(4)))
        metrics = await fast.control.metrics(mark)
    assert (
        metrics["by_route"]["POST /channels/{channel_id}/messages"] - metrics["http_429"]["total"]
        == 60
    )
    # discord.py does not limit globally ahead of time: the emulator must answer global 429s.
    assert metrics["http_429"]["global"] > 0
    assert metrics["http_429"]["user"] == 0
    assert metrics["invalid_requests"] == metrics["http_429"]["global"]


async def test_global_429_shape(fast: Emulator) -> None:
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bot {TOKEN}"}
        results = []
        for _ in range(60):
            async with session.get(fast.api_url + "/gateway/bot", headers=headers) as resp:
                results.append((resp.status, dict(resp.headers), await resp.json()))
    limited = [r for r in results if r[0] == 429]
    assert limited, "expected global 429s"
    global_ones = [r for r in limited if r[1].get("X-RateLimit-Scope") == "global"]
    assert global_ones
    _, hdrs, body = global_ones[0]
    assert hdrs["X-RateLimit-Global"] == "true"
    assert hdrs["Via"] == "1.1 google"
    assert body["global"] is True


async def test_invalid_requests_counted(fast: Emulator) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            async with session.get(
                fast.api_url + "/users/@me", headers={"Authorization": "Bot nope"}
            ) as resp:
                assert resp.status == 401
                assert (await resp.json())["code"] == 0
        async with session.get(
            fast.api_url + "/channels/1/messages", headers={"Authorization": f"Bot {TOKEN}"}
        ) as resp:
            assert resp.status == 404  # not an invalid request in Discord's sense
    metrics = await fast.control.metrics()
    assert metrics["invalid_requests"] == 3
    assert metrics["status"]["401"] == 3


async def test_unlimited_sends_headers_never_429(emulator: Emulator) -> None:
    async with aiohttp.ClientSession() as session:
        channel = await general_id_for(emulator, session, "bot-token-1")
        url = f"{emulator.api_url}/channels/{channel}/messages"
        headers = {"Authorization": "Bot bot-token-1"}
        for i in range(30):
            async with session.post(url, json={"content": str(i)}, headers=headers) as resp:
                assert resp.status == 200
                assert "X-RateLimit-Remaining" in resp.headers
    assert (await emulator.control.metrics())["http_429"]["total"] == 0


async def general_id_for(emu: Emulator, session: aiohttp.ClientSession, token: str) -> str:
    headers = {"Authorization": f"Bot {token}"}
    async with session.get(emu.api_url + "/users/@me/guilds", headers=headers) as resp:
        guild_id = (await resp.json())[0]["id"]
    async with session.get(f"{emu.api_url}/guilds/{guild_id}/channels", headers=headers) as resp:
        return str((await resp.json())[0]["id"])


async def test_profile_switch(fast: Emulator) -> None:
    await fast.control.set_profile("unlimited")
    async with aiohttp.ClientSession() as session:
        channel = await general_id(fast, session)
        url = f"{fast.api_url}/channels/{channel}/messages"
        for i in range(8):
            async with session.post(
                url, json={"content": str(i)}, headers={"Authorization": f"Bot {TOKEN}"}
            ) as resp:
                assert resp.status == 200
    await fast.control.set_profile("discord")
    with pytest.raises(RuntimeError):
        await fast.control.set_profile("warp")
