"""Self-describing tables: the schema stored with each table, and change detection.

The stored schema holds, per field, its JSON schema (pydantic's, validation mode), whether
it is required, its default (as JSON) and a readable type, so a tool can read a table
without the Python class.

Allowed changes (``check_compatible`` returns a note for each):

- a new field WITH a default: records written before it read with the default;
- a field that gained a default (was required).

Incompatible changes (``SchemaChangeError``; nothing is changed on Discord):

- a removed field (its stored values would be silently dropped);
- a new required field without a default (old records cannot be read);
- a field whose type changed (JSON schema differs; old values may not validate).
"""

from __future__ import annotations

import json
import typing
from typing import Any

import pydantic
from pydantic_core import PydanticSerializationError, PydanticUndefined, to_jsonable_python

from discobase_core.codec import FORMAT_VERSION
from discobase_core.errors import DatabaseCorruptionError, SchemaChangeError
from discobase_core.hashing import _type_repr

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
                try:
                    default = to_jsonable_python(info.default)
                except (TypeError, ValueError, PydanticSerializationError):
                    default = repr(info.default)
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
        return cls(table=table, fields=fields, format_version=FORMAT_VERSION)

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
            else:
                shown = "a default factory" if f.default_factory else f"default {f.default!r}"
                notes.append(
                    f"new field {name!r} ({f.type_repr}) with {shown}: "
                    "records stored before it read with the default"
                )
            continue
        if _strip(before.json_schema) != _strip(f.json_schema):
            changes.append(f"field {name!r} changed type from {before.type_repr} to {f.type_repr}")
        elif before.required and not f.required:
            notes.append(f"field {name!r} is no longer required (it has a default now)")
        elif not before.required and f.required:
            notes.append(
                f"field {name!r} lost its default; records stored without it still hold a value"
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
