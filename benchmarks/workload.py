"""The standard workload (shared/design/WORKLOAD.md): how every storage and batching choice
is judged.

    uv run benchmarks/workload.py --records N --json PATH [--profile discord]
                                  [--api-url URL --token T --guild G]

It drives the public API (`import discobase`) against the emulator with Discord's rate limits
on and reads every count from the emulator's own metrics, never from the client. Without
--api-url it starts its own emulator (fresh, in memory) and stops it at the end. It prints a
table, writes the JSON report, and exits 1 when any phase returned a wrong result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import discobase
from discobase_emulator import Emulator, EmulatorControl

WORDS = [
    "amber",
    "basalt",
    "cobalt",
    "delta",
    "ember",
    "fjord",
    "granite",
    "harbor",
    "island",
    "jasper",
    "kelp",
    "lagoon",
    "meadow",
    "nectar",
    "onyx",
    "pebble",
    "quartz",
    "river",
    "summit",
    "tundra",
    "umber",
    "valley",
    "willow",
    "xenon",
    "yarrow",
    "zephyr",
]
LOOKUPS = 1000


def bio(i: int) -> str:
    """About 120 characters of deterministic pseudo-random words: `random.Random(i).choice`
    of WORDS until the words, with a space each, reach 120 characters. Spelled out (a
    choice is `getrandbits` of the bits of len(WORDS) until one is below it), four times
    faster: generating the records is not what the load phases measure."""
    getrandbits = random.Random(i).getrandbits
    count = len(WORDS)
    bits = count.bit_length()
    words: list[str] = []
    length = 0
    while length < 120:
        r = getrandbits(bits)
        while r >= count:
            r = getrandbits(bits)
        words.append(WORDS[r])
        length += len(WORDS[r]) + 1
    return " ".join(words)


def user_fields(i: int) -> dict[str, Any]:
    return {
        "name": f"user{i:06d}",
        "email": f"user{i}@example.com",
        "age": 18 + i % 80,
        "bio": bio(i),
    }


class UserSchema(discobase.Table):
    """WORKLOAD.md's schema; each Database gets its own `User` subclass of it."""

    name: str
    email: str
    age: int
    bio: str


def open_database(args: argparse.Namespace) -> tuple[discobase.Database, type[UserSchema]]:
    """A new Database object (new client, empty caches) with the workload's table."""
    db = discobase.Database(args.guild, api_url=args.api_url, guild_ready_timeout=0.2)

    @db.table
    class User(UserSchema):
        pass

    return db, User


@dataclass
class Phase:
    name: str
    ops: int
    requests: int = 0
    cdn_requests: int = 0
    http_429: int = 0
    seconds: float = 0.0
    ok: bool = True
    notes: list[str] = field(default_factory=list)
    # The emulator's metrics over the phase, for reports that want more than the counts
    # above (scale.py reads bytes downloaded from them).
    metrics: dict[str, Any] = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        return {
            "ops": self.ops,
            "requests": self.requests,
            "requests_per_op": round(self.requests / self.ops, 4) if self.ops else 0.0,
            "cdn_requests": self.cdn_requests,
            "http_429": self.http_429,
            "seconds": round(self.seconds, 3),
            "ops_per_s": round(self.ops / self.seconds, 1) if self.seconds and self.ops else 0.0,
            "correct": self.ok,
            **({"notes": self.notes} if self.notes else {}),
        }


class Runner:
    def __init__(self, control: EmulatorControl) -> None:
        self.control = control
        self.phases: list[Phase] = []

    async def phase(self, name: str, ops: int, body: Callable[[Phase], Awaitable[None]]) -> Phase:
        phase = Phase(name, ops)
        mark = await self.control.mark()
        start = time.perf_counter()
        try:
            await body(phase)
        except Exception as exc:  # a failed phase is a wrong result, reported, not a crash
            phase.ok = False
            phase.notes.append(f"{type(exc).__name__}: {exc}")
        phase.seconds = time.perf_counter() - start
        metrics = await self.control.metrics(since=mark)
        phase.metrics = metrics
        phase.requests = metrics["requests"]
        phase.cdn_requests = metrics["cdn_requests"]
        phase.http_429 = metrics["http_429"]["total"]
        self.phases.append(phase)
        status = "ok" if phase.ok else "WRONG: " + "; ".join(phase.notes)
        print(
            f"  {name:<12} {phase.seconds:8.2f}s  {phase.requests:6d} requests  {status}",
            flush=True,
        )
        return phase


def check(phase: Phase, condition: bool, message: str) -> None:
    if not condition:
        phase.ok = False
        if len(phase.notes) < 5:
            phase.notes.append(message)


