"""Normalized feed types: one unit system for every venue.

Conventions every feed keeps:

* Money is USD notional (USDT counted 1:1), quantities are base coin, times are epoch
  milliseconds UTC. ``symbol`` is the canonical base ('BTC').
* Lists come back oldest first, whatever order the venue sends, with no timestamp twice.
* :class:`Kline` lists may end with the bar that is still forming; a client whose ``klines``
  takes ``closed_only=True`` (OKX, Bybit) leaves it out.
* :attr:`MarkPrice.funding_rate` is a fraction per 8 hours (0.0001 = 0.01 % per 8 h), whatever
  interval the venue pays at: a rate per 1 h or 4 h interval is converted (Bybit's
  ``fundingIntervalHour``; Binance's ``fundingIntervalHours`` when the payload has it, else
  premiumIndex's ``lastFundingRate`` is read as per 8 h, BTCUSDT's interval). The OKX client
  reports no mark price or funding.
"""

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
    """Mark (and index) price at ``ts_ms``, with the funding rate as a fraction per 8 hours."""

    venue: Venue
    symbol: str
    ts_ms: int
    mark: float
    index: float | None = None
    funding_rate: float | None = None  # fraction per 8 h, normalized from the venue's interval
    next_funding_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Kline:
    """One bar as a venue gives it, already in USD: volume and taker-buy volume are notional.

    Lists of bars are oldest first; the last one may still be forming unless the client was
    asked for ``closed_only=True``.
    """

    venue: Venue
    symbol: str
    ts_ms: int  # open time
    open: float
    high: float
    low: float
    close: float
    volume_usd: float
    taker_buy_usd: float | None  # None where the venue does not report taker flow
