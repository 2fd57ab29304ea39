"""Records of generated models (random field types, names and aliases) read back equal, and
every field's query key equals the key its record is indexed under: what a find relies on."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pydantic
from core_models import Color, Level
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import AliasChoices, BaseModel, Field

from discobase_core.codec import RecordCodec
from discobase_core.hashing import FieldHasher, canonical_bytes

Typed = tuple[Any, st.SearchStrategy[Any]]  # (annotation, strategy of its values)

offsets = st.timedeltas(
    min_value=-dt.timedelta(hours=23, minutes=59, seconds=59),
    max_value=dt.timedelta(hours=23, minutes=59, seconds=59),
)
zones = st.none() | st.builds(dt.timezone, offsets)
HASHABLE: list[Typed] = [
    (str, st.text(max_size=8)),
    (int, st.integers() | st.builds(lambda a, e: a * 10**e, st.integers(), st.integers(0, 900))),
    (bool, st.booleans()),
    (bytes, st.binary(max_size=8)),
    (dt.datetime, st.datetimes(timezones=zones)),
    (dt.date, st.dates()),
    (dt.time, st.times(timezones=zones)),
    (uuid.UUID, st.uuids()),
    (Decimal, st.decimals(allow_nan=False, allow_infinity=False, places=3)),
    (Color, st.sampled_from(Color)),
    (Level, st.sampled_from(Level)),
    (tuple[int, str], st.tuples(st.integers(), st.text(max_size=3))),
]
LEAVES: list[Typed] = [*HASHABLE, (float, st.floats()), (None, st.none())]


# Annotations built at run time: typed as Any so that mypy does not read them as types.
List: Any = list
Tuple: Any = tuple
Set: Any = set
FrozenSet: Any = frozenset
Dict: Any = dict


def containers(inner: st.SearchStrategy[Typed]) -> st.SearchStrategy[Typed]:
    hashable = st.sampled_from(HASHABLE)
    return st.one_of(
        inner.map(lambda t: (List[t[0]], st.lists(t[1], max_size=3))),
        inner.map(lambda t: (Tuple[t[0], ...], st.lists(t[1], max_size=3).map(tuple))),
        inner.map(lambda t: (None if t[0] is None else t[0] | None, st.none() | t[1])),
        hashable.map(lambda t: (FrozenSet[t[0]], st.frozensets(t[1], max_size=3))),
        hashable.map(lambda t: (Set[t[0]], st.sets(t[1], max_size=3))),
        st.tuples(hashable, inner).map(
            lambda kv: (
                Dict[kv[0][0], kv[1][0]],
                st.dictionaries(kv[0][1], kv[1][1], max_size=3),
            )
        ),
        inner.map(nested),
    )


def nested(t: Typed) -> Typed:
    """A nested model with one aliased field of type ``t[0]``."""
    model = pydantic.create_model("Nested", inner_value=(t[0], Field(alias="Inner Value")))
    return model, t[1].map(lambda v: {"inner_value": v})


typed = st.recursive(st.sampled_from(LEAVES), containers, max_leaves=4)
NAMES = ["имя", "名前", "größe", "key_name", "value", "x", "when", "n"]
ALIASES: list[dict[str, Any]] = [
    {},
    {"alias": "Some Alias"},
    {"validation_alias": AliasChoices("first", "second")},
    {"serialization_alias": "Out"},
]


@settings(max_examples=150)
@given(st.data())
def test_generated_records_read_back_and_hash_alike(data: st.DataObject) -> None:
    names = data.draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    fields: dict[str, Any] = {}
    values: dict[str, Any] = {}
    for name in names:
        annotation, strategy = data.draw(typed)
        alias = data.draw(st.sampled_from(ALIASES))
        fields[name] = (annotation, Field(**alias))
        values[name] = data.draw(strategy)
    model: type[BaseModel] = pydantic.create_model("Generated", **fields)
    record = model.model_validate(values, by_name=True, by_alias=False)
    codec = RecordCodec(model)
    back = codec.decode(codec.encode(record), where="m")
    hasher = FieldHasher(model)
    keys = hasher.keys(record)
    assert hasher.keys(back) == keys
    for name in names:
        assert canonical_bytes(getattr(back, name)) == canonical_bytes(getattr(record, name))
        assert hasher.key(name, getattr(back, name)) == keys[name]
