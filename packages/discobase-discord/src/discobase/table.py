"""`Table`: a pydantic model whose instances are records stored on Discord."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

from pydantic import BaseModel, ConfigDict, PrivateAttr

from discobase_core.errors import (
    DatabaseStorageError,
    DatabaseTableError,
    DiscobaseError,
    MultipleResultsError,
    NotFoundError,
    QueryError,
    RecordUnreadableError,
)

if TYPE_CHECKING:
    from discobase._store import CompactionReport, TableStore
    from discobase.database import Database

__all__ = ["Table"]

T = TypeVar("T")


class Table(BaseModel):
    """Base class of every table schema; decorate subclasses with `@db.table`.

    Fields are validated on assignment too, so a wrong-type value never reaches Discord.
    `save()`, `update()`, `commit()` and `delete()` return tasks: await them to know the
    write is durable, or let them run in the background (`Database.close()` waits for them).
    """

    model_config = ConfigDict(validate_assignment=True)

    __disco_database__: ClassVar[Database | None] = None
    __disco_name__: ClassVar[str | None] = None
    _disco_id: int | None = PrivateAttr(default=None)
    _disco_saving: asyncio.Task[Any] | None = PrivateAttr(default=None)
    # A write of this record failed with its outcome unknown: it keeps its id, so writing
    # it again (save, update or delete) stores it exactly once.
    _disco_unsure: bool = PrivateAttr(default=False)

    @property
    def disco_id(self) -> int | None:
        """The record's id in its table: set by `save()`, cleared by `delete()`."""
        return self._disco_id

    @property
    def __disco_id__(self) -> int:
        """The original discobase's spelling of the id: -1 while the record is not saved."""
        return -1 if self._disco_id is None else self._disco_id

    @classmethod
    def _database(cls) -> Database:
        database = cls.__disco_database__
        if database is None:
            raise DatabaseTableError(
                f"{cls.__name__} is not a table of any database",
                hint="decorate the class with @db.table",
                table=cls.__name__,
            )
        return database

    @classmethod
    def _store(cls) -> TableStore[Self]:
        return cls._database()._store_for(cls)

    # -- writes ----------------------------------------------------------------------------

    def save(self) -> asyncio.Task[Self]:
        """Insert this new record. Calling it again before the first save finishes returns
        the same task, so the record is stored once; after a save that failed with its
        outcome unknown, calling it again is safe too (the record keeps its id).

        A record that cannot be stored (invalid, oversize) fails its task rather than the
        call, so `gather(*(r.save() for r in records))` writes every valid record; misuse
        (no event loop, a table that is not open, a saved record) raises at once."""
        saving = self._disco_saving
        if saving is not None and not saving.done():
            return saving
        database = self._database()
        database._require_loop("save")
        if self._disco_id is not None and not self._disco_unsure:
            raise DatabaseStorageError(
                f"this {type(self).__name__} record is already saved (id {self._disco_id})",
                hint="use update() to change it, or commit() to save or update",
            )
        store = database._store_for(type(self))
        try:
            future = store.put(self, new=True)
        except DiscobaseError as exc:
            return database._failed(exc, self)
        task = database._track(future, self)
        self._disco_saving = task
        task.add_done_callback(self._saved)
        return task

    def _saved(self, task: asyncio.Task[Self]) -> None:
        # Private attributes take part in pydantic's ==: a stored record must not carry its
        # finished save task, or it would differ from the same record read back.
        if self._disco_saving is task:
            self._disco_saving = None

    def update(self) -> asyncio.Task[Self]:
        """Write this record's current values over the stored ones."""
        database = self._database()
        database._require_loop("update")
        self._require_saved("update")
        store = database._store_for(type(self))
        try:
            future = store.put(self, new=False)
        except DiscobaseError as exc:
            return database._failed(exc, self)
        return database._track(future, self)

    def _require_saved(self, action: str) -> None:
        if self._disco_id is None:
            raise DatabaseStorageError(
                f"cannot {action} this {type(self).__name__} record: it is not saved",
                hint="did you mean save()? commit() saves or updates as needed",
            )

    def commit(self) -> asyncio.Task[Self]:
        """`save()` a new record, `update()` a stored one."""
        return self.save() if self._disco_id is None else self.update()

    def delete(self) -> asyncio.Task[Self]:
        """Remove this record from its table."""
        database = self._database()
        database._require_loop("delete")
        self._require_saved("delete")
        store = database._store_for(type(self))
        try:
            future = store.delete(self)
        except DiscobaseError as exc:
            return database._failed(exc, self)
        return database._track(future, self)

    # -- queries ---------------------------------------------------------------------------

    @classmethod
    async def find(cls, *, limit: int | None = None, **fields: Any) -> list[Self]:
        """Records whose fields equal all the given values (no arguments: every record),
        oldest first, each at most once. Values are validated with the field's type."""
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise QueryError(
                f"limit must be a non-negative integer, got {limit!r}",
                hint="pass limit=None for every record",
                table=cls.__name__,
            )
        if limit == 0:
            return []
        return await cls._read(lambda store: store.find(fields, limit=limit))

    @classmethod
    async def _read(cls, read: Callable[[TableStore[Self]], Awaitable[T]]) -> T:
        """`read(store)`; on a read-only database whose view predates a compaction (a
        record's message was deleted by the writer after it moved the record), the
        tables are read again and `read` retried once."""
        try:
            return await read(cls._store())
        except RecordUnreadableError as exc:
            if not exc.details.get("stale_view"):
                raise
        await cls._database().refresh()
        return await read(cls._store())

    @classmethod
    async def find_unique(cls, *, strict: bool = True, **fields: Any) -> Self | None:
        """The one record matching the given values.

        Raises NotFoundError when none matches and MultipleResultsError when several do;
        with `strict=False` it returns None for none and the first (oldest) for several.
        """
        if not fields:
            raise QueryError(
                f"find_unique() on {cls.__name__} needs at least one field",
                hint="use find() to get every record",
                table=cls.__name__,
            )
        found = await cls._read(lambda store: store.find(fields, limit=2))
        if len(found) > 1 and strict:
            raise MultipleResultsError(
                f"more than one {cls.__name__} record matches {fields!r}",
                hint="add fields to the query, or use find()",
                table=cls.__name__,
            )
        if not found:
            if strict:
                raise NotFoundError(
                    f"no {cls.__name__} record matches {fields!r}",
                    hint="pass strict=False to get None instead",
                    table=cls.__name__,
                )
            return None
        return found[0]

    @classmethod
    async def count(cls, **fields: Any) -> int:
        """How many records match the given values (no arguments: all of them)."""
        return await cls._read(lambda store: store.count(fields))

    @classmethod
    async def compact(cls) -> CompactionReport:
        """Reclaim the space of overwritten and deleted records and erase them from
        Discord now (the writer also does it on its own; see the storage docs)."""
        return await cls._store().compact()
