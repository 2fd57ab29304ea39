"""Self-describing tables: the schema stored with each table, and change detection.

The stored schema holds, per field, its JSON schema (pydantic's, validation mode), whether
it is required, its default (as JSON) and a readable type, so a tool can read a table
without the Python class. It also holds the table's history that reads depend on: the
``backfill`` value of every field added after the table was created.

Schema history is data. What each change does (``check_compatible`` returns a note for
each allowed one; :meth:`TableSchema.evolve` applies them):

- a new field WITH a default or a default factory: the value records written before it
  read as is fixed at that moment (the factory is called ONCE) and stored in the schema as
  the field's ``backfill`` (discobase's lossless value encoding, base64). Old records read
  that value, and their index keys are its key, so ``find(field=value)`` finds exactly
  what reads return. The backfill stays in the schema for good: a later change of the
  default never changes what old records read;
- a changed default (or default factory) of an existing field: affects only records saved
  from then on; every stored record keeps the value it holds (or its backfill);
- a field that gained a default (was required), or lost one: records keep their values.

Incompatible changes (``SchemaChangeError``; nothing is changed on Discord):

- a removed field (its stored values would be silently dropped);
- a new required field without a default (old records cannot be read);
- a field whose type changed (JSON schema differs; old values may not validate).
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import typing
from collections.abc import Mapping
from typing import Any

import pydantic
from pydantic_core import (
    PydanticSerializationError,
    PydanticUndefined,
    from_json,
    to_json,
    to_jsonable_python,
)

from discobase_core.codec import FORMAT_VERSION
from discobase_core.errors import (
    DatabaseCorruptionError,
    DatabaseStorageError,
    SchemaChangeError,
    UnsupportedTypeError,
)
from discobase_core.hashing import _short_repr, _type_repr
from discobase_core.values import decode_value, encode_value, enum_classes

__all__ = ["FieldSchema", "TableSchema", "check_compatible"]


class FieldSchema(pydantic.BaseModel):
    """One field of a stored table schema."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    name: str
    json_schema: dict[str, Any]
    required: bool
    default: Any = None
    has_default: bool = False
    default_factory: bool = False
    type_repr: str
    #: The value records written before this field was added read as: base64 of its
    #: discobase_core.values encoding; None for a field the table had from the start.
    backfill: str | None = None

    def backfill_value(self, enums: Mapping[str, type[enum.Enum]] | None = None) -> Any:
        """The decoded ``backfill`` (a plain Python value, Enum members of ``enums`` as
        members; validation makes it the field's type). Undecodable bytes are
        :class:`DatabaseCorruptionError`."""
        if self.backfill is None:
            raise ValueError(f"field {self.name!r} has no backfill value")
        where = f"the backfill of field {self.name!r}"
        try:
            raw = base64.b64decode(self.backfill.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise DatabaseCorruptionError(
                f"{where} is not base64", where=where, reason="bad backfill"
            ) from None
        return decode_value(raw, where=where, enums=enums)


class TableSchema(pydantic.BaseModel):
    """The stored schema of one table."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    table: str
    fields: list[FieldSchema]
    format_version: int = FORMAT_VERSION

    @classmethod
    def from_model(cls, table: str, model_cls: type[pydantic.BaseModel]) -> TableSchema:
        """The schema of ``model_cls`` stored as table ``table``."""
        fields: list[FieldSchema] = []
        for name, info in model_cls.model_fields.items():
            ann: Any = info.annotation
            if info.metadata:
                ann = typing.Annotated[(ann, *info.metadata)]
            json_schema = pydantic.TypeAdapter(ann).json_schema(mode="validation")
            has_default = info.default is not PydanticUndefined
            default: Any = None
            if has_default:
                default = _shown_default(info.default)
            fields.append(
                FieldSchema(
                    name=name,
                    json_schema=json_schema,
                    required=info.is_required(),
                    default=default,
                    has_default=has_default,
                    default_factory=info.default_factory is not None,
                    type_repr=_type_repr(info.annotation),
                )
            )
        schema = cls(table=table, fields=fields, format_version=FORMAT_VERSION)
        try:
            cls.from_bytes(schema.to_bytes(), where=f"the schema of table {table!r}")
        except DatabaseCorruptionError as exc:
            reason = exc.details.get("reason")
            raise UnsupportedTypeError(
                f"the schema of table {table!r} does not survive being stored: {reason}",
                hint="use types and defaults whose values JSON can carry (no Literal of "
                "a 5,000-digit int, say)",
                table=table,
            ) from None
        return schema

    def backfill_values(self, model_cls: type[pydantic.BaseModel] | None = None) -> dict[str, Any]:
        """``{field: value}`` for every field with a backfill (for the record codec and the
        index keys of old records); with ``model_cls``, members of the Enum classes it
        mentions come back as members (``Literal[Color.RED]`` accepts nothing else)."""
        enums = enum_classes(model_cls) if model_cls is not None else None
        return {f.name: f.backfill_value(enums) for f in self.fields if f.backfill is not None}

    def evolve(self, stored: TableSchema, model_cls: type[pydantic.BaseModel]) -> TableSchema:
        """This (current) schema with the history of ``stored``: every backfill ``stored``
        holds is kept, and every field new to ``stored`` gets its backfill fixed now (its
        default, or its default factory called once), validated with the field's type.

        Call after :func:`check_compatible` accepted the change. A default that does not
        validate or cannot be stored is a :class:`SchemaChangeError`.
        """
        fields: list[FieldSchema] = []
        for f in self.fields:
            before = stored.field(f.name)
            if before is not None:
                fields.append(f.model_copy(update={"backfill": before.backfill}))
                continue
            value = _fixed_default(self.table, f.name, model_cls)
            encoded = base64.b64encode(encode_value(value)).decode("ascii")
            fields.append(f.model_copy(update={"backfill": encoded}))
        return self.model_copy(update={"fields": fields})

    def field(self, name: str) -> FieldSchema | None:
        """The field called ``name``, if any."""
        for f in self.fields:
            if f.name == name:
                return f
        return None

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys, no whitespace, ASCII)."""
        return json.dumps(
            self.model_dump(mode="json"), sort_keys=True, separators=(",", ":")
        ).encode("ascii")

    @classmethod
    def from_bytes(cls, data: bytes, *, where: str) -> TableSchema:
        """Inverse of :meth:`to_bytes`; anything else is :class:`DatabaseCorruptionError`."""
        try:
            return cls.model_validate_json(data)
        except pydantic.ValidationError as exc:
            reason = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or '<schema>'}: {e['msg']}"
                for e in exc.errors()[:5]
            )
        except (TypeError, ValueError) as exc:
            reason = str(exc)
        raise DatabaseCorruptionError(
            f"{where}: not a valid table schema: {reason}", where=where, reason=reason
        )


