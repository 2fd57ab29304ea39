"""How commands print: rich tables on a terminal, plain tab-separated text when piped, JSON
on request; errors as one line on standard error."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import typer
from rich.console import Console
from rich.table import Table as RichTable

__all__ = ["err_console", "fail", "out_console", "print_json", "print_rows", "stdout_is_terminal"]


def out_console() -> Console:
    return Console()


def err_console() -> Console:
    return Console(stderr=True)


def stdout_is_terminal() -> bool:
    return out_console().is_terminal


def print_json(data: Any) -> None:
    """`data` as indented JSON on standard output."""
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _cell(value: object) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, default=str)


def print_rows(
    columns: Sequence[str], rows: Sequence[Sequence[object]], *, title: str | None = None
) -> None:
    """A table: rich on a terminal; else a header line and one line per row, tab-separated
    (tabs and newlines inside values escaped), for `cut`, `sort` and friends."""
    console = out_console()
    if console.is_terminal:
        table = RichTable(title=title)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*(_cell(v) for v in row))
        console.print(table)
        return
    out = sys.stdout
    for row in [list(columns), *rows]:
        cells = [
            _cell(v).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n") for v in row
        ]
        out.write("\t".join(cells) + "\n")
    out.flush()


def fail(message: str, hint: str | None = None, *, code: int = 1) -> typer.Exit:
    """Print `error: message (hint)` on one line of standard error; the Exit to raise."""
    line = " ".join(message.split("\n")[0].split())
    if hint:
        line += f" ({' '.join(hint.split())})"
    typer.echo(f"error: {line}", err=True)
    return typer.Exit(code)
