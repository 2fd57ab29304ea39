"""`discobase demo`: the library end to end, with what each step cost in Discord requests.

With no token it runs on the embedded emulator (a local stand-in for Discord, with Discord's
rate limits) whose data lives in `.discobase/` (`--data`), so a second run finds the first
run's records; `--reset` starts over. With `--token` and `--guild` it runs on real Discord,
in a server the bot is in.

Each run saves a batch of bookmarks tagged with its run number, queries, updates and deletes
some of them, then closes the database and opens it again to show what is stored.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import discord
from rich.console import Console
from rich.table import Table as RichTable

import discobase
from discobase_cli.connect import LOCAL_GUILD, LOCAL_TOKEN, CliError
from discobase_emulator import Emulator

__all__ = ["run_demo"]

USERS = ("ada", "grace", "linus", "guido")


class Bookmark(discobase.Table):
    """A bot's bookmarks: the kind of data discobase is for."""

    user: str
    url: str
    title: str
    stars: int = 0
    run: int = 0


class DemoRun(discobase.Table):
    """One run of the demo: when, and how many bookmarks it saved."""

    number: int
    at: dt.datetime
    records: int


def _open(guild: str, api_url: str | None) -> tuple[discobase.Database, Any, Any]:
    options: dict[str, Any] = {"api_url": api_url, "guild_ready_timeout": 0.2}
    db = (
        discobase.Database(guild, guild_id=int(guild), **options)
        if guild.isdigit()
        else discobase.Database(guild, **options)
    )

    # A fresh class per Database: a class belongs to one database at a time.
    bookmarks = db.table(type("Bookmark", (Bookmark,), {"__module__": __name__}))
    runs = db.table(type("DemoRun", (DemoRun,), {"__module__": __name__}))
    return db, bookmarks, runs


@contextmanager
def _counting_requests() -> Iterator[list[int]]:
    """Count every request discord.py makes (REST calls and attachment downloads)."""
    http = discord.http.HTTPClient
    original_request, original_cdn = http.request, http.get_from_cdn
    counter = [0]

    async def request(self: Any, *args: Any, **kwargs: Any) -> Any:
        counter[0] += 1
        return await original_request(self, *args, **kwargs)

    async def get_from_cdn(self: Any, url: str) -> bytes:
        counter[0] += 1
        return await original_cdn(self, url)

    http.request = request  # type: ignore[method-assign]
    http.get_from_cdn = get_from_cdn  # type: ignore[method-assign]
    try:
        yield counter
    finally:
        http.request = original_request  # type: ignore[method-assign]
        http.get_from_cdn = original_cdn  # type: ignore[method-assign]


def _reset_local(data: Path) -> None:
    if not data.exists():
        return
    ours = {"discord.sqlite3", "discord.sqlite3-wal", "discord.sqlite3-shm"}
    strangers = [p.name for p in data.iterdir() if p.name not in ours]
    if strangers:
        raise CliError(
            f"{data} holds files the emulator did not write ({', '.join(strangers[:3])})",
            hint="remove them, or pick another --data folder",
        )
    shutil.rmtree(data)


async def run_demo(
    *,
    records: int,
    profile: str,
    data: Path,
    reset: bool,
    token: str | None,
    guild: str | None,
    console: Console | None = None,
) -> bool:
    """Run the demo; returns whether every step worked."""
    console = console or Console()
    emulator: Emulator | None = None
    if token is None:
        if reset:
            _reset_local(data)
        emulator = Emulator(
            data_dir=data, tokens=[LOCAL_TOKEN], guilds=[LOCAL_GUILD], profile=profile
        )
        await emulator.start()
        token, guild, api_url = LOCAL_TOKEN, LOCAL_GUILD, emulator.url
        console.print(
            f"Discord emulator on [bold]{emulator.url}[/] (nothing leaves this machine), "
            f"profile {profile!r}, data in [bold]{data}[/]"
        )
    else:
        assert guild is not None
        api_url = None
        console.print(f"running on Discord, in server {guild!r}")
    try:
        with _counting_requests() as counter:
            return await _steps(records, guild, api_url, token, counter, console, reset)
    finally:
        if emulator is not None:
            await emulator.stop()


