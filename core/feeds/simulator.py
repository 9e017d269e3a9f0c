"""What the demo market simulates: configuration, scenario presets and the ETF flow model.

The simulation has three parts:

* this module: the frozen configuration (:class:`MarketConfig`, :class:`EtfConfig`,
  :class:`SimConfig`), the presets :func:`demo_config` and :func:`news_item_config`, and
  :class:`EtfFlowSim`, the seeded daily ETF flows;
* :mod:`core.feeds.sim_market`: :class:`~core.feeds.sim_market.SimulatedMarket`, the pure
  bar-by-bar market (price, OI, positions, liquidation cascades) and
  :class:`~core.feeds.sim_market.Simulation`, market and ETF flows together;
* :mod:`core.feeds.sim_feeds`: the async driver on an accelerated clock, and the simulated
  feeds behind the same interfaces as the live ones.

ETF flows: trading days are weekdays, with New Year's Day and Christmas as holiday rows of
zeros (as Farside lists them). The daily total follows streaks: a regime sign lasts a random
number of days (mean ``mean_streak_days``) at a random size, with occasional counter days, and
usually flips when the streak ends, so a flow reversal in the sense of
:mod:`core.etf_report` comes every few weeks. Funds split each day by noisy shares (IBIT
largest), one fund sometimes moving against the day, amounts rounded to $0.1M like Farside.
Scripted days (:class:`EtfDay`) force a total and the leading fund. A day's row is published at
00:00 UTC of the next day.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import date, timedelta

import numpy as np
from numpy.typing import NDArray

from core.errors import InputError
from core.estimator import EstimatorParams
from core.etf import EtfFlows
from core.feeds.types import Venue

FloatArray = NDArray[np.float64]
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True)
class SymbolSpec:
    """One simulated perpetual: start price and OI (all venues), hourly volatility, jumps."""

    symbol: str
    price: float
    oi_usd: float
    hourly_vol: float
    jumps_per_day: float = 0.6
    jump_sd: float = 0.012
    beta: float = 0.9  # loading on the common crypto factor
    hourly_turnover: float = 0.045  # traded notional per hour / OI


@dataclass(frozen=True)
class VenueSpec:
    venue: Venue
    oi_share: float
    basis_bps: float = 0.0


@dataclass(frozen=True)
class Steer:
    """Script one symbol over ``[start_ms, end_ms)``: drift to ``target`` by the window's end,
    at normal activity (the volatility state relaxes to its mean, no jumps).

    ``band`` clamps every bar into (low, high) and turns cascades off (a range where positions
    build); ``high``/``low`` force the extremes of the window's bars (a sweep); ``taker_buy``
    sets the taker-buy share of volume; ``oi_growth`` adds log-OI growth per hour.
    """

    symbol: str
    start_ms: int
    end_ms: int
    target: float
    vol_scale: float = 1.0
    band: tuple[float, float] | None = None
    high: float | None = None
    low: float | None = None
    taker_buy: float | None = None
    oi_growth: float = 0.0


DEFAULT_SYMBOLS = (
    SymbolSpec("BTC", 94_000.0, 17.5e9, 0.004),
    SymbolSpec("ETH", 3_300.0, 9.0e9, 0.0058, jump_sd=0.016, beta=0.8),
)
DEFAULT_VENUES = (
    VenueSpec("binance", 0.46, 0.0),
    VenueSpec("bybit", 0.31, -1.5),
    VenueSpec("okx", 0.23, 1.0),
)


@dataclass(frozen=True)
class MarketConfig:
    """The knobs of :class:`~core.feeds.sim_market.SimulatedMarket` (see its module docstring).

    ``params`` is the model of the simulated positions (the estimator's own defaults).
    ``realize_ratio`` is the share of crossed position mass that shows up as liquidations; it
    grows by ``1 + mass / (crowd x venue OI)`` for dense crossings. Only liquidations beyond
    ``absorb`` x OI move price, by ``impact`` x the excess / OI, at most ``impact_cap``.
    """

    seed: int = 7
    start_ms: int = 1_767_225_600_000  # 2026-01-01T00:00Z
    interval_ms: int = HOUR_MS
    symbols: tuple[SymbolSpec, ...] = DEFAULT_SYMBOLS
    venues: tuple[VenueSpec, ...] = DEFAULT_VENUES
    params: EstimatorParams = field(default_factory=EstimatorParams)
    realize_ratio: float = 0.05
    realize_noise: float = 0.35
    crowd: float = 0.3
    absorb: float = 0.001
    impact: float = 1.0
    impact_cap: float = 0.025
    magnet: float = 0.15
    unwind: float = 1.5
    max_events: int = 12
    steers: tuple[Steer, ...] = ()

    def __post_init__(self) -> None:
        if self.interval_ms < 60_000 or DAY_MS % self.interval_ms:
            raise InputError("interval_ms must be a whole divisor of a day, at least a minute")
        if self.start_ms % self.interval_ms:
            raise InputError("start_ms must be a whole multiple of interval_ms (bars open on it)")
        if not self.symbols or not self.venues:
            raise InputError("a market needs at least one symbol and one venue")
        if len({v.venue for v in self.venues}) != len(self.venues):
            raise InputError("venues must be distinct")


FUNDS = ("IBIT", "FBTC", "BITB", "ARKB", "BTCO", "EZBC", "BRRR", "HODL", "GBTC", "BTC")
FUND_SHARES = (0.46, 0.21, 0.07, 0.07, 0.02, 0.02, 0.01, 0.03, 0.08, 0.03)


@dataclass(frozen=True)
class EtfDay:
    """A scripted trading day: its total (US$ millions) and, optionally, the leading fund."""

    day: date
    total_musd: float
    leader: str | None = None


@dataclass(frozen=True)
class EtfConfig:
    start: date = date(2025, 7, 1)
    funds: tuple[str, ...] = FUNDS
    shares: tuple[float, ...] = FUND_SHARES
    mean_streak_days: float = 7.0
    daily_musd: float = 260.0
    script: tuple[EtfDay, ...] = ()


@dataclass(frozen=True)
class SimConfig:
    """A whole simulation; a demo's live clock starts at ``live_start_ms`` (history before)."""

    market: MarketConfig = field(default_factory=MarketConfig)
    etf: EtfConfig = field(default_factory=EtfConfig)
    live_start_ms: int = 1_767_225_600_000 + 14 * DAY_MS


class EtfFlowSim:
    """Seeded daily ETF flows, generated lazily day by day (see the module docstring)."""

    def __init__(self, config: EtfConfig, seed: int) -> None:
        if len(config.funds) != len(config.shares):
            raise InputError("each ETF fund needs a share")
        self.config = config
        self._rng = np.random.default_rng(np.random.SeedSequence([seed, 0xE7F]))
        self._script = {d.day: d for d in config.script}
        self._shares = np.asarray(config.shares) / sum(config.shares)
        self._days: list[date] = []
        self._rows: list[FloatArray] = []
        self._sign, self._left, self._size = 1.0, 0, config.daily_musd

    def published(self, now_ms: int) -> EtfFlows | None:
        """Rows of the days published by ``now_ms`` (a day at the next 00:00 UTC), or None."""
        last = date(1970, 1, 1) + timedelta(days=now_ms // DAY_MS - 1)
        return self.until(last)

    def until(self, last: date) -> EtfFlows | None:
        """Rows from the start through ``last``, or None before the first day."""
        day = self._days[-1] + timedelta(days=1) if self._days else self.config.start
        while day <= last:
            if day.weekday() < 5:
                self._days.append(day)
                self._rows.append(self._row(day))
            day += timedelta(days=1)
        n = next((i for i, d in enumerate(self._days) if d > last), len(self._days))
        if n == 0:
            return None
        flows = np.array(self._rows[:n])
        return EtfFlows(
            dates=np.array(self._days[:n], dtype="datetime64[D]"),
            funds=self.config.funds,
            flows=flows,
            total=np.round(flows.sum(axis=1), 1),
            source="simulated",
        )

    def _row(self, day: date) -> FloatArray:
        if (day.month, day.day) in ((1, 1), (12, 25)):
            return np.zeros(len(self.config.funds))
        rng, cfg = self._rng, self.config
        scripted = self._script.get(day)
        if scripted is not None:
            total, leader = scripted.total_musd, scripted.leader
            self._sign, self._left = math.copysign(1.0, total), int(rng.geometric(0.2))
        else:
            if self._left <= 0:
                if rng.random() < 0.85:
                    self._sign = -self._sign
                self._left = 1 + int(rng.geometric(1 / max(cfg.mean_streak_days - 1, 1)))
                self._size = cfg.daily_musd * float(rng.lognormal(0.0, 0.5))
            self._left -= 1
            sign = -self._sign if rng.random() < 0.1 else self._sign
            total = sign * self._size * float(rng.lognormal(-0.1, 0.45))
            total = math.copysign(max(abs(total), 5.0), total)
            leader = None
        return self._split(round(total, 1), leader)

    def _split(self, total: float, leader: str | None) -> FloatArray:
        """Fund flows summing to ``total`` (to $0.1M); ``leader``, if given, moves the most."""
        rng, n = self._rng, len(self.config.funds)
        w = self._shares * rng.lognormal(0.0, 0.5, n) * (rng.random(n) < 0.7)
        w[0] = max(w[0], 0.2)  # the largest fund always trades
        flows: FloatArray = np.asarray(total * w / w.sum(), dtype=np.float64)
        if leader is None and rng.random() < 0.3:  # one fund against the day
            k = int(rng.integers(1, n))
            flows[k] = -0.3 * flows[k] - float(rng.uniform(5, 40)) * math.copysign(1.0, total)
        flows = np.round(flows, 1)
        top = int(np.argmax(flows * math.copysign(1.0, total)))
        if leader is not None:  # the leader takes the day's largest move
            lead = self.config.funds.index(leader)
            flows[[top, lead]] = flows[[lead, top]]
            top = lead
        flows[top] = round(flows[top] + total - flows.sum(), 1)  # exact total after rounding
        return flows


def _ms(year: int, month: int, day: int, hour: int = 0) -> int:
    return int((date(year, month, day) - date(1970, 1, 1)).days * DAY_MS + hour * HOUR_MS)


def demo_config(seed: int = 7, *, start_ms: int | None = None, history_days: int = 14) -> SimConfig:
    """BTC and ETH on three venues from ``start_ms`` (default 2026-01-01), live after the history.

    The ETF history starts about 150 days earlier so z-scores and streaks have a baseline.
    """
    start = _ms(2026, 1, 1) if start_ms is None else start_ms - start_ms % HOUR_MS
    etf_start = date(1970, 1, 1) + timedelta(days=start // DAY_MS - 150)
    return SimConfig(
        market=MarketConfig(seed=seed, start_ms=start),
        etf=EtfConfig(start=etf_start),
        live_start_ms=start + history_days * DAY_MS,
    )


NEWS_SWEEP_MS = _ms(2026, 1, 13, 22)  # the hour the short cluster near 96,200 is swept
NEWS_CLUSTER_PRICE = 96_200.0
NEWS_ETF_OUTFLOWS = (
    EtfDay(date(2026, 1, 6), -243.2),
    EtfDay(date(2026, 1, 7), -486.1),
    EtfDay(date(2026, 1, 8), -398.8),
    EtfDay(date(2026, 1, 9), -250.0),
)  # -1,378.1 over four days


def news_item_config(seed: int = 7) -> SimConfig:
    """The January 2026 squeeze, replayed by script on the seeded market.

    BTC climbs from about 88,000 to a range just under 96,000 (2026-01-12 12:00 to 01-13 22:00)
    where open interest builds with sellers leaning in, so a dense short cluster forms near
    96,200; the 22:00 hour sweeps it (the liquidations push the high further) and a second leg
    follows on 01-14. ETF flows: inflows on 01-05, four days of outflows (-$1.38B, 01-06..09),
    then +$116.7M on 01-12 and +$753.8M on 01-13, both led by FBTC: a bullish reversal.
    Everything else is the seeded market. The demo goes live at 01-13 12:00 UTC.
    """
    sweep = NEWS_SWEEP_MS
    steers = (
        Steer("BTC", _ms(2026, 1, 1), _ms(2026, 1, 6), 93_400.0),
        Steer("BTC", _ms(2026, 1, 6), _ms(2026, 1, 10), 90_600.0),
        Steer("BTC", _ms(2026, 1, 10), _ms(2026, 1, 12, 12), 94_900.0),
        Steer(
            "BTC",
            _ms(2026, 1, 12, 12),
            sweep,
            95_450.0,
            vol_scale=0.6,
            band=(94_950.0, 95_820.0),
            taker_buy=0.40,
            oi_growth=0.006,
        ),
        Steer("BTC", sweep, sweep + HOUR_MS, 96_300.0, high=96_750.0, taker_buy=0.6),
        Steer("BTC", sweep + HOUR_MS, _ms(2026, 1, 14, 14), 96_500.0, vol_scale=0.8),
        Steer("BTC", _ms(2026, 1, 14, 14), _ms(2026, 1, 14, 17), 97_200.0, high=97_650.0),
    )
    script = (
        EtfDay(date(2026, 1, 5), 412.6),
        *NEWS_ETF_OUTFLOWS,
        EtfDay(date(2026, 1, 12), 116.7, "FBTC"),
        EtfDay(date(2026, 1, 13), 753.8, "FBTC"),
    )
    btc = replace(DEFAULT_SYMBOLS[0], price=88_000.0)
    return SimConfig(
        market=MarketConfig(
            seed=seed,
            start_ms=_ms(2026, 1, 1),
            symbols=(btc, *DEFAULT_SYMBOLS[1:]),
            steers=steers,
        ),
        etf=EtfConfig(start=date(2025, 8, 1), script=script),
        live_start_ms=_ms(2026, 1, 13, 12),
    )
