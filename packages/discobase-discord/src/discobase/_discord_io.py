"""Message I/O on one channel, and the translation of Discord's failures into our errors.

Everything discobase sends or reads goes through here: a message plan from the core becomes
one `send` (content or attachment files, with a nonce so a retried send is never stored
twice); a message becomes the blob it holds (attachments are downloaded, and an expired
attachment URL is refreshed by fetching the message again, never stored).
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import discord

from discobase_core.errors import (
    ConnectionFailedError,
    DatabaseStorageError,
    DiscobaseError,
    DiscordUnavailableError,
)
from discobase_core.log import MessagePlan, is_discobase_message, parse_file_name, read_blob

__all__ = ["ChannelIO", "describe", "translate"]

log = logging.getLogger("discobase")

T = TypeVar("T")

# Discord (or a proxy in front of it) failing: worth retrying with a backoff.
_RETRY_ATTEMPTS = 5


def translate(exc: BaseException, doing: str) -> DiscobaseError:
    """Our error for a discord.py failure while `doing` something."""
    if isinstance(exc, DiscobaseError):
        return exc
    if isinstance(exc, discord.LoginFailure):
        return ConnectionFailedError(
            f"Discord rejected the bot token while {doing}: {exc}",
            hint="copy the token again from the Developer Portal (Bot > Reset Token)",
        )
    if isinstance(exc, discord.Forbidden):
        return ConnectionFailedError(
            f"the bot is missing a permission while {doing}: {exc.text or exc}",
            hint="give the bot's role View Channels, Send Messages, Attach Files, Read "
            "Message History, Manage Messages, Manage Channels and Manage Roles",
            status=exc.status,
            code=exc.code,
        )
    if isinstance(exc, discord.DiscordServerError):
        return DiscordUnavailableError(
            f"Discord answered {exc.status} while {doing}; nothing was lost, try again later",
            status=exc.status,
        )
    if isinstance(exc, discord.RateLimited):
        return DiscordUnavailableError(
            f"Discord asked to wait {exc.retry_after:.0f}s while {doing}",
            retry_after=exc.retry_after,
        )
    if isinstance(exc, discord.HTTPException):
        if exc.status == 429:
            return DiscordUnavailableError(
                f"Discord kept answering 429 while {doing}", status=exc.status, code=exc.code
            )
        if exc.code in (40005, 50035, 50045):
            return DatabaseStorageError(
                f"Discord refused the data while {doing}: {exc.text}", code=exc.code
            )
        return DiscobaseError(
            f"Discord answered {exc.status} (code {exc.code}) while {doing}: {exc.text}",
            status=exc.status,
            code=exc.code,
        )
    if isinstance(exc, OSError | asyncio.TimeoutError):
        return ConnectionFailedError(f"cannot reach Discord while {doing}: {exc!r}")
    return DiscobaseError(f"unexpected failure while {doing}: {exc!r}")


def _retryable(exc: BaseException) -> bool:
    """Discord failing (5xx), or still rate limiting after discord.py's own five tries."""
    return isinstance(exc, discord.DiscordServerError) or (
        isinstance(exc, discord.HTTPException) and exc.status == 429
    )


async def _with_retries(doing: str, action: Callable[[], Awaitable[T]]) -> T:
    """Run `action`, retrying Discord's 5xx and persistent 429 answers with a backoff (the
    action must be idempotent: reads, or sends carrying a nonce)."""
    for attempt in range(_RETRY_ATTEMPTS):
        try:
            return await action()
        except discord.HTTPException as exc:
            if not _retryable(exc) or attempt == _RETRY_ATTEMPTS - 1:
                raise translate(exc, doing) from exc
            delay = 0.5 * 2**attempt
            log.warning("Discord answered %s while %s; retrying in %.1fs", exc.status, doing, delay)
            await asyncio.sleep(delay)
        except (TimeoutError, discord.LoginFailure, discord.RateLimited, OSError) as exc:
            raise translate(exc, doing) from exc
    raise AssertionError("unreachable")


def describe(message: discord.Message) -> tuple[str, int] | None:
    """(kind, commit) of a message's blob, read from its attachment names; None for an
    inline blob (only decoding its content says) or a foreign message."""
    parsed = parse_file_name(message.attachments[0].filename) if message.attachments else None
    return None if parsed is None else (parsed[0], parsed[1])


class ChannelIO:
    """Sends and reads discobase messages in one channel."""

    PAGE = 100  # messages per history request, Discord's maximum

    def __init__(self, channel: discord.TextChannel | discord.Thread, *, bot_id: int) -> None:
        self.channel = channel
        self.bot_id = bot_id

    def where(self, message_id: int) -> str:
        return f"message {message_id} in #{self.channel.name} ({self.channel.id})"

    def is_ours(self, message: discord.Message) -> bool:
        """Written by discobase (anything else, such as a person typing, is foreign)."""
        names = [attachment.filename for attachment in message.attachments]
        return message.author.id == self.bot_id and is_discobase_message(message.content, names)

    async def send(self, plan: MessagePlan, *, nonce: str) -> discord.Message:
        files = [discord.File(io.BytesIO(data), filename=name) for name, data in plan.files]

        async def action() -> discord.Message:
            for file in files:
                file.reset()
            return await self.channel.send(
                content=plan.content,
                files=files or discord.utils.MISSING,
                nonce=nonce,
                allowed_mentions=discord.AllowedMentions.none(),
                silent=True,
            )

        return await _with_retries(f"writing to #{self.channel.name}", action)

    async def fetch(self, message_id: int) -> discord.Message:
        return await _with_retries(
            f"reading {self.where(message_id)}",
            lambda: self.channel.fetch_message(message_id),
        )

    async def read(self, message: discord.Message) -> bytes:
        """The sealed blob `message` holds (downloading its attachments)."""
        where = self.where(message.id)
        if not message.attachments:
            return read_blob(message.content, [], where=where)
        for attempt in range(2):
            try:
                datas = await asyncio.gather(*(a.read() for a in message.attachments))
            except (discord.NotFound, discord.Forbidden):
                if attempt:
                    raise
                # Signed attachment URLs expire; a fresh copy of the message has fresh ones.
                message = await self.fetch(message.id)
                continue
            except (discord.HTTPException, OSError) as exc:
                raise translate(exc, f"downloading {where}") from exc
            names = [a.filename for a in message.attachments]
            return read_blob("", list(zip(names, datas, strict=True)), where=where)
        raise AssertionError("unreachable")

    async def page_after(self, message_id: int) -> list[discord.Message]:
        """Up to 100 messages after `message_id`, oldest first (one request)."""

        async def action() -> list[discord.Message]:
            after = discord.Object(id=message_id)
            history = self.channel.history(limit=self.PAGE, after=after, oldest_first=True)
            return [message async for message in history]

        return await _with_retries(f"reading history of #{self.channel.name}", action)

    def history(self) -> AsyncIterator[discord.Message]:
        """Every message, newest first (100 per request)."""
        return self.channel.history(limit=None)
