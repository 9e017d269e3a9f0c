"""``liqbot liqmap``: the estimated liquidation map from a bar CSV, as a table, JSON or PNG."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bot.cli_common import (
    duration_ms,
    emit_json,
    fmt_usd,
    iso_time_ms,
    ms_to_iso,
    positive_float,
    write_atomic,
)
from core.bars_csv import load_bars_csv
from core.clusters import find_clusters
from core.config import load_settings
from core.durations import parse_duration_ms
from core.errors import InputError
from core.liqmap import Cluster, LiqMap, combine
from core.mapbuild import build_map, nice_bin_size
from core.model import estimator_params

_EXAMPLE = """example:
  liqbot liqmap --bars btcusdt_1h.csv --at 2026-01-13T22:00Z --lookback 7d --png map.png
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "liqmap",
        help="estimate the liquidation map at a time from a bar CSV",
        description=(
            "Estimate where leveraged longs and shorts would be force-liquidated, from the bars "
            "of a canonical bar CSV that had closed by --at. The CSV has a header and the columns "
            "ts (bar open, epoch ms UTC), open, high, low, close, oi_usd, and optionally "
            "volume_usd, taker_buy_usd, funding_rate, liq_long_usd, liq_short_usd."
        ),
        epilog=_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--bars",
        required=True,
        action="append",
        metavar="FILE",
        help="canonical bar CSV; repeat it with one file per venue to add their maps up",
    )
    p.add_argument(
        "--at",
        type=iso_time_ms,
        metavar="ISO8601",
        help="map time, e.g. 2026-01-13T22:00Z; only bars closed by then are used "
        "(default: after the last bar)",
    )
    p.add_argument(
        "--lookback",
        type=duration_ms,
        metavar="DURATION",
        help="history to build the map from: 90m, 12h, 7d, 2w (default: 7d)",
    )
    p.add_argument("--tiers", choices=["full", "coinglass", "coinank"], help="leverage tier preset")
    p.add_argument("--bin", type=positive_float, metavar="USD", help="price bin size in USD")
    p.add_argument(
        "--range",
        dest="range_pct",
        type=positive_float,
        metavar="PCT",
        help="price range around the price to report, in %% (default: 12)",
    )
    p.add_argument("--symbol", default="BTC", help="symbol shown in the output (default: BTC)")
    p.add_argument(
        "--venue",
        action="append",
        help="venue of each --bars file, in the same order (default: binance for one file, "
        "else each file's name)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--png", metavar="FILE", help="also write the chart as a PNG")
    p.add_argument("--config", metavar="FILE", help="config.yaml to use")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    cfg = settings.map
    files: list[str] = args.bars
    venues: list[str] = args.venue or (
        ["binance"] if len(files) == 1 else [Path(f).stem for f in files]
    )
    if len(venues) != len(files):
        raise InputError(
            f"{len(files)} --bars file(s) but {len(venues)} --venue name(s); give one per file"
        )
    all_bars = [load_bars_csv(f) for f in files]
    # By default, the latest time every file has reached, so no venue's map is missing data.
    at = args.at if args.at is not None else min(int(b.ts[-1]) + b.interval_ms for b in all_bars)
    lookback = args.lookback or parse_duration_ms(cfg.lookback)
    windows = [b.up_to(at, lookback) for b in all_bars]
    # One bin size for every venue: maps add up only on a common grid.
    bin_size = args.bin or cfg.bin_usd or nice_bin_size(float(windows[0].close[-1]))
    full = combine(
        [
            build_map(
                w,
                estimator_params(cfg, w.interval_ms, args.tiers),
                symbol=args.symbol.upper(),
                venue=venue,
                bin_size=bin_size,
            )
            for w, venue in zip(windows, venues, strict=True)
        ]
    )
    bars_used = sum(len(w) for w in windows)
    range_pct = args.range_pct or cfg.range_pct
    m = full.window(range_pct).banded()
    clusters = find_clusters(m, k=cfg.cluster_k, max_per_side=cfg.clusters_per_side)
    if args.png:
        from bot.charts import render_liqmap_png

        write_atomic(Path(args.png), render_liqmap_png(m, clusters, range_pct=range_pct))
    doc = map_document(m, clusters, at_ms=at, bars_used=bars_used, range_pct=range_pct)
    if args.json:
        emit_json(doc)
    else:
        print_table(m, clusters, doc)
        if args.png:
            print(f"chart written to {args.png}")
    return 0


def map_document(
    m: LiqMap, clusters: list[Cluster], *, at_ms: int, bars_used: int, range_pct: float
) -> dict[str, Any]:
    """The JSON shape of a map: price, bin size, bins, clusters and cumulative peaks."""
    peaks = m.cumulative_peaks()
    lows, highs = m.price_low, m.price_high
    long_t, short_t = m.long_total, m.short_total
    return {
        "symbol": m.symbol,
        "venues": list(m.venues),
        "at": ms_to_iso(at_ms),
        "map_time": ms_to_iso(m.ts_ms),
        "bars_used": bars_used,
        "price": m.price,
        "atr": m.atr,
        "bin_size": m.bin_size,
        "range_pct": range_pct,
        "tiers": list(m.leverages),
        "estimated": True,
        "cumulative": {
            "long_peak_usd": peaks.long_usd,
            "long_peak_price": peaks.long_price,
            "short_peak_usd": peaks.short_usd,
            "short_peak_price": peaks.short_price,
        },
        "clusters": [
            {
                "side": c.side,
                "price": c.price,
                "price_low": c.price_low,
                "price_high": c.price_high,
                "usd": c.usd,
                "distance_pct": c.distance_pct,
                "distance_atr": c.distance_atr,
                "tiers": {f"{lev:g}x": share for lev, share in c.top_tiers(len(c.tier_share))},
            }
            for c in clusters
        ],
        "bins": [
            {
                "price_low": float(lows[i]),
                "price_high": float(highs[i]),
                "long_usd": float(long_t[i]),
                "short_usd": float(short_t[i]),
            }
            for i in range(m.n_bins)
        ],
    }


def print_table(m: LiqMap, clusters: list[Cluster], doc: dict[str, Any]) -> None:
    out = sys.stdout
    cum = doc["cumulative"]
    out.write(
        f"{m.symbol} estimated liquidation map at {doc['map_time']} ({', '.join(m.venues)}), "
        f"{doc['bars_used']} bars\n"
        f"price ${m.price:,.1f}   bin ${m.bin_size:,.0f}   ATR ${m.atr:,.0f}   "
        f"range ±{doc['range_pct']:g}%\n\n"
        f"cumulative short liquidations peak at {fmt_usd(cum['short_peak_usd'])} "
        f"around ${cum['short_peak_price']:,.0f}\n"
        f"cumulative long liquidations peak at {fmt_usd(cum['long_peak_usd'])} "
        f"around ${cum['long_peak_price']:,.0f}\n\n"
    )
    if not clusters:
        out.write("no dense clusters in range\n")
        return
    out.write(f"{'side':<6}{'price':>11}{'distance':>10}{'ATRs':>7}{'USD':>11}  tiers\n")
    for c in clusters:
        tiers = ", ".join(f"{lev:g}x {share:.0%}" for lev, share in c.top_tiers(3))
        out.write(
            f"{c.side:<6}{c.price:>11,.0f}{c.distance_pct:>+9.2f}%{c.distance_atr:>+7.1f}"
            f"{fmt_usd(c.usd):>11}  {tiers}\n"
        )
