"""Restart: records written, updated and deleted by one process are all there, exactly, when a
new Database in a new process opens the same server; also across an emulator restart on its
--data folder."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from discobase_test_support import GUILD, TOKEN, check_ok, run_script

from discobase_emulator import Emulator

SCHEMA = f"""
import asyncio, datetime, json, sys
import discobase

db = discobase.Database({GUILD!r}, guild_ready_timeout=0.1)

@db.table
class Item(discobase.Table):
    name: str
    group: int
    price: float
    tags: list[str]
    seen: datetime.datetime | None = None

@db.table
class Note(discobase.Table):
    text: str
"""

WRITER = (
    SCHEMA
    + """
async def main():
    async with db.conn(sys.argv[1]):
        when = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
        items = [
            Item(name=f"item{i}", group=i % 4, price=i / 4, tags=[f"t{i % 3}"], seen=when)
            for i in range(120)
        ]
        await asyncio.gather(*(item.save() for item in items[:60]))
        for item in items[60:90]:  # one commit each
            await item.save()
        for item in items[90:]:  # in the background: close() must drain them
            item.save()
        for item in items[:20]:
            item.price = -1.0
            item.tags = item.tags + ["updated"]
        await asyncio.gather(*(item.update() for item in items[:20]))
        await asyncio.gather(*(item.delete() for item in items[20:30]))
        renamed = items[30]
        renamed.name = "renamed"
        renamed.update()  # background
        await Note(text="hello").save()
        items[31].delete()  # background
        print("written")

asyncio.run(main())
"""
)

READER = (
    SCHEMA
    + """
async def main():
    async with db.conn(sys.argv[1]):
        out = {
            "items": [item.model_dump(mode="json") for item in await Item.find()],
            "by_name": {
                name: [i.group for i in await Item.find(name=name)]
                for name in ["item0", "item25", "item30", "renamed", "item31", "item119"]
            },
            "by_group": {g: await Item.count(group=g) for g in range(4)},
            "updated": await Item.count(tags=["t0", "updated"]),
            "notes": [n.text for n in await Note.find()],
        }
        print(json.dumps(out))

asyncio.run(main())
"""
)


def expected() -> dict[str, Any]:
    items = []
    for i in range(120):
        if 20 <= i < 30 or i == 31:
            continue
        tags = [f"t{i % 3}"] + (["updated"] if i < 20 else [])
        items.append(
            {
                "name": "renamed" if i == 30 else f"item{i}",
                "group": i % 4,
                "price": -1.0 if i < 20 else i / 4,
                "tags": tags,
                "seen": "2024-01-01T00:00:00Z",
            }
        )
    by_group = {str(g): sum(1 for item in items if item["group"] == g) for g in range(4)}
    return {
        "items": items,
        "by_name": {
            "item0": [0],
            "item25": [],
            "item30": [],
            "renamed": [2],
            "item31": [],
            "item119": [3],
        },
        "by_group": by_group,
        "updated": len([i for i in range(20) if i % 3 == 0]),
        "notes": ["hello"],
    }


def check_reader(stdout: str) -> None:
    got = json.loads(stdout.strip().splitlines()[-1])
    want = expected()
    assert got["by_name"] == want["by_name"]
    assert got["by_group"] == want["by_group"]
    assert got["updated"] == want["updated"]
    assert got["notes"] == want["notes"]
    # Oldest first: order of first save (the background saves went last).
    assert got["items"] == want["items"]


async def test_restart_new_process(emu: Emulator, tmp_path: Path) -> None:
    out = check_ok(
        await run_script(WRITER, url=emu.url, tmp_path=tmp_path, name="writer.py", args=[TOKEN])
    )
    assert out.strip() == "written"
    for attempt in range(2):  # the second reader opens what the first one left
        result = await run_script(
            READER, url=emu.url, tmp_path=tmp_path, name=f"reader{attempt}.py", args=[TOKEN]
        )
        check_reader(check_ok(result))


@contextlib.asynccontextmanager
async def emulator_process(data: Path) -> AsyncIterator[str]:
    """`python -m discobase_emulator` on `data`; yields its URL, stops it with SIGTERM."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "discobase_emulator",
        "--port",
        "0",
        "--token",
        TOKEN,
        "--guild",
        GUILD,
        "--profile",
        "unlimited",
        "--data",
        str(data),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            line = (await proc.stdout.readline()).decode()
        match = re.search(r"listening on (http://\S+)", line)
        assert match, line
        yield match.group(1)
    finally:
        if proc.returncode is None:
            proc.terminate()
        async with asyncio.timeout(30):
            await proc.wait()


async def test_restart_emulator_with_data(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    async with emulator_process(data) as url:
        out = check_ok(
            await run_script(WRITER, url=url, tmp_path=tmp_path, name="writer.py", args=[TOKEN])
        )
        assert out.strip() == "written"
    async with emulator_process(data) as url:
        result = await run_script(
            READER, url=url, tmp_path=tmp_path, name="reader.py", args=[TOKEN]
        )
        check_reader(check_ok(result))
