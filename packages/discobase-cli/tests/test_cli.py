"""`discobase version`, `discobase demo` (twice: the data persists) and `discobase emulator`."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from cli_support import GUILD, TOKEN, Emu, cli_command
from typer.testing import CliRunner

from discobase_cli.main import app

WIDE = {"COLUMNS": "200"}  # rich wraps table cells at the terminal's width


def test_version_lists_every_package() -> None:
    result = CliRunner().invoke(app, ["version"])
    assert result.exit_code == 0, result.output
    for dist in ("discobase-core", "discobase-discord", "discobase-emulator", "discobase-cli"):
        assert dist in result.output


def test_demo_keeps_its_data_between_runs_and_reset_starts_over(tmp_path: Path) -> None:
    data = tmp_path / "data"
    args = ["demo", "--records", "20", "--profile", "unlimited", "--data", str(data)]
    runner = CliRunner(env=WIDE)
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "no earlier runs: this is run 1" in first.stdout
    assert "20 bookmarks saved concurrently (run 1)" in first.stdout
    assert "5 of linus's bookmarks deleted" in first.stdout
    assert "reopened: 15 bookmarks from 1 runs" in first.stdout
    assert "Discord API requests in all" in first.stdout
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert "found 1 earlier run(s) and their 15 bookmarks" in second.stdout
    assert "reopened: 30 bookmarks from 2 runs" in second.stdout
    listed = runner.invoke(app, ["tables", "--local", "--data", str(data)])
    assert listed.stdout.splitlines()[1:] == [
        "Bookmark\t30\tuser, url, title, stars, run",
        "DemoRun\t2\tnumber, at, records",
    ]
    again = runner.invoke(app, [*args, "--reset"])
    assert "no earlier runs: this is run 1" in again.stdout
    assert "reopened: 15 bookmarks from 1 runs" in again.stdout


def test_demo_reset_refuses_a_folder_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    result = CliRunner().invoke(app, ["demo", "--reset", "--data", str(tmp_path)])
    assert result.exit_code == 1
    assert "holds files the emulator did not write (notes.txt)" in result.stderr
    assert (tmp_path / "notes.txt").exists()


def test_emulator_runs_in_the_foreground_and_keeps_its_data(tmp_path: Path) -> None:
    command = cli_command(
        "emulator", "--port", "0", "--data", str(tmp_path), "--token", "T", "--guild", "G"
    )
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    try:
        lines = [process.stdout.readline() for _ in range(5)]
        assert "Point a bot at it" in "".join(lines)
        assert "server(s): G" in "".join(lines)
        while "listening on" not in lines[-1]:
            line = process.stdout.readline()
            assert line, "the emulator stopped before listening"
            lines.append(line)
        url = lines[-1].split("listening on", 1)[1].strip()
        env = {"DISCOBASE_TOKEN": "T", "DISCOBASE_GUILD": "G", "DISCOBASE_API_URL": url}
        result = CliRunner(env=env).invoke(app, ["tables"])
        assert result.exit_code == 0, result.stderr
        assert result.stdout == "table\trecords\tfields\n"
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
        process.stdout.close()
    assert (tmp_path / "discord.sqlite3").exists()


def test_demo_with_a_token_runs_on_the_server_given(emu: Emu) -> None:
    """--token/--guild is the path to real Discord; DISCOBASE_API_URL stands it in here."""
    args = ["demo", "--records", "8", "--token", TOKEN, "--guild", GUILD]
    runner = CliRunner(env={**WIDE, "DISCOBASE_API_URL": emu.url})
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert f"running on Discord, in server {GUILD!r}" in first.stdout
    assert "reopened: 6 bookmarks from 1 runs" in first.stdout
    assert "emulator" not in first.stdout
    second = runner.invoke(app, args)
    assert "reopened: 12 bookmarks from 2 runs" in second.stdout
    reset = runner.invoke(app, [*args, "--reset"])  # on Discord: deletes the demo's records
    assert "no earlier runs: this is run 1" in reset.stdout
    assert "reopened: 6 bookmarks from 1 runs" in reset.stdout
    alone = runner.invoke(app, ["demo", "--token", TOKEN])
    assert alone.exit_code == 1
    assert "--token needs --guild" in alone.stderr
