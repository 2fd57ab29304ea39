"""Bulk-load CPU (issue 9's CPU bar): what `save()` costs the client per record.

    uv run benchmarks/cpu_load.py --records 100000 [--profile discord] [--chunk 10000]
                                  [--cprofile PATH]

Saves N records of the standard schema (benchmarks/workload.py) with `asyncio.gather` over
`save()`, `--chunk` at a time as scale.py's load phase does, against an emulator in its own
process, and reports records/s end to end, the CPU seconds the client and the emulator each
spent (so which side dominates is plain on a shared machine), and the core's encode+hash
rate measured in the same process just before (the bar: the load runs at >= 25,000
records/s and at >= 0.25x that rate). With --cprofile the load runs under cProfile and its
stats are written to PATH (read them with `python -m pstats PATH`).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import sys
import time
from pathlib import Path
from typing import Any

import discobase
from scale import CPU_BAR_RATE, CPU_BAR_SHARE, emulator_process, encode_hash_rate
from workload import UserSchema, user_fields


class GcClock:
    """CPU seconds spent in the garbage collector while `running`, by generation."""

    def __init__(self) -> None:
        self.running = False
        self.seconds = [0.0, 0.0, 0.0]
        self.collections = [0, 0, 0]
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if not self.running:
            return
        if phase == "start":
            self._start = time.process_time()
        else:
            self.seconds[info["generation"]] += time.process_time() - self._start
            self.collections[info["generation"]] += 1


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of process `pid` so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def emulator_pid() -> int | None:
    """The pid of the emulator this process started, if it can be found (Linux)."""
    for child in Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split():
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        if b"discobase_emulator" in cmdline:
            return int(child)
    return None


async def load(args: argparse.Namespace) -> dict[str, Any]:
    async with emulator_process(args) as url:
        db = discobase.Database(args.guild, api_url=url, guild_ready_timeout=0.2)

        @db.table(name="User")
        class User(UserSchema):
            pass

        db.login_task(args.token)
        await db.wait_ready()
        emu = emulator_pid()
        profiler = cProfile.Profile() if args.cprofile else None
        gc_clock = GcClock()
        gc.callbacks.append(gc_clock)
        emu_before = cpu_seconds(emu) if emu else 0.0
        cpu_before = time.process_time()
        start = time.perf_counter()
        gc_clock.running = True
        if profiler is not None:
            profiler.enable()
        saved = 0
        for first in range(0, args.records, args.chunk):
            block = range(first, min(first + args.chunk, args.records))
            records = await asyncio.gather(*(User(**user_fields(i)).save() for i in block))
            saved += len({r.disco_id for r in records})
        if profiler is not None:
            profiler.disable()
        gc_clock.running = False
        gc.callbacks.remove(gc_clock)
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu_before
        emu_cpu = (cpu_seconds(emu) - emu_before) if emu else float("nan")
        await db.close()
        if profiler is not None:
            profiler.dump_stats(args.cprofile)
    assert saved == args.records, f"{saved} of {args.records} saves got distinct ids"
    return {
        "seconds": seconds,
        "client_cpu": cpu,
        "emulator_cpu": emu_cpu,
        "gc_seconds": gc_clock.seconds,
        "gc_collections": gc_clock.collections,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=10_000)
    parser.add_argument("--profile", default="discord", choices=["discord", "fast", "unlimited"])
    parser.add_argument("--cprofile", help="profile the load; write pstats here")
    parser.add_argument("--token", default="cpu-bot-token")
    parser.add_argument("--guild", default="discobase cpu")
    args = parser.parse_args(argv)
    args.external = False
    reference = encode_hash_rate()
    out = asyncio.run(load(args))
    n = args.records
    rate = n / out["seconds"]
    ref_us, cpu_us = 1e6 / reference["cpu_per_s"], 1e6 * out["client_cpu"] / n
    gc_s, gc_n = out["gc_seconds"], out["gc_collections"]
    print(f"bulk load of {n} records ({args.profile} profile, {args.chunk} saves at a time):")
    print(f"  end to end   {out['seconds']:8.2f} s  {rate:10,.0f} records/s")
    print(f"  client CPU   {out['client_cpu']:8.2f} s  {cpu_us:10.1f} us/record")
    print(
        f"  of which GC  {sum(gc_s):8.2f} s  {1e6 * sum(gc_s) / n:10.1f} us/record  "
        f"({', '.join(f'gen{g} {gc_n[g]} x {gc_s[g]:.2f} s' for g in range(3))})"
    )
    print(
        f"  emulator CPU {out['emulator_cpu']:8.2f} s  "
        f"{1e6 * out['emulator_cpu'] / n:10.1f} us/record"
    )
    print(
        f"  core encode+hash {reference['per_s']:10,.0f} records/s wall, {ref_us:.1f} us/record CPU"
    )
    share = rate / reference["per_s"]
    met = rate >= CPU_BAR_RATE and share >= CPU_BAR_SHARE
    print(
        f"  CPU bar: {'met' if met else 'NOT MET'}: {rate:,.0f} records/s = {share:.3f}x "
        f"encode+hash (bar >= {CPU_BAR_RATE:,} records/s and >= {CPU_BAR_SHARE}x); in CPU "
        f"time the client's {cpu_us:.1f} us/record is {ref_us / cpu_us:.3f}x encode+hash"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
