"""`Database`: one Discord server used as a database, through one bot connection."""

from __future__ import annotations

import asyncio
import logging as _logging
import os
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar, cast, overload

import aiohttp
import discord

from discobase._commands import AdminCommands
from discobase._discord_io import ChannelIO, retry_reads, translate, with_retries
from discobase._lease import LEASE_CHANNEL, Lease, read_lease
from discobase._limiter import GlobalLimiter, install_limiter
from discobase._redirect import route_client, split_api_url
from discobase._store import CompactionReport, TableStore
from discobase.table import Table
from discobase_core.engine import ERASE_AFTER
from discobase_core.errors import (
    ConnectionFailedError,
    DatabaseCorruptionError,
    DatabaseTableError,
    DiscobaseError,
    GuildNotFoundError,
    ReadOnlyError,
)
from discobase_core.hashing import check_supported
from discobase_core.lease import LEASE_TTL_MS, LeaseView, TableMark

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
_PRUNE_TASKS_AT = 64  # write tasks kept before finished ones are dropped (at least)


_STDERR_HANDLER = _logging.StreamHandler()
_STDERR_HANDLER.setFormatter(_logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))


def _enable_logging() -> None:
    """Show discobase's log records on standard error (once, however many databases)."""
    if _STDERR_HANDLER not in log.handlers:
        log.addHandler(_STDERR_HANDLER)
    if log.level == _logging.NOTSET or log.level > _logging.INFO:
        log.setLevel(_logging.INFO)


async def _outcome(future: asyncio.Future[int], record: T) -> T:
    """The task of one write: its record, once the write is stored. (Module level: a
    closure would cost a function and its cells per write, and a bulk load makes many.)"""
    await future
    return record


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


def channel_name(table: str) -> str:
    """The channel of a table: Discord lowercases names and allows [a-z0-9_-]."""
    return re.sub(r"[^a-z0-9_-]", "-", table.lower())[:100]


# Attributes of Table that a field of the same name would hide, and find()'s own keywords.
_RESERVED_FIELDS = {name for name in vars(Table) if not name.startswith(("_", "model_"))} | {
    "limit",
    "strict",
}


