"""From bars to a :class:`LiqMap`: run the estimator and bin what survives."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from core.bars import Bars
from core.errors import DataError
from core.estimator import Estimate, EstimatorParams, fast
from core.liqmap import LiqMap, bin_levels, grid_for

FloatArray = NDArray[np.float64]
Estimator = Callable[[Bars, EstimatorParams], Estimate]


def nice_bin_size(price: float) -> float:
    """About 0.1% of the price, rounded to 1, 2 or 5 times a power of ten ($100 for BTC at 95k)."""
    raw = price * 0.001
    exp = math.floor(math.log10(raw))
    base = round(raw / 10**exp, 9)  # 0.15 / 0.1 is 1.4999999999999998 in binary
    step = 1.0 if base < 1.5 else 2.0 if base < 3.5 else 5.0 if base < 7.5 else 10.0
    return float(step * 10**exp)


def atr(bars: Bars, period: int = 14) -> float:
    """Average true range of the last ``period`` bars, USD (simple mean; NaN under 2 bars)."""
    if len(bars) < 2:
        return float("nan")
    prev_close = bars.close[:-1]
    tr = np.maximum.reduce(
        [
            bars.high[1:] - bars.low[1:],
            np.abs(bars.high[1:] - prev_close),
            np.abs(bars.low[1:] - prev_close),
        ]
    )
    return float(tr[-period:].mean())


def build_map(
    bars: Bars,
    params: EstimatorParams,
    *,
    symbol: str,
    venue: str,
    bin_size: float | None = None,
    estimator: Estimator = fast.estimate,
) -> LiqMap:
    """The map after the last of ``bars``, with levels on a grid of ``bin_size`` USD."""
    if len(bars) < 2:
        raise DataError("a map needs at least 2 bars")
    if not np.isfinite(bars.oi_usd).all():
        raise DataError(
            "open interest (oi_usd) is missing in some bars; a map needs it on every bar"
        )
    est = estimator(bars, params)
    price = float(bars.close[-1])
    size = bin_size if bin_size is not None else nice_bin_size(price)
    prices = np.concatenate([est.longs.price, est.shorts.price])
    origin, n_bins = grid_for(prices, price, size)
    n_tiers = len(params.tiers.leverages)
    return LiqMap(
        symbol=symbol,
        venues=(venue,),
        ts_ms=int(bars.ts[-1]) + bars.interval_ms,
        price=price,
        atr=atr(bars),
        bin_size=size,
        origin=origin,
        leverages=params.tiers.leverages,
        long_usd=bin_levels(
            est.longs.price, est.longs.usd, est.longs.tier, n_tiers, size, origin, n_bins
        ),
        short_usd=bin_levels(
            est.shorts.price, est.shorts.usd, est.shorts.tier, n_tiers, size, origin, n_bins
        ),
    )
