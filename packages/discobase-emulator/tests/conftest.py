"""Fixtures: a running emulator (`emulator`), and a discord.py client logged into it (`bot`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import discord
import pytest

from discobase_emulator import Emulator, point_discord_at

TOKEN = "bot-token-1"
GUILD = "test-guild"


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(tokens=[TOKEN], guilds=[GUILD], profile="unlimited") as emu:
        yield emu


class Recorder(discord.Client):
    """A discord.Client that records gateway events for assertions."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.ready_event = asyncio.Event()
        self.events: list[tuple[str, object]] = []
        self.event_added = asyncio.Condition()

    async def on_ready(self) -> None:
        self.ready_event.set()

    async def _record(self, name: str, payload: object) -> None:
        async with self.event_added:
            self.events.append((name, payload))
            self.event_added.notify_all()

    async def on_message(self, message: discord.Message) -> None:
        await self._record("message", message)

    async def on_raw_message_edit(self, payload: object) -> None:
        await self._record("edit", payload)

    async def on_raw_message_delete(self, payload: object) -> None:
        await self._record("delete", payload)

    async def on_raw_bulk_message_delete(self, payload: object) -> None:
        await self._record("bulk_delete", payload)

    async def on_guild_channel_create(self, channel: object) -> None:
        await self._record("channel_create", channel)

    async def on_guild_channel_delete(self, channel: object) -> None:
        await self._record("channel_delete", channel)

    async def on_thread_create(self, thread: object) -> None:
        await self._record("thread_create", thread)

    async def wait_for_event(self, name: str, count: int = 1, wait: float = 5.0) -> list[object]:
        async def have() -> list[object]:
            async with self.event_added:
                await self.event_added.wait_for(
                    lambda: sum(1 for n, _ in self.events if n == name) >= count
                )
                return [p for n, p in self.events if n == name]

        return await asyncio.wait_for(have(), wait)


@contextlib.asynccontextmanager
async def logged_in(
    emu: Emulator, token: str = TOKEN, intents: discord.Intents | None = None, **kwargs: object
) -> AsyncIterator[Recorder]:
    if intents is None:
        intents = discord.Intents.default()
        intents.message_content = True
    restore = point_discord_at(emu.url)
    client = Recorder(intents=intents, guild_ready_timeout=0.1, **kwargs)
    task = asyncio.create_task(client.start(token))
    try:
        done, _ = await asyncio.wait(
            [task, asyncio.create_task(client.ready_event.wait())],
            timeout=10,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if task in done:
            task.result()
        assert client.ready_event.is_set(), "on_ready did not fire"
        yield client
    finally:
        await client.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, 5)
        restore()


@pytest.fixture
async def bot(emulator: Emulator) -> AsyncIterator[Recorder]:
    async with logged_in(emulator) as client:
        yield client


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A raw HTTP session carrying the bot's token, for tests of the REST routes."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bot {TOKEN}"}) as session:
        yield session


@pytest.fixture
def login() -> object:
    """`async with login(emulator, token=..., intents=...) as client:` for extra clients."""
    return logged_in
