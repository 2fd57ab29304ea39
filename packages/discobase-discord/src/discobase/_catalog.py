"""Tables without their classes: list what a database stores, open a table from its stored
schema, and parse values given as text with a field's stored type.

Every table keeps its schema in its checkpoints (discobase_core.schema.TableSchema: per field
the JSON schema pydantic gave, the readable type, the default). `stored_tables(db)` reads the
newest checkpoint of each table channel; `open_table(db, name)` rebuilds a `Table` class from
that schema (`model_from_schema`) and opens it like any declared table, so the whole Table
API works on it. `parse_text` is the one parser of `FIELD=VALUE` text (the command line, and
later slash commands).

The rebuilt class reproduces the stored JSON schema exactly (each field carries it as its
`WithJsonSchema`), and its values hash and encode as the original class's do: nested models
become models (not dicts), enums become enums with the same values, sets stay sets.

`iter_records`, `verify_table` and `table_stats` read the table's in-memory state directly;
they are the only code here that knows the store's insides.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import decimal
import enum
import functools
import json
import operator
import re
import typing
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Optional

import discord
import pydantic
from pydantic import WithJsonSchema

from discobase._discord_io import ChannelIO
from discobase._lease import LEASE_CHANNEL
from discobase.table import Table
from discobase_core.codec import unseal
from discobase_core.errors import (
    DatabaseCorruptionError,
    DatabaseTableError,
    DiscobaseError,
    NotFoundError,
    QueryError,
)
from discobase_core.log import parse_file_name
from discobase_core.schema import FieldSchema, TableSchema
from discobase_core.state import read_checkpoint

if TYPE_CHECKING:
    from discobase.database import Database

__all__ = [
    "StoredTable",
    "TableCheck",
    "TableStats",
    "contains_id",
    "find_stored_table",
    "get_record",
    "iter_records",
    "model_from_schema",
    "open_table",
    "parse_assignments",
    "parse_record",
    "parse_text",
    "read_records",
    "record_from_text",
    "record_to_json",
    "stored_tables",
    "table_stats",
    "text_of",
    "update_record",
    "verify_table",
]

_READ_CONCURRENCY = 8


@dataclass(frozen=True, slots=True)
class StoredTable:
    """A table as its channel describes it: its name, stored schema and record count."""

    name: str
    schema: TableSchema
    records: int
    channel_id: int


# -- reading stored schemas -----------------------------------------------------------------


def _category(db: Database) -> discord.CategoryChannel | None:
    if db.guild is None or db.bot is None:
        raise DatabaseTableError(
            "the database is not connected", hint="await db.wait_ready() (or use db.conn())"
        )
    return discord.utils.get(db.guild.categories, name=db.category_name)


async def _stored_schema(channel: discord.TextChannel, bot_id: int) -> tuple[TableSchema, int]:
    """The schema and record count in the newest readable checkpoint of a table channel
    (requests retried; a damaged checkpoint is skipped for an older one)."""
    channel_io = ChannelIO(channel, bot_id=bot_id)
    async for message in channel_io.history():
        if not channel_io.is_ours(message):
            continue
        where = channel_io.where(message.id)
        names = [a.filename for a in message.attachments]
        parsed = parse_file_name(names[0]) if names else None
        if parsed is not None and parsed[0] != "ckpt":
            continue
        try:
            blob = await channel_io.read(message)
            if parsed is None and unseal(blob, where=where)[0] != "ckpt":
                continue
            manifest, _ = read_checkpoint(blob, where=where)
        except DatabaseCorruptionError:
            continue
        return manifest.table_schema, manifest.records
    raise DatabaseCorruptionError(
        f"channel #{channel.name} ({channel.id}) holds no discobase checkpoint",
        hint="open the table once with its class to write one",
        where=f"#{channel.name}",
        reason="no checkpoint",
    )


async def stored_tables(db: Database) -> list[StoredTable]:
    """Every table stored in the connected database, by name, with its stored schema and
    its record count (tables already open count exactly; the others as of their newest
    checkpoint). Costs about one history request per table."""
    category = _category(db)
    if category is None:
        return []
    assert db.bot is not None
    assert db.bot.user is not None
    bot_id = db.bot.user.id
    found: list[StoredTable] = []
    for channel in sorted(category.text_channels, key=lambda c: c.name):
        if channel.name == LEASE_CHANNEL:
            continue  # the writer lease, not a table
        schema, records = await _stored_schema(channel, bot_id)
        cls = db.tables.get(schema.table)
        if cls is not None and schema.table in getattr(db, "_stores", {}):
            records = await cls.count()
        found.append(StoredTable(schema.table, schema, records, channel.id))
    return found


async def find_stored_table(db: Database, name: str) -> StoredTable:
    """The stored table called `name` (ignoring case, as Discord's channel names do)."""
    tables = await stored_tables(db)
    for table in tables:
        if table.name == name:
            return table
    for table in tables:
        if table.name.lower() == name.lower():
            return table
    known = ", ".join(t.name for t in tables) or "none"
    raise DatabaseTableError(
        f"server {db.guild.name if db.guild else db.name!r} has no table {name!r} "
        f"(tables: {known})",
        hint="list the tables with `discobase tables`",
        table=name,
    )


async def open_table(db: Database, name: str) -> type[Table]:
    """The stored table `name` as an open Table class built from its stored schema (or the
    class already declared for it): find, find_unique, count, save, update, delete."""
    stored = await find_stored_table(db, name)
    cls = db.tables.get(stored.name)
    if cls is None:
        cls = db.table(name=stored.name)(model_from_schema(stored.schema))
    await db.build_tables()
    return cls


# -- classes from stored schemas --------------------------------------------------------------


class _TypeBuilder:
    """Python types for JSON schemas (pydantic's, validation mode) of discobase fields."""

    def __init__(self, defs: Mapping[str, Any], type_repr: str) -> None:
        self.defs = defs
        self.type_repr = type_repr
        self.built: dict[str, Any] = {}

    def build(self, schema: Mapping[str, Any]) -> Any:
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return self._ref(ref.rsplit("/", 1)[-1])
        if "const" in schema:
            return Literal[schema["const"]]
        if "enum" in schema:
            if "title" in schema:
                return self._enum(str(schema["title"]), list(schema["enum"]))
            return Literal[tuple(schema["enum"])]
        for union in ("anyOf", "oneOf"):
            if union in schema:
                return self._union(list(schema[union]))
        kind = schema.get("type")
        if isinstance(kind, list):
            return self._union([{**schema, "type": k} for k in kind])
        if kind == "string":
            return _STRING_FORMATS.get(str(schema.get("format", "")), str)
        if kind == "integer":
            return int
        if kind == "number":
            return float
        if kind == "boolean":
            return bool
        if kind == "null":
            return type(None)
        if kind == "array":
            return self._array(schema)
        if kind == "object":
            if "properties" in schema:
                return self._model(str(schema.get("title", "Nested")), schema)
            values = schema.get("additionalProperties")
            value_type = self.build(values) if isinstance(values, Mapping) else Any
            return dict[str, value_type]  # type: ignore[valid-type]
        return Any

    def _ref(self, name: str) -> Any:
        if name in self.built:
            return self.built[name]
        target = self.defs.get(name)
        if not isinstance(target, Mapping):
            raise DatabaseCorruptionError(
                f"a stored schema refers to an unknown type {name!r}",
                where="stored schema",
                reason="bad $ref",
            )
        built = self.build({"title": name, **target})
        self.built[name] = built
        return built

    def _union(self, options: list[Mapping[str, Any]]) -> Any:
        kinds = [o.get("type") for o in options]
        if sorted(map(str, kinds)) == ["number", "string"] and "Decimal" in self.type_repr:
            return decimal.Decimal
        members = tuple(self.build(o) for o in options)
        if " | " in self.type_repr:  # spelled X | Y: the same spelling, the same type_repr
            return functools.reduce(operator.or_, members)
        if len(members) == 2 and type(None) in members:
            other = next(m for m in members if m is not type(None))
            return Optional[other]  # noqa: UP045 - spelled Optional[X] in the stored type
        return typing.Union[members]  # noqa: UP007 - built at run time

    def _array(self, schema: Mapping[str, Any]) -> Any:
        prefix = schema.get("prefixItems")
        if isinstance(prefix, list):
            parts = tuple(self.build(p) for p in prefix)
            return tuple[parts] if parts else tuple[()]  # type: ignore[valid-type]
        items = schema.get("items")
        item = self.build(items) if isinstance(items, Mapping) else Any
        if schema.get("uniqueItems"):
            if self.type_repr.startswith("frozenset"):
                return frozenset[item]  # type: ignore[valid-type]
            return set[item]  # type: ignore[valid-type]
        if self.type_repr.startswith("tuple[") and self.type_repr.endswith(", ...]"):
            return tuple[item, ...]  # type: ignore[valid-type]
        return list[item]  # type: ignore[valid-type]

    def _module(self, name: str) -> str:
        """The module the original class came from, as the stored type names it."""
        found = re.search(rf"([\w.]+)\.{re.escape(name)}\b", self.type_repr)
        return found.group(1) if found else __name__

    def _enum(self, name: str, values: list[Any]) -> Any:
        members = {
            str(value) if str(value).isidentifier() else f"v{n}": value
            for n, value in enumerate(values)
        }
        if all(isinstance(v, str) for v in values):
            return enum.Enum(name, members, type=str, module=self._module(name))
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return enum.Enum(name, members, type=int, module=self._module(name))
        return Literal[tuple(values)]

    def _model(self, name: str, schema: Mapping[str, Any]) -> Any:
        required = set(schema.get("required", ()))
        fields: dict[str, Any] = {}
        for prop, sub in schema.get("properties", {}).items():
            annotation = self.build(sub)
            if prop in required:
                fields[prop] = (annotation, ...)
            elif "default" in sub:
                fields[prop] = (annotation, _valid_default(annotation, sub["default"]))
            else:
                fields[prop] = (annotation, None)
        return pydantic.create_model(name, __module__=self._module(name), **fields)


_STRING_FORMATS: dict[str, Any] = {
    "date-time": _dt.datetime,
    "date": _dt.date,
    "time": _dt.time,
    "uuid": uuid.UUID,
    "uuid1": uuid.UUID,
    "uuid3": uuid.UUID,
    "uuid4": uuid.UUID,
    "uuid5": uuid.UUID,
    "binary": bytes,
}


def _valid_default(annotation: Any, default: Any) -> Any:
    return pydantic.TypeAdapter(annotation).validate_python(default)


def _field_definition(stored: FieldSchema) -> tuple[Any, Any]:
    defs = stored.json_schema.get("$defs", {})
    annotation = _TypeBuilder(defs, stored.type_repr).build(stored.json_schema)
    typed: Any = annotation
    if "$defs" not in stored.json_schema:  # pydantic cannot take references as given
        typed = typing.Annotated[annotation, WithJsonSchema(dict(stored.json_schema))]
    if stored.has_default:
        try:
            return typed, _valid_default(annotation, stored.default)
        except pydantic.ValidationError:
            return typed, ...
    if stored.default_factory:
        kind = stored.json_schema.get("type")
        if kind == "array":
            unique = stored.json_schema.get("uniqueItems")
            factory: Any = (
                set if unique else (tuple if "prefixItems" in stored.json_schema else list)
            )
            if stored.type_repr.startswith("frozenset"):
                factory = frozenset
            return typed, pydantic.Field(default_factory=factory)
        if kind == "object":
            return typed, pydantic.Field(default_factory=dict)
    if not stored.required:
        return typed, None
    return typed, ...


def model_from_schema(schema: TableSchema) -> type[Table]:
    """A Table class whose fields, types, defaults and JSON schema are the stored ones, for
    a table written by a program whose classes are not at hand."""
    fields: dict[str, Any] = {f.name: _field_definition(f) for f in schema.fields}
    model: type[Table] = pydantic.create_model(schema.table, __base__=Table, **fields)
    model.__doc__ = f"Table {schema.table}, rebuilt from its stored schema."
    return model


# -- text values ------------------------------------------------------------------------------


def _adapter(model: type[pydantic.BaseModel], name: str) -> pydantic.TypeAdapter[Any]:
    info = model.model_fields[name]
    annotation: Any = info.annotation
    if info.metadata:
        annotation = typing.Annotated[(annotation, *info.metadata)]
    return pydantic.TypeAdapter(annotation)


def _accepts(adapter: pydantic.TypeAdapter[Any], value: object) -> bool:
    try:
        adapter.validate_python(value, strict=True)
    except pydantic.ValidationError:
        return False
    return True


def _field_names(model: type[pydantic.BaseModel]) -> str:
    return ", ".join(model.model_fields)


def parse_text(model: type[pydantic.BaseModel], name: str, text: str) -> Any:
    """The value of field `name` written as `text`, validated with the field's type.

    A field that takes strings takes the text as it is (`name=42` is the string "42"); any
    other text is given to the type as a string first (`age=42`, `ok=true`,
    `when=2024-05-01T12:00:00Z`, a UUID, `price=1.50`), and else read as JSON
    (`tags=["a","b"]`, `address={"city": "Oslo"}`, `x=null`).
    An empty text is None for a field that takes None. Raises QueryError, saying what is
    expected, for an unknown field or a value its type refuses.
    """
    if name not in model.model_fields:
        raise QueryError(
            f"{model.__name__} has no field {name!r}; its fields are: {_field_names(model)}",
            hint=f"use one of: {_field_names(model)}",
            field=name,
            table=model.__name__,
        )
    adapter = _adapter(model, name)
    candidates: list[object] = []
    if text == "" and _accepts(adapter, None):
        candidates.append(None)
    candidates.append(text)
    with contextlib.suppress(ValueError):
        candidates.append(json.loads(text))
    error: pydantic.ValidationError | None = None
    for candidate in candidates:
        try:
            return adapter.validate_python(candidate)
        except pydantic.ValidationError as exc:
            error = error or exc
    assert error is not None
    expected = _type_text(model, name)
    raise QueryError(
        f"{text!r} is not a valid value for field {name!r} of type {expected}: "
        f"{error.errors()[0]['msg']}",
        hint=f"give {name} a value of type {expected}",
        field=name,
        expected=expected,
        table=model.__name__,
    )


def _type_text(model: type[pydantic.BaseModel], name: str) -> str:
    annotation = model.model_fields[name].annotation
    if isinstance(annotation, type) and typing.get_origin(annotation) is None:
        return annotation.__name__
    return repr(annotation).replace("typing.", "").replace("datetime.", "")


def parse_assignments(model: type[pydantic.BaseModel], items: Sequence[str]) -> dict[str, Any]:
    """`FIELD=VALUE` texts as {field: value}, each parsed with `parse_text`."""
    values: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise QueryError(
                f"{item!r} is not FIELD=VALUE",
                hint=f"write a field name, '=' and a value; fields: {_field_names(model)}",
            )
        values[name.strip()] = parse_text(model, name.strip(), text)
    return values


def text_of(value: object) -> str:
    """A value as `parse_text` reads it back: strings as they are, None as "", others as
    JSON (dates, UUIDs, Decimals and bytes as their JSON strings)."""
    if isinstance(value, str) and not isinstance(value, enum.Enum):
        return value
    if value is None:
        return ""
    jsonable = pydantic.TypeAdapter(Any).dump_python(value, mode="json")
    if isinstance(jsonable, str):
        return jsonable
    return json.dumps(jsonable, ensure_ascii=False, separators=(",", ":"))


def parse_record(model: type[Table], data: object) -> Table:
    """A new record of `model` from a JSON object (`_id`, as exports write it, is ignored;
    any other unknown key is an error). Raises QueryError for invalid values."""
    if not isinstance(data, Mapping):
        raise QueryError(
            f"a {model.__name__} record must be a JSON object, not {type(data).__name__}",
            hint='write {"field": value, ...}',
            table=model.__name__,
        )
    unknown = [key for key in data if key != "_id" and key not in model.model_fields]
    if unknown:
        raise QueryError(
            f"{model.__name__} has no field {unknown[0]!r}; its fields are: {_field_names(model)}",
            hint=f"use only: {_field_names(model)}",
            field=unknown[0],
            table=model.__name__,
        )
    values = {key: value for key, value in data.items() if key != "_id"}
    return _validated(model, lambda: model.model_validate_json(json.dumps(values)))


def record_from_text(model: type[Table], texts: Mapping[str, str]) -> Table:
    """A new record of `model` from {field: text} (a CSV row, command-line values), each
    text parsed with `parse_text`; `_id` is ignored and missing fields take their defaults."""
    values = {name: parse_text(model, name, text) for name, text in texts.items() if name != "_id"}
    return _validated(model, lambda: model.model_validate(values))


def _validated(model: type[Table], validate: Callable[[], Table]) -> Table:
    """`validate()`'s record; its first validation error as a QueryError naming the field."""
    try:
        return validate()
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "record"
        raise QueryError(
            f"invalid {model.__name__} record: {where}: {first['msg']}",
            hint=f"check the value of {where}",
            field=where,
            table=model.__name__,
        ) from None


def record_to_json(record: Table) -> dict[str, Any]:
    """A record as a JSON object, its id under `_id` first."""
    return {"_id": record.disco_id, **record.model_dump(mode="json")}


# -- whole-table reads (the store's insides) ----------------------------------------------------


async def iter_records(cls: type[Table], *, chunk: int = 256) -> AsyncIterator[Table]:
    """Every record of an open table, oldest first, reading `chunk` records at a time, so
    memory holds one chunk (plus the store's bounded block cache), not the table."""
    store = cls._store()
    rids = store.state.rids()
    upcoming = store.upcoming(rids)
    for start in range(0, len(rids), chunk):
        batch = rids[start : start + chunk]
        for record in await _read(cls, batch, ahead=upcoming.after(start + chunk)):
            yield record


async def get_record(cls: type[Table], rid: int) -> Table:
    """The record of an open table with id `rid`; NotFoundError if there is none."""
    store = cls._store()
    records = await _read(cls, [rid]) if rid in store.state else []
    if not records:
        raise NotFoundError(
            f"table {store.name} has no record with id {rid}",
            hint="find the ids with `discobase find`",
            table=store.name,
            id=rid,
        )
    return records[0]


async def read_records(cls: type[Table], rids: Sequence[int]) -> dict[int, Table]:
    """The records of an open table with the given ids, by id (missing ids left out)."""
    store = cls._store()
    present = [rid for rid in rids if rid in store.state]
    return {r.disco_id: r for r in await _read(cls, present) if r.disco_id is not None}


async def update_record(cls: type[Table], rid: int, changes: Mapping[str, Any]) -> Table:
    """Set the fields in `changes` (JSON values) of record `rid` of an open table, validated
    with the stored types, and wait until the update is durable."""
    current = await get_record(cls, rid)
    record = parse_record(cls, {**current.model_dump(mode="json"), **changes})
    record._disco_id = rid
    await record.update()
    return record


def contains_id(cls: type[Table], rid: int) -> bool:
    """Whether an open table holds a record with id `rid` (no Discord request)."""
    return rid in cls._store().state


async def _payloads(
    cls: type[Table], rids: Sequence[int], ahead: Sequence[tuple[int, int, int]] = ()
) -> list[tuple[int, bytes, str]]:
    """(id, encoded record, where it is stored) of the live records among `rids`; `ahead`:
    where the records read next lie (TableStore.upcoming), so whole-table reads read
    history pages."""
    return await cls._store().payloads(rids, ahead=ahead)


async def _read(
    cls: type[Table], rids: Sequence[int], ahead: Sequence[tuple[int, int, int]] = ()
) -> list[Table]:
    store = cls._store()
    found = await _payloads(cls, rids, ahead)
    return [store.decode(rid, payload, where) for rid, payload, where in found]


@dataclass
class TableCheck:
    """What `verify_table` found: problems as (record id or None, message)."""

    table: str
    records: int = 0
    checked: int = 0
    problems: list[tuple[int | None, str]] = field(default_factory=list)
    repaired: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify_table(cls: type[Table], *, repair: bool = False) -> TableCheck:
    """Read every record of an open table and look each one up through the index of every
    field; report what is unreadable or unreachable by record id. With `repair`, the index
    entries a readable record misses are added back to the open table (indexes are built
    from the checkpoint's directory at every open, so no index damage outlives a reopen);
    records are never written or deleted."""
    store = cls._store()
    name = store.name
    report = TableCheck(name, records=len(store.state))
    rids = store.state.rids()
    upcoming = store.upcoming(rids)
    for start in range(0, len(rids), 256):
        batch = rids[start : start + 256]
        try:
            records = await _read(cls, batch, upcoming.after(start + 256))
        except DiscobaseError:
            records = []
            for rid in batch:  # one at a time, to name each unreadable record
                try:
                    records += await _read(cls, [rid])
                except DiscobaseError as exc:
                    report.problems.append((rid, f"unreadable: {exc.message}"))
        for record in records:
            report.checked += 1
            record_id = record.disco_id
            assert record_id is not None
            keys = store.hasher.keys(record)
            missed = [
                fname
                for fname, key in keys.items()
                if record_id not in store.state.candidates({fname: key})
            ]
            if not missed:
                continue
            report.problems.append(
                (record_id, f"not found through the index of {', '.join(missed)}")
            )
            if repair:
                for fname in missed:
                    store.state.reindex(fname, keys[fname], record_id)
                report.repaired.append(record_id)
    return report  # nothing to persist: indexes are built from the directory at every open


@dataclass(frozen=True, slots=True)
class TableStats:
    """Sizes, Discord usage and index shape of one open table."""

    table: str
    records: int
    live_bytes: int  # the encoded live records
    messages: int  # discobase messages in the table's channel and lane threads
    stored_bytes: int  # what those messages hold (content and attachments)
    lanes: int  # the table channel and its lane threads
    fields: dict[str, dict[str, float]]
    probe_histogram: dict[int, int]


async def table_stats(cls: type[Table]) -> TableStats:
    """Statistics of an open table: it reads every record and the history of every lane
    (one request per 100 messages), so it costs about what an export does."""
    store = cls._store()
    state = store.state
    fields: dict[str, dict[str, float]] = {}
    histogram: dict[int, int] = {}
    for fname, index in state.indexes.items():
        stats = index.stats()
        fields[fname] = {
            "capacity": stats.capacity,
            "load_factor": round(stats.load_factor, 4),
            "tombstones": index.tombstones,
            "mean_probes": round(stats.mean_hit, 3),
            "longest_probe_run": stats.max_hit,
        }
        for key, _ in index.keys_values():
            n = index.probe_count(key)
            histogram[n] = histogram.get(n, 0) + 1
    messages = stored = 0
    for channel_io in store.ios:
        if channel_io is None:
            continue  # a lane thread that is gone
        async for message in channel_io.history():
            if channel_io.is_ours(message):
                messages += 1
                stored += len(message.content.encode("utf-8"))
                stored += sum(a.size for a in message.attachments)
    live = 0
    rids = state.rids()
    upcoming = store.upcoming(rids)
    for start in range(0, len(rids), 256):
        batch, ahead = rids[start : start + 256], upcoming.after(start + 256)
        live += sum(len(p) for _, p, _ in await _payloads(cls, batch, ahead))
    return TableStats(
        table=store.name,
        records=len(state),
        live_bytes=live,
        messages=messages,
        stored_bytes=stored,
        lanes=sum(channel_io is not None for channel_io in store.ios),
        fields=fields,
        probe_histogram=dict(sorted(histogram.items())),
    )
