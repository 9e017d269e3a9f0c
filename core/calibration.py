"""Calibrating map predictions with the realized liquidations of earlier bars (DESIGN §4.3).

A live bot hears real force orders on the liquidation streams, so a prediction for bar t may use
the realized liquidations of bars before t; never bar t's own. Two terms, both causal:

* **scale**: the map's consumed mass times the ratio of realized to predicted liquidations over
  the past week. The map counts Binance OI while streams may cover more venues, and leverage
  use drifts; the ratio tracks both.
* **diffuse intensity**: liquidations the map cannot place (cross margin, margin top-ups,
  positions older than the data) still scale with the move. Their recent rate per unit of
  adverse move, over a short half-life, times this bar's move.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.signal import lfilter

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class CalibrationParams:
    """Half-lives are in hours of bar time; ``intensity_weight`` scales the diffuse term."""

    scale_half_life_h: float = 168.0
    intensity_half_life_h: float = 2.0
    intensity_weight: float = 0.05
    move_floor: float = 1e-4


def ewma(x: FloatArray, half_life_bars: float) -> FloatArray:
    """Exponentially weighted mean of a 1-D series, seeded with its first value; NaN counts as 0."""
    alpha = 1.0 - 0.5 ** (1.0 / max(half_life_bars, 1e-9))
    clean = np.nan_to_num(x, nan=0.0)
    if clean.size == 0:
        return clean
    out, _ = lfilter([alpha], [1.0, alpha - 1.0], clean, zi=[(1.0 - alpha) * clean[0]])
    return np.asarray(out)


def _lagged(x: FloatArray) -> FloatArray:
    """x shifted one bar later: element t holds x[t-1] (0 for t=0). This is what keeps it causal."""
    out = np.zeros_like(x)
    out[1:] = x[:-1]
    return out


def calibrate(
    map_pred: FloatArray,
    realized: FloatArray,
    move: FloatArray,
    interval_ms: int,
    params: CalibrationParams | None = None,
) -> FloatArray:
    """Calibrated predictions, shape (n,), using ``realized`` only from bars before each bar.

    Parameters
    ----------
    map_pred : ndarray of shape (n,)
        Mass the map (built before each bar) had inside the bar's adverse range, USD.
    realized : ndarray of shape (n,)
        Realized liquidations of the same side, USD; NaN where unknown.
    move : ndarray of shape (n,)
        Adverse move of each bar as a fraction of its open.
    """
    p = params or CalibrationParams()
    bars_per_hour = 3_600_000 / max(interval_ms, 1)
    scale_hl = p.scale_half_life_h * bars_per_hour
    int_hl = p.intensity_half_life_h * bars_per_hour
    scale = (_lagged(ewma(realized, scale_hl)) + 1.0) / (_lagged(ewma(map_pred, scale_hl)) + 1.0)
    rate = _lagged(ewma(realized, int_hl)) / np.maximum(_lagged(ewma(move, int_hl)), p.move_floor)
    return np.asarray(map_pred * scale + p.intensity_weight * rate * move)
