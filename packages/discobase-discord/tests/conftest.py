"""Fixtures: an in-process emulator per test, and Databases bound to it.

Every test gets a fresh emulator (`emu`, profile "unlimited": no 429s, no waiting), so tests
never share state. `make_db()` builds a `discobase.Database` pointed at it and closes it at
the end of the test. Helpers (subprocess scripts, polling) live in discobase_test_support.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

# discord.py imports the deprecated `audioop` module (voice support we never use); with
# `filterwarnings = error` that import would fail collection, so it happens here first.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord  # noqa: F401

sys.path.insert(0, str(Path(__file__).parent))

from discobase_test_support import GUILD, TOKEN, MakeDb

import discobase
from discobase_emulator import Emulator


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(tokens=[TOKEN], guilds=[GUILD], profile="unlimited") as emulator:
        yield emulator


@pytest.fixture
async def make_db(emu: Emulator) -> AsyncIterator[MakeDb]:
    """`make_db(name=GUILD, **kwargs)`: a Database on the emulator, closed after the test."""
    made: list[discobase.Database] = []

    def make(name: str = GUILD, **kwargs: Any) -> discobase.Database:
        kwargs.setdefault("api_url", emu.url)
        kwargs.setdefault("guild_ready_timeout", 0.1)
        db = discobase.Database(name, **kwargs)
        made.append(db)
        return db

    yield make
    for db in made:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(db.close(), 30)
