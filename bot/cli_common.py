"""Helpers shared by the CLI subcommands: output, argument types, the error convention.

Convention: a subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``handler=run``, and ``run(args) -> int``. Bad input raises :class:`core.errors.InputError` (or any
``LiqbotError``); :func:`bot.cli.main` prints it as one line on stderr and exits with 2.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson

from core.durations import parse_duration_ms
from core.errors import InputError


def emit_json(obj: Any) -> None:
    """Write ``obj`` as JSON on stdout (numpy scalars and arrays allowed)."""
    sys.stdout.buffer.write(
        orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_INDENT_2) + b"\n"
    )
    sys.stdout.flush()


def duration_ms(text: str) -> int:
    """argparse type: '7d', '12h', '90m', '2w' -> milliseconds."""
    try:
        return parse_duration_ms(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def iso_time_ms(text: str) -> int:
    """argparse type: ISO 8601 time (UTC unless it says otherwise) -> epoch ms."""
    raw = text.strip()
    try:
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid time {text!r}; expected ISO 8601 such as 2026-01-13T22:00Z"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def iso_date(text: str) -> date:
    """argparse type: YYYY-MM-DD -> date."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid date {text!r}; expected YYYY-MM-DD such as 2026-01-13"
        ) from None


def positive_float(text: str) -> float:
    """argparse type: a positive number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def fmt_usd(value: float) -> str:
    """$1.38B, $451.5M, $12.3K, $950 — compact money for tables and chat."""
    sign = "-" if value < 0 else ""
    v = abs(value)
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if v >= scale:
            return (
                f"{sign}${v / scale:,.2f}{unit}"
                if unit == "B"
                else f"{sign}${v / scale:,.1f}{unit}"
            )
    return f"{sign}${v:,.0f}"


def ms_to_iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%MZ")


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a failure never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
