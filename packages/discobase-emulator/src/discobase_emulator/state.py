"""The emulated Discord: the operations REST and the control API share, each committed then
dispatched on the gateway (so an event never announces something a crash could lose).

Handlers validate input and map errors; this module changes state and renders JSON.
"""

from __future__ import annotations

import mimetypes
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from .cdn import Signer
from .gateway import Gateway
from .interaction_state import Interactions
from .metrics import Metrics
from .models import (
    channel_json,
    guild_json,
    me_json,
    member_json,
    message_json,
    partial_member_json,
    role_json,
    user_json,
)
from .permissions import BOT_DEFAULT, EVERYONE_DEFAULT
from .snowflake import SnowflakeGenerator, iso
from .store import Attachment, Channel, Guild, Message, Role, Store, User

MENTION = re.compile(r"<@!?(\d{15,21})>")
OWNER_NAME = "owner"


@dataclass
class Upload:
    filename: str
    content_type: str | None
    data: bytes
    description: str | None = None


def now_ms() -> int:
    return int(time.time() * 1000)


class State:
    def __init__(self, store: Store, metrics: Metrics, base_url: str = "") -> None:
        self.store = store
        self.metrics = metrics
        self.base_url = base_url
        self.ids = SnowflakeGenerator(store.max_id())
        key = store.get_meta("signing_key")
        if key is None:
            key = secrets.token_hex(32)
            store.set_meta("signing_key", key)
            store.commit()
        self.signer = Signer(bytes.fromhex(key))
        self.gateway = Gateway(self)
        self.interactions = Interactions()
        for guild in store.guilds.values():  # data folders written before roles existed
            self.ensure_roles(guild)
        store.commit()

    @property
    def gateway_url(self) -> str:
        return "ws" + self.base_url.removeprefix("http") + "/gateway"

    # rendering
    def me(self, user: User) -> dict[str, Any]:
        return me_json(user)

    def member(self, guild: Guild, user_id: int) -> dict[str, Any]:
        return member_json(self.store, guild, user_id)

    def channel(self, channel: Channel) -> dict[str, Any]:
        return channel_json(self.store, channel)

    def message(self, msg: Message) -> dict[str, Any]:
        return message_json(self.store, self.signer, self.base_url, msg)

    def guild_create(self, guild: Guild, available: bool) -> dict[str, Any]:
        chans = [c for c in self.store.channels.values() if c.guild_id == guild.id]
        out = guild_json(guild)
        out.update(
            {
                "joined_at": iso(min(guild.members.values(), default=now_ms())),
                "large": len(guild.members) >= 250,
                "member_count": len(guild.members),
                "members": [self.member(guild, u) for u in guild.members],
                "channels": [self.channel(c) for c in chans if not c.is_thread],
                "threads": [
                    self.channel(c)
                    for c in chans
                    if c.is_thread and not c.data["thread_metadata"]["archived"]
                ],
                "presences": [],
                "voice_states": [],
                "stage_instances": [],
                "guild_scheduled_events": [],
                "soundboard_sounds": [],
            }
        )
        if available:
            out["unavailable"] = False
        return out

    # users and guilds
    def add_bot(self, token: str, name: str = "bot") -> User:
        existing = self.store.tokens.get(token)
        if existing is not None:
            return existing
        user = User(self.ids.next(), name, True, token)
        self.store.put_user(user)
        self.store.commit()
        return user

    def human(self, username: str) -> User:
        for user in self.store.users.values():
            if not user.bot and user.username == username:
                return user
        user = User(self.ids.next(), username, False)
        self.store.put_user(user)
        return user

    # roles
    def ensure_roles(self, guild: Guild) -> None:
        """Give the guild its @everyone role and each bot member its managed role, as Discord
        does at creation and when a bot joins (not committed: callers commit)."""
        if guild.id not in guild.roles:
            self.store.put_role(Role(guild.id, guild.id, "@everyone", EVERYONE_DEFAULT, 0))
        for uid in guild.members:
            user = self.store.users.get(uid)
            if user is not None and user.bot and self.bot_role(guild, uid) is None:
                self._add_bot_role(guild, user)

    def bot_role(self, guild: Guild, bot_id: int) -> Role | None:
        return next((r for r in guild.roles.values() if r.bot_id == bot_id), None)

    def _add_bot_role(self, guild: Guild, user: User) -> Role:
        position = max((r.position for r in guild.roles.values()), default=0) + 1
        role = Role(self.ids.next(), guild.id, user.username, BOT_DEFAULT, position, user.id)
        self.store.put_role(role)
        self.store.set_member_roles(guild, user.id, [*guild.member_roles.get(user.id, []), role.id])
        return role

    def create_role(self, guild: Guild, name: str, permissions: int) -> Role:
        position = max((r.position for r in guild.roles.values()), default=0) + 1
        role = Role(self.ids.next(), guild.id, name, permissions, position)
        self.store.put_role(role)
        self.store.commit()
        self.gateway.dispatch(
            "GUILD_ROLE_CREATE", {"guild_id": str(guild.id), "role": role_json(role)}, guild.id
        )
        return role

    def update_role(self, role: Role) -> None:
        self.store.put_role(role)
        self.store.commit()
        self.gateway.dispatch(
            "GUILD_ROLE_UPDATE",
            {"guild_id": str(role.guild_id), "role": role_json(role)},
            role.guild_id,
        )

    def set_member_roles(self, guild: Guild, user_id: int, role_ids: list[int]) -> None:
        """Replace a member's roles; managed (bot) roles stay, as nobody can take them away."""
        kept = [r for r in guild.member_roles.get(user_id, []) if guild.roles[r].bot_id]
        self.store.set_member_roles(guild, user_id, [*kept, *role_ids])
        self.store.commit()
        self.gateway.dispatch(
            "GUILD_MEMBER_UPDATE",
            {**self.member(guild, user_id), "guild_id": str(guild.id)},
            guild.id,
        )

    def create_guild(self, name: str, member_ids: list[int], owner_id: int | None = None) -> Guild:
        if owner_id is None:
            owner_id = self.human(OWNER_NAME).id
        guild = Guild(self.ids.next(), name, owner_id)
        self.store.put_guild(guild)
        for uid in dict.fromkeys([owner_id, *member_ids]):
            self.store.put_member(guild, uid, now_ms())
        self.ensure_roles(guild)
        general = Channel(self.ids.next(), guild.id, 0, _channel_defaults("general", 0))
        self.store.put_channel(general)
        self.store.commit()
        for uid in member_ids:
            self.gateway.dispatch(
                "GUILD_CREATE", self.guild_create(guild, available=False), None, only_user=uid
            )
        return guild

    def join(self, guild: Guild, user: User) -> None:
        if user.id in guild.members:
            return
        self.store.put_member(guild, user.id, now_ms())
        role = self._add_bot_role(guild, user) if user.bot else None
        self.store.commit()
        if role is not None:
            self.gateway.dispatch(
                "GUILD_ROLE_CREATE", {"guild_id": str(guild.id), "role": role_json(role)}, guild.id
            )
        self.gateway.dispatch(
            "GUILD_MEMBER_ADD", {**self.member(guild, user.id), "guild_id": str(guild.id)}, guild.id
        )
        if user.bot:
            self.gateway.dispatch(
                "GUILD_CREATE", self.guild_create(guild, available=False), None, only_user=user.id
            )

    def delete_guild(self, guild: Guild) -> None:
        members = list(guild.members)
        self.store.delete_guild(guild.id)
        self.store.commit()
        for uid in members:
            self.gateway.dispatch("GUILD_DELETE", {"id": str(guild.id)}, None, only_user=uid)

    # channels
    def create_channel(self, guild: Guild, ctype: int, data: dict[str, Any]) -> Channel:
        if "position" not in data or data["position"] is None:
            same = [
                c.data.get("position", 0)
                for c in self.store.channels.values()
                if c.guild_id == guild.id and not c.is_thread
            ]
            data["position"] = max(same, default=-1) + 1
        channel = Channel(self.ids.next(), guild.id, ctype, data)
        self.store.put_channel(channel)
        self.store.commit()
        self.gateway.dispatch("CHANNEL_CREATE", self.channel(channel), guild.id)
        return channel

    def create_thread(
        self,
        parent: Channel,
        owner: User,
        name: str,
        ttype: int,
        auto_archive: int,
        thread_id: int | None = None,
    ) -> Channel:
        stamp = iso(now_ms())
        data: dict[str, Any] = {
            "name": name,
            "parent_id": parent.id,
            "owner_id": owner.id,
            "message_count": 0,
            "rate_limit_per_user": 0,
            "flags": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": auto_archive,
                "archive_timestamp": stamp,
                "locked": False,
                "create_timestamp": stamp,
                **({"invitable": True} if ttype == 12 else {}),
            },
        }
        thread = Channel(thread_id or self.ids.next(), parent.guild_id, ttype, data)
        self.store.put_channel(thread)
        self.store.commit()
        self.gateway.dispatch(
            "THREAD_CREATE", {**self.channel(thread), "newly_created": True}, parent.guild_id
        )
        return thread

    def update_channel(self, channel: Channel) -> None:
        self.store.put_channel(channel)
        self.store.commit()
        event = "THREAD_UPDATE" if channel.is_thread else "CHANNEL_UPDATE"
        self.gateway.dispatch(event, self.channel(channel), channel.guild_id)

    def delete_channel(self, channel: Channel) -> dict[str, Any]:
        rendered = self.channel(channel)
        children = [
            c
            for c in self.store.channels.values()
            if c.data.get("parent_id") == channel.id and c.id != channel.id
        ]
        self.store.delete_channel(channel.id)
        for child in children:
            if child.is_thread:
                self.store.delete_channel(child.id)
            else:
                child.data["parent_id"] = None
                self.store.put_channel(child)
        self.store.commit()
        event = "THREAD_DELETE" if channel.is_thread else "CHANNEL_DELETE"
        self.gateway.dispatch(event, rendered, channel.guild_id)
        for child in children:
            if child.is_thread:
                self.gateway.dispatch(
                    "THREAD_DELETE",
                    {
                        "id": str(child.id),
                        "guild_id": str(child.guild_id),
                        "parent_id": str(channel.id),
                        "type": child.type,
                    },
                    channel.guild_id,
                )
            else:
                self.gateway.dispatch("CHANNEL_UPDATE", self.channel(child), child.guild_id)
        return rendered

    # messages
    def create_message(
        self,
        channel: Channel,
        author: User,
        content: str,
        extra: dict[str, Any],
        uploads: list[Upload] | None = None,
        nonce: str | None = None,
        message_id: int | None = None,
        dispatch: bool = True,
    ) -> Message:
        mentions = [int(u) for u in MENTION.findall(content) if int(u) in self.store.users]
        if mentions:
            extra["mentions"] = list(dict.fromkeys(mentions))
        msg = Message(
            message_id or self.ids.next(), channel.id, author.id, content, nonce, None, None, extra
        )
        if uploads:
            extra["has_files"] = True
            for pos, up in enumerate(uploads):
                att = self._attachment(msg, pos, up)
                self.store.insert_attachment(att, up.data)
                msg.attachments.append(att)
        self.store.insert_message(msg)
        if channel.is_thread:
            channel.data["message_count"] = channel.data.get("message_count", 0) + 1
            meta = channel.data["thread_metadata"]
            unarchived = meta["archived"]
            meta["archived"] = False
            self.store.put_channel(channel)
        else:
            unarchived = False
        self.store.commit()
        if dispatch:
            if unarchived:
                self.gateway.dispatch("THREAD_UPDATE", self.channel(channel), channel.guild_id)
            self.dispatch_message("MESSAGE_CREATE", channel, msg)
        return msg

    def _attachment(self, msg: Message, pos: int, up: Upload) -> Attachment:
        ctype = mimetypes.guess_type(up.filename)[0] or up.content_type
        if ctype and ctype.startswith("text/") and "charset" not in ctype:
            ctype += "; charset=utf-8"
        return Attachment(
            self.ids.next(),
            msg.id,
            msg.channel_id,
            pos,
            up.filename,
            ctype,
            len(up.data),
            up.description,
        )

    def dispatch_message(self, event: str, channel: Channel, msg: Message) -> None:
        guild = self.store.guilds.get(channel.guild_id)
        data = self.message(msg)
        data["guild_id"] = str(channel.guild_id)
        if guild is not None and msg.author_id in guild.members:
            data["member"] = partial_member_json(guild, msg.author_id)
        if msg.nonce is not None and event == "MESSAGE_CREATE":
            data["nonce"] = msg.nonce
        self.gateway.dispatch(event, data, channel.guild_id)

    def apply_edit(
        self,
        msg: Message,
        changes: dict[str, Any],
        keep: list[int] | None,
        uploads: list[Upload],
    ) -> None:
        """Change a message object and its stored attachments, without saving its row: the
        one edit logic for channel messages and for ephemeral ones (which have no row)."""
        if "content" in changes:
            msg.content = changes["content"] or ""
            mentions = [int(u) for u in MENTION.findall(msg.content) if int(u) in self.store.users]
            msg.extra["mentions"] = list(dict.fromkeys(mentions))
        for key in ("embeds", "components", "flags"):
            if key in changes:
                msg.extra[key] = changes[key]
        if keep is not None:
            kept = [a for a in msg.attachments if a.id in keep]
            dropped = [a.id for a in msg.attachments if a.id not in keep]
            if dropped:
                self.store.delete_attachments(dropped)
            msg.attachments = sorted(kept, key=lambda a: keep.index(a.id))
            for pos, att in enumerate(msg.attachments):
                if att.position != pos:
                    att.position = pos
                    self.store.reposition_attachment(att.id, pos)
        for up in uploads:
            att = self._attachment(msg, len(msg.attachments), up)
            self.store.insert_attachment(att, up.data)
            msg.attachments.append(att)
        msg.extra["has_files"] = bool(msg.attachments)
        msg.edited_ms = now_ms()

    def edit_message(
        self,
        channel: Channel,
        msg: Message,
        changes: dict[str, Any],
        keep: list[int] | None,
        uploads: list[Upload],
    ) -> Message:
        self.apply_edit(msg, changes, keep, uploads)
        self.store.update_message(msg)
        self.store.commit()
        self.dispatch_message("MESSAGE_UPDATE", channel, msg)
        return msg

    def ephemeral_message(
        self,
        channel: Channel,
        author: User,
        content: str,
        extra: dict[str, Any],
        uploads: list[Upload],
    ) -> Message:
        """A message only the interacting user sees: never in the channel's history and never
        dispatched to bots; its attachments are stored (and served) like any others."""
        msg = Message(self.ids.next(), channel.id, author.id, content, None, None, None, extra)
        for pos, up in enumerate(uploads):
            att = self._attachment(msg, pos, up)
            self.store.insert_attachment(att, up.data)
            msg.attachments.append(att)
        extra["has_files"] = bool(uploads)
        self.store.commit()
        return msg

    def alter_message(
        self, channel: Channel, msg: Message, content: str, *, silent: bool = False
    ) -> Message:
        """Change a message's content with no bot involved (the control API's damage).

        By default it looks like any edit on Discord: `edited_timestamp` moves and
        MESSAGE_UPDATE is dispatched. `silent` changes the stored text and nothing else, as
        corruption below Discord's API would: no timestamp, no event.
        """
        msg.content = content
        if not silent:
            mentions = [int(u) for u in MENTION.findall(content) if int(u) in self.store.users]
            msg.extra["mentions"] = list(dict.fromkeys(mentions))
            msg.edited_ms = now_ms()
        self.store.update_message(msg)
        self.store.commit()
        if not silent:
            self.dispatch_message("MESSAGE_UPDATE", channel, msg)
        return msg

    def delete_messages(self, channel: Channel, ids: list[int]) -> None:
        if not ids:
            return
        self.store.delete_messages(ids)
        self.store.commit()
        if len(ids) == 1:
            self.gateway.dispatch(
                "MESSAGE_DELETE",
                {
                    "id": str(ids[0]),
                    "channel_id": str(channel.id),
                    "guild_id": str(channel.guild_id),
                },
                channel.guild_id,
            )
        else:
            self.gateway.dispatch(
                "MESSAGE_DELETE_BULK",
                {
                    "ids": [str(i) for i in ids],
                    "channel_id": str(channel.id),
                    "guild_id": str(channel.guild_id),
                },
                channel.guild_id,
            )

    def set_pinned(self, channel: Channel, msg: Message, user: User, pinned: bool) -> None:
        if (msg.pinned_ms is not None) == pinned:
            return
        msg.pinned_ms = now_ms() if pinned else None
        self.store.update_message(msg)
        self.store.commit()
        self.dispatch_message("MESSAGE_UPDATE", channel, msg)
        last = self.store.pinned(channel.id)
        self.gateway.dispatch(
            "CHANNEL_PINS_UPDATE",
            {
                "guild_id": str(channel.guild_id),
                "channel_id": str(channel.id),
                "last_pin_timestamp": iso(last[0].pinned_ms)
                if last and last[0].pinned_ms
                else None,
            },
            channel.guild_id,
        )
        if pinned:  # Discord posts a "pinned a message" system message (type 6)
            self.create_message(
                channel,
                user,
                "",
                {
                    "type": 6,
                    "message_reference": {
                        "type": 0,
                        "message_id": str(msg.id),
                        "channel_id": str(channel.id),
                        "guild_id": str(channel.guild_id),
                    },
                },
            )

    def age(self, seconds: float) -> None:
        self.store.age(int(seconds * 1000))
        self.store.commit()


def _channel_defaults(name: str, ctype: int) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": name,
        "permission_overwrites": [],
        "parent_id": None,
        "nsfw": False,
        "rate_limit_per_user": 0,
        "flags": 0,
    }
    if ctype in (0, 5):
        data["topic"] = None
    return data


def channel_defaults(name: str, ctype: int) -> dict[str, Any]:
    return _channel_defaults(name, ctype)


__all__ = ["State", "Upload", "channel_defaults", "now_ms", "user_json"]
