"""``liqbot backtest``: run the estimator causally over a bar CSV and score it (DESIGN §4.3)."""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

import numpy as np

from bot.cli_common import emit_json, write_atomic
from core.backtest import WARMUP_BARS, BacktestResult, run_backtest
from core.bars_csv import load_bars_csv
from core.config import load_settings
from core.metrics import SideScore
from core.model import calibration_params, estimator_params

_EXAMPLE = """The map before bar t predicts bar t; bar t's own realized liquidations are never used
for it. Predictions are the map's consumed mass, calibrated with earlier bars' realized
liquidations when the CSV has them (as a live bot has them from the liquidation streams).

example:
  liqbot backtest --bars btcusdt_1h.csv --out predictions.csv
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "backtest",
        help="score the map's per-bar predictions against realized liquidations",
        description="Run the liquidation-map estimator causally over every bar of a CSV.",
        epilog=_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--bars", required=True, metavar="FILE", help="canonical bar CSV")
    p.add_argument("--tiers", choices=["full", "coinglass", "coinank"], help="leverage tier preset")
    p.add_argument("--out", required=True, metavar="FILE", help="per-bar predictions CSV to write")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--config", metavar="FILE", help="config.yaml to use")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    bars = load_bars_csv(args.bars)
    params = estimator_params(settings.map, bars.interval_ms, args.tiers)
    result = run_backtest(bars, params, calibration_params(settings.calibration))
    write_atomic(Path(args.out), predictions_csv(result))
    doc = metrics_document(result, tiers=params.tiers.name, n_bars=len(bars), out=args.out)
    if args.json:
        emit_json(doc)
    else:
        print_metrics(doc)
    return 0


def predictions_csv(r: BacktestResult) -> bytes:
    buf = io.StringIO()
    buf.write("ts,pred_long_usd,pred_short_usd\n")
    for ts, lo, sh in zip(
        r.ts.tolist(), r.pred_long_usd.tolist(), r.pred_short_usd.tolist(), strict=True
    ):
        buf.write(f"{ts},{lo:.2f},{sh:.2f}\n")
    return buf.getvalue().encode()


def _score(s: SideScore | None) -> dict[str, Any] | None:
    if s is None:
        return None

    def clean(x: float) -> float | None:
        return None if not np.isfinite(x) else round(x, 4)

    return {
        "conditional_spearman": clean(s.conditional_spearman),
        "spearman": clean(s.spearman),
        "r2_gain": clean(s.r2_gain),
        "n_bars": s.n_bars,
    }


def metrics_document(r: BacktestResult, *, tiers: str, n_bars: int, out: str) -> dict[str, Any]:
    return {
        "bars": n_bars,
        "warmup_bars": WARMUP_BARS,
        "tiers": tiers,
        "calibrated": r.calibrated,
        "predictions": out,
        "long": _score(r.long),
        "short": _score(r.short),
        "map_only": {"long": _score(r.map_long), "short": _score(r.map_short)},
    }


def print_metrics(doc: dict[str, Any]) -> None:
    print(f"{doc['bars']} bars, tiers {doc['tiers']}, predictions written to {doc['predictions']}")
    if doc["long"] is None:
        print("no realized liquidations (liq_long_usd, liq_short_usd) in the CSV: nothing to score")
        return
    print(f"scored after a {doc['warmup_bars']}-bar warm-up\n")
    print(f"{'':<34}{'longs':>8}{'shorts':>8}")
    rows = [
        ("conditional Spearman (headline)", "conditional_spearman"),
        ("plain Spearman", "spearman"),
        ("R² gained over price move alone", "r2_gain"),
    ]
    for label, key in rows:
        lo, sh = doc["long"][key], doc["short"][key]
        print(f"{label:<34}{_fmt(lo):>8}{_fmt(sh):>8}")
    mo = doc["map_only"]
    print(
        f"{'map alone, conditional Spearman':<34}"
        f"{_fmt(mo['long']['conditional_spearman']):>8}{_fmt(mo['short']['conditional_spearman']):>8}"
    )


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"
