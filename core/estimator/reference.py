"""Reference estimator: a plain walk over the bars. Slow, obvious, and the test oracle.

Per bar u: (1) consume every long level with low_u <= price and every short level with
high_u >= price, recording the consumed mass as bar u's predicted liquidations; (2) scale the
survivors by the keep factor (OI shrink, age decay); (3) add the levels bar u opened.
The live levels are numpy arrays, but the walk over bars is an explicit Python loop, exactly
the recipe of DESIGN §4.1.
"""

from __future__ import annotations

import numpy as np

from core.bars import Bars
from core.estimator.levels import keep_factors, new_levels
from core.estimator.params import EstimatorParams
from core.estimator.result import Estimate, SideLevels


def estimate(bars: Bars, params: EstimatorParams) -> Estimate:
    n = len(bars)
    fresh = new_levels(bars, params)
    keep = keep_factors(bars, params)
    n_tiers = len(params.tiers.leverages)
    tier_of = np.arange(n_tiers)

    price = [np.zeros(0), np.zeros(0)]
    usd = [np.zeros(0), np.zeros(0)]
    tier = [np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)]
    pred = np.zeros((2, n))
    added, consumed, shrunk = np.zeros(2), np.zeros(2), np.zeros(2)
    new_price = (fresh.long_price, fresh.short_price)
    new_usd = (fresh.long_usd, fresh.short_usd)
    for u in range(n):
        for side in (0, 1):
            hit = price[side] >= bars.low[u] if side == 0 else price[side] <= bars.high[u]
            pred[side, u] = usd[side][hit].sum()
            consumed[side] += pred[side, u]
            alive = ~hit
            kept = usd[side][alive] * keep[u]
            shrunk[side] += usd[side][alive].sum() - kept.sum()
            price[side], usd[side], tier[side] = price[side][alive], kept, tier[side][alive]

            rows = slice(fresh.offsets[u], fresh.offsets[u + 1])
            opened = new_usd[side][rows]
            mask = opened > 0
            tiers = np.broadcast_to(tier_of, opened.shape)
            price[side] = np.concatenate([price[side], new_price[side][rows][mask]])
            usd[side] = np.concatenate([usd[side], opened[mask]])
            tier[side] = np.concatenate([tier[side], tiers[mask]])
            added[side] += opened[mask].sum()
    return Estimate(
        longs=SideLevels(price[0], usd[0], tier[0]),
        shorts=SideLevels(price[1], usd[1], tier[1]),
        pred_long_usd=pred[0],
        pred_short_usd=pred[1],
        added_usd=added,
        consumed_usd=consumed,
        shrunk_usd=shrunk,
    )
