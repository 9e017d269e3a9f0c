"""Feeds on an accelerated clock: CSV replay and the simulated market, as the live feeds.

Both run the bot on data time that passes ``speed`` times faster than the wall clock, behind the
live interfaces: :class:`TapeRest` is a :class:`~core.feeds.base.RestFeed` and
:class:`TapeLiquidationStream` a :class:`~core.feeds.base.LiquidationStream`. Their answers
come from the pure cores (:mod:`core.feeds.replay`, :mod:`core.feeds.sim_market`) as of the
clock's "now"; this module only reads the injected ``clock`` and awaits the injected ``sleep``,
so tests drive it with a fake clock and never wait.

* :func:`open_replay`: a bar CSV played back (see :mod:`core.feeds.replay` for how a bar's
  realized liquidations become events).
* :class:`SimDriver`: a :class:`~core.feeds.sim_market.Simulation` (``liqbot run --demo``).
  The market is generated lazily: whenever a feed is asked, it first advances to the bar in
  progress, so a bar exists from its open but is served only once closed, and its liquidation
  events come out as the clock reaches them. :meth:`SimDriver.rest` gives a
  :class:`SimulatedRest` per venue, :meth:`SimDriver.liquidation_stream` a
  :class:`SimulatedLiquidationStream` per venue (every symbol), :meth:`SimDriver.etf` the ETF
  flows as published by "now".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from core.bars import Bars
from core.bars_csv import load_bars_csv
from core.durations import parse_duration_ms
from core.errors import InputError
from core.etf import EtfFlows
from core.feeds.base import StreamStatus
from core.feeds.errors import FeedUnavailable, UnknownSymbol
from core.feeds.etf_feed import FlowSource
from core.feeds.http import VenueStatus
from core.feeds.replay import AcceleratedClock, BarTape, ReplayTape
from core.feeds.sim_market import Simulation
from core.feeds.simulator import SimConfig
from core.feeds.symbols import base_of
from core.feeds.types import Kline, LiqEvent, MarkPrice, OpenInterest, Venue

Clock = Callable[[], float]  # wall seconds since the epoch
Sleep = Callable[[float], Awaitable[None]]
DEFAULT_LIMIT = 500


class ReplayClock:
    """Wall clock -> data time, for the feeds; ``clock`` is injectable."""

    def __init__(self, data0_ms: int, speed: float, clock: Clock = time.time) -> None:
        self.wall = clock
        self.accel = AcceleratedClock(data0_ms, clock(), speed)

    def now_ms(self) -> int:
        return self.accel.data_ms(self.wall())

    def wall_until(self, data_ms: int) -> float:
        """Wall seconds until data time ``data_ms`` (negative when it has passed)."""
        return self.accel.wall_at(data_ms) - self.wall()


class EventSource(Protocol):
    """What a :class:`TapeLiquidationStream` plays: events by data time."""

    def events_between(self, after_ms: int, until_ms: int) -> list[LiqEvent]: ...

    def next_event_ms(self, after_ms: int) -> int | None:
        """When to look again: the next event's time, None when no event will ever come."""
        ...


class TapeRest:
    """:class:`~core.feeds.base.RestFeed` over one :class:`BarTape` per symbol, answering as of
    the clock's "now". ``tape_for`` raises :class:`UnknownSymbol` for a symbol it lacks."""

    max_klines_per_request = 1500
    max_oi_per_request = 500

    def __init__(
        self, venue: Venue, tape_for: Callable[[str], BarTape], now_ms: Callable[[], int]
    ) -> None:
        self.venue: Venue = venue
        self._tape_for = tape_for
        self._now_ms = now_ms
        self._requests = 0

    def _tape(self, symbol: str) -> tuple[BarTape, int]:
        self._requests += 1
        now = self._now_ms()  # first: a tape made after it holds everything closed by then
        return self._tape_for(base_of(symbol)), now

    async def klines(
        self,
        symbol: str,
        interval: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int | None = None,
    ) -> list[Kline]:
        n = _limit(limit, self.max_klines_per_request)
        tape, now = self._tape(symbol)
        return tape.klines(now, parse_duration_ms(interval), start_ms, end_ms, n)

    async def open_interest_hist(
        self,
        symbol: str,
        period: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int | None = None,
    ) -> list[OpenInterest]:
        n = _limit(limit, self.max_oi_per_request)
        tape, now = self._tape(symbol)
        return tape.oi_hist(now, parse_duration_ms(period), start_ms, end_ms, n)

    async def open_interest(self, symbol: str) -> OpenInterest:
        tape, now = self._tape(symbol)
        return tape.oi_now(now)

    async def mark_price(self, symbol: str) -> MarkPrice:
        tape, now = self._tape(symbol)
        return tape.mark(now)

    def status(self) -> VenueStatus:
        return VenueStatus(self.venue, "ok", None, None, self._now_ms(), 0, self._requests, {})

    async def aclose(self) -> None:
        return None


