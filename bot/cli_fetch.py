"""``liqbot fetch``: backfill a venue's bars and open interest into a canonical bar CSV."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from bot.cli_common import iso_time_ms, ms_to_iso, write_atomic
from bot.feeds_setup import make_rest_feed
from bot.progress import ProgressLine
from core.bars_csv import format_bars_csv
from core.config import load_settings
from core.feeds.backfill import backfill, interval_ms
from core.feeds.symbols import parse_symbol

_EXAMPLE = """Every request goes through the venue's rate budget, so a long backfill waits
rather than risking a ban. Binance keeps 30 days of open-interest history; older bars cannot
have OI and are left out.

example:
  liqbot fetch --venue binance --symbol BTC --days 30 --interval 5m --out bars.csv
"""
_MAX_DAYS = 365


def register(sub: Any) -> None:
    p = sub.add_parser(
        "fetch",
        help="backfill bars and open interest from Binance, OKX or Bybit into a bar CSV",
        description="Download a venue's perpetual-futures bars with their open interest.",
        epilog=_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--venue", required=True, choices=["binance", "okx", "bybit"])
    p.add_argument("--symbol", required=True, help="BTC, ETH, ... (BTCUSDT and BTC-USDT-SWAP too)")
    p.add_argument("--days", type=_days, default=30, help="days of history (default: 30)")
    p.add_argument("--interval", default="5m", help="bar interval: 5m, 15m, 1h, ... (default 5m)")
    p.add_argument(
        "--end",
        type=iso_time_ms,
        metavar="ISO8601",
        help="end of the range (default: now, rounded down to the interval)",
    )
    p.add_argument("--out", required=True, metavar="FILE", help="bar CSV to write")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--config", metavar="FILE", help="config.yaml to use (base URLs)")
    p.set_defaults(handler=run)


def _days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of days, got {text!r}") from None
    if not 1 <= value <= _MAX_DAYS:
        raise argparse.ArgumentTypeError(f"--days must be 1..{_MAX_DAYS}, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    symbol = parse_symbol(args.symbol)
    step = interval_ms(args.interval)
    end = args.end if args.end is not None else int(time.time() * 1000)
    end = end // step * step  # only closed bars
    start = end - args.days * 86_400_000
    progress = ProgressLine(sys.stderr, enabled=not args.quiet)
    feed = make_rest_feed(args.venue, settings.feeds)

    async def go() -> Any:
        try:
            return await backfill(feed, symbol, args.interval, start, end, progress.update)
        finally:
            await feed.aclose()

    try:
        bars = asyncio.run(go())
    finally:
        progress.done()
    write_atomic(Path(args.out), format_bars_csv(bars).encode())
    status = feed.status()
    print(
        f"{len(bars)} {args.interval} bars of {symbol} on {args.venue}, "
        f"{ms_to_iso(int(bars.ts[0]))} to {ms_to_iso(int(bars.ts[-1]))}, written to {args.out} "
        f"({status.requests} requests)"
    )
    return 0
