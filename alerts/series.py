"""In-memory market series the polling jobs append to and the snapshot job reads.

* :class:`BarSeries`: closed bars of one (venue, symbol) at one interval, as
  :class:`core.bars.Bars` with open interest at each close, bounded to ``max_bars`` (the map's
  lookback plus a little), with a :class:`~core.feeds.staleness.Freshness`.
* :class:`SeriesStore`: every tracked series, one :class:`~core.liqs.LiqLedger` per symbol
  (realized liquidations from the streams), and the freshness of each venue's liquidation
  stream.

Bars and open interest arrive separately (a kline poll, an OI-history poll) and not always
together: a venue may publish the OI sample of a bar's close a little after the bar. A series
keeps klines it cannot yet pair with OI as *pending* and joins them (with
:func:`core.feeds.backfill.join_bars`) once the sample arrives; a kline whose close OI can no
longer arrive (a newer sample already came) is dropped, since a map cannot use a bar without OI.

A series' freshness is stamped with the close time of its latest joined bar: past two intervals
without one it is stale, and the snapshot leaves that venue out of the map and says so.
Everything here is in memory and single-threaded (one asyncio loop); after a restart the store
is refilled by a backfill.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import fields

import numpy as np

from core.bars import Bars
from core.config import MapSettings
from core.durations import parse_duration_ms
from core.errors import DataError, InputError
from core.feeds.backfill import IncrementalPoller, fetch_open_interest, interval_ms, join_bars
from core.feeds.base import RestFeed
from core.feeds.staleness import Freshness
from core.feeds.types import Kline, LiqEvent, OpenInterest
from core.liqs import LiqLedger

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
LIQ_RETENTION_MIN_MS = DAY_MS + HOUR_MS  # the longest window (24h) plus a tick's slack
STREAM_INTERVAL_MS = 60_000  # a live stream says something (event or ping) at least this often
SLACK_BARS = 8  # klines waiting for OI, and OI samples, kept beyond max_bars


def bars_for_lookback(lookback: str | int, interval: str | int) -> int:
    """Bars a series keeps for a map over ``lookback``: the lookback's bars plus two."""
    lb = parse_duration_ms(lookback) if isinstance(lookback, str) else int(lookback)
    step = interval_ms(interval) if isinstance(interval, str) else int(interval)
    return math.ceil(lb / step) + 2


def _concat(a: Bars, b: Bars) -> Bars:
    return Bars(
        **{f.name: np.concatenate([getattr(a, f.name), getattr(b, f.name)]) for f in fields(a)}
    )


