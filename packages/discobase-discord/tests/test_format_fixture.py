"""Format versions: a database written by an earlier storage format opens, reads back exactly,
and is upgraded by the first write.

Every `fixtures/format_v<N>/` folder holds an emulator database file (`discord.sqlite3`)
written by `fixtures/make_format_fixture.py` in format N, and `expected.json`, every live
record per table as that script wrote it. Each test runs the emulator on a copy in tmp_path
(the checked-in file is never opened for writing) and opens it with the script's models.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import shutil
import sqlite3
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from discobase_test_support import GUILD, TOKEN

import discobase
from discobase_core.codec import FORMAT_VERSION
from discobase_emulator import Emulator

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))

import make_format_fixture as fx  # noqa: E402  (found through the path above)

FORMATS = sorted(p for p in FIXTURES.glob("format_v*") if p.is_dir())
KEYS = {"Person": "key", "Event": "number"}  # each table's unique field
WRITES = ("POST", "PATCH", "PUT", "DELETE")
AGE_S = 90 * 24 * 3600


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Copy:
    folder: Path  # the checked-in fixture
    data: Path  # the emulator's data folder: a copy of the fixture's database file
    expected: dict[str, Any]


@pytest.fixture(params=FORMATS, ids=[p.name for p in FORMATS])
def fixture_copy(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Copy]:
    folder: Path = request.param
    original = folder / fx.DB_FILE
    before = sha256(original)
    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(original, data / fx.DB_FILE)
    expected = json.loads((folder / fx.EXPECTED_FILE).read_text(encoding="utf-8"))
    yield Copy(folder, data, expected)
    assert sha256(original) == before, f"{original} was changed by the test"


@pytest.fixture
async def emu(fixture_copy: Copy) -> AsyncIterator[Emulator]:
    """The emulator on the copy (this module's own `emu`: conftest's has no data folder)."""
    emulator = Emulator(
        data_dir=fixture_copy.data, tokens=[TOKEN], guilds=[GUILD], profile="unlimited"
    )
    async with emulator:
        yield emulator


@dataclass
class Opened:
    db: discobase.Database
    tables: dict[str, type[Any]]


@pytest.fixture
async def opener(emu: Emulator) -> AsyncIterator[Any]:
    """`await open_(**options)`: the fixture's database with the generator's (final) models,
    ready; every one is closed at the end."""
    made: list[discobase.Database] = []

    async def open_(**options: Any) -> Opened:
        assert (fx.GUILD, fx.TOKEN) == (GUILD, TOKEN)
        db = fx.open_db(emu.url, **options)
        made.append(db)
        tables = {
            "Person": fx.bind(db, fx.Person, "Person"),
            "Event": fx.bind(db, fx.Event, "Event"),
        }
        db.login_task(TOKEN)
        await db.wait_ready()
        return Opened(db, tables)

    yield open_
    for db in made:
        await db.close()


async def check_records(tables: dict[str, type[Any]], expected: dict[str, Any]) -> None:
    """Every table holds exactly the expected records: all of them through find(), each one
    through find_unique() on its key, a few through every field, and the counts."""
    assert sorted(tables) == sorted(expected["tables"])
    for name, cls in tables.items():
        want = expected["tables"][name]
        assert want, f"the fixture's {name} table expects no records"
        got = [fx.as_json(record) for record in await cls.find()]
        assert len(got) == len(want), f"{name}: {len(got)} records read, {len(want)} expected"
        assert sorted(got, key=lambda r: r["id"]) == want
        assert await cls.count() == len(want)
        key = KEYS[name]
        for entry in want:
            found = await cls.find_unique(**{key: entry["fields"][key]})
            assert fx.as_json(found) == entry
        # Every field's index: a record is found by each of its values, and only records
        # with that value come back.
        for record in [await cls.find_unique(**{key: e["fields"][key]}) for e in want[:3]]:
            for field in cls.model_fields:
                value = getattr(record, field)
                matches = await cls.find(**{field: value})
                assert record.disco_id in [m.disco_id for m in matches], (name, field, value)
                assert all(getattr(m, field) == value for m in matches), (name, field, value)
                assert await cls.count(**{field: value}) == len(matches)


def messages(emu: Emulator) -> list[tuple[Any, ...]]:
    """Every message the emulator stores, with its attachments: to see that nothing changed."""
    db = emu.core.state.store.db
    rows = db.execute("SELECT * FROM messages ORDER BY id").fetchall()
    files = db.execute("SELECT * FROM attachments ORDER BY id").fetchall()
    return [*rows, *files]


def blob_header(content: str, files: list[tuple[str, bytes]]) -> tuple[int, str] | None:
    """(format version, kind) of the sealed blob a discobase message holds, read from the
    framing of format 1 (b"DSCB", version byte, kind length, kind) without decoding it;
    None for other messages (such as Discord's "thread created" notices)."""
    if files:
        blob = b"".join(data for _, data in sorted(files))
    else:
        if not content.startswith("dscb:"):
            return None
        text = content.removeprefix("dscb:")
        blob = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    assert blob[:4] == b"DSCB"
    return blob[4], blob[6 : 6 + blob[5]].decode("ascii")


def table_messages(path: Path, table: str) -> list[tuple[int, str, int, str]]:
    """(message id, channel name, format version, kind) of every message of a table (its
    channel and its lane threads), oldest first, read from an emulator database file."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        channels = {
            cid: name
            for cid, name in db.execute("SELECT id, json_extract(data, '$.name') FROM channels")
            if name == table or name.startswith(f"{table}-lane-")
        }
        out = []
        for mid, cid, content in db.execute(
            "SELECT id, channel_id, content FROM messages ORDER BY id"
        ):
            if cid not in channels:
                continue
            files = db.execute(
                "SELECT filename, data FROM attachments WHERE message_id = ?", (mid,)
            ).fetchall()
            header = blob_header(content, files)
            if header is not None:
                out.append((mid, channels[cid], *header))
        return out
    finally:
        db.close()


def test_the_fixtures_are_checked_in() -> None:
    assert [p.name for p in FORMATS][:1] == ["format_v1"], FORMATS
    for folder in FORMATS:
        assert (folder / fx.DB_FILE).stat().st_size < 1024 * 1024
        assert (folder / "README.md").is_file()
        expected = json.loads((folder / fx.EXPECTED_FILE).read_text(encoding="utf-8"))
        format_ = expected.get("manifest_format", expected["format_version"])
        assert folder.name == f"format_v{format_}"


def test_format_v1_holds_what_the_upgrade_path_needs() -> None:
    """The v1 fixture is what its README says: format 1 everywhere, lane threads, commits in
    content and in attachments, checkpoints, and log messages after the last checkpoint in
    every table (so opening it replays the log)."""
    path = FIXTURES / "format_v1" / fx.DB_FILE
    for table in ("person", "event"):
        stored = table_messages(path, table)
        assert {version for _, _, version, _ in stored} == {1}
        assert {f"{table}-lane-{n}" for n in (1, 2, 3)} <= {ch for _, ch, _, _ in stored}
        checkpoints = [mid for mid, _, _, kind in stored if kind == "ckpt"]
        assert len(checkpoints) >= 2, table
        tail = [mid for mid, _, _, kind in stored if kind == "log" and mid > checkpoints[-1]]
        assert len(tail) >= 3, table
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = {name for (name,) in db.execute("SELECT filename FROM attachments")}
    finally:
        db.close()
    assert any(name.startswith("log-") for name in names)  # a commit in an attachment


async def test_opens_reads_back_and_is_upgraded_by_a_write(
    fixture_copy: Copy, emu: Emulator, opener: Any
) -> None:
    expected = copy.deepcopy(fixture_copy.expected)
    stored_before = max(mid for mid, *_ in messages(emu))
    # The fixture only gets older (its messages are from the day it was written): open it as
    # a database whose messages are past Discord's 14-day bulk-delete window.
    await emu.control.age_messages(AGE_S)
    opened = await opener()
    await check_records(opened.tables, expected)

    # Writes: a new record, an update and a delete in each table.
    Person, Event = opened.tables["Person"], opened.tables["Event"]
    new = await Person.model_validate(fx.person_values(900) | {"rank": 7}).save()
    expected["tables"]["Person"].append(fx.as_json(new))
    changed = await Person.find_unique(key=expected["tables"]["Person"][0]["fields"]["key"])
    changed.name = "upgraded ✓"
    changed.balance = 2**200
    await changed.update()
    expected["tables"]["Person"][0] = fx.as_json(changed)
    gone = await Person.find_unique(key=expected["tables"]["Person"][1]["fields"]["key"])
    await gone.delete()
    del expected["tables"]["Person"][1]
    event = await Event.model_validate(fx.event_values(900)).save()
    expected["tables"]["Event"].append(fx.as_json(event))
    old = await Event.find_unique(number=expected["tables"]["Event"][-2]["fields"]["number"])
    await old.delete()
    del expected["tables"]["Event"][-2]
    await check_records(opened.tables, expected)
    await opened.db.close()

    # Each table now ends with a checkpoint in the current format, written after the fixture.
    path = fixture_copy.data / fx.DB_FILE
    for table in ("person", "event"):
        stored = table_messages(path, table)
        newer = [(version, kind) for mid, _, version, kind in stored if mid > stored_before]
        assert newer[-1] == (FORMAT_VERSION, "ckpt"), newer
        assert {version for version, _ in newer} == {FORMAT_VERSION}

    again = await opener()
    await check_records(again.tables, expected)


async def test_read_only_open_reads_back_and_writes_nothing(
    fixture_copy: Copy, emu: Emulator, opener: Any
) -> None:
    before = messages(emu)
    mark = await emu.control.mark()
    reader = await opener(read_only=True)
    await check_records(reader.tables, fixture_copy.expected)
    with pytest.raises(discobase.ReadOnlyError):
        await reader.tables["Event"].model_validate(fx.event_values(901)).save()
    await reader.db.close()
    routes = (await emu.control.metrics(since=mark))["by_route"]
    assert not [route for route in routes if route.startswith(WRITES)], routes
    assert messages(emu) == before


async def test_a_lost_record_fails_the_check(
    fixture_copy: Copy, emu: Emulator, opener: Any
) -> None:
    """The check above notices a fixture that does not read back in full: drop the newest
    log message (in the tail, after the last checkpoint) of the Event table from the copy."""
    store = emu.core.state.store
    lanes = [
        cid
        for cid, channel in store.channels.items()
        if str(channel.data.get("name", "")).startswith("event")
    ]
    marks = ",".join("?" * len(lanes))
    (newest,) = store.db.execute(
        f"SELECT MAX(id) FROM messages WHERE channel_id IN ({marks})", lanes
    ).fetchone()
    store.delete_messages([newest])
    store.commit()
    reader = await opener(read_only=True)
    with pytest.raises(AssertionError):
        await check_records(reader.tables, fixture_copy.expected)
