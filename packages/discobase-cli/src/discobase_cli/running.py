"""Running a command's async body: user errors become one line on standard error and a
non-zero exit; `--debug` shows the traceback instead."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import typer

import discobase
from discobase_cli.connect import CliError, Connection, open_database
from discobase_cli.output import fail

__all__ = ["exit_code", "guarded", "is_debug", "set_debug", "with_database"]

T = TypeVar("T")

_debug = False


def set_debug(value: bool) -> None:
    global _debug
    _debug = value
    if value:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def is_debug() -> bool:
    return _debug


def guarded(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro`; turn what the user can fix into `error: ...` and exit 1 (130 on Ctrl-C)."""
    try:
        return asyncio.run(coro)
    except (CliError, discobase.DiscobaseError) as exc:
        if _debug:
            raise
        raise fail(exc.message, exc.hint) from None
    except KeyboardInterrupt:
        if _debug:
            raise
        raise fail("interrupted", code=130) from None


def with_database(
    conn: Connection,
    action: Callable[[discobase.Database], Awaitable[T]],
    *,
    read_only: bool = False,
) -> T:
    """Connect as `conn` says, run `action(db)`, close (finishing writes), return its result."""

    async def main() -> T:
        async with open_database(conn, read_only=read_only) as db:
            return await action(db)

    return guarded(main())


def exit_code(ok: bool) -> None:
    if not ok:
        raise typer.Exit(1)
