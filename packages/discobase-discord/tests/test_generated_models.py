"""Every acknowledged write is readable, exactly once, whatever the model.

Hypothesis generates table models (field names in any script and names that need aliases,
every kind of alias, defaults and default factories, every supported type, nested models)
and records for them, saves the records through a Database on the emulator, opens the
server again with a NEW Database object, and finds every record by every one of its fields
and reads it back equal.
"""

from __future__ import annotations

import copy
import datetime as dt
import enum
import itertools
import uuid
from decimal import Decimal
from typing import Any, Literal

import pydantic
from discobase_test_support import GUILD, TOKEN
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

import discobase
from discobase_core.hashing import canonical_bytes
from discobase_emulator import Emulator


class Mood(enum.Enum):
    HAPPY = "happy"
    SAD = "sad"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Point(BaseModel):
    """A nested model whose fields need aliases of their own."""

    model_config = ConfigDict(alias_generator=to_camel)
    x_value: int
    label_text: str = Field(alias="Label Text")


offsets = st.timedeltas(
    min_value=-dt.timedelta(hours=23, minutes=59, seconds=59),
    max_value=dt.timedelta(hours=23, minutes=59, seconds=59),
)
zones = st.none() | st.builds(dt.timezone, offsets)
decimals = st.decimals(
    allow_nan=False, allow_infinity=False, min_value=-(10**30), max_value=10**30
) | st.sampled_from([Decimal("1e4300"), Decimal("-1.000e-4290")])
huge_ints = st.builds(lambda a, e: a * 10**e, st.integers(), st.integers(0, 5000))

# (annotation, strategy of its values)
TYPES: list[tuple[Any, st.SearchStrategy[Any]]] = [
    (str, st.text()),
    (int, st.integers() | huge_ints),
    (float, st.floats()),
    (bool, st.booleans()),
    (None, st.none()),
    (int | None, st.none() | st.integers()),
    (bytes, st.binary()),
    (dt.datetime, st.datetimes(timezones=zones)),
    (dt.date, st.dates()),
    (dt.time, st.times(timezones=zones)),
    (uuid.UUID, st.uuids()),
    (
        Decimal,
        st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**30), max_value=10**30),
    ),
    (Mood, st.sampled_from(Mood)),
    (Level, st.sampled_from(Level)),
    (Literal[Mood.HAPPY], st.just(Mood.HAPPY)),
    (Literal["a", 1], st.sampled_from(["a", 1])),
    (list[int], st.lists(st.integers(), max_size=4)),
    (tuple[int, str], st.tuples(st.integers(), st.text(max_size=5))),
    (tuple[bytes, ...], st.lists(st.binary(max_size=5), max_size=3).map(tuple)),
    (set[str], st.sets(st.text(max_size=5), max_size=4)),
    (frozenset[int], st.frozensets(st.integers(), max_size=4)),
    (dict[str, float], st.dictionaries(st.text(max_size=5), st.floats(), max_size=3)),
    (dict[int, str], st.dictionaries(st.integers(), st.text(max_size=5), max_size=3)),
    (
        dict[tuple[int, int], list[str]],
        st.dictionaries(
            st.tuples(st.integers(), st.integers()), st.lists(st.text(max_size=3)), max_size=3
        ),
    ),
    (Point, st.builds(lambda x, t: {"x_value": x, "label_text": t}, st.integers(), st.text())),
    (list[Point], st.lists(st.builds(lambda x: {"x_value": x, "label_text": ""}, st.integers()))),
]
NAMES = ["имя", "名前", "größe", "key_name", "value", "data", "when", "n2", "étiquette", "x"]
ALIASES = ["none", "alias", "validation_alias", "choices", "serialization_alias"]
DEFAULTS = ["required", "default", "factory"]
GENERATORS: dict[str, Any] = {"none": None, "camel": to_camel, "upper": str.upper}

_numbers = itertools.count()


@st.composite
def table_specs(draw: st.DrawFn) -> dict[str, Any]:
    """A model (fields with types, aliases and defaults) and a few records' values."""
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=5, unique=True))
    fields: list[dict[str, Any]] = []
    for name in names:
        kind = draw(st.integers(0, len(TYPES) - 1))
        values = TYPES[kind][1]
        default = draw(st.sampled_from(DEFAULTS))
        fields.append(
            {
                "name": name,
                "kind": kind,
                "alias": draw(st.sampled_from(ALIASES)),
                "default": default,
                "default_value": draw(values) if default != "required" else None,
            }
        )
    records = []
    for _ in range(draw(st.integers(1, 3))):
        record: dict[str, Any] = {}
        for spec in fields:
            if spec["default"] != "required" and draw(st.booleans()):
                continue  # leave it to the default
            record[spec["name"]] = draw(TYPES[spec["kind"]][1])
        records.append(record)
    return {
        "fields": fields,
        "generator": draw(st.sampled_from(sorted(GENERATORS))),
        "records": records,
    }


def build_model(spec: dict[str, Any], class_name: str) -> type[discobase.Table]:
    """The table class `spec` describes (built afresh for each Database)."""
    definitions: dict[str, Any] = {}
    for field in spec["fields"]:
        name = field["name"]
        annotation = TYPES[field["kind"]][0]
        options: dict[str, Any] = {}
        alias = field["alias"]
        if alias == "alias":
            options["alias"] = f"{name} Alias!"
        elif alias == "validation_alias":
            options["validation_alias"] = f"in {name}"
        elif alias == "choices":
            options["validation_alias"] = AliasChoices(f"first {name}", f"second {name}")
        elif alias == "serialization_alias":
            options["serialization_alias"] = f"out {name}"
        if field["default"] == "default":
            options["default"] = field["default_value"]
            options["validate_default"] = True
        elif field["default"] == "factory":
            value = field["default_value"]
            options["default_factory"] = lambda value=value: copy.deepcopy(value)
            options["validate_default"] = True
        definitions[name] = (annotation, Field(**options))
    generator = GENERATORS[spec["generator"]]
    base: type[discobase.Table] = discobase.Table
    if generator is not None:
        base = type(
            "GeneratedBase",
            (discobase.Table,),
            {"model_config": ConfigDict(alias_generator=generator, validate_assignment=True)},
        )
    return pydantic.create_model(class_name, __base__=base, **definitions)


def fields_of(record: BaseModel) -> dict[str, bytes]:
    return {name: canonical_bytes(value) for name, value in record.__dict__.items()}


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(spec=table_specs())
async def test_generated_models_round_trip(emu: Emulator, spec: dict[str, Any]) -> None:
    class_name = f"Generated{next(_numbers)}"
    writer_model = build_model(spec, class_name)
    db = discobase.Database(GUILD, api_url=emu.url, guild_ready_timeout=0.1)
    db.table(writer_model)
    saved: list[dict[str, bytes]] = []
    async with db.conn(TOKEN):
        for values in spec["records"]:
            record = writer_model.model_validate(values, by_name=True, by_alias=False)
            await record.save()
            saved.append(fields_of(record))

    reader_model = build_model(spec, class_name)
    again = discobase.Database(GUILD, api_url=emu.url, guild_ready_timeout=0.1)
    again.table(reader_model)
    async with again.conn(TOKEN):
        everything = await reader_model.find()
        assert [fields_of(r) for r in everything] == saved
        for record, want in zip(everything, saved, strict=True):
            assert type(record) is reader_model
            for name, value in record.__dict__.items():
                found = await reader_model.find(**{name: value})
                assert want in [fields_of(r) for r in found], name
                assert sum(1 for r in found if r.disco_id == record.disco_id) == 1
