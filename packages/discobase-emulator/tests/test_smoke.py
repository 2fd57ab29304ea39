import discobase_emulator


def test_version() -> None:
    assert discobase_emulator.__version__ == "0.1.0"
