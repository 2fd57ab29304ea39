"""The command, SQLite persistence, clean restart, and kill -9 mid-load."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from discobase_emulator.__main__ import build_parser

TOKEN = "persist-token"
HEADERS = {"Authorization": f"Bot {TOKEN}"}


@contextlib.asynccontextmanager
async def command(data: Path) -> AsyncIterator[tuple[subprocess.Popen[str], str]]:
    argv = [sys.executable, "-m", "discobase_emulator", "--port", "0", "--data", str(data)]
    argv += ["--token", TOKEN, "--guild", "persisted", "--profile", "unlimited"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)  # noqa: ASYNC220
    try:
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        assert line.startswith("discobase-emulator listening on http://127.0.0.1:"), line
        yield proc, line.split()[-1]
    finally:
        if proc.poll() is None:
            proc.kill()
        await asyncio.to_thread(proc.wait)
        if proc.stdout is not None:
            proc.stdout.close()


async def general(session: aiohttp.ClientSession, api: str) -> tuple[str, str]:
    async with session.get(api + "/users/@me/guilds", headers=HEADERS) as resp:
        guild_id = str((await resp.json())[0]["id"])
    async with session.get(f"{api}/guilds/{guild_id}/channels", headers=HEADERS) as resp:
        return guild_id, str((await resp.json())[0]["id"])


async def all_ids(session: aiohttp.ClientSession, api: str, channel: str) -> set[str]:
    ids: set[str] = set()
    before = ""
    while True:
        q = f"?limit=100&before={before}" if before else "?limit=100"
        async with session.get(f"{api}/channels/{channel}/messages{q}", headers=HEADERS) as resp:
            page: list[dict[str, Any]] = await resp.json()
        ids.update(m["id"] for m in page)
        if len(page) < 100:
            return ids
        before = page[-1]["id"]


def test_parser_defaults() -> None:
    args = build_parser().parse_args(["--token", "a", "--token", "b", "--guild", "g"])
    assert args.token == ["a", "b"]
    assert args.profile == "discord"
    assert args.data is None


async def test_clean_restart_keeps_everything(tmp_path: Path) -> None:
    async with command(tmp_path) as (proc, first_url), aiohttp.ClientSession() as session:
        api = first_url + "/api/v10"
        guild_id, channel = await general(session, api)
        form = aiohttp.FormData()
        form.add_field("payload_json", '{"content": "kept"}', content_type="application/json")
        form.add_field("files[0]", b"\x00blob\xff" * 1000, filename="blob.bin")
        async with session.post(
            f"{api}/channels/{channel}/messages", data=form, headers=HEADERS
        ) as resp:
            assert resp.status == 200
            sent = await resp.json()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 10) == 0
    async with command(tmp_path) as (_, url), aiohttp.ClientSession() as session:
        api = url + "/api/v10"
        assert await general(session, api) == (guild_id, channel)
        async with session.get(
            f"{api}/channels/{channel}/messages/{sent['id']}", headers=HEADERS
        ) as resp:
            msg = await resp.json()
        assert msg["content"] == "kept"
        async with session.get(msg["attachments"][0]["url"]) as resp:
            assert resp.status == 200
            assert await resp.read() == b"\x00blob\xff" * 1000
        # URLs signed before the restart stay valid (the key is persisted)
        old_url = sent["attachments"][0]["url"]
        path = old_url[old_url.index("/attachments/") :]
        async with session.get(url + path) as resp:
            assert resp.status == 200


async def test_kill_9_loses_no_acknowledged_write(tmp_path: Path) -> None:
    acked: list[str] = []
    async with command(tmp_path) as (proc, url), aiohttp.ClientSession() as session:
        api = url + "/api/v10"
        _, channel = await general(session, api)
        enough = asyncio.Event()

        async def writer(n: int) -> None:
            for i in range(10_000):
                try:
                    async with session.post(
                        f"{api}/channels/{channel}/messages",
                        json={"content": f"w{n}-{i}"},
                        headers=HEADERS,
                    ) as resp:
                        if resp.status == 200:
                            acked.append((await resp.json())["id"])
                            if len(acked) >= 300:
                                enough.set()
                except aiohttp.ClientError:
                    return

        writers = [asyncio.create_task(writer(n)) for n in range(8)]
        await enough.wait()
        os.kill(proc.pid, signal.SIGKILL)
        await asyncio.gather(*writers)
    async with command(tmp_path) as (_, url), aiohttp.ClientSession() as session:
        api = url + "/api/v10"
        _, channel2 = await general(session, api)
        assert channel2 == channel
        stored = await all_ids(session, api, channel)
    assert len(acked) >= 300
    assert set(acked) <= stored
