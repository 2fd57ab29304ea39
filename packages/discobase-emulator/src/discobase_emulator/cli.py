"""The command: `python -m discobase_emulator --port P --data DIR --token T --guild NAME ...`.

Prints one line with the URL (flushed, so a parent process can read it), then serves until
SIGINT or SIGTERM and stops cleanly. `serve(args)` is what other CLIs wrap.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from .cdn import DEFAULT_TTL
from .emulator import Emulator
from .ratelimit import PROFILES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="discobase-emulator",
        description="A local Discord API server (REST, gateway, CDN) with Discord's limits.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8787, help="0 picks any free port")
    p.add_argument("--data", default=None, help="folder for the SQLite state (default: memory)")
    p.add_argument("--token", action="append", default=[], help="a bot token (repeatable)")
    p.add_argument("--guild", action="append", default=[], help="a guild name (repeatable)")
    p.add_argument("--profile", choices=PROFILES, default="discord")
    p.add_argument("--allow-guild-create", action="store_true", help="let bots POST /guilds")
    p.add_argument(
        "--attachment-ttl", type=float, default=DEFAULT_TTL, help="signed URL lifetime (s)"
    )
    return p


async def serve(args: argparse.Namespace) -> None:
    """Run until SIGINT/SIGTERM (or cancellation)."""
    emu = Emulator(
        host=args.host,
        port=args.port,
        data_dir=args.data,
        tokens=args.token,
        guilds=args.guild,
        profile=args.profile,
        allow_guild_create=args.allow_guild_create,
        attachment_ttl=args.attachment_ttl,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows, or a thread
            loop.add_signal_handler(sig, stop.set)
    await emu.start()
    try:
        print(f"discobase-emulator listening on {emu.url}", flush=True)
        await stop.wait()
    finally:
        await emu.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass
    except OSError as err:
        print(f"discobase-emulator: {err}", file=sys.stderr)
        return 1
    return 0
