"""Forgiving parsing of command arguments, with errors that say exactly what was wrong.

People type ``1%``, ``0.5 %`` (two tokens), ``50m``, ``$50M``, ``1.2b``, ``1,000,000``, ``btc``,
``BTCUSDT``, ``BTC-USDT-SWAP``, ``30m``/``1h``/``2d``/``1w``, ``23:00-07:00``, ``europe/berlin``.
Each parser returns a canonical value or raises :class:`ArgError` (an ``InputError``) whose
message names the offending token and shows a form that works. Echoed input is cut to
:data:`MAX_ECHO` characters with unprintable characters replaced, so hostile input cannot blow
up or garble a reply; numbers are matched as ASCII only (``re.ASCII``), so odd Unicode digits
are rejected rather than half-understood.
"""

from __future__ import annotations

import functools
import math
import re
import zoneinfo
from collections.abc import Sequence

from alerts.subscriptions import Direction, Side
from core.durations import parse_duration_ms
from core.errors import InputError
from core.feeds.symbols import parse_symbol

__all__ = [
    "AMOUNT_MAX",
    "MAX_ARGS",
    "MAX_ECHO",
    "AmountTooLarge",
    "ArgError",
    "is_off",
    "is_pct",
    "looks_numeric",
    "normalize_args",
    "parse_amount",
    "parse_direction",
    "parse_duration",
    "parse_id",
    "parse_int",
    "parse_pct",
    "parse_quiet_range",
    "parse_side",
    "parse_symbol_arg",
    "parse_timezone",
    "parse_venue",
    "shown",
]

MAX_ECHO = 20  # characters of user input quoted back in a message
MAX_ARGS = 12  # no command takes more; more is a paste gone wrong
# $1 quadrillion: beyond any market. Larger values only lose digits (a float prints
# 999999999999b as $999,999,999,999,000,051,712) and read back as no valid command line.
AMOUNT_MAX = 1e15
_MAX_TOKEN = 40  # longer tokens are rejected before any regex looks at them

_ASCII = re.ASCII | re.IGNORECASE
_PCT = re.compile(r"^([0-9]+(?:\.[0-9]+)?|\.[0-9]+)\s*%$", _ASCII)
_AMOUNT = re.compile(
    r"^\$?\s*([0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?|[0-9]+(?:\.[0-9]+)?|\.[0-9]+)\s*"
    r"(k|m|mn|mm|b|bn)?\s*(?:\$|usd)?$",
    _ASCII,
)
_SCALE = {"": 1.0, "k": 1e3, "m": 1e6, "mn": 1e6, "mm": 1e6, "b": 1e9, "bn": 1e9}
_NUMERIC = re.compile(r"^[$+]?[0-9.,]", re.ASCII)
_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*(m|min|mins|h|hr|hrs|d|w)$", _ASCII)
_DURATION_UNIT = {"min": "m", "mins": "m", "hr": "h", "hrs": "h"}
_CLOCK = r"([0-9]{1,2})(?::([0-9]{2}))?"
_QUIET = re.compile(rf"^{_CLOCK}\s*(?:-|to|–|—)\s*{_CLOCK}$", _ASCII)
_TZ = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(?:/[A-Za-z0-9_+\-]+){0,2}$", re.ASCII)
_ID = re.compile(r"^#?([0-9]{1,12})$", re.ASCII)

_SIDES: dict[str, Side] = {
    "long": "long",
    "longs": "long",
    "short": "short",
    "shorts": "short",
    "any": "any",
    "both": "any",
    "either": "any",
}
_DIRECTIONS: dict[str, Direction] = {
    "up": "up",
    "above": "up",
    "down": "down",
    "below": "down",
    "any": "any",
    "either": "any",
    "both": "any",
}


class ArgError(InputError):
    """Bad arguments; ``usage`` overrides the command's usage line in the reply (e.g. the
    usage of one ``/alert`` kind rather than of ``/alert`` as a whole)."""

    def __init__(self, message: str, usage: str | None = None) -> None:
        super().__init__(message)
        self.usage = usage


