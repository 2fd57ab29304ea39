"""Table schemas used across the core's tests."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Address(BaseModel):
    street: str
    number: int


class User(BaseModel):
    name: str
    email: str
    age: int
    bio: str


class Everything(BaseModel):
    model_config = ConfigDict(ser_json_inf_nan="constants")

    s: str
    i: int
    f: float
    b: bool
    n: None = None
    opt: str | None = None
    raw: bytes
    when: dt.datetime
    day: dt.date
    clock: dt.time
    uid: uuid.UUID
    dec: Decimal
    color: Color
    level: Level
    pair: tuple[int, str]
    items: list[int]
    mapping: dict[str, int]
    tags: set[str]
    frozen: frozenset[int]
    address: Address
    lit: Literal["a", "b"]
    short: Annotated[str, Field(max_length=20)] = ""
    union: int | str = 0
