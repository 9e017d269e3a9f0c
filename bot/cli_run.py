"""``liqbot run``: the bot itself (see :mod:`bot.app`)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
GIL_SWITCH_S = 0.0005

_EXAMPLE = """Chat platforms start when their tokens are in the environment:
  LIQBOT_TELEGRAM_TOKEN   Telegram bot token (from @BotFather)
  LIQBOT_DISCORD_TOKEN    Discord bot token (Developer Portal -> Bot)
Optional: LIQBOT_TELEGRAM_WEBHOOK_SECRET (webhook mode), LIQBOT_SOSOVALUE_KEY,
LIQBOT_COINGLASS_KEY (paid ETF sources). Tokens are never printed or logged.

examples:
  liqbot run --demo                      # offline: simulated market, commands in this terminal
  liqbot run --demo --speed 1200 --duration 120
  LIQBOT_TELEGRAM_TOKEN=123:abc liqbot run          # live market data, Telegram
  liqbot run --console                   # live market data, commands in this terminal
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run the bot: market polling, alerts, Telegram/Discord (or --demo offline)",
        description=(
            "Run liqbot: poll the markets, build liquidation maps, evaluate alerts, deliver "
            "them and answer commands. Stops gracefully on SIGTERM or Ctrl-C."
        ),
        epilog=_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--demo",
        action="store_true",
        help="offline: a seeded simulated market on a fast clock, with the console chat",
    )
    p.add_argument("--console", action="store_true", help="also take commands in this terminal")
    p.add_argument("--config", metavar="FILE", help="config.yaml to use")
    p.add_argument("--db", metavar="URL", help="database URL (overrides database.url)")
    p.add_argument(
        "--duration", type=_positive, metavar="SECONDS", help="stop after this many seconds"
    )
    p.add_argument(
        "--speed",
        type=_positive,
        default=600.0,
        help="demo: simulated seconds per real second (default 600: an hour in 6 s)",
    )
    p.add_argument("--seed", type=int, default=7, help="demo: the simulation's seed (default 7)")
    p.add_argument(
        "--scenario",
        choices=["news", "random"],
        default="news",
        help="demo: 'news' replays the Jan 2026 short squeeze (default), 'random' a plain market",
    )
    p.add_argument("--chart-dir", default="data/charts", help="console: where charts are saved")
    p.add_argument(
        "--metrics-port",
        type=_port,
        metavar="PORT",
        help="serve Prometheus /metrics and /healthz on 127.0.0.1:PORT (default: off)",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", default="text", choices=["text", "json"])
    p.set_defaults(handler=run)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535, got {value}")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def run(args: argparse.Namespace) -> int:
    from bot.app import RunOptions, run_bot
    from bot.logs import setup_logging
    from core.config import load_settings

    # python-telegram-bot's RetryAfter as a timedelta now (its deprecation warning otherwise).
    os.environ.setdefault("PTB_TIMEDELTA", "1")
    setup_logging(args.log_level, json_lines=args.log_format == "json")
    settings = load_settings(args.config)
    opts = RunOptions(
        demo=args.demo,
        console=args.console,
        duration_s=args.duration,
        speed=args.speed,
        seed=args.seed,
        scenario=args.scenario,
        db_url=args.db,
        chart_dir=args.chart_dir,
        metrics_port=args.metrics_port,
    )
    # SQLite (aiosqlite) and chart rendering run in threads, and each SQL statement hands the
    # GIL over and back. By default a busy event loop keeps the GIL up to 5 ms before such a
    # thread gets it, so under webhook load a /start (a few statements) took up to a second.
    sys.setswitchinterval(GIL_SWITCH_S)
    return run_event_loop(run_bot(settings, opts))


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    """``main`` on uvloop where it is installed (Linux, macOS), else on asyncio's own loop.

    uvloop's loop is written in C: under webhook load, asyncio's selector, transports and
    callbacks were about a fifth of the bot's CPU.
    """
    try:
        import uvloop
    except ImportError:  # Windows
        return asyncio.run(main)
    return uvloop.run(main)
