"""Seeded simulated perpetual-futures market: price, open interest and liquidation cascades.

Pure: no clock, no asyncio, and the seed decides everything (same config -> identical bars and
events). :class:`SimulatedMarket` advances one bar at a time for every symbol and venue.

* **Price.** A common crypto factor plus each symbol's own Student-t noise, with volatility
  clustering (a mean-reverting log-vol that jumps and cascades excite), rare jumps, and a slowly
  wandering trend. Venues quote the common price times (1 + basis), a few bp apart.
* **Positions.** Each venue's positions are the project's estimator model run forward: every bar,
  :func:`core.estimator.levels.new_levels` turns that venue's OI rise and churn into liquidation
  levels and :func:`~core.estimator.levels.keep_factors` shrinks the survivors as OI falls, the
  recipe :func:`core.estimator.fast.estimate` runs. Levels live on a fixed price grid per symbol
  (``nice_bin_size`` of the start price, from 1/3 to 3 times it; levels beyond it pile up in the
  edge bins). Building a map over the simulated bars therefore finds the simulated positions.
* **Price seeks liquidity.** A weak drift pulls price toward whichever side holds more mass
  within about 1%, so clusters that form near the price get approached and swept.
* **Cascades.** Levels a bar's range crosses are liquidated: the realized USD is
  ``realize_ratio`` of the crossed mass, more for a dense crossing (a crowd that really is
  there), with lognormal noise. On the real hourly BTC data realized liquidations run at about
  5% of what the estimator predicts for the venue. Forced orders beyond what resting liquidity
  absorbs push price on: the bar's extreme moves by ``impact`` x excess / OI (log terms), which
  may cross more levels; a few rounds, capped at ``impact_cap``, and the close follows half.
* **Open interest** builds while price trends and unwinds after sweeps (liquidated positions
  close, ``unwind`` x the realized USD); each venue holds a slowly drifting share of it.
* **Events.** A venue's crossed mass becomes up to ``max_events`` :class:`LiqEvent` per side and
  bar, each at the mass-weighted price of its group of levels clipped to the bar (longs within
  [low, open], shorts within [open, high]) and stamped when the intra-bar path of
  :mod:`core.feeds.replay` reaches that price. The bar's ``liq_*_usd`` is their exact sum.
* **Scripts.** A :class:`Steer` takes over one symbol's drift for a window (a bridge to a target
  price), for scenario presets such as the news item in :mod:`core.feeds.simulator`.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from core.bars import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, Bars, make_bars
from core.errors import InputError
from core.estimator.levels import keep_factors, new_levels
from core.etf import EtfFlows
from core.feeds.replay import touch_fraction
from core.feeds.simulator import EtfFlowSim, MarketConfig, SimConfig, Steer, SymbolSpec
from core.feeds.types import LiqEvent, Side, Venue
from core.mapbuild import nice_bin_size

FloatArray = NDArray[np.float64]
HOUR_MS = 3_600_000
EVENT_USD = 250_000.0  # a bar's liquidations come as about one event per this much USD ...
MIN_EVENT_USD = 100.0  # ... and nothing under this is worth an event
TREND_SD = 0.04  # stationary sd of the hourly drift, in hourly volatilities


@dataclass(frozen=True, eq=False)
class SimBook:
    """Simulated positions of one venue and symbol: USD by liquidation price bin."""

    price_low: FloatArray  # (n_bins,) lower bin edges
    bin_size: float
    long_usd: FloatArray
    short_usd: FloatArray


class _Book:
    """Level mass of every venue of one symbol on one grid: arrays of shape (V, n_bins)."""

    def __init__(self, price: float, n_venues: int) -> None:
        self.bin = nice_bin_size(price)
        self.origin = math.floor(price / 3 / self.bin) * self.bin
        n = math.ceil((3 * price - self.origin) / self.bin)
        self.edges = self.origin + self.bin * np.arange(n, dtype=np.float64)
        self.long = np.zeros((n_venues, n))
        self.short = np.zeros((n_venues, n))

    def frac_long(self, lows: FloatArray) -> FloatArray:
        """Share of each bin at or above each venue's low (mass is uniform inside a bin)."""
        return np.clip((self.edges + self.bin - lows[:, None]) / self.bin, 0.0, 1.0)

    def frac_short(self, highs: FloatArray) -> FloatArray:
        return np.clip((highs[:, None] - self.edges) / self.bin, 0.0, 1.0)

    def add(
        self, venue_idx: NDArray[np.intp], prices: FloatArray, usd: FloatArray, long: bool
    ) -> None:
        n = self.edges.shape[0]
        b = np.clip(np.floor((prices - self.origin) / self.bin), 0, n - 1).astype(np.intp)
        flat = np.bincount(venue_idx * n + b, weights=usd, minlength=self.long.size)
        (self.long if long else self.short).__iadd__(flat.reshape(self.long.shape))

    def pull(self, price: float) -> float:
        """(short - long) / (short + long) mass near the price, weighted by closeness."""
        mids = self.edges + self.bin / 2
        w = np.exp(-np.abs(mids - price) / (0.01 * price))
        up = float((self.short.sum(axis=0) * w * (mids > price)).sum())
        down = float((self.long.sum(axis=0) * w * (mids < price)).sum())
        return (up - down) / (up + down + 1.0)


