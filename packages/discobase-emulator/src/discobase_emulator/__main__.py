"""Entry point for `python -m discobase_emulator` and the `discobase-emulator` script."""

from __future__ import annotations

from .cli import build_parser, main, serve

__all__ = ["build_parser", "main", "serve"]

if __name__ == "__main__":
    raise SystemExit(main())