class AmountTooLarge(ArgError):
    """An amount that reads fine but is beyond :data:`AMOUNT_MAX` (callers that rephrase
    "not an amount" errors pass this one on as it is)."""


def shown(text: str) -> str:
    """User input as it may appear in a reply: at most :data:`MAX_ECHO` characters,
    unprintable ones replaced by '?', and '(empty)' for nothing."""
    cleaned = "".join(c if c.isprintable() else "?" for c in text[: MAX_ECHO + 1].strip())
    if not cleaned:
        return "(empty)"
    return cleaned if len(cleaned) <= MAX_ECHO else cleaned[:MAX_ECHO] + "…"


def normalize_args(args: Sequence[str]) -> list[str]:
    """Arguments with a lone ``%`` joined to the number before it (``0.5 %`` -> ``0.5%``) and a
    lone ``$`` to the number after it; empty tokens dropped. Too many is an error."""
    if len(args) > MAX_ARGS:
        raise ArgError(f"Too many arguments ({len(args)}); no command takes more than {MAX_ARGS}.")
    out: list[str] = []
    pending_dollar = False
    for raw in args:
        tok = raw.strip()
        if not tok:
            continue
        if tok == "%" and out and looks_numeric(out[-1]):
            out[-1] += "%"
        elif tok == "$":
            pending_dollar = True
        else:
            out.append("$" + tok if pending_dollar else tok)
            pending_dollar = False
    if pending_dollar:  # a '$' with nothing after it: keep it, so it is refused, not ignored
        out.append("$")
    return out


def looks_numeric(text: str) -> bool:
    """True when ``text`` starts like a number (``50m``, ``$1.2B``, ``1%``, ``.5``)."""
    return bool(_NUMERIC.match(text))


def is_pct(text: str) -> bool:
    return len(text) <= _MAX_TOKEN and bool(_PCT.match(text))


def parse_pct(text: str) -> float:
    """``'1%'`` -> 1.0; ``'0.5%'`` -> 0.5."""
    m = _PCT.match(text) if len(text) <= _MAX_TOKEN else None
    if m is None:
        raise ArgError(f"'{shown(text)}' is not a percentage; try 1% or 0.5%")
    value = float(m.group(1))
    if not 0 < value <= 100:
        raise ArgError(f"'{shown(text)}' is out of range; a percentage here is above 0 and <= 100")
    return value


def parse_amount(text: str) -> float:
    """US dollars: ``50m`` -> 5e7, ``$1.2B`` -> 1.2e9, ``250k``, ``1,000,000``, ``96000``."""
    m = _AMOUNT.match(text.strip()) if len(text) <= _MAX_TOKEN else None
    if m is None:
        raise ArgError(f"'{shown(text)}' is not an amount; try 50m or $1.2B")
    value = float(m.group(1).replace(",", "")) * _SCALE[(m.group(2) or "").lower()]
    if not (math.isfinite(value) and value > 0):
        raise ArgError(f"'{shown(text)}' is not a positive amount; try 50m or $1.2B")
    if value > AMOUNT_MAX:
        raise AmountTooLarge(f"'{shown(text)}' is too large; amounts here are at most 1000000b")
    return value


def parse_duration(text: str, *, what: str = "duration") -> int:
    """``30m``/``1h``/``2d``/``1w`` (also ``90 min``, ``2hrs``) -> milliseconds."""
    m = _DURATION.match(text.strip()) if len(text) <= _MAX_TOKEN else None
    bad = f"'{shown(text)}' is not a {what}; try 30m, 1h, 2d or 1w"
    if m is None:
        raise ArgError(bad)
    unit = m.group(2).lower()
    try:
        ms = parse_duration_ms(m.group(1) + _DURATION_UNIT.get(unit, unit))
    except InputError:  # zero, or a fraction that rounds to nothing
        raise ArgError(bad) from None
    if ms % 60_000:  # nothing here is finer than a minute, and every reply says whole minutes
        raise ArgError(f"'{shown(text)}' is not a whole number of minutes; try 30m or 1h")
    return ms


