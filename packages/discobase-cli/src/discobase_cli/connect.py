"""Where a command's data lives: real Discord, an emulator at a URL, or the embedded emulator.

Every data command takes the same options: `--token` (DISCOBASE_TOKEN), `--guild NAME|ID`
(DISCOBASE_GUILD), `--api-url` (DISCOBASE_API_URL), or `--local [--data DIR]`, which starts
the embedded emulator in this process on a data folder (default `.discobase/`), with the
local token and server that `discobase demo` and `discobase emulator` use too.
The token is never printed or logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

import discobase
from discobase_emulator import Emulator

__all__ = [
    "LOCAL_DATA",
    "LOCAL_GUILD",
    "LOCAL_TOKEN",
    "ApiUrlOption",
    "CliError",
    "Connection",
    "DataOption",
    "GuildOption",
    "LocalOption",
    "TokenOption",
    "open_database",
]

LOCAL_TOKEN = "discobase-local-token"
LOCAL_GUILD = "discobase"
LOCAL_DATA = Path(".discobase")
READY_TIMEOUT = 120.0


class CliError(Exception):
    """A user error: one line of what is wrong, and what to do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="DISCOBASE_TOKEN",
        show_default=False,
        help="The bot's token (never printed).",
        rich_help_panel="Connection",
    ),
]
GuildOption = Annotated[
    str | None,
    typer.Option(
        "--guild",
        envvar="DISCOBASE_GUILD",
        show_default=False,
        help="The server (guild) holding the database: its name or id.",
        rich_help_panel="Connection",
    ),
]
ApiUrlOption = Annotated[
    str | None,
    typer.Option(
        "--api-url",
        envvar="DISCOBASE_API_URL",
        show_default=False,
        help="Another Discord API, such as a running `discobase emulator`.",
        rich_help_panel="Connection",
    ),
]
LocalOption = Annotated[
    bool,
    typer.Option(
        "--local",
        help="Use the embedded emulator on --data (no token needed).",
        rich_help_panel="Connection",
    ),
]
DataOption = Annotated[
    Path,
    typer.Option(
        "--data",
        help="The embedded emulator's data folder (with --local).",
        rich_help_panel="Connection",
    ),
]


@dataclass(frozen=True)
class Connection:
    token: str | None = None
    guild: str | None = None
    api_url: str | None = None
    local: bool = False
    data: Path = LOCAL_DATA
    profile: str = "discord"

    def __repr__(self) -> str:  # never show the token
        return f"Connection(guild={self.guild!r}, api_url={self.api_url!r}, local={self.local})"


def _database(guild: str, api_url: str | None, read_only: bool) -> discobase.Database:
    options: dict[str, Any] = {
        "api_url": api_url,
        "guild_ready_timeout": 0.2,
        "read_only": read_only,  # reads work beside a running bot (no lease needed)
    }
    if guild.isdigit():
        return discobase.Database(guild, guild_id=int(guild), **options)
    return discobase.Database(guild, **options)


@asynccontextmanager
async def open_database(
    conn: Connection, *, read_only: bool = False
) -> AsyncIterator[discobase.Database]:
    """A connected Database for `conn`, closed (pending writes finished) on exit. Read-only
    commands open it read-only when this discobase can."""
    emulator: Emulator | None = None
    token, guild, api_url = conn.token, conn.guild, conn.api_url
    if conn.local:
        guild = guild or LOCAL_GUILD
        emulator = Emulator(
            data_dir=conn.data, tokens=[LOCAL_TOKEN], guilds=[guild], profile=conn.profile
        )
        try:
            await emulator.start()
        except OSError as exc:
            raise CliError(
                f"cannot start the embedded emulator on {conn.data}: {exc}",
                hint="check that the folder is writable",
            ) from exc
        token, api_url = LOCAL_TOKEN, emulator.url
    try:
        if not token:
            raise CliError(
                "no bot token given",
                hint="pass --token or set DISCOBASE_TOKEN, or use --local for the embedded "
                "emulator",
            )
        if not guild:
            raise CliError(
                "no server given",
                hint="pass --guild NAME|ID or set DISCOBASE_GUILD",
            )
        db = _database(guild, api_url, read_only)
        try:
            db.login_task(token)
            try:
                async with asyncio.timeout(READY_TIMEOUT):
                    await db.wait_ready()
            except TimeoutError:
                raise CliError(
                    f"Discord did not answer within {READY_TIMEOUT:.0f} s",
                    hint="check your network (or --api-url) and try again",
                ) from None
            except discobase.ConnectionFailedError as exc:
                if api_url and "cannot reach" in exc.message and not conn.local:
                    raise CliError(
                        f"nothing answers at {api_url}",
                        hint="start the emulator with `discobase emulator`, or fix --api-url",
                    ) from exc
                raise
            yield db
        finally:
            await db.close()
    finally:
        if emulator is not None:
            await emulator.stop()
