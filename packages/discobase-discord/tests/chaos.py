"""Chaos harness: the proof that discobase never loses or doubles an acknowledged write.

    python packages/discobase-discord/tests/chaos.py [--full] [--seed N] [--profile fast]
        [--jobs 3] [--lease-ttl 3] [--only SCENARIO] [--keep NEW_FOLDER]

It runs the emulator as its own process on a --data folder (so it can be SIGKILLed and
restarted like a crashed Discord edge), and writer processes that use only the public API
(save / update / delete, one at a time and in asyncio.gather batches). Each writer appends to
a journal, flushed and fsynced line by line, every operation it STARTS and every one that is
ACKNOWLEDGED (its await returned), so the verifier knows what was promised and what was in
flight. Writers are SIGKILLed at random moments; the emulator is killed and restarted; faults
come through the control API (5xx, connections dropped before and after a write is handled,
latency, gateway drops, 429 storms). Then a fresh process opens the database and every record
is compared with the journals:

* lost: an acknowledged record (or value) missing, with no later operation in flight that
  could explain its absence;
* duplicated: one saved record (each carries a unique `marker`) stored more than once;
* wrong: a value, or a presence, that no acknowledged or in-flight operation wrote.

The rival scenarios (two writers on one database, half the time with the lease holder killed
mid-operation; a new writer opening while the old one is still closing) need the single-writer
lease (`discobase.LeaseHeldError`); on a build without it they are reported as skipped,
because two writers without a lease really do lose data. Every killed writer keeps the lease
until it runs out, so writers run with a short one (--lease-ttl, 3 s; Discord-facing
deployments keep the 30 s default): that also puts fencing under far more pressure.

It prints one table and exits 1 on any loss, duplicate, wrong value or failed verification.
Kill points are random but drawn from --seed, so a failing seed can be replayed (timing still
varies between machines, so a replay is likely, not certain, to hit the same interleaving).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import socket
import sys
import tempfile
import textwrap
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TOKEN = "chaos-token"
WRITE_ROUTES = (
    "POST /channels/{channel_id}/messages",
    "PATCH /channels/{channel_id}/messages/{message_id}",
    "DELETE /channels/{channel_id}/messages/{message_id}",
)
START_LIMIT_S = 60.0  # a writer that is not ready by then counts as a failed trial
TRIAL_LIMIT_S = 45.0  # a writer whose operation never returns is killed (and reported as hung)
READ_LIMIT_S = 180.0

# The writer and the reader share this preamble: the schema and how to open the database.
# `lease_wait`, `lease_ttl` and `read_only` are only passed when this build has them.
PREAMBLE = """
import asyncio, inspect, json, os, random, sys, time
import discobase

CONFIG = json.loads(sys.argv[1])
if os.environ.get("CHAOS_DEBUG"):  # discobase's debug log to the writer's .err file
    import logging
    logging.basicConfig(stream=sys.stderr, format="%(created).3f %(message)s")
    logging.getLogger("discobase").setLevel(logging.DEBUG)
_params = inspect.signature(discobase.Database).parameters
_kwargs = {"guild_ready_timeout": 0.1}
if "lease_wait" in _params and CONFIG.get("lease_wait") is not None:
    _kwargs["lease_wait"] = CONFIG["lease_wait"]
if "lease_ttl" in _params and CONFIG.get("lease_ttl") is not None:
    _kwargs["lease_ttl"] = CONFIG["lease_ttl"]
if "read_only" in _params and CONFIG.get("read_only"):
    _kwargs["read_only"] = True
db = discobase.Database(CONFIG["guild"], api_url=CONFIG["url"], **_kwargs)


@db.table
class ChaosRecord(discobase.Table):
    marker: str
    value: int
    lineage: str
"""

WRITER = (
    PREAMBLE
    + """
_journal = open(CONFIG["journal"], "a", encoding="utf-8")


def note(**event):
    event["t"] = time.time_ns()
    event["w"] = CONFIG["writer"]
    _journal.write(json.dumps(event) + "\\n")
    _journal.flush()
    os.fsync(_journal.fileno())


rng = random.Random(CONFIG["seed"])
ATTEMPTS = 4


