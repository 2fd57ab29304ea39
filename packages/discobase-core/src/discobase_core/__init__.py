"""discobase-core: the pure storage engine of discobase (no I/O, no clock, no event loop)."""

__version__ = "0.1.0"