def _shown_default(value: object) -> Any:
    """A field's default as the stored schema shows it (for people and tools; reads use the
    losslessly encoded backfill value): its JSON form when that reads back the same, else its
    short repr. A 5,000-digit int, say, is valid JSON that no JSON reader here accepts, and it
    would make every checkpoint of the table unreadable."""
    try:
        shown = to_jsonable_python(value)
        if from_json(to_json(shown)) == shown:
            return shown
    except (TypeError, ValueError, PydanticSerializationError):
        pass
    return _short_repr(value)


def _fixed_default(table: str, name: str, model_cls: type[pydantic.BaseModel]) -> Any:
    """The default of field ``name`` right now (a factory called once), validated."""
    info = model_cls.model_fields.get(name)

    def refuse(reason: str) -> SchemaChangeError:
        return SchemaChangeError(
            f"new field {name!r} of table {table!r}: {reason}; nothing was changed on Discord",
            hint="give the new field a default of its own type",
            table=table,
            changes=[f"new field {name!r}: {reason}"],
        )

    if info is None or info.is_required():
        raise refuse("it has no default for the records stored before it")
    try:
        value = info.get_default(call_default_factory=True, validated_data={})
    except Exception as exc:
        raise refuse(f"its default factory failed: {exc!r}") from exc
    ann: Any = info.annotation
    if info.metadata:
        ann = typing.Annotated[(ann, *info.metadata)]
    try:
        validated = pydantic.TypeAdapter(ann).validate_python(value)
        encode_value(validated)
    except pydantic.ValidationError as exc:
        raise refuse(
            f"its default {_short_repr(value)} is not a valid value: {exc.errors()[0]['msg']}"
        ) from None
    except DatabaseStorageError as exc:
        raise refuse(f"its default cannot be stored: {exc.message}") from None
    return validated


