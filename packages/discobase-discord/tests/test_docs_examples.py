"""Every example of the original discobase docs (docs/library.md and docs/index.md of
ZeroIntensity/discobase), run verbatim apart from the token against the emulator.

Each example runs as its own script in a new process with DISCOBASE_API_URL pointing at this
test's emulator, so `asyncio.run(main())` and module-level `Database(...)` work exactly as a
user would write them. Examples that are fragments (the querying and updating sections show
only `main()` or a few statements) get the docs' own preamble (the `db` and `User` of the
"Saving" section) and, where they have top-level `await`s, an `async with db.conn(...)` around
them; each adaptation is said where it is made.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from discobase_test_support import (
    GUILD,
    TOKEN,
    ScriptResult,
    channel_named,
    check_ok,
    run_script,
)

import discobase
from discobase_emulator import Emulator

DOC_TOKEN = '"My bot token..."'


def verbatim(code: str) -> str:
    """A docs example with only the token replaced."""
    code = textwrap.dedent(code).strip() + "\n"
    return code.replace(DOC_TOKEN, f'"{TOKEN}"').replace('"My bot token"', f'"{TOKEN}"')


# The "Saving" section's preamble, used by the fragments that follow it in the docs.
PREAMBLE = """\
import discobase
import asyncio

db = discobase.Database("My discord database")

@db.table
class User(discobase.Table):
    name: str
    password: str
"""

RUN_MAIN = """
if __name__ == "__main__":
    asyncio.run(main())
"""


def _set_up(emu: Emulator) -> bool:
    """The database finished opening: its category channel exists on the server."""
    return channel_named(emu, "discobase") is not None


async def run(emu: Emulator, tmp_path: Path, code: str, **kwargs: object) -> ScriptResult:
    return await run_script(verbatim(code), url=emu.url, tmp_path=tmp_path, **kwargs)  # type: ignore[arg-type]


async def stored_users(emu: Emulator) -> list[str]:
    """Every stored user as "name:password", read by a new Database in this process."""
    db = discobase.Database(GUILD, api_url=emu.url, guild_ready_timeout=0.1)

    @db.table
    class User(discobase.Table):
        name: str
        password: str

    async with db.conn(TOKEN):
        return [f"{user.name}:{user.password}" for user in await User.find()]


# -- Introduction and logging --------------------------------------------------------------


async def test_introduction(emu: Emulator, tmp_path: Path) -> None:
    check_ok(
        await run(
            emu,
            tmp_path,
            """
            import discobase

            db = discobase.Database("My discord database")
            """,
        )
    )


async def test_logging(emu: Emulator, tmp_path: Path) -> None:
    check_ok(
        await run(
            emu,
            tmp_path,
            """
            import discobase

            db = discobase.Database("My discord database", logging=True)
            """,
        )
    )


# -- Logging in ----------------------------------------------------------------------------


async def test_login_blocks(emu: Emulator, tmp_path: Path) -> None:
    """`await db.login(...)` never returns: it logs in, opens the database and serves."""
    result = await run(
        emu,
        tmp_path,
        """
        import discobase
        import asyncio

        db = discobase.Database("My discord database")

        async def main():
            await db.login("My bot token...")

        if __name__ == "__main__":
            asyncio.run(main())
        """,
        until=lambda: _set_up(emu),
    )
    assert result.returncode is None  # still serving when terminated
    assert (await emu.control.metrics())["gateway_connections"] >= 1


async def test_login_task_free_flying(emu: Emulator, tmp_path: Path) -> None:
    """main() returns right after starting the task: the program ends cleanly."""
    check_ok(
        await run(
            emu,
            tmp_path,
            """
            import discobase
            import asyncio

            db = discobase.Database("My discord database")

            async def main():
                db.login_task("My bot token...")
                # Do something else, the bot is now running in the background

            if __name__ == "__main__":
                asyncio.run(main())
            """,
        )
    )


async def test_wait_ready(emu: Emulator, tmp_path: Path) -> None:
    check_ok(
        await run(
            emu,
            tmp_path,
            """
            import discobase
            import asyncio

            db = discobase.Database("My discord database")

            async def main():
                db.login_task("My bot token...")
                await db.wait_ready()
                # We can now safely use the database!

            if __name__ == "__main__":
                asyncio.run(main())
            """,
        )
    )
    assert _set_up(emu)


async def test_await_login_task_keeps_connection(emu: Emulator, tmp_path: Path) -> None:
    result = await run(
        emu,
        tmp_path,
        """
        import discobase
        import asyncio

        db = discobase.Database("My discord database")

        async def main():
            task = db.login_task("My bot token...")
            await db.wait_ready()
            # We can now safely use the database!
            # ...
            await task  # Keeps the connection open

        if __name__ == "__main__":
            asyncio.run(main())
        """,
        until=lambda: _set_up(emu),
    )
    assert result.returncode is None


async def test_conn(emu: Emulator, tmp_path: Path) -> None:
    # Adapted: the docs' `async with` body is only a comment, which is a SyntaxError in
    # Python; `pass` is added under it.
    check_ok(
        await run(
            emu,
            tmp_path,
            """
            import discobase
            import asyncio

            db = discobase.Database("My discord database")

            async def main():
                async with db.conn("My bot token..."):
                    # Do something with the database
                    pass

            if __name__ == "__main__":
                asyncio.run(main())
            """,
        )
    )
    assert _set_up(emu)


# -- Tables --------------------------------------------------------------------------------


async def test_table_class_without_decorator(emu: Emulator, tmp_path: Path) -> None:
    check_ok(
        await run(
            emu,
            tmp_path,
            """
            import discobase

            db = discobase.Database("My discord database")

            class User(discobase.Table):
                name: str
                password: str
            """,
        )
    )


async def test_table_decorator(emu: Emulator, tmp_path: Path) -> None:
    check_ok(
        await run(
            emu,
            tmp_path,
            """
            import discobase

            db = discobase.Database("My discord database")

            @db.table
            class User(discobase.Table):
                name: str
                password: str
            """,
        )
    )


async def test_two_tables_with_the_same_name_fail(emu: Emulator, tmp_path: Path) -> None:
    """The docs' "will **not** work" example raises DatabaseTableError."""
    code = """
        import discobase

        db = discobase.Database("My discord database")

        @db.table
        class User(discobase.Table):
            name: str
            password: str


        @db.table
        class User(discobase.Table):
            some_other_field: str
        """
    result = await run(emu, tmp_path, code)
    assert result.returncode == 1
    assert "discobase_core.errors.DatabaseTableError" in result.stderr or (
        "DatabaseTableError" in result.stderr
    ), result.stderr

    # The same, in process, with the exception type checked exactly.
    db = discobase.Database("My discord database")

    @db.table
    class User(discobase.Table):
        name: str
        password: str

    with pytest.raises(discobase.DatabaseTableError, match="User"):

        @db.table
        class User(discobase.Table):  # type: ignore[no-redef]
            some_other_field: str


