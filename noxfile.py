"""Developer tasks. `nox` runs lint, typecheck and tests; `nox -s bench` runs the benchmarks;
`nox -s chaos` runs the full chaos harness (kills, faults, restarts; several minutes).

Every package is tested in its own environment holding only its declared dependencies plus
its `test` dependency group, so a missing dependency fails here and not on a user's machine.
"""

from __future__ import annotations

import nox

nox.needs_version = ">=2024.10.9"
nox.options.default_venv_backend = "uv"
nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

PACKAGES = ["discobase-core", "discobase-emulator", "discobase-discord", "discobase-cli"]


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
    """Benchmarks: the core's micro-benchmarks, then the standard workload at 10,000 records."""
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


if __name__ == "__main__":
    nox.main()
