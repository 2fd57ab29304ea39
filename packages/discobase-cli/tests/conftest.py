"""Fixtures: an emulator in its own process per test (profile "unlimited": no waiting)."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

with warnings.catch_warnings():  # discord.py imports the deprecated audioop
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord  # noqa: F401

sys.path.insert(0, str(Path(__file__).parent))

from cli_support import GUILD, TOKEN, Emu, start_emulator


@pytest.fixture
def emu() -> Iterator[Emu]:
    url, process = start_emulator("--profile", "unlimited", "--token", TOKEN, "--guild", GUILD)
    try:
        yield Emu(url, process)
    finally:
        process.terminate()
        process.wait(30)
        if process.stdout is not None:
            process.stdout.close()
