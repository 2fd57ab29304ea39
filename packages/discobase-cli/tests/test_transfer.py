"""`discobase export` and `discobase import`: piped round trips, and imports that resume after
an interruption without inserting any row twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from cli_support import GUILD, TOKEN, Emu, cli_command, cli_env, start_emulator

import discobase
from discobase_cli.transfer import marker_path


class Item(discobase.Table):
    n: int
    label: str
    price: float | None = None


def declare(db: discobase.Database, *names: str) -> list[type[discobase.Table]]:
    return [db.table(type(name, (Item,), {})) for name in names]


def seed_items(emu: Emu, count: int, *, also: tuple[str, ...] = ("ItemCopy",)) -> None:
    """`count` Items (n = 0..count-1, saved in order), and empty tables named in `also`."""

    async def action(db: discobase.Database) -> None:
        items, *_ = declare(db, "Item", *also)
        async with db.conn(TOKEN):
            step = 2000
            for start in range(0, count, step):
                batch = range(start, min(count, start + step))
                await asyncio.gather(
                    *(items(n=n, label=f"item\t{n}\n", price=n / 4 or None).save() for n in batch)
                )

    emu.seed(action)


def rows_of(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_piped_export_and_import_of_10000_records_round_trips(emu: Emu, tmp_path: Path) -> None:
    seed_items(emu, 10_000)
    exported = tmp_path / "items.jsonl"
    with exported.open("w") as out:  # standard output piped into a file
        done = subprocess.run(
            cli_command("export", "Item"), stdout=out, stderr=subprocess.PIPE, env=cli_env(emu)
        )
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""  # quiet when piped: no progress bar
    rows = rows_of(exported)
    assert [row["_id"] for row in rows] == list(range(1, 10_001))
    assert rows[3] == {"_id": 4, "n": 3, "label": "item\t3\n", "price": 0.75}
    imported = subprocess.run(
        cli_command("import", "ItemCopy", str(exported)),
        capture_output=True,
        text=True,
        env=cli_env(emu),
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout == "imported 10000 records into ItemCopy\n"
    assert not marker_path(exported, "ItemCopy").exists()
    again = emu.run("export", "ItemCopy")
    copied = [json.loads(line) for line in again.stdout.splitlines()]
    assert [{**r, "_id": 0} for r in copied] == [{**r, "_id": 0} for r in rows]


def test_a_csv_export_and_import_round_trips(emu: Emu, tmp_path: Path) -> None:
    seed_items(emu, 300)
    exported = tmp_path / "items.csv"
    result = emu.run("export", "Item", "-o", str(exported))
    assert result.exit_code == 0, result.stderr
    assert "exported 300 records of Item" in result.stderr
    assert exported.read_text().splitlines()[0] == "_id,n,label,price"
    imported = emu.run("import", "ItemCopy", str(exported))
    assert imported.stdout == "imported 300 records into ItemCopy\n"
    original = [
        {**r, "_id": 0}
        for r in map(json.loads, emu.run("find", "Item", "--nl").stdout.splitlines())
    ]
    copied = [
        {**r, "_id": 0}
        for r in map(json.loads, emu.run("find", "ItemCopy", "--nl").stdout.splitlines())
    ]
    assert copied == original
    assert copied[0]["price"] is None  # an empty cell of an Optional field is None


def test_import_from_standard_input(emu: Emu) -> None:
    seed_items(emu, 0)
    lines = "".join(json.dumps({"n": n, "label": "x"}) + "\n" for n in range(5))
    result = emu.run("import", "ItemCopy", "-", input=lines)
    assert result.stdout == "imported 5 records into ItemCopy\n"
    assert emu.run("count", "ItemCopy", "label=x").stdout == "5\n"


def test_a_bad_row_stops_the_import_before_anything_is_written(emu: Emu, tmp_path: Path) -> None:
    seed_items(emu, 0)
    source = tmp_path / "rows.jsonl"
    source.write_text('{"n": 1, "label": "a"}\n{"n": "two", "label": "b"}\n')
    result = emu.run("import", "ItemCopy", str(source))
    assert result.exit_code == 1
    assert f"{source}, line 2: invalid ItemCopy record: n:" in result.stderr
    assert emu.run("count", "ItemCopy").stdout == "0\n"
    source.write_text('{"n": 1, "label": "a"}\nnot json\n')
    broken = emu.run("import", "ItemCopy", str(source))
    assert f"{source}, line 2: not valid JSON" in broken.stderr


def write_source(path: Path, rows: int) -> None:
    with path.open("w") as f:
        for n in range(rows):
            f.write(json.dumps({"n": n, "label": f"row {n}"}) + "\n")


def assert_each_row_once(emu: Emu, table: str, rows: int) -> None:
    found = [json.loads(line)["n"] for line in emu.run("find", table, "--nl").stdout.splitlines()]
    assert sorted(found) == list(range(rows))  # every row, none twice


@pytest.mark.parametrize(
    ("in_flight", "said"),
    [
        # cut short while writing rows 100-199 (ids 101-200): rows 100-149 had reached
        # Discord, rows 150-199 had not
        (range(100, 200), "imported 150 records into ItemCopy (50 rows were already stored)"),
        # cut short again while writing those rows 150-199 once more (the earlier resume had
        # found rows 100-149 stored): the batch in flight is rows 150-199 alone
        (range(150, 200), "imported 150 records into ItemCopy"),
    ],
)
def test_a_resumed_import_settles_the_batch_in_flight(
    emu: Emu, tmp_path: Path, in_flight: range, said: str
) -> None:
    source = tmp_path / "rows.jsonl"
    write_source(source, 300)

    async def first_150(db: discobase.Database) -> None:
        (copy,) = declare(db, "ItemCopy")
        async with db.conn(TOKEN):
            for n in range(150):  # ids 1..150, as the import would have handed them out
                await copy(n=n, label=f"row {n}").save()

    emu.seed(first_150)
    stat = source.stat()
    marker = {
        "file": str(source),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "table": "ItemCopy",
        "format": "jsonl",
        "done": 100,
        "inflight": [[row, row + 1] for row in in_flight],
        "inflight_end": 200,
    }
    marker_path(source, "ItemCopy").write_text(json.dumps(marker))
    result = emu.run("import", "ItemCopy", str(source), "--batch", "64")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == said + "\n"
    assert_each_row_once(emu, "ItemCopy", 300)
    assert not marker_path(source, "ItemCopy").exists()


def test_a_marker_for_a_changed_file_is_refused(emu: Emu, tmp_path: Path) -> None:
    seed_items(emu, 0)
    source = tmp_path / "rows.jsonl"
    write_source(source, 10)
    marker = {"file": str(source), "size": 1, "mtime_ns": 1, "table": "ItemCopy", "format": "jsonl"}
    marker_path(source, "ItemCopy").write_text(json.dumps({**marker, "done": 5}))
    refused = emu.run("import", "ItemCopy", str(source))
    assert refused.exit_code == 1
    assert "changed since an import of it into ItemCopy was interrupted" in refused.stderr
    assert "--restart" in refused.stderr
    restarted = emu.run("import", "ItemCopy", str(source), "--restart")
    assert restarted.stdout == "imported 10 records into ItemCopy\n"


@pytest.fixture
def slow_emu() -> Emu:
    """An emulator with Discord's own rate limits, so an import takes long enough to kill."""
    url, process = start_emulator("--profile", "discord", "--token", TOKEN, "--guild", GUILD)
    emu = Emu(url, process)
    yield emu  # type: ignore[misc]
    process.terminate()
    process.wait(30)
    if process.stdout is not None:
        process.stdout.close()


