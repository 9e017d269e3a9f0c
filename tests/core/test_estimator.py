"""The estimator (DESIGN §4.1): per-bar inputs as tables, hand-worked scenarios with exact
numbers, and the fast path against the reference loop on synthetic bars."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from core.bars import Bars, make_bars
from core.brackets import liq_price_long, liq_price_short
from core.errors import InputError
from core.estimator import Estimate, EstimatorParams, fast, reference
from core.estimator.fast import first_crossing
from core.estimator.levels import churn, keep_factors, new_levels
from core.estimator.params import entry_grid, long_share, margin_terms
from core.synthetic import synthetic_bars
from core.tiers import PRESETS, tier_set

T0 = 1_767_225_600_000
H = 3_600_000
NAN = math.nan

ONE_TIER = tier_set("custom", {10: 1.0})
LP10 = 100 * 0.9 / 0.996  # long 10x from an entry of 100, tier-1 mmr 0.4%
SP10 = 100 * 1.1 / 1.004  # short 10x
LP50 = 100 * 0.98 / 0.996
SP50 = 100 * 1.02 / 1.004


def bars_of(
    rows: Sequence[tuple[float, float, float, float, float]],
    volume: Sequence[float] | None = None,
    taker: Sequence[float] | None = None,
) -> Bars:
    """Bars from (open, high, low, close, oi_usd) rows, one hour apart."""
    o, h, lo, c, oi = (np.array(col, dtype=float) for col in zip(*rows, strict=True))
    return make_bars(
        ts=T0 + H * np.arange(len(rows)),
        open=o,
        high=h,
        low=lo,
        close=c,
        oi_usd=oi,
        volume_usd=volume,
        taker_buy_usd=taker,
    )


def assert_same_estimate(a: Estimate, b: Estimate, rtol: float = 1e-9) -> None:
    """Predictions, totals and the multiset of surviving levels agree to ``rtol``.

    The absolute floor is ``rtol`` times the total mass added, so sums that cancel (shrunk) and
    masses shrunk to nearly nothing compare on the scale of the run.
    """
    scale = float(max(a.added_usd.max(), b.added_usd.max(), 1.0))
    atol = rtol * scale
    for name in ("pred_long_usd", "pred_short_usd", "added_usd", "consumed_usd", "shrunk_usd"):
        np.testing.assert_allclose(
            getattr(a, name), getattr(b, name), rtol=rtol, atol=atol, err_msg=name
        )
    np.testing.assert_allclose(a.remaining_usd, b.remaining_usd, rtol=rtol, atol=atol)
    for side in ("longs", "shorts"):
        sa, sb = getattr(a, side), getattr(b, side)
        assert sa.price.shape == sb.price.shape, side
        oa = np.lexsort((sa.usd, sa.tier, sa.price))
        ob = np.lexsort((sb.usd, sb.tier, sb.price))
        np.testing.assert_array_equal(sa.price[oa], sb.price[ob], err_msg=side)
        np.testing.assert_array_equal(sa.tier[oa], sb.tier[ob], err_msg=side)
        np.testing.assert_allclose(sa.usd[oa], sb.usd[ob], rtol=rtol, atol=atol, err_msg=side)


# --- long share ------------------------------------------------------------------------------

# (side_split, (o, h, l, c), volume, taker_buy, expected share)
SHARE_TABLE = [
    ("half", (100, 105, 95, 104), 100.0, 90.0, 0.5),
    ("candle", (100, 105, 95, 104), NAN, NAN, 0.5 + 0.2 * 0.4),
    ("candle", (104, 105, 95, 100), NAN, NAN, 0.5 - 0.2 * 0.4),
    ("candle", (100, 100, 100, 100), NAN, NAN, 0.5),  # flat bar: no body, no tilt
    ("taker", (100, 105, 95, 104), 100.0, 70.0, 0.9),  # 0.5 + 2 (0.7 - 0.5)
    ("taker", (100, 105, 95, 104), 100.0, 45.0, 0.4),
    ("taker", (100, 105, 95, 104), 100.0, 80.0, 0.95),  # 1.1 clipped
    ("taker", (100, 105, 95, 104), 100.0, 10.0, 0.05),  # -0.3 clipped
    ("taker", (100, 105, 95, 104), NAN, 70.0, 0.58),  # no volume: candle fallback
    ("taker", (100, 105, 95, 104), 100.0, NAN, 0.58),  # no taker-buy: candle fallback
    ("taker", (100, 105, 95, 104), 0.0, 0.0, 0.58),  # zero volume: candle fallback
]


@pytest.mark.parametrize(("split", "ohlc", "volume", "taker", "expected"), SHARE_TABLE)
def test_long_share_table(
    split: str, ohlc: tuple[float, ...], volume: float, taker: float, expected: float
) -> None:
    bars = bars_of([(*ohlc, 1e9)], volume=[volume], taker=[taker])
    share = long_share(bars, EstimatorParams(side_split=split))  # type: ignore[arg-type]
    assert share.shape == (1,)
    assert share[0] == pytest.approx(expected, abs=1e-12)


def test_candle_share_is_clipped() -> None:
    bars = bars_of([(95, 105, 95, 105, 1e9), (105, 105, 95, 95, 1e9)])
    share = long_share(bars, EstimatorParams(side_split="candle", candle_tilt=0.5))
    np.testing.assert_allclose(share, [0.95, 0.05])


def test_taker_gain_and_per_bar_fallback() -> None:
    bars = bars_of(
        [(100, 105, 95, 104, 1e9), (100, 105, 95, 104, 1e9), (104, 105, 95, 100, 1e9)],
        volume=[200.0, NAN, 100.0],
        taker=[110.0, 5.0, 50.0],
    )
    share = long_share(bars, EstimatorParams(side_split="taker", side_gain=3.0))
    np.testing.assert_allclose(share, [0.5 + 3 * 0.05, 0.58, 0.5])


# --- entry grid ------------------------------------------------------------------------------


def _ranged(rel_range: float, n: int = 5) -> Bars:
    """Bars whose range is ``rel_range`` of the open, with varied levels."""
    o = 100.0 + np.arange(n)
    return bars_of([(oi, oi * (1 + rel_range / 2), oi * (1 - rel_range / 2), oi, 1e9) for oi in o])


@pytest.mark.parametrize(
    ("rel_range", "points", "spacing", "k"),
    [
        (0.0021, 9, 0.0005, 5),  # 4.2 spacings -> 5 points
        (0.0001, 9, 0.0005, 1),  # a range smaller than one spacing -> 1 point (the middle)
        (0.01, 9, 0.0005, 9),  # 20 spacings, capped at entry_points
        (0.01, 3, 0.0005, 3),
        (0.0035, 64, 0.001, 4),
        (0.0, 9, 0.0005, 1),  # flat bars
    ],
)
def test_entry_grid_range_count_and_placement(
    rel_range: float, points: int, spacing: float, k: int
) -> None:
    bars = _ranged(rel_range)
    bar, flat_prices, flat_weights = entry_grid(
        bars, EstimatorParams(entry="range", entry_points=points, entry_spacing=spacing)
    )
    # Every bar of _ranged has the same relative range, so each gets k rows, in bar order.
    np.testing.assert_array_equal(bar, np.repeat(np.arange(len(bars)), k))
    prices, weights = flat_prices.reshape(len(bars), k), flat_weights.reshape(len(bars), k)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    np.testing.assert_allclose(weights, 1.0 / k)
    lo, hi = bars.low[:, None], bars.high[:, None]
    assert ((prices >= lo) & (prices <= hi)).all()
    if rel_range > 0:
        assert ((prices > lo) & (prices < hi)).all()  # midpoints of k equal slices
        steps = np.diff(prices, axis=1)
        np.testing.assert_allclose(steps, np.broadcast_to((hi - lo) / k, steps.shape), rtol=1e-9)
    np.testing.assert_allclose(prices.mean(axis=1), (bars.high + bars.low) / 2, rtol=1e-12)


def test_entry_grid_vwap_and_close() -> None:
    bars = bars_of([(100, 110, 90, 107, 1e9), (107, 108, 101, 102, 1e9)])
    bar, vwap, w = entry_grid(bars, EstimatorParams(entry="vwap"))
    np.testing.assert_allclose(vwap, [(110 + 90 + 107) / 3, (108 + 101 + 102) / 3])
    assert bar.tolist() == [0, 1] and w.tolist() == [1.0, 1.0]
    bar, close, w = entry_grid(bars, EstimatorParams(entry="close"))
    assert close.tolist() == [107.0, 102.0] and w.tolist() == [1.0, 1.0]
    close[0] = -1.0  # a copy: the bars stay untouched
    assert bars.close[0] == 107.0


# --- keep factors and churn ------------------------------------------------------------------


def _oi_bars(oi: Sequence[float], volume: Sequence[float] | None = None) -> Bars:
    return bars_of([(100, 101, 99, 100, x) for x in oi], volume=volume)


@pytest.mark.parametrize(
    ("oi", "volume", "kwargs", "expected"),
    [
        ([100, 80, 80, 120, 60], None, {"turnover": 0.0}, [1, 0.8, 1, 1, 0.5]),
        # Turnover closes as much as it opens: bar 1 closes 20 (OI) + 0.1 x 100 (churn).
        ([100, 80, 80], [50, 100, 0], {"turnover": 0.1}, [1, 0.7, 1]),
        ([100, 120], [0, 100], {"turnover": 0.5}, [1, 0.5]),  # OI up, churn still shrinks
        ([100, 120], [0, NAN], {"turnover": 0.5}, [1, 1]),  # NaN volume: no churn
        ([100, 0, 50], None, {"turnover": 0.0}, [1, 1e-9, 1]),  # floor; OI from 0: no shrink
        ([100, 10], [0, 500], {"turnover": 0.5}, [1, 1e-9]),  # closes more than there was
        ([100, 50], None, {"turnover": 0.0, "oi_shrink": False}, [1, 1]),
        ([100, 50, 50], None, {"turnover": 0.0, "half_life_bars": 1.0}, [1, 0.25, 0.5]),
        (
            [100, 100, 100],
            None,
            {"turnover": 0.0, "oi_shrink": False, "half_life_bars": 2.0},
            [1, 0.5**0.5, 0.5**0.5],
        ),
    ],
)
def test_keep_factors_table(
    oi: list[float], volume: list[float] | None, kwargs: dict, expected: list[float]
) -> None:
    keep = keep_factors(_oi_bars(oi, volume), EstimatorParams(**kwargs))
    np.testing.assert_allclose(keep, expected, rtol=1e-12)


def test_churn_is_turnover_times_volume_except_bar_zero() -> None:
    bars = _oi_bars([100, 100, 100, 100], volume=[1000, 200, NAN, 0])
    np.testing.assert_allclose(churn(bars, EstimatorParams(turnover=0.25)), [0, 50, 0, 0])
    np.testing.assert_array_equal(churn(bars, EstimatorParams(turnover=0.0)), np.zeros(4))


def test_decay_per_bar() -> None:
    assert EstimatorParams().decay_per_bar == 1.0
    assert EstimatorParams(half_life_bars=1).decay_per_bar == 0.5
    assert EstimatorParams(half_life_bars=24).decay_per_bar ** 24 == pytest.approx(0.5)


def test_margin_terms_pick_the_bracket_of_the_typical_position() -> None:
    assert margin_terms(EstimatorParams(position_usd=10_000)) == (0.004, 0.0)
    mmr, ratio = margin_terms(EstimatorParams(position_usd=400_000))
    assert mmr == 0.005 and ratio == pytest.approx(300 / 400_000)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"side_split": "coin"}, "unknown side split"),
        ({"entry": "open"}, "unknown entry model"),
        ({"entry_points": 0}, "entry_points"),
        ({"entry_points": 65}, "entry_points"),
        ({"entry_spacing": 0.0}, "entry_spacing"),
        ({"entry_spacing": 0.2}, "entry_spacing"),
        ({"side_gain": -1.0}, "side_gain"),
        ({"candle_tilt": 0.6}, "candle_tilt"),
        ({"position_usd": 0.0}, "position_usd"),
        ({"turnover": 1.0}, "turnover"),
        ({"turnover": -0.1}, "turnover"),
        ({"half_life_bars": 0.0}, "half_life_bars"),
    ],
)
def test_bad_params_raise_input_error(kwargs: dict, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment):
        EstimatorParams(**kwargs)


# --- new levels ------------------------------------------------------------------------------


def test_new_levels_split_oi_rise_over_sides_entries_and_tiers() -> None:
    bars = bars_of(
        [(100, 100, 100, 100, 1000), (100, 102, 98, 100, 1400), (100, 102, 98, 100, 1300)],
        volume=[0, 1000, 1000],
        taker=[0, 600, 600],
    )
    params = EstimatorParams(
        tiers=tier_set("custom", {10: 1, 50: 3}), entry="range", entry_points=2, turnover=0.1
    )
    fresh = new_levels(bars, params)
    # Bar 0 opens nothing (no previous OI); bars 1 and 2 have two entry points each.
    np.testing.assert_array_equal(fresh.bar, [1, 1, 2, 2])
    np.testing.assert_array_equal(fresh.offsets, [0, 0, 2, 4])
    assert fresh.long_price.shape == (4, 2)
    bar1, bar2 = slice(0, 2), slice(2, 4)
    # Bar 1 opens dOI 400 + churn 100 = 500, 70% long (taker 0.6 amplified by 2).
    assert fresh.long_usd[bar1].sum() == pytest.approx(350.0)
    assert fresh.short_usd[bar1].sum() == pytest.approx(150.0)
    np.testing.assert_allclose(fresh.long_usd[bar1], [[43.75, 131.25], [43.75, 131.25]])
    # Bar 2: OI fell, churn alone opens 100.
    assert fresh.long_usd[bar2].sum() + fresh.short_usd[bar2].sum() == pytest.approx(100.0)
    # Entries 99 and 101 (midpoints of the two halves of 98..102), each at 10x and 50x.
    entries = np.array([99.0, 101.0])[:, None]
    lev = np.array([10.0, 50.0])[None, :]
    np.testing.assert_allclose(fresh.long_price[bar1], liq_price_long(entries, lev, 0.004))
    np.testing.assert_allclose(fresh.short_price[bar1], liq_price_short(entries, lev, 0.004))


def test_new_levels_apply_the_maintenance_amount() -> None:
    bars = bars_of([(95_000, 95_000, 95_000, 95_000, 1e9), (95_000, 95_500, 94_500, 95_000, 2e9)])
    params = EstimatorParams(
        tiers=tier_set("custom", {50: 1}), entry="close", position_usd=400_000, turnover=0.0
    )
    fresh = new_levels(bars, params)
    np.testing.assert_array_equal(fresh.bar, [1])  # only bar 1 opened anything
    assert fresh.long_price[0, 0] == pytest.approx(93_496.23, abs=0.01)
    assert fresh.short_price[0, 0] == pytest.approx(96_488.81, abs=0.01)


# --- hand-worked scenarios -------------------------------------------------------------------

ESTIMATORS = [
    pytest.param(reference.estimate, id="reference"),
    pytest.param(fast.estimate, id="fast"),
]


@pytest.mark.parametrize("estimate", ESTIMATORS)
def test_one_tier_close_entry_with_oi_shrink(estimate) -> None:
    """OI doubles in bar 1 (+1000, half long), falls 25% in bar 2, bar 3 sweeps the long level and
    bar 4 the short one."""
    bars = bars_of(
        [
            (100, 100, 100, 100, 1000),
            (100, 101, 99, 100, 2000),
            (100, 105, 95, 100, 1500),
            (100, 104, 90, 100, 1500),
            (100, 110, 99, 100, 1500),
        ]
    )
    params = EstimatorParams(tiers=ONE_TIER, side_split="half", entry="close", turnover=0.0)
    mid = estimate(bars.slice(0, 3), params)
    assert mid.longs.price.tolist() == [pytest.approx(LP10, rel=1e-15)]
    assert mid.shorts.price.tolist() == [pytest.approx(SP10, rel=1e-15)]
    assert mid.longs.usd.tolist() == [pytest.approx(375.0)]
    assert mid.shorts.usd.tolist() == [pytest.approx(375.0)]
    assert mid.longs.tier.tolist() == [0]

    est = estimate(bars, params)
    np.testing.assert_allclose(est.pred_long_usd, [0, 0, 0, 375, 0], atol=1e-12)
    np.testing.assert_allclose(est.pred_short_usd, [0, 0, 0, 0, 375], atol=1e-12)
    np.testing.assert_allclose(est.added_usd, [500, 500])
    np.testing.assert_allclose(est.consumed_usd, [375, 375])
    np.testing.assert_allclose(est.shrunk_usd, [125, 125])
    assert est.longs.price.size == est.shorts.price.size == 0
    np.testing.assert_allclose(est.remaining_usd, [0, 0])


@pytest.mark.parametrize("estimate", ESTIMATORS)
def test_two_tiers_taker_turnover_and_decay(estimate) -> None:
    bars = bars_of(
        [
            (100, 100, 100, 100, 1000),
            (100, 101, 99, 100, 1400),
            (100, 101, 99.5, 100, 1400),
            (100, 101.6, 98, 100, 1400),
        ],
        volume=[NAN, 1000, NAN, NAN],
        taker=[NAN, 600, NAN, NAN],
    )
    params = EstimatorParams(
        tiers=tier_set("custom", {10: 1, 50: 1}),
        side_split="taker",
        entry="close",
        turnover=0.1,
        half_life_bars=1.0,
    )
    est = estimate(bars, params)
    # Bar 1 opens 400 + 0.1 x 1000 = 500, 70% long, half at each tier. Bar 2 halves every level
    # (decay); bar 3 sweeps the 50x levels (98 <= LP50, 101.6 >= SP50) and halves the rest.
    np.testing.assert_allclose(est.pred_long_usd, [0, 0, 0, 87.5], atol=1e-12)
    np.testing.assert_allclose(est.pred_short_usd, [0, 0, 0, 37.5], atol=1e-12)
    np.testing.assert_allclose(est.added_usd, [350, 150])
    np.testing.assert_allclose(est.consumed_usd, [87.5, 37.5])
    np.testing.assert_allclose(est.shrunk_usd, [218.75, 93.75])
    assert est.longs.price.tolist() == [pytest.approx(LP10)]
    assert est.longs.usd.tolist() == [pytest.approx(43.75)]
    assert est.shorts.price.tolist() == [pytest.approx(SP10)]
    assert est.shorts.usd.tolist() == [pytest.approx(18.75)]
    assert LP50 > 98 and SP50 < 101.6 and LP10 < 98 and SP10 > 101.6


@pytest.mark.parametrize("estimate", ESTIMATORS)
def test_a_bar_touching_a_level_exactly_consumes_it(estimate) -> None:
    lp = float(liq_price_long(np.array(100.0), np.array(10.0), 0.004))
    sp = float(liq_price_short(np.array(100.0), np.array(10.0), 0.004))
    bars = bars_of(
        [(100, 100, 100, 100, 1000), (100, 100, 100, 100, 2000), (100, sp, lp, 100, 2000)]
    )
    params = EstimatorParams(tiers=ONE_TIER, side_split="half", entry="close", turnover=0.0)
    est = estimate(bars, params)
    np.testing.assert_allclose(est.pred_long_usd, [0, 0, 500])
    np.testing.assert_allclose(est.pred_short_usd, [0, 0, 500])


@pytest.mark.parametrize("estimate", ESTIMATORS)
def test_levels_are_not_consumed_by_the_bar_that_opened_them(estimate) -> None:
    """The opening bar's own wick already passed a 10x level; it is first checked one bar later."""
    bars = bars_of(
        [(100, 100, 100, 100, 1000), (100, 120, 80, 100, 2000), (100, 100, 100, 100, 2000)]
    )
    params = EstimatorParams(tiers=ONE_TIER, side_split="half", entry="close", turnover=0.0)
    est = estimate(bars, params)
    assert est.pred_long_usd.tolist() == [0.0, 0.0, 0.0]
    np.testing.assert_allclose(est.remaining_usd, [500, 500])


