"""The `discobase` command."""

import typer

app = typer.Typer(help="discobase: use a Discord server as a database.", no_args_is_help=True)


@app.callback()
def main() -> None:
    """discobase: use a Discord server as a database."""


@app.command()
def version() -> None:
    """Print the installed discobase versions."""
    from importlib.metadata import version as dist_version

    for dist in ("discobase-core", "discobase-discord", "discobase-emulator", "discobase-cli"):
        typer.echo(f"{dist} {dist_version(dist)}")
