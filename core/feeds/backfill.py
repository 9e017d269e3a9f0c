"""Backfill and incremental polling: venue history -> canonical bars.

``backfill`` pages through a venue's klines and open-interest history (politely: every request
goes through the venue's HttpClient budget) and joins them into :class:`core.bars.Bars`.
``IncrementalPoller`` is the per-tick version: it asks only for bars after the last one it has.
Both use only the :class:`core.feeds.base.RestFeed` protocol, so every venue works the same.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from core.bars import Bars, make_bars
from core.durations import parse_duration_ms
from core.errors import DataError, InputError
from core.feeds.base import LimitedOiHistory, RestFeed
from core.feeds.staleness import Freshness
from core.feeds.types import Kline, OpenInterest

_T = TypeVar("_T")

# (what, pages done, pages expected): progress for a person watching a long backfill.
Progress = Callable[[str, int, int], None]


def _no_progress(what: str, done: int, total: int) -> None:
    return None


def interval_ms(interval: str) -> int:
    """'5m' -> 300000. Only m/h/d units, as venues name their bars."""
    if not interval or interval[-1] not in "mhd":
        raise InputError(f"invalid interval {interval!r}; expected e.g. 1m, 5m, 1h or 1d")
    return parse_duration_ms(interval)


async def _paged(
    fetch: Callable[[int, int], Awaitable[list[_T]]],
    stamp: Callable[[_T], int],
    first: int,
    last: int,
    step: int,
    per_page: int,
    label: str,
    progress: Progress,
) -> list[_T]:
    """Rows stamped in [first, last], oldest first: ``fetch(cursor, per_page)`` page by page.

    A venue may send fewer rows than asked, or rows outside the range; the cursor moves past the
    last row kept, and an empty page ends the walk (listing start, or nothing more in range).
    """
    pages = max(1, -(-(last - first + 1) // (step * per_page)))
    out: list[_T] = []
    cursor, done = first, 0
    while cursor <= last:
        page = [row for row in await fetch(cursor, per_page) if cursor <= stamp(row) <= last]
        done += 1
        progress(label, min(done, pages), pages)
        if not page:
            break
        out.extend(page)
        cursor = stamp(page[-1]) + step
    return out


async def fetch_klines(
    feed: RestFeed,
    symbol: str,
    interval: str,
    start_ms: int,
    end_ms: int,
    progress: Progress = _no_progress,
) -> list[Kline]:
    """Closed bars opened in [start_ms, end_ms), oldest first, one page at a time."""

    def page(cursor: int, limit: int) -> Awaitable[list[Kline]]:
        return feed.klines(symbol, interval, start_ms=cursor, end_ms=end_ms - 1, limit=limit)

    return await _paged(
        page,
        _kline_ts,
        start_ms,
        end_ms - 1,
        interval_ms(interval),
        feed.max_klines_per_request,
        f"{feed.venue} bars",
        progress,
    )


async def fetch_open_interest(
    feed: RestFeed,
    symbol: str,
    period: str,
    start_ms: int,
    end_ms: int,
    progress: Progress = _no_progress,
) -> list[OpenInterest]:
    """Open-interest samples stamped in [start_ms, end_ms], oldest first."""

    def page(cursor: int, limit: int) -> Awaitable[list[OpenInterest]]:
        return feed.open_interest_hist(symbol, period, start_ms=cursor, end_ms=end_ms, limit=limit)

    return await _paged(
        page,
        _oi_ts,
        start_ms,
        end_ms,
        interval_ms(period),
        feed.max_oi_per_request,
        f"{feed.venue} open interest",
        progress,
    )


def _kline_ts(k: Kline) -> int:
    return k.ts_ms


def _oi_ts(p: OpenInterest) -> int:
    return p.ts_ms


def join_bars(klines: list[Kline], oi: list[OpenInterest], step_ms: int) -> Bars:
    """Canonical bars: each bar's ``oi_usd`` is the OI sample at its close.

    A venue stamps an OI sample at the end of its period, which is the close of the bar that
    opened one interval earlier; the latest sample at or before the close, if no older than one
    interval, stands in when the exact one is missing. Bars with no OI are dropped, since a
    map cannot use them (this trims the start when a venue keeps less OI history than bars).
    """
    if not klines:
        raise DataError("the venue returned no bars for that range")
    ts = np.array([k.ts_ms for k in klines], dtype=np.int64)
    oi_ts = np.array([p.ts_ms for p in oi], dtype=np.int64)
    oi_usd = np.array([p.oi_usd for p in oi], dtype=np.float64)
    close_at = ts + step_ms
    idx = np.searchsorted(oi_ts, close_at, side="right") - 1
    found = idx >= 0
    safe = np.where(found, idx, 0)
    fresh = found & (close_at - oi_ts[safe] < step_ms) if oi_ts.size else found & False
    keep = np.flatnonzero(fresh)
    if keep.size == 0:
        raise DataError("no open-interest samples line up with the bars; a map needs OI")

    def col(get: Callable[[Kline], float | None]) -> np.ndarray:
        return np.array([np.nan if (v := get(klines[i])) is None else v for i in keep])

    return make_bars(
        ts=ts[keep],
        open=col(lambda k: k.open),
        high=col(lambda k: k.high),
        low=col(lambda k: k.low),
        close=col(lambda k: k.close),
        oi_usd=oi_usd[safe[keep]],
        volume_usd=col(lambda k: k.volume_usd),
        taker_buy_usd=col(lambda k: k.taker_buy_usd),
    )


async def backfill(
    feed: RestFeed,
    symbol: str,
    interval: str,
    start_ms: int,
    end_ms: int,
    progress: Progress = _no_progress,
) -> Bars:
    """Bars opened in [start_ms, end_ms) with their open interest, from one venue."""
    step = interval_ms(interval)
    klines = await fetch_klines(feed, symbol, interval, start_ms, end_ms, progress)
    oi_start = start_ms + step
    if isinstance(feed, LimitedOiHistory):
        # Binance serves 30 days of OI: ask only for what exists (one bar of slack for the
        # clock moving on); join_bars then drops the older bars, which cannot have OI.
        oldest = feed.oi_history_start_ms() + step
        oi_start = max(oi_start, -(-oldest // step) * step)
        if oi_start > end_ms:
            raise DataError(
                f"{feed.venue} keeps no open interest for that range; try a later --end"
            )
    oi = await fetch_open_interest(feed, symbol, interval, oi_start, end_ms, progress)
    return join_bars(klines, oi, step)


@dataclass
class IncrementalPoller:
    """Per-tick polling that fetches only what is new since the last tick.

    Keeps the open time of the last closed bar it returned per (venue, symbol, interval) and asks
    the venue for bars after it; the still-forming bar is never returned, so a bar is delivered
    exactly once, complete.
    """

    first_fetch_bars: int = 500
    _last: dict[tuple[str, str, str], int] = field(default_factory=dict)

    async def poll(self, feed: RestFeed, symbol: str, interval: str, now_ms: int) -> list[Kline]:
        step = interval_ms(interval)
        key = (feed.venue, symbol, interval)
        closed_before = now_ms // step * step  # bars opened before this have closed
        last = self._last.get(key)
        start = closed_before - self.first_fetch_bars * step if last is None else last + step
        if start >= closed_before:
            return []
        new = await fetch_klines(feed, symbol, interval, start, closed_before)
        if new:
            self._last[key] = new[-1].ts_ms
        return new

    def last_bar_ms(self, venue: str, symbol: str, interval: str) -> int | None:
        return self._last.get((venue, symbol, interval))

    def freshness(self, venue: str, symbol: str, interval: str) -> Freshness:
        """How fresh the series is: updated at the close of the last bar it delivered.

        Past two intervals without a new closed bar the series is stale, and snapshots built
        from it say so.
        """
        step = interval_ms(interval)
        last = self._last.get((venue, symbol, interval))
        return Freshness(
            f"{venue}:{symbol}:klines:{interval}", step, None if last is None else last + step
        )