@pytest.mark.parametrize("estimate", ESTIMATORS)
def test_zero_bars_give_an_empty_estimate(estimate) -> None:
    est = estimate(synthetic_bars(3).slice(0, 0), EstimatorParams())
    assert est.pred_long_usd.shape == (0,)
    assert est.longs.price.size == 0


# --- fast == reference -----------------------------------------------------------------------

COMBOS = [
    pytest.param(1, H, {}, id="defaults-1h"),
    pytest.param(
        2, 60_000, {"tiers": PRESETS["coinglass"], "entry": "vwap"}, id="coinglass-vwap-1m"
    ),
    pytest.param(
        3,
        300_000,
        {"tiers": PRESETS["coinank"], "entry": "close", "side_split": "candle"},
        id="coinank-close-candle-5m",
    ),
    pytest.param(
        4,
        H,
        {
            "tiers": tier_set("custom", {10: 0.3, 50: 0.5, 125: 0.2}),
            "side_split": "half",
            "half_life_bars": 24.0,
            "turnover": 0.0,
        },
        id="custom-half-decay-no-turnover",
    ),
    pytest.param(
        5,
        900_000,
        {"oi_shrink": False, "turnover": 0.5, "half_life_bars": 6.0},
        id="full-no-shrink-turnover-decay-15m",
    ),
    pytest.param(
        6,
        60_000,
        {"tiers": PRESETS["coinglass"], "entry_points": 3, "position_usd": 5e6, "side_gain": 0.0},
        id="coinglass-range3-bracket4",
    ),
    pytest.param(
        7, 4 * H, {"entry": "range", "entry_points": 64, "entry_spacing": 0.0001}, id="range64-4h"
    ),
]


