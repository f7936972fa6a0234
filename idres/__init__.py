"""The composition root: configuration, the command line, and (later) node assembly."""

__version__ = "0.1.0"
