"""Message I/O on one channel, and the translation of Discord's failures into our errors.

Everything discobase sends or reads goes through here: a message plan from the core becomes
one `send` (content or attachment files, with a nonce so a retried send is never stored
twice); a message becomes the blob it holds, or the attachments asked for (a chunked log
message is read one chunk attachment at a time: see discobase_core.log); an expired
attachment URL is refreshed by fetching the message again, never stored.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aiohttp
import discord

from discobase_core.errors import (
    ConnectionFailedError,
    DatabaseStorageError,
    DiscobaseError,
    DiscordUnavailableError,
)
from discobase_core.log import (
    CHUNK_KIND,
    MessagePlan,
    is_discobase_message,
    parse_file_name,
    read_blob,
)

__all__ = ["ChannelIO", "describe", "file_names", "retry_reads", "translate", "with_retries"]

log = logging.getLogger("discobase")

T = TypeVar("T")

# Discord (or a proxy in front of it) failing: worth retrying with a backoff.
_RETRY_ATTEMPTS = 5
# Discord bulk-deletes only messages younger than 14 days; an hour of margin for clocks.
_BULK_AGE = datetime.timedelta(days=14) - datetime.timedelta(hours=1)


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
    if isinstance(exc, OSError | asyncio.TimeoutError | aiohttp.ClientError):
        return ConnectionFailedError(f"cannot reach Discord while {doing}: {exc!r}")
    return DiscobaseError(f"unexpected failure while {doing}: {exc!r}")


def _retryable(exc: BaseException) -> bool:
    """Discord failing (5xx), still rate limiting after discord.py's own five tries, or the
    connection dropping or timing out before an answer came."""
    if isinstance(exc, discord.HTTPException):
        return isinstance(exc, discord.DiscordServerError) or exc.status == 429
    return isinstance(exc, aiohttp.ClientError | OSError | TimeoutError)


def _unanswered(exc: BaseException) -> bool:
    """Whether Discord may have carried out a request that failed with `exc`: a 5xx, a
    dropped connection or a timeout can come after the work was done; a 4xx cannot."""
    if isinstance(exc, discord.HTTPException):
        return exc.status >= 500
    return isinstance(exc, aiohttp.ClientError | OSError | TimeoutError)


async def with_retries(doing: str, action: Callable[[], Awaitable[T]], *, write: bool = False) -> T:
    """Run `action`, retrying 5xx and persistent 429 answers, dropped connections and
    timeouts with a bounded backoff. The action must be idempotent: a read, or a send
    carrying a nonce (Discord answers a repeated nonce with the message it already made).

    A `write` that still fails raises an error whose `details["maybe_stored"]` says whether
    Discord may have stored it (one of the tries may have landed before its answer was lost).
    """
    maybe_stored = False
    for attempt in range(_RETRY_ATTEMPTS):
        try:
            return await action()
        except (discord.LoginFailure, discord.RateLimited) as exc:
            raise _failed(exc, doing, write=write, maybe_stored=maybe_stored) from exc
        except (discord.HTTPException, aiohttp.ClientError, OSError, TimeoutError) as exc:
            maybe_stored = maybe_stored or _unanswered(exc)
            if not _retryable(exc) or attempt == _RETRY_ATTEMPTS - 1:
                raise _failed(exc, doing, write=write, maybe_stored=maybe_stored) from exc
            delay = 0.25 * 2**attempt
            log.warning("%s while %s; retrying in %.2fs", _short(exc), doing, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


def retry_reads(http: Any) -> None:
    """Make the GETs a discord.py `HTTPClient` sends on its own (logging in, the gateway URL,
    guild and channel data) ride out 5xx answers, dropped connections and timeouts like ours do;
    discord.py itself retries only some 5xx. The last failure is re-raised as it was, so
    discord.py's own handling (a 401 becoming LoginFailure) is unchanged."""
    original: Callable[..., Awaitable[Any]] = http.request

    async def request(route: discord.http.Route, *args: Any, **kwargs: Any) -> Any:
        if route.method != "GET" or "/messages" in route.path:
            # Writes need a nonce to be retried; message reads go through ChannelIO, which
            # retries them already (retrying here too would multiply the tries).
            return await original(route, *args, **kwargs)
        for attempt in range(_RETRY_ATTEMPTS):
            try:
                return await original(route, *args, **kwargs)
            except (discord.HTTPException, aiohttp.ClientError, OSError, TimeoutError) as exc:
                if not _retryable(exc) or attempt == _RETRY_ATTEMPTS - 1:
                    raise
                delay = 0.25 * 2**attempt
                log.warning("%s on GET %s; retrying in %.2fs", _short(exc), route.path, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    http.request = request


def _short(exc: BaseException) -> str:
    if isinstance(exc, discord.HTTPException):
        return f"Discord answered {exc.status}"
    return f"the request failed ({type(exc).__name__})"


def _failed(exc: BaseException, doing: str, *, write: bool, maybe_stored: bool) -> DiscobaseError:
    error = translate(exc, doing)
    if write:
        error.details["maybe_stored"] = maybe_stored
        if maybe_stored:
            error.message += (
                "; the write may have been stored: retrying save() or update() on the same "
                "record object is safe (it keeps its id, so it is never stored twice)"
            )
    return error


def describe(message: discord.Message) -> tuple[str, int] | None:
    """(kind, commit) of a message's blob, read from its attachment names; None for an
    inline blob (only decoding its content says) or a foreign message. A chunked log
    message is of kind ``log``."""
    parsed = parse_file_name(message.attachments[0].filename) if message.attachments else None
    if parsed is None:
        return None
    return ("log" if parsed[0] == CHUNK_KIND else parsed[0]), parsed[1]


def file_names(message: discord.Message) -> list[str]:
    return [attachment.filename for attachment in message.attachments]


def _downloader(
    message: discord.Message, names: Sequence[str] | None
) -> Callable[[], Awaitable[list[bytes]]]:
    async def download() -> list[bytes]:
        chosen = [a for a in message.attachments if names is None or a.filename in names]
        return list(await asyncio.gather(*(a.read() for a in chosen)))

    return download


class ChannelIO:
    """Sends and reads discobase messages in one channel."""

    PAGE = 100  # messages per history request, Discord's maximum

    def __init__(self, channel: discord.TextChannel | discord.Thread, *, bot_id: int) -> None:
        self.channel = channel
        self.bot_id = bot_id
        #: the messages of the history page `history()` is yielding from, by id (what
        #: follows a message in the same page is already here: no fetch needed for it)
        self.listed: dict[int, discord.Message] = {}

    def where(self, message_id: int) -> str:
        return f"message {message_id} in #{self.channel.name} ({self.channel.id})"

    def is_ours(self, message: discord.Message) -> bool:
        """Written by discobase (anything else, such as a person typing, is foreign)."""
        names = [attachment.filename for attachment in message.attachments]
        return message.author.id == self.bot_id and is_discobase_message(message.content, names)

    async def send(self, plan: MessagePlan, *, nonce: str) -> discord.Message:
        """Send one message; retried with the same nonce, so it is stored at most once."""
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

        return await with_retries(f"writing to #{self.channel.name}", action, write=True)

    def send_budget(self) -> tuple[int | None, float | None]:
        """What Discord's rate-limit headers left of this channel's send budget, as
        discord.py last heard them: (sends left, seconds until the window resets), or
        (None, None) before the first send. discord.py keeps them in its HTTP client's
        buckets and offers no public way to read them; a test pins this down."""
        http = getattr(getattr(self.channel, "_state", None), "http", None)
        hashes = getattr(http, "_bucket_hashes", None)
        buckets = getattr(http, "_buckets", None)
        if not isinstance(hashes, dict) or not isinstance(buckets, dict):
            return None, None
        route = discord.http.Route(
            "POST", "/channels/{channel_id}/messages", channel_id=self.channel.id
        )
        bucket = buckets.get(f"{hashes.get(route.key, route.key)}:{route.major_parameters}")
        expires = getattr(bucket, "expires", None)
        remaining = getattr(bucket, "remaining", None)
        if not isinstance(expires, float) or not isinstance(remaining, int):
            return None, None
        return remaining, expires - asyncio.get_running_loop().time()

    async def fetch(self, message_id: int) -> discord.Message:
        return await with_retries(
            f"reading {self.where(message_id)}",
            lambda: self.channel.fetch_message(message_id),
        )

    async def delete(self, message_ids: list[int]) -> None:
        """Delete our own messages (best effort is the caller's choice)."""
        for message_id in message_ids:
            partial = self.channel.get_partial_message(message_id)
            await with_retries(f"deleting {self.where(message_id)}", partial.delete)

    async def erase(self, message_ids: Sequence[int]) -> None:
        """Delete messages nothing needs any more, as Discord allows: up to 100 younger
        than 14 days in one bulk request, older ones one by one. A message already gone
        counts as deleted."""
        now = discord.utils.utcnow()
        young = [m for m in message_ids if now - discord.utils.snowflake_time(m) < _BULK_AGE]
        old = [m for m in message_ids if m not in set(young)]
        for start in range(0, len(young), 100):
            chunk = [discord.Object(m) for m in young[start : start + 100]]
            if len(chunk) == 1:
                old.append(chunk[0].id)
                continue
            try:
                await with_retries(
                    f"deleting {len(chunk)} messages in #{self.channel.name}",
                    functools.partial(self.channel.delete_messages, chunk),
                )
            except DiscobaseError as exc:
                cause = exc.__cause__
                if not (isinstance(cause, discord.HTTPException) and cause.code == 50034):
                    raise
                old += [m.id for m in chunk]  # older than Discord's clock allows: one by one
        for message_id in old:
            partial = self.channel.get_partial_message(message_id)
            try:
                await with_retries(f"deleting {self.where(message_id)}", partial.delete)
            except DiscobaseError as exc:
                if not isinstance(exc.__cause__, discord.NotFound):
                    raise

    async def read(self, message: discord.Message) -> bytes:
        """The sealed blob `message` holds (downloading its attachments); not for a chunked
        log message, whose attachments are blobs of their own (see `read_files`)."""
        where = self.where(message.id)
        if not message.attachments:
            return read_blob(message.content, [], where=where)
        return read_blob("", await self.read_files(message), where=where)

    async def read_files(
        self, message: discord.Message, names: Sequence[str] | None = None
    ) -> list[tuple[str, bytes]]:
        """(name, bytes) of the attachments of `message` named `names` (None: all), in the
        message's order; only those are downloaded."""
        where = self.where(message.id)
        for attempt in range(2):
            try:
                datas = await with_retries(f"downloading {where}", _downloader(message, names))
            except DiscobaseError as exc:
                cause = exc.__cause__
                if attempt or not isinstance(cause, discord.NotFound | discord.Forbidden):
                    raise
                # Signed attachment URLs expire; a fresh copy of the message has fresh ones.
                message = await self.fetch(message.id)
                continue
            chosen = [n for n in file_names(message) if names is None or n in names]
            return list(zip(chosen, datas, strict=True))
        raise AssertionError("unreachable")

    async def page_after(self, message_id: int) -> list[discord.Message]:
        """Up to 100 messages after `message_id`, oldest first (one request)."""

        async def action() -> list[discord.Message]:
            after = discord.Object(id=message_id)
            history = self.channel.history(limit=self.PAGE, after=after, oldest_first=True)
            return [message async for message in history]

        return await with_retries(f"reading history of #{self.channel.name}", action)

    async def page_before(self, message_id: int | None) -> list[discord.Message]:
        """Up to 100 messages before `message_id` (None: the newest), newest first."""

        async def action() -> list[discord.Message]:
            before = None if message_id is None else discord.Object(id=message_id)
            history = self.channel.history(limit=self.PAGE, before=before)
            return [message async for message in history]

        return await with_retries(f"reading history of #{self.channel.name}", action)

    async def history(self) -> AsyncIterator[discord.Message]:
        """Every message, newest first (100 per request, each request retried)."""
        before: int | None = None
        while True:
            page = await self.page_before(before)
            self.listed = {message.id: message for message in page}
            for message in page:
                yield message
            if len(page) < self.PAGE:
                return
            before = page[-1].id
