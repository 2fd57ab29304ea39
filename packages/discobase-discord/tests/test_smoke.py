import discobase


def test_version() -> None:
    assert discobase.__version__ == "0.1.0"
