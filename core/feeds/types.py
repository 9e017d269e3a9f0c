"""Normalized feed types: one unit system (USD notional, epoch-ms UTC) for every venue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Venue = Literal["binance", "okx", "bybit"]
Side = Literal["long", "short"]  # the position that was liquidated
VENUES: tuple[Venue, ...] = ("binance", "okx", "bybit")


@dataclass(frozen=True, slots=True)
class LiqEvent:
    """One forced liquidation.

    ``side`` is the position that was liquidated (a forced SELL on Binance liquidates a long).
    ``qty`` is in base coin; ``usd`` is price x qty.
    """

    venue: Venue
    symbol: str  # canonical base symbol, e.g. "BTC"
    side: Side
    price: float
    qty: float
    usd: float
    ts_ms: int


@dataclass(frozen=True, slots=True)
class OpenInterest:
    """Open interest at ``ts_ms``: base-coin amount and USD notional."""

    venue: Venue
    symbol: str
    ts_ms: int
    oi_base: float
    oi_usd: float


@dataclass(frozen=True, slots=True)
class MarkPrice:
    venue: Venue
    symbol: str
    ts_ms: int
    mark: float
    index: float | None = None
    funding_rate: float | None = None
    next_funding_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Kline:
    """One bar as a venue gives it, already in USD: volume and taker-buy volume are notional."""

    venue: Venue
    symbol: str
    ts_ms: int  # open time
    open: float
    high: float
    low: float
    close: float
    volume_usd: float
    taker_buy_usd: float | None  # None where the venue does not report taker flow
