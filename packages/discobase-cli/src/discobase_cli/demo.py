"""`discobase demo`: the library end to end on an embedded emulator, with request counts.

Everything runs locally: an in-process emulator stands in for Discord (with Discord's rate
limits), a bot logs in, and a small table is written, queried, updated and reopened.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

from rich.console import Console
from rich.table import Table as RichTable

import discobase
from discobase_emulator import Emulator

TOKEN = "demo-bot-token"
GUILD = "discobase demo"


class Bookmark(discobase.Table):
    """A bot's bookmarks: the kind of data discobase is for."""

    user: str
    url: str
    title: str
    stars: int = 0


def _open(api_url: str) -> tuple[discobase.Database, type[Bookmark]]:
    db = discobase.Database(GUILD, api_url=api_url, guild_ready_timeout=0.1)

    @db.table
    class Bookmarks(Bookmark):
        pass

    return db, Bookmarks


async def run_demo(records: int, profile: str, console: Console) -> bool:
    """Run the demo; returns whether every check held."""
    steps = RichTable(title=f"discobase demo: {records} bookmarks, profile {profile!r}")
    for column in ("step", "result", "requests", "seconds"):
        steps.add_column(column, justify="right" if column in ("requests", "seconds") else "left")
    ok = True
    async with Emulator(tokens=[TOKEN], guilds=[GUILD], profile=profile) as emu:
        console.print(f"emulator listening on [bold]{emu.url}[/] (a local stand-in for Discord)")
        db, Bookmarks = _open(emu.url)

        async def step(name: str, action: Awaitable[str]) -> None:
            nonlocal ok
            mark = await emu.control.mark()
            started = time.perf_counter()
            try:
                result = await action
            except discobase.DiscobaseError as exc:
                ok = False
                result = f"[red]failed: {exc}[/]"
            seconds = time.perf_counter() - started
            metrics = await emu.control.metrics(since=mark)
            steps.add_row(name, result, str(metrics["requests"]), f"{seconds:.2f}")

        async def connect() -> str:
            db.login_task(TOKEN)
            await db.wait_ready()
            return f"bot logged in to server {GUILD!r}"

        async def save_all() -> str:
            users = ["ada", "grace", "linus", "guido"]
            saved = await asyncio.gather(
                *(
                    Bookmarks(
                        user=users[i % 4], url=f"https://example.com/{i}", title=f"page {i}"
                    ).save()
                    for i in range(records)
                )
            )
            return f"{len(saved)} bookmarks saved concurrently"

        async def query() -> str:
            mine = await Bookmarks.find(user="ada")
            one = await Bookmarks.find_unique(url="https://example.com/1")
            return f"ada has {len(mine)}; url 1 belongs to {one.user}" if one else "missing"

        async def update() -> str:
            mine = await Bookmarks.find(user="grace")
            for bookmark in mine:
                bookmark.stars += 1
            await asyncio.gather(*(b.update() for b in mine))
            return f"{len(await Bookmarks.find(user='grace', stars=1))} of grace's starred"

        async def reopen() -> str:
            nonlocal db, Bookmarks
            await db.close()
            db, Bookmarks = _open(emu.url)
            db.login_task(TOKEN)
            await db.wait_ready()
            return f"reopened: {await Bookmarks.count()} bookmarks"

        await step("connect", connect())
        await step("save", save_all())
        await step("find", query())
        await step("update", update())
        await step("close and reopen", reopen())
        await db.close()
        totals = await emu.control.metrics()
    console.print(steps)
    console.print(
        f"{totals['requests']} Discord API requests in all, "
        f"{totals['http_429']['total']} rate-limited (429) answers."
    )
    return ok
