"""The compact directory and keyless index slots behave like plain dicts and sets.

`TableState` keeps its directory in per-page arrays and lets each `HashIndex` derive slot
keys from it; this drives both through random puts, deletes, replays, checkpoint round
trips, added fields and index damage (explicit pairs inserted or removed by hand, as the
catalog's repair does), and compares everything against a model: rid -> (location, keys)
and, per field, the set of (key, rid) pairs its index should hold. Keys are kept to their low
`KEY_BITS`, and a checkpoint round trip rebuilds the indexes from the directory, so damage
does not outlive it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pydantic
from hypothesis import given, settings
from hypothesis import strategies as st

from discobase_core.log import Delete, LogBlock, Put
from discobase_core.schema import TableSchema
from discobase_core.state import (
    DIRECTORY_SPAN,
    KEY_MASK,
    DirEntry,
    Location,
    TableState,
    read_checkpoint,
    read_pages,
)


class Pair(pydantic.BaseModel):
    a: str
    b: int


SCHEMA = TableSchema.from_model("Pair", Pair)

# Few rids per page, several pages, and ids past what an array('I') slot holds inline.
rids = st.one_of(
    st.integers(0, 40),
    st.integers(DIRECTORY_SPAN - 3, DIRECTORY_SPAN + 3),
    st.integers(5 * DIRECTORY_SPAN, 5 * DIRECTORY_SPAN + 2),
    st.sampled_from([2**32 - 4, 2**32 - 3, 2**32 + 1, 2**70 + 5]),
)
# Mostly a handful of keys (long shared chains), sometimes any 64-bit key.
keys = st.one_of(st.integers(0, 4), st.integers(0, 2**64 - 1))
# Locations that do not fit the arrays too: lanes >= 255, message ids >= 2**64.
message_ids = st.one_of(st.integers(1, 10**6), st.just(2**64 + 7))
lanes = st.one_of(st.integers(0, 3), st.just(300))


@dataclass
class Model:
    fields: list[str] = field(default_factory=lambda: ["a", "b"])
    records: dict[int, tuple[Location, tuple[int, ...]]] = field(default_factory=dict)
    pairs: dict[str, set[tuple[int, int]]] = field(default_factory=lambda: {"a": set(), "b": set()})

    def put(self, rid: int, new: tuple[int, ...], location: Location) -> None:
        new = tuple(key & KEY_MASK for key in new)
        old = self.records.get(rid)
        for position, name in enumerate(self.fields):
            if old is not None and old[1][position] == new[position]:
                continue
            if old is not None:
                self.pairs[name].discard((old[1][position], rid))
            self.pairs[name].add((new[position], rid))
        self.records[rid] = (location, new)

    def rebuilt(self) -> None:
        """The pairs a checkpoint round trip leaves: what the directory implies."""
        self.pairs = {
            name: {(keys[position], rid) for rid, (_, keys) in self.records.items()}
            for position, name in enumerate(self.fields)
        }

    def delete(self, rid: int) -> None:
        old = self.records.pop(rid, None)
        if old is not None:
            for position, name in enumerate(self.fields):
                self.pairs[name].discard((old[1][position], rid))

    def apply(self, message_id: int, block: LogBlock, lane: int) -> None:
        for number, entry in enumerate(block.entries):
            if isinstance(entry, Put):
                self.put(entry.rid, entry.keys, Location(message_id, number, lane))
            else:
                self.delete(entry.rid)


def check(state: TableState, model: Model) -> None:
    assert state.fields == tuple(model.fields)
    assert len(state) == len(model.records)
    assert state.rids() == sorted(model.records)
    assert dict(state.directory) == {
        rid: DirEntry(location, keys) for rid, (location, keys) in model.records.items()
    }
    for rid, (location, _) in model.records.items():
        assert rid in state
        assert state.location(rid) == location
    for absent in (3, DIRECTORY_SPAN, 2**32 + 1, 2**70 + 5):
        if absent not in model.records:
            assert absent not in state
            assert state.location(absent) is None
    for name in model.fields:
        index = state.indexes[name]
        assert sorted(index.keys_values()) == sorted(model.pairs[name])
        assert len(index) == len(model.pairs[name])
        for key in {k for k, _ in model.pairs[name]} | {0, 1, 2, 3, 4}:
            expected = sorted(rid for k, rid in model.pairs[name] if k == key)
            assert state.candidates({name: key}) == expected
            assert sorted(index.lookup(key)) == expected
    if len(model.fields) > 1:
        for _, (_, row) in list(model.records.items())[:5]:
            query = {model.fields[0]: row[0], model.fields[1]: row[1]}
            both = {r for k, r in model.pairs[model.fields[0]] if k == row[0]} & {
                r for k, r in model.pairs[model.fields[1]] if k == row[1]
            }
            assert state.candidates(query) == sorted(both)


def reload(state: TableState, full: bool, store: dict[int, dict[str, bytes]]) -> TableState:
    """Checkpoint (only dirty pages unless `full`) and read the state back."""
    plan = state.plan_checkpoint(full=full)
    page_ids = []
    for blob in plan.page_blobs:
        page_ids.append(max(store, default=10**9) + 1)
        store[page_ids[-1]] = read_pages(blob, where="t")
    final = max(store, default=10**9) + 1
    manifest, own = read_checkpoint(plan.final_blob(page_ids), where="t")
    store[final] = own
    state.finish_checkpoint(plan, page_ids, final)
    assert not state.dirty()
    return TableState.from_checkpoint(manifest, final, store, where="t")


operations = st.one_of(
    st.tuples(
        st.just("put"), st.lists(st.tuples(rids, keys, keys), max_size=8), message_ids, lanes
    ),
    st.tuples(st.just("bulk"), st.integers(0, 6 * DIRECTORY_SPAN), st.integers(1, 400), keys),
    st.tuples(st.just("delete"), st.lists(rids, max_size=6)),
    st.tuples(st.just("replay"), st.lists(st.tuples(rids, keys, keys), max_size=6), st.booleans()),
    st.tuples(st.just("checkpoint"), st.booleans()),
    st.tuples(st.just("add_field"), keys),
    st.tuples(st.just("damage"), st.booleans(), rids, keys, st.booleans()),
)


@settings(max_examples=120, deadline=None)
@given(st.lists(operations, max_size=25))
def test_compact_state_matches_a_dict_model(ops: list[tuple[object, ...]]) -> None:
    state = TableState(table_schema=SCHEMA, fields=("a", "b"))
    model = Model()
    commit = 0
    store: dict[int, dict[str, bytes]] = {}
    for op in ops:
        width = len(model.fields)
        match op:
            case ("put", list(items), int(message_id), int(lane)):
                commit += 1
                entries = tuple(Put(rid, (a, b, *[a] * (width - 2)), b"") for rid, a, b in items)
                block = LogBlock(commit, 0, 1, entries)
                state.apply(message_id, block, lane=lane)
                model.apply(message_id, block, lane)
            case ("bulk", int(first), int(count), int(key)):
                # Enough records at once to resize the indexes (shared and distinct keys).
                commit += 1
                entries = tuple(
                    Put(rid, (key, rid, *[rid % 3] * (width - 2)), b"")
                    for rid in range(first, first + count)
                )
                block = LogBlock(commit, 0, 1, entries)
                state.apply(7, block)
                model.apply(7, block, 0)
            case ("delete", list(targets)):
                commit += 1
                block = LogBlock(commit, 0, 1, tuple(Delete(rid) for rid in targets))
                state.apply(8, block)
                model.apply(8, block, 0)
            case ("replay", list(items), bool(finished)):
                # One commit in two parts on two lanes, given out of order; unfinished, the
                # second part never arrived and nothing of it may show.
                commit += 1
                puts = [Put(rid, (a, b, *[b] * (width - 2)), b"x") for rid, a, b in items]
                half = len(puts) // 2
                parts = [
                    (1, 501, LogBlock(commit, 0, 2, tuple(puts[:half]))),
                    (2, 502, LogBlock(commit, 1, 2, tuple(puts[half:]))),
                ]
                ignored = state.replay(list(reversed(parts)) if finished else parts[:1])
                if finished:
                    assert ignored == []
                    for lane, message_id, block in parts:
                        model.apply(message_id, block, lane)
                else:
                    assert ignored == [501]
            case ("checkpoint", bool(full)):
                state = reload(state, full, store)
                model.rebuilt()
            case ("add_field", int(default)):
                if width < 4:
                    name = f"f{width}"
                    state.add_field(name, default)
                    default &= KEY_MASK
                    model.fields.append(name)
                    model.pairs[name] = {(default, rid) for rid in model.records}
                    model.records = {
                        rid: (location, (*row, default))
                        for rid, (location, row) in model.records.items()
                    }
            case ("damage", bool(insert), int(rid), int(key), bool(first)):
                # What `discobase check --repair` and a damaged checkpoint leave: pairs the
                # directory does not imply (explicit), or implied pairs missing.
                name = model.fields[0 if first else 1]
                index = state.indexes[name]
                key &= KEY_MASK
                if insert:
                    assert index.insert(key, rid) == ((key, rid) not in model.pairs[name])
                    model.pairs[name].add((key, rid))
                else:
                    assert index.remove(key, rid) == ((key, rid) in model.pairs[name])
                    model.pairs[name].discard((key, rid))
            case _:
                raise AssertionError(op)
        check(state, model)
    model.rebuilt()
    check(reload(state, True, store), model)
