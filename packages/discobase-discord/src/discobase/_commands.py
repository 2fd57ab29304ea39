"""Admin slash commands: see and manage a database from inside Discord.

`Database(..., commands=True)` registers one guild command, `/discobase`, in the database's
server, with the subcommands find, insert, update, delete, schema, stats, check and reset.

One group rather than eight top-level commands: an attached bot keeps its own `/find` or
`/stats` free, the server's command list shows one entry, and Discord only lets a top-level
command carry `default_member_permissions`, so one setting hides every subcommand from
members without Administrator.

Who may run them is decided twice. Discord hides the command from members without
Administrator (the group's default member permissions), but a server admin can widen that in
the server's integration settings, and a client is never proof of anything: every handler,
button and modal checks again, from the interaction's own permissions, that the member is an
administrator or the application's owner, and refuses everyone else ephemerally.

Every answer is ephemeral (only the admin who asked sees the data) and every embed is cut to
Discord's limits (6,000 characters, 25 fields, 1,024 per field value, 256 per title) with a
visible marker, whatever the records hold.

The buttons of find's pages and of delete's confirmation keep working after the bot restarts:
their state is in their custom id (`discobase:find:<page>:<table channel>:<conditions>`,
`discobase:delete:<record>:<table channel>`), decoded by `discord.ui.DynamicItem`s the new
process registers. The table travels as its channel's id, which stays the same across
restarts, renamed classes and long table names. Modals (insert, update, reset) are open for
a short moment and live in the process that opened them.

Registration never does a global sync and never rewrites the server's other commands: the
group is upserted alone (one POST), and only when the server's copy differs from it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self

import discord
from discord import app_commands
from discord.ext import commands as ext_commands

from discobase._catalog import (
    TableCheck,
    find_stored_table,
    get_record,
    iter_records,
    open_table,
    parse_assignments,
    read_records,
    record_from_text,
    stored_tables,
    table_stats,
    text_of,
    verify_table,
)
from discobase.table import Table
from discobase_core.errors import (
    DatabaseCorruptionError,
    DatabaseTableError,
    DiscobaseError,
    NotFoundError,
    QueryError,
)

if TYPE_CHECKING:
    from discobase.database import Database

__all__ = ["GROUP", "PAGE_SIZE", "REFUSAL", "AdminCommands", "fit_embed", "split_conditions"]

log = logging.getLogger("discobase")

GROUP = "discobase"
PAGE_SIZE = 10  # records per find page: ten fields of about 500 characters fit one embed
REFUSAL = "Only administrators of this server and the bot's owner may use discobase's commands."
MAX_CHANNELS = 500

# Discord's embed limits.
EMBED_TOTAL = 6000
EMBED_FIELDS = 25
TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_MAX = 2048
CONTENT_MAX = 2000
MARK = "… [truncated]"

CUSTOM_ID_MAX = 100
_FIND_PREFIX = "discobase:find:"
# page (base 36, up to 4 digits: 1.6 million pages) and channel id (base 36, up to 13)
WHERE_MAX = CUSTOM_ID_MAX - len(_FIND_PREFIX) - 4 - 1 - 13 - 1
TEXT_INPUT_MAX = 4000  # a modal's text input


# -- text within Discord's limits ------------------------------------------------------------


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, ending with a visible marker when cut."""
    if len(text) <= limit:
        return text
    mark = MARK if limit >= 2 * len(MARK) else "…"
    return text[: max(limit - len(mark), 0)] + mark[: max(limit, 0)]


def fit_embed(
    title: str,
    description: str = "",
    fields: Sequence[tuple[str, str]] = (),
    footer: str = "",
    *,
    colour: discord.Colour | None = None,
) -> discord.Embed:
    """An embed within every Discord limit whatever the texts: each part is cut to its own
    limit, fields beyond 25 become one "more" field, and the field values share what is
    left of the 6,000 characters fairly (each cut visibly), so no record can push the
    others out."""
    items = [(name or "-", value or "-") for name, value in fields]
    if len(items) > EMBED_FIELDS:
        hidden = len(items) - (EMBED_FIELDS - 1)
        items = [*items[: EMBED_FIELDS - 1], ("…", f"{hidden} more not shown")]
    title = clip(title, TITLE_MAX)
    footer = clip(footer, FOOTER_MAX)
    room_for_fields = 64 * len(items)
    description = clip(
        description, min(DESCRIPTION_MAX, EMBED_TOTAL - len(title) - len(footer) - room_for_fields)
    )
    embed = discord.Embed(title=title, description=description or None, colour=colour)
    if items:
        share = (EMBED_TOTAL - len(title) - len(footer) - len(description)) // len(items)
        for name, value in items:
            name = clip(name, min(FIELD_NAME_MAX, share // 4))
            value = clip(value, min(FIELD_VALUE_MAX, share - len(name)))
            embed.add_field(name=name, value=value, inline=False)
    if footer:
        embed.set_footer(text=footer)
    return embed


def _shown(value: object) -> str:
    """A stored value as a person reads it, with Discord's markdown taken literally."""
    text = text_of(value)
    return discord.utils.escape_markdown(text) if text else '""'


def _record_lines(record: Table) -> str:
    return "\n".join(
        f"{name}: {_shown(getattr(record, name))}" for name in type(record).model_fields
    )


# -- conditions and modal text -------------------------------------------------------------------


def split_conditions(model: type[Table], text: str) -> list[str]:
    """`name=Peter Smith age=42` as ["name=Peter Smith", "age=42"]: a new condition starts
    where a field name of the table is followed by `=`, so values may hold spaces (and
    JSON) without quoting. Each part is then parsed by the shared `parse_assignments`."""
    text = text.strip()
    if not text:
        return []
    names = "|".join(re.escape(n) for n in sorted(model.model_fields, key=len, reverse=True))
    if not names:
        return [text]
    return [part for part in re.split(rf"\s+(?=(?:{names})\s*=)", text) if part]


def _lines_to_texts(model: type[Table], text: str) -> dict[str, str]:
    """A modal's `field=value` lines as {field: text}; an empty line is skipped, a line
    without `=` or a field given twice is an error."""
    texts: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not name:
            raise QueryError(
                f"{line!r} is not FIELD=VALUE",
                hint=f"write one field=value per line; fields: {', '.join(model.model_fields)}",
            )
        if name in texts:
            raise QueryError(f"field {name!r} is given twice", field=name)
        texts[name] = value
    return texts


def _b36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if not number:
            return out


# -- the registry: which database answers an interaction ---------------------------------------

# Per client, the installed commands of each guild: a DynamicItem is registered per client
# and decoded from a custom id alone, so it finds its database here.
_INSTALLED: weakref.WeakKeyDictionary[discord.Client, dict[int, AdminCommands]] = (
    weakref.WeakKeyDictionary()
)


def _admin_for(interaction: discord.Interaction[Any]) -> AdminCommands | None:
    guild_id = interaction.guild_id
    if guild_id is None:
        return None
    return _INSTALLED.get(interaction.client, {}).get(guild_id)


async def _not_running(interaction: discord.Interaction[Any]) -> None:
    await interaction.response.send_message(
        "discobase's commands are not running for this server right now.", ephemeral=True
    )


class FindPage(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=r"discobase:find:(?P<page>[0-9a-z]+):(?P<table>[0-9a-z]+):(?P<where>(?s:.*))",
):
    """Previous/Next of a find answer: the page, the table's channel and the conditions are
    the custom id, so any process of the bot can turn the page."""

    def __init__(self, page: int, channel_id: int, where: str, *, label: str, disabled: bool):
        self.page = page
        self.channel_id = channel_id
        self.where = where
        custom_id = f"{_FIND_PREFIX}{_b36(page)}:{_b36(channel_id)}:{where}"
        super().__init__(
            discord.ui.Button(label=label, custom_id=custom_id, disabled=disabled),
        )

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> Self:
        label = item.label if isinstance(item, discord.ui.Button) else None
        return cls(
            int(match["page"], 36),
            int(match["table"], 36),
            match["where"],
            label=label or "Page",
            disabled=False,
        )

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        admin = _admin_for(interaction)
        if admin is None:
            await _not_running(interaction)
            return
        await admin.turn_page(interaction, self.channel_id, self.where, self.page)


class ConfirmDelete(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=r"discobase:delete:(?P<rid>[0-9a-z]+):(?P<table>[0-9a-z]+)",
):
    """Delete's confirmation button: the record and its table's channel are the custom id."""

    def __init__(self, rid: int, channel_id: int) -> None:
        self.rid = rid
        self.channel_id = channel_id
        super().__init__(
            discord.ui.Button(
                label="Delete",
                style=discord.ButtonStyle.danger,
                custom_id=f"discobase:delete:{_b36(rid)}:{_b36(channel_id)}",
            )
        )

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> Self:
        return cls(int(match["rid"], 36), int(match["table"], 36))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        admin = _admin_for(interaction)
        if admin is None:
            await _not_running(interaction)
            return
        await admin.confirm_delete(interaction, self.channel_id, self.rid)


class CancelDelete(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=r"discobase:cancel"
):
    """Delete's Cancel button (a DynamicItem too, so it answers after a restart)."""

    def __init__(self) -> None:
        super().__init__(discord.ui.Button(label="Cancel", custom_id="discobase:cancel"))

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> Self:
        return cls()

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        admin = _admin_for(interaction)
        if admin is None:
            await _not_running(interaction)
            return
        if await admin.refused(interaction):
            return
        await interaction.response.edit_message(content="Not deleted.", embed=None, view=None)


_DYNAMIC_ITEMS = (FindPage, ConfirmDelete, CancelDelete)


# -- modals ----------------------------------------------------------------------------------


class RecordModal(discord.ui.Modal):
    """Insert or update: one paragraph of `field=value` lines, so a table of any number of
    fields fits (a modal holds at most five inputs), and each value is parsed with the
    field's stored type by the shared parser."""

    def __init__(
        self, admin: AdminCommands, cls: type[Table], title: str, text: str, rid: int | None
    ) -> None:
        super().__init__(title=clip(title, 45), timeout=900)
        self.admin = admin
        self.cls = cls
        self.rid = rid
        self.values: discord.ui.TextInput[RecordModal] = discord.ui.TextInput(
            label="One field=value per line",
            style=discord.TextStyle.paragraph,
            default=text,
            max_length=TEXT_INPUT_MAX,
            required=rid is None,
        )
        self.add_item(self.values)

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        await self.admin.save_record(interaction, self.cls, self.rid, self.values.value)


class ResetModal(discord.ui.Modal):
    """Reset's confirmation: nothing is deleted unless the database's name is typed."""

    def __init__(self, admin: AdminCommands, cls: type[Table], table: str) -> None:
        super().__init__(title=clip(f"Reset {table}", 45), timeout=900)
        self.admin = admin
        self.cls = cls
        self.confirm: discord.ui.TextInput[ResetModal] = discord.ui.TextInput(
            label="Type the database's name to confirm",
            placeholder=clip(admin.db.name, 100),
            max_length=100,
        )
        self.add_item(self.confirm)

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        await self.admin.reset_table(interaction, self.cls, self.confirm.value)


# -- the commands -----------------------------------------------------------------------------


async def _table_choices(
    interaction: discord.Interaction[Any], current: str
) -> list[app_commands.Choice[str]]:
    admin = _admin_for(interaction)
    if admin is None or not await admin.allowed(interaction):
        return []
    names = sorted(admin.db.tables)
    wanted = current.lower()
    return [app_commands.Choice(name=n[:100], value=n) for n in names if wanted in n.lower()][:25]


_TABLE = "The table (its name as stored)"


class AdminGroup(app_commands.Group):
    """`/discobase ...`: every subcommand defers to the AdminCommands of its database."""

    def __init__(self, admin: AdminCommands) -> None:
        super().__init__(
            name=GROUP,
            description="Manage this server's discobase database (administrators only)",
            default_permissions=discord.Permissions(administrator=True),
            guild_only=True,
        )
        self.admin = admin

    @app_commands.command(description="Find records by field values (none: every record)")
    @app_commands.describe(table=_TABLE, where="Conditions: field=value field2=value ...")
    @app_commands.autocomplete(table=_table_choices)
    async def find(
        self,
        interaction: discord.Interaction[Any],
        table: str,
        where: app_commands.Range[str, 1, WHERE_MAX] | None = None,
    ) -> None:
        await self.admin.find(interaction, table, where or "")

    @app_commands.command(description="Insert a record (a form of field=value lines)")
    @app_commands.describe(table=_TABLE)
    @app_commands.autocomplete(table=_table_choices)
    async def insert(self, interaction: discord.Interaction[Any], table: str) -> None:
        await self.admin.open_record_form(interaction, table, None)

    @app_commands.command(description="Change a record (a form with its current values)")
    @app_commands.describe(table=_TABLE, id="The record's id (find shows it)")
    @app_commands.autocomplete(table=_table_choices)
    async def update(
        self, interaction: discord.Interaction[Any], table: str, id: app_commands.Range[int, 0]
    ) -> None:
        await self.admin.open_record_form(interaction, table, id)

    @app_commands.command(description="Delete a record (after a confirmation)")
    @app_commands.describe(table=_TABLE, id="The record's id (find shows it)")
    @app_commands.autocomplete(table=_table_choices)
    async def delete(
        self, interaction: discord.Interaction[Any], table: str, id: app_commands.Range[int, 0]
    ) -> None:
        await self.admin.ask_delete(interaction, table, id)

    @app_commands.command(description="Show the stored schema of a table (or of every table)")
    @app_commands.describe(table="One table (default: all)")
    @app_commands.autocomplete(table=_table_choices)
    async def schema(self, interaction: discord.Interaction[Any], table: str | None = None) -> None:
        await self.admin.schema(interaction, table)

    @app_commands.command(description="Records, bytes and channels used of Discord's 500")
    @app_commands.describe(table="One table in detail (default: a summary of all)")
    @app_commands.autocomplete(table=_table_choices)
    async def stats(self, interaction: discord.Interaction[Any], table: str | None = None) -> None:
        await self.admin.stats(interaction, table)

    @app_commands.command(description="Verify that every record is readable and indexed")
    @app_commands.describe(table="One table (default: all)")
    @app_commands.autocomplete(table=_table_choices)
    async def check(self, interaction: discord.Interaction[Any], table: str | None = None) -> None:
        await self.admin.check(interaction, table)

    @app_commands.command(description="Delete every record of a table (asks for the name)")
    @app_commands.describe(table=_TABLE)
    @app_commands.autocomplete(table=_table_choices)
    async def reset(self, interaction: discord.Interaction[Any], table: str) -> None:
        await self.admin.ask_reset(interaction, table)


def _same(ours: Any, theirs: Any) -> bool:
    """Whether Discord's copy of a command (`theirs`) says what ours says: Discord leaves
    out false and empty values and answers permissions as strings."""
    if isinstance(ours, Mapping):
        if theirs is None:
            theirs = {}
        return isinstance(theirs, Mapping) and all(
            _same(value, theirs.get(key)) for key, value in ours.items() if key not in _IGNORED
        )
    if isinstance(ours, list):
        if not ours:
            return not theirs
        return (
            isinstance(theirs, list)
            and len(ours) == len(theirs)
            and all(_same(a, b) for a, b in zip(ours, theirs, strict=True))
        )
    if ours is None or ours is False:
        return theirs is None or theirs is False
    if isinstance(ours, bool):
        return theirs is ours
    return str(ours) == str(theirs)


# Settings of global commands that guild commands do not have.
_IGNORED = frozenset({"contexts", "integration_types", "dm_permission"})


def _tree_of(client: discord.Client) -> app_commands.CommandTree[Any]:
    """The client's command tree: a `commands.Bot`'s own, the one a plain client was given,
    or a new one (a client has at most one)."""
    if isinstance(client, ext_commands.Bot):
        return client.tree
    # discord.py keeps a plain client's tree only here; there is no public accessor.
    existing = getattr(client._connection, "_command_tree", None)
    if isinstance(existing, app_commands.CommandTree):
        return existing
    return app_commands.CommandTree(client)


class AdminCommands:
    """The admin commands of one database, installed on the client that serves it."""

    def __init__(self, db: Database, client: discord.Client, guild: discord.Guild) -> None:
        self.db = db
        self.client = client
        self.guild = guild
        self.tree = _tree_of(client)
        self.group = AdminGroup(self)
        self._owners: set[int] | None = None

    # -- installing ---------------------------------------------------------------------

    async def install(self) -> None:
        """Add the group to the tree, the buttons to the client, and upsert the guild
        command if the server's copy differs (one request to read, one to write)."""
        where = discord.Object(id=self.guild.id)
        present = self.tree.get_command(GROUP, guild=where)
        if present is not None and not isinstance(present, AdminGroup):
            raise DatabaseTableError(
                f"the bot already has a /{GROUP} command in server {self.guild.name!r}",
                hint=f"rename your own /{GROUP} command, or open the database without "
                "commands=True",
            )
        self.tree.add_command(self.group, guild=where, override=True)
        self.client.add_dynamic_items(*_DYNAMIC_ITEMS)
        _INSTALLED.setdefault(self.client, {})[self.guild.id] = self
        await self._register()

    async def _register(self) -> None:
        application_id = self.client.application_id
        assert application_id is not None  # set at login
        payload = self.group.to_dict(self.tree)
        http = self.client.http
        try:
            present = await http.get_guild_commands(application_id, self.guild.id)
            theirs = next(
                (c for c in present if c.get("name") == GROUP and c.get("type", 1) == 1), None
            )
            if theirs is not None and _same(payload, theirs):
                log.info("/%s is registered in server %s already", GROUP, self.guild.id)
                return
            await http.upsert_guild_command(application_id, self.guild.id, payload)
        except discord.Forbidden as exc:
            raise DatabaseTableError(
                f"the bot may not register commands in server {self.guild.name!r}: {exc.text}",
                hint="invite the bot with the applications.commands scope, or open the "
                "database without commands=True",
            ) from exc
        log.info("/%s registered in server %s", GROUP, self.guild.id)

    def uninstall(self) -> None:
        """Remove the group from the tree (an attached bot keeps running); the server's
        command stays registered, so a database opened again needs no request."""
        installed = _INSTALLED.get(self.client, {})
        if installed.get(self.guild.id) is self:
            del installed[self.guild.id]
        where = discord.Object(id=self.guild.id)
        if self.tree.get_command(GROUP, guild=where) is self.group:
            self.tree.remove_command(GROUP, guild=where)
        if not installed:
            self.client.remove_dynamic_items(*_DYNAMIC_ITEMS)

    # -- who may ------------------------------------------------------------------------

    async def allowed(self, interaction: discord.Interaction[Any]) -> bool:
        """Administrator in this server (as Discord computed it for this interaction), or
        the application's owner; never what the client chose to show."""
        if interaction.guild_id != self.guild.id:
            return False
        if interaction.permissions.administrator:
            return True
        return await self._is_owner(interaction.user)

    async def _is_owner(self, user: discord.abc.User) -> bool:
        if isinstance(self.client, ext_commands.Bot):
            return await self.client.is_owner(user)
        if self._owners is None:
            info = await self.client.application_info()
            team = info.team
            self._owners = {m.id for m in team.members} if team else {info.owner.id}
        return user.id in self._owners

    async def refused(self, interaction: discord.Interaction[Any]) -> bool:
        """Answer a member who may not (ephemerally) and say so; False for an admin."""
        if await self.allowed(interaction):
            return False
        await interaction.response.send_message(REFUSAL, ephemeral=True)
        return True

    # -- answering ----------------------------------------------------------------------

    async def _answer(
        self,
        interaction: discord.Interaction[Any],
        content: str | None = None,
        *,
        embed: discord.Embed | None = None,
        view: discord.ui.View | None = None,
    ) -> None:
        content = clip(content, CONTENT_MAX) if content is not None else None
        if interaction.response.is_done():
            await interaction.edit_original_response(content=content, embed=embed, view=view)
            return
        kwargs: dict[str, Any] = {"ephemeral": True}
        if embed is not None:
            kwargs["embed"] = embed
        if view is not None:
            kwargs["view"] = view
        await interaction.response.send_message(content, **kwargs)

    async def _failed(self, interaction: discord.Interaction[Any], exc: Exception) -> None:
        if isinstance(exc, DiscobaseError):
            text = f"**{type(exc).__name__}**: {exc.message}"
            if exc.hint:
                text += f"\nHint: {exc.hint}"
        else:
            log.exception("/%s failed", GROUP, exc_info=exc)
            text = f"**Error**: {type(exc).__name__}: {exc}"
        await self._answer(interaction, text)

    async def _thinking(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)

    # -- tables -------------------------------------------------------------------------

    async def table(self, name: str) -> type[Table]:
        """The open table called `name`: a declared one, or a stored one opened from its
        stored schema (as the command line does)."""
        for candidates in (
            [n for n in self.db.tables if n == name],
            [n for n in self.db.tables if n.lower() == name.lower()],
        ):
            if candidates and candidates[0] in self.db._stores:
                return self.db.tables[candidates[0]]
        return await open_table(self.db, name)

    async def table_of_channel(self, channel_id: int) -> type[Table]:
        """The table stored in channel `channel_id` (what the buttons carry)."""
        for name, store in self.db._stores.items():
            first = store.ios[0]
            if first is not None and first.channel.id == channel_id:
                return self.db.tables[name]
        for stored in await stored_tables(self.db):
            if stored.channel_id == channel_id:
                return await open_table(self.db, stored.name)
        raise NotFoundError(
            f"the table of this message (channel {channel_id}) is gone",
            hint=f"run /{GROUP} find again",
        )

    @staticmethod
    def _channel_id(cls: type[Table]) -> int:
        first = cls._store().ios[0]
        assert first is not None  # a table's own channel, never a lane thread that is gone
        return first.channel.id

    @staticmethod
    def _name(cls: type[Table]) -> str:
        return cls.__disco_name__ or cls.__name__

    # -- find ---------------------------------------------------------------------------

    async def find(self, interaction: discord.Interaction[Any], table: str, where: str) -> None:
        if await self.refused(interaction):
            return
        await self._thinking(interaction)
        try:
            if len(where) > WHERE_MAX:
                raise QueryError(
                    f"the conditions have {len(where)} characters; at most {WHERE_MAX} fit "
                    "the page buttons",
                    hint="use fewer or shorter conditions",
                )
            cls = await self.table(table)
            embed, view = await self._page(cls, where, 0)
        except Exception as exc:
            await self._failed(interaction, exc)
            return
        await self._answer(interaction, embed=embed, view=view)

    async def turn_page(
        self, interaction: discord.Interaction[Any], channel_id: int, where: str, page: int
    ) -> None:
        if await self.refused(interaction):
            return
        await interaction.response.defer()  # then edit the page's own message
        try:
            cls = await self.table_of_channel(channel_id)
            embed, view = await self._page(cls, where, page)
        except Exception as exc:
            await self._failed(interaction, exc)
            return
        await interaction.edit_original_response(embed=embed, view=view)

    async def _page(
        self, cls: type[Table], where: str, page: int
    ) -> tuple[discord.Embed, discord.ui.View | None]:
        """Page `page` (clamped to the last) of the records matching `where`."""
        conditions = parse_assignments(cls, split_conditions(cls, where))
        if conditions:
            matching = await cls.find(**conditions)
            total = len(matching)
            pages = max(1, math.ceil(total / PAGE_SIZE))
            page = min(page, pages - 1)
            shown = matching[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
        else:
            rids = cls._store().state.rids()
            total = len(rids)
            pages = max(1, math.ceil(total / PAGE_SIZE))
            page = min(page, pages - 1)
            wanted = rids[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
            found = await read_records(cls, wanted)
            shown = [found[rid] for rid in wanted if rid in found]
        name = self._name(cls)
        title = f"{name}: {total} record{'s' * (total != 1)}"
        fields = [(f"id {record.disco_id}", _record_lines(record)) for record in shown]
        embed = fit_embed(
            title,
            f"where {discord.utils.escape_markdown(where)}" if where else "",
            fields,
            f"Page {page + 1} of {pages}",
        )
        if pages == 1:
            return embed, None
        channel_id = self._channel_id(cls)
        view = discord.ui.View(timeout=None)
        view.add_item(
            FindPage(max(page - 1, 0), channel_id, where, label="Previous", disabled=page == 0)
        )
        view.add_item(
            FindPage(
                min(page + 1, pages - 1),
                channel_id,
                where,
                label="Next",
                disabled=page >= pages - 1,
            )
        )
        return embed, view

    # -- insert and update --------------------------------------------------------------

    async def open_record_form(
        self, interaction: discord.Interaction[Any], table: str, rid: int | None
    ) -> None:
        if await self.refused(interaction):
            return
        try:
            cls = await self.table(table)
            name = self._name(cls)
            if rid is None:
                text = "\n".join(_blank_line(cls, field) for field in cls.model_fields)
                title = f"Insert into {name}"
            else:
                record = await get_record(cls, rid)
                text = "\n".join(
                    f"{field}={text_of(getattr(record, field))}" for field in cls.model_fields
                )
                title = f"Update {name} {rid}"
            if len(text) > TEXT_INPUT_MAX:
                raise QueryError(
                    f"the record's fields as text have {len(text)} characters; a form holds "
                    f"{TEXT_INPUT_MAX}",
                    hint="change this record from Python or with the discobase command line",
                    table=name,
                )
        except Exception as exc:
            await self._failed(interaction, exc)
            return
        await interaction.response.send_modal(RecordModal(self, cls, title, text, rid))

    async def save_record(
        self, interaction: discord.Interaction[Any], cls: type[Table], rid: int | None, text: str
    ) -> None:
        if await self.refused(interaction):
            return
        await self._thinking(interaction)
        name = self._name(cls)
        try:
            texts = _lines_to_texts(cls, text)
            if rid is None:
                record = record_from_text(cls, texts)
                await record.save()
                done = f"Inserted record {record.disco_id} into {name}."
            else:
                current = await get_record(cls, rid)
                merged = {f: text_of(getattr(current, f)) for f in cls.model_fields}
                record = record_from_text(cls, {**merged, **texts})
                record._disco_id = rid
                await record.update()
                done = f"Updated record {rid} of {name}."
        except Exception as exc:
            await self._failed(interaction, exc)
            return
        embed = fit_embed(f"{name} {record.disco_id}", _record_lines(record))
        await self._answer(interaction, done, embed=embed)

    # -- delete -------------------------------------------------------------------------

    async def ask_delete(self, interaction: discord.Interaction[Any], table: str, rid: int) -> None:
        if await self.refused(interaction):
            return
        await self._thinking(interaction)
        try:
            cls = await self.table(table)
            record = await get_record(cls, rid)
            channel_id = self._channel_id(cls)
        except Exception as exc:
            await self._failed(interaction, exc)
            return
        view = discord.ui.View(timeout=None)
        view.add_item(ConfirmDelete(rid, channel_id))
        view.add_item(CancelDelete())
        embed = fit_embed(f"Delete {self._name(cls)} {rid}?", _record_lines(record))
        await self._answer(interaction, embed=embed, view=view)

    async def confirm_delete(
        self, interaction: discord.Interaction[Any], channel_id: int, rid: int
    ) -> None:
        if await self.refused(interaction):
            return
        await interaction.response.defer()
        try:
            cls = await self.table_of_channel(channel_id)
            record = await get_record(cls, rid)
            await record.delete()
        except Exception as exc:
            await self._failed(interaction, exc)
            return
        await interaction.edit_original_response(
            content=f"Deleted record {rid} of {self._name(cls)}.", embed=None, view=None
        )

    # -- reset --------------------------------------------------------------------------

    async def ask_reset(self, interaction: discord.Interaction[Any], table: str) -> None:
        if await self.refused(interaction):
            return
        try:
            cls = await self.table(table)
        except Exception as exc:
            await self._failed(interaction, exc)
            return
        await interaction.response.send_modal(ResetModal(self, cls, self._name(cls)))

    async def reset_table(
        self, interaction: discord.Interaction[Any], cls: type[Table], typed: str
    ) -> None:
        if await self.refused(interaction):
            return
        name = self._name(cls)
        if typed.strip() != self.db.name:
            await self._answer(
                interaction,
                f"Not reset: you typed {clip(typed, 100)!r}, and the database is named "
                f"{self.db.name!r}. Nothing was deleted.",
            )
            return
        await self._thinking(interaction)
        deleted = 0
        try:
            batch: list[Table] = []
            async for record in iter_records(cls):
                batch.append(record)
                if len(batch) >= 256:
                    deleted += await _delete_all(batch)
                    batch = []
            deleted += await _delete_all(batch)
        except Exception as exc:
            await self._failed(interaction, exc)
            return
        await self._answer(interaction, f"Reset {name}: deleted {deleted} records.")

    # -- schema, stats, check -----------------------------------------------------------

    async def schema(self, interaction: discord.Interaction[Any], table: str | None) -> None:
        if await self.refused(interaction):
            return
        await self._thinking(interaction)
        try:
            if table is not None:
                stored = [await find_stored_table(self.db, table)]
            else:
                stored = await stored_tables(self.db)
        except Exception as exc:
            await self._failed(interaction, exc)
            return
        if table is not None:
            only = stored[0]
            fields = [(f.name, _field_text(f.type_repr, f)) for f in only.schema.fields]
            embed = fit_embed(f"{only.name}: {only.records} records", "", fields)
        else:
            fields = [
                (
                    f"{s.name} ({s.records} records)",
                    "\n".join(f"{f.name}: {_field_text(f.type_repr, f)}" for f in s.schema.fields),
                )
                for s in stored
            ]
            embed = fit_embed(f"{len(stored)} tables", "", fields)
        await self._answer(interaction, embed=embed)

    async def stats(self, interaction: discord.Interaction[Any], table: str | None) -> None:
        if await self.refused(interaction):
            return
        await self._thinking(interaction)
        guild = self.db.guild or self.guild
        channels = f"{len(guild.channels)} of {MAX_CHANNELS}"
        try:
            if table is not None:
                s = await table_stats(await self.table(table))
                fields = [
                    ("records", str(s.records)),
                    ("bytes (live records)", str(s.live_bytes)),
                    ("bytes stored (messages)", str(s.stored_bytes)),
                    ("messages", str(s.messages)),
                    ("lanes (channel and threads)", str(s.lanes)),
                    ("channels used in the server", channels),
                ]
                embed = fit_embed(f"{s.table} statistics", "", fields)
            else:
                stored = await stored_tables(self.db)
                fields = [(s.name, f"{s.records} records") for s in stored]
                fields.append(("channels used in the server", channels))
                total = sum(s.records for s in stored)
                embed = fit_embed(
                    f"{self.db.name}: {total} records",
                    "Give a table for its bytes and messages (that reads the whole table).",
                    fields,
                )
        except Exception as exc:
            await self._failed(interaction, exc)
            return
        await self._answer(interaction, embed=embed)

    async def check(self, interaction: discord.Interaction[Any], table: str | None) -> None:
        """The command line's `check`: read every record and find it through the index of
        every field (without repairing: that stays a deliberate command-line step)."""
        if await self.refused(interaction):
            return
        await self._thinking(interaction)
        try:
            names = [table] if table else [t.name for t in await stored_tables(self.db)]
            reports: list[TableCheck] = []
            for name in names:
                try:
                    cls = await self.table(name)
                    reports.append(await verify_table(cls))
                except DatabaseCorruptionError as exc:
                    bad = TableCheck(name)
                    bad.problems.append((None, f"cannot open: {exc.message}"))
                    reports.append(bad)
        except Exception as exc:
            await self._failed(interaction, exc)
            return
        fields = [(_check_title(r), _check_text(r)) for r in reports]
        ok = all(r.ok for r in reports)
        embed = fit_embed(
            "check: ok" if ok else "check: problems found",
            "",
            fields,
            colour=discord.Colour.green() if ok else discord.Colour.red(),
        )
        await self._answer(interaction, embed=embed)


def _blank_line(cls: type[Table], field: str) -> str:
    """The insert form's line for a field: its default as text, else nothing to fill in."""
    info = cls.model_fields[field]
    if info.is_required():
        return f"{field}="
    default = info.get_default(call_default_factory=True)
    return f"{field}={text_of(default)}"


def _field_text(type_repr: str, field: Any) -> str:
    text = type_repr
    if field.has_default:
        text += f" = {json.dumps(field.default, ensure_ascii=False)}"
    elif not field.required:
        text += " (optional)"
    return discord.utils.escape_markdown(text)


def _check_title(report: TableCheck) -> str:
    state = "ok" if report.ok else f"{len(report.problems)} problems"
    return f"{report.table}: {report.checked} of {report.records} records checked, {state}"


def _check_text(report: TableCheck) -> str:
    if report.ok:
        return "every record is readable and found through every index"
    return "\n".join(
        f"{'record ' + str(rid) if rid is not None else 'table'}: {text}"
        for rid, text in report.problems
    )


async def _delete_all(records: Iterable[Table]) -> int:
    tasks = [record.delete() for record in records]
    await asyncio.gather(*tasks)
    return len(tasks)