@pytest.mark.parametrize(("seed", "interval", "kwargs"), COMBOS)
def test_fast_equals_reference_on_synthetic_bars(seed: int, interval: int, kwargs: dict) -> None:
    bars = synthetic_bars(240, interval_ms=interval, seed=seed)
    params = EstimatorParams(**kwargs)
    ref = reference.estimate(bars, params)
    got = fast.estimate(bars, params)
    assert ref.pred_long_usd.sum() > 0 and ref.pred_short_usd.sum() > 0  # the test has teeth
    assert ref.longs.price.size > 0 and ref.shorts.price.size > 0
    assert_same_estimate(ref, got)


@pytest.mark.parametrize("entry", ["range", "vwap", "close"])
def test_estimator_is_causal_for_a_fixed_entry_grid(entry: str) -> None:
    """Bar t's prediction uses bars before t only: a run on bars[:t] agrees with the full run.

    1h ranges hold far more than 9 entry spacings, so the range grid is the same for any prefix.
    """
    bars = synthetic_bars(300, interval_ms=H, seed=11)
    params = EstimatorParams(entry=entry)  # type: ignore[arg-type]
    full = fast.estimate(bars, params)
    for t in (2, 57, 150, 299):
        part = fast.estimate(bars.slice(0, t), params)
        np.testing.assert_allclose(part.pred_long_usd, full.pred_long_usd[:t], rtol=1e-9)
        np.testing.assert_allclose(part.pred_short_usd, full.pred_short_usd[:t], rtol=1e-9)


