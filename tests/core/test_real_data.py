"""Accuracy and causality on the real hourly BTCUSDT data in ../shared (skipped when absent).

DESIGN §4.3: the headline metric is the conditional Spearman of the per-bar predictions
against realized liquidations, within deciles of the adverse move.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
import pytest

from core.backtest import WARMUP_BARS, BacktestResult, run_backtest
from core.bars import Bars
from core.bars_csv import load_bars_csv
from core.brackets import BINANCE_BTCUSDT
from core.clusters import find_clusters
from core.estimator import EstimatorParams
from core.mapbuild import build_map
from core.tiers import PRESETS

SQUEEZE_MS = int(datetime(2026, 1, 13, 22, tzinfo=UTC).timestamp() * 1000)
WEEK_MS = 7 * 86_400_000
BRACKETS_JSON = "binance_bapi_riskBrackets_BTCUSDT_2025-08-19_first4tiers.json"


@pytest.fixture(scope="module")
def bars(market_csv: Path) -> Bars:
    return load_bars_csv(market_csv)


@pytest.fixture(scope="module")
def default_run(bars: Bars) -> BacktestResult:
    return run_backtest(bars, EstimatorParams())


def test_market_csv_loads(bars: Bars) -> None:
    assert len(bars) == 2438
    assert bars.interval_ms == 3_600_000
    assert bars.ts[0] == int(datetime(2025, 12, 4, 6, tzinfo=UTC).timestamp() * 1000)
    for col in ("volume_usd", "taker_buy_usd", "funding_rate", "liq_long_usd", "liq_short_usd"):
        assert bars.has(col), col
    assert (bars.oi_usd > 0).all()


def test_default_model_conditional_spearman(default_run: BacktestResult) -> None:
    r = default_run
    assert r.calibrated
    assert r.long is not None and r.short is not None
    assert r.long.n_bars == r.short.n_bars == 2438 - WARMUP_BARS
    assert r.long.conditional_spearman >= 0.50, r.long
    assert r.short.conditional_spearman >= 0.50, r.short


def test_map_only_scores_are_reported(default_run: BacktestResult) -> None:
    ml, ms = default_run.map_long, default_run.map_short
    assert ml is not None and ms is not None
    for s in (ml, ms):
        assert s.n_bars == 2438 - WARMUP_BARS
        assert all(math.isfinite(v) for v in (s.conditional_spearman, s.spearman, s.r2_gain))
        assert s.conditional_spearman >= 0.45, s


def test_default_map_beats_the_plain_recipe(bars: Bars, default_run: BacktestResult) -> None:
    """DESIGN §4.3's plain recipe: coinglass tiers, a = 0.5, hlc3 entry, proportional shrink."""
    plain = run_backtest(
        bars,
        EstimatorParams(tiers=PRESETS["coinglass"], side_split="half", entry="vwap", turnover=0.0),
    )
    assert plain.map_long is not None and plain.map_short is not None
    assert default_run.map_long is not None and default_run.map_short is not None
    assert default_run.map_long.conditional_spearman > plain.map_long.conditional_spearman + 0.05
    assert default_run.map_short.conditional_spearman > plain.map_short.conditional_spearman + 0.05


@pytest.mark.parametrize("t", [200, 1300, 2000])
def test_truncating_the_csv_does_not_change_earlier_predictions(
    bars: Bars, default_run: BacktestResult, t: int
) -> None:
    part = run_backtest(bars.slice(0, t), EstimatorParams())
    for name in ("pred_long_usd", "pred_short_usd", "map_long_usd", "map_short_usd"):
        np.testing.assert_allclose(
            getattr(part, name), getattr(default_run, name)[:t], rtol=1e-9, atol=0, err_msg=name
        )


def test_squeeze_map_has_a_short_cluster_just_above_the_price(bars: Bars) -> None:
    """2026-01-13T22:00Z: price 94,040 ran to 96,863.7 with $109M of shorts liquidated."""
    window = bars.up_to(SQUEEZE_MS, WEEK_MS)
    assert len(window) == 168
    m = build_map(window, EstimatorParams(), symbol="BTC", venue="binance")
    assert m.price == 94_040.0
    shorts = [c for c in find_clusters(m) if c.side == "short"]
    near = [c for c in shorts if 0 < c.distance_pct <= 2.0]
    assert near, shorts
    assert all(m.price < c.price < 96_863.7 for c in near)  # the squeeze swept it
    assert all(c.price_low >= m.price for c in near)


def test_squeeze_bar_gets_one_of_the_largest_short_predictions(
    bars: Bars, default_run: BacktestResult
) -> None:
    i = int(np.searchsorted(bars.ts, SQUEEZE_MS))
    assert bars.ts[i] == SQUEEZE_MS and bars.high[i] == 96_863.7
    assert bars.liq_short_usd[i] == pytest.approx(109.0e6, rel=0.01)
    rank = np.mean(default_run.map_short_usd < default_run.map_short_usd[i])
    assert rank >= 0.99


def test_default_brackets_match_binance_endpoint(shared_dir: Path) -> None:
    path = shared_dir / "data" / "brackets" / BRACKETS_JSON
    if not path.is_file():
        pytest.skip(f"missing {path.name} in ../shared")
    doc = orjson.loads(path.read_bytes())
    tiers = doc["data"]["brackets"][0]["riskBrackets"]
    assert len(tiers) == 4
    for i, tier in enumerate(tiers):
        assert BINANCE_BTCUSDT.floors[i] == tier["bracketNotionalFloor"]
        assert BINANCE_BTCUSDT.mmr[i] == tier["bracketMaintenanceMarginRate"]
        assert BINANCE_BTCUSDT.cum[i] == tier["cumFastMaintenanceAmount"]
