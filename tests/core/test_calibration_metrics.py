"""Accuracy metrics against scipy, the causal calibration, and the backtest (DESIGN §4.3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from core.backtest import WARMUP_BARS, adverse_moves, run_backtest
from core.bars import make_bars
from core.calibration import CalibrationParams, calibrate, ewma
from core.errors import DataError
from core.estimator import EstimatorParams, fast
from core.metrics import conditional_spearman, r2_gain, rankdata, score_side, spearman
from core.synthetic import synthetic_bars

H = 3_600_000

# --- ranks and Spearman ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "x",
    [
        [3.0, 1.0, 2.0],
        [1.0, 1.0, 1.0],
        [5.0, 2.0, 5.0, 2.0, 7.0, 5.0],
        [0.0, -1.5, 1e300, -1e300, 0.0],
        [42.0],
        list(range(10, 0, -1)),
    ],
)
def test_rankdata_table(x: list[float]) -> None:
    arr = np.array(x)
    np.testing.assert_array_equal(rankdata(arr), stats.rankdata(arr))


@settings(deadline=None, max_examples=80)
@given(arrays(np.float64, st.integers(1, 60), elements=st.integers(-5, 5).map(float)))
def test_rankdata_equals_scipy_with_ties(x: np.ndarray) -> None:
    np.testing.assert_array_equal(rankdata(x), stats.rankdata(x))


@settings(deadline=None, max_examples=80)
@given(
    st.integers(3, 80).flatmap(
        lambda n: st.tuples(
            arrays(np.float64, n, elements=st.integers(0, 8).map(float)),
            arrays(np.float64, n, elements=st.floats(-1e6, 1e6)),
        )
    )
)
def test_spearman_equals_scipy(xy: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = xy
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        assert math.isnan(spearman(x, y))  # scipy would warn about constant input
        return
    want = stats.spearmanr(x, y).statistic
    assert spearman(x, y) == pytest.approx(want, abs=1e-12)


def test_spearman_degenerate_cases() -> None:
    assert math.isnan(spearman(np.array([1.0, 2.0]), np.array([2.0, 1.0])))
    assert math.isnan(spearman(np.ones(5), np.arange(5.0)))
    assert spearman(np.arange(6.0), np.arange(6.0) ** 3) == pytest.approx(1.0)
    assert spearman(np.arange(6.0), -np.arange(6.0)) == pytest.approx(-1.0)


def _grouped(within: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """10 move deciles of 20 bars. Across deciles, pred falls as realized rises; within each,
    pred ranks realized the same way (within=1) or backwards (within=-1)."""
    rng = np.random.default_rng(4)
    move, pred, realized = [], [], []
    for g in range(10):
        r = rng.permutation(20).astype(float)
        move.append(0.001 * (g + 1) + 1e-6 * rng.random(20))
        realized.append(1_000.0 * g + r)
        pred.append(1_000.0 * (10 - g) + within * r)
    return np.concatenate(pred), np.concatenate(realized), np.concatenate(move)


def test_conditional_spearman_ranks_only_within_move_groups() -> None:
    pred, realized, move = _grouped(within=1)
    assert spearman(pred, realized) < -0.9  # across groups the map looks wrong ...
    assert conditional_spearman(pred, realized, move) == pytest.approx(1.0)  # ... it is not
    pred, realized, move = _grouped(within=-1)
    assert conditional_spearman(pred, realized, move) == pytest.approx(-1.0)


def test_conditional_spearman_skips_constant_groups() -> None:
    pred, realized, move = _grouped(within=1)
    pred[:20] = 7.0  # decile 0 has no ranking: NaN there, left out of the mean
    assert conditional_spearman(pred, realized, move) == pytest.approx(1.0)
    assert math.isnan(conditional_spearman(np.ones(200), realized, move))


def test_conditional_spearman_by_hand_with_two_groups() -> None:
    move = np.array([1, 1, 1, 1, 2, 2, 2, 2], float)
    realized = np.array([1, 2, 3, 4, 1, 2, 3, 4], float)
    pred = np.array([1, 2, 3, 4, 1, 3, 2, 4], float)  # group 2: Spearman 0.8
    assert conditional_spearman(pred, realized, move, n_groups=2) == pytest.approx(0.9)


def test_r2_gain() -> None:
    rng = np.random.default_rng(2)
    move = rng.uniform(0.001, 0.02, 500)
    realized = np.exp(rng.normal(10, 2, 500)) * move
    assert r2_gain(realized, realized, move) > 0.1  # a perfect predictor explains the rest
    noise = np.exp(rng.normal(10, 2, 500))
    gain = r2_gain(noise, realized, move)
    assert -1e-12 <= gain < 0.05  # another regressor never lowers R²


def test_score_side_warmup_and_missing_values() -> None:
    rng = np.random.default_rng(3)
    n = 300
    pred, realized, move = rng.random(n), rng.random(n), rng.random(n)
    realized[200:210] = np.nan
    s = score_side(pred, realized, move, warmup=100)
    assert s.n_bars == 190
    assert -1 <= s.conditional_spearman <= 1 and -1 <= s.spearman <= 1
    short = score_side(pred, realized, move, warmup=280)
    assert short.n_bars == 20 and math.isnan(short.conditional_spearman)


# --- calibration -----------------------------------------------------------------------------


def naive_ewma(x: np.ndarray, half_life: float) -> np.ndarray:
    alpha = 1.0 - 0.5 ** (1.0 / half_life)
    clean = [0.0 if math.isnan(v) else float(v) for v in x]
    out, prev = [], clean[0] if clean else 0.0
    for v in clean:
        prev = alpha * v + (1.0 - alpha) * prev
        out.append(prev)
    return np.array(out)


@pytest.mark.parametrize("half_life", [0.5, 1.0, 2.0, 24.0, 168.0])
def test_ewma_matches_a_naive_loop(half_life: float) -> None:
    rng = np.random.default_rng(int(half_life * 10))
    x = rng.exponential(1e6, 200)
    x[[5, 17, 18]] = np.nan
    np.testing.assert_allclose(ewma(x, half_life), naive_ewma(x, half_life), rtol=1e-10)


def test_ewma_edge_cases() -> None:
    assert ewma(np.zeros(0), 3.0).shape == (0,)
    np.testing.assert_allclose(ewma(np.full(5, 7.0), 3.0), 7.0)  # seeded with the first value
    np.testing.assert_allclose(ewma(np.array([np.nan, 4.0]), 1.0), [0.0, 2.0])


def _calibration_inputs(n: int = 300, seed: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    move = rng.uniform(0.0, 0.02, n)
    map_pred = rng.exponential(1e6, n) * (rng.random(n) < 0.7)
    realized = rng.exponential(5e5, n)
    realized[rng.random(n) < 0.05] = np.nan
    return map_pred, realized, move


def test_calibration_by_hand_for_constant_inputs() -> None:
    p, r, mv, w = 1_000.0, 3_000.0, 0.01, 0.05
    n = 6
    got = calibrate(np.full(n, p), np.full(n, r), np.full(n, mv), H, CalibrationParams())
    # Bar 0 knows no realized liquidations yet; later bars scale by (r+1)/(p+1) and add w r.
    assert got[0] == pytest.approx(p)
    np.testing.assert_allclose(got[1:], p * (r + 1) / (p + 1) + w * r, rtol=1e-12)


@pytest.mark.parametrize("t", [0, 1, 50, 150, 298])
def test_calibration_is_causal(t: int) -> None:
    map_pred, realized, move = _calibration_inputs()
    base = calibrate(map_pred, realized, move, H)
    changed = realized.copy()
    changed[t:] = np.nan_to_num(changed[t:]) * 3.0 + 1e6  # bar t's own and all later ones
    after = calibrate(map_pred, changed, move, H)
    np.testing.assert_array_equal(after[: t + 1], base[: t + 1])  # exactly: bar t never sees it
    assert after[t + 1] != base[t + 1]  # bar t+1 does


def test_calibration_ignores_later_map_predictions_and_moves() -> None:
    map_pred, realized, move = _calibration_inputs()
    base = calibrate(map_pred, realized, move, H)
    t = 120
    p2, m2 = map_pred.copy(), move.copy()
    p2[t + 1 :] *= 5.0
    m2[t + 1 :] += 0.01
    np.testing.assert_array_equal(calibrate(p2, realized, m2, H)[: t + 1], base[: t + 1])


def test_calibration_half_lives_are_in_hours() -> None:
    map_pred, realized, move = _calibration_inputs()
    hourly = calibrate(map_pred, realized, move, H, CalibrationParams(intensity_weight=0.0))
    # The same numbers read as 1-minute bars use 60x longer half-lives, in bars.
    minutely = calibrate(
        map_pred,
        realized,
        move,
        60_000,
        CalibrationParams(scale_half_life_h=168.0 / 60, intensity_weight=0.0),
    )
    np.testing.assert_allclose(minutely, hourly, rtol=1e-9)


# --- backtest --------------------------------------------------------------------------------


def test_adverse_moves() -> None:
    bars = make_bars(
        ts=[1, 2],
        open=[100.0, 200.0],
        high=[110.0, 201.0],
        low=[95.0, 150.0],
        close=[100.0, 180.0],
        oi_usd=[1.0, 1.0],
    )
    longs, shorts = adverse_moves(bars)
    np.testing.assert_allclose(longs, [0.05, 0.25])
    np.testing.assert_allclose(shorts, [0.10, 0.005])


def test_backtest_on_synthetic_bars() -> None:
    bars = synthetic_bars(600, interval_ms=H, seed=12)
    params = EstimatorParams()
    r = run_backtest(bars, params)
    est = fast.estimate(bars, params)
    assert r.calibrated
    np.testing.assert_array_equal(r.ts, bars.ts)
    np.testing.assert_array_equal(r.map_long_usd, est.pred_long_usd)
    np.testing.assert_array_equal(r.map_short_usd, est.pred_short_usd)
    move_long, _ = adverse_moves(bars)
    np.testing.assert_allclose(
        r.pred_long_usd, calibrate(est.pred_long_usd, bars.liq_long_usd, move_long, H)
    )
    for s in (r.long, r.short, r.map_long, r.map_short):
        assert s is not None and s.n_bars == 600 - WARMUP_BARS
        assert math.isfinite(s.conditional_spearman)


def test_backtest_without_realized_liquidations_is_not_scored() -> None:
    src = synthetic_bars(200, interval_ms=H, seed=13)
    bars = make_bars(
        ts=src.ts,
        open=src.open,
        high=src.high,
        low=src.low,
        close=src.close,
        oi_usd=src.oi_usd,
        volume_usd=src.volume_usd,
        taker_buy_usd=src.taker_buy_usd,
    )
    r = run_backtest(bars, EstimatorParams())
    assert not r.calibrated
    assert r.long is r.short is r.map_long is r.map_short is None
    np.testing.assert_array_equal(r.pred_long_usd, r.map_long_usd)
    assert r.pred_long_usd.shape == (200,)


def test_backtest_needs_two_bars_and_oi() -> None:
    bars = synthetic_bars(10, interval_ms=H)
    with pytest.raises(DataError, match="at least 2 bars"):
        run_backtest(bars.slice(0, 1), EstimatorParams())
    oi = bars.oi_usd.copy()
    oi[3] = np.nan
    holed = make_bars(
        ts=bars.ts, open=bars.open, high=bars.high, low=bars.low, close=bars.close, oi_usd=oi
    )
    with pytest.raises(DataError, match="oi_usd"):
        run_backtest(holed, EstimatorParams())