@dataclass
class _SymbolState:
    rng: np.random.Generator
    price: float
    oi: float
    log_vol: float = 0.0
    trend: float = 0.0  # drift per hour
    basis: FloatArray = field(default_factory=lambda: np.zeros(0))
    share_noise: FloatArray = field(default_factory=lambda: np.zeros(0))
    last: FloatArray | None = None  # (V, 7): o, h, l, c, oi, volume, taker of the last bar


_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS


class SimulatedMarket:
    """Bars, positions and liquidation events of every configured symbol and venue."""

    def __init__(self, config: MarketConfig | None = None) -> None:
        self.config = cfg = config or MarketConfig()
        self.symbols = tuple(s.symbol for s in cfg.symbols)
        self.venues: tuple[Venue, ...] = tuple(v.venue for v in cfg.venues)
        self.now_ms = cfg.start_ms  # open time of the next bar to generate
        self._dt = cfg.interval_ms / HOUR_MS
        self._shares = np.array([v.oi_share for v in cfg.venues])
        self._mean_basis = np.array([v.basis_bps * 1e-4 for v in cfg.venues])
        seeds = np.random.SeedSequence(cfg.seed).spawn(len(cfg.symbols) + 1)
        self._common = np.random.default_rng(seeds[0])
        n_v = len(cfg.venues)
        self._state = [
            _SymbolState(
                np.random.default_rng(seq),
                s.price,
                s.oi_usd,
                basis=self._mean_basis.copy(),
                share_noise=np.zeros(n_v),
            )
            for s, seq in zip(cfg.symbols, seeds[1:], strict=True)
        ]
        self._books = [_Book(s.price, n_v) for s in cfg.symbols]
        self._rows: list[list[list[FloatArray]]] = [[[] for _ in range(n_v)] for _ in cfg.symbols]
        self._events: dict[Venue, list[LiqEvent]] = {v: [] for v in self.venues}
        self._event_ts: dict[Venue, list[int]] = {v: [] for v in self.venues}
        self._bars_cache: dict[tuple[int, int], tuple[int, Bars]] = {}

    # -- queries ---------------------------------------------------------------------------

    def bars(self, symbol: str, venue: Venue) -> Bars:
        """Every bar generated so far (including the one in progress at ``now_ms - interval``)."""
        s, v = self._index(symbol, venue)
        rows = self._rows[s][v]
        cached = self._bars_cache.get((s, v))
        if cached is not None and cached[0] == len(rows):
            return cached[1]
        table = np.array(rows) if rows else np.zeros((0, len(_COLUMNS)))
        cols = {name: table[:, k] for k, name in enumerate(_COLUMNS)}
        out = make_bars(**{**cols, "ts": table[:, 0].astype(np.int64)})
        self._bars_cache[(s, v)] = (len(rows), out)
        return out

    def book(self, symbol: str, venue: Venue) -> SimBook:
        s, v = self._index(symbol, venue)
        b = self._books[s]
        return SimBook(b.edges.copy(), b.bin, b.long[v].copy(), b.short[v].copy())

    def price(self, symbol: str) -> float:
        """The common (venue-free) price at the close of the last generated bar."""
        return self._state[self._index(symbol, self.venues[0])[0]].price

    def events_between(self, venue: Venue, after_ms: int, until_ms: int) -> list[LiqEvent]:
        """Liquidations on ``venue`` (every symbol) with ``after_ms < ts <= until_ms``."""
        ts = self._event_ts[venue]
        a = bisect.bisect_right(ts, after_ms)
        return self._events[venue][a : bisect.bisect_right(ts, until_ms, lo=a)]

    def next_event_ms(self, venue: Venue, after_ms: int) -> int | None:
        """The first generated event after ``after_ms``, None beyond what is generated."""
        ts = self._event_ts[venue]
        i = bisect.bisect_right(ts, after_ms)
        return ts[i] if i < len(ts) else None

    def _index(self, symbol: str, venue: Venue) -> tuple[int, int]:
        try:
            return self.symbols.index(symbol), self.venues.index(venue)
        except ValueError:
            raise InputError(f"the simulation has no {symbol} on {venue}") from None

    # -- stepping --------------------------------------------------------------------------

    def advance_to(self, ts_ms: int) -> int:
        """Generate bars until the one containing ``ts_ms`` exists; returns how many."""
        n = 0
        while self.now_ms <= ts_ms:
            self.step()
            n += 1
        return n

    def step(self) -> None:
        """Generate the bar opening at ``now_ms`` for every symbol and venue."""
        cfg, t = self.config, self.now_ms
        common = float(self._common.standard_normal())
        pairs_prev, pairs_cur, step_events = [], [], []
        for s, spec in enumerate(cfg.symbols):
            cur, events = self._step_symbol(s, spec, t, common)
            prev = self._state[s].last
            pairs_prev.append(cur if prev is None else prev)
            pairs_cur.append(cur)
            step_events += events
            self._state[s].last = cur
        self._add_levels(np.concatenate(pairs_prev), np.concatenate(pairs_cur))
        step_events.sort(key=lambda e: (e.ts_ms, e.symbol, e.side))
        for e in step_events:
            self._events[e.venue].append(e)
            self._event_ts[e.venue].append(e.ts_ms)
        self.now_ms = t + cfg.interval_ms

    def _steer(self, symbol: str, t: int) -> Steer | None:
        for steer in self.config.steers:
            if steer.symbol == symbol and steer.start_ms <= t < steer.end_ms:
                return steer
        return None

    def _step_symbol(
        self, s: int, spec: SymbolSpec, t: int, common: float
    ) -> tuple[FloatArray, list[LiqEvent]]:
        cfg, st, book, dt = self.config, self._state[s], self._books[s], self._dt
        rng, p0 = st.rng, st.price
        steer = self._steer(spec.symbol, t)
        # Busiest in US hours: a daily cycle peaking at 15:00 UTC.
        season = 1.0 + 0.3 * math.cos(2 * math.pi * ((t / HOUR_MS) % 24 - 15) / 24)
        vol = spec.hourly_vol * season * math.exp(st.log_vol) * math.sqrt(dt)
        shock = spec.beta * common + math.sqrt(1 - spec.beta**2) * rng.standard_t(5) / 1.29
        jump = 0.0
        if steer is not None:
            vol *= steer.vol_scale
            left = max(1, -(-(steer.end_ms - t) // cfg.interval_ms))
            drift = math.log(steer.target / p0) / left
        else:
            drift = st.trend * dt + cfg.magnet * vol * book.pull(p0)
            if rng.random() < spec.jumps_per_day * dt / 24:
                jump = float(rng.normal(0.0, spec.jump_sd))
        ret = drift + vol * shock + jump
        close = p0 * math.exp(ret)
        wick = np.abs(rng.standard_normal(2)) * vol * 0.6
        high, low = max(p0, close) * math.exp(wick[0]), min(p0, close) * math.exp(-wick[1])
        if steer is not None:
            if steer.band is not None:
                close = min(max(close, steer.band[0]), steer.band[1])
                high, low = min(high, steer.band[1]), max(low, steer.band[0])
            high = max(high, p0, close, steer.high or 0.0)
            low = min(low, p0, close, steer.low or math.inf)

        # Venue bars: the common bar times (1 + basis); each opens at its own last close.
        st.basis = 0.9 * st.basis + 0.1 * self._mean_basis + rng.normal(0, 5e-5, st.basis.shape)
        f = 1.0 + st.basis
        o = f * p0 if st.last is None else st.last[:, 3].copy()
        c = f * close
        h = np.maximum.reduce([f * high, o, c])
        lo = np.minimum.reduce([f * low, o, c])
        up = down = 0.0
        if steer is None or steer.band is None:
            venue_oi = st.oi * self._shares
            up = self._extension(
                lambda x: (book.short * book.frac_short(h * math.exp(x))).sum(axis=1), venue_oi
            )
            down = self._extension(
                lambda x: (book.long * book.frac_long(lo * math.exp(-x))).sum(axis=1), venue_oi
            )
            h, lo = h * math.exp(up), lo * math.exp(-down)
            c = np.clip(c * math.exp(0.5 * (up - down)), lo, h)
            close *= math.exp(0.5 * (up - down))

        # Liquidate what the range crossed; the realized USD follows the crossed mass.
        long_hit, short_hit = book.long * book.frac_long(lo), book.short * book.frac_short(h)
        book.long -= long_hit
        book.short -= short_hit
        sd = cfg.realize_noise
        noise = np.exp(rng.normal(-sd * sd / 2, sd, (2, len(self.venues))))
        crossed = np.array([long_hit.sum(axis=1), short_hit.sum(axis=1)])
        liq = self._realized(crossed, st.oi * self._shares) * noise
        liq[liq < MIN_EVENT_USD] = 0.0
        events: list[LiqEvent] = []
        sides: tuple[tuple[int, Side, FloatArray], ...] = (
            (0, "long", long_hit),
            (1, "short", short_hit),
        )
        for v, venue in enumerate(self.venues):
            bar = (t, float(o[v]), float(h[v]), float(lo[v]), float(c[v]))
            for k, side, hit in sides:
                events += self._events_for(spec.symbol, venue, bar, hit[v], liq[k, v], side, rng)

        # Open interest: builds with the trend, unwinds after liquidations.
        trend_z = st.trend / (TREND_SD * spec.hourly_vol)  # about N(0, 1)
        growth = (
            dt * 0.001 * (abs(trend_z) - 0.8)
            + 0.25 * ret * math.copysign(1.0, st.trend)
            + 0.005 * math.sqrt(dt) * float(rng.standard_normal())
            - 0.003 * dt * math.log(st.oi / spec.oi_usd)
            + (steer.oi_growth * dt if steer is not None else 0.0)
        )
        total_liq = float(liq.sum())
        st.oi = max(st.oi * math.exp(growth) - cfg.unwind * total_liq, 0.3 * spec.oi_usd)
        st.share_noise = 0.98 * st.share_noise + rng.normal(0, 0.006, st.share_noise.shape)
        share = self._shares * np.exp(st.share_noise)
        oi = st.oi * share / share.sum()
        calm = 1.0 + 0.5 * abs(ret) / max(vol, 1e-12)
        activity = spec.hourly_turnover * dt * math.exp(1.2 * st.log_vol) * calm
        volume = oi * activity + liq.sum(axis=0)
        lean = 0.5 + 0.12 * math.tanh(ret / max(vol, 1e-12))
        if steer is not None and steer.taker_buy is not None:
            lean = steer.taker_buy
        taker = volume * np.clip(lean + rng.normal(0, 0.015, volume.shape), 0.05, 0.95)
        funding = 1e-4 + 3e-4 * math.tanh(trend_z / 2) + rng.normal(0, 2e-5, volume.shape)
        when = np.full(len(self.venues), float(t))
        table = np.column_stack([when, o, h, lo, c, oi, volume, taker, funding, liq[0], liq[1]])
        for v, row in enumerate(table):
            self._rows[s][v].append(row)

        # State for the next bar.
        phi_t, phi_v = 0.995**dt, 0.97**dt
        kick = math.sqrt(1 - phi_t**2) * TREND_SD * spec.hourly_vol
        st.trend = phi_t * st.trend + kick * float(rng.standard_normal())
        st.log_vol = phi_v * st.log_vol + 0.15 * math.sqrt(dt) * float(rng.standard_normal())
        st.log_vol = min(max(st.log_vol + 12 * abs(jump) + 8 * (up + down), -1.0), 1.5)
        if steer is not None:  # a script sets the pace: activity relaxes to normal
            st.log_vol *= 0.7
        st.price = close
        return table[:, [1, 2, 3, 4, 5, 6, 7]], events

    def _realized(self, crossed: FloatArray, venue_oi: FloatArray) -> FloatArray:
        """Expected liquidations of crossed mass (..., V): a dense crossing is a real crowd."""
        cfg = self.config
        return np.asarray(cfg.realize_ratio * crossed * (1 + crossed / (cfg.crowd * venue_oi)))

    def _extension(self, crossed: Callable[[float], FloatArray], venue_oi: FloatArray) -> float:
        """Log move a bar's liquidations add to its extreme: a bounded fixed point.

        Liquidations up to ``absorb`` x OI meet resting liquidity; the excess pushes price on,
        which may cross more levels, for a few rounds, never past ``impact_cap``.
        """
        cfg, x, oi = self.config, 0.0, float(venue_oi.sum())
        for _ in range(4):
            excess = float(self._realized(crossed(x), venue_oi).sum()) - cfg.absorb * oi
            nxt = min(cfg.impact_cap, cfg.impact * max(excess, 0.0) / oi)
            if nxt <= x + 1e-6:
                break
            x = nxt
        return x

    def _events_for(
        self,
        symbol: str,
        venue: Venue,
        bar: tuple[int, float, float, float, float],
        hit: FloatArray,
        usd: float,
        side: Side,
        rng: np.random.Generator,
    ) -> list[LiqEvent]:
        """A venue's liquidations of one side in one bar, grouped by the levels crossed."""
        book = self._books[self.symbols.index(symbol)]
        idx = np.flatnonzero(hit > 0)
        if usd <= 0 or idx.size == 0:
            return []
        t, o, h, lo, c = bar
        mids = book.edges[idx] + book.bin / 2
        prices = np.clip(mids, lo, o) if side == "long" else np.clip(mids, o, h)
        order = np.argsort(-prices if side == "long" else prices, kind="stable")
        mass, prices = hit[idx][order], prices[order]
        k = int(min(max(math.ceil(usd / EVENT_USD), 1), self.config.max_events))
        group = np.minimum((np.cumsum(mass) - mass) / mass.sum() * k, k - 1).astype(np.intp)
        g_mass = np.bincount(group, mass, k)
        keep = g_mass > 0
        g_price = np.bincount(group, mass * prices, k)[keep] / g_mass[keep]
        w = g_mass[keep] * np.exp(rng.normal(0, 0.25, int(keep.sum())))
        sizes = usd * w / w.sum()
        sizes[-1] = usd - sizes[:-1].sum()
        frac = touch_fraction(o, h, lo, c, g_price, side)
        step = self.config.interval_ms
        ts = t + np.minimum(frac * step, step - 1).astype(np.int64)
        return [
            LiqEvent(venue, symbol, side, float(p), float(u / p), float(u), int(when))
            for p, u, when in zip(g_price, sizes, ts, strict=True)
        ]

    def _add_levels(self, prev: FloatArray, cur: FloatArray) -> None:
        """Shrink survivors and add the levels the new bars opened, all pairs in one call.

        Rows alternate (previous bar, new bar) per (symbol, venue) pair, so the estimator's
        per-bar formulas (OI change, churn, keep factor) are right on the odd rows, which are
        the only ones used.
        """
        k = cur.shape[0]
        rows = np.empty((2 * k, 7))
        rows[0::2], rows[1::2] = prev, cur
        pair_bars = make_bars(
            ts=np.arange(2 * k, dtype=np.int64),
            open=rows[:, 0],
            high=rows[:, 1],
            low=rows[:, 2],
            close=rows[:, 3],
            oi_usd=rows[:, 4],
            volume_usd=rows[:, 5],
            taker_buy_usd=rows[:, 6],
        )
        params = self.config.params
        keep = keep_factors(pair_bars, params)[1::2]
        fresh = new_levels(pair_bars, params)
        odd = fresh.bar % 2 == 1
        pair = fresh.bar[odd] // 2
        n_v, n_t = len(self.venues), len(params.tiers.leverages)
        for s, book in enumerate(self._books):
            book.long *= keep[s * n_v : (s + 1) * n_v, None]
            book.short *= keep[s * n_v : (s + 1) * n_v, None]
            mine = (pair >= s * n_v) & (pair < (s + 1) * n_v)
            venue_idx = np.repeat(pair[mine] - s * n_v, n_t)
            for long, price, usd in (
                (True, fresh.long_price, fresh.long_usd),
                (False, fresh.short_price, fresh.short_usd),
            ):
                book.add(venue_idx, price[odd][mine].ravel(), usd[odd][mine].ravel(), long)


class Simulation:
    """Market and ETF flows of one :class:`~core.feeds.simulator.SimConfig`; pure."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.market = SimulatedMarket(self.config.market)
        self.etf = EtfFlowSim(self.config.etf, self.config.market.seed)

    def advance_to(self, ts_ms: int) -> int:
        """Generate the bars up to the one containing ``ts_ms``; returns how many."""
        return self.market.advance_to(ts_ms)

    def etf_flows(self, now_ms: int) -> EtfFlows | None:
        """ETF flows published by ``now_ms``, None before the first day."""
        return self.etf.published(now_ms)
