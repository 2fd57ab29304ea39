"""`discobase export` and `discobase import`: streaming, and imports that resume.

Both stream: an export reads the table a chunk of records at a time, an import reads its file
a batch of rows at a time, so memory holds a batch, not the table.

An import interrupted at any moment (Ctrl-C, SIGKILL, a lost connection) and run again
inserts no row twice, through a resume marker beside the input file
(`FILE.TABLE.discobase-import`, JSON, written atomically: temporary file, fsync, rename):

1. Before a batch, the import calls `save()` on each of its records, which hands every
   record its id at once without sending anything, and writes the marker: the rows settled
   so far, and the batch in flight as (row, id) pairs. Nothing reaches Discord before the
   marker is durable: the writes go out only when the import next awaits.
2. Once the batch is durable on Discord, the marker moves past it.
3. A re-run with a marker first settles the batch in flight: a row whose id holds a record
   equal to that row is stored; the other rows of the batch are written again (as a batch in
   flight of their own, so a second interruption is settled the same way). Then it goes on
   after the batch. When the import finishes, the marker is removed.

A marker for a file that changed since (size or modification time) is refused: `--restart`
starts over. Standard input (`-`) is spooled to a temporary file and cannot resume.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

import discobase
from discobase import _catalog as catalog
from discobase_cli.commands import JsonOption, TableArg, conn_of
from discobase_cli.connect import (
    LOCAL_DATA,
    ApiUrlOption,
    CliError,
    DataOption,
    GuildOption,
    LocalOption,
    TokenOption,
)
from discobase_cli.running import with_database

__all__ = ["export", "import_", "marker_path"]


class Format(StrEnum):
    jsonl = "jsonl"
    csv = "csv"


FormatOption = Annotated[
    Format | None,
    typer.Option("--format", help="jsonl or csv (default: from the file name, else jsonl)."),
]


def _format(fmt: Format | None, path: Path | None) -> Format:
    if fmt is not None:
        return fmt
    return Format.csv if path is not None and path.suffix.lower() == ".csv" else Format.jsonl


def _progress(total: int | None, what: str) -> Progress | None:
    """A progress bar with an ETA on a terminal (standard error); None when piped. The ETA
    comes from the measured pace, so it includes Discord's rate limits as they happen."""
    console = Console(stderr=True)
    if not console.is_terminal:
        return None
    progress = Progress(
        TextColumn(what),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )
    progress.add_task(what, total=total)
    return progress


# -- export -----------------------------------------------------------------------------------


def export(
    table: TableArg,
    fmt: FormatOption = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (default: standard output).")
    ] = None,
    token: TokenOption = None,
    guild: GuildOption = None,
    api_url: ApiUrlOption = None,
    local: LocalOption = False,
    data: DataOption = LOCAL_DATA,
) -> None:
    """Write every record of a table as JSON lines or CSV (with `_id`), oldest first."""
    chosen = _format(fmt, output)

    async def action(db: discobase.Database) -> int:
        cls = await discobase.open_table(db, table)
        fields = list(cls.model_fields)
        total = await cls.count()
        out: IO[str] = (
            output.open("w", encoding="utf-8", newline="") if output is not None else sys.stdout
        )
        progress = _progress(total, f"exporting {table}")
        written = 0
        try:
            if progress is not None:
                progress.start()
            writer = csv.writer(out, lineterminator="\n") if chosen is Format.csv else None
            if writer is not None:
                writer.writerow(["_id", *fields])
            async for record in catalog.iter_records(cls):
                row = catalog.record_to_json(record)
                if writer is not None:
                    writer.writerow(
                        [row["_id"], *(catalog.text_of(getattr(record, f)) for f in fields)]
                    )
                else:
                    out.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
                written += 1
                if progress is not None:
                    progress.advance(progress.task_ids[0])
            out.flush()
        finally:
            if progress is not None:
                progress.stop()
            if output is not None:
                out.close()
        return written

    written = with_database(conn_of(token, guild, api_url, local, data), action, read_only=True)
    if output is not None or Console(stderr=True).is_terminal:
        typer.echo(f"exported {written} records of {table}", err=True)


