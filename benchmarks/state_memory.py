"""Memory and speed of the core's in-memory table state (not a test: run it by hand).

    python benchmarks/state_memory.py --records 1000000 [--trace]

Builds a `TableState` of the standard schema (name, email, age, bio) by `apply()` of log
blocks shaped like the adapter's (about 8,000 puts of ~250 B per 2 MiB message), then
writes a full checkpoint and reads it back with `from_checkpoint`. Reports bytes of state
per record (RSS growth, and with ``--trace`` the tracemalloc total, which is slower), µs per
applied record, the checkpoint's encode seconds, and (in a fresh process, as a client opens
a table) `from_checkpoint` seconds and the RSS it adds.
"""

from __future__ import annotations

import argparse
import gc
import json
import pickle
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator

import pydantic

from discobase_core.hashing import value_key
from discobase_core.log import LogBlock, Put
from discobase_core.schema import TableSchema
from discobase_core.state import TableState, read_checkpoint, read_pages

PER_BLOCK = 8000
PAYLOAD = bytes(250)


class User(pydantic.BaseModel):
    name: str
    email: str
    age: int
    bio: str


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def blocks(records: int) -> Iterator[tuple[int, LogBlock]]:
    """(message id, block) pairs: message ids are snowflake-sized, like Discord's."""
    rid = 1
    commit = 1
    while rid <= records:
        entries = []
        for r in range(rid, min(rid + PER_BLOCK, records + 1)):
            keys = (
                value_key(f"user{r:06d}"),
                value_key(f"user{r}@example.com"),
                value_key(18 + r % 80),
                value_key(f"bio of user {r} " * 8),
            )
            entries.append(Put(r, keys, PAYLOAD))
        yield 1_300_000_000_000_000_000 + commit * 4096, LogBlock(commit, 0, 1, tuple(entries))
        rid += PER_BLOCK
        commit += 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--trace", action="store_true")
    parser.add_argument("--load", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        load(args.load)
        return
    n = args.records
    schema = TableSchema.from_model("User", User)
    gc.collect()
    before = rss()
    if args.trace:
        tracemalloc.start()
    state = TableState(table_schema=schema, fields=("name", "email", "age", "bio"))
    applied = 0.0
    for message_id, block in blocks(n):  # one block alive at a time: RSS is the state's
        start = time.perf_counter()
        state.apply(message_id, block)
        applied += time.perf_counter() - start
    del block
    gc.collect()
    report: dict[str, float] = {
        "records": n,
        "apply_us_per_record": round(applied / n * 1e6, 2),
        "rss_bytes_per_record": round((rss() - before) / n, 1),
    }
    if args.trace:
        report["traced_bytes_per_record"] = round(tracemalloc.get_traced_memory()[0] / n, 1)
        tracemalloc.stop()
    start = time.perf_counter()
    plan = state.plan_checkpoint(full=True)
    pages_by_message = {}
    page_ids = []
    for number, blob in enumerate(plan.page_blobs, start=10):
        pages_by_message[number] = read_pages(blob, where="bench")
        page_ids.append(number)
    final = plan.final_blob(page_ids)
    report["checkpoint_encode_s"] = round(time.perf_counter() - start, 2)
    report["checkpoint_mb"] = round(
        (len(final) + sum(len(b) for p in pages_by_message.values() for b in p.values())) / 1e6, 1
    )
    del state, plan
    # Open it in a fresh process, as a client does: RSS there is the loaded state's alone.
    with tempfile.NamedTemporaryFile(suffix=".ckpt") as saved:
        pickle.dump((final, pages_by_message), saved)
        saved.flush()
        del pages_by_message
        loaded = subprocess.run(
            [sys.executable, __file__, "--load", saved.name],
            check=True,
            capture_output=True,
            text=True,
        )
    report.update(json.loads(loaded.stdout))
    print(json.dumps(report))


def load(path: str) -> None:
    """Read a saved checkpoint back with `from_checkpoint` and report time and RSS."""
    with open(path, "rb") as saved:
        final, pages_by_message = pickle.load(saved)
    manifest, own = read_checkpoint(final, where="bench")
    pages_by_message[9] = own
    baseline = rss()  # the interpreter, the imports and the checkpoint's bytes
    start = time.perf_counter()
    state = TableState.from_checkpoint(manifest, 9, pages_by_message, where="bench")
    seconds = time.perf_counter() - start
    grown = rss() - baseline
    n = len(state)
    print(
        json.dumps(
            {
                "from_checkpoint_s": round(seconds, 2),
                "loaded_rss_bytes_per_record": round(grown / n, 1),
                "loaded_process_rss_mb": round(rss() / 1e6, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