class TapeLiquidationStream:
    """:class:`~core.feeds.base.LiquidationStream` that plays an :class:`EventSource`.

    Yields each event once the clock reaches its time, from ``start_ms`` on, and ends when the
    source says no event will come. Sleeps at most ``max_sleep_s`` at a time, so
    :meth:`aclose` takes effect promptly.
    """

    def __init__(
        self,
        venue: Venue,
        source: EventSource,
        clock: ReplayClock,
        *,
        start_ms: int | None = None,
        sleep: Sleep = asyncio.sleep,
        max_sleep_s: float = 1.0,
        url: str = "replay://",
    ) -> None:
        self.venue: Venue = venue
        self.source = source
        self.clock = clock
        self.url = url
        self._sleep = sleep
        self._max_sleep = max_sleep_s
        self._cursor = (clock.accel.data0_ms if start_ms is None else start_ms) - 1
        self._closed = False
        self._events = 0
        self._last_event: int | None = None
        self._last_message: int | None = None

    def recent(self, since_ms: int) -> list[LiqEvent]:
        """Events from ``since_ms`` up to now: history for a backfill of rolling windows."""
        return self.source.events_between(since_ms - 1, self.clock.now_ms())

    async def events(self) -> AsyncIterator[LiqEvent]:
        reached = self._cursor  # data time a full sleep has certainly reached
        while not self._closed:
            # A full sleep to `nxt` counts as reaching it even where float rounding of the
            # wall clock lands a hair before: otherwise a zero-length wait could spin forever.
            now = max(self.clock.now_ms(), reached)
            for event in self.source.events_between(self._cursor, now):
                self._events += 1
                self._last_event, self._last_message = event.ts_ms, now
                yield event
                if self._closed:
                    return
            self._cursor = now
            nxt = self.source.next_event_ms(now)
            if nxt is None:  # the tape has ended: so has the "connection"
                self._closed = True
                return
            wait = max(self.clock.wall_until(nxt), 0.0)
            if wait <= self._max_sleep:
                reached = nxt
            await self._sleep(min(wait, self._max_sleep))

    def status(self) -> StreamStatus:
        return StreamStatus(
            venue=self.venue,
            url=self.url,
            connected=not self._closed,
            connects=1,
            last_message_ms=self._last_message,
            last_event_ms=self._last_event,
            events=self._events,
            dropped_frames=0,
            last_error=None,
            subscribed=not self._closed,  # nothing to subscribe to: in place while running
        )

    async def aclose(self) -> None:
        self._closed = True


def _limit(limit: int | None, most: int) -> int:
    if limit is None:
        return min(DEFAULT_LIMIT, most)
    if not 1 <= limit <= most:
        raise InputError(f"limit must be between 1 and {most}, got {limit}")
    return limit


@dataclass(frozen=True)
class Replay:
    """The replay feeds of one CSV, sharing one clock."""

    tape: ReplayTape
    clock: ReplayClock
    rest: TapeRest
    stream: TapeLiquidationStream


def open_replay(
    source: str | Path | Bars,
    *,
    venue: Venue = "binance",
    symbol: str = "BTC",
    speed: float = 3600.0,
    start_ms: int | None = None,
    start_bar: int = 0,
    loop: bool = False,
    events_per_bar: int = 4,
    clock: Clock = time.time,
    sleep: Sleep = asyncio.sleep,
) -> Replay:
    """Replay feeds over a bar CSV (or loaded :class:`~core.bars.Bars`).

    The replay starts at ``start_ms``, else at the open of bar ``start_bar``: the bars before it
    are history, closed from the first instant. Without ``loop`` the stream ends after the last
    bar.
    """
    bars = source if isinstance(source, Bars) else load_bars_csv(source)
    tape = ReplayTape(bars, venue=venue, symbol=symbol, loop=loop, events_per_bar=events_per_bar)
    if start_ms is None:
        if not 0 <= start_bar < len(bars):
            raise InputError(f"start_bar must be within 0..{len(bars) - 1}, got {start_bar}")
        start_ms = int(bars.ts[start_bar])
    rclock = ReplayClock(start_ms, speed, clock)

    def tape_for(base: str) -> BarTape:
        if base != tape.symbol:
            raise UnknownSymbol(venue, f"the replay has {tape.symbol} only, not {base}")
        return tape

    rest = TapeRest(venue, tape_for, rclock.now_ms)
    stream = TapeLiquidationStream(
        venue,
        tape,
        rclock,
        sleep=sleep,
        url=f"replay://{Path(str(source)).name}"
        if not isinstance(source, Bars)
        else "replay://bars",
    )
    return Replay(tape, rclock, rest, stream)


