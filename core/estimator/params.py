"""Parameters of the estimator and the per-bar inputs derived from them.

The per-bar inputs (long share, entry points) are computed here once, as arrays, and used by both
the reference and the fast path: they are plain formulas of one bar, not the path-dependent part
that the two implementations must agree on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from core.bars import Bars
from core.brackets import BINANCE_BTCUSDT, Brackets
from core.errors import InputError
from core.tiers import PRESETS, TierSet

FloatArray = NDArray[np.float64]

SideSplit = Literal["taker", "candle", "half"]
EntryModel = Literal["range", "vwap", "close"]


@dataclass(frozen=True)
class EstimatorParams:
    """How new open interest is turned into liquidation levels.

    Attributes
    ----------
    tiers : TierSet
        Leverages and the share of new notional at each.
    side_split : {"taker", "candle", "half"}
        Long share of new positions. ``taker`` uses the bar's taker-buy share of volume,
        amplified by ``side_gain`` (taker flow is ~50/50 on most bars; the imbalance is the signal),
        and falls back to ``candle`` on bars without volume; ``candle`` tilts 0.5 by the candle
        body as a fraction of its range; ``half`` is 0.5.
    entry : {"range", "vwap", "close"}
        ``range`` spreads entries evenly over [low, high]; ``vwap`` uses the typical price
        (h+l+c)/3, the usual VWAP proxy when only OHLC is known.
    entry_points, entry_spacing : int, float
        ``range`` uses at most ``entry_points`` prices per bar, and no more than the bar's own
        range holds at ``entry_spacing`` (fraction of price) apart: nine points inside a
        quiet 1-minute bar would land in one price bin and only cost time.
    position_usd : float
        Notional of a typical position, which picks the maintenance bracket.
    half_life_bars : float or None
        Age decay of the map: positions are closed for reasons other than liquidation (profit,
        stops, expiry of a trade idea). None disables it.
    oi_shrink : bool
        When OI falls, shrink every surviving level by OI_t / OI_{t-1}.
    turnover : float
        Share of each bar's traded volume that opens new positions while closing as many old
        ones. Net OI change hides this churn: a busy bar with flat OI still refreshes the map
        near the price. The opened part is placed like a rise in OI; the closed part shrinks
        the map in proportion to OI.
    """

    tiers: TierSet = field(default_factory=lambda: PRESETS["full"])
    side_split: SideSplit = "taker"
    side_gain: float = 2.0
    candle_tilt: float = 0.2
    entry: EntryModel = "range"
    entry_points: int = 9
    entry_spacing: float = 0.001
    position_usd: float = 10_000.0
    brackets: Brackets = BINANCE_BTCUSDT
    half_life_bars: float | None = None
    oi_shrink: bool = True
    turnover: float = 0.2

    def __post_init__(self) -> None:
        if self.side_split not in ("taker", "candle", "half"):
            raise InputError(
                f"unknown side split {self.side_split!r}; expected taker, candle or half"
            )
        if self.entry not in ("range", "vwap", "close"):
            raise InputError(f"unknown entry model {self.entry!r}; expected range, vwap or close")
        if not 1 <= self.entry_points <= 64:
            raise InputError(f"entry_points must be 1..64, got {self.entry_points}")
        if not 0 < self.entry_spacing < 0.1:
            raise InputError(f"entry_spacing must be within 0..0.1, got {self.entry_spacing:g}")
        if self.side_gain < 0 or not 0 <= self.candle_tilt <= 0.5:
            raise InputError("side_gain must be >= 0 and candle_tilt within 0..0.5")
        if self.position_usd <= 0:
            raise InputError("position_usd must be positive")
        if not 0 <= self.turnover < 1:
            raise InputError(f"turnover must be within 0..1, got {self.turnover:g}")
        if self.half_life_bars is not None and self.half_life_bars <= 0:
            raise InputError("half_life_bars must be positive, or null to disable decay")

    @property
    def decay_per_bar(self) -> float:
        """Fraction of a level kept per bar by age decay alone."""
        if self.half_life_bars is None:
            return 1.0
        return float(0.5 ** (1.0 / self.half_life_bars))


def long_share(bars: Bars, params: EstimatorParams) -> FloatArray:
    """Share of each bar's new OI assumed long, shape (n,), within [0.05, 0.95]."""
    n = len(bars)
    if params.side_split == "half":
        return np.full(n, 0.5)
    span = bars.high - bars.low
    body = np.divide(bars.close - bars.open, span, out=np.zeros(n), where=span > 0)
    candle = 0.5 + params.candle_tilt * body
    if params.side_split == "candle":
        return np.clip(candle, 0.05, 0.95)
    vol, tb = bars.volume_usd, bars.taker_buy_usd
    ok = np.isfinite(vol) & np.isfinite(tb) & (vol > 0)
    taker = np.divide(tb, vol, out=np.full(n, 0.5), where=ok)
    share = np.where(ok, 0.5 + params.side_gain * (taker - 0.5), candle)
    return np.asarray(np.clip(share, 0.05, 0.95))


def entry_grid(
    bars: Bars, params: EstimatorParams
) -> tuple[NDArray[np.intp], FloatArray, FloatArray]:
    """Entry points as rows: (bar index, entry price, weight), each of shape (m,).

    Rows are ordered by bar and each bar's weights sum to 1. With ``range`` entries, bar t has
    ``k_t = ceil(range_t / (open_t * entry_spacing))`` rows, at most ``entry_points``, evenly
    over its own [low, high]. The count depends on that bar alone, never on later bars, so a
    backtest stays causal.
    """
    n = len(bars)
    every = np.arange(n, dtype=np.intp)
    if params.entry == "close":
        return every, bars.close.copy(), np.ones(n)
    if params.entry == "vwap":
        return every, (bars.high + bars.low + bars.close) / 3.0, np.ones(n)
    span = bars.high - bars.low
    need = np.ceil(span / (bars.open * params.entry_spacing) - 1e-9)
    k_t = np.clip(need, 1, params.entry_points).astype(np.intp)
    bar = np.repeat(every, k_t)
    first = np.cumsum(k_t) - k_t  # row of each bar's first entry point
    slot = np.arange(bar.shape[0], dtype=np.float64) - first[bar]
    k = k_t[bar].astype(np.float64)
    return bar, bars.low[bar] + span[bar] * (slot + 0.5) / k, 1.0 / k


def margin_terms(params: EstimatorParams) -> tuple[float, float]:
    """(mmr, cum / notional) of the typical position's bracket.

    cum/Q in price units is ``cum / notional * EP``; returning cum/notional keeps it a ratio.
    """
    mmr, cum = params.brackets.lookup(params.position_usd)
    return mmr, cum / params.position_usd