# -- import -----------------------------------------------------------------------------------


@dataclass
class Marker:
    """What an interrupted import leaves behind (see the module docstring)."""

    file: str
    size: int
    mtime_ns: int
    table: str
    format: str
    done: int = 0  # every row before this one is stored, but those of the batch in flight
    inflight: list[tuple[int, int]] | None = None  # (row, id) of each record in flight
    inflight_end: int | None = None  # the row after the batch in flight


def marker_path(file: Path, table: str) -> Path:
    return file.with_name(f"{file.name}.{table}.discobase-import")


def _write_marker(path: Path, marker: Marker) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(asdict(marker), f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_marker(path: Path) -> Marker | None:
    if not path.exists():
        return None
    try:
        return Marker(**json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as exc:
        raise CliError(
            f"the resume marker {path} is unreadable: {exc}",
            hint="pass --restart to import the whole file again",
        ) from None


def _rows(path: Path, fmt: Format) -> Iterator[tuple[int, Any]]:
    """(line number, row) for each row: a JSON value per non-blank line, or a CSV row as a
    {column: text} dict."""
    with path.open(encoding="utf-8", newline="") as f:
        if fmt is Format.csv:
            reader = csv.DictReader(f)
            for row in reader:
                yield reader.line_num, row
            return
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except ValueError as exc:
                raise CliError(
                    f"{path}, line {number}: not valid JSON: {exc}",
                    hint="fix the line and run the import again",
                ) from None


def _record(cls: type[discobase.Table], fmt: Format, row: Any) -> discobase.Table:
    if fmt is Format.jsonl:
        return catalog.parse_record(cls, row)
    if None in row or any(text is None for text in row.values()):
        raise discobase.QueryError("the row does not have as many cells as the header")
    return catalog.record_from_text(cls, row)


def _where(path: Path, fmt: Format, number: int) -> str:
    return f"{path}, {'row ending on line' if fmt is Format.csv else 'line'} {number}"


def _validate_all(cls: type[discobase.Table], path: Path, fmt: Format) -> int:
    """Parse every row before writing any (a bad row stops the import before it starts);
    returns how many rows there are."""
    rows = 0
    for number, row in _rows(path, fmt):
        try:
            _record(cls, fmt, row)
        except discobase.QueryError as exc:
            raise CliError(
                f"{_where(path, fmt, number)}: {exc.message}", hint="fix it and import again"
            ) from None
        rows += 1
    return rows


async def _import(
    db: discobase.Database,
    table: str,
    path: Path,
    fmt: Format,
    batch: int,
    marker_file: Path | None,
    marker: Marker,
) -> tuple[int, int]:
    """Import `path` from where `marker` says; returns (rows inserted now, rows of an
    interrupted batch found already stored)."""
    cls = await discobase.open_table(db, table)
    total = _validate_all(cls, path, fmt)
    progress = _progress(total, f"importing into {table}")
    inserted = skipped = 0

    async def send(batch_rows: list[tuple[int, discobase.Table]], end: int) -> None:
        """Write these (row, record) pairs, the batch that ends before row `end`."""
        nonlocal inserted
        tasks = [r.save() for _, r in batch_rows]  # ids are handed out now; nothing is sent
        if marker_file is not None:
            marker.inflight = [(row, r.disco_id) for row, r in batch_rows if r.disco_id]
            marker.inflight_end = end
            _write_marker(marker_file, marker)  # durable before anything reaches Discord
        await asyncio.gather(*tasks)
        inserted += len(batch_rows)
        marker.done = end
        marker.inflight = marker.inflight_end = None
        if marker_file is not None:
            _write_marker(marker_file, marker)
        if progress is not None:
            progress.advance(progress.task_ids[0], len(batch_rows))

    if progress is not None:
        progress.start()
        progress.advance(progress.task_ids[0], marker.done)
    try:
        rows = enumerate(_rows(path, fmt))
        if marker.inflight is not None and marker.inflight_end is not None:
            # Settle the batch an interruption left in flight: each of its rows is stored
            # if its id holds that very row; the others are written again.
            end, before = marker.inflight_end, marker.done
            ids = dict(marker.inflight)
            stored = await catalog.read_records(cls, list(ids.values()))
            redo: list[tuple[int, discobase.Table]] = []
            for index, (_, row) in rows:
                if index in ids:
                    record = _record(cls, fmt, row)
                    there = stored.get(ids[index])
                    if there is not None and there.model_dump() == record.model_dump():
                        skipped += 1
                    else:
                        redo.append((index, record))
                if index == end - 1:
                    break
            if redo:
                await send(redo, end)
            else:
                marker.done, marker.inflight, marker.inflight_end = end, None, None
            if progress is not None:  # send() counted the rows written again
                progress.advance(progress.task_ids[0], end - before - len(redo))
        pending: list[tuple[int, discobase.Table]] = []
        for index, (_, row) in rows:
            if index < marker.done:
                continue
            pending.append((index, _record(cls, fmt, row)))
            if len(pending) >= batch:
                await send(pending, index + 1)
                pending = []
        if pending:
            await send(pending, pending[-1][0] + 1)
    finally:
        if progress is not None:
            progress.stop()
    return inserted, skipped


def _start_marker(path: Path, table: str, fmt: Format, marker_file: Path, restart: bool) -> Marker:
    """The marker of an interrupted import of this file to resume, or a fresh one."""
    stat = path.stat()
    fresh = Marker(str(path.resolve()), stat.st_size, stat.st_mtime_ns, table, fmt.value)
    marker = None if restart else _read_marker(marker_file)
    if marker is None:
        return fresh
    if (marker.size, marker.mtime_ns, marker.table, marker.format) != (
        fresh.size,
        fresh.mtime_ns,
        table,
        fmt.value,
    ):
        raise CliError(
            f"{path} changed since an import of it into {marker.table} was interrupted",
            hint="pass --restart to import the whole file again (rows already imported "
            "would be inserted twice)",
        )
    return marker


def import_(
    table: TableArg,
    file: Annotated[str, typer.Argument(help="The file to import; '-' reads standard input.")],
    fmt: FormatOption = None,
    batch: Annotated[int, typer.Option(min=1, help="Rows per durable batch.")] = 1000,
    restart: Annotated[
        bool, typer.Option("--restart", help="Ignore the marker of an interrupted import.")
    ] = False,
    as_json: JsonOption = False,
    token: TokenOption = None,
    guild: GuildOption = None,
    api_url: ApiUrlOption = None,
    local: LocalOption = False,
    data: DataOption = LOCAL_DATA,
) -> None:
    """Insert the rows of a JSON lines or CSV file (an `_id` column is ignored). Run again
    after an interruption, it goes on where it stopped and inserts no row twice."""
    spool: Path | None = None
    if file == "-":
        handle, name = tempfile.mkstemp(suffix=".discobase-import")
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            shutil.copyfileobj(sys.stdin, f)
        path = spool = Path(name)
        chosen = fmt or Format.jsonl
        marker_file = None
        marker = _start_marker(path, table, chosen, path.with_suffix(".unused"), True)
    else:
        path = Path(file)
        if not path.is_file():
            raise CliError(f"no file {file}", hint="give the path of a JSON lines or CSV file")
        chosen = _format(fmt, path)
        marker_file = marker_path(path, table)
        marker = _start_marker(path, table, chosen, marker_file, restart)
    try:
        inserted, skipped = with_database(
            conn_of(token, guild, api_url, local, data),
            lambda db: _import(db, table, path, chosen, batch, marker_file, marker),
        )
        if marker_file is not None:
            marker_file.unlink(missing_ok=True)
    finally:
        if spool is not None:
            spool.unlink(missing_ok=True)
    if as_json:
        typer.echo(json.dumps({"table": table, "inserted": inserted, "already_stored": skipped}))
        return
    resumed = f" ({skipped} rows were already stored)" if skipped else ""
    typer.echo(f"imported {inserted} records into {table}{resumed}")
