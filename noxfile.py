"""Developer tasks. `nox` runs lint, typecheck and tests; `nox -s bench` runs the benchmarks;
`nox -s build` builds every package into dist/, `nox -s install_check` proves each installs
alone from there; `nox -s docs` builds the documentation site (strict); `nox -s chaos` runs
the full chaos harness (kills, faults, restarts; several minutes).

Every package is tested in its own environment holding only its declared dependencies plus
its `test` dependency group, so a missing dependency fails here and not on a user's machine.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import nox

nox.needs_version = ">=2024.10.9"
nox.options.default_venv_backend = "uv"
nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

PACKAGES = ["discobase-core", "discobase-emulator", "discobase-discord", "discobase-cli"]
# What each package must import once installed alone, and what it must not drag in.
IMPORTS = {
    "discobase-core": ("discobase_core", ["discord", "aiohttp", "discobase"]),
    "discobase-emulator": ("discobase_emulator", ["discord", "discobase", "discobase_core"]),
    "discobase-discord": ("discobase", ["discobase_emulator", "typer"]),
    "discobase-cli": ("discobase_cli.main", []),
}
ROOT = Path(__file__).parent
DIST = ROOT / "dist"
# The README's install line from a clone: the library and the emulator, no index needed for ours.
README_PATHS = [
    f"./packages/{p}" for p in ("discobase-core", "discobase-discord", "discobase-emulator")
]


def sync(session: nox.Session, *args: str) -> None:
    """Install exactly what uv.lock pins for the given selection into the session's venv."""
    session.run_install(
        "uv",
        "sync",
        "--locked",
        "--no-default-groups",
        *args,
        f"--python={session.virtualenv.location}",
        env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location},
    )


@nox.session
@nox.parametrize("package", PACKAGES, ids=PACKAGES)
def tests(session: nox.Session, package: str) -> None:
    """Run one package's tests with only that package's dependencies installed."""
    sync(session, "--package", package, "--group", "test")
    session.run("pytest", f"packages/{package}/tests", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole tree."""
    sync(session, "--only-group", "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over every package's sources and the benchmarks."""
    sync(session, "--all-packages", "--group", "lint", "--group", "test")
    session.run(
        "mypy",
        "packages/discobase-core/src/discobase_core",
        "packages/discobase-emulator/src/discobase_emulator",
        "packages/discobase-discord/src/discobase",
        "packages/discobase-cli/src/discobase_cli",
        "benchmarks/workload.py",
        "benchmarks/scale.py",
        "benchmarks/latency.py",
    )


@nox.session(default=False)
def chaos(session: nox.Session) -> None:
    """The full chaos run: hundreds of SIGKILLed writers, emulator crashes and injected faults,
    then a check that no acknowledged write was lost, doubled or changed. Installed exactly as
    the discobase-discord `tests` session is, since the harness lives in its tests; extra
    arguments go to chaos.py (for example `nox -s chaos -- --seed 7`)."""
    sync(session, "--package", "discobase-discord", "--group", "test")
    session.run("python", "packages/discobase-discord/tests/chaos.py", "--full", *session.posargs)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks: the core's micro-benchmarks, the standard workload at 10,000 records (its
    bars checked), write latency (do saves stall behind Discord's rate limits? checked), then
    the scale benchmark at 100,000 records (a few minutes; its bars are issue 9's for
    1,000,000 records and are reported, not checked)."""
    sync(session, "--package", "discobase-benchmarks", "--group", "test")
    session.run("pytest", "benchmarks", "--benchmark-only", *session.posargs)
    session.run(
        "python",
        "benchmarks/workload.py",
        "--records",
        "10000",
        "--json",
        "workload-report.json",
        "--check-bars",
    )
    session.run("python", "benchmarks/latency.py", "--json", "latency-report.json", "--check-bars")
    session.run(
        "python", "benchmarks/scale.py", "--records", "100000", "--json", "scale-report.json"
    )


@nox.session(default=False)
def docs(session: nox.Session) -> None:
    """Build the documentation site (mkdocs-material, mkdocstrings) into site/, strictly:
    any warning (a broken link, an unknown reference) fails the build."""
    sync(session, "--all-packages", "--group", "docs")
    session.run(
        "mkdocs",
        "build",
        "--strict",
        "--site-dir",
        str(ROOT / "site"),
        env={"NO_MKDOCS_2_WARNING": "1"},
    )


def build_dist(session: nox.Session) -> None:
    """A wheel and an sdist of every package in dist/ (emptied first)."""
    shutil.rmtree(DIST, ignore_errors=True)
    for package in PACKAGES:
        session.run("uv", "build", "--package", package, "--out-dir", str(DIST), external=True)
        stem = package.replace("-", "_")
        if not list(DIST.glob(f"{stem}-*.whl")) or not list(DIST.glob(f"{stem}-*.tar.gz")):
            session.error(f"uv build made no wheel and sdist of {package}")


@nox.session(python=False, default=False)
def build(session: nox.Session) -> None:
    """Build a wheel and an sdist of every package into dist/."""
    build_dist(session)


@nox.session(python=False, default=False)
def install_check(session: nox.Session) -> None:
    """Build dist/, then install each package alone with pip into an empty virtualenv
    (`pip install --find-links dist PACKAGE`, as the README says), check that pip finds its
    declared dependencies complete, that it imports, and that it installed no sibling it does
    not declare. Last, the README's `pip install ./packages/...` line from the source tree."""
    build_dist(session)
    tmp = Path(session.create_tmp())
    for package in PACKAGES:
        venv = tmp / f"venv-{package}"
        shutil.rmtree(venv, ignore_errors=True)
        session.run(sys.executable, "-m", "venv", str(venv), external=True)
        python = str(venv / "bin" / "python")
        session.run(
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--find-links",
            str(DIST),
            package,
            external=True,
        )
        session.run(python, "-m", "pip", "check", external=True)
        module, absent = IMPORTS[package]
        built = next(DIST.glob(f"{package.replace('-', '_')}-*.whl")).name.split("-")[1]
        probe = (
            "import importlib, importlib.metadata, importlib.util, sys\n"
            f"importlib.import_module({module!r})\n"
            f"got = importlib.metadata.version({package!r})\n"
            f"assert got == {built!r}, f'installed {{got}}, not dist/ version {built}'\n"
            f"extra = [m for m in {absent!r} if importlib.util.find_spec(m)]\n"
            "sys.exit(f'installed but not declared: {extra}' if extra else 0)\n"
        )
        session.run(python, "-c", probe, external=True)
    session.run(str(tmp / "venv-discobase-cli" / "bin" / "discobase"), "version", external=True)
    venv = tmp / "venv-readme"
    shutil.rmtree(venv, ignore_errors=True)
    session.run(sys.executable, "-m", "venv", str(venv), external=True)
    python = str(venv / "bin" / "python")
    session.run(python, "-m", "pip", "install", "--quiet", *README_PATHS, external=True)
    session.run(python, "-m", "pip", "check", external=True)
    session.run(python, "-c", "import discobase, discobase_emulator", external=True)


if __name__ == "__main__":
    nox.main()
