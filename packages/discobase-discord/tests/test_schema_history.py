"""Schema history is data: a chain of runs, each in a new process, adds fields, changes
defaults and default factories; after every step every record is found by each of its
values and reads the same as it did in the run before (records never change underneath
their users because a class changed)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from pathlib import Path
from typing import Any

from discobase_test_support import GUILD, TOKEN, MakeDb, check_ok, run_script
from pydantic import Field

import discobase
from discobase_emulator import Emulator

# Each run declares `Item` as it is at that step of the history, saves its new records and
# prints every record (by python name, JSON mode) after checking, inside the process, that
# find(field=value) returns each record for each of its fields.
SCRIPT = f"""
import asyncio, datetime, itertools, json, sys
from pydantic import Field
import discobase

STEP = int(sys.argv[2])
db = discobase.Database({GUILD!r}, guild_ready_timeout=0.1)
counter = itertools.count(100 * STEP)


def stamp():
    # A different value on every call, as datetime.now would give.
    return datetime.datetime(2024, 1, 1) + datetime.timedelta(seconds=next(counter))


if STEP == 1:
    class Item(discobase.Table):
        name: str
elif STEP == 2:
    class Item(discobase.Table):
        name: str
        tag: str = "old"
elif STEP == 3:
    class Item(discobase.Table):
        name: str
        tag: str = "new"
        created: datetime.datetime = Field(default_factory=stamp)
elif STEP == 4:
    class Item(discobase.Table):
        name: str
        tag: str = "newer"
        created: datetime.datetime = Field(default_factory=lambda: datetime.datetime(1999, 1, 1))
        n: int = Field(default_factory=lambda: next(counter))
        labels: list[str] = ["x"]
else:
    class Item(discobase.Table):
        name: str
        tag: str = "latest"
        created: datetime.datetime = datetime.datetime(2000, 1, 1)
        n: int = -1
        labels: list[str] = []

db.table(Item)

NEW = {{
    1: [dict(name="a1"), dict(name="a2")],
    2: [dict(name="b1", tag="x"), dict(name="b2")],
    3: [dict(name="c1")],
    4: [dict(name="d1"), dict(name="d2", labels=["y", "z"])],
    5: [dict(name="e1")],
}}


async def main():
    async with db.conn(sys.argv[1]):
        for values in NEW[STEP]:
            await Item(**values).save()
        records = await Item.find()
        for record in records:
            for field in Item.model_fields:
                found = await Item.find(**{{field: getattr(record, field)}})
                assert record in found, (field, record, found)
        print(json.dumps({{r.name: r.model_dump(mode="json") for r in records}}))

asyncio.run(main())
"""


async def test_schema_history_chain(emu: Emulator, tmp_path: Path) -> None:
    history: list[dict[str, dict[str, Any]]] = []
    for step in range(1, 6):
        result = await run_script(
            SCRIPT,
            url=emu.url,
            tmp_path=tmp_path,
            name=f"step{step}.py",
            args=[TOKEN, str(step)],
        )
        history.append(json.loads(check_ok(result).strip().splitlines()[-1]))
    # Every record reads the same in every later run, for every field it had.
    for before, after in itertools.pairwise(history):
        for name, record in before.items():
            assert {k: after[name][k] for k in record} == record, name
    last = history[-1]
    assert list(last) == ["a1", "a2", "b1", "b2", "c1", "d1", "d2", "e1"]
    older = ["a1", "a2", "b1", "b2"]

    def column(field: str, names: list[str]) -> list[Any]:
        return [last[name][field] for name in names]

    # tag: added with "old" (kept through two default changes); later records got theirs.
    assert column("tag", [*older, "c1", "d1", "d2", "e1"]) == (
        ["old", "old", "x", "old", "new", "newer", "newer", "latest"]
    )
    # created: the step-3 factory ran ONCE for every record stored before it.
    fixed = last["a1"]["created"]
    assert column("created", older) == [fixed] * 4
    assert last["c1"]["created"] != fixed
    assert column("created", ["d1", "d2", "e1"]) == (
        ["1999-01-01T00:00:00", "1999-01-01T00:00:00", "2000-01-01T00:00:00"]
    )
    # n: added in step 4 by a factory, fixed once for the five records before it.
    assert len(set(column("n", [*older, "c1"]))) == 1
    assert len(set(column("n", ["a1", "d1", "d2"]))) == 3
    assert last["e1"]["n"] == -1
    assert column("labels", [*older, "c1", "d1", "d2", "e1"]) == ([["x"]] * 6 + [["y", "z"], []])


def item_table(db: discobase.Database, step: int) -> type[Any]:
    """`Item` at one step of its history (in this process)."""
    if step == 1:

        class Item(discobase.Table):
            name: str

    elif step == 2:

        class Item(discobase.Table):  # type: ignore[no-redef]
            name: str
            tag: str = "old"

    else:

        class Item(discobase.Table):  # type: ignore[no-redef]
            name: str
            tag: str = "new"
            at: dt.datetime = Field(default_factory=dt.datetime.now)

    return db.table(Item)


async def test_changed_default_keeps_old_records_findable(make_db: MakeDb) -> None:
    for step in (1, 2, 3):
        db = make_db()
        Item = item_table(db, step)
        async with db.conn(TOKEN):
            await Item(name=f"run{step}").save()
            if step == 3:
                assert [i.name for i in await Item.find(tag="old")] == ["run1", "run2"]
                assert [i.name for i in await Item.find(tag="new")] == ["run3"]
                assert [i.tag for i in await Item.find()] == ["old", "old", "new"]


async def test_default_factory_fixed_once(make_db: MakeDb) -> None:
    seen: list[dt.datetime] = []
    for step in (1, 3, 3):
        db = make_db()
        Item = item_table(db, step)
        async with db.conn(TOKEN):
            if step == 1:
                await Item(name="old").save()
                continue
            [old] = await Item.find(name="old")
            seen.append(old.at)
            assert await Item.find(at=old.at) == [old]
    assert seen[0] == seen[1]
