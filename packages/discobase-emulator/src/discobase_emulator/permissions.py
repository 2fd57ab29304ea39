"""Discord's permission arithmetic: a member's guild permissions, then a channel's overwrites.

The order is Discord's ("Permission Overwrites" in its permissions topic): the owner has
everything; otherwise @everyone's permissions OR the member's roles; ADMINISTRATOR means
everything and skips overwrites; then the @everyone overwrite, the member's role overwrites
(all denies, then all allows) and the member's own overwrite. A channel one cannot view
grants nothing. Threads take their parent channel's overwrites. The same function answers
for the bot's own REST actions and for the `member.permissions`/`app_permissions` of an
interaction, so what a test sees and what the server enforces never disagree.
"""

from __future__ import annotations

from .errors import APIError
from .store import Channel, Guild, Store

CREATE_INSTANT_INVITE = 1 << 0
KICK_MEMBERS = 1 << 1
BAN_MEMBERS = 1 << 2
ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MENTION_EVERYONE = 1 << 17
USE_EXTERNAL_EMOJIS = 1 << 18
CONNECT = 1 << 20
SPEAK = 1 << 21
CHANGE_NICKNAME = 1 << 26
MANAGE_ROLES = 1 << 28
USE_APPLICATION_COMMANDS = 1 << 31
MANAGE_THREADS = 1 << 34
CREATE_PUBLIC_THREADS = 1 << 35
CREATE_PRIVATE_THREADS = 1 << 36
SEND_MESSAGES_IN_THREADS = 1 << 38

ALL = (1 << 51) - 1
# What a new guild's @everyone role holds on Discord: the everyday member permissions, none
# of the managing ones.
EVERYONE_DEFAULT = (
    CREATE_INSTANT_INVITE
    | ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | MENTION_EVERYONE
    | USE_EXTERNAL_EMOJIS
    | CONNECT
    | SPEAK
    | CHANGE_NICKNAME
    | USE_APPLICATION_COMMANDS
    | CREATE_PUBLIC_THREADS
    | CREATE_PRIVATE_THREADS
    | SEND_MESSAGES_IN_THREADS
)
# A bot joins with its managed role holding what its invite asked for; the emulator's bots
# are invited as administrators unless a test says otherwise.
BOT_DEFAULT = ADMINISTRATOR | EVERYONE_DEFAULT


def base_permissions(guild: Guild, user_id: int) -> int:
    """A member's guild-wide permissions (no channel overwrites)."""
    if user_id == guild.owner_id:
        return ALL
    everyone = guild.roles.get(guild.id)
    perms = everyone.permissions if everyone is not None else EVERYONE_DEFAULT
    for rid in guild.member_roles.get(user_id, []):
        role = guild.roles.get(rid)
        if role is not None:
            perms |= role.permissions
    return ALL if perms & ADMINISTRATOR else perms


def channel_permissions(store: Store, guild: Guild, channel: Channel, user_id: int) -> int:
    """A member's permissions in one channel (a thread counts as its parent)."""
    perms = base_permissions(guild, user_id)
    if perms & ADMINISTRATOR:
        return ALL
    source = channel
    if channel.is_thread:
        parent = store.channels.get(int(channel.data.get("parent_id") or 0))
        if parent is not None:
            source = parent
    overwrites = {
        int(o["id"]): (int(o["allow"]), int(o["deny"]))
        for o in source.data.get("permission_overwrites", [])
    }
    allow, deny = overwrites.get(guild.id, (0, 0))
    perms = (perms & ~deny) | allow
    role_allow = role_deny = 0
    for rid in guild.member_roles.get(user_id, []):
        a, d = overwrites.get(rid, (0, 0))
        role_allow |= a
        role_deny |= d
    perms = (perms & ~role_deny) | role_allow
    allow, deny = overwrites.get(user_id, (0, 0))
    perms = (perms & ~deny) | allow
    if not perms & VIEW_CHANNEL:
        return 0
    return perms


def missing_permissions() -> APIError:
    return APIError(403, 50013, "Missing Permissions")


def require(perms: int, needed: int) -> None:
    """Discord's 403/50013 unless `perms` holds every bit of `needed`."""
    if perms & needed != needed:
        raise missing_permissions()
