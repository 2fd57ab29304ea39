"""`Database`: one Discord server used as a database, through one bot connection."""

from __future__ import annotations

import asyncio
import logging as _logging
import os
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar, cast

import aiohttp
import discord

from discobase._discord_io import ChannelIO, translate
from discobase._limiter import GlobalLimiter, install_limiter
from discobase._redirect import point_discord_at
from discobase._store import TableStore
from discobase.table import Table
from discobase_core.errors import (
    ConnectionFailedError,
    DatabaseTableError,
    DiscobaseError,
    GuildNotFoundError,
)
from discobase_core.hashing import check_supported

__all__ = ["REQUIRED_PERMISSIONS", "Database"]

log = _logging.getLogger("discobase")

T = TypeVar("T")
TableT = TypeVar("TableT", bound=type[Table])

# What the bot needs in each table channel: write and read its own data, and lane threads.
_CHANNEL_PERMISSIONS = {
    "view_channel": True,
    "send_messages": True,
    "create_public_threads": True,
    "send_messages_in_threads": True,
    "attach_files": True,
    "read_message_history": True,
    "manage_messages": True,
}
# ... and in the server: create those channels, hidden from everyone else.
REQUIRED_PERMISSIONS = discord.Permissions(
    manage_channels=True, manage_roles=True, **_CHANNEL_PERMISSIONS
)
_MAX_CHANNELS = 500


_STDERR_HANDLER = _logging.StreamHandler()
_STDERR_HANDLER.setFormatter(_logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))


def _enable_logging() -> None:
    """Show discobase's log records on standard error (once, however many databases)."""
    if _STDERR_HANDLER not in log.handlers:
        log.addHandler(_STDERR_HANDLER)
    if log.level == _logging.NOTSET or log.level > _logging.INFO:
        log.setLevel(_logging.INFO)


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


def channel_name(table: str) -> str:
    """The channel of a table: Discord lowercases names and allows [a-z0-9_-]."""
    return re.sub(r"[^a-z0-9_-]", "-", table.lower())[:100]


