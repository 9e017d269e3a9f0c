"""Checks shared by the venue parsers: numbers, timestamps, shapes, ordering, range paging.

Two styles, by where they run:

* Hot-path primitives (:func:`positive`, :func:`non_negative`, :func:`finite`,
  :func:`epoch_ms`) raise ``TypeError`` / ``ValueError`` with a short reason; the venue parser
  catches them once per item and raises :class:`~core.feeds.errors.JunkResponse` naming the
  item. Exact class checks, no ``isinstance`` chains: they run for every websocket event.
* :class:`Fields` raises :class:`~core.feeds.errors.JunkResponse` itself, with the field named
  in the message (``"klines[3] high is not a number: 'abc'"``); for REST payloads, where a
  precise message beats a few nanoseconds.

Numbers may come as JSON numbers or numeric strings (venues send both); booleans never pass.
Timestamps are epoch milliseconds within 2000..2100, so seconds or microseconds are caught.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from typing import Any, Protocol, TypeVar

from core.errors import InputError
from core.feeds.errors import JunkResponse

MIN_MS, MAX_MS = 946_684_800_000, 4_102_444_800_000  # 2000-01-01 .. 2100-01-01, epoch ms
_INF = float("inf")


# --- hot-path primitives: TypeError / ValueError, the caller names the item ----------------------


def positive(value: Any) -> float:
    """A finite number > 0."""
    cls = value.__class__
    if cls is not str and cls is not float and cls is not int:
        raise TypeError(f"expected a number string, got {cls.__name__}")
    x = float(value)
    if not 0.0 < x < _INF:
        raise ValueError(f"not a positive finite number: {value!r}")
    return x


def non_negative(value: Any) -> float:
    """A finite number >= 0."""
    return finite(value, 0.0)


def finite(value: Any, low: float = -_INF) -> float:
    """A finite number >= ``low``."""
    cls = value.__class__
    if cls is not str and cls is not float and cls is not int:
        raise TypeError(f"expected a number string, got {cls.__name__}")
    x = float(value)
    if not low <= x < _INF:
        bound = f" >= {low:g}" if low > -_INF else ""
        raise ValueError(f"not a finite number{bound}: {value!r}")
    return x


def epoch_ms(value: Any) -> int:
    """Epoch milliseconds sent as an integer or a digit string."""
    cls = value.__class__
    if cls is not str and cls is not int:
        raise TypeError(f"expected epoch ms, got {cls.__name__}")
    ms = int(value)
    if not MIN_MS <= ms < MAX_MS:
        raise ValueError(f"not a plausible epoch-ms timestamp: {value!r}")
    return ms


def funding_per_8h(rate: float, interval_hours: float) -> float:
    """A funding rate paid every ``interval_hours``, expressed per 8 hours (our one unit)."""
    if not (math.isfinite(interval_hours) and interval_hours > 0):
        raise ValueError(f"funding interval must be a positive number of hours: {interval_hours}")
    return rate * 8.0 / interval_hours


# --- checks that name the field and raise JunkResponse ------------------------------------------


class Fields:
    """Field checks for one venue; every failure is ``JunkResponse(venue, "<where> ...")``."""

    __slots__ = ("venue",)

    def __init__(self, venue: str) -> None:
        self.venue = venue

    def junk(self, message: str) -> JunkResponse:
        return JunkResponse(self.venue, message)

    def number(self, value: Any, where: str) -> float:
        """A finite number, sent as a string or a JSON number (not a boolean)."""
        if isinstance(value, str):
            try:
                x = float(value)
            except ValueError:
                raise self.junk(f"{where} is not a number: {value[:40]!r}") from None
        elif isinstance(value, int | float) and not isinstance(value, bool):
            x = float(value)
        else:
            raise self.junk(f"{where} should be a number string, got {type(value).__name__}")
        if not math.isfinite(x):
            raise self.junk(f"{where} is not finite: {value!r}")
        return x

    def non_negative(self, value: Any, where: str) -> float:
        x = self.number(value, where)
        if x < 0:
            raise self.junk(f"{where} is negative: {x}")
        return x

    def epoch_ms(self, value: Any, where: str) -> int:
        """Epoch milliseconds, sent as an integer (live) or a digit string (old docs)."""
        if isinstance(value, int) and not isinstance(value, bool):
            ms = value
        elif isinstance(value, str) and value.isascii() and value.isdigit():
            ms = int(value)
        else:
            raise self.junk(f"{where} should be epoch milliseconds, got {value!r:.40}")
        if not MIN_MS <= ms < MAX_MS:
            raise self.junk(f"{where} is not a plausible epoch-ms timestamp: {ms}")
        return ms

    def get(self, row: Mapping[str, Any], key: str, where: str) -> Any:
        try:
            return row[key]
        except KeyError:
            raise self.junk(f"{where}: missing field '{key}'") from None

    def typed(self, payload: Any, kind: type, what: str) -> Any:
        """``payload`` if it is a ``kind`` (dict, list)."""
        if not isinstance(payload, kind):
            raise self.junk(
                f"{what}: expected a JSON {kind.__name__}, got {type(payload).__name__}"
            )
        return payload

    def rows(self, payload: Any, kind: type, what: str) -> list[Any]:
        """``payload`` if it is a list whose every row is a ``kind``."""
        rows: list[Any] = self.typed(payload, list, what)
        for i, row in enumerate(rows):
            if not isinstance(row, kind):
                raise self.junk(f"{what}[{i}]: expected {kind.__name__}, got {type(row).__name__}")
        return rows


# --- ordering -------------------------------------------------------------------------------------


class _Stamped(Protocol):
    @property
    def ts_ms(self) -> int: ...


_T = TypeVar("_T", bound=_Stamped)


def oldest_first(items: list[_T], venue: str, what: str) -> list[_T]:
    """``items`` sorted by time, in place; a repeated timestamp is a broken answer, not two rows."""
    items.sort(key=lambda item: item.ts_ms)
    for prev, cur in itertools.pairwise(items):
        if prev.ts_ms == cur.ts_ms:
            raise JunkResponse(venue, f"{what}: timestamp {cur.ts_ms} appears twice")
    return items


# --- range paging ---------------------------------------------------------------------------------


def span(
    now_ms: int,
    step_ms: int,
    start_ms: int | None,
    end_ms: int | None,
    limit: int | None,
    default_limit: int,
    *,
    closed_only: bool = False,
) -> tuple[int, int]:
    """Open times [first, last] of the bars a klines/OI call asks for.

    No start: the latest ``limit`` bars up to ``end_ms`` (default now). With a start: bars
    from ``start_ms`` on, at most ``limit`` of them when given (Binance's semantics).
    ``closed_only``: the bar still forming at ``now_ms`` is not asked for (a bar is closed
    once its interval has passed, so the newest closed one opened a step ago).
    """
    if closed_only:
        now_ms -= step_ms
    if limit is not None and limit < 1:
        raise InputError(f"limit must be at least 1, got {limit}")
    if start_ms is not None and end_ms is not None and start_ms > end_ms:
        raise InputError(f"start {start_ms} is after end {end_ms}")
    last = now_ms // step_ms * step_ms
    if end_ms is not None:
        last = min(last, end_ms // step_ms * step_ms)
    if start_ms is None:
        return last - ((limit or default_limit) - 1) * step_ms, last
    first = -(-start_ms // step_ms) * step_ms
    if limit is not None:
        last = min(last, first + (limit - 1) * step_ms)
    return first, last


def chunks(lo: int, hi: int, step_ms: int, size: int) -> Iterator[tuple[int, int]]:
    """[lo, hi] split into ranges of at most ``size`` bars, newest first."""
    while hi >= lo:
        start = max(lo, hi - (size - 1) * step_ms)
        yield start, hi
        hi = start - step_ms
