"""JSON shapes of users, guilds, channels and messages as Discord (and discord.py) expect them.

Kept apart from the handlers so REST answers and gateway dispatches render identically.
"""

from __future__ import annotations

from typing import Any

from .cdn import Signer
from .snowflake import iso, ms_of
from .store import Channel, Guild, Message, Role, Store, User


def user_json(user: User) -> dict[str, Any]:
    return {
        "id": str(user.id),
        "username": user.username,
        "discriminator": "0",
        "global_name": None if user.bot else user.username,
        "avatar": None,
        "bot": user.bot,
        "public_flags": 0,
        "flags": 0,
    }


def me_json(user: User) -> dict[str, Any]:
    return {
        **user_json(user),
        "verified": True,
        "mfa_enabled": False,
        "locale": "en-US",
        "email": None,
    }


def application_json(bot: User, owner: User | None) -> dict[str, Any]:
    return {
        "id": str(bot.id),
        "name": bot.username,
        "description": "",
        "icon": None,
        "bot_public": False,
        "bot_require_code_grant": False,
        "owner": user_json(owner or bot),
        "verify_key": "0" * 64,
        "flags": 0,
        "team": None,
        "summary": "",
        "bot": user_json(bot),
    }


def role_json(role: Role) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": str(role.id),
        "name": role.name,
        "permissions": str(role.permissions),
        "position": role.position,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
        "hoist": False,
        "managed": False,
        "mentionable": False,
        "flags": 0,
        "icon": None,
        "unicode_emoji": None,
    }
    if role.bot_id is not None:
        out["managed"] = True
        out["tags"] = {"bot_id": str(role.bot_id)}
    return out


def roles_json(guild: Guild) -> list[dict[str, Any]]:
    return [role_json(r) for r in sorted(guild.roles.values(), key=lambda r: (r.position, r.id))]


def member_json(store: Store, guild: Guild, user_id: int) -> dict[str, Any]:
    return {
        "user": user_json(store.users[user_id]),
        "roles": [str(r) for r in guild.member_roles.get(user_id, [])],
        "flags": 0,
        "joined_at": iso(guild.members.get(user_id, ms_of(guild.id))),
        "deaf": False,
        "mute": False,
        "nick": None,
        "avatar": None,
        "pending": False,
    }


def partial_member_json(guild: Guild, user_id: int) -> dict[str, Any]:
    return {
        "roles": [str(r) for r in guild.member_roles.get(user_id, [])],
        "flags": 0,
        "joined_at": iso(guild.members.get(user_id, ms_of(guild.id))),
        "deaf": False,
        "mute": False,
    }


def guild_json(guild: Guild, counts: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": str(guild.id),
        "name": guild.name,
        "icon": None,
        "splash": None,
        "discovery_splash": None,
        "owner_id": str(guild.owner_id) if guild.owner_id else None,
        "afk_channel_id": None,
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "roles": roles_json(guild),
        "emojis": [],
        "stickers": [],
        "features": [],
        "mfa_level": 0,
        "application_id": None,
        "system_channel_id": None,
        "system_channel_flags": 0,
        "rules_channel_id": None,
        "vanity_url_code": None,
        "description": None,
        "banner": None,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "preferred_locale": "en-US",
        "public_updates_channel_id": None,
        "nsfw_level": 0,
        "premium_progress_bar_enabled": False,
    }
    if counts:
        out["approximate_member_count"] = len(guild.members)
        out["approximate_presence_count"] = 0
    return out


def channel_json(store: Store, channel: Channel) -> dict[str, Any]:
    d = channel.data
    out: dict[str, Any] = {
        "id": str(channel.id),
        "type": channel.type,
        "guild_id": str(channel.guild_id),
        "name": d.get("name", ""),
        "flags": d.get("flags", 0),
        "rate_limit_per_user": d.get("rate_limit_per_user", 0),
    }
    if channel.type != 4:
        last = store.last_message_id(channel.id)
        out["last_message_id"] = None if last is None else str(last)
    if channel.is_thread:
        out.update(
            {
                "parent_id": str(d["parent_id"]),
                "owner_id": str(d["owner_id"]),
                "message_count": d.get("message_count", 0),
                "total_message_sent": d.get("message_count", 0),
                "member_count": 1,
                "thread_metadata": dict(d["thread_metadata"]),
            }
        )
        return out
    out.update(
        {
            "position": d.get("position", 0),
            "permission_overwrites": list(d.get("permission_overwrites", [])),
            "parent_id": None if d.get("parent_id") is None else str(d["parent_id"]),
            "nsfw": d.get("nsfw", False),
        }
    )
    if channel.type in (0, 5):
        out["topic"] = d.get("topic")
        out["default_auto_archive_duration"] = d.get("default_auto_archive_duration", 1440)
    if channel.type == 2:
        out["bitrate"] = d.get("bitrate", 64000)
        out["user_limit"] = d.get("user_limit", 0)
        out["rtc_region"] = None
    return out


def attachment_jsons(signer: Signer, base: str, msg: Message) -> list[dict[str, Any]]:
    out = []
    for att in msg.attachments:
        url = signer.url(base, att.channel_id, att.id, att.filename)
        item: dict[str, Any] = {
            "id": str(att.id),
            "filename": att.filename,
            "size": att.size,
            "url": url,
            "proxy_url": url.replace(base, base + "/media", 1),
            "content_type": att.content_type,
        }
        if att.description is not None:
            item["description"] = att.description
        out.append(item)
    return out


def message_json(store: Store, signer: Signer, base: str, msg: Message) -> dict[str, Any]:
    extra = msg.extra
    author = store.users.get(msg.author_id)
    out: dict[str, Any] = {
        "id": str(msg.id),
        "channel_id": str(msg.channel_id),
        "type": extra.get("type", 0),
        "content": msg.content,
        "author": user_json(author) if author else _ghost(msg.author_id),
        "timestamp": iso(store.created_ms(msg.id)),
        "edited_timestamp": None if msg.edited_ms is None else iso(msg.edited_ms),
        "tts": extra.get("tts", False),
        "mention_everyone": False,
        "mentions": [
            user_json(store.users[u]) for u in extra.get("mentions", []) if u in store.users
        ],
        "mention_roles": [],
        "attachments": attachment_jsons(signer, base, msg),
        "embeds": extra.get("embeds", []),
        "pinned": msg.pinned_ms is not None,
        "flags": extra.get("flags", 0),
        "components": extra.get("components", []),
    }
    for key in ("message_reference", "interaction_metadata", "webhook_id", "application_id"):
        if key in extra:
            out[key] = extra[key]
    if "thread_id" in extra and extra["thread_id"] in store.channels:
        out["thread"] = channel_json(store, store.channels[extra["thread_id"]])
    return out


def _ghost(user_id: int) -> dict[str, Any]:
    return {
        "id": str(user_id),
        "username": "Deleted User",
        "discriminator": "0",
        "global_name": None,
        "avatar": None,
    }
