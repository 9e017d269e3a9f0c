"""Tables of the per-position formulas: liquidation prices, Binance brackets, tier presets,
bin sizes, ATR and durations (DESIGN §4.1 steps 3-4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.bars import make_bars
from core.brackets import BINANCE_BTCUSDT, Brackets, liq_price_long, liq_price_short
from core.durations import parse_duration_ms
from core.errors import InputError
from core.mapbuild import atr, nice_bin_size
from core.tiers import PRESETS, TierSet, tier_set

# --- liquidation prices ----------------------------------------------------------------------

# (entry, leverage, mmr, cum/Q in USD, long LP, short LP), worked by hand from
# LP_long = (EP (1 - 1/L) - cum/Q) / (1 - mmr) and LP_short = (EP (1 + 1/L) + cum/Q) / (1 + mmr).
LP_TABLE = [
    (95_000.0, 100.0, 0.004, 0.0, 94_427.71, 95_567.73),
    (95_000.0, 10.0, 0.004, 0.0, 85_843.37, 104_083.67),
    (95_000.0, 125.0, 0.004, 0.0, 94_618.47, 95_378.49),
    # Tier 2 (300k-800k, mmr 0.5%, cum 300) for a 400k position: cum/Q = 300 / 400k * EP = 71.25.
    (95_000.0, 50.0, 0.005, 71.25, 93_496.23, 96_488.81),
    # Tier 4 (3M-12M, mmr 1%, cum 12,000) for a 5M position at 40k: cum/Q = 96.
    (40_000.0, 20.0, 0.01, 96.0, 38_286.87, 41_679.21),
]


@pytest.mark.parametrize(("ep", "lev", "mmr", "cum_q", "long_lp", "short_lp"), LP_TABLE)
def test_liquidation_price_table(
    ep: float, lev: float, mmr: float, cum_q: float, long_lp: float, short_lp: float
) -> None:
    lo = float(liq_price_long(np.array(ep), np.array(lev), mmr, cum_q))
    hi = float(liq_price_short(np.array(ep), np.array(lev), mmr, cum_q))
    assert lo == pytest.approx(long_lp, abs=0.01)
    assert hi == pytest.approx(short_lp, abs=0.01)
    assert lo < ep < hi


@settings(deadline=None, max_examples=60)
@given(
    ep=st.floats(1.0, 1e6),
    lev=st.floats(1.5, 150.0),
    mmr=st.floats(0.0, 0.05),
    notional=st.floats(1e3, 1e7),
    cum=st.floats(0.0, 50_000.0),
)
def test_equity_equals_maintenance_margin_at_the_liquidation_price(
    ep: float, lev: float, mmr: float, notional: float, cum: float
) -> None:
    """At LP, isolated margin plus PnL equals Q·LP·mmr - cum: the definition, not the formula."""
    qty = notional / ep
    margin = notional / lev
    cum_q = cum / qty
    lp_long = float(liq_price_long(np.array(ep), np.array(lev), mmr, cum_q))
    lp_short = float(liq_price_short(np.array(ep), np.array(lev), mmr, cum_q))
    tol = 1e-9 * notional
    assert margin + qty * (lp_long - ep) == pytest.approx(qty * lp_long * mmr - cum, abs=tol)
    assert margin + qty * (ep - lp_short) == pytest.approx(qty * lp_short * mmr - cum, abs=tol)


def test_liquidation_prices_broadcast_over_entries_and_tiers() -> None:
    entries = np.array([[90_000.0], [100_000.0]])
    levs = np.array([[10.0, 50.0, 100.0]])
    lo = liq_price_long(entries, levs, 0.004)
    hi = liq_price_short(entries, levs, 0.004)
    assert lo.shape == hi.shape == (2, 3)
    # Higher leverage sits closer to the entry on both sides.
    assert (np.diff(lo, axis=1) > 0).all()
    assert (np.diff(hi, axis=1) < 0).all()


# --- Binance brackets ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tier", "floor", "mmr", "cum"),
    [
        (0, 0.0, 0.004, 0.0),
        (1, 300e3, 0.005, 300.0),
        (2, 800e3, 0.0065, 1_500.0),
        (3, 3e6, 0.01, 12_000.0),
    ],
)
def test_binance_first_four_tiers(tier: int, floor: float, mmr: float, cum: float) -> None:
    assert BINANCE_BTCUSDT.floors[tier] == floor
    assert BINANCE_BTCUSDT.mmr[tier] == mmr
    assert BINANCE_BTCUSDT.cum[tier] == pytest.approx(cum, abs=1e-6)


def test_bracket_maintenance_margin_is_continuous_at_every_floor() -> None:
    b = BINANCE_BTCUSDT
    assert len(b.floors) == len(b.mmr) == len(b.cum) == 12
    assert list(b.floors) == sorted(b.floors) and list(b.mmr) == sorted(b.mmr)
    for i in range(1, len(b.floors)):
        below = b.floors[i] * b.mmr[i - 1] - b.cum[i - 1]
        above = b.floors[i] * b.mmr[i] - b.cum[i]
        assert above == pytest.approx(below, abs=1e-6), i


@pytest.mark.parametrize(
    ("notional", "mmr", "cum"),
    [
        (-1.0, 0.004, 0.0),
        (0.0, 0.004, 0.0),
        (10_000.0, 0.004, 0.0),
        (299_999.99, 0.004, 0.0),
        (300_000.0, 0.005, 300.0),
        (500_000.0, 0.005, 300.0),
        (800_000.0, 0.0065, 1_500.0),
        (2_999_999.0, 0.0065, 1_500.0),
        (5e6, 0.01, 12_000.0),
        (5e9, 0.50, BINANCE_BTCUSDT.cum[-1]),
    ],
)
def test_bracket_lookup(notional: float, mmr: float, cum: float) -> None:
    got_mmr, got_cum = BINANCE_BTCUSDT.lookup(notional)
    assert got_mmr == mmr
    assert got_cum == pytest.approx(cum, abs=1e-6)


def test_custom_brackets_lookup() -> None:
    b = Brackets(floors=(0.0, 100.0), mmr=(0.01, 0.02), cum=(0.0, 1.0))
    assert b.lookup(99.0) == (0.01, 0.0)
    assert b.lookup(100.0) == (0.02, 1.0)


# --- tier presets ----------------------------------------------------------------------------


def test_presets_are_normalised() -> None:
    for name, tiers in PRESETS.items():
        assert tiers.name == name
        assert math.fsum(tiers.weights) == pytest.approx(1.0, abs=1e-12)
        assert all(w > 0 for w in tiers.weights)
        assert tiers.weight_array.shape == tiers.leverage_array.shape == (len(tiers.leverages),)


def test_preset_contents() -> None:
    assert PRESETS["coinglass"].leverages == (10.0, 25.0, 50.0, 100.0)
    assert PRESETS["coinglass"].weights == pytest.approx((0.25, 0.30, 0.25, 0.20))
    assert PRESETS["coinank"].leverages == (25.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0)
    full = PRESETS["full"]
    assert full.leverages == tuple(float(x) for x in range(5, 151, 5))
    # Weights fall as 1/L: weight x leverage is one constant.
    prod = full.weight_array * full.leverage_array
    np.testing.assert_allclose(prod, prod[0], rtol=1e-12)
    assert tier_set("coinank") is PRESETS["coinank"]


def test_custom_tiers_are_sorted_and_normalised() -> None:
    t = tier_set("custom", {50: 3, 10.0: 1})
    assert t.name == "custom"
    assert t.leverages == (10.0, 50.0)
    assert t.weights == pytest.approx((0.25, 0.75))


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: tier_set("binance"), "unknown tier preset 'binance'; expected one of full"),
        (lambda: tier_set("custom"), "needs a mapping"),
        (lambda: tier_set("custom", {}), "needs a mapping"),
        (lambda: tier_set("custom", {1: 1.0}), "leverage 1x is out of range"),
        (lambda: tier_set("custom", {250: 1.0}), "leverage 250x is out of range"),
        (lambda: tier_set("custom", {10: -1.0, 20: 2.0}), "non-negative"),
        (lambda: tier_set("custom", {10: 0.0, 20: 0.0}), "not all zero"),
        (lambda: TierSet("x", (), ()), "at least one leverage"),
        (lambda: TierSet("x", (10.0, 20.0), (1.0,)), "same length"),
        (lambda: TierSet("x", (10.0, 10.0), (1.0, 1.0)), "distinct"),
    ],
)
def test_bad_tiers_raise_input_error(make, fragment: str) -> None:
    with pytest.raises(InputError) as info:
        make()
    assert fragment in str(info.value)


@pytest.mark.parametrize("weight", [math.nan, math.inf])
def test_non_finite_tier_weight_is_rejected(weight: float) -> None:
    with pytest.raises(InputError):
        TierSet("custom", (10.0, 50.0), (weight, 1.0))


# --- bin size and ATR ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "size"),
    [
        (95_000.0, 100.0),
        (120_000.0, 100.0),
        (150_000.0, 200.0),
        (50_000.0, 50.0),
        (30_000.0, 20.0),
        (3_500.0, 5.0),
        (2_400.0, 2.0),
        (800.0, 1.0),
        (170.0, 0.2),
        (120.0, 0.1),
        (2.5, 0.002),
    ],
)
def test_nice_bin_size(price: float, size: float) -> None:
    assert nice_bin_size(price) == pytest.approx(size, rel=1e-12)


def test_nice_bin_size_scales_with_price() -> None:
    assert nice_bin_size(150.0) * 1000 == pytest.approx(nice_bin_size(150_000.0))


def _ohlc_bars(rows: list[tuple[float, float, float, float]]):
    o, h, lo, c = (np.array(col, dtype=float) for col in zip(*rows, strict=True))
    n = len(rows)
    return make_bars(
        ts=1_767_225_600_000 + 3_600_000 * np.arange(n),
        open=o,
        high=h,
        low=lo,
        close=c,
        oi_usd=np.full(n, 1e9),
    )


def test_atr_uses_true_range_with_gaps() -> None:
    bars = _ohlc_bars(
        [
            (100, 101, 99, 100),
            (100, 102, 99, 101),  # TR = h - l = 3
            (105, 106, 104, 105),  # gap up: TR = h - prev close = 5
            (100, 101, 98, 99),  # gap down: TR = prev close - l = 7
        ]
    )
    assert atr(bars) == pytest.approx(5.0)
    assert atr(bars, period=2) == pytest.approx(6.0)
    assert atr(bars, period=1) == pytest.approx(7.0)


def test_atr_is_nan_under_two_bars() -> None:
    assert math.isnan(atr(_ohlc_bars([(100, 101, 99, 100)])))


# --- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("7d", 604_800_000),
        ("12h", 43_200_000),
        ("90m", 5_400_000),
        ("2w", 1_209_600_000),
        ("1.5h", 5_400_000),
        (" 7D ", 604_800_000),
        ("3 h", 10_800_000),
    ],
)
def test_parse_duration(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "expected a number and a unit"),
        ("7", "expected a number and a unit"),
        ("d", "expected a number and a unit"),
        ("7x", "invalid duration '7x'"),
        ("-1d", "invalid duration"),
        ("7 days", "invalid duration"),
        ("0d", "must be positive"),
        ("0.00001m", "must be positive"),
    ],
)
def test_bad_duration(text: str, fragment: str) -> None:
    with pytest.raises(InputError) as info:
        parse_duration_ms(text)
    assert fragment in str(info.value)