def parse_symbol_arg(text: str, symbols: Sequence[str]) -> str:
    """The canonical symbol of ``text`` among the configured ``symbols`` (``btc``, ``BTCUSDT``,
    ``BTC-USDT-SWAP`` -> ``BTC``); the error lists the configured ones."""
    base: str | None = None
    if len(text) <= _MAX_TOKEN:
        try:
            base = parse_symbol(text, known_only=False)
        except InputError:
            base = None
    if base is None or base not in symbols:
        raise ArgError(f"Unknown symbol {shown(text).upper()}. Try {', '.join(symbols)}.")
    return base


def parse_venue(text: str, venues: Sequence[str]) -> str | None:
    """``'binance'`` -> 'binance', ``'all'`` -> 'all'; None when ``text`` is no venue word.

    A known venue that is not configured here is an error naming the configured ones.
    """
    low = text.lower()
    if low in ("all", "combined"):
        return "all"
    if low in venues:
        return low
    if low in ("binance", "okx", "bybit"):
        raise ArgError(f"Venue {low} is not watched here; try {', '.join(venues)} or all")
    return None


def parse_side(text: str) -> Side | None:
    """long/longs, short/shorts, any/both/either; None for another word."""
    return _SIDES.get(text.lower())


def parse_direction(text: str) -> Direction | None:
    """up/above, down/below, any/either/both; None for another word."""
    return _DIRECTIONS.get(text.lower())


def parse_int(text: str, lo: int, hi: int, what: str) -> int:
    """A whole number within ``lo..hi`` (a trailing ``d`` is allowed: ``10d``)."""
    raw = text.strip().lower().removesuffix("d") if len(text) <= _MAX_TOKEN else ""
    if not raw.isascii() or not raw.isdigit():
        raise ArgError(f"'{shown(text)}' is not a number of {what}; give {lo} to {hi}")
    value = int(raw)
    if not lo <= value <= hi:
        raise ArgError(f"{value} {what} is out of range; give {lo} to {hi}")
    return value


def parse_id(text: str) -> int:
    """An alert id: ``12`` or ``#12``."""
    m = _ID.match(text.strip()) if len(text) <= _MAX_TOKEN else None
    if m is None:
        raise ArgError(f"'{shown(text)}' is not an alert id; /alerts lists them (e.g. 12)")
    return int(m.group(1))


def parse_quiet_range(text: str) -> tuple[int, int]:
    """``'23:00-07:00'`` (also ``23-7``, ``22:30 to 6:45``) -> (start, end) minutes of the day."""
    m = _QUIET.match(text.strip()) if len(text) <= _MAX_TOKEN else None
    bad = f"'{shown(text)}' is not a time range; try 23:00-07:00"
    if m is None:
        raise ArgError(bad)
    h1, m1, h2, m2 = (int(g) if g else 0 for g in m.groups())
    if not (h1 < 24 and h2 < 24 and m1 < 60 and m2 < 60):
        raise ArgError(bad)
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        raise ArgError("Quiet hours need a start and an end that differ, e.g. 23:00-07:00")
    return start, end


@functools.cache
def _zones() -> dict[str, str]:
    """Lower-case IANA name -> its proper spelling (read once from the tz database)."""
    return {name.lower(): name for name in zoneinfo.available_timezones()}


def parse_timezone(text: str) -> str:
    """An IANA time zone, matched without regard to case: ``europe/berlin`` -> Europe/Berlin."""
    raw = text.strip()
    name = _zones().get(raw.lower()) if len(raw) <= _MAX_TOKEN and _TZ.match(raw) else None
    if name is None:
        raise ArgError(
            f"Unknown time zone '{shown(text)}'; use an IANA name such as Europe/Berlin, "
            "America/New_York or UTC"
        )
    return name


def is_off(text: str) -> bool:
    """``off``, ``none``, ``stop``: the word that turns a setting off."""
    return text.lower() in ("off", "none", "stop", "clear")