class SimDriver:
    """Runs a :class:`~core.feeds.sim_market.Simulation` on an accelerated clock.

    Data time starts at ``start_ms`` (default: the config's ``live_start_ms``; the bars before
    it are history for a backfill) and runs ``speed`` times faster than ``clock``.
    """

    def __init__(
        self,
        sim: Simulation | SimConfig | None = None,
        *,
        speed: float = 600.0,
        start_ms: int | None = None,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        max_sleep_s: float = 1.0,
    ) -> None:
        self.sim = sim if isinstance(sim, Simulation) else Simulation(sim)
        start = self.sim.config.live_start_ms if start_ms is None else start_ms
        self.clock = ReplayClock(start, speed, clock)
        self.start_ms = start
        self.sleep = sleep
        self.max_sleep_s = max_sleep_s
        self._closed = False
        self.sync()

    def now_ms(self) -> int:
        return self.clock.now_ms()

    def sync(self) -> int:
        """Generate the market up to the bar in progress; returns data "now"."""
        now = self.now_ms()
        self.sim.advance_to(now)
        return now

    def tape(self, symbol: str, venue: Venue) -> BarTape:
        """The bars of ``symbol`` on ``venue`` generated so far (synced first)."""
        self.sync()
        market = self.sim.market
        if symbol not in market.symbols or venue not in market.venues:
            raise UnknownSymbol(venue, f"the simulation has no {symbol} on {venue}")
        bars = market.bars(symbol, venue)
        return BarTape(bars, venue=venue, symbol=symbol, interval_ms=market.config.interval_ms)

    def rest(self, venue: Venue) -> SimulatedRest:
        return SimulatedRest(self, venue)

    def liquidation_stream(self, venue: Venue) -> SimulatedLiquidationStream:
        return SimulatedLiquidationStream(self, venue)

    def etf(self) -> SimulatedEtfFeed:
        return SimulatedEtfFeed(self)

    async def run(self, until_ms: int | None = None) -> None:
        """Advance the market as each bar opens, until ``until_ms`` (data time) or :meth:`aclose`.

        Optional: the feeds advance it on demand anyway; this keeps it moving when nobody asks.
        """
        while not self._closed:
            now = self.sync()
            if until_ms is not None and now >= until_ms:
                return
            target = (
                self.sim.market.now_ms
                if until_ms is None
                else min(self.sim.market.now_ms, until_ms)
            )
            await self.sleep(min(max(self.clock.wall_until(target), 0.0), self.max_sleep_s))

    async def aclose(self) -> None:
        self._closed = True


class SimulatedRest(TapeRest):
    """:class:`~core.feeds.base.RestFeed` of one simulated venue (every simulated symbol)."""

    def __init__(self, driver: SimDriver, venue: Venue) -> None:
        super().__init__(venue, lambda symbol: driver.tape(symbol, venue), driver.now_ms)


class _MarketEvents:
    """:class:`EventSource` over one venue of the simulated market, generated on demand."""

    def __init__(self, driver: SimDriver, venue: Venue) -> None:
        self.driver, self.venue = driver, venue

    def events_between(self, after_ms: int, until_ms: int) -> list[LiqEvent]:
        self.driver.sim.advance_to(until_ms)
        return self.driver.sim.market.events_between(self.venue, after_ms, until_ms)

    def next_event_ms(self, after_ms: int) -> int | None:
        market = self.driver.sim.market
        nxt = market.next_event_ms(self.venue, after_ms)
        return market.now_ms if nxt is None else nxt  # else wake when the next bar opens


class SimulatedLiquidationStream(TapeLiquidationStream):
    """:class:`~core.feeds.base.LiquidationStream` of one simulated venue, every symbol.

    Starts at the driver's "now" when created; :meth:`recent` reaches back into the history.
    """

    def __init__(self, driver: SimDriver, venue: Venue) -> None:
        super().__init__(
            venue,
            _MarketEvents(driver, venue),
            driver.clock,
            start_ms=driver.now_ms(),
            sleep=driver.sleep,
            max_sleep_s=driver.max_sleep_s,
            url=f"sim://{venue}",
        )


class SimulatedEtfFeed:
    """Daily ETF flows of the simulation as published by the driver's "now"."""

    def __init__(self, driver: SimDriver) -> None:
        self._driver = driver
        self._requests = 0
        self._last_ok: int | None = None

    async def flows(self) -> EtfFlows:
        self._requests += 1
        now = self._driver.now_ms()
        flows = self._driver.sim.etf_flows(now)
        if flows is None:
            raise FeedUnavailable("simulated", "no simulated ETF day has been published yet")
        self._last_ok = now
        return flows

    def source(self) -> FlowSource:
        """This feed as a :class:`~core.feeds.etf_feed.FlowSource` (never cached on disk)."""
        return FlowSource("simulated", self.flows, cacheable=False)

    def status(self) -> VenueStatus:
        return VenueStatus("simulated", "ok", None, None, self._last_ok, 0, self._requests, {})

    async def aclose(self) -> None:
        return None