class Database:
    """A Discord server (guild) used as a database.

    `name` is the server's name; `guild_id` picks the server by id instead (bots cannot create
    servers: a person creates it and invites the bot). `api_url` (or the environment variable
    DISCOBASE_API_URL) points this database's bot at another Discord API, such as the
    discobase emulator's `http://127.0.0.1:8787` (other clients in the process are unaffected).
    discobase logs through the standard `logging` module under the name "discobase";
    `logging=True` also prints those records (INFO and up) to standard error.
    Each table writes through `lanes` channels (its channel and threads of it); Discord
    allows about 5 messages per 5 s in each, so more lanes, faster sustained writes (and
    shorter waits for awaited single saves), at the cost of one thread per lane.

    Overwritten and deleted records are erased from Discord by compaction: on its own at
    most `erase_after` seconds (default an hour) after they died, or at once with
    `await db.compact()`.

    One process writes a database at a time: a writer holds the server's lease (see the
    README). Another writer waits up to `lease_wait` seconds for it (None: forever, 0: fail
    at once with LeaseHeldError); a holder that stops renewing loses it after `lease_ttl`
    seconds. `read_only=True` opens beside a writer without the lease; `refresh()` then
    shows the writer's newer commits.

    `bot=` (or `attach(bot)`) uses the application's own `discord.Client` or `commands.Bot`
    instead of a connection of discobase's own.

    `commands=True` adds the admin slash command `/discobase` (find, insert, update, delete,
    schema, stats, check, reset) to the server, for its administrators and the bot's owner.
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
        read_only: bool = False,
        lease_wait: float | None = 60.0,
        lease_ttl: float = LEASE_TTL_MS / 1000,
        bot: discord.Client | None = None,
        commands: bool = False,
        erase_after: float = ERASE_AFTER,
    ) -> None:
        self.name = name
        if logging:
            _enable_logging()
        self.guild_id = guild_id
        self.api_url = api_url or os.environ.get("DISCOBASE_API_URL") or None
        if self.api_url:
            try:
                split_api_url(self.api_url)
            except ValueError as exc:
                raise ConnectionFailedError(str(exc), api_url=self.api_url) from None
        if not 1 <= lanes <= 50:
            raise DatabaseTableError(f"lanes must be between 1 and 50, got {lanes}")
        if not 3 <= lease_ttl <= 3600:
            raise DatabaseTableError(f"lease_ttl must be between 3 and 3600 s, got {lease_ttl}")
        self.category_name = category
        self.cache_bytes = cache_bytes
        self.requests_per_second = requests_per_second
        self.lanes = lanes
        self.guild_ready_timeout = guild_ready_timeout
        self.read_only = read_only
        self.lease_wait = lease_wait
        self.lease_ttl = lease_ttl
        if erase_after <= 0:
            raise DatabaseTableError(f"erase_after must be positive seconds, got {erase_after}")
        self.erase_after = erase_after
        self.tables: dict[str, type[Table]] = {}
        #: tables that could not be opened (damaged), with why: the others work
        self.damaged: dict[str, DiscobaseError] = {}
        self.guild: discord.Guild | None = None
        self.bot: discord.Client | None = None
        self.commands = commands
        self._admin: AdminCommands | None = None  # the slash commands, once installed
        self._own_bot = bot  # the application's bot, used instead of a client of our own
        self._attached = False
        if bot is not None and self.api_url:
            route_client(bot.http, self.api_url)  # before the bot logs in
        self._stores: dict[str, TableStore[Any]] = {}
        self._opening: dict[str, TableStore[Any]] = {}  # reported in lease beats while opening
        self._lease: Lease | None = None
        self._category: discord.CategoryChannel | None = None
        self._ready: asyncio.Event | None = None
        self._failure: DiscobaseError | None = None
        self._setup_started = False
        self._login_task: asyncio.Task[None] | None = None
        # Write tasks, pruned of finished ones whenever the list doubles (not with a done
        # callback per task: each costs a context, a handle and a call).
        self._tasks: list[asyncio.Task[Any]] = []
        self._prune_tasks_at = _PRUNE_TASKS_AT
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._build_lock: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"Database({self.name!r}, tables={sorted(self.tables)})"

    # -- tables ----------------------------------------------------------------------------

    @overload
    def table(self, cls: TableT, /) -> TableT: ...

    @overload
    def table(self, *, name: str) -> Callable[[TableT], TableT]: ...

    def table(  # type: ignore[misc]  # the two overloads are its two spellings
        self, cls: TableT | None = None, /, *, name: str | None = None
    ) -> TableT | Callable[[TableT], TableT]:
        """Class decorator: `cls` is a table of this database. `@db.table(name="users")`
        stores it under a name of your choosing, so renaming the class keeps its data
        (without it, the table is named after the class, and a renamed class opens a new,
        empty table). Names are unique after Discord's channel naming (lowercase, other
        characters than a-z 0-9 _ - become -)."""
        if cls is None:
            return lambda inner: self._register(inner, name)
        return self._register(cls, name)

    def _register(self, cls: TableT, name: str | None) -> TableT:
        if not (isinstance(cls, type) and issubclass(cls, Table)):
            raise DatabaseTableError(
                f"{cls!r} is not a discobase.Table subclass", hint="subclass discobase.Table"
            )
        table = name or cls.__name__
        owner = cls.__dict__.get("__disco_database__")
        if owner is not None and owner is not self:
            raise DatabaseTableError(
                f"{cls.__name__} is already a table of {owner!r}",
                hint="a class belongs to one database; subclass it to use the same schema in "
                "another database",
                table=table,
            )
        if not table.strip() or len(table) > 100:
            raise DatabaseTableError(f"table name {table!r} must have 1 to 100 characters")
        channel = channel_name(table)
        if channel == LEASE_CHANNEL:
            raise DatabaseTableError(
                f"table name {table!r} is reserved (its channel holds the writer lease)",
                hint="pick another name with @db.table(name=...)",
                table=table,
            )
        clash = [other for other in self.tables if channel_name(other) == channel]
        if clash and self.tables[clash[0]] is not cls:
            raise DatabaseTableError(
                f"tables {clash[0]!r} and {table!r} would share the channel #{channel} "
                "(Discord lowercases channel names and discobase replaces other characters "
                "than a-z, 0-9, _ and - with -)",
                hint="give one of them another name with @db.table(name=...)",
                table=table,
            )
        shadowed = sorted(set(cls.__pydantic_fields__) & _RESERVED_FIELDS)
        if shadowed:
            raise DatabaseTableError(
                f"field {shadowed[0]!r} of {cls.__name__} would hide Table.{shadowed[0]}"
                + (" (find()'s own keyword)" if shadowed[0] in ("limit", "strict") else "()"),
                hint="rename the field (e.g. with a trailing underscore)",
                table=table,
                field=shadowed[0],
            )
        check_supported(cls)
        cls.__disco_database__ = self
        cls.__disco_name__ = table
        self.tables[table] = cls
        return cls

    def _store_for(self, cls: type[Table]) -> TableStore[Any]:
        table = cls.__disco_name__ or cls.__name__
        store = self._stores.get(table)
        if store is None or self.tables.get(table) is not cls:
            damage = self.damaged.get(table)
            if damage is not None:
                raise damage
            raise DatabaseTableError(
                f"table {table} is not open",
                hint="await db.wait_ready() (or use db.conn()), and call build_tables() for "
                "tables declared after login",
                table=table,
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
        task = asyncio.get_running_loop().create_task(_outcome(future, record))
        tasks = self._tasks
        tasks.append(task)
        if len(tasks) >= self._prune_tasks_at:
            self._tasks = [task for task in tasks if not task.done()]
            self._prune_tasks_at = max(_PRUNE_TASKS_AT, 2 * len(self._tasks))
        return task

    def _failed(self, error: DiscobaseError, record: T) -> asyncio.Task[T]:
        """A write refused before it was queued, as a task that raises when awaited."""

        async def fail() -> T:
            raise error

        return asyncio.get_running_loop().create_task(fail())

    async def _release(self) -> None:
        """Give the lease up (after the last checkpoint): the next writer starts at once."""
        lease, self._lease = self._lease, None
        if lease is not None:
            await lease.release()

    def _bot_id(self) -> int:
        user = self.bot.user if self.bot is not None else None
        if user is None:
            raise DatabaseTableError("not logged in yet", hint="await db.wait_ready() first")
        return user.id

    def _marks(self, final: bool) -> dict[str, TableMark]:
        return {
            name: store.mark(final)
            for name, store in {**self._opening, **self._stores}.items()
            if not store.read_only
        }

    async def _lease_view(self) -> LeaseView:
        """The lease as this database sees it: its own term's view as the writer, else the
        lease channel now (a reader follows the writer's fences and reports)."""
        if self._lease is not None:
            return self._lease.view
        assert self._category is not None
        channel = self._find_channel(self._category, LEASE_CHANNEL)
        if channel is None:
            return LeaseView()
        return await read_lease(ChannelIO(channel, bot_id=self._bot_id()))

    async def build_tables(self) -> None:
        """Open every declared table that is not open yet (creating its channel). A table
        that cannot be opened (damaged) is logged and named in `db.damaged`; the others
        open."""
        if self.bot is None or self.guild is None:
            raise DatabaseTableError(
                "the database is not connected", hint="await db.wait_ready() first"
            )
        if self._build_lock is None:
            self._build_lock = asyncio.Lock()
        if not self.tables.keys() - self._stores.keys():
            return  # nothing to open (a reader of an empty server needs no category)
        async with self._build_lock:
            category = await self._ensure_category()
            view = await self._lease_view()
            for name, cls in list(self.tables.items()):
                if name in self._stores:
                    continue
                store = await self._open_store(category, name, cls, view)
                if store is not None:
                    self._stores[name] = store
                    log.info("table %s open: %d records", name, len(store.state))

    async def _open_store(
        self, category: discord.CategoryChannel, name: str, cls: type[Table], view: LeaseView
    ) -> TableStore[Any] | None:
        channel = await self._ensure_channel(category, name)
        store: TableStore[Any] = TableStore(
            cls,
            name,
            ChannelIO(channel, bot_id=self._bot_id()),
            cache_bytes=self.cache_bytes,
            lanes=self.lanes,
            erase_after=self.erase_after,
            lease=self._lease,
        )
        self._opening[name] = store
        try:
            await store.open(view)
        except DatabaseCorruptionError as exc:
            log.error("table %s is damaged and stays closed: %s", name, exc)
            self.damaged[name] = exc
            await store.close()
            return None
        finally:
            del self._opening[name]
        self.damaged.pop(name, None)
        return store

    async def compact(self) -> list[CompactionReport]:
        """Compact every table now (`Table.compact()`): what was overwritten or deleted is
        erased from Discord, and its space reclaimed. Writes go on meanwhile."""
        if self._lease is None:
            raise ReadOnlyError(
                "a read-only database cannot compact",
                hint="open the Database without read_only=True",
            )
        return [await store.compact() for store in list(self._stores.values())]

    async def refresh(self) -> None:
        """Read every table again, to see what the writer committed since (for a
        read-only database; a writer's own view is always current)."""
        if self._lease is not None:
            return
        if self.bot is None or self.guild is None:
            raise DatabaseTableError(
                "the database is not connected", hint="await db.wait_ready() first"
            )
        stores, self._stores = self._stores, {}
        for store in stores.values():
            await store.close()
        await self.build_tables()

    def _hidden(self, guild: discord.Guild) -> dict[Any, discord.PermissionOverwrite]:
        return {
            guild.default_role: discord.PermissionOverwrite(view_channel=False),
            guild.me: discord.PermissionOverwrite(**_CHANNEL_PERMISSIONS),
        }

    def _is_private(self, channel: discord.abc.GuildChannel) -> bool:
        guild = channel.guild
        everyone = channel.overwrites_for(guild.default_role)
        mine = channel.overwrites_for(guild.me)
        return everyone.view_channel is False and all(
            getattr(mine, flag) is True for flag in _CHANNEL_PERMISSIONS
        )

    async def _make_private(self, channel: discord.abc.GuildChannel, what: str) -> None:
        """Data channels are hidden from everyone but the bot, also those discobase finds
        already there (a person may have made them)."""
        if self._is_private(channel):
            return
        log.warning("%s was visible to others; hiding it", what)
        try:
            for target, overwrite in self._hidden(channel.guild).items():
                await channel.set_permissions(target, overwrite=overwrite)
        except discord.HTTPException as exc:
            raise ConnectionFailedError(
                f"{what} is visible to other members of the server and the bot cannot hide "
                f"it: {exc}",
                hint="give the bot Manage Roles and Manage Channels, or hide the channel "
                "yourself (deny View Channel to @everyone)",
            ) from exc

    async def _ensure_category(self) -> discord.CategoryChannel:
        guild = self.guild
        assert guild is not None
        named = [c for c in guild.categories if c.name == self.category_name]
        existing = min(named, key=lambda c: c.id) if named else None
        if existing is not None:
            if not self.read_only:
                await self._make_private(existing, f"the {self.category_name!r} category")
            self._category = existing
            return existing
        if self.read_only:
            raise DatabaseTableError(
                f"server {guild.name!r} has no {self.category_name!r} category: nothing is "
                "stored there yet",
                hint="open it once without read_only=True to create the tables",
            )
        self._check_channel_room(guild)
        try:
            created = await guild.create_category(
                self.category_name, overwrites=self._hidden(guild)
            )
        except discord.HTTPException as exc:
            raise translate(exc, f"creating the {self.category_name!r} category") from exc
        category = await self._settle(created)
        assert isinstance(category, discord.CategoryChannel)
        self._category = category
        return category

    async def _settle(self, created: discord.abc.GuildChannel) -> discord.abc.GuildChannel:
        """Discord has no create-if-absent: two processes opening a new database at once may
        both create the category or a channel. Whoever created one asks Discord (not its
        cache) for the server's channels right away: the oldest of that name and place
        wins, and a newer one is deleted while still empty, so both processes use the same
        channels."""
        guild = created.guild
        channels = await with_retries("listing the server's channels", guild.fetch_channels)
        same = [
            channel
            for channel in channels
            if channel.name == created.name
            and channel.type == created.type
            and channel.category_id == created.category_id
        ]
        winner = min(same, key=lambda channel: channel.id, default=created)
        if winner.id == created.id:
            return created
        log.info("another process created #%s at the same moment; using its channel", created.name)
        try:
            await with_retries(f"deleting the duplicate #{created.name}", created.delete)
        except DiscobaseError as exc:
            log.warning("could not delete the duplicate #%s: %s", created.name, exc)
        return winner

    @staticmethod
    def _find_channel(category: discord.CategoryChannel, name: str) -> discord.TextChannel | None:
        """The channel `name` of the category (the oldest, should there be two)."""
        named = [channel for channel in category.text_channels if channel.name == name]
        return min(named, key=lambda channel: channel.id) if named else None

    async def _ensure_channel(
        self, category: discord.CategoryChannel, table: str, *, topic: str | None = None
    ) -> discord.TextChannel:
        name = channel_name(table)
        existing = self._find_channel(category, name)
        if existing is not None:
            if not self.read_only:
                await self._make_private(existing, f"channel #{name}")
            return existing
        if self.read_only:
            raise DatabaseTableError(
                f"table {table} does not exist in server {category.guild.name!r}",
                hint="open it once without read_only=True to create it",
                table=table,
            )
        guild = category.guild
        self._check_channel_room(guild)
        try:
            created = await guild.create_text_channel(
                name,
                category=category,
                overwrites=self._hidden(guild),
                topic=topic
                or f"discobase table {table}: data written by the bot, do not post here",
            )
        except discord.HTTPException as exc:
            raise translate(exc, f"creating the channel of table {table}") from exc
        channel = await self._settle(created)
        assert isinstance(channel, discord.TextChannel)
        return channel

    @staticmethod
    def _check_channel_room(guild: discord.Guild) -> None:
        if len(guild.channels) >= _MAX_CHANNELS:
            raise DatabaseTableError(
                f"server {guild.name!r} already has {_MAX_CHANNELS} channels, Discord's limit",
                hint="delete unused channels or use another server",
            )

    async def _take_lease(self) -> None:
        """As a writer, take the database's lease (waiting for another writer's)."""
        category = await self._ensure_category()
        channel = await self._ensure_channel(
            category,
            LEASE_CHANNEL,
            topic="discobase: which process may write this database; do not post here",
        )
        lease = Lease(
            ChannelIO(channel, bot_id=self._bot_id()), report=self._marks, ttl=self.lease_ttl
        )
        await lease.acquire(self.lease_wait)
        self._lease = lease
        lease.start()

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
        if self.api_url:
            route_client(client.http, self.api_url)
        install_limiter(client.http, GlobalLimiter(self.requests_per_second))
        retry_reads(client.http)  # each try waits for the limiter

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
            if not self.read_only:
                await self._take_lease()
            await self.build_tables()
            if self.commands:
                self._admin = AdminCommands(self, client, self.guild)
                await self._admin.install()
        except BaseException as exc:
            self._failure = translate(exc, "opening the database")
            log.error("discobase could not open %r: %s", self.name, self._failure)
            self._events().set()
            for store in list(self._stores.values()):  # tables opened before the failure
                await store.close()
            self._stores.clear()
            self._uninstall_commands()
            await self._release()
            if not self._attached:
                await client.close()  # an application's own bot keeps running
            if not isinstance(exc, Exception):
                raise
            return
        log.info("database %r ready in server %s", self.name, self.guild.id)
        self._events().set()

    def _uninstall_commands(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            admin.uninstall()

    def attach(self, bot: discord.Client | None = None) -> None:
        """Use the application's own bot (a `discord.Client` or `commands.Bot`) instead of
        a connection of discobase's own: one gateway connection, and the bot's handlers
        stay as they are. Call it with the event loop running, e.g. from the bot's
        `setup_hook` (or give `Database(..., bot=bot)` and await `wait_ready()`); the
        tables open once the bot is ready. The bot needs the `guilds` intent."""
        bot = bot or self._own_bot
        if bot is None:
            raise DatabaseTableError("attach() needs a bot", hint="db.attach(bot)")
        if self._attached and self.bot is bot:
            return  # attached already (by wait_ready(), or a second setup_hook call)
        if self._attached or (self.bot is not None and not self.bot.is_closed()):
            raise DatabaseTableError("this database is already connected")
        if not bot.intents.guilds:
            raise ConnectionFailedError(
                "the bot was created without the guilds intent, which discobase needs to "
                "find its server and channels",
                hint="create the bot with intents that include guilds, e.g. "
                "discord.Intents.default()",
            )
        if self.api_url and bot is not self._own_bot:
            route_client(bot.http, self.api_url)
        self._own_bot = bot
        self._attached = True
        self.bot = bot
        self._events()
        self._failure = None
        self._setup_started = True
        task = asyncio.get_running_loop().create_task(
            self._attached_setup(bot), name="discobase-attach"
        )
        task.add_done_callback(_retrieve)
        self._login_task = task

    async def _attached_setup(self, bot: discord.Client) -> None:
        await bot.wait_until_ready()
        await self._setup(bot)
        if self._failure is not None:
            raise self._failure

    async def login(self, token: str) -> None:
        """Connect and serve until `close()`; raises if the connection or the opening fails."""
        if self._own_bot is not None:
            raise DatabaseTableError(
                "this database uses your bot: start the bot itself (bot.start(token)), "
                "and attach the database in its setup_hook",
                hint="db.attach(bot) in setup_hook, then await db.wait_ready()",
            )
        if self.bot is not None and not self.bot.is_closed():
            raise DatabaseTableError("this database is already logged in")
        self._events()
        self._failure = None
        self._setup_started = False
        if self._login_task is None:
            self._login_task = cast("asyncio.Task[None] | None", asyncio.current_task())
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
        if self._failure is not None:
            raise self._failure

    def login_task(self, token: str) -> asyncio.Task[None]:
        """Start `login()` in the background and return its task (a reference is kept)."""
        self._events()
        task = asyncio.get_running_loop().create_task(self.login(token), name="discobase-login")
        task.add_done_callback(_retrieve)  # its failure reaches the caller via wait_ready()
        self._login_task = task
        return task

    async def wait_ready(self) -> None:
        """Wait until every table is open; raises the login failure instead of hanging
        (wrap it in `asyncio.timeout()` to bound the wait)."""
        ready = self._events()
        if self._own_bot is not None and not self._attached:
            self.attach()
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

    async def close(self, *, close_bot: bool = False) -> None:
        """Finish every pending write, checkpoint the tables, release the lease and
        disconnect. An attached bot (your own) keeps running unless `close_bot=True`."""
        pending = [task for task in self._tasks if not task.done()]
        self._tasks = []
        for result in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(result, BaseException):
                log.warning("a background write failed: %s", result)
        self._uninstall_commands()  # before the tables close: no command sees them closing
        for store in list(self._stores.values()):
            await store.close()
        await self._release()  # its report names each table's last acknowledged commit
        self._stores.clear()
        if self.bot is not None and not self.bot.is_closed() and (close_bot or not self._attached):
            await self.bot.close()
        if self._attached:
            self._attached = False
            self.bot = None
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