class BarSeries:
    """Closed bars of one venue and symbol at one interval (oldest first, at most ``max_bars``)."""

    def __init__(self, venue: str, symbol: str, interval: str, max_bars: int) -> None:
        if max_bars < 2:
            raise InputError(f"a series must keep at least 2 bars, got {max_bars}")
        self.venue = venue
        self.symbol = symbol
        self.interval = interval
        self.interval_ms = interval_ms(interval)
        self.max_bars = max_bars
        self.freshness = Freshness(f"{venue}:{symbol}:bars:{interval}", self.interval_ms)
        self._bars: Bars | None = None
        self._pending: dict[int, Kline] = {}  # open ms -> kline waiting for its OI
        self._oi: dict[int, OpenInterest] = {}  # stamp ms -> recent OI samples

    @property
    def name(self) -> str:
        return self.freshness.series

    @property
    def bars(self) -> Bars | None:
        """The joined bars, or None before the first one."""
        return self._bars

    @property
    def pending(self) -> int:
        """Klines waiting for their open interest."""
        return len(self._pending)

    @property
    def pending_since_ms(self) -> int | None:
        """Open time of the oldest kline waiting for its open interest."""
        return min(self._pending) if self._pending else None

    def __len__(self) -> int:
        return 0 if self._bars is None else len(self._bars)

    @property
    def last_open_ms(self) -> int | None:
        return None if self._bars is None else int(self._bars.ts[-1])

    @property
    def last_close(self) -> float | None:
        """Close of the latest bar (NaN-free: None when unknown)."""
        if self._bars is None:
            return None
        c = float(self._bars.close[-1])
        return c if math.isfinite(c) else None

    def is_stale(self, now_ms: int) -> bool:
        return self.freshness.is_stale(now_ms)

    # -- appending -------------------------------------------------------------------------

    def add_klines(self, klines: Iterable[Kline], now_ms: int | None = None) -> int:
        """Queue bars (a forming bar is left out when ``now_ms`` is given); returns bars joined."""
        last = self.last_open_ms
        for k in klines:
            if k.venue != self.venue or k.symbol != self.symbol:
                raise InputError(
                    f"a {k.venue} {k.symbol} bar does not belong to {self.venue} {self.symbol}"
                )
            if now_ms is not None and k.ts_ms + self.interval_ms > now_ms:
                continue  # still forming
            if last is not None and k.ts_ms <= last:
                continue  # already joined
            self._pending[k.ts_ms] = k
        return self._join()

    def add_oi(self, samples: Iterable[OpenInterest]) -> int:
        """Remember open-interest samples; returns bars that could now be joined."""
        for p in samples:
            if math.isfinite(p.oi_usd) and p.oi_usd > 0:
                self._oi[p.ts_ms] = p
        return self._join()

    def add_bars(self, bars: Bars) -> int:
        """Append canonical bars (e.g. from a backfill); only those after the last are kept."""
        if len(bars) == 0:
            return 0
        last = self.last_open_ms
        start = 0 if last is None else int(np.searchsorted(bars.ts, last, side="right"))
        new = bars.slice(start, len(bars))
        if len(new) == 0:
            return 0
        self._bars = new if self._bars is None else _concat(self._bars, new)
        if len(self._bars) > self.max_bars:
            self._bars = self._bars.slice(len(self._bars) - self.max_bars, len(self._bars))
        self.freshness = self.freshness.updated(int(new.ts[-1]) + self.interval_ms)
        for t in [t for t in self._pending if t <= int(new.ts[-1])]:
            del self._pending[t]
        return len(new)

    def _join(self) -> int:
        if not self._pending or not self._oi:
            self._trim_pending()
            return 0
        klines = [self._pending[t] for t in sorted(self._pending)]
        oi = [self._oi[t] for t in sorted(self._oi)]
        try:
            joined = join_bars(klines, oi, self.interval_ms)
        except DataError:  # none lines up yet
            joined = None
        added = 0 if joined is None else self.add_bars(joined)
        # A kline that did not join while a sample at or after its close exists never will.
        newest_oi = oi[-1].ts_ms
        for t in [t for t in self._pending if t + self.interval_ms <= newest_oi]:
            del self._pending[t]
        self._trim_pending()
        self._trim_oi()
        return added

    def _trim_pending(self) -> None:
        # Only the newest max_bars can ever be kept; older ones would be trimmed on joining.
        excess = len(self._pending) - (self.max_bars + SLACK_BARS)
        for t in sorted(self._pending)[: max(excess, 0)]:
            del self._pending[t]

    def _trim_oi(self) -> None:
        # Samples are needed only for klines still pending: keep the most recent ones.
        excess = len(self._oi) - (self.max_bars + SLACK_BARS)
        for t in sorted(self._oi)[: max(excess, 0)]:
            del self._oi[t]

    # -- reading ---------------------------------------------------------------------------

    def window(self, now_ms: int, lookback_ms: int) -> Bars:
        """Bars closed by ``now_ms`` within ``lookback_ms`` (DataError under 2 bars)."""
        if self._bars is None or len(self._bars) < 2:
            raise DataError(f"{self.name}: fewer than 2 bars so far")
        return self._bars.up_to(now_ms, lookback_ms)