def test_an_import_killed_mid_way_and_run_again_inserts_no_row_twice(
    slow_emu: Emu, tmp_path: Path
) -> None:
    emu = slow_emu
    seed_items(emu, 0)
    rows = 3000
    source = tmp_path / "rows.jsonl"
    write_source(source, rows)
    marker = marker_path(source, "ItemCopy")
    command = cli_command("import", "ItemCopy", str(source), "--batch", "50")
    process = subprocess.Popen(command, env=cli_env(emu), stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120  # a guard against hanging, not a measurement
        while True:
            state = json.loads(marker.read_text()) if marker.exists() else {}
            if state.get("done", 0) >= 300 and state.get("inflight"):
                time.sleep(0.05)  # kill while a batch is on its way (or just arrived)
                break
            assert process.poll() is None, "the import ended before it could be killed"
            assert time.monotonic() < deadline, "the import made no progress"
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(30)
    assert process.returncode == -signal.SIGKILL
    assert marker.exists()
    killed_at = json.loads(marker.read_text())["done"]
    assert 300 <= killed_at < rows
    result = emu.run("import", "ItemCopy", str(source), "--batch", "500")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("imported ")
    assert_each_row_once(emu, "ItemCopy", rows)
    assert not marker.exists()


def test_on_a_terminal_export_and_import_show_a_progress_bar(emu: Emu, tmp_path: Path) -> None:
    seed_items(emu, 300)
    exported = tmp_path / "items.jsonl"
    shown = emu.run("export", "Item", "-o", str(exported), TTY_COMPATIBLE="1", COLUMNS="120")
    assert shown.exit_code == 0, shown.stderr
    assert "exporting Item" in shown.stderr
    assert "300/300" in shown.stderr
    assert "ETA" in shown.stderr
    imported = emu.run("import", "ItemCopy", str(exported), TTY_COMPATIBLE="1", COLUMNS="120")
    assert "importing into ItemCopy" in imported.stderr
    assert "300/300" in imported.stderr
    assert imported.stdout == "imported 300 records into ItemCopy\n"
