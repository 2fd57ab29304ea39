"""discobase-emulator: a local Discord API server that unmodified discord.py talks to."""

__version__ = "0.1.0"
