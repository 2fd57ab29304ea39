"""discobase-core: the pure storage engine of discobase (no I/O, no clock, no event loop).

- :mod:`discobase_core.errors`: the one exception hierarchy every package shares;
- :mod:`discobase_core.hashing`: stable 64-bit keys (sha1; a canonical encoding for non-strings);
- :mod:`discobase_core.index`: the paged open-addressing multimap hash index;
- :mod:`discobase_core.codec`: record codec, versioned framing with a checksum, text armour;
- :mod:`discobase_core.schema`: the self-describing table schema and change detection;
- :mod:`discobase_core.lease`: the single-writer lease, decided from messages alone.
"""

from discobase_core.codec import FORMAT_VERSION, RecordCodec, armor, dearmor, seal, unseal
from discobase_core.errors import (
    ConnectionFailedError,
    DatabaseCorruptionError,
    DatabaseStorageError,
    DatabaseTableError,
    DiscobaseError,
    DiscordUnavailableError,
    GuildNotFoundError,
    InvalidRecordError,
    LeaseHeldError,
    LeaseLostError,
    MultipleResultsError,
    NotFoundError,
    QueryError,
    ReadOnlyError,
    RecordTooLargeError,
    RecordUnreadableError,
    SchemaChangeError,
    UnsupportedTypeError,
)
from discobase_core.hashing import FieldHasher, canonical_bytes, check_supported, string_key
from discobase_core.index import HashIndex
from discobase_core.schema import TableSchema, check_compatible

__version__ = "0.1.0"

__all__ = [
    "FORMAT_VERSION",
    "ConnectionFailedError",
    "DatabaseCorruptionError",
    "DatabaseStorageError",
    "DatabaseTableError",
    "DiscobaseError",
    "DiscordUnavailableError",
    "FieldHasher",
    "GuildNotFoundError",
    "HashIndex",
    "InvalidRecordError",
    "LeaseHeldError",
    "LeaseLostError",
    "MultipleResultsError",
    "NotFoundError",
    "QueryError",
    "ReadOnlyError",
    "RecordCodec",
    "RecordTooLargeError",
    "RecordUnreadableError",
    "SchemaChangeError",
    "TableSchema",
    "UnsupportedTypeError",
    "__version__",
    "armor",
    "canonical_bytes",
    "check_compatible",
    "check_supported",
    "dearmor",
    "seal",
    "string_key",
    "unseal",
]
