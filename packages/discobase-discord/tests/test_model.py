"""Random sequences of writes, queries and reopens, checked against a plain dict model.

Each seed drives saves (concurrent batches and single ones), updates that move indexed
values, deletes, queries on one or two fields, clean reopens, and crashes (the connection
dropped with no close and no final checkpoint, so the next open replays every lane's
tail) through the public API; after every step the database must answer exactly what the
model says. Odd seeds checkpoint every 3 log messages, so partial checkpoints (only dirty
pages, pages spread over many messages, full rewrites) are read back too.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from discobase_test_support import TOKEN, MakeDb

import discobase
import discobase._store

COLOURS = ["red", "green", "blue", "cyan"]


def open_table(make_db: MakeDb) -> tuple[discobase.Database, type[Any]]:
    db = make_db()

    @db.table
    class Item(discobase.Table):
        label: str
        colour: str
        size: int
        weight: float | None = None

    return db, Item


def expected(model: dict[int, dict[str, Any]], **query: Any) -> list[dict[str, Any]]:
    return [
        fields
        for _, fields in sorted(model.items())
        if all(fields[name] == value for name, value in query.items())
    ]


async def check(Item: type[Any], model: dict[int, dict[str, Any]], rng: random.Random) -> None:
    assert [r.model_dump() for r in await Item.find()] == expected(model)
    assert await Item.count() == len(model)
    colour = rng.choice(COLOURS)
    size = rng.randrange(5)
    for query in ({"colour": colour}, {"size": size}, {"colour": colour, "size": size}):
        found = await Item.find(**query)
        assert [r.model_dump() for r in found] == expected(model, **query), query
        assert all(r.disco_id in model for r in found)


async def crash(db: discobase.Database) -> None:
    """Drop the connection as a killed process would: no close(), no final checkpoint. The
    lease is released, as if the next writer came after it ran out (the lease's own crash
    behaviour is tested with killed processes in test_lease.py)."""
    for store in db._stores.values():
        assert not store._queue  # every write was awaited: it is durable
        if store._writer is not None:
            store._writer.cancel()
            await asyncio.gather(store._writer, return_exceptions=True)
    await db._release()  # with each table's last acknowledged commit
    db._stores.clear()
    assert db.bot is not None
    await db.bot.close()


@pytest.mark.parametrize("seed", range(10))
async def test_random_operations_match_a_dict_model(
    make_db: MakeDb, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    if seed % 2:
        monkeypatch.setattr(discobase._store, "CHECKPOINT_EVERY", 3)
    db, Item = open_table(make_db)
    db.login_task(TOKEN)
    await db.wait_ready()
    model: dict[int, dict[str, Any]] = {}
    records: dict[int, Any] = {}
    counter = 0

    def fresh() -> dict[str, Any]:
        nonlocal counter
        counter += 1
        weight = rng.choice([None, 0.5, 1.0, 2.25])
        return {
            "label": f"item{counter}",
            "colour": rng.choice(COLOURS),
            "size": rng.randrange(5),
            "weight": weight,
        }

    for _ in range(40):
        action = rng.choice(["batch", "single", "update", "delete", "reopen", "crash"])
        if action == "batch":
            batch = [Item(**fresh()) for _ in range(rng.randrange(1, 40))]
            await asyncio.gather(*(item.save() for item in batch))
            for item in batch:
                model[item.disco_id] = item.model_dump()
                records[item.disco_id] = item
        elif action == "single":
            item = await Item(**fresh()).save()
            model[item.disco_id] = item.model_dump()
            records[item.disco_id] = item
        elif action == "update" and records:
            chosen = rng.sample(sorted(records), min(len(records), rng.randrange(1, 10)))
            for rid in chosen:
                records[rid].colour = rng.choice(COLOURS)
                records[rid].size = rng.randrange(5)
            await asyncio.gather(*(records[rid].update() for rid in chosen))
            for rid in chosen:
                model[rid] = records[rid].model_dump()
        elif action == "delete" and records:
            chosen = rng.sample(sorted(records), min(len(records), rng.randrange(1, 6)))
            await asyncio.gather(*(records.pop(rid).delete() for rid in chosen))
            for rid in chosen:
                del model[rid]
        elif action in ("reopen", "crash"):
            await (db.close() if action == "reopen" else crash(db))
            db, Item = open_table(make_db)
            db.login_task(TOKEN)
            await db.wait_ready()
            records = {r.disco_id: r for r in await Item.find()}
        await check(Item, model, rng)
    await db.close()