async def attempt(op, rec):
    \"\"\"One operation, retried on the SAME record object after any failure, as an
    application would (the API promises that never duplicates); every try is journalled as
    started, then acknowledged or failed (with the error's type: one that is not a
    DiscobaseError is reported as untranslated).\"\"\"
    for i in range(ATTEMPTS):
        if op == "save" and rec.disco_id is not None:
            return False  # the failed save kept its id: it is stored, saving again is refused
        note(ev="start", op=op, m=rec.marker, v=rec.value, n=i)
        try:
            if op == "save":
                await rec.save()
            elif op == "update":
                await rec.update()
            else:
                await rec.delete()
        except Exception as exc:
            details = getattr(exc, "details", {}) or {}
            note(
                ev="fail", op=op, m=rec.marker, v=rec.value, err=type(exc).__name__,
                maybe=details.get("maybe_stored"), msg=str(exc)[:300],
                translated=isinstance(exc, discobase.DiscobaseError),
            )
            if isinstance(exc, discobase.NotFoundError):
                return False
            await asyncio.sleep(0.05 * 2**i)
            continue
        note(ev="ack", op=op, m=rec.marker, v=rec.value)
        return True
    return False


async def main():
    note(ev="opening")
    db.login_task(CONFIG["token"])
    try:
        async with asyncio.timeout(CONFIG["start_limit"]):
            await db.wait_ready()
    except Exception as exc:
        lease = getattr(discobase, "LeaseHeldError", None)
        note(ev="lease_held" if lease and isinstance(exc, lease) else "open_failed",
             err=type(exc).__name__, msg=str(exc)[:300])
        await db.close()
        sys.exit(3)
    note(ev="ready")
    compacting = None

    async def compact():
        note(ev="compact_start")
        try:
            await db.compact()
        except Exception as exc:
            note(ev="compact_end", err=type(exc).__name__, msg=str(exc)[:300])
        else:
            note(ev="compact_end")

    lineage = CONFIG["lineage"]
    live = [r for r in await ChaosRecord.find(lineage=lineage)]
    rng.shuffle(live)
    made = 0
    done = 0
    while done < CONFIG["ops"]:
        size = 1 if CONFIG["mode"] == "seq" else rng.randint(2, 8)
        batch = []
        busy = set()
        for _ in range(min(size, CONFIG["ops"] - done)):
            free = [r for r in live if id(r) not in busy]
            roll = rng.random()
            if not free or roll < 0.5:
                rec = ChaosRecord(
                    marker=f"{CONFIG['prefix']}:{made}", value=rng.randrange(10**9),
                    lineage=lineage,
                )
                made += 1
                batch.append(("save", rec))
            elif roll < 0.8:
                rec = rng.choice(free)
                rec.value = rng.randrange(10**9)
                batch.append(("update", rec))
            else:
                rec = rng.choice(free)
                live.remove(rec)
                batch.append(("delete", rec))
            busy.add(id(rec))
        if (compacting is None or compacting.done()) and rng.random() < 0.12:
            compacting = asyncio.create_task(compact())  # runs beside the writes
        results = await asyncio.gather(*(attempt(op, rec) for op, rec in batch))
        for (op, rec), ok in zip(batch, results):
            if op == "save" and ok:
                live.append(rec)
        done += len(batch)
    if compacting is not None:
        await compacting
    note(ev="closing")
    await db.close()
    note(ev="closed")


asyncio.run(main())
"""
)

READER = (
    PREAMBLE
    + """
async def main():
    try:
        async with db.conn(CONFIG["token"]):
            found = await ChaosRecord.find()
    except discobase.DatabaseTableError as exc:
        if "nothing is stored there yet" not in str(exc):
            raise
        found = []  # every writer died before creating the table: the journals decide
    print(json.dumps([
        {"m": r.marker, "v": r.value, "lineage": r.lineage, "id": r.disco_id} for r in found
    ]))