def _default_text(f: FieldSchema) -> str:
    if f.default_factory:
        return "a default factory"
    if f.has_default:
        return f"default {f.default!r}"
    return "no default"


def check_compatible(stored: TableSchema, current: TableSchema) -> list[str]:
    """Notes on the allowed differences between ``stored`` and ``current``; raises
    :class:`SchemaChangeError` listing every incompatible one."""
    table = current.table
    notes: list[str] = []
    changes: list[str] = []
    if stored.format_version > current.format_version:
        changes.append(
            f"the table was written by a newer discobase (format version "
            f"{stored.format_version}; this one understands {current.format_version})"
        )
    if stored.table != current.table:
        changes.append(f"table name changed from {stored.table!r} to {current.table!r}")
    old = {f.name: f for f in stored.fields}
    new = {f.name: f for f in current.fields}
    for name, f in old.items():
        if name not in new:
            changes.append(f"field {name!r} ({f.type_repr}) was removed")
    for name, f in new.items():
        before = old.get(name)
        if before is None:
            if f.required:
                changes.append(f"new field {name!r} ({f.type_repr}) is required and has no default")
            elif f.default_factory:
                notes.append(
                    f"new field {name!r} ({f.type_repr}) with a default factory: called once "
                    "now, and records stored before the field read the value it returned, "
                    "whatever the factory returns later"
                )
            else:
                notes.append(
                    f"new field {name!r} ({f.type_repr}) with default {f.default!r}: records "
                    "stored before the field read that value, even if the default changes later"
                )
            continue
        if _strip(before.json_schema) != _strip(f.json_schema):
            changes.append(f"field {name!r} changed type from {before.type_repr} to {f.type_repr}")
        elif before.required and not f.required:
            notes.append(
                f"field {name!r} is no longer required ({_default_text(f)}): it applies to "
                "records saved from now on; stored records keep their values"
            )
        elif not before.required and f.required:
            notes.append(
                f"field {name!r} lost its default; records stored without it still hold a value"
            )
        elif (before.has_default, before.default, before.default_factory) != (
            f.has_default,
            f.default,
            f.default_factory,
        ):
            notes.append(
                f"field {name!r} changed from {_default_text(before)} to {_default_text(f)}: "
                "only records saved from now on get the new default; stored records keep "
                "their values"
            )
    if changes:
        raise SchemaChangeError(
            f"the schema of table {table!r} changed incompatibly; nothing was changed on "
            "Discord:\n" + "\n".join(f"  - {c}" for c in changes),
            hint=(
                "give a new field a default, keep removed fields (make them Optional with a "
                "default of None if you no longer use them), keep the old type, or migrate by "
                "exporting the records and importing them into a new table"
            ),
            table=table,
            changes=changes,
        )
    return notes


def _strip(schema: object) -> object:
    """A JSON schema without annotation-only keywords (title, description, examples)."""
    if isinstance(schema, dict):
        out: dict[str, object] = {}
        for k, v in schema.items():
            if k in ("title", "description", "examples"):
                continue
            if k in ("properties", "$defs", "definitions") and isinstance(v, dict):
                out[k] = {name: _strip(sub) for name, sub in v.items()}
            else:
                out[k] = _strip(v)
        return out
    if isinstance(schema, list):
        return [_strip(v) for v in schema]
    return schema
