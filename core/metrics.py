"""How good is a map? The accuracy metrics of DESIGN §4.3.

Price movement alone explains much of realized liquidation volume (a big wick means big
liquidations), so the headline metric ranks bars only *within* groups of similar adverse moves:
the conditional Spearman.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


def rankdata(x: FloatArray) -> FloatArray:
    """Ranks 1..n with ties given their average rank (as scipy.stats.rankdata)."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    # Group equal values; each group's rank is the mean of the positions it spans.
    new_group = np.concatenate(([True], xs[1:] != xs[:-1]))
    group = np.cumsum(new_group) - 1
    starts = np.flatnonzero(new_group)
    ends = np.append(starts[1:], xs.size)
    avg = (starts + ends + 1) / 2.0
    ranks = np.empty(x.size)
    ranks[order] = avg[group]
    return ranks


def spearman(x: FloatArray, y: FloatArray) -> float:
    """Spearman rank correlation; NaN when either side is constant or n < 3."""
    if x.size < 3:
        return float("nan")
    rx, ry = rankdata(x), rankdata(y)
    sx, sy = rx.std(), ry.std()
    if sx == 0 or sy == 0:
        return float("nan")
    return float(((rx - rx.mean()) * (ry - ry.mean())).mean() / (sx * sy))


def conditional_spearman(
    pred: FloatArray, realized: FloatArray, move: FloatArray, n_groups: int = 10
) -> float:
    """Mean Spearman(pred, realized) within deciles of the adverse move.

    Parameters
    ----------
    pred, realized, move : ndarray of shape (n,)
        Predicted and realized liquidations (USD) and the adverse move of each bar, already
        restricted to the scored bars (after warm-up, NaN-free).
    """
    edges = np.quantile(move, np.linspace(0, 1, n_groups + 1))
    group = np.clip(np.searchsorted(edges, move, side="right") - 1, 0, n_groups - 1)
    scores = [spearman(pred[group == g], realized[group == g]) for g in range(n_groups)]
    finite = [s for s in scores if np.isfinite(s)]
    return float(np.mean(finite)) if finite else float("nan")


def r2_gain(pred: FloatArray, realized: FloatArray, move: FloatArray) -> float:
    """R² of log realized liquidations gained by adding log predicted to a move-only model.

    The move-only model regresses log1p(realized) on [1, log move, (log move)²]; the full model
    adds log1p(pred). Logs, because liquidations span five orders of magnitude.
    """
    y = np.log1p(realized)
    lm = np.log(np.maximum(move, 1e-6))
    base = np.column_stack([np.ones_like(y), lm, lm * lm])
    full = np.column_stack([base, np.log1p(pred)])
    return _r2(full, y) - _r2(base, y)


def _r2(x: FloatArray, y: FloatArray) -> float:
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ coef
    tot = ((y - y.mean()) ** 2).sum()
    return float(1.0 - (resid @ resid) / tot) if tot > 0 else float("nan")


@dataclass(frozen=True)
class SideScore:
    conditional_spearman: float
    spearman: float
    r2_gain: float
    n_bars: int


def score_side(
    pred: FloatArray, realized: FloatArray, move: FloatArray, warmup: int = 168
) -> SideScore:
    """Score one side after ``warmup`` bars, skipping bars without realized data."""
    sel = np.arange(pred.size) >= warmup
    sel &= np.isfinite(pred) & np.isfinite(realized) & np.isfinite(move)
    p, r, m = pred[sel], realized[sel], move[sel]
    if p.size < 30:
        nan = float("nan")
        return SideScore(nan, nan, nan, int(p.size))
    return SideScore(
        conditional_spearman=conditional_spearman(p, r, m),
        spearman=spearman(p, r),
        r2_gain=r2_gain(p, r, m),
        n_bars=int(p.size),
    )
