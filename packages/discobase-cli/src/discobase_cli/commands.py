"""The data commands: tables, schema, find, count, insert, update, delete, stats, check,
compact."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

import discobase
from discobase import _catalog as catalog
from discobase_cli.connect import (
    LOCAL_DATA,
    ApiUrlOption,
    CliError,
    Connection,
    DataOption,
    GuildOption,
    LocalOption,
    TokenOption,
)
from discobase_cli.output import print_json, print_rows, stdout_is_terminal
from discobase_cli.running import exit_code, with_database

__all__ = [
    "JsonOption",
    "TableArg",
    "check",
    "compact",
    "conn_of",
    "count",
    "delete",
    "find",
    "insert",
    "schema",
    "stats",
    "tables",
    "update",
]

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
TableArg = Annotated[str, typer.Argument(help="The table's name.", show_default=False)]
WhereArg = Annotated[
    list[str] | None,
    typer.Argument(help="FIELD=VALUE conditions, all of which must hold.", show_default=False),
]
_DISCORD_CHANNELS = 500
_DISCORD_THREADS = 1000  # active threads per server


def conn_of(
    token: str | None, guild: str | None, api_url: str | None, local: bool, data: Path
) -> Connection:
    return Connection(token=token, guild=guild, api_url=api_url, local=local, data=data)


def _default_text(field: Any) -> str:
    if field.has_default:
        return json.dumps(field.default, ensure_ascii=False)
    return "(factory)" if field.default_factory else "(required)"


def tables(
    as_json: JsonOption = False,
    token: TokenOption = None,
    guild: GuildOption = None,
    api_url: ApiUrlOption = None,
    local: LocalOption = False,
    data: DataOption = LOCAL_DATA,
) -> None:
    """Each table with its record count."""

    async def action(db: discobase.Database) -> list[discobase.StoredTable]:
        found = await discobase.stored_tables(db)
        for table in found:  # exact counts: open each table
            await discobase.open_table(db, table.name)
        return await discobase.stored_tables(db)

    found = with_database(conn_of(token, guild, api_url, local, data), action, read_only=True)
    if as_json:
        print_json(
            [
                {"name": t.name, "records": t.records, "fields": list(t.schema.field_names)}
                for t in found
            ]
        )
        return
    print_rows(
        ["table", "records", "fields"],
        [[t.name, t.records, ", ".join(t.schema.field_names)] for t in found],
        title="tables",
    )


def schema(
    table: TableArg,
    as_json: JsonOption = False,
    token: TokenOption = None,
    guild: GuildOption = None,
    api_url: ApiUrlOption = None,
    local: LocalOption = False,
    data: DataOption = LOCAL_DATA,
) -> None:
    """A table's fields: type, default, and whether it is indexed (every field is)."""

    async def action(db: discobase.Database) -> discobase.StoredTable:
        return await catalog.find_stored_table(db, table)

    stored = with_database(conn_of(token, guild, api_url, local, data), action, read_only=True)
    if as_json:
        print_json(
            {
                "table": stored.name,
                "fields": [
                    {
                        "name": f.name,
                        "type": f.type_repr,
                        "required": f.required,
                        "default": f.default if f.has_default else None,
                        "has_default": f.has_default,
                        "default_factory": f.default_factory,
                        "indexed": True,
                        "json_schema": f.json_schema,
                    }
                    for f in stored.schema.fields
                ],
            }
        )
        return
    print_rows(
        ["field", "type", "default", "indexed"],
        [[f.name, f.type_repr, _default_text(f), "yes"] for f in stored.schema.fields],
        title=f"table {stored.name}",
    )


def _write_records(records: list[dict[str, Any]], fields: list[str], fmt: str, title: str) -> None:
    if fmt == "json":
        print_json(records)
    elif fmt == "nl":
        for record in records:
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
    elif fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["_id", *fields])
        for record in records:
            writer.writerow([record["_id"], *(catalog.text_of(record[f]) for f in fields)])
    else:
        print_rows(
            ["_id", *fields],
            [[record["_id"], *(record[f] for f in fields)] for record in records],
            title=title,
        )
    sys.stdout.flush()


