"""Liquidation-map engine figures (issue: liquidation-map engine), printed as JSON.

* speed: 30 days of seeded synthetic 1-minute bars (43,200), coinglass tiers, full recompute:
  the fast path's median time, the reference's time and the ratio; the map binning too.
* chart: PNG render time.
* accuracy: `liqbot backtest` metrics on ../shared/data/market (skipped, with the reason, when
  ../shared is absent).

Run: .venv/bin/python -m benchmarks.liqmap [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from core.bars import Bars
from core.clusters import find_clusters
from core.estimator import EstimatorParams, fast, reference
from core.mapbuild import build_map
from core.synthetic import synthetic_bars
from core.tiers import PRESETS

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MARKET_CSV = SHARED / "data" / "market" / "btcusdt_1h_2025-12-04_2026-03-15.csv"


def _times(fn: Callable[[], object], repeat: int) -> list[float]:
    fn()  # warm-up: first-touch page faults and imports are not the steady state
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def speed(bars: Bars, repeat: int, ref_bars: int | None) -> dict[str, Any]:
    params = EstimatorParams(tiers=PRESETS["coinglass"])
    fast_t = _times(lambda: fast.estimate(bars, params), repeat)
    map_t = _times(
        lambda: build_map(bars, params, symbol="BTC", venue="synthetic"), max(3, repeat // 2)
    )
    ref_input = bars if ref_bars is None else bars.slice(0, ref_bars)
    print(f"reference on {len(ref_input)} bars (slow by design) ...", file=sys.stderr)
    t0 = time.perf_counter()
    reference.estimate(ref_input, params)
    ref_s = time.perf_counter() - t0
    fast_same = statistics.median(_times(lambda: fast.estimate(ref_input, params), 5))
    return {
        "bars": len(bars),
        "interval": "1m",
        "tiers": "coinglass",
        "fast_median_ms": round(statistics.median(fast_t) * 1000, 1),
        "fast_runs_ms": [round(t * 1000, 1) for t in fast_t],
        "build_map_median_ms": round(statistics.median(map_t) * 1000, 1),
        "reference_bars": len(ref_input),
        "reference_s": round(ref_s, 2),
        "fast_same_input_ms": round(fast_same * 1000, 2),
        "speedup_vs_reference": round(ref_s / fast_same, 1),
    }


def chart(bars: Bars, repeat: int) -> dict[str, Any]:
    from bot.charts import render_liqmap_png

    m = (
        build_map(
            bars.slice(len(bars) - 7 * 1440, len(bars)),
            EstimatorParams(),
            symbol="BTC",
            venue="synthetic",
        )
        .window(12)
        .banded()
    )
    clusters = find_clusters(m)
    t = _times(lambda: render_liqmap_png(m, clusters), repeat)
    return {
        "png_median_ms": round(statistics.median(t) * 1000, 1),
        "png_max_ms": round(max(t) * 1000, 1),
        "renders": repeat,
    }


def accuracy() -> dict[str, Any]:
    if not MARKET_CSV.is_file():
        return {"skipped": f"{MARKET_CSV} is absent (../shared not beside the repo)"}
    from core.backtest import run_backtest
    from core.bars_csv import load_bars_csv

    bars = load_bars_csv(MARKET_CSV)
    out: dict[str, Any] = {"file": MARKET_CSV.name, "bars": len(bars)}
    for name in ("full", "coinglass", "coinank"):
        r = run_backtest(bars, EstimatorParams(tiers=PRESETS[name]))
        assert r.long and r.short and r.map_long and r.map_short
        out[name] = {
            "conditional_spearman": [
                round(r.long.conditional_spearman, 3),
                round(r.short.conditional_spearman, 3),
            ],
            "spearman": [round(r.long.spearman, 3), round(r.short.spearman, 3)],
            "r2_gain": [round(r.long.r2_gain, 3), round(r.short.r2_gain, 3)],
            "map_only_conditional_spearman": [
                round(r.map_long.conditional_spearman, 3),
                round(r.map_short.conditional_spearman, 3),
            ],
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="fewer repeats and the reference on 5,000 bars only (CI smoke run)",
    )
    args = ap.parse_args()
    bars = synthetic_bars(43_200, interval_ms=60_000, seed=7)
    repeat = 5 if args.quick else 21
    result = {
        "speed": speed(bars, repeat, 5_000 if args.quick else None),
        "chart": chart(bars, 5 if args.quick else 15),
        "accuracy": accuracy(),
    }
    sys.stdout.buffer.write(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")


if __name__ == "__main__":
    main()
