from typer.testing import CliRunner

from discobase_cli.main import app


def test_version_lists_every_package() -> None:
    result = CliRunner().invoke(app, ["version"])
    assert result.exit_code == 0, result.output
    for dist in ("discobase-core", "discobase-discord", "discobase-emulator", "discobase-cli"):
        assert dist in result.output
