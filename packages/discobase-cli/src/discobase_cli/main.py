"""The `discobase` command."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

import discobase
from discobase_cli import commands, transfer
from discobase_cli.connect import LOCAL_DATA, LOCAL_GUILD, LOCAL_TOKEN, CliError
from discobase_cli.output import fail
from discobase_cli.running import guarded, is_debug, set_debug

app = typer.Typer(
    help="discobase: use a Discord server as a database.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])


def _guard(command: F) -> F:
    """User errors raised outside the async body: one line, exit 1 (--debug: traceback)."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (CliError, discobase.DiscobaseError) as exc:
            if is_debug():
                raise
            raise fail(exc.message, exc.hint) from None

    return run  # type: ignore[return-value]


@app.callback()
def main(
    debug: Annotated[
        bool,
        typer.Option("--debug", envvar="DISCOBASE_DEBUG", help="Show tracebacks and logs."),
    ] = False,
) -> None:
    """discobase: use a Discord server as a database.

    Data commands reach a database on Discord (--token, --guild), on a running emulator
    (--api-url), or on the embedded emulator (--local, data in .discobase/).
    """
    set_debug(debug)


@app.command()
def version() -> None:
    """Print the installed discobase versions."""
    for dist in ("discobase-core", "discobase-discord", "discobase-emulator", "discobase-cli"):
        typer.echo(f"{dist} {dist_version(dist)}")


@app.command()
@_guard
def demo(
    records: Annotated[int, typer.Option(min=1, help="How many records to write.")] = 200,
    profile: Annotated[
        str, typer.Option(help="Emulator rate limits: discord, fast, unlimited.")
    ] = "discord",
    data: Annotated[
        Path, typer.Option("--data", help="The embedded emulator's data folder.")
    ] = LOCAL_DATA,
    reset: Annotated[
        bool, typer.Option("--reset", help="Start over: forget earlier runs.")
    ] = False,
    token: Annotated[
        str | None,
        typer.Option(envvar="DISCOBASE_TOKEN", show_default=False, help="Run on real Discord."),
    ] = None,
    guild: Annotated[
        str | None,
        typer.Option(envvar="DISCOBASE_GUILD", show_default=False, help="The server to use."),
    ] = None,
) -> None:
    """Run discobase end to end and show what each step cost in Discord requests.

    With no token it runs on the embedded emulator (nothing leaves this machine), keeping its
    data in .discobase/: run it again and the first run's bookmarks are still there.
    """
    from discobase_cli.demo import run_demo

    if token and not guild:
        raise CliError("--token needs --guild", hint="name the server the bot is in")
    ok = guarded(
        run_demo(records=records, profile=profile, data=data, reset=reset, token=token, guild=guild)
    )
    if not ok:
        raise typer.Exit(1)


@app.command()
def emulator(
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8787,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    data: Annotated[
        Path | None,
        typer.Option(help="Keep the state in this folder (default: memory only)."),
    ] = None,
    token: Annotated[
        list[str] | None, typer.Option(help="A bot token to accept (repeatable).")
    ] = None,
    guild: Annotated[
        list[str] | None, typer.Option(help="A server to create, the bots in it (repeatable).")
    ] = None,
    profile: Annotated[
        str, typer.Option(help="Rate limits: discord (Discord's own), fast, unlimited.")
    ] = "discord",
) -> None:
    """Run the Discord emulator in the foreground until Ctrl-C."""
    from discobase_emulator.cli import build_parser, serve
    from discobase_emulator.ratelimit import PROFILES

    if profile not in PROFILES:
        raise fail(f"unknown profile {profile!r}", f"use one of {', '.join(PROFILES)}")
    tokens = token or [LOCAL_TOKEN]
    guilds = guild or [LOCAL_GUILD]
    argv = ["--host", host, "--port", str(port), "--profile", profile]
    argv += [arg for t in tokens for arg in ("--token", t)]
    argv += [arg for g in guilds for arg in ("--guild", g)]
    if data is not None:
        argv += ["--data", str(data)]
    url = f"http://{host}:{port}" if port else "the URL printed below"
    typer.echo(
        f"Discord emulator, profile {profile!r}, "
        + (f"data in {data}" if data is not None else "in memory (--data DIR keeps it)")
        + f"\nserver(s): {', '.join(guilds)}; bot token(s) accepted: {len(tokens)}"
        + f"\nPoint a bot at it: discobase.Database(..., api_url={url!r}), or set "
        f"DISCOBASE_API_URL={url}"
        + f"\nFrom the command line: discobase tables --api-url {url} --token TOKEN "
        f"--guild {guilds[0]!r}" + "\nStop it with Ctrl-C.",
    )
    try:
        asyncio.run(serve(build_parser().parse_args(argv)))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise fail(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            "is another emulator running? pick another --port",
        ) from None


for _command in (
    commands.tables,
    commands.schema,
    commands.find,
    commands.count,
    commands.insert,
    commands.update,
    commands.delete,
    transfer.export,
    commands.stats,
    commands.check,
    commands.compact,
):
    app.command()(_guard(_command))
app.command("import")(_guard(transfer.import_))
