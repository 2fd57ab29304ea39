"""discobase-cli: the discobase command."""

__version__ = "0.1.0"