async def run(args: argparse.Namespace, control: EmulatorControl) -> dict[str, Any]:
    n = args.records
    runner = Runner(control)
    start_mark = await control.mark()
    started = time.perf_counter()
    rng = random.Random(2024)
    sample = rng.sample(range(n), min(LOOKUPS, n // 2))
    db, User = open_database(args)
    state: dict[str, Any] = {}

    async def open_empty(phase: Phase) -> None:
        db.login_task(args.token)
        await db.wait_ready()
        check(phase, await User.count() == 0, "the table is not empty")

    async def bulk_load(phase: Phase) -> None:
        records = await asyncio.gather(*(User(**user_fields(i)).save() for i in range(n)))
        ids = [r.disco_id for r in records]
        check(phase, None not in ids and len(set(ids)) == n, "saves did not all get distinct ids")

    async def reopen_database() -> None:
        """Close, then open a new Database object (new client, empty caches)."""
        nonlocal db, User
        await db.close()
        db, User = open_database(args)
        db.login_task(args.token)
        await db.wait_ready()

    async def reopen(phase: Phase) -> None:
        await reopen_database()

    async def lookups(phase: Phase) -> None:
        for i in sample:
            record = await User.find_unique(email=f"user{i}@example.com")
            check(phase, record is not None and record.name == f"user{i:06d}", f"wrong record {i}")

    async def miss(phase: Phase) -> None:
        for i in range(LOOKUPS):
            found = await User.find(email=f"absent{i}@example.com")
            check(phase, found == [], f"absent email {i} found {len(found)} records")

    async def skewed(phase: Phase) -> None:
        for age in range(18, 28):
            found = await User.find(age=age)
            expected = sum(1 for i in range(n) if 18 + i % 80 == age)
            check(phase, len(found) == expected, f"age {age}: {len(found)} records, not {expected}")
            check(phase, all(r.age == age for r in found), f"age {age}: wrong records")

    async def scan(phase: Phase) -> None:
        records = await User.find()
        emails = {r.email for r in records}
        check(phase, len(records) == n and len(emails) == n, f"scan gave {len(records)} records")
        state["records"] = {r.email: r for r in records}

    async def make_old(phase: Phase) -> None:
        await control.age_messages(2 * 3600)

    deleted_pool = [i for i in range(n) if i not in set(sample)]
    deleted = deleted_pool[:LOOKUPS] if len(deleted_pool) >= LOOKUPS else deleted_pool

    async def update(phase: Phase) -> None:
        records = state["records"]
        targets = [records[f"user{i}@example.com"] for i in sample]
        for record in targets:
            record.email = record.email.replace("@", ".new@")
        await asyncio.gather(*(record.update() for record in targets))

    async def delete(phase: Phase) -> None:
        records = state["records"]
        targets = [records[f"user{i}@example.com"] for i in deleted]
        await asyncio.gather(*(record.delete() for record in targets))
        check(phase, all(r.disco_id is None for r in targets), "deleted records kept their ids")

    async def single_save(phase: Phase) -> None:
        for i in range(n, n + 20):
            record = await User(**user_fields(i)).save()
            check(phase, record.disco_id is not None, "a single save got no id")

    async def verify(phase: Phase) -> None:
        await reopen_database()
        gone = set(deleted)
        renamed = set(sample)
        live = {i: user_fields(i) for i in [*range(n), *range(n, n + 20)] if i not in gone}
        for i in renamed:
            live[i]["email"] = live[i]["email"].replace("@", ".new@")
        check(phase, await User.count() == len(live), "wrong number of live records")
        by_age: dict[int, set[str]] = {}
        for age in {f["age"] for f in live.values()}:
            by_age[age] = {r.name for r in await User.find(age=age)}
        for i, fields in live.items():
            for name in ("name", "email", "bio"):
                found = await User.find(**{name: fields[name]})
                check(
                    phase, any(r.model_dump() == fields for r in found), f"{i} not found by {name}"
                )
            check(phase, fields["name"] in by_age[fields["age"]], f"{i} not found by age")
        for i in gone:
            check(phase, not await User.find(email=f"user{i}@example.com"), f"deleted {i} found")
        for i in renamed:
            check(
                phase, not await User.find(email=f"user{i}@example.com"), f"stale email {i} found"
            )

    plan: list[tuple[str, int, Callable[[Phase], Awaitable[None]]]] = [
        ("open_empty", 1, open_empty),
        ("bulk_load", n, bulk_load),
        ("reopen", 1, reopen),
        ("lookup_cold", len(sample), lookups),
        ("lookup_warm", len(sample), lookups),
        ("miss", LOOKUPS, miss),
        ("skewed", 10, skewed),
        ("scan", 1, scan),
        ("make_old", 0, make_old),
        ("update", len(sample), update),
        ("delete", len(deleted), delete),
        ("single_save", 20, single_save),
        ("verify", 1, verify),
    ]
    try:
        for name, ops, body in plan:
            phase = await runner.phase(name, ops, body)
            if name in ("open_empty", "bulk_load") and not phase.ok:
                break  # nothing after this can mean anything
    finally:
        await db.close()
    totals = await control.metrics(since=start_mark)
    return {
        "schema": 1,
        "records": n,
        "profile": args.profile,
        "versions": {
            dist: version(dist) for dist in ("discobase-core", "discobase-discord", "discord.py")
        },
        "phases": {phase.name: phase.report() for phase in runner.phases},
        "totals": {
            "requests": totals["requests"],
            "http_429": totals["http_429"]["total"],
            "invalid_requests": totals["invalid_requests"],
            "seconds": round(time.perf_counter() - started, 2),
        },
        "correct": len(runner.phases) == len(plan) and all(p.ok for p in runner.phases),
    }


def bars(report: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Issue 4's bars (set for --records 10000 --profile discord): phase -> (bar, met)."""
    phases = report["phases"]
    n = report["records"]

    def get(phase: str, key: str) -> float:
        return float(phases.get(phase, {}).get(key, float("inf")))

    bulk = phases.get("bulk_load", {})
    out = {
        "bulk_load": (
            "<= 0.05 req/record, >= 500 records/s, 0 x 429",
            get("bulk_load", "requests_per_op") <= 0.05
            and bulk.get("ops_per_s", 0) >= 500
            and bulk.get("http_429", 1) == 0,
        ),
        "reopen": ("<= 50 requests", get("reopen", "requests") <= 50),
        "lookup_cold": ("<= 1.0 req/lookup", get("lookup_cold", "requests_per_op") <= 1.0),
        "lookup_warm": ("<= 0.01 req/op", get("lookup_warm", "requests_per_op") <= 0.01),
        "miss": ("<= 0.01 req/op", get("miss", "requests_per_op") <= 0.01),
        "scan": (f"<= {max(10, n // 100)} requests", get("scan", "requests") <= max(10, n / 100)),
        "single_save": ("<= 2 req/save", get("single_save", "requests_per_op") <= 2),
    }
    for phase in ("update", "delete"):
        out[phase] = (
            "<= 0.2 req/op, 0 x 429",
            get(phase, "requests_per_op") <= 0.2 and get(phase, "http_429") == 0,
        )
    totals = report["totals"]
    out["whole run"] = (
        "0 x 429, correct, < 300 s",
        totals["http_429"] == 0 and report["correct"] and totals["seconds"] < 300,
    )
    return out


def print_table(report: dict[str, Any]) -> None:
    print()
    checked = bars(report)
    header = (
        f"{'phase':<12} {'ops':>6} {'requests':>9} {'req/op':>8} {'cdn':>5} {'429':>4} "
        f"{'seconds':>8} {'ops/s':>9}  ok   bar"
    )
    print(header)
    print("-" * len(header))
    for name, p in report["phases"].items():
        print(
            f"{name:<12} {p['ops']:>6} {p['requests']:>9} {p['requests_per_op']:>8.3f} "
            f"{p['cdn_requests']:>5} {p['http_429']:>4} {p['seconds']:>8.2f} "
            f"{p['ops_per_s']:>9.1f}  {'yes' if p['correct'] else 'NO ':<4} "
            + _bar_text(checked.get(name))
        )
    t = report["totals"]
    print("-" * len(header))
    print(
        f"total: {t['requests']} requests, {t['http_429']} x 429, {t['invalid_requests']} invalid, "
        f"{t['seconds']}s; correct = {str(report['correct']).lower()}; "
        + _bar_text(checked["whole run"])
    )


def _bar_text(bar: tuple[str, bool] | None) -> str:
    if bar is None:
        return ""
    text, met = bar
    return f"{'met' if met else 'MISSED'}: {text}"


@asynccontextmanager
async def emulator_for(args: argparse.Namespace) -> AsyncIterator[EmulatorControl]:
    if args.api_url:
        control = EmulatorControl(args.api_url)
        try:
            yield control
        finally:
            await control.close()
        return
    async with Emulator(tokens=[args.token], guilds=[args.guild], profile=args.profile) as emu:
        args.api_url = emu.url
        yield emu.control


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    async with emulator_for(args) as control:
        if args.profile and not args.external:
            await control.set_profile(args.profile)
        print(f"standard workload: {args.records} records, profile {args.profile}, {args.api_url}")
        report = await run(args, control)
    report["bars"] = {name: {"bar": text, "met": met} for name, (text, met) in bars(report).items()}
    print_table(report)
    return report


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--json", help="write the JSON report here")
    parser.add_argument("--profile", default="discord", choices=["discord", "fast", "unlimited"])
    parser.add_argument("--api-url", help="an emulator (or Discord) that is already up")
    parser.add_argument("--token", default="workload-bot-token")
    parser.add_argument("--guild", default="discobase workload")
    parser.add_argument(
        "--check-bars", action="store_true", help="exit 2 when a bar of issue 4 is missed"
    )
    args = parser.parse_args(argv)
    args.external = bool(args.api_url)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    report = asyncio.run(main_async(args))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"report written to {args.json}")
    if not report["correct"]:
        return 1
    missed = [name for name, bar in report["bars"].items() if not bar["met"]]
    if args.check_bars and missed:
        print(f"bars missed: {', '.join(missed)}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