async def _steps(
    records: int,
    guild: str,
    api_url: str | None,
    token: str,
    counter: list[int],
    console: Console,
    reset: bool,
) -> bool:
    steps = RichTable(title=f"discobase demo: {records} bookmarks")
    for column in ("step", "result", "requests", "seconds"):
        steps.add_column(column, justify="right" if column in ("requests", "seconds") else "left")
    ok = True
    db, Bookmarks, Runs = _open(guild, api_url)
    run = 0

    async def step(name: str, action: Callable[[], Awaitable[str]]) -> None:
        nonlocal ok
        before = counter[0]
        started = time.perf_counter()
        try:
            result = await action()
        except discobase.DiscobaseError as exc:
            ok = False
            result = f"[red]failed: {exc.message}[/]"
        seconds = time.perf_counter() - started
        steps.add_row(name, result, str(counter[0] - before), f"{seconds:.2f}")

    async def connect() -> str:
        nonlocal run
        db.login_task(token)
        await db.wait_ready()
        if reset and api_url is None:  # on Discord, --reset deletes the demo's records
            for table in (Bookmarks, Runs):
                await asyncio.gather(*(r.delete() for r in await table.find()))
        earlier = sorted(await Runs.find(), key=lambda r: r.number)
        run = (earlier[-1].number if earlier else 0) + 1
        kept = await Bookmarks.count()
        if not earlier:
            return f"logged in to {guild!r}; no earlier runs: this is run 1"
        last = earlier[-1]
        return (
            f"logged in to {guild!r}; found {len(earlier)} earlier run(s) and their {kept} "
            f"bookmarks (run {last.number} at {last.at:%Y-%m-%d %H:%M:%S} UTC)"
        )

    async def save_all() -> str:
        saved = await asyncio.gather(
            *(
                Bookmarks(
                    user=USERS[i % len(USERS)],
                    url=f"https://example.com/run{run}/{i}",
                    title=f"page {i} of run {run}",
                    run=run,
                ).save()
                for i in range(records)
            )
        )
        await Runs(number=run, at=dt.datetime.now(dt.UTC), records=len(saved)).save()
        return f"{len(saved)} bookmarks saved concurrently (run {run})"

    async def query() -> str:
        mine = await Bookmarks.find(user="ada", run=run)
        one = await Bookmarks.find_unique(url=f"https://example.com/run{run}/1", strict=False)
        owner = one.user if one is not None else "nobody"
        return f"ada has {len(mine)} in this run; url 1 belongs to {owner}"

    async def update() -> str:
        mine = await Bookmarks.find(user="grace", run=run)
        for bookmark in mine:
            bookmark.stars += 1
        await asyncio.gather(*(b.update() for b in mine))
        starred = await Bookmarks.count(user="grace", run=run, stars=1)
        return f"{starred} of grace's bookmarks starred"

    async def delete() -> str:
        gone = await Bookmarks.find(user="linus", run=run)
        await asyncio.gather(*(b.delete() for b in gone))
        return f"{len(gone)} of linus's bookmarks deleted"

    async def reopen() -> str:
        nonlocal db, Bookmarks, Runs
        await db.close()
        db, Bookmarks, Runs = _open(guild, api_url)
        db.login_task(token)
        await db.wait_ready()
        runs = await Runs.count()
        return f"reopened: {await Bookmarks.count()} bookmarks from {runs} runs"

    try:
        await step("connect", connect)
        if ok:
            await step("save", save_all)
            await step("find", query)
            await step("update", update)
            await step("delete", delete)
            await step("close and reopen", reopen)
    finally:
        await db.close()
    console.print(steps)
    console.print(f"{counter[0]} Discord API requests in all.")
    if api_url is not None:
        console.print(
            "The data stays in the emulator's folder: run `discobase demo` again to see it "
            "kept, `discobase demo --reset` to start over, and look at it with "
            "`discobase tables --local` or `discobase find Bookmark --local`."
        )
    return ok