asyncio.run(main())
"""
)


def lease_in_build() -> bool:
    """Whether this discobase has the single-writer lease (the rival scenarios need it)."""
    import discobase

    return hasattr(discobase, "LeaseHeldError")


def lease_ttl(wanted: float) -> float:
    """How long a SIGKILLed writer's lease outlives it (every kill costs the next writer that
    long): `wanted` when this build has a lease, else 0."""
    import discobase

    return wanted if hasattr(discobase, "LEASE_TTL") else 0.0


@dataclass
class Scenario:
    """One row of the table: `trials` writer lifetimes against one database (a guild)."""

    name: str
    trials: int
    mode: str  # "seq", "conc" or "mixed" (each trial picks one)
    ops: int = 40  # enough that, rate limited, a writer is mid-operation most of its life
    faults: str = ""  # "", "answers" (5xx, 429 storms, latency, gateway drops) or "drops"
    restart_emulator: bool = False
    rivals: str = ""  # "", "together" (two writers at once) or "rolling" (new opens, old closes)

    @property
    def guild(self) -> str:
        return f"chaos {self.name}"


@dataclass
class Row:
    """One scenario's tally. `faults` counts writer kills, emulator kills, fault plans,
    gateway drops and every faulty answer the emulator injected; `crashes` lists writers
    that died or hung by themselves (reported, judged by what they acknowledged)."""

    scenario: str
    trials: int = 0
    kills: int = 0
    faults: int = 0
    acknowledged: int = 0
    lost: int = 0
    duplicated: int = 0
    wrong: int = 0
    note: str = ""
    failed: bool = False
    findings: list[str] = field(default_factory=list)
    kill_points: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)
    crashes: list[str] = field(default_factory=list)
    compactions: Counter[str] = field(default_factory=Counter)  # started, finished, failed


def scenarios(full: bool) -> list[Scenario]:
    """The full run: >= 200 writer kills over save/update/delete, sequential and concurrent;
    the quick one: a few trials of each kind, for the default test run. The longest come
    first, so the scenarios running side by side finish close together."""
    if full:
        return [
            Scenario("dropped connections", 45, "mixed", faults="drops"),
            Scenario("faults", 40, "mixed", faults="answers"),
            Scenario("sequential", 60, "seq"),
            Scenario("concurrent", 60, "conc"),
            Scenario("emulator restart", 35, "mixed", restart_emulator=True),
            Scenario("rivals", 8, "conc", rivals="together"),
            Scenario("rolling restart", 8, "conc", rivals="rolling"),
        ]
    return [
        Scenario("dropped connections", 3, "mixed", ops=16, faults="drops"),
        Scenario("faults", 3, "mixed", ops=16, faults="answers"),
        Scenario("sequential", 2, "seq", ops=16),
        Scenario("concurrent", 2, "conc", ops=16),
        Scenario("emulator restart", 2, "mixed", ops=16, restart_emulator=True),
        Scenario("rivals", 1, "conc", ops=8, rivals="together"),
        Scenario("rolling restart", 1, "conc", ops=8, rivals="rolling"),
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmulatorProcess:
    """`python -m discobase_emulator` on a --data folder, on a fixed port so that writers
    find it again after a SIGKILL and restart."""

    def __init__(self, data: Path, guilds: list[str], profile: str) -> None:
        self.data = data
        self.guilds = guilds
        self.profile = profile
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: asyncio.subprocess.Process | None = None
        self.killed_counts: Counter[str] = Counter()  # injected by emulators since killed

    async def start(self) -> None:
        args = ["--port", str(self.port), "--data", str(self.data), "--token", TOKEN]
        for guild in self.guilds:
            args += ["--guild", guild]
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "discobase_emulator",
            *args,
            "--profile",
            self.profile,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        async with asyncio.timeout(30):
            line = (await self.proc.stdout.readline()).decode()
        if "listening on" not in line:
            raise RuntimeError(f"the emulator did not start: {line!r}")

    async def injected(self) -> Counter[str]:
        """Faults injected so far, by kind (the running emulator's counters die with it)."""
        from discobase_emulator import EmulatorControl

        out = Counter(self.killed_counts)
        with contextlib.suppress(Exception):
            async with EmulatorControl(self.url) as control:
                metrics = await control.metrics()
                out.update({k: int(v) for k, v in metrics.get("faults", {}).items()})
        return out

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no flush; only what SQLite committed survives."""
        self.killed_counts = await self.injected()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                async with asyncio.timeout(30):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


class Writer:
    """One writer process and its journal."""

    def __init__(self, path: Path, journal: Path) -> None:
        self.script = path
        self.journal = journal
        self.proc: asyncio.subprocess.Process | None = None
        self.killed = False

    async def start(self, config: dict[str, Any]) -> None:
        self.killed = False
        with self.stderr.open("wb") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(self.script),
                json.dumps({**config, "journal": str(self.journal)}),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=err,
                env={**os.environ, "PYTHONWARNINGS": "ignore"},
            )

    @property
    def stderr(self) -> Path:
        return self.journal.with_suffix(".err")

    def crash(self) -> str | None:
        """How the writer died on its own (a traceback's last line), or None if it did not:
        exited 0, was killed by us, or was refused by the lease (exit 3)."""
        if self.proc is None or self.killed or self.proc.returncode in (None, 0, 3):
            return None
        lines = self.stderr.read_text(errors="replace").strip().splitlines()
        return f"exit {self.proc.returncode}: {lines[-1] if lines else 'no output'}"

    def events(self) -> list[dict[str, Any]]:
        if not self.journal.exists():
            return []
        out = []
        for line in self.journal.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):  # a line cut by the kill is not an event
                out.append(json.loads(line))
        return out

    def count(self, ev: str) -> int:
        return sum(1 for e in self.events() if e.get("ev") == ev)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def until(self, predicate: Any, limit_s: float) -> bool:
        """Poll the journal until `predicate(self)` holds or the writer exits; True if it held."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            if not self.running:
                return bool(predicate(self))
            await asyncio.sleep(0.005)
        return False

    async def kill(self) -> str:
        """SIGKILL now; returns what was in flight ("save", "update", "delete", "compact",
        several joined by "+", or "idle")."""
        if self.proc is None or self.proc.returncode is not None:
            return ""
        self.killed = True
        self.proc.kill()
        await self.proc.wait()
        open_ops: dict[str, str] = {}
        for event in self.events():
            if event.get("ev") == "start":
                open_ops[event["m"]] = event["op"]
            elif event.get("ev") in ("ack", "fail"):
                open_ops.pop(event["m"], None)
            elif event.get("ev") == "compact_start":
                open_ops["compaction"] = "compact"
            elif event.get("ev") == "compact_end":
                open_ops.pop("compaction", None)
        kinds = sorted(set(open_ops.values()))
        return "+".join(kinds) if kinds else "idle"

    async def wait(self, limit_s: float) -> bool:
        """Wait for the writer to exit; SIGKILL it after `limit_s` (then False: it hung)."""
        if self.proc is None:
            return True
        try:
            async with asyncio.timeout(limit_s):
                await self.proc.wait()
        except TimeoutError:
            self.killed = True
            self.proc.kill()
            await self.proc.wait()
            return False
        return True


def verify(events: list[dict[str, Any]], records: list[dict[str, Any]], row: Row) -> None:
    """Compare what the reopened database holds with what the journals promised."""
    events = sorted(events, key=lambda e: int(e.get("t", 0)))
    acked: dict[str, tuple[bool, int | None]] = {}  # marker -> (present, value)
    pending: dict[str, list[tuple[bool, int | None]]] = {}
    for event in events:
        ev = event.get("ev")
        if ev == "compact_start":
            row.compactions["started"] += 1
        elif ev == "compact_end":
            row.compactions["failed" if event.get("err") else "finished"] += 1
            if event.get("err"):
                row.errors[f"compact: {event['err']}"] += 1
        if ev == "fail":
            kind = "" if event.get("translated", True) else " (not a DiscobaseError)"
            maybe = event.get("maybe")
            tag = "" if maybe is None else f" maybe_stored={maybe}"
            row.errors[f"{event['op']}: {event['err']}{kind}{tag}"] += 1
        if ev not in ("start", "ack"):
            continue
        marker = event["m"]
        state = (event["op"] != "delete", event["v"] if event["op"] != "delete" else None)
        if ev == "start":
            pending.setdefault(marker, []).append(state)
        else:
            row.acknowledged += 1
            acked[marker] = state
            pending[marker] = []

    def history(marker: str) -> str:
        steps = []
        for event in events:
            if event.get("m") == marker and event.get("ev") in ("start", "ack", "fail"):
                step = f"{event.get('w', '?')} {event['op']} {event['ev']}"
                if event["ev"] == "fail":
                    step += f" ({event.get('err')})"
                steps.append(step)
        return "; ".join(steps)

    found: dict[str, list[int]] = {}
    for rec in records:
        found.setdefault(rec["m"], []).append(int(rec["v"]))
    for marker, values in sorted(found.items()):
        if len(values) > 1:
            row.duplicated += 1
            row.findings.append(
                f"duplicated {marker}: stored {len(values)} times {values}; "
                f"journal: {history(marker)}"
            )
        if marker not in acked and marker not in pending:
            row.wrong += 1
            row.findings.append(f"wrong {marker}: stored but never written {values}")
    for marker in sorted(set(acked) | set(pending)):
        values = found.get(marker, [])
        now = (True, values[-1]) if values else (False, None)
        allowed = {acked.get(marker, (False, None)), *pending.get(marker, [])}
        if now in allowed:
            continue
        last = acked.get(marker)
        if last is not None and last[0] and not values:
            row.lost += 1
            row.findings.append(
                f"lost {marker}: acknowledged value {last[1]} is gone"
                f" (in flight: {pending.get(marker) or 'nothing'}); journal: {history(marker)}"
            )
        else:
            row.wrong += 1
            want = "deleted" if last is not None and not last[0] else last
            row.findings.append(
                f"wrong {marker}: stored {values}, acknowledged {want}, "
                f"in flight {pending.get(marker) or 'nothing'}; journal: {history(marker)}"
            )


class Run:
    def __init__(self, workdir: Path, seed: int, profile: str, ttl: float) -> None:
        self.ttl = lease_ttl(ttl)
        self.workdir = workdir
        self.seed = seed
        self.profile = profile
        self.writer_py = workdir / "writer.py"
        self.reader_py = workdir / "reader.py"
        self.writer_py.write_text(textwrap.dedent(WRITER), encoding="utf-8")
        self.reader_py.write_text(textwrap.dedent(READER), encoding="utf-8")

    async def scenario(self, sc: Scenario) -> Row:
        row = Row(sc.name)
        if sc.rivals and not lease_in_build():
            row.note = "skipped: no lease in this build"
            return row
        rng = random.Random(f"{self.seed}:{sc.name}")
        folder = self.workdir / re.sub(r"\W+", "-", sc.name)
        folder.mkdir()
        emu = EmulatorProcess(folder / "data", [sc.guild], self.profile)
        await emu.start()
        journals: list[Writer] = []
        try:
            for trial in range(sc.trials):
                row.trials += 1
                if sc.rivals:
                    await self.rival_trial(sc, emu, folder, trial, rng, row, journals)
                else:
                    await self.trial(sc, emu, folder, trial, rng, row, journals)
            await self.set_faults(emu, None)
            records = await self.read(sc, emu, row)
            if records is not None:
                events = [e for w in journals for e in w.events()]
                verify(events, records, row)
        finally:
            row.injected = await emu.injected()
            row.faults += sum(row.injected.values())
            await emu.stop()
        return row

    def config(
        self, sc: Scenario, emu: EmulatorProcess, name: str, lineage: str, mode: str, seed: int
    ) -> dict[str, Any]:
        return {
            "url": emu.url,
            "token": TOKEN,
            "guild": sc.guild,
            "writer": name,
            "prefix": name,
            "lineage": lineage,
            "mode": mode,
            "ops": sc.ops,
            "seed": seed,
            "start_limit": START_LIMIT_S,
            "lease_wait": self.ttl + 30.0,
            "lease_ttl": self.ttl or None,
        }

    async def set_faults(self, emu: EmulatorProcess, plan: dict[str, Any] | None) -> None:
        from discobase_emulator import EmulatorControl

        async with EmulatorControl(emu.url) as control:
            await control.faults(**(plan or {}))

    def fault_plan(self, sc: Scenario, rng: random.Random, trial_seed: int) -> dict[str, Any]:
        """Faults for one trial. "answers": 5% 5xx and some latency on every route, a 429
        storm one trial in three (and gateway drops, fired during the trial). "drops": on
        message sends, edits and deletes, 8% of connections closed before handling and 8%
        after (the write stored, the answer lost), plus 5% 5xx there."""
        plan: dict[str, Any] = {"error_rate": 0.05, "seed": trial_seed}
        if sc.faults == "drops":
            plan.update(drop_before=0.08, drop_after=0.08, only_routes=list(WRITE_ROUTES))
            return plan
        plan["latency"] = rng.choice((0.0, 0.005, 0.02))
        if rng.random() < 0.33:
            plan.update(storm_429=0.3, storm_retry_after=0.05)
        return plan

    async def trial(
        self,
        sc: Scenario,
        emu: EmulatorProcess,
        folder: Path,
        trial: int,
        rng: random.Random,
        row: Row,
        journals: list[Writer],
    ) -> None:
        """One writer lifetime, SIGKILLed after a random number of started operations (one
        trial in ten runs to a clean close instead)."""
        mode = sc.mode if sc.mode != "mixed" else rng.choice(("seq", "conc"))
        name = f"t{trial}"
        writer = Writer(self.writer_py, folder / f"journal-{name}.jsonl")
        journals.append(writer)
        trial_seed = rng.randrange(2**31)
        plan = self.fault_plan(sc, rng, trial_seed) if sc.faults else None
        await self.set_faults(emu, plan)
        if plan is not None:
            row.faults += 1  # the plan itself; the emulator counts each injected answer
        await writer.start(self.config(sc, emu, name, "main", mode, trial_seed))
        kill_at = rng.randint(1, sc.ops)
        clean = trial % 10 == 9
        if sc.restart_emulator:
            await self.emulator_crash(emu, writer, rng, row)
        elif (
            plan is not None
            and sc.faults == "answers"
            and rng.random() < 0.5
            and await writer.until(lambda w: w.count("start") >= max(1, kill_at // 2), 30)
        ):
            await self.fire_gateway_drop(emu, rng, plan)
            row.faults += 1
        if clean:
            if not await writer.wait(TRIAL_LIMIT_S):
                row.crashes.append(self.hung(writer, name))
            self.note_crash(writer, name, row)
            return
        reached = await writer.until(lambda w: w.count("start") >= kill_at, TRIAL_LIMIT_S)
        if not reached and writer.running:
            row.crashes.append(self.hung(writer, name))
        elif reached:
            await asyncio.sleep(rng.random() * 0.015)  # land inside the await, not on its edge
        point = await writer.kill()
        self.note_crash(writer, name, row)
        if point:
            row.kills += 1
            row.faults += 1
            row.kill_points[f"{mode} {point}"] += 1

    @staticmethod
    def hung(writer: Writer, name: str) -> str:
        """A writer stuck for TRIAL_LIMIT_S: which operations never returned."""
        open_ops: dict[str, str] = {}
        last = ""
        for event in writer.events():
            last = str(event.get("ev"))
            if event.get("ev") == "start":
                open_ops[event["m"]] = event["op"]
            elif event.get("ev") in ("ack", "fail"):
                open_ops.pop(event["m"], None)
        stuck = ", ".join(f"{op} {m}" for m, op in open_ops.items()) or f"after {last!r}"
        return f"writer {name} hung for {TRIAL_LIMIT_S:.0f} s (never returned: {stuck})"

    @staticmethod
    def note_crash(writer: Writer, name: str, row: Row) -> None:
        """A writer that died by itself is a finding (it does not fail the run by itself:
        the verifier still judges what it acknowledged)."""
        crash = writer.crash()
        if crash is not None:
            row.crashes.append(f"writer {name} crashed ({crash})")

    async def fire_gateway_drop(
        self, emu: EmulatorProcess, rng: random.Random, plan: dict[str, Any]
    ) -> None:
        """Drop the writer's gateway connection one of three ways, keeping the REST faults
        (the control API sets them all at once; the seed is left alone)."""
        kind = rng.choice(("gateway_disconnect", "gateway_reconnect", "invalid_session"))
        keep = {k: v for k, v in plan.items() if k != "seed"}
        with contextlib.suppress(Exception):
            await self.set_faults(emu, {**keep, kind: True})

    async def emulator_crash(
        self, emu: EmulatorProcess, writer: Writer, rng: random.Random, row: Row
    ) -> None:
        """SIGKILL the emulator while the writer works, restart it on the same --data."""
        target = rng.randint(1, 10)
        if not await writer.until(lambda w: w.count("start") >= target, TRIAL_LIMIT_S):
            return
        await asyncio.sleep(rng.random() * 0.03)
        await emu.kill()
        row.faults += 1
        await emu.start()

    async def rival_trial(
        self,
        sc: Scenario,
        emu: EmulatorProcess,
        folder: Path,
        trial: int,
        rng: random.Random,
        row: Row,
        journals: list[Writer],
    ) -> None:
        """Two writers on one database. "together": both open at once, each on its own
        records; the lease lets one write, the other waits (or is refused). "rolling": the
        new writer opens as soon as the old one starts closing. Every acknowledged write of
        both must survive."""
        first = Writer(self.writer_py, folder / f"journal-t{trial}a.jsonl")
        second = Writer(self.writer_py, folder / f"journal-t{trial}b.jsonl")
        journals += [first, second]
        await first.start(self.config(sc, emu, f"t{trial}a", "a", "conc", rng.randrange(2**31)))
        if sc.rivals == "rolling":
            await first.until(lambda w: w.count("closing") >= 1, TRIAL_LIMIT_S)
        kill_holder = sc.rivals == "together" and trial % 2 == 0
        target = rng.randint(1, sc.ops)
        await second.start(self.config(sc, emu, f"t{trial}b", "b", "conc", rng.randrange(2**31)))
        if kill_holder:
            # Whichever writer got the lease is the one writing: kill it mid-operation; the
            # other must take over once the lease runs out and lose nothing it acknowledged.
            writers = (first, second)
            if await first.until(
                lambda _: any(w.count("start") >= target for w in writers), TRIAL_LIMIT_S
            ):
                holder = max(writers, key=lambda w: w.count("start"))
                point = await holder.kill()
                if point:
                    row.kills += 1
                    row.faults += 1
                    row.kill_points[f"conc {point}"] += 1
        await first.wait(TRIAL_LIMIT_S + self.ttl)
        await second.wait(TRIAL_LIMIT_S + self.ttl)
        self.note_crash(first, f"t{trial}a", row)
        self.note_crash(second, f"t{trial}b", row)
        refused = sum(w.count("lease_held") for w in (first, second))
        if refused:
            row.note = f"{refused} opening(s) refused by the lease"

    async def read(self, sc: Scenario, emu: EmulatorProcess, row: Row) -> list[Any] | None:
        """Open the database in a fresh process and list every record."""
        config = {
            "url": emu.url,
            "token": TOKEN,
            "guild": sc.guild,
            "read_only": True,
            "lease_wait": self.ttl + 30.0,
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(self.reader_py),
            json.dumps(config),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        try:
            async with asyncio.timeout(READ_LIMIT_S + self.ttl):
                out, err = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            row.failed = True
            row.findings.append("verification: the reader did not finish")
            return None
        if proc.returncode != 0:
            row.failed = True
            tail = err.decode(errors="replace").strip().splitlines()[-3:]
            row.findings.append("verification: the reader failed: " + " | ".join(tail))
            return None
        records: list[Any] = json.loads(out.decode().strip().splitlines()[-1])
        return records


def table(rows: list[Row]) -> str:
    heads = ["scenario", "trials", "kills", "faults", "acknowledged", "lost", "duplicated", "wrong"]
    body: list[list[Any]] = [
        [r.scenario, r.trials, r.kills, r.faults, r.acknowledged, r.lost, r.duplicated, r.wrong]
        for r in rows
    ]
    total = ["total", *(sum(int(b[i]) for b in body) for i in range(1, len(heads)))]
    widths = [max(len(str(x[i])) for x in [heads, *body, total]) for i in range(len(heads))]

    def line(cells: list[Any], note: str = "") -> str:
        text = "  ".join(
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )
        return f"{text}  {note}".rstrip()

    out = [line(heads), line(["-" * w for w in widths])]
    for row, cells in zip(rows, body, strict=True):
        out.append(line(cells, ("VERIFICATION FAILED " if row.failed else "") + row.note))
    out.append(line(total))
    return "\n".join(out)


def report(rows: list[Row], seed: int, elapsed: float, lease: str) -> str:
    lines = [table(rows), ""]
    points: Counter[str] = Counter()
    for row in rows:
        points.update(row.kill_points)
    by_op: Counter[str] = Counter()
    by_mode: Counter[str] = Counter()
    for key, n in points.items():
        mode, _, ops = key.partition(" ")
        by_mode[mode] += n
        for op in ops.split("+"):
            by_op[op] += n
    spread = ""
    if points:
        ops = ", ".join(f"{k} {v}" for k, v in sorted(by_op.items()))
        modes = ", ".join(f"{k} {v}" for k, v in sorted(by_mode.items()))
        spread = f" (in flight: {ops}; {modes})"
    lines.append(
        f"writer kill points: {sum(points.values())}{spread}; seed {seed}; {lease}; {elapsed:.0f} s"
    )
    compactions: Counter[str] = Counter()
    for row in rows:
        compactions.update(row.compactions)
    if compactions:
        lines.append(
            "compactions beside the writes: "
            + ", ".join(f"{k} {compactions[k]}" for k in ("started", "finished", "failed"))
        )
    injected: Counter[str] = Counter()
    for row in rows:
        injected.update(row.injected)
    if injected:
        lines.append(
            "injected answers: " + ", ".join(f"{k} {v}" for k, v in sorted(injected.items()))
        )
    errors: Counter[str] = Counter()
    for row in rows:
        errors.update(row.errors)
    if errors:
        lines.append(
            "failed tries (retried on the same record): "
            + ", ".join(f"{k} x{v}" for k, v in errors.most_common())
        )
    for row in rows:
        for crash in row.crashes[:10]:
            lines.append(f"[{row.scenario}, seed {seed}] {crash}")
        if len(row.crashes) > 10:
            lines.append(f"[{row.scenario}] ... and {len(row.crashes) - 10} more crashes")
        for finding in row.findings[:20]:
            lines.append(f"[{row.scenario}, seed {seed}] {finding}")
        if len(row.findings) > 20:
            lines.append(f"[{row.scenario}] ... and {len(row.findings) - 20} more")
    return "\n".join(lines)


async def run(
    full: bool,
    seed: int,
    profile: str,
    only: list[str] | None = None,
    jobs: int = 3,
    keep: Path | None = None,
    ttl: float = 3.0,
) -> int:
    """Run every scenario (or those named in `only`), `jobs` at a time (each has its own
    emulator, so they cannot disturb each other; much of a trial is spent waiting for a
    killed writer's lease to run out, so three fit two cores); print the table; 0 when
    nothing was lost, doubled or wrong and every verification ran."""
    started = time.monotonic()
    chosen = [sc for sc in scenarios(full) if not only or sc.name in only]
    gate = asyncio.Semaphore(max(1, jobs))

    async def one(chaos: Run, sc: Scenario) -> Row:
        async with gate:
            row = await chaos.scenario(sc)
        print(f"... {sc.name}: done", file=sys.stderr, flush=True)
        return row

    with contextlib.ExitStack() as stack:
        if keep is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chaos-")))
        else:
            workdir = keep
            workdir.mkdir(parents=True)
        chaos = Run(workdir, seed, profile, ttl)
        rows = list(await asyncio.gather(*(one(chaos, sc) for sc in chosen)))
        lease = f"lease {chaos.ttl:g} s" if chaos.ttl else "no lease in this build"
    print(report(rows, seed, time.monotonic() - started, lease), flush=True)
    bad = any(r.lost or r.duplicated or r.wrong or r.failed for r in rows)
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="the full run (>= 200 kills)")
    parser.add_argument("--seed", type=int, default=None, help="default: drawn and printed")
    parser.add_argument("--profile", default="fast", choices=("fast", "discord", "unlimited"))
    parser.add_argument("--only", action="append", help="run only this scenario (repeatable)")
    parser.add_argument("--jobs", type=int, default=3, help="scenarios run at once")
    parser.add_argument(
        "--lease-ttl",
        type=float,
        default=3.0,
        help="writers' lease length (s, discobase allows 3..3600): a killed writer blocks "
        "the next one this long",
    )
    parser.add_argument(
        "--keep", type=Path, default=None, help="a new folder to keep journals and data in"
    )
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(10**6)
    with contextlib.suppress(AttributeError):  # Windows has no SIGPIPE
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    return asyncio.run(
        run(args.full, seed, args.profile, args.only, args.jobs, args.keep, args.lease_ttl)
    )


if __name__ == "__main__":
    sys.exit(main())
