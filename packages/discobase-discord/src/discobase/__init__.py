"""discobase: use a Discord server as a database.

import discobase

db = discobase.Database("My discord database")

@db.table
class User(discobase.Table):
    name: str
    password: str

async def main():
    async with db.conn("My bot token..."):
        await User(name="Peter", password="foobar").save()
        users = await User.find(name="Peter")
"""

from discobase._catalog import (
    StoredTable,
    model_from_schema,
    open_table,
    parse_assignments,
    parse_text,
    stored_tables,
)
from discobase._store import CompactionReport
from discobase.database import REQUIRED_PERMISSIONS, Database
from discobase.table import Table
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
from discobase_core.lease import LEASE_TTL_MS

#: Seconds after which a writer that stopped renewing (crashed, paused) loses the lease.
LEASE_TTL = LEASE_TTL_MS / 1000

__version__ = "0.1.0"

__all__ = [
    "LEASE_TTL",
    "REQUIRED_PERMISSIONS",
    "CompactionReport",
    "ConnectionFailedError",
    "Database",
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
    "StoredTable",
    "Table",
    "UnsupportedTypeError",
    "model_from_schema",
    "open_table",
    "parse_assignments",
    "parse_text",
    "stored_tables",
]
