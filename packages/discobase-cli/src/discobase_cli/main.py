"""The `discobase` command."""

from __future__ import annotations

import asyncio
from importlib.metadata import version as dist_version

import typer
from rich.console import Console

app = typer.Typer(help="discobase: use a Discord server as a database.", no_args_is_help=True)


@app.callback()
def main() -> None:
    """discobase: use a Discord server as a database."""


@app.command()
def version() -> None:
    """Print the installed discobase versions."""
    for dist in ("discobase-core", "discobase-discord", "discobase-emulator", "discobase-cli"):
        typer.echo(f"{dist} {dist_version(dist)}")


@app.command()
def demo(
    records: int = typer.Option(200, min=1, help="How many records to write."),
    profile: str = typer.Option("discord", help="Emulator rate limits: discord, fast, unlimited."),
) -> None:
    """Run discobase end to end on an embedded Discord emulator (nothing leaves this machine)."""
    from discobase_cli.demo import run_demo

    if not asyncio.run(run_demo(records, profile, Console())):
        raise typer.Exit(1)
