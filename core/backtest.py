"""Causal backtest: the map before bar t predicts the liquidations of bar t (DESIGN §4.3)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from core.bars import Bars
from core.calibration import CalibrationParams, calibrate
from core.errors import DataError
from core.estimator import EstimatorParams, fast
from core.metrics import SideScore, score_side

FloatArray = NDArray[np.float64]
WARMUP_BARS = 168


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """Per-bar predictions and, where realized liquidations exist, their scores.

    ``pred_*`` are the model's predictions (map x calibration); ``map_*`` the map's consumed mass
    alone. Scores are None when the bars carry no realized liquidations.
    """

    ts: NDArray[np.int64]
    pred_long_usd: FloatArray
    pred_short_usd: FloatArray
    map_long_usd: FloatArray
    map_short_usd: FloatArray
    long: SideScore | None
    short: SideScore | None
    map_long: SideScore | None
    map_short: SideScore | None
    calibrated: bool


def adverse_moves(bars: Bars) -> tuple[FloatArray, FloatArray]:
    """(open - low)/open for longs and (high - open)/open for shorts, shape (n,) each."""
    return (bars.open - bars.low) / bars.open, (bars.high - bars.open) / bars.open


def run_backtest(
    bars: Bars,
    params: EstimatorParams,
    calibration: CalibrationParams | None = None,
    *,
    warmup: int = WARMUP_BARS,
) -> BacktestResult:
    """Run the estimator once over all bars and score its per-bar predictions.

    One pass suffices: the estimator's consumed mass in bar t is, by construction, what the
    map built from bars 0..t-1 held between bar t's open and its extreme.
    """
    if len(bars) < 2:
        raise DataError("a backtest needs at least 2 bars")
    if not np.isfinite(bars.oi_usd).all():
        raise DataError(
            "open interest (oi_usd) is missing in some bars; the map needs it on every bar"
        )
    est = fast.estimate(bars, params)
    move_long, move_short = adverse_moves(bars)
    has_realized = bars.has("liq_long_usd") and bars.has("liq_short_usd")
    pred_long, pred_short = est.pred_long_usd, est.pred_short_usd
    if has_realized:
        cal = calibration or CalibrationParams()
        interval = bars.interval_ms
        pred_long = calibrate(est.pred_long_usd, bars.liq_long_usd, move_long, interval, cal)
        pred_short = calibrate(est.pred_short_usd, bars.liq_short_usd, move_short, interval, cal)

    def score(pred: FloatArray, realized: FloatArray, move: FloatArray) -> SideScore | None:
        return score_side(pred, realized, move, warmup) if has_realized else None

    return BacktestResult(
        ts=bars.ts,
        pred_long_usd=pred_long,
        pred_short_usd=pred_short,
        map_long_usd=est.pred_long_usd,
        map_short_usd=est.pred_short_usd,
        long=score(pred_long, bars.liq_long_usd, move_long),
        short=score(pred_short, bars.liq_short_usd, move_short),
        map_long=score(est.pred_long_usd, bars.liq_long_usd, move_long),
        map_short=score(est.pred_short_usd, bars.liq_short_usd, move_short),
        calibrated=has_realized,
    )