async def test_late_table_without_build_tables(emu: Emulator, tmp_path: Path) -> None:
    """Declaring a table inside `conn()` is allowed; the example itself runs."""
    check_ok(
        await run(
            emu,
            tmp_path,
            """
            import discobase
            import asyncio

            db = discobase.Database("My discord database")

            async def main():
                async with db.conn("My bot token..."):
                    # By default, this is not allowed!
                    @db.table
                    class User(discobase.Table):
                        name: str
                        password: str

                    # ...

            if __name__ == "__main__":
                asyncio.run(main())
            """,
        )
    )


async def test_late_table_used_without_build_tables_errors(emu: Emulator, tmp_path: Path) -> None:
    """The docs say using such a table "would cause some errors": a DatabaseTableError.
    (The docs' example with its `# ...` replaced by a use of the table.)"""
    out = check_ok(
        await run(
            emu,
            tmp_path,
            """
            import discobase
            import asyncio

            db = discobase.Database("My discord database")

            async def main():
                async with db.conn("My bot token..."):
                    # By default, this is not allowed!
                    @db.table
                    class User(discobase.Table):
                        name: str
                        password: str

                    try:
                        await User.find()
                    except discobase.DatabaseTableError as exc:
                        print("refused:", type(exc).__name__)

            if __name__ == "__main__":
                asyncio.run(main())
            """,
        )
    )
    assert "refused: DatabaseTableError" in out


async def test_late_table_with_build_tables(emu: Emulator, tmp_path: Path) -> None:
    check_ok(
        await run(
            emu,
            tmp_path,
            """
            import discobase
            import asyncio

            db = discobase.Database("My discord database")

            async def main():
                async with db.conn("My bot token..."):
                    @db.table
                    class User(discobase.Table):
                        name: str
                        password: str

                    await db.build_tables()  # Initialize `User` internally
                    # Using `User` is now OK!

            if __name__ == "__main__":
                asyncio.run(main())
            """,
        )
    )
    assert channel_named(emu, "user") is not None


# -- Saving, querying, updating, deleting, committing --------------------------------------

SAVING = """
import discobase
import asyncio

db = discobase.Database("My discord database")

@db.table
class User(discobase.Table):
    name: str
    password: str

async def main():
    async with db.conn("My bot token..."):
        user = User(name="Peter", password="foobar")
        await user.save()  # Saves this record to the database

if __name__ == "__main__":
    asyncio.run(main())
"""

QUERYING = (
    PREAMBLE
    + """
async def main():
    async with db.conn("My bot token..."):
        users = await User.find(name="Peter")
        for user in users:
            print(f"Name: {user.name}, password: {user.password}")
"""
    + RUN_MAIN
)

