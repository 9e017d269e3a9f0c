"""What an estimator run returns: the surviving levels and the per-bar predicted liquidations."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IndexArray = NDArray[np.intp]


@dataclass(frozen=True, eq=False)
class SideLevels:
    """Surviving levels of one side: price (USD), remaining notional (USD), tier index."""

    price: FloatArray
    usd: FloatArray
    tier: IndexArray


@dataclass(frozen=True, eq=False)
class Estimate:
    """Result of running the estimator over bars 0..n-1.

    Attributes
    ----------
    longs, shorts : SideLevels
        Levels alive after the last bar.
    pred_long_usd, pred_short_usd : ndarray of shape (n,)
        Mass consumed in each bar: the liquidations the map *before* that bar predicted for it.
    added_usd, consumed_usd, shrunk_usd : ndarray of shape (2,)
        Totals per side (long, short); ``added = consumed + shrunk + remaining`` holds.
    """

    longs: SideLevels
    shorts: SideLevels
    pred_long_usd: FloatArray
    pred_short_usd: FloatArray
    added_usd: FloatArray
    consumed_usd: FloatArray
    shrunk_usd: FloatArray

    @property
    def remaining_usd(self) -> FloatArray:
        return np.array([self.longs.usd.sum(), self.shorts.usd.sum()])
