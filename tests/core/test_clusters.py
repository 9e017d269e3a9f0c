"""Dense clusters (DESIGN §4.1 step 7) on hand-built maps with known humps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.clusters import find_clusters
from core.liqmap import LiqMap

PRICE = 95_000.0
ORIGIN = 85_000.0
BIN = 100.0
N_BINS = 200  # 85,000 .. 105,000
LEVERAGES = (25.0, 100.0)


def _bin(price: float) -> int:
    return int((price - ORIGIN) // BIN)


def make_map(
    long_humps: dict[float, tuple[float, float]] | None = None,
    short_humps: dict[float, tuple[float, float]] | None = None,
    base: float = 1e6,
    atr: float = 500.0,
) -> LiqMap:
    """A flat base of ``base`` USD per bin on each side (25x), plus 3-bin humps.

    A hump ``{price: (usd_25x, usd_100x)}`` adds that much to each of the 3 bins from ``price``.
    """
    long_usd = np.zeros((2, N_BINS))
    short_usd = np.zeros((2, N_BINS))
    p = _bin(PRICE)
    long_usd[0, :p] = base
    short_usd[0, p + 1 :] = base
    for target, humps in ((long_usd, long_humps or {}), (short_usd, short_humps or {})):
        for price, (u25, u100) in humps.items():
            i = _bin(price)
            target[0, i : i + 3] += u25
            target[1, i : i + 3] += u100
    return LiqMap(
        symbol="BTC",
        venues=("binance",),
        ts_ms=0,
        price=PRICE,
        atr=atr,
        bin_size=BIN,
        origin=ORIGIN,
        leverages=LEVERAGES,
        long_usd=long_usd,
        short_usd=short_usd,
    )


def test_one_hump_each_side() -> None:
    m = make_map({93_000.0: (1e7, 3e7)}, {97_000.0: (2e7, 0.5e7)})
    clusters = find_clusters(m)
    assert [c.side for c in clusters] == ["long", "short"]
    long_c, short_c = clusters

    assert long_c.price == pytest.approx(93_150.0, abs=100.0)
    assert long_c.price_low <= 93_000.0 and long_c.price_high >= 93_300.0
    assert long_c.price_high < PRICE
    assert long_c.usd >= 3 * 4e7
    assert long_c.distance_pct == pytest.approx((long_c.price - PRICE) / PRICE * 100)
    assert long_c.distance_pct == pytest.approx(-1.95, abs=0.11)
    assert long_c.distance_atr == pytest.approx((long_c.price - PRICE) / 500.0)
    assert math.fsum(long_c.tier_share.values()) == pytest.approx(1.0, abs=1e-9)
    assert long_c.top_tiers(1)[0][0] == 100.0  # the hump is mostly 100x

    assert short_c.price == pytest.approx(97_150.0, abs=100.0)
    assert short_c.price_low > PRICE
    assert short_c.distance_pct == pytest.approx(2.26, abs=0.11)
    assert short_c.distance_atr == pytest.approx((short_c.price - PRICE) / 500.0)
    assert short_c.distance_atr > 0 > long_c.distance_atr
    assert math.fsum(short_c.tier_share.values()) == pytest.approx(1.0, abs=1e-9)
    assert short_c.top_tiers(2) == sorted(short_c.tier_share.items(), key=lambda kv: -kv[1])
    assert short_c.top_tiers(1)[0][0] == 25.0


def test_cluster_usd_is_the_raw_mass_of_its_span() -> None:
    m = make_map({93_000.0: (1e7, 3e7)})
    (c,) = find_clusters(m)
    lo, hi = _bin(c.price_low), _bin(c.price_high - BIN) + 1
    assert c.usd == pytest.approx(m.long_total[lo:hi].sum())
    # The span is at most 0.5% of the price either side of the peak.
    assert c.price_high - c.price_low <= 2 * 0.005 * PRICE + 3 * BIN


def test_unknown_atr_gives_nan_distance_in_atrs() -> None:
    (c,) = find_clusters(make_map({93_000.0: (1e7, 3e7)}, atr=math.nan))
    assert math.isnan(c.distance_atr)
    assert c.distance_pct < 0


def test_nearest_first_and_largest_kept() -> None:
    m = make_map({93_000.0: (0, 2e7), 90_000.0: (0, 5e7)})
    clusters = find_clusters(m)
    assert [round(c.price, -3) for c in clusters] == [93_000.0, 90_000.0]  # nearest first
    (only,) = find_clusters(m, max_per_side=1)  # the largest survives the cut
    assert only.price == pytest.approx(90_150.0, abs=100.0)
    (big,) = find_clusters(m, min_usd=1e8)
    assert big.usd >= 1e8 and big.price == only.price


@pytest.mark.parametrize(
    "m",
    [
        pytest.param(make_map(base=0.0), id="all-zero"),
        pytest.param(make_map(), id="flat-base-no-hump"),
        pytest.param(make_map().window(1.0).window(100.0), id="window-copy-flat"),
        pytest.param(
            LiqMap(
                symbol="BTC",
                venues=("binance",),
                ts_ms=0,
                price=PRICE,
                atr=1.0,
                bin_size=BIN,
                origin=ORIGIN,
                leverages=LEVERAGES,
                long_usd=np.zeros((2, 0)),
                short_usd=np.zeros((2, 0)),
            ),
            id="no-bins",
        ),
    ],
)
def test_no_clusters(m: LiqMap) -> None:
    assert find_clusters(m) == []


def test_a_hump_must_reach_k_times_the_median() -> None:
    m = make_map({93_000.0: (1e6, 0.5e6)})  # 2.5x the base
    assert find_clusters(m, k=3.0) == []
    assert [c.side for c in find_clusters(m, k=1.5)] == ["long"]


def test_longs_above_the_price_are_not_long_clusters() -> None:
    m = make_map(short_humps={97_000.0: (2e7, 0)})
    m.long_usd[1, _bin(97_000.0) : _bin(97_000.0) + 3] = 5e7  # stray longs above price
    assert [c.side for c in find_clusters(m)] == ["short"]
