import pytest

import discobase_core
from discobase_core import errors
from discobase_core.errors import (
    DatabaseCorruptionError,
    DatabaseStorageError,
    DiscobaseError,
    GuildNotFoundError,
    RecordTooLargeError,
)


def all_error_classes() -> list[type[DiscobaseError]]:
    return [getattr(errors, name) for name in errors.__all__]


def test_every_error_is_exported_and_has_a_unique_code() -> None:
    codes = [cls.code for cls in all_error_classes()]
    assert len(codes) == len(set(codes))
    for cls in all_error_classes():
        assert issubclass(cls, DiscobaseError)
        assert getattr(discobase_core, cls.__name__) is cls


def test_message_hint_and_details() -> None:
    err = RecordTooLargeError("too big", hint="split it", size=3000, limit=2000, table="user")
    assert str(err) == "too big\nHint: split it"
    assert err.details == {"size": 3000, "limit": 2000, "table": "user"}
    assert err.code == "record_too_large"
    assert isinstance(err, DatabaseStorageError)
    assert err.to_dict()["code"] == "record_too_large"
    plain = DatabaseCorruptionError("bad", where="page 1", reason="checksum")
    assert str(plain) == "bad"
    assert plain.hint is None


def test_hierarchy() -> None:
    with pytest.raises(errors.ConnectionFailedError):
        raise GuildNotFoundError("no guild", guild="db", invite_url="https://example")


def test_value_errors_are_also_builtin_errors() -> None:
    # `except ValueError` keeps working for code written against plain pydantic.
    assert issubclass(errors.QueryError, ValueError)
    assert issubclass(errors.InvalidRecordError, ValueError)
    assert issubclass(errors.RecordTooLargeError, ValueError)
    assert issubclass(errors.UnsupportedTypeError, TypeError)
    with pytest.raises(ValueError, match="bad") as info:
        raise errors.QueryError("bad", field="x")
    assert isinstance(info.value, DiscobaseError)
    assert info.value.details == {"field": "x"}
    assert str(info.value) == "bad"
