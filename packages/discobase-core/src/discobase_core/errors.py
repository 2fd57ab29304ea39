"""One exception hierarchy for every discobase package.

Every error carries a stable machine-readable ``code`` (a class attribute), a ``details``
mapping of structured facts (which table, which field, which page...) and an optional
``hint`` telling the user what to do. ``str(err)`` is the message, followed by
``"\\nHint: ..."`` when a hint is given.

    DiscobaseError
    ├── DatabaseCorruptionError        stored bytes are not what discobase wrote
    ├── DatabaseStorageError           cannot store this (before anything is written)
    │   ├── RecordTooLargeError
    │   ├── UnsupportedTypeError
    │   └── InvalidRecordError
    ├── SchemaChangeError              the stored schema and the class disagree
    ├── DatabaseTableError             table not registered / duplicate / not built
    ├── QueryError                     unknown field, or a value invalid for its field
    ├── NotFoundError                  find_unique found nothing
    ├── MultipleResultsError           find_unique found several
    ├── ConnectionFailedError          bad token, login failure, API unreachable
    │   └── GuildNotFoundError
    ├── DiscordUnavailableError        5xx / 429 beyond retries
    ├── LeaseHeldError                 another writer holds the database's lease
    ├── LeaseLostError                 this writer lost the lease (paused, cut off)
    ├── ReadOnlyError                  a write through a read-only Database
    └── RecordUnreadableError          (a DatabaseCorruptionError) records that are damaged
                                       or gone, named by table, id and message
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "ConnectionFailedError",
    "DatabaseCorruptionError",
    "DatabaseStorageError",
    "DatabaseTableError",
    "DiscobaseError",
    "DiscordUnavailableError",
    "GuildNotFoundError",
    "InvalidRecordError",
    "LeaseHeldError",
    "LeaseLostError",
    "MultipleResultsError",
    "NotFoundError",
    "QueryError",
    "ReadOnlyError",
    "RecordTooLargeError",
    "RecordUnreadableError",
    "SchemaChangeError",
    "UnsupportedTypeError",
]


class DiscobaseError(Exception):
    """Base of every discobase error.

    ``code`` is stable across versions (match on it, not on the message); ``details`` holds
    the structured facts named in each subclass's docstring; ``hint`` says what to do.
    """

    code: ClassVar[str] = "discobase"

    def __init__(self, message: str, *, hint: str | None = None, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details: dict[str, object] = dict(details)

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\nHint: {self.hint}"
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r})"

    def to_dict(self) -> dict[str, object]:
        """A JSON-friendly description: code, message, hint and details."""
        return {
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
            "details": dict(self.details),
        }


class DatabaseCorruptionError(DiscobaseError):
    """Stored data is not what discobase wrote. details: ``where`` (which message, page or
    field) and ``reason``."""

    code = "corruption"


class DatabaseStorageError(DiscobaseError):
    """Something cannot be stored; raised before anything is written."""

    code = "storage"


class RecordTooLargeError(DatabaseStorageError):
    """A record (or page) does not fit. details: ``size``, ``limit``, and ``table`` /
    ``field`` when known."""

    code = "record_too_large"


class UnsupportedTypeError(DatabaseStorageError):
    """A field's type cannot be hashed or stored. details: ``field``, ``type``."""

    code = "unsupported_type"


class InvalidRecordError(DatabaseStorageError):
    """A record no longer validates against its own schema (e.g. a wrong-typed value was
    assigned to a field after construction). details: ``table`` / ``reason``."""

    code = "invalid_record"


class SchemaChangeError(DiscobaseError):
    """The stored schema and the current class are incompatible. details: ``table``,
    ``changes`` (list of human-readable strings)."""

    code = "schema_change"


class DatabaseTableError(DiscobaseError):
    """Table not registered, duplicate table name, tables not built, or no database."""

    code = "table"


class QueryError(DiscobaseError):
    """A query names an unknown field, or gives a value invalid for the field's type."""

    code = "query"


class NotFoundError(DiscobaseError):
    """``find_unique`` found no record."""

    code = "not_found"


class MultipleResultsError(DiscobaseError):
    """``find_unique`` found more than one record."""

    code = "multiple_results"


class ConnectionFailedError(DiscobaseError):
    """Bad token, login failure, or the API cannot be reached."""

    code = "connection_failed"


class GuildNotFoundError(ConnectionFailedError):
    """The bot is in no guild with that name or id. details: ``guild``, ``invite_url``."""

    code = "guild_not_found"


class DiscordUnavailableError(DiscobaseError):
    """Discord answered 5xx or 429 beyond the retry budget."""

    code = "discord_unavailable"


class LeaseHeldError(DiscobaseError):
    """Another live writer holds the database's single-writer lease. details: ``holder``
    (host:pid of the holder), ``expires_ms`` (Discord time it runs out unless renewed)."""

    code = "lease_held"


class LeaseLostError(DiscobaseError):
    """This writer no longer holds the lease (it was paused or cut off past its expiry, and
    another writer may have taken over); nothing more is acknowledged. details:
    ``maybe_stored``."""

    code = "lease_lost"


class ReadOnlyError(DiscobaseError):
    """A write through a Database opened with ``read_only=True``."""

    code = "read_only"


class RecordUnreadableError(DatabaseCorruptionError):
    """Records a read needs are damaged or gone (a message deleted or edited by someone).
    details: ``table``, ``ids`` (record ids), ``where`` (the message), ``reason``."""

    code = "record_unreadable"
