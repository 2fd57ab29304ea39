"""Helpers shared by the discobase-discord tests (imported by conftest.py and the tests)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import discord

import discobase
from discobase_emulator import Emulator

TOKEN = "tok"
GUILD = "My discord database"
SCRIPT_TIMEOUT = 60.0

# make_db(name=GUILD, **kwargs) -> Database (the conftest fixture)
MakeDb = Callable[..., discobase.Database]


def channel_named(emu: Emulator, name: str) -> Any | None:
    """The emulator's channel record called `name` (None if there is none)."""
    for channel in emu.core.state.store.channels.values():
        if channel.data.get("name") == name:
            return channel
    return None


@contextlib.asynccontextmanager
async def running_bot(bot: discord.Client) -> AsyncIterator[None]:
    """An application's bot running (bot.start) for the body, closed after it."""
    task = asyncio.create_task(bot.start(TOKEN))
    try:
        yield
    finally:
        await bot.close()
        with contextlib.suppress(Exception):
            await task


async def crash(db: discobase.Database) -> None:
    """Stop as a killed process would: no close(), no final checkpoint, the writers' queues
    dropped. The lease is released (with each table's last acknowledged commit), as if the
    next writer came after it ran out; test_lease.py kills real processes for that part."""
    for store in db._stores.values():
        assert store.engine is None or not store.engine.writing  # all awaited: durable
        if store._writer is not None:
            store._writer.cancel()
            await asyncio.gather(store._writer, return_exceptions=True)
    await db._release()
    db._stores.clear()
    assert db.bot is not None
    await db.bot.close()


async def wait_until(predicate: Callable[[], bool], limit_s: float = 30.0) -> None:
    """Poll `predicate` (cheap, in-process) until it holds; fail after `limit_s` seconds."""
    async with asyncio.timeout(limit_s):
        while not predicate():  # noqa: ASYNC110 (the emulator state has no events)
            await asyncio.sleep(0.02)


@dataclass
class ScriptResult:
    returncode: int | None
    stdout: str
    stderr: str


async def run_script(
    code: str,
    *,
    url: str,
    tmp_path: Path,
    name: str = "script.py",
    until: Callable[[], bool] | None = None,
    limit_s: float = SCRIPT_TIMEOUT,
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
) -> ScriptResult:
    """Run `code` as a script in a new Python process against the emulator at `url`.

    Without `until`, waits for the script to exit. With `until`, the script is expected to
    run forever (a blocking `login()`): once `until()` holds the process is terminated and
    its return code is None.
    """
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    full_env = {**os.environ, "DISCOBASE_API_URL": url, "PYTHONWARNINGS": "ignore"}
    full_env.update(env or {})
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(path),
        *(args or []),
        cwd=str(tmp_path),
        env=full_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    communicate = asyncio.ensure_future(proc.communicate())
    try:
        if until is None:
            out, err = await asyncio.wait_for(communicate, limit_s)
            return ScriptResult(proc.returncode, out.decode(), err.decode())
        async with asyncio.timeout(limit_s):
            while not until():
                if communicate.done():
                    out, err = communicate.result()
                    raise AssertionError(
                        f"{name} exited early ({proc.returncode}):\n{out.decode()}\n{err.decode()}"
                    )
                await asyncio.sleep(0.02)
        proc.terminate()
        out, err = await asyncio.wait_for(communicate, limit_s)
        return ScriptResult(None, out.decode(), err.decode())
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(communicate, 10)


def check_ok(result: ScriptResult) -> str:
    """Assert the script exited 0 without a traceback; returns its stdout."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout
