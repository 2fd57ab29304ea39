"""SQLite persistence: every change is committed before the HTTP answer is sent.

Users, guilds, members and channels are few and are read on every request, so they live in
memory (loaded at start) and are written through; messages and attachment bytes live only in
SQLite. Without a data folder the database is `:memory:`. With one it runs in WAL mode with
synchronous=NORMAL, which survives a killed process (kill -9) once `commit()` has returned.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .snowflake import ms_of

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS aging(up_to INTEGER NOT NULL, shift_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS users(
    id INTEGER PRIMARY KEY, token TEXT UNIQUE, username TEXT NOT NULL, bot INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS guilds(id INTEGER PRIMARY KEY, name TEXT NOT NULL, owner_id INTEGER);
CREATE TABLE IF NOT EXISTS members(
    guild_id INTEGER NOT NULL, user_id INTEGER NOT NULL, joined_ms INTEGER NOT NULL,
    PRIMARY KEY(guild_id, user_id));
CREATE TABLE IF NOT EXISTS channels(
    id INTEGER PRIMARY KEY, guild_id INTEGER NOT NULL, type INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages(
    id INTEGER PRIMARY KEY, channel_id INTEGER NOT NULL, author_id INTEGER NOT NULL,
    content TEXT NOT NULL, nonce TEXT, pinned_ms INTEGER, edited_ms INTEGER, extra TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS messages_by_channel ON messages(channel_id, id);
CREATE INDEX IF NOT EXISTS messages_by_nonce ON messages(author_id, nonce) WHERE nonce IS NOT NULL;
CREATE TABLE IF NOT EXISTS attachments(
    id INTEGER PRIMARY KEY, message_id INTEGER NOT NULL, channel_id INTEGER NOT NULL,
    position INTEGER NOT NULL, filename TEXT NOT NULL, content_type TEXT, size INTEGER NOT NULL,
    description TEXT, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS attachments_by_message ON attachments(message_id);
CREATE TABLE IF NOT EXISTS roles(
    id INTEGER PRIMARY KEY, guild_id INTEGER NOT NULL, name TEXT NOT NULL,
    permissions TEXT NOT NULL, position INTEGER NOT NULL, bot_id INTEGER);
CREATE TABLE IF NOT EXISTS member_roles(
    guild_id INTEGER NOT NULL, user_id INTEGER NOT NULL, role_id INTEGER NOT NULL,
    PRIMARY KEY(guild_id, user_id, role_id));
CREATE TABLE IF NOT EXISTS commands(
    id INTEGER PRIMARY KEY, application_id INTEGER NOT NULL, guild_id INTEGER,
    data TEXT NOT NULL);
"""


@dataclass
class User:
    id: int
    username: str
    bot: bool
    token: str | None = None


@dataclass
class Role:
    """A guild role. The @everyone role has the guild's id; a bot's managed role has `bot_id`."""

    id: int
    guild_id: int
    name: str
    permissions: int
    position: int
    bot_id: int | None = None


@dataclass
class Guild:
    id: int
    name: str
    owner_id: int | None
    members: dict[int, int] = field(default_factory=dict)  # user id -> joined at (unix ms)
    roles: dict[int, Role] = field(default_factory=dict)
    member_roles: dict[int, list[int]] = field(default_factory=dict)  # user id -> role ids


@dataclass
class Command:
    """An application command; `guild_id` None for a global one. `data` is its JSON as sent."""

    id: int
    application_id: int
    guild_id: int | None
    data: dict[str, Any]


@dataclass
class Channel:
    id: int
    guild_id: int
    type: int
    data: dict[str, Any]

    @property
    def is_thread(self) -> bool:
        return self.type in (10, 11, 12)


@dataclass
class Attachment:
    id: int
    message_id: int
    channel_id: int
    position: int
    filename: str
    content_type: str | None
    size: int
    description: str | None


@dataclass
class Message:
    id: int
    channel_id: int
    author_id: int
    content: str
    nonce: str | None
    pinned_ms: int | None
    edited_ms: int | None
    extra: dict[str, Any]
    attachments: list[Attachment] = field(default_factory=list)


_MSG_COLS = "id, channel_id, author_id, content, nonce, pinned_ms, edited_ms, extra"
_ATT_COLS = "id, message_id, channel_id, position, filename, content_type, size, description"


