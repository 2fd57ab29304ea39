"""Helpers of the CLI tests: an emulator in its own process, the CLI runner pointed at it, and
a way to put data in it with the library (the CLI never defines tables; programs do)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from typer.testing import CliRunner, Result

import discobase
from discobase_cli.main import app

TOKEN = "cli-test-token"
GUILD = "cli test server"


@dataclass
class Emu:
    url: str
    process: subprocess.Popen[str]

    @property
    def env(self) -> dict[str, str]:
        return {
            "DISCOBASE_TOKEN": TOKEN,
            "DISCOBASE_GUILD": GUILD,
            "DISCOBASE_API_URL": self.url,
        }

    def run(self, *args: str, input: str | None = None, **env: str) -> Result:
        """`discobase ARGS` through typer's runner, connected to this emulator."""
        return CliRunner(env={**self.env, **env}).invoke(app, list(args), input=input)

    def seed(self, action: Callable[[discobase.Database], Awaitable[Any]]) -> Any:
        """Run `action(db)` with a Database on this emulator (declare tables inside)."""

        async def main() -> Any:
            db = discobase.Database(GUILD, api_url=self.url, guild_ready_timeout=0.1)
            try:
                return await action(db)
            finally:
                await db.close()

        return asyncio.run(main())


def start_emulator(*args: str) -> tuple[str, subprocess.Popen[str]]:
    """`python -m discobase_emulator ARGS --port 0`; returns its URL once it listens."""
    process = subprocess.Popen(
        [sys.executable, "-m", "discobase_emulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "listening on" not in line:
        process.kill()
        raise RuntimeError(f"the emulator did not start: {line!r}")
    return line.split("listening on", 1)[1].strip(), process


def cli_env(emu: Emu) -> dict[str, str]:
    """The environment of a `discobase` subprocess connected to `emu`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISCOBASE_")}
    return {**env, **emu.env, "PYTHONWARNINGS": "ignore::DeprecationWarning"}


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "discobase_cli", *args]
