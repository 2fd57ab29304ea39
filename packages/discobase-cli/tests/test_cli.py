from typer.testing import CliRunner

from discobase_cli.main import app


def test_version_lists_every_package() -> None:
    result = CliRunner().invoke(app, ["version"])
    assert result.exit_code == 0, result.output
    for dist in ("discobase-core", "discobase-discord", "discobase-emulator", "discobase-cli"):
        assert dist in result.output


def test_demo_runs_end_to_end_on_the_embedded_emulator() -> None:
    result = CliRunner().invoke(app, ["demo", "--records", "20", "--profile", "unlimited"])
    assert result.exit_code == 0, result.output
    assert "reopened: 20 bookmarks" in result.output
    assert "0 rate-limited" in result.output