def find(
    table: TableArg,
    where: WhereArg = None,
    limit: Annotated[int | None, typer.Option(min=0, help="At most this many records.")] = None,
    as_json: JsonOption = False,
    nl: Annotated[bool, typer.Option("--nl", help="Print JSON lines.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
    token: TokenOption = None,
    guild: GuildOption = None,
    api_url: ApiUrlOption = None,
    local: LocalOption = False,
    data: DataOption = LOCAL_DATA,
) -> None:
    """Records whose fields equal every FIELD=VALUE given (none: every record), oldest
    first; each carries its id under `_id`."""
    if sum((as_json, nl, as_csv)) > 1:
        raise CliError("choose one of --json, --nl and --csv")

    async def action(db: discobase.Database) -> tuple[list[str], list[dict[str, Any]]]:
        cls = await discobase.open_table(db, table)
        query = discobase.parse_assignments(cls, where or [])
        found = await cls.find(limit=limit, **query)
        return list(cls.model_fields), [catalog.record_to_json(r) for r in found]

    fields, records = with_database(
        conn_of(token, guild, api_url, local, data), action, read_only=True
    )
    fmt = "json" if as_json else "nl" if nl else "csv" if as_csv else "table"
    _write_records(records, fields, fmt, f"{table}: {len(records)} records")


def count(
    table: TableArg,
    where: WhereArg = None,
    token: TokenOption = None,
    guild: GuildOption = None,
    api_url: ApiUrlOption = None,
    local: LocalOption = False,
    data: DataOption = LOCAL_DATA,
) -> None:
    """How many records match every FIELD=VALUE given (none: all of them)."""

    async def action(db: discobase.Database) -> int:
        cls = await discobase.open_table(db, table)
        return await cls.count(**discobase.parse_assignments(cls, where or []))

    typer.echo(with_database(conn_of(token, guild, api_url, local, data), action, read_only=True))


def _json_documents(text: str, nl: bool) -> list[Any]:
    try:
        if nl:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        loaded = json.loads(text)
    except ValueError as exc:
        raise CliError(
            f"the input is not valid JSON: {exc}",
            hint="give an object, an array of objects, or JSON lines with --nl",
        ) from None
    return loaded if isinstance(loaded, list) else [loaded]


def _ids_text(ids: list[int]) -> str:
    shown = ", ".join(map(str, ids[:10]))
    return shown + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")


def insert(
    table: TableArg,
    document: Annotated[
        str,
        typer.Argument(help="A JSON object or array of objects; '-' reads standard input."),
    ] = "-",
    nl: Annotated[bool, typer.Option("--nl", help="The input is JSON lines.")] = False,
    token: TokenOption = None,
    guild: GuildOption = None,
    api_url: ApiUrlOption = None,
    local: LocalOption = False,
    data: DataOption = LOCAL_DATA,
) -> None:
    """Insert records given as JSON; prints their ids."""
    text = sys.stdin.read() if document == "-" else document
    documents = _json_documents(text, nl)

    async def action(db: discobase.Database) -> list[int]:
        cls = await discobase.open_table(db, table)
        records = [catalog.parse_record(cls, d) for d in documents]
        saved = await asyncio.gather(*(r.save() for r in records))
        return [r.disco_id for r in saved if r.disco_id is not None]

    ids = with_database(conn_of(token, guild, api_url, local, data), action)
    typer.echo(f"inserted {len(ids)} records into {table}: ids {_ids_text(ids)}")


def update(
    table: TableArg,
    record_id: Annotated[int, typer.Argument(metavar="ID", help="The record's id (_id).")],
    document: Annotated[str, typer.Argument(help="A JSON object of the fields to set.")],
    token: TokenOption = None,
    guild: GuildOption = None,
    api_url: ApiUrlOption = None,
    local: LocalOption = False,
    data: DataOption = LOCAL_DATA,
) -> None:
    """Set the given fields of one record."""
    try:
        changes = json.loads(document)
    except ValueError as exc:
        raise CliError(
            f"the update is not valid JSON: {exc}", hint='write {"field": value, ...}'
        ) from None
    if not isinstance(changes, dict):
        raise CliError("the update must be a JSON object", hint='write {"field": value, ...}')

    async def action(db: discobase.Database) -> dict[str, Any]:
        cls = await discobase.open_table(db, table)
        record = await catalog.update_record(cls, record_id, changes)
        return catalog.record_to_json(record)

    result = with_database(conn_of(token, guild, api_url, local, data), action)
    typer.echo(f"updated {table} record {record_id}: {json.dumps(result, ensure_ascii=False)}")


def delete(
    table: TableArg,
    targets: Annotated[
        list[str],
        typer.Argument(help="Record ids, or FIELD=VALUE conditions.", show_default=False),
    ],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    token: TokenOption = None,
    guild: GuildOption = None,
    api_url: ApiUrlOption = None,
    local: LocalOption = False,
    data: DataOption = LOCAL_DATA,
) -> None:
    """Delete records by id or by FIELD=VALUE; asks before deleting more than one."""
    by_id = all(t.isdigit() for t in targets)
    if not by_id and any(t.isdigit() for t in targets):
        raise CliError(
            "give either record ids or FIELD=VALUE conditions, not both",
            hint="run the command once for each",
        )

    async def action(db: discobase.Database) -> int:
        cls = await discobase.open_table(db, table)
        if by_id:
            records = [await catalog.get_record(cls, int(t)) for t in dict.fromkeys(targets)]
        else:
            records = await cls.find(**discobase.parse_assignments(cls, targets))
        if not records:
            return 0
        if len(records) > 1 and not yes:
            try:
                asked = await asyncio.to_thread(
                    typer.confirm, f"delete {len(records)} records of {table}?"
                )
            except typer.Abort:  # no answer (standard input closed)
                asked = False
            if not asked:
                raise CliError("nothing deleted", hint="pass --yes to delete without asking")
        await asyncio.gather(*(r.delete() for r in records))
        return len(records)

    deleted = with_database(conn_of(token, guild, api_url, local, data), action)
    typer.echo(f"deleted {deleted} records from {table}")


def compact(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Tables to compact (default: every table).", show_default=False),
    ] = None,
    as_json: JsonOption = False,
    token: TokenOption = None,
    guild: GuildOption = None,
    api_url: ApiUrlOption = None,
    local: LocalOption = False,
    data: DataOption = LOCAL_DATA,
) -> None:
    """Erase overwritten and deleted records from Discord now and reclaim their space
    (the writer also does it on its own within an hour). Takes the lease, like a write."""

    async def action(db: discobase.Database) -> list[discobase.CompactionReport]:
        chosen = names or [t.name for t in await discobase.stored_tables(db)]
        return [await (await discobase.open_table(db, name)).compact() for name in chosen]

    reports = with_database(conn_of(token, guild, api_url, local, data), action)
    if as_json:
        print_json([dataclasses.asdict(r) for r in reports])
        return
    print_rows(
        ["table", "messages", "bytes", "rewritten", "deleted", "bytes freed", "left"],
        [
            [
                r.table,
                r.messages_listed,
                r.bytes_listed,
                r.records_rewritten,
                r.messages_deleted,
                r.bytes_deleted,
                r.messages_left,
            ]
            for r in reports
        ],
        title="compaction",
    )


def _histogram(histogram: dict[int, int], console: Console) -> None:
    if not histogram:
        return
    widest = max(histogram.values())
    for probes, pairs in histogram.items():
        bar = "█" * max(1, round(40 * pairs / widest))
        console.print(f"  {probes:>3} probes  {bar} {pairs}", highlight=False)


def stats(
    table: Annotated[str | None, typer.Argument(help="One table (default: all).")] = None,
    as_json: JsonOption = False,
    token: TokenOption = None,
    guild: GuildOption = None,
    api_url: ApiUrlOption = None,
    local: LocalOption = False,
    data: DataOption = LOCAL_DATA,
) -> None:
    """Records, live and stored bytes, messages, channels and threads used of Discord's
    limits, and each index's load factor, tombstones and probe runs, with a histogram of
    lookup probe lengths. Reads every record and message: it costs about an export."""

    async def action(db: discobase.Database) -> tuple[int, int, list[catalog.TableStats]]:
        names = [table] if table else [t.name for t in await discobase.stored_tables(db)]
        found = []
        for name in names:
            found.append(await catalog.table_stats(await discobase.open_table(db, name)))
        assert db.guild is not None
        return len(db.guild.channels), len(db.guild.threads), found

    channels, threads, found = with_database(
        conn_of(token, guild, api_url, local, data), action, read_only=True
    )
    if as_json:
        print_json(
            {
                "channels": channels,
                "channel_limit": _DISCORD_CHANNELS,
                "active_threads": threads,
                "active_thread_limit": _DISCORD_THREADS,
                "tables": [
                    {
                        "table": s.table,
                        "records": s.records,
                        "live_bytes": s.live_bytes,
                        "messages": s.messages,
                        "stored_bytes": s.stored_bytes,
                        "lanes": s.lanes,
                        "indexes": s.fields,
                        "probe_histogram": s.probe_histogram,
                    }
                    for s in found
                ],
            }
        )
        return
    typer.echo(
        f"server: {channels} of Discord's {_DISCORD_CHANNELS} channels, "
        f"{threads} of {_DISCORD_THREADS} active threads"
    )
    console = Console()
    for s in found:
        typer.echo(
            f"{s.table}: {s.records} records, {s.live_bytes} live bytes, {s.messages} messages "
            f"holding {s.stored_bytes} bytes, {s.lanes} lanes"
        )
        print_rows(
            ["field", "capacity", "load factor", "tombstones", "mean probes", "longest run"],
            [
                [
                    name,
                    int(f["capacity"]),
                    f["load_factor"],
                    int(f["tombstones"]),
                    f["mean_probes"],
                    int(f["longest_probe_run"]),
                ]
                for name, f in s.fields.items()
            ],
            title=f"{s.table} indexes",
        )
        if stdout_is_terminal():
            console.print("lookup probe lengths:")
            _histogram(s.probe_histogram, console)
        else:
            for probes, pairs in s.probe_histogram.items():
                typer.echo(f"probes\t{probes}\t{pairs}")


def check(
    table: Annotated[str | None, typer.Argument(help="One table (default: all).")] = None,
    repair: Annotated[
        bool, typer.Option("--repair", help="Re-index records an index misses (never deletes).")
    ] = False,
    as_json: JsonOption = False,
    token: TokenOption = None,
    guild: GuildOption = None,
    api_url: ApiUrlOption = None,
    local: LocalOption = False,
    data: DataOption = LOCAL_DATA,
) -> None:
    """Read every record and find it through the index of every field; report problems by
    table and record id, and exit 1 if there are any."""

    async def action(db: discobase.Database) -> list[catalog.TableCheck]:
        names = [table] if table else [t.name for t in await discobase.stored_tables(db)]
        reports = []
        for name in names:
            try:
                cls = await discobase.open_table(db, name)
            except discobase.DatabaseCorruptionError as exc:
                bad = catalog.TableCheck(name)
                bad.problems.append((None, f"cannot open: {exc.message}"))
                reports.append(bad)
                continue
            reports.append(await catalog.verify_table(cls, repair=repair))
        return reports

    reports = with_database(
        conn_of(token, guild, api_url, local, data), action, read_only=not repair
    )
    if as_json:
        print_json(
            [
                {
                    "table": r.table,
                    "records": r.records,
                    "checked": r.checked,
                    "ok": r.ok,
                    "problems": [{"id": rid, "problem": text} for rid, text in r.problems],
                    "repaired": r.repaired,
                }
                for r in reports
            ]
        )
    else:
        for r in reports:
            state = "ok" if r.ok else f"{len(r.problems)} problems"
            typer.echo(f"{r.table}: {r.checked} of {r.records} records checked, {state}")
            for rid, text in r.problems:
                where = f"record {rid}" if rid is not None else "table"
                typer.echo(f"  {r.table} {where}: {text}")
            if r.repaired:
                typer.echo(f"  repaired (re-indexed): {_ids_text(r.repaired)}")
    exit_code(all(r.ok for r in reports))