def test_entry_range_grid_does_not_look_ahead() -> None:
    base = synthetic_bars(400, interval_ms=60_000, seed=3)  # 1m bars: ~3 entry points
    body_hi = np.maximum(base.open, base.close)
    body_lo = np.minimum(base.open, base.close)
    high, low = base.high.copy(), base.low.copy()
    high[200:] = body_hi[200:] * 1.003  # a later, much wider regime: 9 entry points
    low[200:] = body_lo[200:] * 0.997
    bars = make_bars(
        ts=base.ts,
        open=base.open,
        high=high,
        low=low,
        close=base.close,
        oi_usd=base.oi_usd,
        volume_usd=base.volume_usd,
        taker_buy_usd=base.taker_buy_usd,
    )
    params = EstimatorParams(entry="range")
    full = fast.estimate(bars, params)
    part = fast.estimate(bars.slice(0, 200), params)
    np.testing.assert_allclose(part.pred_long_usd, full.pred_long_usd[:200], rtol=1e-9)


# --- first crossing --------------------------------------------------------------------------


def naive_first_crossing(
    extreme: np.ndarray, start: np.ndarray, level: np.ndarray, is_long: bool
) -> np.ndarray:
    n = extreme.size
    out = np.full(start.size, n, dtype=np.intp)
    for i in range(start.size):
        for j in range(int(start[i]), n):
            if (extreme[j] <= level[i]) if is_long else (extreme[j] >= level[i]):
                out[i] = j
                break
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 16, 33, 100])
@pytest.mark.parametrize("is_long", [True, False])
def test_first_crossing_matches_a_naive_loop(n: int, is_long: bool) -> None:
    rng = np.random.default_rng(n * 2 + is_long)
    extreme = np.round(100 + np.cumsum(rng.normal(0, 1, n)), 1)
    m = 300
    start = rng.integers(0, n + 1, m)
    # Levels drawn from the extremes themselves (exact ties) and from around them.
    level = np.where(
        rng.random(m) < 0.3,
        rng.choice(extreme, m),
        rng.uniform(extreme.min() - 2, extreme.max() + 2, m),
    )
    got = first_crossing(extreme, start, level, is_long)
    assert got.dtype == np.intp
    np.testing.assert_array_equal(got, naive_first_crossing(extreme, start, level, is_long))


def test_first_crossing_edge_cases() -> None:
    lows = np.array([5.0, 4.0, 3.0, 2.0])
    got = first_crossing(lows, np.array([0, 0, 2, 4]), np.array([4.5, 1.0, 3.0, 9.0]), True)
    assert got.tolist() == [1, 4, 2, 4]
    assert first_crossing(np.zeros(0), np.array([0]), np.array([1.0]), True).tolist() == [0]
    assert first_crossing(lows, np.zeros(0, dtype=np.intp), np.zeros(0), False).size == 0
