"""New liquidation levels opened by each bar (DESIGN §4.1 steps 1-4), shared by both paths."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from core.bars import Bars
from core.brackets import liq_price_long, liq_price_short
from core.estimator.params import EstimatorParams, entry_grid, long_share, margin_terms

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class NewLevels:
    """Levels opened by the bars, one row per used (bar, entry point), one column per tier.

    Rows are ordered by bar; the rows of bar u are ``offsets[u]:offsets[u + 1]``. Bars that
    opened nothing have no rows.
    """

    bar: NDArray[np.intp]  # (m,)
    offsets: NDArray[np.intp]  # (n + 1,)
    long_price: FloatArray  # (m, T)
    short_price: FloatArray
    long_usd: FloatArray
    short_usd: FloatArray


def new_levels(bars: Bars, params: EstimatorParams) -> NewLevels:
    """Place each bar's opened notional on its entry points and the leverage tiers."""
    n = len(bars)
    d_oi = np.zeros(n)
    d_oi[1:] = np.diff(bars.oi_usd)
    opened = np.where(d_oi > 0, d_oi, 0.0) + churn(bars, params)
    share = long_share(bars, params)
    bar, entry, weight = entry_grid(bars, params)  # (m,) each
    # Only entry points of bars that opened something become levels.
    row_mass = opened[bar] * weight
    used = row_mass > 0
    bar, row_mass = bar[used], row_mass[used]
    ep = entry[used][:, None]  # (m, 1)
    lev = params.tiers.leverage_array[None, :]
    tier_w = params.tiers.weight_array[None, :]
    mmr, cum_ratio = margin_terms(params)
    mass = row_mass[:, None] * tier_w
    row_share = share[bar][:, None]
    return NewLevels(
        bar=bar,
        offsets=np.searchsorted(bar, np.arange(n + 1), side="left").astype(np.intp),
        # cum/Q = cum/notional * EP: the maintenance amount scales with the entry price.
        long_price=liq_price_long(ep, lev, mmr, cum_ratio * ep),
        short_price=liq_price_short(ep, lev, mmr, cum_ratio * ep),
        long_usd=mass * row_share,
        short_usd=mass * (1.0 - row_share),
    )


def keep_factors(bars: Bars, params: EstimatorParams) -> FloatArray:
    """Fraction of surviving mass kept at the end of each bar, shape (n,).

    OI shrink (OI_t/OI_{t-1} when OI fell) times age decay. Bar 0 keeps everything.
    """
    n = len(bars)
    keep = np.ones(n)
    if params.oi_shrink and n > 1:
        prev, cur = bars.oi_usd[:-1], bars.oi_usd[1:]
        closed = np.maximum(prev - cur, 0.0) + churn(bars, params)[1:]
        ratio = np.divide(prev - closed, prev, out=np.ones(n - 1), where=prev > 0)
        # Floor at 1e-9: OI at zero is junk data, and log(0) would poison the fast path's cumsum.
        keep[1:] = np.clip(ratio, 1e-9, 1.0)
    keep[1:] *= params.decay_per_bar
    return keep


def churn(bars: Bars, params: EstimatorParams) -> FloatArray:
    """USD opened (and as much closed) per bar beyond the net OI change, shape (n,)."""
    if params.turnover == 0:
        return np.zeros(len(bars))
    volume = np.nan_to_num(bars.volume_usd, nan=0.0)
    out = params.turnover * volume
    out[:1] = 0.0  # bar 0 has no previous OI to measure against
    return out
