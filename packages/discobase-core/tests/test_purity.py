"""The core is pure: no I/O, event loop, clock or unseeded randomness (see ARCHITECTURE.md)."""

from __future__ import annotations

import ast
import json
import pathlib
import subprocess
import sys

import discobase_core

SRC = pathlib.Path(discobase_core.__file__).parent
BANNED = {
    "asyncio",
    "discord",
    "aiohttp",
    "socket",
    "ssl",
    "time",
    "random",
    "threading",
    "subprocess",
    "os",
    "urllib",
    "http",
    "sqlite3",
    "selectors",
    "multiprocessing",
    "shutil",
    "tempfile",
    "pathlib",
}
BANNED_CALLS = {"open", "input", "exec", "eval", "breakpoint", "__import__"}
BANNED_ATTRS = {"now", "utcnow", "today", "fromtimestamp", "utcfromtimestamp"}


def modules() -> list[pathlib.Path]:
    found = sorted(SRC.rglob("*.py"))
    assert len(found) >= 6
    return found


def test_no_impure_imports_or_calls() -> None:
    problems: list[str] = []
    for path in modules():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                if name.split(".")[0] in BANNED:
                    problems.append(f"{path.name}:{node.lineno} imports {name}")
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name) and func.id in BANNED_CALLS:
                    problems.append(f"{path.name}:{node.lineno} calls {func.id}()")
                if isinstance(func, ast.Attribute) and func.attr in BANNED_ATTRS:
                    problems.append(f"{path.name}:{node.lineno} calls .{func.attr}()")
    assert problems == []


def test_importing_the_core_loads_no_io_modules() -> None:
    code = (
        "import sys, json; "
        # Baseline: pydantic fully loaded (it imports socket, threading... itself) and the
        # stdlib modules the core imports on purpose.
        "import pydantic, pydantic_core, pydantic.json_schema, uuid, decimal, datetime, base64, "
        "zlib, hashlib, struct, re, enum, json, pydantic.types, pydantic.fields; "
        "from pydantic import BaseModel, TypeAdapter; TypeAdapter(int).validate_python(1); "
        "type('M', (BaseModel,), {'__annotations__': {'x': int}}); "
        "before = set(sys.modules); "
        "import discobase_core, discobase_core.codec, discobase_core.index, "
        "discobase_core.hashing, discobase_core.schema, discobase_core.errors; "
        "print(json.dumps([sorted(before), sorted(set(sys.modules) - before)]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, added = (set(names) for names in json.loads(out.stdout))
    # Nothing the core pulls in beyond that does I/O.
    assert not {name.split(".")[0] for name in added} & BANNED, added
    assert not {"asyncio", "discord", "aiohttp"} & (before | added)
