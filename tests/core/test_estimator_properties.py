"""Invariants of the estimator and of the maps built from it, on random small bar series.

Hypothesis draws valid OHLC paths (gaps, zero-width wicks, flat bars) with positive OI that
rises, falls and stays flat, optional volume and taker flow, and every parameter combination.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from core.bars import Bars, make_bars
from core.estimator import Estimate, EstimatorParams, fast, reference
from core.estimator.levels import new_levels
from core.liqmap import combine
from core.mapbuild import build_map
from core.tiers import PRESETS, tier_set
from tests.core.test_estimator import assert_same_estimate

SETTINGS = settings(deadline=None, max_examples=60)
STARTS = [1.0, 150.0, 3_000.0, 95_000.0]
T0 = 1_767_225_600_000


def _floats(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


@st.composite
def bar_series(
    draw: st.DrawFn, min_size: int = 2, max_size: int = 24, start: float | None = None
) -> Bars:
    n = draw(st.integers(min_size, max_size))
    if start is None:
        start = draw(st.sampled_from(STARTS))
    ret = draw(arrays(np.float64, n, elements=_floats(-0.04, 0.04)))
    gap = draw(arrays(np.float64, n, elements=_floats(-0.005, 0.005)))
    wick_hi = draw(arrays(np.float64, n, elements=_floats(0.0, 0.03)))
    wick_lo = draw(arrays(np.float64, n, elements=_floats(0.0, 0.03)))
    d_oi = draw(arrays(np.float64, n, elements=_floats(-0.6, 0.6)))
    close = start * np.exp(np.cumsum(ret))
    open_ = np.concatenate(([start], close[:-1])) * (1.0 + gap)
    high = np.maximum(open_, close) * (1.0 + wick_hi)
    low = np.minimum(open_, close) * (1.0 - wick_lo)
    oi = 1e9 * np.exp(np.cumsum(d_oi))
    volume = taker = None
    if draw(st.booleans()):
        vol_frac = draw(arrays(np.float64, n, elements=_floats(0.0, 0.3)))
        missing = draw(arrays(np.bool_, n))
        volume = np.where(missing, np.nan, vol_frac * oi)
        taker = volume * draw(arrays(np.float64, n, elements=_floats(0.0, 1.0)))
    return make_bars(
        ts=T0 + 60_000 * np.arange(n),
        open=open_,
        high=high,
        low=low,
        close=close,
        oi_usd=oi,
        volume_usd=volume,
        taker_buy_usd=taker,
    )


TIERS = [
    PRESETS["coinglass"],
    PRESETS["coinank"],
    PRESETS["full"],
    tier_set("custom", {2: 1.0, 125: 2.0}),
]

params_st = st.builds(
    EstimatorParams,
    tiers=st.sampled_from(TIERS),
    side_split=st.sampled_from(["taker", "candle", "half"]),
    entry=st.sampled_from(["range", "vwap", "close"]),
    entry_points=st.integers(1, 12),
    entry_spacing=st.sampled_from([0.0001, 0.0005, 0.005]),
    position_usd=st.sampled_from([10_000.0, 500_000.0, 5e6]),
    half_life_bars=st.none() | _floats(0.5, 50.0),
    oi_shrink=st.booleans(),
    turnover=st.sampled_from([0.0, 0.2, 0.9]),
)


def _conserved(est: Estimate) -> None:
    scale = max(float(est.added_usd.max()), 1.0)
    for side in (0, 1):
        parts = est.consumed_usd[side] + est.shrunk_usd[side] + est.remaining_usd[side]
        assert abs(est.added_usd[side] - parts) <= 1e-9 * scale
        assert est.shrunk_usd[side] >= -1e-9 * scale
    assert abs(est.pred_long_usd.sum() - est.consumed_usd[0]) <= 1e-9 * scale
    assert abs(est.pred_short_usd.sum() - est.consumed_usd[1]) <= 1e-9 * scale
    assert (est.pred_long_usd >= 0).all() and (est.pred_short_usd >= 0).all()
    assert (est.longs.usd >= 0).all() and (est.shorts.usd >= 0).all()


@SETTINGS
@given(bars=bar_series(), params=params_st)
def test_fast_equals_reference(bars: Bars, params: EstimatorParams) -> None:
    assert_same_estimate(reference.estimate(bars, params), fast.estimate(bars, params))


@SETTINGS
@given(bars=bar_series(), params=params_st)
def test_mass_is_conserved(bars: Bars, params: EstimatorParams) -> None:
    """added = consumed + shrunk + remaining, per side; computed independently by the reference."""
    ref = reference.estimate(bars, params)
    _conserved(ref)
    _conserved(fast.estimate(bars, params))
    fresh = new_levels(bars, params)
    scale = max(float(ref.added_usd.max()), 1.0)
    assert abs(ref.added_usd[0] - fresh.long_usd.sum()) <= 1e-9 * scale
    assert abs(ref.added_usd[1] - fresh.short_usd.sum()) <= 1e-9 * scale


@SETTINGS
@given(bars=bar_series(max_size=16), params=params_st)
def test_no_level_survives_a_bar_that_crossed_it(bars: Bars, params: EstimatorParams) -> None:
    """After bar k-1, the only long levels at or above its low are those it opened itself.

    Older levels there would have been crossed by bar k-1; same for shorts at or below its high.
    """
    for k in range(1, len(bars) + 1):
        prefix = bars.slice(0, k)
        est = fast.estimate(prefix, params)
        fresh = new_levels(prefix, params)
        low, high = bars.low[k - 1], bars.high[k - 1]
        last = slice(fresh.offsets[k - 1], fresh.offsets[k])  # rows opened by bar k-1
        long_new = fresh.long_price[last].ravel()[fresh.long_usd[last].ravel() > 0]
        short_new = fresh.short_price[last].ravel()[fresh.short_usd[last].ravel() > 0]
        np.testing.assert_array_equal(
            np.sort(est.longs.price[est.longs.price >= low]), np.sort(long_new[long_new >= low])
        )
        np.testing.assert_array_equal(
            np.sort(est.shorts.price[est.shorts.price <= high]),
            np.sort(short_new[short_new <= high]),
        )


@SETTINGS
@given(
    bars=bar_series(min_size=3),
    params=params_st.filter(lambda p: p.entry != "range"),
    cut=st.integers(1, 100),
)
def test_predictions_are_causal(bars: Bars, params: EstimatorParams, cut: int) -> None:
    """A run over bars[:t] predicts bars 0..t-1 exactly as the run over all bars."""
    t = 1 + cut % (len(bars) - 1)
    full = fast.estimate(bars, params)
    part = fast.estimate(bars.slice(0, t), params)
    np.testing.assert_allclose(part.pred_long_usd, full.pred_long_usd[:t], rtol=1e-12)
    np.testing.assert_allclose(part.pred_short_usd, full.pred_short_usd[:t], rtol=1e-12)


@SETTINGS
@given(bars=bar_series(), params=params_st, bin_frac=st.sampled_from([None, 0.0003, 0.004]))
def test_cumulative_curves_are_monotone(
    bars: Bars, params: EstimatorParams, bin_frac: float | None
) -> None:
    price = float(bars.close[-1])
    bin_size = None if bin_frac is None else price * bin_frac
    m = build_map(bars, params, symbol="BTC", venue="x", bin_size=bin_size)
    assert m.long_usd.shape == m.short_usd.shape == (len(params.tiers.leverages), m.n_bins)
    assert (m.long_usd >= 0).all() and (m.short_usd >= 0).all()
    assert (np.diff(m.cum_long) <= 0).all()  # more longs are liquidated the further price falls
    assert (np.diff(m.cum_short) >= 0).all()
    if m.n_bins:
        assert np.isclose(m.cum_long[0], m.long_total.sum())
        assert np.isclose(m.cum_short[-1], m.short_total.sum())
    banded = m.banded()
    np.testing.assert_allclose(banded.long_total, m.long_total, rtol=1e-12, atol=1e-6)
    assert (np.diff(banded.cum_long) <= 0).all() and (np.diff(banded.cum_short) >= 0).all()
    peaks = m.cumulative_peaks()
    assert peaks.long_usd <= m.long_total.sum() * (1 + 1e-12) + 1e-9
    assert peaks.short_usd <= m.short_total.sum() * (1 + 1e-12) + 1e-9


@SETTINGS
@given(data=st.data(), start=st.sampled_from(STARTS), pa=params_st, pb=params_st)
def test_combined_map_adds_its_inputs(
    data: st.DataObject, start: float, pa: EstimatorParams, pb: EstimatorParams
) -> None:
    a = data.draw(bar_series(start=start), label="a")
    b = data.draw(bar_series(start=start), label="b")
    bin_size = float(a.close[-1]) * 0.002
    ma = build_map(a, pa, symbol="BTC", venue="a", bin_size=bin_size)
    mb = build_map(b, pb, symbol="BTC", venue="b", bin_size=bin_size)
    both = combine([ma, mb])
    assert both.leverages == tuple(sorted(set(ma.leverages) | set(mb.leverages)))
    assert both.venues == ("a", "b")
    scale = max(ma.long_usd.sum() + mb.long_usd.sum(), ma.short_usd.sum() + mb.short_usd.sum(), 1.0)
    assert abs(both.long_usd.sum() - ma.long_usd.sum() - mb.long_usd.sum()) <= 1e-9 * scale
    assert abs(both.short_usd.sum() - ma.short_usd.sum() - mb.short_usd.sum()) <= 1e-9 * scale
    for lev in both.leverages:
        row = both.leverages.index(lev)
        want = sum(m.long_usd[m.leverages.index(lev)].sum() for m in (ma, mb) if lev in m.leverages)
        assert abs(both.long_usd[row].sum() - want) <= 1e-9 * scale
    assert (np.diff(both.cum_long) <= 0).all() and (np.diff(both.cum_short) >= 0).all()
