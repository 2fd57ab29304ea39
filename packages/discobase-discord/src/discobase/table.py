"""`Table`: a pydantic model whose instances are records stored on Discord."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

from pydantic import BaseModel, ConfigDict, PrivateAttr

from discobase_core.codec import PRIVATE_INIT_MARK, PYDANTIC_PRIVATE_INIT
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

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Give the schema a quicker start for its private attributes when pydantic's own
        would do nothing more (see `_private_defaults`)."""
        super().__pydantic_init_subclass__(**kwargs)
        defaults = _private_defaults(cls)
        if defaults is None:
            return

        def init_private(self: BaseModel, context: Any, /) -> None:
            if getattr(self, "__pydantic_private__", None) is None:
                object.__setattr__(self, "__pydantic_private__", defaults.copy())

        setattr(init_private, PRIVATE_INIT_MARK, True)  # it only starts private attributes
        cls.model_post_init = init_private  # type: ignore[method-assign]

    def _private(self) -> dict[str, Any]:
        """The record's private attributes by name (pydantic's own dict): reading
        `self._disco_id` goes through pydantic's BaseModel.__getattr__, microseconds a
        read, and every save reads them several times."""
        private = self.__pydantic_private__
        if private is None:  # pragma: no cover - pydantic starts it for every record
            return {name: getattr(self, name) for name in self.__private_attributes__}
        return private

    @property
    def disco_id(self) -> int | None:
        """The record's id in its table: set by `save()`, cleared by `delete()`."""
        return self._private()["_disco_id"]  # type: ignore[no-any-return]

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
        private = self._private()
        saving = private["_disco_saving"]
        if saving is not None and not saving.done():
            return saving  # type: ignore[no-any-return]
        database = self._database()
        database._require_loop("save")
        if private["_disco_id"] is not None and not private["_disco_unsure"]:
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
        # The store clears it when the write is over (not a done callback: that costs a
        # context and a call per save). Private attributes take part in pydantic's ==: a
        # stored record must not carry its save, or it would differ from itself read back.
        private["_disco_saving"] = task
        return task

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


_PLAIN_DEFAULTS = (type(None), bool, int, float, str, bytes)


def _private_defaults(cls: type[BaseModel]) -> dict[str, Any] | None:
    """The private attributes' values every new record of `cls` starts with, when
    pydantic's start for them would only copy these into the record: no model_post_init
    of the user's (anywhere in the class's bases), no default factory, no default that
    pydantic would deep-copy. None otherwise (pydantic's own start is kept).

    pydantic starts private attributes in a generic Python loop, and wraps it once more in
    every subclass (each wrapper calling the loop again), which cost each record microseconds
    at construction and again when read back; a bulk load makes and reads back every record.
    """
    hook = inspect.unwrap(cls.model_post_init)
    if hook is not PYDANTIC_PRIVATE_INIT and getattr(hook, PRIVATE_INIT_MARK, False) is not True:
        return None
    defaults: dict[str, Any] = {}
    for name, attr in cls.__private_attributes__.items():
        default: object = attr.default  # PydanticUndefined (no default) is not plain
        if attr.default_factory is not None or type(default) not in _PLAIN_DEFAULTS:
            return None
        defaults[name] = default
    return defaults
