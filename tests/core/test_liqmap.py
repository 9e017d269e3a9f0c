"""LiqMap: the binned map, its windows, bands, cumulative curves and combination; build_map."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from core.bars import make_bars
from core.errors import DataError, InputError
from core.estimator import EstimatorParams, fast, reference
from core.liqmap import DEFAULT_BANDS, LiqMap, bin_levels, combine, grid_for
from core.mapbuild import build_map
from core.synthetic import synthetic_bars
from core.tiers import PRESETS

TS = 1_768_341_600_000


def lmap(
    long_rows: Sequence[Sequence[float]],
    short_rows: Sequence[Sequence[float]] | None = None,
    *,
    origin: float = 90.0,
    bin_size: float = 1.0,
    price: float = 100.5,
    leverages: Sequence[float] = (10.0,),
    symbol: str = "BTC",
    venues: tuple[str, ...] = ("binance",),
    atr: float = 2.0,
    ts_ms: int = TS,
) -> LiqMap:
    long_usd = np.array(long_rows, dtype=float)
    short_usd = np.zeros_like(long_usd) if short_rows is None else np.array(short_rows, float)
    return LiqMap(
        symbol=symbol,
        venues=venues,
        ts_ms=ts_ms,
        price=price,
        atr=atr,
        bin_size=bin_size,
        origin=origin,
        leverages=tuple(leverages),
        long_usd=long_usd,
        short_usd=short_usd,
    )


def test_grid_properties() -> None:
    m = lmap([[1, 2, 3, 4]], origin=90.0, bin_size=2.5, price=95.1)
    assert m.n_bins == 4
    np.testing.assert_allclose(m.price_low, [90, 92.5, 95, 97.5])
    np.testing.assert_allclose(m.price_high, [92.5, 95, 97.5, 100])
    assert m.price_bin == 2
    np.testing.assert_allclose(m.long_total, [1, 2, 3, 4])
    assert lmap([[1.0]], price=80.0).price_bin == -10


def test_cumulative_curves_by_hand() -> None:
    m = lmap([[1, 2, 0, 0], [3, 0, 0, 0]], [[0, 0, 5, 1], [0, 0, 0, 2]], leverages=(10, 50))
    # Longs summed from each bin upward (what a fall to that bin liquidates).
    np.testing.assert_allclose(m.cum_long, [6, 2, 0, 0])
    # Shorts summed from each bin downward (what a rise to that bin liquidates).
    np.testing.assert_allclose(m.cum_short, [0, 0, 5, 8])


# --- window ----------------------------------------------------------------------------------


def test_window_keeps_the_bins_within_pct_of_price() -> None:
    long_usd = np.arange(20.0)[None, :]
    m = lmap(long_usd, long_usd * 10, origin=90.0, price=100.3)
    w = m.window(5.0)  # 95.285 .. 105.315: bins 95..96 to 105..106
    assert w.origin == 95.0 and w.n_bins == 11
    np.testing.assert_allclose(w.price_low, np.arange(95.0, 106.0))
    np.testing.assert_array_equal(w.long_usd[0], np.arange(5.0, 16.0))
    np.testing.assert_array_equal(w.short_usd[0], np.arange(5.0, 16.0) * 10)
    assert (w.price, w.atr, w.symbol, w.leverages, w.ts_ms) == (100.3, 2.0, "BTC", (10.0,), TS)


def test_wide_window_is_the_whole_map_and_far_price_gives_an_empty_map() -> None:
    m = lmap([np.ones(20)], origin=90.0, price=100.0)
    whole = m.window(100.0)
    assert whole.n_bins == 20 and whole.origin == 90.0
    far = lmap([np.ones(20)], origin=90.0, price=1_000.0).window(1.0)
    assert far.n_bins == 0 and far.long_usd.shape == (1, 0)
    assert far.cumulative_peaks().long_usd == 0.0


@pytest.mark.parametrize("pct", [0.0, -3.0])
def test_window_rejects_non_positive_range(pct: float) -> None:
    with pytest.raises(InputError, match="range must be positive"):
        lmap([[1.0]]).window(pct)


# --- banded ----------------------------------------------------------------------------------


def test_banded_groups_tiers_by_upper_edge_and_conserves_mass() -> None:
    levs = (5.0, 10.0, 20.0, 25.0, 40.0, 75.0, 125.0, 200.0)
    rng = np.random.default_rng(1)
    long_usd = rng.uniform(0, 10, (len(levs), 6))
    short_usd = rng.uniform(0, 10, (len(levs), 6))
    m = lmap(long_usd, short_usd, leverages=levs)
    b = m.banded()
    assert b.leverages == DEFAULT_BANDS
    np.testing.assert_allclose(b.long_usd[0], long_usd[0] + long_usd[1])  # 5x, 10x -> 10
    np.testing.assert_allclose(b.long_usd[1], long_usd[2] + long_usd[3])  # 20x, 25x -> 25
    np.testing.assert_allclose(b.long_usd[2], long_usd[4])  # 40x -> 50
    np.testing.assert_allclose(b.long_usd[3], long_usd[5])  # 75x -> 100
    np.testing.assert_allclose(b.long_usd[4], long_usd[6] + long_usd[7])  # 125x, 200x -> 150
    np.testing.assert_allclose(b.short_usd.sum(axis=0), short_usd.sum(axis=0))
    np.testing.assert_allclose(b.long_total, m.long_total)
    assert (b.origin, b.n_bins, b.price) == (m.origin, m.n_bins, m.price)


def test_banded_keeps_only_used_bands() -> None:
    m = lmap([[1.0, 2.0], [3.0, 4.0]], leverages=(25.0, 100.0))
    b = m.banded()
    assert b.leverages == (25.0, 100.0)
    b2 = m.banded(edges=(50.0, 10.0))  # unsorted edges are sorted; 100x joins the last band
    assert b2.leverages == (50.0,)
    np.testing.assert_allclose(b2.long_usd, [[4.0, 6.0]])


def test_full_preset_bands_read_like_coinglass() -> None:
    levs = PRESETS["full"].leverages
    m = lmap(np.ones((len(levs), 3)), leverages=levs)
    b = m.banded()
    assert b.leverages == DEFAULT_BANDS
    # 5,10 | 15..25 | 30..50 | 55..100 | 105..150
    np.testing.assert_allclose(b.long_usd[:, 0], [2, 3, 5, 10, 10])


# --- combine ---------------------------------------------------------------------------------


def test_combine_aligns_grids_and_unites_tiers() -> None:
    a = lmap(
        [[1, 1, 1], [2, 2, 2]],
        [[5, 0, 0], [0, 0, 0]],
        origin=90.0,
        price=100.0,
        leverages=(10, 25),
        venues=("binance",),
        atr=2.0,
        ts_ms=TS,
    )
    b = lmap(
        [[7, 7], [9, 9]],
        [[0, 3], [0, 1]],
        origin=91.0,
        price=101.0,
        leverages=(25, 100),
        venues=("okx",),
        atr=math.nan,
        ts_ms=TS + 60_000,
    )
    c = combine([a, b])
    assert c.leverages == (10.0, 25.0, 100.0)
    assert c.origin == 90.0 and c.n_bins == 3
    np.testing.assert_allclose(c.long_usd, [[1, 1, 1], [2, 9, 9], [0, 9, 9]])
    np.testing.assert_allclose(c.short_usd, [[5, 0, 0], [0, 0, 3], [0, 0, 1]])
    assert c.venues == ("binance", "okx")
    assert c.price == 100.5
    assert c.atr == 2.0  # NaN ATRs are left out of the mean
    assert c.ts_ms == TS + 60_000
    assert c.long_usd.sum() == a.long_usd.sum() + b.long_usd.sum()


def test_combine_disjoint_grids_leaves_a_gap() -> None:
    a = lmap([[1.0, 2.0]], origin=90.0)
    b = lmap([[3.0]], origin=95.0)
    c = combine([a, b, a])
    assert c.origin == 90.0 and c.n_bins == 6
    np.testing.assert_allclose(c.long_usd, [[2, 4, 0, 0, 0, 3]])
    assert c.venues == ("binance",)


def test_combine_errors() -> None:
    with pytest.raises(InputError, match="nothing to combine"):
        combine([])
    with pytest.raises(InputError, match="bin sizes"):
        combine([lmap([[1.0]]), lmap([[1.0]], bin_size=2.0)])
    with pytest.raises(InputError, match="symbols"):
        combine([lmap([[1.0]]), lmap([[1.0]], symbol="ETH")])


# --- cumulative peaks ------------------------------------------------------------------------


def test_cumulative_peaks_when_mass_reaches_the_map_edges() -> None:
    # Bins 90..99 below the price 100.5; long mass down to the first bin, short mass up to the last.
    long_usd = np.array([[4, 0, 1, 0, 0, 0, 0, 0, 2, 3, 0, 0, 0, 0, 0]], float)
    short_usd = np.array([[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 1, 0, 5]], float)
    p = lmap(long_usd, short_usd).cumulative_peaks()
    assert p.long_usd == 10.0 and p.long_price == 90.0
    assert p.short_usd == 12.0 and p.short_price == 105.0


def test_cumulative_short_peak_is_where_the_curve_stops_rising() -> None:
    # The last short mass is in bin 102..103; bins above add nothing.
    short_usd = np.array([[0] * 10 + [6, 0, 1, 0, 0, 0]], float)
    p = lmap(np.zeros((1, 16)), short_usd).cumulative_peaks()
    assert p.short_usd == 7.0
    assert p.short_price == 103.0
    assert p.long_usd == 0.0 and p.long_price == 100.5  # no longs: the price itself


def test_cumulative_long_peak_is_where_the_curve_stops_rising() -> None:
    # The lowest long mass is in bin 97..98; bins 90..97 add nothing.
    long_usd = np.array([[0, 0, 0, 0, 0, 0, 0, 4, 0, 3, 0, 0]], float)
    p = lmap(long_usd).cumulative_peaks()
    assert p.long_usd == 7.0
    assert p.long_price == 97.0


# --- bin_levels and grid_for -----------------------------------------------------------------


def test_bin_levels_sums_per_tier_and_drops_levels_off_the_grid() -> None:
    prices = np.array([89.99, 90.0, 90.5, 91.2, 93.999, 94.0, 95.0, 91.0])
    usd = np.array([100.0, 1.0, 2.0, 4.0, 8.0, 1000.0, 1000.0, 16.0])
    tier = np.array([0, 0, 0, 0, 0, 0, 1, 1], dtype=np.intp)
    out = bin_levels(prices, usd, tier, 2, 1.0, 90.0, 4)
    assert out.shape == (2, 4)
    np.testing.assert_allclose(out, [[3, 4, 0, 8], [0, 16, 0, 0]])


def test_grid_for_covers_levels_and_price() -> None:
    origin, n = grid_for(np.array([93_512.3, 97_004.9]), 95_000.0, 100.0)
    assert (origin, n) == (93_500.0, 36)
    origin, n = grid_for(np.array([95_100.0]), 94_050.0, 100.0)
    assert (origin, n) == (94_000.0, 12)
    assert grid_for(np.zeros(0), 95_050.0, 100.0) == (95_000.0, 1)
    with pytest.raises(InputError, match="bin size must be positive"):
        grid_for(np.zeros(0), 1.0, 0.0)


@pytest.mark.parametrize(("low", "bin_size"), [(770.0, 1.1), (110.3, 0.1)])
def test_grid_for_keeps_the_lowest_level(low: float, bin_size: float) -> None:
    prices = np.array([low, low + 5 * bin_size])
    origin, n = grid_for(prices, low + 2 * bin_size, bin_size)
    out = bin_levels(prices, np.ones(2), np.zeros(2, dtype=np.intp), 1, bin_size, origin, n)
    assert out.sum() == 2.0


# --- build_map -------------------------------------------------------------------------------


def test_build_map_bins_every_surviving_level() -> None:
    bars = synthetic_bars(300, interval_ms=3_600_000, seed=5)
    params = EstimatorParams(tiers=PRESETS["coinglass"])
    m = build_map(bars, params, symbol="BTC", venue="binance")
    est = fast.estimate(bars, params)
    assert m.symbol == "BTC" and m.venues == ("binance",)
    assert m.price == bars.close[-1]
    assert m.ts_ms == int(bars.ts[-1]) + 3_600_000  # the map is as of the last bar's close
    assert m.bin_size == 100.0 and m.origin % 100.0 == 0.0
    assert m.leverages == (10.0, 25.0, 50.0, 100.0)
    assert m.long_usd.sum() == pytest.approx(est.longs.usd.sum(), rel=1e-12)
    assert m.short_usd.sum() == pytest.approx(est.shorts.usd.sum(), rel=1e-12)
    for t in range(4):
        assert m.long_usd[t].sum() == pytest.approx(est.longs.usd[est.longs.tier == t].sum())
    assert math.isfinite(m.atr) and m.atr > 0
    # Longs sit mostly below the price and shorts above it.
    assert m.long_total[: m.price_bin].sum() > 0.9 * m.long_total.sum()
    assert m.short_total[m.price_bin + 1 :].sum() > 0.9 * m.short_total.sum()


def test_build_map_with_the_reference_estimator_and_a_custom_bin() -> None:
    bars = synthetic_bars(120, interval_ms=3_600_000, seed=9)
    params = EstimatorParams(tiers=PRESETS["coinglass"])
    a = build_map(bars, params, symbol="BTC", venue="x", bin_size=250.0)
    b = build_map(
        bars, params, symbol="BTC", venue="x", bin_size=250.0, estimator=reference.estimate
    )
    assert a.bin_size == 250.0 and a.n_bins == b.n_bins and a.origin == b.origin
    np.testing.assert_allclose(a.long_usd, b.long_usd, rtol=1e-9, atol=1e-3)
    np.testing.assert_allclose(a.short_usd, b.short_usd, rtol=1e-9, atol=1e-3)


def test_build_map_needs_two_bars_and_oi_on_every_bar() -> None:
    bars = synthetic_bars(10, interval_ms=3_600_000)
    with pytest.raises(DataError, match="at least 2 bars"):
        build_map(bars.slice(0, 1), EstimatorParams(), symbol="BTC", venue="x")
    oi = bars.oi_usd.copy()
    oi[4] = np.nan
    holed = make_bars(
        ts=bars.ts, open=bars.open, high=bars.high, low=bars.low, close=bars.close, oi_usd=oi
    )
    with pytest.raises(DataError, match="oi_usd"):
        build_map(holed, EstimatorParams(), symbol="BTC", venue="x")


def test_up_to_uses_closed_bars_only() -> None:
    bars = synthetic_bars(48, interval_ms=3_600_000)
    t0 = int(bars.ts[0])
    w = bars.up_to(t0 + 10 * 3_600_000)  # bars 0..9 have closed by then
    assert len(w) == 10 and w.ts[-1] == t0 + 9 * 3_600_000
    w = bars.up_to(t0 + 10 * 3_600_000 - 1)
    assert len(w) == 9
    w = bars.up_to(t0 + 10 * 3_600_000, lookback_ms=4 * 3_600_000)
    assert w.ts.tolist() == [t0 + h * 3_600_000 for h in (6, 7, 8, 9)]
    with pytest.raises(DataError, match="closed bar"):
        bars.up_to(t0)