class Database:
    """A Discord server (guild) used as a database.

    `name` is the server's name; `guild_id` picks the server by id instead (bots cannot create
    servers: a person creates it and invites the bot). `api_url` (or the environment variable
    DISCOBASE_API_URL) points the bot at another Discord API, such as the discobase emulator's
    `http://127.0.0.1:8787`; this redirects every discord.py client in the process.
    discobase logs through the standard `logging` module under the name "discobase";
    `logging=True` also prints those records (INFO and up) to standard error.
    Each table writes through `lanes` channels (its channel and threads of it); Discord
    allows about 5 messages per 5 s in each, so more lanes, faster sustained writes.
    """

    def __init__(
        self,
        name: str,
        *,
        guild_id: int | None = None,
        api_url: str | None = None,
        logging: bool = False,
        category: str = "discobase",
        cache_bytes: int = 64 * 1024 * 1024,
        requests_per_second: float = 40.0,
        lanes: int = 4,
        guild_ready_timeout: float = 1.0,
    ) -> None:
        self.name = name
        if logging:
            _enable_logging()
        self.guild_id = guild_id
        self.api_url = api_url or os.environ.get("DISCOBASE_API_URL") or None
        self.category_name = category
        self.cache_bytes = cache_bytes
        self.requests_per_second = requests_per_second
        self.lanes = lanes
        self.guild_ready_timeout = guild_ready_timeout
        self.tables: dict[str, type[Table]] = {}
        self.guild: discord.Guild | None = None
        self.bot: discord.Client | None = None
        self._stores: dict[str, TableStore[Any]] = {}
        self._ready: asyncio.Event | None = None
        self._failure: DiscobaseError | None = None
        self._setup_started = False
        self._login_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._build_lock: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"Database({self.name!r}, tables={sorted(self.tables)})"

    # -- tables ----------------------------------------------------------------------------

    def table(self, cls: TableT) -> TableT:
        """Class decorator: `cls` is a table of this database (names are unique, ignoring
        case, because Discord lowercases channel names)."""
        if not (isinstance(cls, type) and issubclass(cls, Table)):
            raise DatabaseTableError(
                f"{cls!r} is not a discobase.Table subclass", hint="subclass discobase.Table"
            )
        name = cls.__name__
        clash = [other for other in self.tables if other.lower() == name.lower()]
        if clash:
            raise DatabaseTableError(
                f"a table named {clash[0]!r} already exists in this database",
                hint="give each table class a distinct name",
                table=name,
            )
        check_supported(cls)
        cls.__disco_database__ = self
        cls.__disco_name__ = name
        self.tables[name] = cls
        return cls

    def _store_for(self, cls: type[Table]) -> TableStore[Any]:
        store = self._stores.get(cls.__name__)
        if store is None or self.tables.get(cls.__name__) is not cls:
            raise DatabaseTableError(
                f"table {cls.__name__} is not open",
                hint="await db.wait_ready() (or use db.conn()), and call build_tables() for "
                "tables declared after login",
                table=cls.__name__,
            )
        return store

    @staticmethod
    def _require_loop(action: str) -> None:
        """Writes are tasks on the running event loop: say how to call them without one."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise DatabaseTableError(
                f"{action}() needs a running event loop",
                hint="await it in async code; from synchronous code, use "
                f"db.login_thread(token) and db.run_sync(record.{action})",
            ) from None

    def _track(self, future: asyncio.Future[int], record: T) -> asyncio.Task[T]:
        async def wait() -> T:
            await future
            return record

        task = asyncio.get_running_loop().create_task(wait())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def build_tables(self) -> None:
        """Open every declared table that is not open yet (creating its channel)."""
        if self.bot is None or self.guild is None:
            raise DatabaseTableError(
                "the database is not connected", hint="await db.wait_ready() first"
            )
        if self._build_lock is None:
            self._build_lock = asyncio.Lock()
        async with self._build_lock:
            category = await self._ensure_category()
            for name, cls in list(self.tables.items()):
                if name in self._stores:
                    continue
                channel = await self._ensure_channel(category, name)
                assert self.bot.user is not None
                store: TableStore[Any] = TableStore(
                    cls,
                    name,
                    ChannelIO(channel, bot_id=self.bot.user.id),
                    cache_bytes=self.cache_bytes,
                )
                await store.open()
                self._stores[name] = store
                log.info("table %s open: %d records", name, len(store.state))

    def _hidden(self, guild: discord.Guild) -> dict[Any, discord.PermissionOverwrite]:
        return {
            guild.default_role: discord.PermissionOverwrite(view_channel=False),
            guild.me: discord.PermissionOverwrite(**_CHANNEL_PERMISSIONS),
        }

    async def _ensure_category(self) -> discord.CategoryChannel:
        guild = self.guild
        assert guild is not None
        existing = discord.utils.get(guild.categories, name=self.category_name)
        if existing is not None:
            return existing
        self._check_channel_room(guild)
        try:
            return await guild.create_category(self.category_name, overwrites=self._hidden(guild))
        except discord.HTTPException as exc:
            raise translate(exc, f"creating the {self.category_name!r} category") from exc

    async def _ensure_channel(
        self, category: discord.CategoryChannel, table: str
    ) -> discord.TextChannel:
        name = channel_name(table)
        for channel in category.text_channels:
            if channel.name == name:
                return channel
        guild = category.guild
        self._check_channel_room(guild)
        try:
            return await guild.create_text_channel(
                name,
                category=category,
                overwrites=self._hidden(guild),
                topic=f"discobase table {table}: data written by the bot, do not post here",
            )
        except discord.HTTPException as exc:
            raise translate(exc, f"creating the channel of table {table}") from exc

    @staticmethod
    def _check_channel_room(guild: discord.Guild) -> None:
        if len(guild.channels) >= _MAX_CHANNELS:
            raise DatabaseTableError(
                f"server {guild.name!r} already has {_MAX_CHANNELS} channels, Discord's limit",
                hint="delete unused channels or use another server",
            )

    # -- connection ------------------------------------------------------------------------

    def _events(self) -> asyncio.Event:
        if self._ready is None:
            self._ready = asyncio.Event()
        return self._ready

    def _make_client(self) -> discord.Client:
        # A database bot never joins voice: skip discord.py's warnings about voice libraries.
        for flag in ("warn_nacl", "warn_dave"):
            if hasattr(discord.VoiceClient, flag):
                setattr(discord.VoiceClient, flag, False)
        intents = discord.Intents.none()
        intents.guilds = True
        client = discord.Client(intents=intents, guild_ready_timeout=self.guild_ready_timeout)
        install_limiter(client.http, GlobalLimiter(self.requests_per_second))

        @client.event
        async def on_ready() -> None:
            if self._setup_started:
                log.info("reconnected; the database stays open")
                return
            self._setup_started = True
            await self._setup(client)

        return client

    def invite_url(self) -> str:
        """The URL that invites this bot with the permissions discobase needs."""
        if self.bot is None or self.bot.application_id is None:
            raise DatabaseTableError("not logged in yet")
        return discord.utils.oauth_url(self.bot.application_id, permissions=REQUIRED_PERMISSIONS)

    def _find_guild(self, client: discord.Client) -> discord.Guild:
        if self.guild_id is not None:
            guild = client.get_guild(self.guild_id)
            if guild is not None:
                return guild
            wanted = f"with id {self.guild_id}"
        else:
            matches = [guild for guild in client.guilds if guild.name == self.name]
            if len(matches) == 1:
                return matches[0]
            if matches:
                ids = ", ".join(str(guild.id) for guild in matches)
                raise ConnectionFailedError(
                    f"the bot is in {len(matches)} servers named {self.name!r} ({ids})",
                    hint="pass guild_id= to Database to pick one",
                    guild=self.name,
                )
            wanted = f"named {self.name!r}"
        url = self.invite_url()
        raise GuildNotFoundError(
            f"the bot is not in a server {wanted}",
            hint="bots cannot create servers. Create one in Discord (Add a Server > Create My "
            f"Own) named {self.name!r}, then invite the bot with: {url}",
            guild=self.guild_id or self.name,
            invite_url=url,
        )

    async def _setup(self, client: discord.Client) -> None:
        try:
            self.guild = self._find_guild(client)
            await self.build_tables()
        except BaseException as exc:
            self._failure = translate(exc, "opening the database")
            log.error("discobase could not open %r: %s", self.name, self._failure)
            self._events().set()
            for store in list(self._stores.values()):  # tables opened before the failure
                await store.close()
            self._stores.clear()
            await client.close()
            if not isinstance(exc, Exception):
                raise
            return
        log.info("database %r ready in server %s", self.name, self.guild.id)
        self._events().set()

    async def login(self, token: str) -> None:
        """Connect and serve until `close()`; raises if the connection or the opening fails."""
        if self.bot is not None and not self.bot.is_closed():
            raise DatabaseTableError("this database is already logged in")
        self._events()
        self._failure = None
        self._setup_started = False
        if self._login_task is None:
            self._login_task = cast("asyncio.Task[None] | None", asyncio.current_task())
        restore = point_discord_at(self.api_url) if self.api_url else None
        self.bot = client = self._make_client()
        try:
            await client.start(token)
        except (discord.DiscordException, aiohttp.ClientError, OSError) as exc:
            where = f" at {self.api_url}" if self.api_url else ""
            failure = translate(exc, f"logging in{where}")
            self._failure = failure
            self._events().set()
            raise failure from exc
        finally:
            if not client.is_closed():
                await client.close()
            if restore is not None:
                restore()
        if self._failure is not None:
            raise self._failure

    def login_task(self, token: str) -> asyncio.Task[None]:
        """Start `login()` in the background and return its task (a reference is kept)."""
        self._events()
        task = asyncio.get_running_loop().create_task(self.login(token), name="discobase-login")
        self._login_task = task
        return task

    async def wait_ready(self) -> None:
        """Wait until every table is open; raises the login failure instead of hanging
        (wrap it in `asyncio.timeout()` to bound the wait)."""
        ready = self._events()
        if self._login_task is None and self.bot is None:
            await asyncio.sleep(0)  # a login() task created just now starts running here
        task = self._login_task
        if task is None and self.bot is None:
            raise DatabaseTableError(
                "the database is not logging in",
                hint="call db.login_task(token) or use db.conn(token)",
            )
        waiter = asyncio.ensure_future(ready.wait())
        waiters: set[asyncio.Future[Any]] = {waiter}
        if task is not None:
            waiters.add(task)
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if self._failure is not None:
            if task is not None and task.done() and not task.cancelled():
                task.exception()  # the same failure, raised here: not "never retrieved"
            raise self._failure
        if ready.is_set():
            return
        exc = task.exception() if task is not None and not task.cancelled() else None
        raise ConnectionFailedError(
            f"the bot stopped before the database was ready: {exc!r}"
        ) from exc

    @asynccontextmanager
    async def conn(self, token: str) -> AsyncIterator[Database]:
        """`async with db.conn(token):` log in, wait until ready, and close at the end."""
        self.login_task(token)
        try:
            await self.wait_ready()
            yield self
        finally:
            await self.close()

    async def close(self) -> None:
        """Finish every pending write, checkpoint the tables, and disconnect."""
        pending = [task for task in self._tasks if not task.done()]
        for result in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(result, BaseException):
                log.warning("a background write failed: %s", result)
        for store in list(self._stores.values()):
            await store.close()
        self._stores.clear()
        if self.bot is not None and not self.bot.is_closed():
            await self.bot.close()
        task = self._login_task
        if task is not None and task is not asyncio.current_task():
            await asyncio.gather(task, return_exceptions=True)
        self._login_task = None
        self._ready = None
        loop = asyncio.get_running_loop()
        if self._thread_loop is loop:
            # End the login_thread's loop two iterations from now, after whoever awaits
            # close() from another thread has been handed its result.
            self._thread_loop = None
            loop.call_soon(loop.call_soon, loop.stop)

    # -- synchronous use -------------------------------------------------------------------

    def login_thread(self, token: str) -> threading.Thread:
        """Run the connection on a background thread with its own event loop, for
        synchronous programs; run the async API on it with `run_sync`. The thread ends
        when the database is closed (`db.run_sync(db.close)`)."""
        loop = asyncio.new_event_loop()
        self._thread_loop = loop
        # Created before the thread starts, so wait_ready() can never miss it.
        task = loop.create_task(self.login(token), name="discobase-login")
        task.add_done_callback(_retrieve)  # a failure is kept in _failure for wait_ready
        self._login_task = task

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        thread = threading.Thread(target=run, name="discobase", daemon=True)
        thread.start()
        return thread

    def run_sync(
        self,
        call: Callable[..., Awaitable[T]] | Awaitable[T],
        *args: Any,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> T:
        """Run an async call on the `login_thread` loop and return its result, e.g.
        `db.run_sync(db.wait_ready)`, `db.run_sync(user.save)`,
        `db.run_sync(User.find, name="Peter")`."""
        loop = self._thread_loop
        if loop is None or loop.is_closed():
            raise DatabaseTableError(
                "no database thread is running", hint="call db.login_thread(token) first"
            )

        async def invoke() -> T:
            if callable(call):
                return await call(*args, **kwargs)
            return await call

        return asyncio.run_coroutine_threadsafe(invoke(), loop).result(timeout)
