"""`python -m discobase_cli`: the `discobase` command."""

from discobase_cli.main import app

if __name__ == "__main__":
    app(prog_name="discobase")
