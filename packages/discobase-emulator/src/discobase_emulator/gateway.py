"""The gateway WebSocket: HELLO, heartbeats, IDENTIFY/READY/GUILD_CREATE, RESUME, op 8, dispatch.

Frames are sent as text JSON, which discord.py parses without decompression whatever its
`compress` query says. Sessions outlive their socket so a RESUME replays what was missed;
dispatches are filtered by the session's intents as Discord filters them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections import deque
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from .permissions import VIEW_CHANNEL, channel_permissions
from .store import Guild

if TYPE_CHECKING:
    from .state import State

HEARTBEAT_MS = 41250
REPLAY = 5000  # dispatches kept per session for RESUME

GUILDS = 1 << 0
GUILD_MEMBERS = 1 << 1
GUILD_MESSAGES = 1 << 9
MESSAGE_CONTENT = 1 << 15

EVENT_INTENTS = {
    "GUILD_CREATE": GUILDS,
    "GUILD_UPDATE": GUILDS,
    "GUILD_DELETE": GUILDS,
    "CHANNEL_CREATE": GUILDS,
    "CHANNEL_UPDATE": GUILDS,
    "CHANNEL_DELETE": GUILDS,
    "CHANNEL_PINS_UPDATE": GUILDS,
    "THREAD_CREATE": GUILDS,
    "THREAD_UPDATE": GUILDS,
    "THREAD_DELETE": GUILDS,
    "GUILD_ROLE_CREATE": GUILDS,
    "GUILD_ROLE_UPDATE": GUILDS,
    "GUILD_ROLE_DELETE": GUILDS,
    "GUILD_MEMBER_ADD": GUILD_MEMBERS,
    "GUILD_MEMBER_UPDATE": GUILD_MEMBERS,
    "MESSAGE_CREATE": GUILD_MESSAGES,
    "MESSAGE_UPDATE": GUILD_MESSAGES,
    "MESSAGE_DELETE": GUILD_MESSAGES,
    "MESSAGE_DELETE_BULK": GUILD_MESSAGES,
}
CONTENT_EVENTS = ("MESSAGE_CREATE", "MESSAGE_UPDATE")
# Events about what happens inside a channel: a bot that cannot view it does not get them.
CHANNEL_EVENTS = (
    "MESSAGE_CREATE",
    "MESSAGE_UPDATE",
    "MESSAGE_DELETE",
    "MESSAGE_DELETE_BULK",
    "CHANNEL_PINS_UPDATE",
)


class Session:
    """One identified bot session; survives disconnects until invalidated."""

    def __init__(self, user_id: int, token: str, intents: int) -> None:
        self.id = secrets.token_hex(16)
        self.user_id = user_id
        self.token = token
        self.intents = intents
        self.seq = 0
        self.buffer: deque[tuple[int, str]] = deque(maxlen=REPLAY)
        self.ws: web.WebSocketResponse | None = None
        self.queue: asyncio.Queue[str | None] | None = None
        self.writer: asyncio.Task[None] | None = None

    def push(self, event: str, data: Any) -> None:
        self.seq += 1
        frame = json.dumps({"op": 0, "t": event, "s": self.seq, "d": data}, ensure_ascii=False)
        self.buffer.append((self.seq, frame))
        if self.queue is not None:
            self.queue.put_nowait(frame)

    def attach(self, ws: web.WebSocketResponse) -> None:
        self.detach()
        self.ws = ws
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.queue = queue
        self.writer = asyncio.get_running_loop().create_task(_write(ws, queue))

    def detach(self) -> None:
        if self.queue is not None:
            self.queue.put_nowait(None)
        self.queue = None
        self.ws = None


async def _write(ws: web.WebSocketResponse, queue: asyncio.Queue[str | None]) -> None:
    while True:
        frame = await queue.get()
        if frame is None or ws.closed:
            return
        try:
            await ws.send_str(frame)
        except (ConnectionError, RuntimeError):
            return


class Gateway:
    def __init__(self, state: State) -> None:
        self.state = state
        self.sessions: dict[str, Session] = {}
        self.sockets: set[web.WebSocketResponse] = set()

    # dispatch
    def dispatch(
        self,
        event: str,
        data: dict[str, Any],
        guild_id: int | None,
        only_user: int | None = None,
    ) -> None:
        """Queue an event for every session of a bot in the guild whose intents cover it."""
        if not self.sessions:
            return
        guild = self.state.store.guilds.get(guild_id) if guild_id is not None else None
        need = EVENT_INTENTS.get(event, 0)
        for session in self.sessions.values():
            if only_user is not None and session.user_id != only_user:
                continue
            if guild is not None and session.user_id not in guild.members:
                continue
            if need and not session.intents & need:
                continue
            if (
                event in CHANNEL_EVENTS
                and guild is not None
                and not self._sees(guild, data, session)
            ):
                continue
            payload = data
            if event in CONTENT_EVENTS and not session.intents & MESSAGE_CONTENT:
                payload = _without_content(session.user_id, data)
            session.push(event, payload)

    def _sees(self, guild: Guild, data: dict[str, Any], session: Session) -> bool:
        """Whether the session's bot may view the channel an event happened in."""
        channel = self.state.store.channels.get(int(data.get("channel_id") or 0))
        if channel is None:
            return True
        perms = channel_permissions(self.state.store, guild, channel, session.user_id)
        return bool(perms & VIEW_CHANNEL)

    # control triggers
    async def close_all(self, code: int = 4000) -> int:
        sockets = list(self.sockets)
        for ws in sockets:
            await ws.close(code=code, message=b"Emulator fault: disconnect")
        return len(sockets)

    async def send_op(self, op: int, d: Any) -> int:
        frame = json.dumps({"op": op, "d": d})
        n = 0
        for session in list(self.sessions.values()):
            if session.ws is not None and not session.ws.closed:
                if op == 9 and not d:
                    del self.sessions[session.id]
                await session.ws.send_str(frame)
                n += 1
        return n

    async def shutdown(self) -> None:
        for ws in list(self.sockets):
            with contextlib.suppress(Exception):
                await ws.close(code=1001, message=b"Emulator shutting down")
        for session in self.sessions.values():
            session.detach()
        self.sessions.clear()

    # socket
    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await ws.prepare(request)
        self.state.metrics.gateway_connections += 1
        self.sockets.add(ws)
        session: Session | None = None
        try:
            await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": HEARTBEAT_MS}}))
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    frame = json.loads(msg.data)
                    op = frame.get("op")
                    d = frame.get("d")
                except (ValueError, AttributeError):
                    await ws.close(code=4002, message=b"Error while decoding payload.")
                    break
                if op == 1:
                    await ws.send_str('{"op":11,"d":null}')
                elif op == 2 and session is None:
                    session = await self._identify(ws, d)
                elif op == 6 and session is None:
                    session = await self._resume(ws, d)
                elif op == 8 and session is not None:
                    self._chunk(session, d)
        finally:
            self.sockets.discard(ws)
            if session is not None and session.ws is ws:
                session.detach()
        return ws

    async def _identify(self, ws: web.WebSocketResponse, d: Any) -> Session | None:
        token = str((d or {}).get("token", ""))
        if token.startswith("Bot "):
            token = token[4:]
        user = self.state.store.tokens.get(token)
        if user is None:
            await ws.close(code=4004, message=b"Authentication failed.")
            return None
        session = Session(user.id, token, int((d or {}).get("intents", 0)))
        self.sessions[session.id] = session
        session.attach(ws)
        guilds = [g for g in self.state.store.guilds.values() if user.id in g.members]
        ready: dict[str, Any] = {
            "v": 10,
            "user": self.state.me(user),
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.id,
            "resume_gateway_url": self.state.gateway_url,
            "session_type": "normal",
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "application": {"id": str(user.id), "flags": 0},
            "_trace": ["discobase-emulator"],
        }
        shard = (d or {}).get("shard")
        if shard is not None:
            ready["shard"] = shard
        session.push("READY", ready)
        if session.intents & GUILDS:
            for guild in guilds:
                session.push("GUILD_CREATE", self.state.guild_create(guild, available=True))
        return session

    async def _resume(self, ws: web.WebSocketResponse, d: Any) -> Session | None:
        d = d or {}
        session = self.sessions.get(str(d.get("session_id")))
        seq = d.get("seq") or 0
        token = str(d.get("token", "")).removeprefix("Bot ")
        oldest = session.buffer[0][0] if session and session.buffer else 1
        if session is None or session.token != token or seq < oldest - 1:
            await ws.send_str('{"op":9,"d":false}')
            if session is not None:
                self.sessions.pop(session.id, None)
            return None
        old = session.ws
        session.attach(ws)
        if old is not None and not old.closed:
            await old.close(code=4000, message=b"Session resumed elsewhere")
        assert session.queue is not None
        for s, frame in session.buffer:
            if s > seq:
                session.queue.put_nowait(frame)
        session.push("RESUMED", {"_trace": ["discobase-emulator"]})
        return session

    def _chunk(self, session: Session, d: Any) -> None:
        d = d or {}
        try:
            guild = self.state.store.guilds.get(int(d.get("guild_id", 0)))
        except (TypeError, ValueError):
            guild = None
        if guild is None or session.user_id not in guild.members:
            return
        users = self.state.store.users
        query = str(d.get("query") or "").lower()
        limit = int(d.get("limit") or 0)
        wanted = d.get("user_ids")
        ids = list(guild.members)
        not_found: list[str] = []
        if wanted is not None:
            wanted_ids = [int(u) for u in (wanted if isinstance(wanted, list) else [wanted])]
            not_found = [str(u) for u in wanted_ids if u not in guild.members]
            ids = [u for u in wanted_ids if u in guild.members]
        elif query:
            ids = [u for u in ids if users[u].username.lower().startswith(query)]
        if limit:
            ids = ids[:limit]
        chunk: dict[str, Any] = {
            "guild_id": str(guild.id),
            "members": [self.state.member(guild, u) for u in ids],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": not_found,
        }
        if d.get("presences"):
            chunk["presences"] = []
        if d.get("nonce") is not None:
            chunk["nonce"] = d["nonce"]
        session.push("GUILD_MEMBERS_CHUNK", chunk)


def _without_content(user_id: int, data: dict[str, Any]) -> dict[str, Any]:
    """What a bot without MESSAGE_CONTENT sees (its own messages and mentions excepted)."""
    me = str(user_id)
    author = data.get("author") or {}
    if author.get("id") == me or any(m.get("id") == me for m in data.get("mentions", [])):
        return data
    return {**data, "content": "", "embeds": [], "attachments": [], "components": []}