class SeriesStore:
    """Every tracked bar series, the per-symbol liquidation ledgers and stream freshness.

    ``track`` declares a series that *should* exist: one with no data yet is reported stale
    ("no data yet"), which is how a venue that never answered is named in a snapshot.
    """

    def __init__(
        self,
        *,
        interval: str = "1h",
        max_bars: int = 170,
        liq_retention_ms: int = LIQ_RETENTION_MIN_MS,
        stream_interval_ms: int = STREAM_INTERVAL_MS,
    ) -> None:
        self.interval = interval
        self.max_bars = max_bars
        self.liq_retention_ms = max(int(liq_retention_ms), LIQ_RETENTION_MIN_MS)
        self.stream_interval_ms = stream_interval_ms
        self._series: dict[tuple[str, str], BarSeries] = {}
        self._ledgers: dict[str, LiqLedger] = {}
        self._streams: dict[str, Freshness] = {}
        self._covered_from_ms: int | None = None

    @classmethod
    def from_settings(cls, cfg: MapSettings, interval: str = "1h") -> SeriesStore:
        """A store sized for maps over ``cfg.lookback``; ledgers keep a lookback of events too,
        so per-bar realized liquidations can be set beside every bar of the map."""
        lookback = parse_duration_ms(cfg.lookback)
        return cls(
            interval=interval,
            max_bars=bars_for_lookback(lookback, interval),
            liq_retention_ms=max(lookback, LIQ_RETENTION_MIN_MS),
        )

    # -- bars ------------------------------------------------------------------------------

    def track(self, venue: str, symbol: str, interval: str | None = None) -> BarSeries:
        """The series of (venue, symbol), created on first call."""
        key = (venue, symbol)
        s = self._series.get(key)
        if s is None:
            s = BarSeries(venue, symbol, interval or self.interval, self.max_bars)
            self._series[key] = s
            self.ledger(symbol)
        elif interval is not None and interval != s.interval:
            raise InputError(
                f"{venue} {symbol} is tracked at {s.interval}; one interval per series"
            )
        return s

    def series(self, venue: str, symbol: str) -> BarSeries | None:
        return self._series.get((venue, symbol))

    def for_symbol(self, symbol: str) -> list[BarSeries]:
        """The symbol's series, in the order they were tracked."""
        return [s for (_, sym), s in self._series.items() if sym == symbol]

    def symbols(self) -> list[str]:
        return list(dict.fromkeys(sym for _, sym in self._series))

    def add_klines(
        self, venue: str, symbol: str, klines: Sequence[Kline], now_ms: int | None = None
    ) -> int:
        return self.track(venue, symbol).add_klines(klines, now_ms)

    def add_oi(self, venue: str, symbol: str, samples: Sequence[OpenInterest]) -> int:
        return self.track(venue, symbol).add_oi(samples)

    def add_bars(self, venue: str, symbol: str, bars: Bars) -> int:
        return self.track(venue, symbol).add_bars(bars)

    # -- realized liquidations ---------------------------------------------------------------

    def ledger(self, symbol: str) -> LiqLedger:
        led = self._ledgers.get(symbol)
        if led is None:
            led = LiqLedger(self.liq_retention_ms, covered_from_ms=self._covered_from_ms)
            self._ledgers[symbol] = led
        return led

    def add_events(self, events: Iterable[LiqEvent]) -> int:
        """Route stream events to their symbol's ledger; each proves its stream alive."""
        by_symbol: dict[str, list[LiqEvent]] = {}
        for e in events:
            by_symbol.setdefault(e.symbol, []).append(e)
            if e.venue in self._streams:
                self._streams[e.venue] = self._streams[e.venue].updated(e.ts_ms)
        return sum(self.ledger(sym).extend(evs) for sym, evs in by_symbol.items())

    def track_stream(self, venue: str, covered_from_ms: int | None = None) -> None:
        """Declare ``venue``'s liquidation stream; with ``covered_from_ms``, when listening began
        (per-bar totals before it are unknown, not zero)."""
        self._streams.setdefault(venue, Freshness(f"{venue}:liqs", self.stream_interval_ms))
        if covered_from_ms is not None:
            # One ledger mixes every venue: it is complete from the latest stream start on.
            start = max(covered_from_ms, self._covered_from_ms or covered_from_ms)
            self._covered_from_ms = start
            for led in self._ledgers.values():
                led.covered_from_ms = max(led.covered_from_ms or start, start)

    def stream_alive(self, venue: str, now_ms: int) -> None:
        """The stream of ``venue`` is connected and subscribed as of ``now_ms``.

        Liquidations are sparse (quiet minutes have none), so a health check, not only an
        event, keeps a stream fresh.
        """
        self.track_stream(venue)
        self._streams[venue] = self._streams[venue].updated(now_ms)

    def streams(self) -> list[Freshness]:
        return list(self._streams.values())

    def realized_bars(self, venue: str, symbol: str) -> Bars | None:
        """The series' bars with ``liq_long_usd``/``liq_short_usd`` from that venue's stream.

        NaN where the ledger does not know (before listening began or beyond retention).
        Binance and OKX values are lower bounds (sampled streams).
        """
        s = self.series(venue, symbol)
        if s is None or s.bars is None:
            return None
        bars = s.bars
        long_usd, short_usd = self.ledger(symbol).per_bar(bars.ts, s.interval_ms, [venue])
        cols = {f.name: getattr(bars, f.name) for f in fields(bars)}
        return Bars(**{**cols, "liq_long_usd": long_usd, "liq_short_usd": short_usd})

    # -- freshness -------------------------------------------------------------------------

    def freshness(self) -> list[Freshness]:
        """Every bar series and stream, for /status."""
        return [s.freshness for s in self._series.values()] + self.streams()

    def stale(self, now_ms: int) -> list[str]:
        return [f.series for f in self.freshness() if f.is_stale(now_ms)]


async def poll_bars(
    store: SeriesStore,
    feed: RestFeed,
    poller: IncrementalPoller,
    symbol: str,
    now_ms: int,
) -> int:
    """One polling step for (feed, symbol): new closed klines, then the OI they need.

    The body of a per-feed polling job; returns how many bars were joined.
    """
    s = store.track(feed.venue, symbol)
    klines = await poller.poll(feed, symbol, s.interval, now_ms)
    joined = s.add_klines(klines, now_ms)
    since = s.pending_since_ms
    if since is None:
        return joined
    # OI is stamped at each bar's close; ask from the oldest waiting bar's open, which also
    # covers the "latest sample within one interval" fallback of join_bars.
    oi = await fetch_open_interest(feed, symbol, s.interval, since, now_ms)
    return joined + s.add_oi(oi)
