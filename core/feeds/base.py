"""What every venue feed offers, so backfill, polling and /status treat venues alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from core.feeds.http import VenueStatus
from core.feeds.types import Kline, LiqEvent, OpenInterest, Venue


@dataclass(frozen=True)
class StreamStatus:
    """Health of a websocket stream, as /status shows it."""

    venue: str
    url: str
    connected: bool
    connects: int  # connections opened so far (1 + reconnects)
    last_message_ms: int | None
    last_event_ms: int | None
    events: int
    dropped_frames: int  # frames rejected as malformed
    last_error: str | None
    filtered_frames: int = 0  # valid frames with nothing for us (acks, pongs, other markets)
    skipped: int = 0  # events the venue sent that could not be read without guessing
    subscribed: bool = False  # the current connection's subscription is in place


class RestFeed(Protocol):
    """REST market data of one venue, normalised to core types.

    Every list comes back oldest first, whatever order the venue sends. ``symbol`` is a
    canonical base ('BTC'); the feed maps it to the venue's instrument.
    """

    venue: Venue
    max_klines_per_request: int
    max_oi_per_request: int

    async def klines(
        self,
        symbol: str,
        interval: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int | None = None,
    ) -> list[Kline]: ...

    async def open_interest_hist(
        self,
        symbol: str,
        period: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int | None = None,
    ) -> list[OpenInterest]: ...

    async def open_interest(self, symbol: str) -> OpenInterest: ...

    def status(self) -> VenueStatus: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class LimitedOiHistory(Protocol):
    """Optional capability of a RestFeed whose open-interest history only reaches back so far."""

    def oi_history_start_ms(self) -> int:
        """The oldest timestamp the venue serves OI history for, now."""
        ...


class LiquidationStream(Protocol):
    """A venue's liquidation events, reconnecting until closed."""

    venue: Venue

    def events(self) -> AsyncIterator[LiqEvent]: ...

    def status(self) -> StreamStatus: ...

    async def aclose(self) -> None: ...
