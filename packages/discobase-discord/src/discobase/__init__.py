"""discobase: use a Discord server as a database."""

__version__ = "0.1.0"
