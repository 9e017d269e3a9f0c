"""The market feeds the running bot reads: live venues, or the seeded simulation (``--demo``).

:class:`MarketFeeds` is the same shape either way (REST feed and liquidation stream per venue,
an ETF feed, and the data clock), so everything downstream is the same code in both modes.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from core.config import FeedsSettings, Settings
from core.feeds.base import LiquidationStream, RestFeed
from core.feeds.etf_feed import KEY_ENV, EtfFeed
from core.feeds.sim_feeds import SimDriver
from core.feeds.simulator import demo_config, news_item_config
from core.feeds.types import Venue

__all__ = ["MarketFeeds", "demo_feeds", "live_feeds", "make_rest_feed", "make_stream"]


@dataclass
class MarketFeeds:
    """Feeds per venue, the ETF feed, and the clock data time runs on (epoch seconds)."""

    symbols: tuple[str, ...]
    interval: str
    rests: dict[Venue, RestFeed]
    streams: dict[Venue, LiquidationStream]
    etf: EtfFeed | None
    clock: Callable[[], float] = time.time
    driver: SimDriver | None = None
    mode: str = "live"

    async def aclose(self) -> None:
        for rest in self.rests.values():
            await rest.aclose()
        for stream in self.streams.values():
            await stream.aclose()
        if self.etf is not None:
            await self.etf.aclose()
        if self.driver is not None:
            await self.driver.aclose()


def make_rest_feed(venue: str, feeds: FeedsSettings) -> RestFeed:
    """The REST client of ``venue`` at its configured base URL."""
    if venue == "binance":
        from core.feeds.binance import BinanceRest

        return BinanceRest(feeds.binance.rest_url, timeout_s=feeds.timeout_s)
    if venue == "okx":
        from core.feeds.okx import OkxRest

        return OkxRest(feeds.okx.rest_url, timeout_s=feeds.timeout_s)
    from core.feeds.bybit import BybitRest

    return BybitRest(feeds.bybit.rest_url, timeout_s=feeds.timeout_s)


def make_stream(
    venue: str, symbols: tuple[str, ...], feeds: FeedsSettings, rest: RestFeed
) -> LiquidationStream:
    """The liquidation websocket of ``venue`` at its configured URL, for ``symbols``.

    ``rest`` is the venue's REST feed: OKX reports liquidations in contracts, and its stream
    asks the REST feed for each swap's contract value before connecting.
    """
    if venue == "binance":
        from core.feeds.binance_ws import BinanceLiquidationStream

        return BinanceLiquidationStream(symbols, base_url=feeds.binance.ws_url)
    if venue == "okx":
        from core.feeds.okx import OkxRest
        from core.feeds.okx_ws import OkxLiquidationStream

        if not isinstance(rest, OkxRest):
            raise TypeError(f"the OKX stream needs the OKX REST feed, got {type(rest).__name__}")
        return OkxLiquidationStream(symbols, rest=rest, url=feeds.okx.ws_url)
    from core.feeds.bybit_ws import BybitLiquidationStream

    return BybitLiquidationStream(symbols, url=feeds.bybit.ws_url)


def live_feeds(settings: Settings) -> MarketFeeds:
    """Public market data of the configured venues, at the configured URLs."""
    f = settings.feeds
    symbols = settings.bot.symbols
    etf_opts: dict[str, Any] = {
        "farside_url": f.etf.farside_url,
        "file": f.etf.file,
        "sosovalue_key": os.environ.get(KEY_ENV["sosovalue"]),
        "coinglass_key": os.environ.get(KEY_ENV["coinglass"]),
    }
    rests = {v: make_rest_feed(v, f) for v in settings.bot.venues}
    return MarketFeeds(
        symbols=symbols,
        interval=settings.bot.interval,
        rests=rests,
        streams={v: make_stream(v, symbols, f, rests[v]) for v in settings.bot.venues},
        etf=EtfFeed.create(f.etf.source, f.etf.cache_dir, **etf_opts),
    )


def demo_feeds(
    *,
    speed: float = 600.0,
    seed: int = 7,
    scenario: str = "news",
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> MarketFeeds:
    """The seeded simulation on an accelerated clock: ``scenario`` 'news' replays the January
    2026 squeeze (live from 2026-01-13 12:00 UTC), 'random' a plain seeded market."""
    config = news_item_config(seed) if scenario == "news" else demo_config(seed)
    driver = SimDriver(config, speed=speed, clock=clock, sleep=sleep)
    market = driver.sim.market
    venues: tuple[Venue, ...] = tuple(market.venues)
    etf = driver.etf()
    return MarketFeeds(
        symbols=tuple(market.symbols),
        interval="1h",
        rests={v: driver.rest(v) for v in venues},
        streams={v: driver.liquidation_stream(v) for v in venues},
        etf=EtfFeed(etf.source(), "data/cache/etf-demo", clock=lambda: driver.now_ms() / 1000),
        clock=lambda: driver.now_ms() / 1000,
        driver=driver,
        mode="demo",
    )