FIND_UNIQUE = (
    PREAMBLE
    + """
async def main():
    async with db.conn("My bot token..."):
        peter = await User.find_unique(name="Peter")
        print("unique:", peter.name, peter.password)  # added: show what it found
"""
    + RUN_MAIN
)

UPDATING = (
    PREAMBLE
    + """
async def main():
    async with db.conn("My bot token..."):
        peter = await User.find_unique(name="Peter")
        peter.password = "barfoo"
        await peter.update()
"""
    + RUN_MAIN
)

# The docs show these three statements alone; they run inside `conn()` here.
UPDATING_IN_BACKGROUND = (
    PREAMBLE
    + """
async def main():
    async with db.conn("My bot token..."):
        peter = await User.find_unique(name="Peter")
        peter.password = "barfoo"
        peter.update()  # Run this in the background
"""
    + RUN_MAIN
)

DELETING = (
    PREAMBLE
    + """
async def main():
    async with db.conn("My bot token..."):
        peter = await User.find_unique(name="Peter")
        peter.delete()
"""
    + RUN_MAIN
)

# The docs show these statements alone; they run inside `conn()` here.
COMMITTING = (
    PREAMBLE
    + """
async def main():
    async with db.conn("My bot token..."):
        peter = (await User.find_unique(name="Peter", strict=False)) or User(name="Peter", password="foobar")
        peter.password = "barfoo"
        peter.commit()  # Works with both cases!
"""  # noqa: E501 (the docs' line, verbatim)
    + RUN_MAIN
)


async def test_saving_querying_updating_deleting(emu: Emulator, tmp_path: Path) -> None:
    check_ok(await run(emu, tmp_path, SAVING, name="saving.py"))
    assert await stored_users(emu) == ["Peter:foobar"]

    out = check_ok(await run(emu, tmp_path, QUERYING, name="querying.py"))
    assert out.splitlines() == ["Name: Peter, password: foobar"]

    out = check_ok(await run(emu, tmp_path, FIND_UNIQUE, name="find_unique.py"))
    assert out.splitlines() == ["unique: Peter foobar"]

    check_ok(await run(emu, tmp_path, UPDATING, name="updating.py"))
    assert await stored_users(emu) == ["Peter:barfoo"]

    # Background update: conn() exiting drains it, so it is stored once the script ends.
    check_ok(
        await run(
            emu,
            tmp_path,
            UPDATING_IN_BACKGROUND.replace('"barfoo"', '"bg-update"'),
            name="update_bg.py",
        )
    )
    assert await stored_users(emu) == ["Peter:bg-update"]

    # Background delete, drained the same way.
    check_ok(await run(emu, tmp_path, DELETING, name="deleting.py"))
    assert await stored_users(emu) == []


async def test_committing_saves_then_updates(emu: Emulator, tmp_path: Path) -> None:
    # No Peter yet: commit() saves a new record.
    check_ok(await run(emu, tmp_path, COMMITTING, name="commit1.py"))
    assert await stored_users(emu) == ["Peter:barfoo"]
    # Peter exists: the same example updates him instead of adding a second one.
    check_ok(
        await run(emu, tmp_path, COMMITTING.replace('"barfoo"', '"second"'), name="commit2.py")
    )
    assert await stored_users(emu) == ["Peter:second"]


async def test_web_app_signup_background_save(emu: Emulator, tmp_path: Path) -> None:
    # Adapted: the docs' `signup` handler is a fragment of a web framework. `app` is a
    # stand-in whose `get` decorator returns the function unchanged, and the handler is
    # called from inside `conn()`, the running loop a real async web server would give it.
    code = (
        PREAMBLE
        + """
class App:
    def get(self, path):
        return lambda function: function

app = App()

@app.get("/signup")
def signup(username: str, password: str):
    User(name=username, password=password).save()  # This is launched as a background task!
    return "..."

async def main():
    async with db.conn("My bot token..."):
        for number in range(5):
            assert signup(f"user{number}", "pw") == "..."
"""
        + RUN_MAIN
    )
    check_ok(await run(emu, tmp_path, code, name="signup.py"))
    assert await stored_users(emu) == [f"user{number}:pw" for number in range(5)]


# -- index.md ------------------------------------------------------------------------------


async def test_index_quickstart(emu: Emulator, tmp_path: Path) -> None:
    check_ok(
        await run(
            emu,
            tmp_path,
            """
            import discobase
            import asyncio

            db = discobase.Database("My discord database")

            @db.table
            class User(discobase.Table):
                name: str
                password: str

            async def main():
                async with db.conn("My bot token"):
                    ...

            asyncio.run(main())
            """,
        )
    )
    assert channel_named(emu, "user") is not None
    assert GUILD == "My discord database"
