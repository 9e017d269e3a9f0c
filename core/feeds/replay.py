"""Replay of a canonical bar CSV as live feeds: the pure core.

A replay plays recorded bars on an accelerated clock: data time runs ``speed`` times faster than
wall time (3600: an hour of bars per second). :func:`core.feeds.sim_feeds.open_replay` wraps the
pieces here into a :class:`~core.feeds.base.RestFeed` and a
:class:`~core.feeds.base.LiquidationStream`; this module reads no clock and never sleeps, so
every answer is a function of ``now_ms``.

Causality: a query answers only with bars that had **closed** by ``now_ms``, never the bar in
progress, and open interest is the value at a bar's close, stamped with that close time.

Intra-bar path: a bar knows only OHLC, so inside a bar price is assumed to run open -> low ->
high -> close for a rising bar (close >= open) and open -> high -> low -> close for a falling
one, each leg a third of the bar. The mark price follows this path; liquidation events sit on it,
long ones on the way down to the low at prices within [low, open], short ones on the way up.

Synthetic liquidation events (:class:`ReplayTape`): a bar's ``liq_long_usd`` becomes
``events_per_bar`` long events at prices evenly spaced from the open down to the low (the last
at the low), and likewise shorts from the open up to the high. Sizes grow toward the extreme
(weights 1, 2, ..., k), since a cascade feeds on itself, and they sum to the bar's total. Each
is stamped with the time the path first reaches its price. NaN or zero totals give no events.

With ``loop`` a tape repeats forever, each pass shifted later by the tape's span, so time never
runs backwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from core.bars import Bars
from core.errors import InputError
from core.feeds.errors import FeedUnavailable
from core.feeds.types import Kline, LiqEvent, MarkPrice, OpenInterest, Side, Venue

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

FUNDING_EVERY_MS = 8 * 3_600_000


@dataclass(frozen=True)
class AcceleratedClock:
    """Data time (epoch ms) that runs ``speed`` times faster than wall time (epoch s)."""

    data0_ms: int
    wall0: float
    speed: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.speed) and self.speed > 0):
            raise InputError(f"speed must be a positive number, got {self.speed}")

    def data_ms(self, wall: float) -> int:
        # The tolerance keeps data_ms(wall_at(t)) == t despite the rounding of float seconds.
        return self.data0_ms + math.floor((wall - self.wall0) * self.speed * 1000.0 + 1e-3)

    def wall_at(self, data_ms: int) -> float:
        return self.wall0 + (data_ms - self.data0_ms) / (self.speed * 1000.0)


def touch_fraction(
    o: float, h: float, lo: float, c: float, prices: FloatArray, side: Side
) -> FloatArray:
    """Fraction of the bar (0..1) at which the intra-bar path first reaches each price.

    Long liquidations happen on the way down to the low, at prices within [low, open]; shorts on
    the way up to the high, within [open, high]. Prices outside those ranges are clipped.
    """
    rising = c >= o
    if side == "long":
        q = np.clip(prices, lo, o)
        if rising:  # open -> low over the first third
            return _leg(o, lo, q, 0.0)
        return _leg(h, lo, q, 1 / 3)  # open -> high -> low: the second third
    q = np.clip(prices, o, h)
    if rising:
        return _leg(lo, h, q, 1 / 3)  # open -> low -> high: the second third
    return _leg(o, h, q, 0.0)


def _leg(p0: float, p1: float, q: FloatArray, t0: float) -> FloatArray:
    span = p1 - p0
    if span == 0:
        return np.full(q.shape, t0 + 1 / 3)
    return np.asarray(t0 + (q - p0) / span / 3.0)


def path_price(o: float, h: float, lo: float, c: float, frac: float) -> float:
    """Price on the intra-bar path at ``frac`` (0..1) of the bar."""
    points = (o, lo, h, c) if c >= o else (o, h, lo, c)
    x = min(max(frac, 0.0), 1.0) * 3.0
    k = min(int(x), 2)
    return points[k] + (points[k + 1] - points[k]) * (x - k)


def split_liquidations(
    o: float, h: float, lo: float, total: float, side: Side, k: int
) -> tuple[FloatArray, FloatArray]:
    """(prices, usd) of ``k`` events summing to ``total`` (see the module docstring)."""
    end = lo if side == "long" else h
    steps = np.arange(1, k + 1, dtype=np.float64)
    prices = o + (end - o) * steps / k
    usd = total * steps / steps.sum()
    usd[-1] = total - usd[:-1].sum()  # the events add up to the bar's total exactly
    return prices, usd


class BarTape:
    """Causal queries over bars of one venue and symbol (pure: ``now_ms`` is an argument).

    Bars are addressed by a virtual index j; with ``loop`` bar j is row ``j % n`` shifted by
    ``j // n`` spans. Only bars closed by ``now_ms`` (open + interval <= now) are ever returned.
    """

    def __init__(
        self,
        bars: Bars,
        *,
        venue: Venue,
        symbol: str,
        interval_ms: int | None = None,
        loop: bool = False,
    ) -> None:
        if len(bars) == 0:
            raise InputError("a tape needs at least one bar")
        self.bars = bars
        self.venue: Venue = venue
        self.symbol = symbol
        self.interval_ms = interval_ms or bars.interval_ms
        if self.interval_ms <= 0:
            raise InputError("the bar interval is unknown: pass interval_ms for a single bar")
        self.loop = loop
        self._n = len(bars)
        self._ts = bars.ts.astype(np.int64)
        self._span = int(self._ts[-1] - self._ts[0]) + self.interval_ms

    @property
    def end_ms(self) -> int | None:
        """Close time of the last bar, or None when looping."""
        return None if self.loop else int(self._ts[-1]) + self.interval_ms

    def ts_of(self, j: IntArray) -> IntArray:
        """Open times of virtual bars ``j``."""
        return np.asarray(self._ts[j % self._n] + (j // self._n) * self._span)

    def count_open_before(self, t_ms: int) -> int:
        """Virtual bars that opened strictly before ``t_ms``."""
        if not self.loop:
            return int(np.searchsorted(self._ts, t_ms, side="left"))
        k = (t_ms - int(self._ts[0])) // self._span
        if k < 0:
            return 0
        return int(k * self._n + np.searchsorted(self._ts, t_ms - k * self._span, side="left"))

    def closed(self, now_ms: int) -> int:
        """Number of virtual bars closed by ``now_ms``."""
        return self.count_open_before(now_ms - self.interval_ms + 1)

    def current(self, now_ms: int) -> int | None:
        """Virtual index of the bar in progress at ``now_ms``, None in a gap or outside."""
        j = self.count_open_before(now_ms + 1) - 1
        if j < 0 or (not self.loop and j >= self._n):
            return None
        return j if int(self.ts_of(np.array([j]))[0]) + self.interval_ms > now_ms else None

    def buckets(
        self,
        now_ms: int,
        interval_ms: int,
        start_ms: int | None,
        end_ms: int | None,
        limit: int,
    ) -> list[tuple[int, NDArray[np.intp]]]:
        """Completed ``interval_ms`` buckets (epoch-aligned) as (open ms, virtual bar indices).

        ``start_ms`` / ``end_ms`` bound the bucket's open time; without a start the latest
        ``limit`` buckets come back, with one the first ``limit`` from it (as Binance does).
        """
        if interval_ms % self.interval_ms:
            raise InputError(
                f"the bars are {_human(self.interval_ms)}; {_human(interval_ms)} is not a whole "
                "multiple of that"
            )
        ratio = interval_ms // self.interval_ms
        if ratio == 1:  # bars as they are, even where they are not aligned to the epoch grid
            hi, start, end = self.closed(now_ms), start_ms, None if end_ms is None else end_ms + 1
        else:
            hi = min(self.closed(now_ms), self.count_open_before(_floor(now_ms, interval_ms)))
            start = None if start_ms is None else -_floor(-start_ms, interval_ms)
            end = None if end_ms is None else _floor(end_ms, interval_ms) + interval_ms
        if end is not None:
            hi = min(hi, self.count_open_before(end))
        lo = 0 if start is None else self.count_open_before(start)
        # Look at no more bars than `limit` buckets need, plus one possibly partial bucket.
        if start_ms is None:
            lo = max(lo, hi - (limit + 1) * ratio)
        else:
            hi = min(hi, lo + (limit + 1) * ratio)
        if hi <= lo:
            return []
        j = np.arange(lo, hi, dtype=np.int64)
        key = self.ts_of(j)
        if ratio > 1:
            key = key // interval_ms * interval_ms
        starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
        groups = [
            (int(key[a]), j[a:b].astype(np.intp))
            for a, b in zip(starts, [*starts[1:], len(j)], strict=True)
        ]
        if start_ms is None:
            if lo > 0 and len(groups) > limit:
                groups = groups[1:]  # the first group may be cut short
            return groups[-limit:]
        return groups[:limit]

    def klines(
        self, now_ms: int, interval_ms: int, start_ms: int | None, end_ms: int | None, limit: int
    ) -> list[Kline]:
        b, rows = self.bars, self._n
        out = []
        for open_ms, j in self.buckets(now_ms, interval_ms, start_ms, end_ms, limit):
            r = j % rows
            volume = float(np.nansum(b.volume_usd[r]))
            taker = b.taker_buy_usd[r]
            out.append(
                Kline(
                    self.venue,
                    self.symbol,
                    open_ms,
                    float(b.open[r[0]]),
                    float(b.high[r].max()),
                    float(b.low[r].min()),
                    float(b.close[r[-1]]),
                    volume,
                    float(taker.sum()) if np.isfinite(taker).all() else None,
                )
            )
        return out

    def oi_hist(
        self, now_ms: int, period_ms: int, start_ms: int | None, end_ms: int | None, limit: int
    ) -> list[OpenInterest]:
        """Open interest at each completed period's close, stamped with that close time."""
        # The stamp is the bucket's close, so the bounds move back one period onto its open.
        lo = None if start_ms is None else start_ms - period_ms
        hi = None if end_ms is None else end_ms - period_ms
        out = []
        for open_ms, j in self.buckets(now_ms, period_ms, lo, hi, limit):
            r = int(j[-1] % self._n)
            oi = float(self.bars.oi_usd[r])
            out.append(
                OpenInterest(
                    self.venue, self.symbol, open_ms + period_ms, oi / float(self.bars.close[r]), oi
                )
            )
        return out

    def oi_now(self, now_ms: int) -> OpenInterest:
        """The latest known open interest (last closed bar's), as of ``now_ms``."""
        j = self.closed(now_ms) - 1
        if j < 0:
            raise FeedUnavailable(self.venue, "no bar has closed yet, so no open interest is known")
        r = j % self._n
        oi = float(self.bars.oi_usd[r])
        return OpenInterest(self.venue, self.symbol, now_ms, oi / float(self.bars.close[r]), oi)

    def mark(self, now_ms: int) -> MarkPrice:
        """Price on the intra-bar path at ``now_ms``; the last close in a gap or after the end."""
        b = self.bars
        j = self.current(now_ms)
        if j is not None:
            r = j % self._n
            start = int(self.ts_of(np.array([j]))[0])
            frac = (now_ms - start) / self.interval_ms
            price = path_price(b.open[r], b.high[r], b.low[r], b.close[r], frac)
        else:
            closed = self.closed(now_ms)
            if closed == 0:
                raise FeedUnavailable(self.venue, "the replay has not reached its first bar")
            r = (closed - 1) % self._n
            price = float(b.close[r])
        funding = float(b.funding_rate[r])
        return MarkPrice(
            self.venue,
            self.symbol,
            now_ms,
            float(price),
            funding_rate=funding if math.isfinite(funding) else None,
            next_funding_ms=(now_ms // FUNDING_EVERY_MS + 1) * FUNDING_EVERY_MS,
        )


class ReplayTape(BarTape):
    """A :class:`BarTape` that also turns each bar's realized liquidations into events."""

    def __init__(
        self,
        bars: Bars,
        *,
        venue: Venue = "binance",
        symbol: str = "BTC",
        loop: bool = False,
        events_per_bar: int = 4,
        interval_ms: int | None = None,
    ) -> None:
        super().__init__(bars, venue=venue, symbol=symbol, interval_ms=interval_ms, loop=loop)
        if events_per_bar < 1:
            raise InputError(f"events_per_bar must be at least 1, got {events_per_bar}")
        self.events_per_bar = events_per_bar
        totals = np.nan_to_num(bars.liq_long_usd) + np.nan_to_num(bars.liq_short_usd)
        self._has_liqs = bool((totals > 0).any())

    def bar_events(self, j: int) -> list[LiqEvent]:
        """Events of virtual bar ``j``, in time order."""
        b, r = self.bars, j % self._n
        start = int(self.ts_of(np.array([j]))[0])
        o, h, lo, c = (float(x[r]) for x in (b.open, b.high, b.low, b.close))
        out = []
        for side, total in (("long", b.liq_long_usd[r]), ("short", b.liq_short_usd[r])):
            if not (math.isfinite(total) and total > 0):
                continue
            s: Side = "long" if side == "long" else "short"
            prices, usd = split_liquidations(o, h, lo, float(total), s, self.events_per_bar)
            frac = touch_fraction(o, h, lo, c, prices, s)
            ts = start + np.minimum(frac * self.interval_ms, self.interval_ms - 1).astype(np.int64)
            out += [
                LiqEvent(self.venue, self.symbol, s, float(p), float(u / p), float(u), int(t))
                for p, u, t in zip(prices, usd, ts, strict=True)
            ]
        out.sort(key=lambda e: e.ts_ms)
        return out

    def events_between(self, after_ms: int, until_ms: int) -> list[LiqEvent]:
        """Events with ``after_ms < ts <= until_ms``."""
        first = self.count_open_before(after_ms - self.interval_ms + 1)
        last = self.count_open_before(until_ms + 1)
        if not self.loop:
            last = min(last, self._n)
        return [
            e
            for j in range(first, last)
            for e in self.bar_events(j)
            if after_ms < e.ts_ms <= until_ms
        ]

    def next_event_ms(self, after_ms: int) -> int | None:
        """Time of the first event after ``after_ms``, None if there is none.

        A looping tape without any liquidation still answers a second later: it never ends.
        """
        if not self._has_liqs:
            return None if not self.loop else after_ms + 1000
        j = self.count_open_before(after_ms - self.interval_ms + 1)
        while self.loop or j < self._n:
            for e in self.bar_events(j):
                if e.ts_ms > after_ms:
                    return e.ts_ms
            j += 1
        return None


def _floor(t: int, step: int) -> int:
    return t // step * step


def _human(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
