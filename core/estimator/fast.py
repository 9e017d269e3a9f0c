"""Vectorised estimator: the same answer as ``reference`` with no Python loop over bars.

* The first bar that crosses each level comes from binary lifting over a sparse table of
  range minima of lows (maxima of highs): O(levels x log n), all levels at once.
* The surviving fraction of a level between bars is exp of a difference of the cumulative sum
  of log keep factors, so OI shrink and decay need no walk either.
* Predicted liquidations per bar and the final map are ``np.bincount`` sums.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from core.bars import Bars
from core.estimator.levels import keep_factors, new_levels
from core.estimator.params import EstimatorParams
from core.estimator.result import Estimate, SideLevels

FloatArray = NDArray[np.float64]
IndexArray = NDArray[np.intp]


def estimate(bars: Bars, params: EstimatorParams) -> Estimate:
    n = len(bars)
    fresh = new_levels(bars, params)
    log_keep = np.cumsum(np.log(keep_factors(bars, params)))
    end = log_keep[n - 1] if n else 0.0
    n_tiers = len(params.tiers.leverages)
    # Levels of both sides share their birth bar and tier: compute those once.
    born_all = np.repeat(fresh.bar, n_tiers)
    tier_all = np.tile(np.arange(n_tiers, dtype=np.intp), fresh.bar.shape[0])

    sides = []
    for is_long in (True, False):
        usd = (fresh.long_usd if is_long else fresh.short_usd).reshape(-1)
        prices = (fresh.long_price if is_long else fresh.short_price).reshape(-1)
        born, tier = born_all, tier_all
        if not (usd > 0).all():  # a 0 or 1 long share leaves one side empty
            keep = usd > 0
            usd, prices, born, tier = usd[keep], prices[keep], born[keep], tier[keep]
        hit = first_crossing(bars.low if is_long else bars.high, born + 1, prices, is_long)
        dead = hit < n
        alive = ~dead
        # Mass at the start of the hit bar: keep factors of bars born+1 .. hit-1 applied.
        at_hit = usd[dead] * np.exp(log_keep[hit[dead] - 1] - log_keep[born[dead]])
        left = usd[alive] * np.exp(end - log_keep[born[alive]])
        pred = np.bincount(hit[dead], weights=at_hit, minlength=n).astype(np.float64)
        sides.append((prices[alive], left, tier[alive], pred, usd.sum(), at_hit.sum()))

    (lp, lu, lt, lpred, ladd, lcon), (sp, su, st, spred, sadd, scon) = sides
    added = np.array([ladd, sadd])
    consumed = np.array([lcon, scon])
    remaining = np.array([lu.sum(), su.sum()])
    return Estimate(
        longs=SideLevels(lp, lu, lt),
        shorts=SideLevels(sp, su, st),
        pred_long_usd=lpred,
        pred_short_usd=spred,
        added_usd=added,
        consumed_usd=consumed,
        shrunk_usd=added - consumed - remaining,
    )


def first_crossing(
    extreme: FloatArray, start: IndexArray, level: FloatArray, is_long: bool
) -> IndexArray:
    """First bar index >= ``start`` whose low <= level (long) or high >= level (short).

    Parameters
    ----------
    extreme : ndarray of shape (n,)
        Bar lows for long levels, bar highs for short levels.
    start, level : ndarray of shape (m,)
        First bar each level may be hit in, and the level's price.

    Returns
    -------
    ndarray of shape (m,)
        The crossing bar, or n where no bar crosses.
    """
    n = extreme.shape[0]
    out = np.minimum(start, n).astype(np.intp)
    if n == 0 or out.size == 0:
        return out
    # Compare on the "safe" side: a long level survives while low > level, i.e. -low < -level.
    key = -extreme if is_long else extreme
    thr_all = -level if is_long else level
    table = _block_maxima(key)
    for a in range(0, out.size, _CHUNK):
        pos = out[a : a + _CHUNK]  # a view: updated in place
        thr = thr_all[a : a + _CHUNK]
        # Binary lifting: skip 2^k bars when none of them reaches the level. Padding with +inf
        # makes a skip past the last bar fail by itself, with no bounds check.
        for k in range(len(table) - 1, -1, -1):
            pos += (table[k][pos] < thr).astype(np.intp) << k
    return out


# Levels per pass: small enough that a pass's arrays stay in cache across all lifting steps.
_CHUNK = 1 << 16


def _block_maxima(key: FloatArray) -> list[FloatArray]:
    """Sparse table: row k, index i holds max(key[i : i + 2^k]); +inf where the block overruns.

    Each row has n + 1 entries so that a position of n (past the last bar) is a valid index.
    """
    n = key.shape[0]
    rows = [np.append(key, np.inf)]
    k = 1
    while (1 << k) <= n:
        step, half = 1 << k, 1 << (k - 1)
        prev = rows[-1]
        row = np.full(n + 1, np.inf)
        row[: n - step + 1] = np.maximum(prev[: n - step + 1], prev[half : half + n - step + 1])
        rows.append(row)
        k += 1
    return rows
