"""The liquidation-map chart renders a valid 1280x720 PNG for ordinary and degenerate maps."""

from __future__ import annotations

import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest

from bot.charts import (
    HEIGHT_PX,
    MAX_BARS,
    WIDTH_PX,
    _display_bins,
    _liqmap_figure,
    chart_title,
    compact_usd,
    render_liqmap_png,
    tier_color,
    tier_label,
)
from core.errors import InputError
from core.liqmap import Cluster, LiqMap

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TS_MS = 1_768_341_600_000  # 2026-01-13 22:00 UTC
TIERS = (10.0, 25.0, 50.0, 100.0)


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, which a valid PNG has right after the signature."""
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def make_map(
    *,
    price: float = 95_000.0,
    bin_size: float = 100.0,
    leverages: tuple[float, ...] = TIERS,
    origin: float = 83_000.0,
    n_bins: int = 240,
    venues: tuple[str, ...] = ("binance",),
    atr: float = 1_200.0,
    seed: int = 1,
) -> LiqMap:
    """Random tier masses, longs only below the price and shorts only above, as the model makes."""
    rng = np.random.default_rng(seed)
    lows = origin + bin_size * np.arange(n_bins)
    mass = rng.lognormal(np.log(3e6), 1.0, (len(leverages), n_bins))
    long_usd = np.where(lows + bin_size <= price, mass, 0.0)
    short_usd = np.where(lows >= price, mass, 0.0)
    return LiqMap(
        symbol="BTC",
        venues=venues,
        ts_ms=TS_MS,
        price=price,
        atr=atr,
        bin_size=bin_size,
        origin=origin,
        leverages=leverages,
        long_usd=long_usd,
        short_usd=short_usd,
    )


CLUSTERS = [
    Cluster("short", 97_100.0, 97_000.0, 97_300.0, 157e6, {100.0: 0.6, 50.0: 0.4}, 2.2, 1.75),
    Cluster("long", 92_450.0, 92_300.0, 92_600.0, 120e6, {25.0: 1.0}, -2.7, float("nan")),
    Cluster("short", 97_200.0, 97_100.0, 97_300.0, 90e6),  # crowds the first: not labelled
    Cluster("long", 40_000.0, 39_900.0, 40_100.0, 500e6),  # out of view
]


def test_png_of_a_typical_map() -> None:
    data = render_liqmap_png(make_map(), CLUSTERS)
    assert png_size(data) == (WIDTH_PX, HEIGHT_PX)
    assert data.endswith(b"IEND\xaeB`\x82")


@pytest.mark.parametrize(
    "m",
    [
        pytest.param(
            replace(make_map(), long_usd=np.zeros((4, 240)), short_usd=np.zeros((4, 240))),
            id="no-mass",
        ),
        pytest.param(make_map(n_bins=0), id="no-bins"),
        pytest.param(make_map(leverages=(50.0,)), id="one-tier"),
        pytest.param(make_map(atr=float("nan")), id="nan-atr"),
        pytest.param(make_map(price=200_000.0), id="price-far-above-grid"),
        pytest.param(make_map(price=10_000.0), id="price-far-below-grid"),
        pytest.param(make_map(price=108_000.0), id="price-just-above-grid"),
        pytest.param(make_map(price=80_000.0), id="price-just-below-grid"),
        pytest.param(make_map(leverages=tuple(range(25, 101, 10)), seed=3), id="many-tiers"),
        pytest.param(
            make_map(price=0.35, bin_size=0.0005, origin=0.30, n_bins=200), id="sub-dollar-price"
        ),
        pytest.param(make_map(bin_size=2.0, origin=80_000.0, n_bins=15_000), id="fine-bins"),
    ],
)
def test_degenerate_and_unusual_maps_render(m: LiqMap) -> None:
    assert png_size(render_liqmap_png(m, CLUSTERS)) == (WIDTH_PX, HEIGHT_PX)


def test_long_venue_list_and_custom_time() -> None:
    m = make_map(venues=("binance", "okx", "bybit", "hyperliquid"))
    data = render_liqmap_png(m, range_pct=30.0, title_time="just now")
    assert png_size(data) == (WIDTH_PX, HEIGHT_PX)


@pytest.mark.parametrize("price", [float("nan"), 0.0, -5.0, float("inf")])
def test_unusable_price_is_an_input_error(price: float) -> None:
    with pytest.raises(InputError):
        render_liqmap_png(make_map(price=price))


def test_non_positive_range_is_an_input_error() -> None:
    with pytest.raises(InputError):
        render_liqmap_png(make_map(), range_pct=0.0)


def test_renders_side_by_side_in_threads() -> None:
    maps = [make_map(seed=s) for s in range(4)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        pngs = list(pool.map(render_liqmap_png, maps))
    assert all(png_size(p) == (WIDTH_PX, HEIGHT_PX) for p in pngs)


def test_title_names_symbol_time_venues_and_says_estimated() -> None:
    m = make_map(venues=("binance", "okx", "SomeDex"))
    title = chart_title(m)
    assert title == (
        "BTC liquidation map — 2026-01-13 22:00 UTC — Binance + OKX + SomeDex — estimated"
    )
    assert chart_title(m, "14:05 UTC").startswith("BTC liquidation map — 14:05 UTC — ")
    assert (
        chart_title(make_map(venues=())) == "BTC liquidation map — 2026-01-13 22:00 UTC — estimated"
    )


@pytest.mark.parametrize(
    ("value", "step", "compact_from", "expected"),
    [
        (451e6, None, 1e3, "$451M"),
        (1.2234e9, None, 1e3, "$1.22B"),
        (97e6, None, 1e3, "$97M"),
        (999_700.0, None, 1e3, "$1M"),
        (950.0, None, 1e3, "$950"),
        (0.0, None, 1e3, "$0"),
        (-12_345.0, None, 1e3, "-$12.3K"),
        (0.35213, None, 1e3, "$0.352"),
        (float("nan"), None, 1e3, "n/a"),
        (96_200.0, 500.0, 1e4, "$96.2K"),
        (87_500.0, 2_500.0, 1e4, "$87.5K"),
        (90_000.0, 2_500.0, 1e4, "$90.0K"),
        (84_000.0, 4_000.0, 1e4, "$84K"),
        (3_150.0, 150.0, 1e4, "$3,150"),
        (0.345, 0.015, 1e4, "$0.345"),
        (15e6, 15e6, 1e3, "$15M"),
        (2.5e6, 2.5e6, 1e3, "$2.5M"),
    ],
)
def test_compact_usd(value: float, step: float | None, compact_from: float, expected: str) -> None:
    assert compact_usd(value, step, compact_from=compact_from) == expected


def test_tier_colours_depend_on_leverage_only() -> None:
    assert tier_color(10) == "#4f7cff" and tier_color(100) == "#ff8a3d"
    colours = [tier_color(lev) for lev in (25, 30, 40, 50, 60, 70, 80, 90, 100)]
    assert len(set(colours)) == len(colours)
    assert all(len(c) == 7 and c.startswith("#") for c in colours)
    assert tier_color(1.0) == tier_color(2.0) and tier_color(500) == tier_color(200)


def test_display_bins_keep_totals_and_cap_the_bar_count() -> None:
    m = make_map(bin_size=2.0, origin=80_000.0, n_bins=5_001)
    lefts, long_usd, short_usd, width = _display_bins(m)
    assert lefts.size <= MAX_BARS and width == pytest.approx(2.0 * np.ceil(5_001 / MAX_BARS))
    assert long_usd.sum() == pytest.approx(m.long_usd.sum())
    assert np.allclose(short_usd.sum(axis=1), m.short_usd.sum(axis=1))
    assert lefts[0] == m.origin


def test_unknown_leverage_tier_is_labelled_na() -> None:
    """CoinGlass maps without leverage put their mass on tier 0.0: 'n/a' in the legend, not '0x'."""
    assert tier_label(0.0) == "n/a" and tier_label(float("nan")) == "n/a"
    assert tier_label(25.0) == "25x" and tier_label(12.5) == "12.5x"
    for leverages in ((0.0,), (0.0, 25.0, 100.0)):
        m = make_map(leverages=leverages)
        fig = _liqmap_figure(m, CLUSTERS, 12.0, None)
        tiers_legend = fig.legends[0]
        labels = [t.get_text() for t in tiers_legend.get_texts()]
        assert labels == [tier_label(lev) for lev in leverages]
        assert labels[0] == "n/a" and "0x" not in labels
        assert png_size(render_liqmap_png(m, CLUSTERS)) == (WIDTH_PX, HEIGHT_PX)
