"""Errors raised by core/.

Every error carries a plain-text message a person can act on (no markdown), so the CLI and the
chat adapters can show it as it is::

    LiqbotError
    ├── InputError            bad input from a person or a file: fix the input and retry
    │   ├── BarsFormatError   a bar CSV is malformed (names the file, line and column)
    │   ├── FlowsFormatError  an ETF flows file is malformed
    │   └── ConfigError       config.yaml is malformed (names the key)
    └── DataError             the data cannot support the request (too short, no OI, ...)
"""

from __future__ import annotations


class LiqbotError(Exception):
    """Base of every error liqbot raises on purpose."""


class InputError(LiqbotError):
    """Bad input: a person or a file must change before this can work."""


class BarsFormatError(InputError):
    """A canonical bar CSV is malformed."""

    def __init__(self, path: str, line: int | None, column: str | None, expected: str) -> None:
        where = path
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column '{column}'"
        super().__init__(f"{where}: {expected}")
        self.path = path
        self.line = line
        self.column = column
        self.expected = expected


class FlowsFormatError(InputError):
    """An ETF flows file (JSON or CSV) is malformed."""


class ConfigError(InputError):
    """config.yaml is malformed or names an unknown value."""


class DataError(LiqbotError):
    """The data is well-formed but cannot answer the request."""
