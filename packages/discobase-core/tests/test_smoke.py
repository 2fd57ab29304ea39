import discobase_core


def test_version() -> None:
    assert discobase_core.__version__ == "0.1.0"
