"""Structured logs with secrets redacted from every line.

One JSON object per line (``--log-format json``, for collectors) or ``key=value`` text for a
terminal. Every line, exception tracebacks included, passes :func:`redact` last: the values of
the secret environment variables and anything shaped like a Telegram or Discord token become
``[redacted]``, whichever library logged them (python-telegram-bot puts the token in its API
URLs, and httpx logs request URLs).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Iterable
from typing import IO

import orjson

__all__ = ["SECRET_ENV", "RedactingFormatter", "redact", "setup_logging"]

SECRET_ENV = (
    "LIQBOT_TELEGRAM_TOKEN",
    "LIQBOT_DISCORD_TOKEN",
    "LIQBOT_TELEGRAM_WEBHOOK_SECRET",
    "LIQBOT_SOSOVALUE_KEY",
    "LIQBOT_COINGLASS_KEY",
    "PGPASSWORD",
)

# Telegram: <bot id>:<35 chars> (often right after 'bot' in a URL, so no word boundary);
# Discord: three base64url parts joined by dots.
_TOKEN_SHAPES = re.compile(
    r"(?<!\d)\d{5,}:[A-Za-z0-9_-]{30,}|\b[A-Za-z0-9_-]{23,28}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,}"
)
REDACTED = "[redacted]"


def _secrets(names: Iterable[str] = SECRET_ENV) -> list[str]:
    # Short values would redact ordinary words; real secrets are long.
    return sorted(
        {v for n in names if (v := os.environ.get(n, "")) and len(v) >= 8}, key=len, reverse=True
    )


def redact(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` with every secret value and token-shaped string replaced by ``[redacted]``."""
    for value in _secrets() if secrets is None else secrets:
        text = text.replace(value, REDACTED)
    return _TOKEN_SHAPES.sub(REDACTED, text)


class RedactingFormatter(logging.Formatter):
    """JSON or key=value lines, redacted after formatting (so arguments and tracebacks are too)."""

    def __init__(self, json_lines: bool = False) -> None:
        super().__init__()
        self.json_lines = json_lines

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        when = self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z"
        if self.json_lines:
            data = {"ts": when, "level": record.levelname.lower(), "logger": record.name}
            data["msg"] = message
            if record.exc_text:
                data["exc"] = record.exc_text
            line = orjson.dumps(data).decode()
        else:
            line = f"{when} {record.levelname.lower():7} {record.name}: {message}"
            if record.exc_text:
                line += "\n" + record.exc_text
        return redact(line)


def setup_logging(
    level: str = "info", *, json_lines: bool = False, stream: IO[str] | None = None
) -> None:
    """Route every logger to one redacting handler on stderr (or ``stream``), in UTC."""
    handler = logging.StreamHandler(stream or sys.stderr)
    formatter = RedactingFormatter(json_lines)
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Libraries that log every request URL (with the bot token in it) stay at warnings.
    for noisy in (
        "httpx",
        "httpcore",
        "telegram.ext.Updater",
        "discord.http",
        "apscheduler",
        "alembic",
    ):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