def _message(row: tuple[Any, ...]) -> Message:
    return Message(row[0], row[1], row[2], row[3], row[4], row[5], row[6], json.loads(row[7]))


class Store:
    """Tables plus in-memory mirrors of the small ones (users, guilds, channels)."""

    def __init__(self, data_dir: Path | None) -> None:
        self.data_dir = data_dir
        if data_dir is None:
            self.db = sqlite3.connect(":memory:", check_same_thread=False)
        else:
            data_dir.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(data_dir / "discord.sqlite3"), check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self.db.commit()
        self.users: dict[int, User] = {}
        self.tokens: dict[str, User] = {}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        self.commands: dict[int, Command] = {}
        self.aging: list[tuple[int, int]] = []
        self._load()

    def _load(self) -> None:
        self.users.clear()
        self.tokens.clear()
        self.guilds.clear()
        self.channels.clear()
        self.commands.clear()
        rows = self.db.execute("SELECT up_to, shift_ms FROM aging")
        self.aging = [(int(up_to), int(shift)) for up_to, shift in rows]
        for uid, token, username, bot in self.db.execute(
            "SELECT id, token, username, bot FROM users"
        ):
            user = User(uid, username, bool(bot), token)
            self.users[uid] = user
            if token is not None:
                self.tokens[token] = user
        for gid, name, owner in self.db.execute("SELECT id, name, owner_id FROM guilds"):
            self.guilds[gid] = Guild(gid, name, owner)
        for gid, uid, joined in self.db.execute("SELECT guild_id, user_id, joined_ms FROM members"):
            if gid in self.guilds:
                self.guilds[gid].members[uid] = joined
        for cid, gid, ctype, data in self.db.execute(
            "SELECT id, guild_id, type, data FROM channels"
        ):
            self.channels[cid] = Channel(cid, gid, ctype, json.loads(data))
        for rid, gid, name, perms, position, bot_id in self.db.execute(
            "SELECT id, guild_id, name, permissions, position, bot_id FROM roles"
        ):
            if gid in self.guilds:
                self.guilds[gid].roles[rid] = Role(rid, gid, name, int(perms), position, bot_id)
        for gid, uid, rid in self.db.execute(
            "SELECT guild_id, user_id, role_id FROM member_roles ORDER BY rowid"
        ):
            if gid in self.guilds:
                self.guilds[gid].member_roles.setdefault(uid, []).append(rid)
        for cid, app_id, gid, data in self.db.execute(
            "SELECT id, application_id, guild_id, data FROM commands"
        ):
            self.commands[cid] = Command(cid, app_id, gid, json.loads(data))

    def close(self) -> None:
        self.db.close()

    def commit(self) -> None:
        self.db.commit()

    def max_id(self) -> int:
        """The largest id ever stored, so a restarted generator never reuses one."""
        best = 0
        for table in (
            "users",
            "guilds",
            "channels",
            "messages",
            "attachments",
            "roles",
            "commands",
        ):
            row = self.db.execute(f"SELECT MAX(id) FROM {table}").fetchone()
            if row and row[0] is not None:
                best = max(best, int(row[0]))
        return best

    def wipe(self) -> None:
        """Delete everything except `meta` (the signing key survives a reset)."""
        self.aging.clear()
        for table in (
            "users",
            "guilds",
            "members",
            "channels",
            "messages",
            "attachments",
            "aging",
            "roles",
            "member_roles",
            "commands",
        ):
            self.db.execute(f"DELETE FROM {table}")
        self.db.commit()
        self._load()

    # meta
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # users, guilds, members, channels (write-through)
    def put_user(self, user: User) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO users(id, token, username, bot) VALUES (?, ?, ?, ?)",
            (user.id, user.token, user.username, int(user.bot)),
        )
        self.users[user.id] = user
        if user.token is not None:
            self.tokens[user.token] = user

    def put_guild(self, guild: Guild) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO guilds(id, name, owner_id) VALUES (?, ?, ?)",
            (guild.id, guild.name, guild.owner_id),
        )
        self.guilds[guild.id] = guild

    def put_member(self, guild: Guild, user_id: int, joined_ms: int) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO members(guild_id, user_id, joined_ms) VALUES (?, ?, ?)",
            (guild.id, user_id, joined_ms),
        )
        guild.members[user_id] = joined_ms

    def put_role(self, role: Role) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO roles(id, guild_id, name, permissions, position, bot_id) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (role.id, role.guild_id, role.name, str(role.permissions), role.position, role.bot_id),
        )
        self.guilds[role.guild_id].roles[role.id] = role

    def set_member_roles(self, guild: Guild, user_id: int, role_ids: list[int]) -> None:
        """Replace a member's roles (the @everyone role is implicit and never listed)."""
        self.db.execute(
            "DELETE FROM member_roles WHERE guild_id = ? AND user_id = ?", (guild.id, user_id)
        )
        self.db.executemany(
            "INSERT OR IGNORE INTO member_roles(guild_id, user_id, role_id) VALUES (?, ?, ?)",
            [(guild.id, user_id, rid) for rid in role_ids],
        )
        guild.member_roles[user_id] = list(dict.fromkeys(role_ids))

    def put_command(self, command: Command) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO commands(id, application_id, guild_id, data) "
            "VALUES (?, ?, ?, ?)",
            (command.id, command.application_id, command.guild_id, json.dumps(command.data)),
        )
        self.commands[command.id] = command

    def delete_command(self, command_id: int) -> None:
        self.db.execute("DELETE FROM commands WHERE id = ?", (command_id,))
        self.commands.pop(command_id, None)

    def delete_guild(self, guild_id: int) -> None:
        for cid in [c.id for c in self.channels.values() if c.guild_id == guild_id]:
            self.delete_channel(cid)
        for cmd in [c.id for c in self.commands.values() if c.guild_id == guild_id]:
            self.delete_command(cmd)
        self.db.execute("DELETE FROM roles WHERE guild_id = ?", (guild_id,))
        self.db.execute("DELETE FROM member_roles WHERE guild_id = ?", (guild_id,))
        self.db.execute("DELETE FROM members WHERE guild_id = ?", (guild_id,))
        self.db.execute("DELETE FROM guilds WHERE id = ?", (guild_id,))
        self.guilds.pop(guild_id, None)

    def put_channel(self, channel: Channel) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO channels(id, guild_id, type, data) VALUES (?, ?, ?, ?)",
            (channel.id, channel.guild_id, channel.type, json.dumps(channel.data)),
        )
        self.channels[channel.id] = channel

    def delete_channel(self, channel_id: int) -> None:
        self.db.execute("DELETE FROM attachments WHERE channel_id = ?", (channel_id,))
        self.db.execute("DELETE FROM messages WHERE channel_id = ?", (channel_id,))
        self.db.execute("DELETE FROM channels WHERE id = ?", (channel_id,))
        self.channels.pop(channel_id, None)

    # messages
    def insert_message(self, msg: Message) -> None:
        self.db.execute(
            f"INSERT INTO messages({_MSG_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                msg.id,
                msg.channel_id,
                msg.author_id,
                msg.content,
                msg.nonce,
                msg.pinned_ms,
                msg.edited_ms,
                json.dumps(msg.extra),
            ),
        )

    def update_message(self, msg: Message) -> None:
        self.db.execute(
            "UPDATE messages SET content = ?, pinned_ms = ?, edited_ms = ?, extra = ? WHERE id = ?",
            (msg.content, msg.pinned_ms, msg.edited_ms, json.dumps(msg.extra), msg.id),
        )

    def delete_messages(self, ids: list[int]) -> None:
        marks = ",".join("?" * len(ids))
        self.db.execute(f"DELETE FROM attachments WHERE message_id IN ({marks})", ids)
        self.db.execute(f"DELETE FROM messages WHERE id IN ({marks})", ids)

    def get_message(self, channel_id: int, message_id: int) -> Message | None:
        row = self.db.execute(
            f"SELECT {_MSG_COLS} FROM messages WHERE id = ? AND channel_id = ?",
            (message_id, channel_id),
        ).fetchone()
        if row is None:
            return None
        msg = _message(row)
        self._attach([msg])
        return msg

    def existing_ids(self, channel_id: int, ids: list[int]) -> list[int]:
        marks = ",".join("?" * len(ids))
        rows = self.db.execute(
            f"SELECT id FROM messages WHERE channel_id = ? AND id IN ({marks})",
            [channel_id, *ids],
        )
        return [int(r[0]) for r in rows]

    def find_nonce(self, author_id: int, nonce: str, min_id: int) -> Message | None:
        row = self.db.execute(
            f"SELECT {_MSG_COLS} FROM messages WHERE author_id = ? AND nonce = ? AND id >= ? "
            "ORDER BY id DESC LIMIT 1",
            (author_id, nonce, min_id),
        ).fetchone()
        if row is None:
            return None
        msg = _message(row)
        self._attach([msg])
        return msg

    def history(
        self,
        channel_id: int,
        limit: int,
        before: int | None = None,
        after: int | None = None,
        around: int | None = None,
    ) -> list[Message]:
        """Newest first, whatever the mode (Discord's order for before, after and around)."""
        q = f"SELECT {_MSG_COLS} FROM messages WHERE channel_id = ?"
        if around is not None:
            older_n = limit // 2
            newer = self.db.execute(
                q + " AND id >= ? ORDER BY id ASC LIMIT ?", (channel_id, around, limit - older_n)
            ).fetchall()
            older = self.db.execute(
                q + " AND id < ? ORDER BY id DESC LIMIT ?", (channel_id, around, older_n)
            ).fetchall()
            rows = list(reversed(newer)) + older
        elif before is not None:
            rows = self.db.execute(
                q + " AND id < ? ORDER BY id DESC LIMIT ?", (channel_id, before, limit)
            ).fetchall()
        elif after is not None:
            rows = self.db.execute(
                q + " AND id > ? ORDER BY id ASC LIMIT ?", (channel_id, after, limit)
            ).fetchall()
            rows.reverse()
        else:
            rows = self.db.execute(q + " ORDER BY id DESC LIMIT ?", (channel_id, limit)).fetchall()
        msgs = [_message(r) for r in rows]
        self._attach(msgs)
        return msgs

    def last_message_id(self, channel_id: int) -> int | None:
        row = self.db.execute(
            "SELECT MAX(id) FROM messages WHERE channel_id = ?", (channel_id,)
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def pinned(self, channel_id: int) -> list[Message]:
        """Pinned messages, most recently pinned first."""
        rows = self.db.execute(
            f"SELECT {_MSG_COLS} FROM messages WHERE channel_id = ? AND pinned_ms IS NOT NULL "
            "ORDER BY pinned_ms DESC, id DESC",
            (channel_id,),
        ).fetchall()
        msgs = [_message(r) for r in rows]
        self._attach(msgs)
        return msgs

    def count_pins(self, channel_id: int) -> int:
        row = self.db.execute(
            "SELECT COUNT(*) FROM messages WHERE channel_id = ? AND pinned_ms IS NOT NULL",
            (channel_id,),
        ).fetchone()
        return int(row[0])

    def count_messages(self, channel_id: int) -> int:
        row = self.db.execute(
            "SELECT COUNT(*) FROM messages WHERE channel_id = ?", (channel_id,)
        ).fetchone()
        return int(row[0])

    def age(self, shift_ms: int) -> None:
        """Make every existing message `shift_ms` older.

        Ids never change (Discord's never do, and clients keep them): the shift is recorded
        against the ids that exist now, and `created_ms` applies it.
        """
        row = self.db.execute("SELECT MAX(id) FROM messages").fetchone()
        if row is None or row[0] is None:
            return
        self.db.execute("INSERT INTO aging(up_to, shift_ms) VALUES (?, ?)", (row[0], shift_ms))
        self.aging.append((int(row[0]), shift_ms))
        self.db.execute(
            "UPDATE messages SET edited_ms = edited_ms - ? WHERE edited_ms IS NOT NULL", (shift_ms,)
        )
        self.db.execute(
            "UPDATE messages SET pinned_ms = pinned_ms - ? WHERE pinned_ms IS NOT NULL", (shift_ms,)
        )

    def created_ms(self, message_id: int) -> int:
        """When a message was created: its snowflake time, less any aging applied to it."""
        return ms_of(message_id) - sum(shift for up_to, shift in self.aging if message_id <= up_to)

    def age_seconds(self, message_id: int, now: float | None = None) -> float:
        """Seconds since the message was created (see `created_ms`)."""
        return (now if now is not None else time.time()) - self.created_ms(message_id) / 1000.0

    def stored_bytes(
        self, channel_ids: list[int], *, per_message: bool = False
    ) -> tuple[dict[int, dict[str, int]], list[dict[str, Any]]]:
        """What the channels hold: per channel, its messages, their content bytes (UTF-8),
        its attachments and their bytes; with `per_message`, also each message's content
        bytes and attachments (filename, bytes), oldest first."""
        out = {
            cid: {"messages": 0, "content_bytes": 0, "attachments": 0, "attachment_bytes": 0}
            for cid in channel_ids
        }
        if not channel_ids:
            return out, []
        marks = ",".join("?" * len(channel_ids))
        for cid, count, size in self.db.execute(
            "SELECT channel_id, COUNT(*), COALESCE(SUM(LENGTH(CAST(content AS BLOB))), 0) "
            f"FROM messages WHERE channel_id IN ({marks}) GROUP BY channel_id",
            channel_ids,
        ):
            out[cid]["messages"], out[cid]["content_bytes"] = int(count), int(size)
        for cid, count, size in self.db.execute(
            "SELECT channel_id, COUNT(*), COALESCE(SUM(LENGTH(data)), 0) "
            f"FROM attachments WHERE channel_id IN ({marks}) GROUP BY channel_id",
            channel_ids,
        ):
            out[cid]["attachments"], out[cid]["attachment_bytes"] = int(count), int(size)
        if not per_message:
            return out, []
        messages: dict[int, dict[str, Any]] = {}
        for mid, cid, size in self.db.execute(
            "SELECT id, channel_id, LENGTH(CAST(content AS BLOB)) "
            f"FROM messages WHERE channel_id IN ({marks}) ORDER BY id",
            channel_ids,
        ):
            messages[mid] = {
                "id": str(mid),
                "channel_id": str(cid),
                "content_bytes": int(size),
                "attachments": [],
            }
        for mid, filename, size in self.db.execute(
            "SELECT message_id, filename, LENGTH(data) "
            f"FROM attachments WHERE channel_id IN ({marks}) ORDER BY message_id, position",
            channel_ids,
        ):
            if mid in messages:
                messages[mid]["attachments"].append({"filename": filename, "bytes": int(size)})
        return out, list(messages.values())

    # attachments
    def _attach(self, msgs: list[Message]) -> None:
        with_files = [m for m in msgs if m.extra.get("has_files")]
        if not with_files:
            return
        by_id = {m.id: m for m in with_files}
        marks = ",".join("?" * len(by_id))
        rows = self.db.execute(
            f"SELECT {_ATT_COLS} FROM attachments WHERE message_id IN ({marks}) "
            "ORDER BY message_id, position",
            list(by_id),
        )
        for row in rows:
            by_id[row[1]].attachments.append(Attachment(*row))

    def insert_attachment(self, att: Attachment, data: bytes) -> None:
        self.db.execute(
            f"INSERT INTO attachments({_ATT_COLS}, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                att.id,
                att.message_id,
                att.channel_id,
                att.position,
                att.filename,
                att.content_type,
                att.size,
                att.description,
                data,
            ),
        )

    def reposition_attachment(self, attachment_id: int, position: int) -> None:
        self.db.execute(
            "UPDATE attachments SET position = ? WHERE id = ?", (position, attachment_id)
        )

    def delete_attachments(self, ids: list[int]) -> None:
        marks = ",".join("?" * len(ids))
        self.db.execute(f"DELETE FROM attachments WHERE id IN ({marks})", ids)

    def replace_attachment_bytes(self, attachment_id: int, data: bytes) -> None:
        """Store new bytes for an attachment and the size Discord would report for them."""
        self.db.execute(
            "UPDATE attachments SET data = ?, size = ? WHERE id = ?",
            (data, len(data), attachment_id),
        )

    def attachment_bytes(self, channel_id: int, attachment_id: int, filename: str) -> bytes | None:
        row = self.db.execute(
            "SELECT data FROM attachments WHERE id = ? AND channel_id = ? AND filename = ?",
            (attachment_id, channel_id, filename),
        ).fetchone()
        return None if row is None else bytes(row[0])
