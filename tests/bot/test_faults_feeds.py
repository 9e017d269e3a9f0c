"""Fault test: exchange feeds down, slow or banned for minutes (DESIGN §6 "stale data never
alerts", §9 real clients over real sockets).

The bot's real job set (:meth:`bot.pipeline.Pipeline.jobs`: polls, snapshot + alert engine,
outbox drain) runs under the scheduler's :class:`~alerts.scheduler.TickRunner` on a manual data
clock, over the real REST clients (Binance and Bybit) talking HTTP to local fake venues
(:mod:`tests.fakes.venue_api`). Commands go through the real :class:`bot.commands.CommandRouter`
via the console adapter, which is also where alerts are delivered. Binance is served by a
:class:`~tests.fakes.venue_faults.FaultyVenueApi` and Bybit stays healthy, so the map (and its
clusters) still exists during the fault: only the stale mark can keep the alert quiet.

Each case, in data time (``B`` a 5-minute bar boundary, bars of 5 minutes, a series stale after
10 minutes without a new bar):

* ``B+3s``: the first poll and snapshot, fresh; the fault starts (or was there already).
* ``B+10m``: the Binance series is stale; the snapshot, ``/status`` and ``/liqmap`` name it, and
  only it; a cluster alert that the data satisfies is created and stays silent while the
  fault lasts.
* ``B+15m``: the venue is healthy again (a ban ends by itself). With no restart and no command
  the next poll fetches the missed bars, the stale mark clears, ``/status`` and ``/liqmap`` say
  so, and the same alert fires, once.

The faults: connection refused (from the start, and after a good start), HTTP 503, answers
slower than ``feeds.timeout_s``, Binance's 418 IP ban, and its 429 with a Retry-After of minutes
(a banned client sends nothing more until the ban ends). Only the slow case takes wall time:
its timeouts are real.
"""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from alerts.engine import AlertEngine
from alerts.scheduler import JobRunner, TickRunner
from alerts.store import Store, open_store, stats
from bot.app import Senders
from bot.chat import Reply
from bot.commands import CommandRouter
from bot.console import ConsoleAdapter
from bot.feeds_setup import MarketFeeds
from bot.leader_duties import warm_up
from bot.pipeline import Pipeline
from bot.services import BotServices
from core.config import AlertSettings, BotSettings, FeedsSettings, MapSettings, Settings
from core.feeds.binance import BinanceRest
from core.feeds.bybit import BybitRest
from core.snapshot import Snapshot
from tests.fakes.timing import ManualClock
from tests.fakes.venue_api import ApiRequest, FakeVenueApi
from tests.fakes.venue_faults import FaultyVenueApi

MIN_S = 60.0
BAR_MS = 300_000
B = 1_791_565_200.0  # a 5-minute boundary (UTC)
START = B + 3  # warm-up: the bar that closed at B is in
STALE_BY = B + 10 * MIN_S + 30  # the last Binance bar closed at B: stale past B+10m
FAULT_END = B + 15 * MIN_S  # the venue is healthy again (a ban's end)
RECOVERED_BY = B + 16 * MIN_S  # the poll at B+15m02s, a snapshot and a drain have run

TIMEOUT_S = 0.4  # feeds.timeout_s: real seconds, so the slow case stays short
SLOW_S = 4 * TIMEOUT_S
BINANCE = "binance:BTC:bars:5m"
BYBIT = "bybit:BTC:bars:5m"
ALERT = "/alert cluster BTC 10% 1m"  # within 10% of a cluster of at least $1M
PCT, MIN_USD = 10.0, 1e6

SETTINGS = Settings(
    map=MapSettings(lookback="1d"),
    feeds=FeedsSettings(timeout_s=TIMEOUT_S),
    alerts=AlertSettings(tick_s=60.0, group_wait_s=0.0),
    bot=BotSettings(symbols=("BTC",), venues=("binance", "bybit"), interval="5m", poll_s=300.0),
)


@dataclass
class Bot:
    """The leader's pipeline over the two fake venues, its scheduler and the console chat."""

    clock: ManualClock
    faulty: FaultyVenueApi
    healthy: FakeVenueApi
    store: Store
    pipeline: Pipeline
    senders: Senders
    console: ConsoleAdapter
    out: io.StringIO
    runner: JobRunner = field(init=False)
    ticker: TickRunner = field(init=False)

    async def start(self) -> None:
        """As the leader starts (bot.leader_duties): the stored states, a first poll of every
        venue and a first snapshot, then the scheduler."""
        await self.pipeline.engine.start(self.pipeline.now_ms())
        await warm_up(self.pipeline)
        jobs = self.pipeline.jobs(self.senders, drain_every_s=30.0)
        self.runner = JobRunner(jobs, self.clock, None, SETTINGS.alerts)
        self.ticker = TickRunner(jobs, SETTINGS.alerts, clock=self.clock, runner=self.runner)

    async def run_until(self, until_s: float) -> None:
        """Every job due up to ``until_s`` on the data clock, in order, each run finished."""
        while (nxt := self.ticker.next_wakeup_s()) is not None and nxt <= until_s:
            self.clock.now = max(self.clock.now, nxt)
            self.ticker.run_due()
            await self.ticker.join()
        self.clock.now = max(self.clock.now, until_s)

    async def ask(self, line: str) -> Reply:
        """The reply to ``line`` typed in the console chat (through the command router)."""
        reply = await self.console.run_line(line)
        assert reply is not None
        return reply

    async def say(self, line: str) -> Reply:
        """:meth:`ask`, for a command that must succeed."""
        reply = await self.ask(line)
        assert not reply.error, reply
        return reply

    def snapshot(self) -> Snapshot:
        snap = self.pipeline.builder.cache.get("BTC")
        assert snap is not None
        return snap

    def alerts(self) -> list[str]:
        """The alerts delivered to the console chat so far."""
        return [b for b in self.out.getvalue().split("\n\n") if b.startswith("ALERT: ")]


@pytest.fixture
async def bot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Bot]:
    """The bot wired as ``liqbot run`` wires it (bot/app.py), not started yet."""
    # httpx honours proxy variables even for 127.0.0.1 (offline-testing.md §1.1)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    clock = ManualClock(START)
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'liqbot.db'}")
    with (
        FaultyVenueApi(["BTC"], clock=clock) as faulty,
        FakeVenueApi(["BTC"], clock=clock) as healthy,
    ):
        for api in (faulty, healthy):  # built now, not on a first request inside a timeout
            api.bars("BTC", "5m")
        timeout = SETTINGS.feeds.timeout_s
        feeds = MarketFeeds(
            symbols=SETTINGS.bot.symbols,
            interval=SETTINGS.bot.interval,
            rests={
                "binance": BinanceRest(
                    faulty.url, clock=clock, sleep=clock.sleep, timeout_s=timeout
                ),
                "bybit": BybitRest(healthy.url, clock=clock, sleep=clock.sleep, timeout_s=timeout),
            },
            streams={},  # REST faults only: no liquidation stream to keep fresh
            etf=None,
            clock=clock,
        )
        engine = AlertEngine(store, SETTINGS, clock)
        pipeline = Pipeline(SETTINGS, feeds, store, engine, instance="faults")
        services = BotServices(
            settings=SETTINGS,
            store=store,
            snapshots=pipeline.builder.cache,
            etf=pipeline.etf_view,
            status=pipeline.status,
            series=pipeline.series,
            subscriptions_changed=engine.subscriptions_changed,
            clock=clock,
        )
        out = io.StringIO()
        console = ConsoleAdapter(CommandRouter(services).handle, tmp_path / "charts", out=out)
        senders = Senders()
        senders.by_platform["console"] = console.send
        try:
            yield Bot(clock, faulty, healthy, store, pipeline, senders, console, out)
        finally:
            await feeds.aclose()
            await store.close()
    assert faulty.errors == [] and healthy.errors == []


# --- the faults ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    inject: Callable[[FaultyVenueApi], None]
    api_state: str  # how /status shows the Binance API while the fault lasts
    heal: bool = True  # the venue is healed at FAULT_END; a ban ends by itself
    from_start: bool = False  # the fault is there before the bot starts
    seen: Callable[[list[ApiRequest]], bool] = lambda requests: True  # what reached the venue


def _none(requests: list[ApiRequest]) -> bool:
    return requests == []


def _only(status: int, n: int | None = None) -> Callable[[list[ApiRequest]], bool]:
    def check(requests: list[ApiRequest]) -> bool:
        ok = bool(requests) and {r.status for r in requests} == {status}
        return ok and (n is None or len(requests) == n)

    return check


CASES = {
    "down-refused": Case(lambda api: api.refuse(), "degraded (binance: network error", seen=_none),
    "down-from-start": Case(
        lambda api: api.refuse(), "degraded (binance: network error", from_start=True, seen=_none
    ),
    "down-503": Case(
        lambda api: api.fail(503),
        "degraded (binance: /fapi/v1/klines answered HTTP 503",
        seen=_only(503),  # retried within each poll, and again at every poll
    ),
    "slow": Case(lambda api: api.slow(SLOW_S), "degraded (binance: timed out"),
    # One 418 opens the circuit until the ban's end: nothing more goes out before it.
    "banned-418": Case(
        lambda api: api.ban(FAULT_END, 418),
        "paused for 5m more (HTTP 418: IP banned for ignoring rate limits)",
        heal=False,
        seen=_only(418, 1),
    ),
    # A 429 whose Retry-After is minutes away: no retry, and no request until then.
    "throttled-429": Case(
        lambda api: api.ban(FAULT_END, 429),
        "degraded (binance: rate limited on /fapi/v1/klines",
        heal=False,
        seen=_only(429, 1),
    ),
}


def would_fire(snap: Snapshot) -> bool:
    """Whether the snapshot's data satisfies the alert (a cluster of at least MIN_USD within
    PCT% of the price), whatever its stale mark says."""
    return any(
        c.usd >= MIN_USD and abs(c.price - snap.price) / snap.price * 100 <= PCT
        for c in snap.clusters
    )


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
async def test_a_venue_fault_of_minutes_is_named_silences_alerts_and_recovers(
    bot: Bot, case: Case
) -> None:
    if case.from_start:
        case.inject(bot.faulty)
    await bot.start()
    first = bot.snapshot()
    if not case.from_start:  # a good start: both venues mapped, nothing stale
        assert first.stale == () and set(first.venues) == {"binance", "bybit"}
        status = (await bot.say("/status")).text
        assert "Binance API: ok" in status and "Series: 2 of 2 fresh" in status, status
        assert "stale" not in status.lower(), status
        last_bar = bot.pipeline.series.series("binance", "BTC")
        assert last_bar is not None and last_bar.last_open_ms == int(B * 1000) - BAR_MS
        case.inject(bot.faulty)
    during = len(bot.faulty.requests)

    # --- the fault lasts minutes: Binance is stale, and named ------------------------------
    await bot.run_until(STALE_BY)
    snap = bot.snapshot()
    assert snap.ts_ms > first.ts_ms
    assert snap.stale == (BINANCE,), snap.stale
    assert snap.venues == ("bybit",)  # the healthy venue still makes the map
    assert would_fire(snap), "the alert's condition holds on this data: only staleness stops it"

    status = (await bot.say("/status")).text
    assert f"Binance API: {case.api_state}" in status, status
    assert "Bybit API: ok" in status, status
    assert f"Series: 1 of 2 fresh; stale: {BINANCE}" in status, status
    assert re.search(rf"^BTC: snapshot \d+s old, stale: {BINANCE}$", status, re.M), status
    assert BYBIT not in status, status

    liqmap = await bot.say("/liqmap BTC")
    assert liqmap.png is not None  # Bybit's map is still drawn
    assert "Venues: Bybit." in liqmap.text, liqmap.text
    assert f"Data is stale: {BINANCE}. Alerts on BTC wait until it recovers." in liqmap.text
    assert BYBIT not in liqmap.text, liqmap.text
    one = await bot.ask("/liqmap BTC binance")
    if case.from_start:  # not one Binance bar yet
        assert one.error and "No Binance bars for BTC yet" in one.text, one.text
    else:  # Binance's bars from before the fault are stale: no map, and why
        assert not one.error and one.png is None, one.text
        assert f"Data is stale: {BINANCE}." in one.text, one.text

    # An alert the data satisfies, made while the data is stale: it must not fire.
    made = await bot.say(ALERT)
    assert "within 10% of a cluster of at least $1M" in made.text, made.text
    drains = bot.runner.stats["drain"].runs
    await bot.run_until(FAULT_END - 1)
    snap = bot.snapshot()
    assert snap.stale == (BINANCE,) and would_fire(snap)
    assert bot.runner.stats["drain"].runs > drains  # the outbox was drained: nothing was there
    assert bot.alerts() == []
    outbox = await stats(bot.store, bot.pipeline.now_ms())
    assert (outbox.pending, outbox.sent) == (0, 0), outbox
    assert case.seen(bot.faulty.requests[during:]), bot.faulty.requests[during:]

    # --- the venue comes back: nothing is restarted, nothing is typed ----------------------
    if case.heal:
        bot.clock.now = FAULT_END
        bot.faulty.heal()
    await bot.run_until(RECOVERED_BY)

    snap = bot.snapshot()
    assert snap.stale == () and set(snap.venues) == {"binance", "bybit"}, snap
    series = bot.pipeline.series.series("binance", "BTC")
    assert series is not None and series.bars is not None
    # The bars of the outage were fetched: none missing, up to the one that closed at B+15m.
    assert series.last_open_ms == int(FAULT_END * 1000) - BAR_MS
    gaps = {int(d) for d in series.bars.ts[1:] - series.bars.ts[:-1]}
    assert gaps == {BAR_MS} and len(series) == series.max_bars, (gaps, len(series))

    status = (await bot.say("/status")).text
    assert "Binance API: ok" in status and "Series: 2 of 2 fresh" in status, status
    assert "stale" not in status.lower(), status
    liqmap = await bot.say("/liqmap BTC")
    assert "Venues: Binance, Bybit." in liqmap.text, liqmap.text
    assert "stale" not in liqmap.text, liqmap.text

    # The same alert fires on fresh data, once.
    [alert] = bot.alerts()
    assert "cluster" in alert, alert
    failures = {k: st.last_error for k, st in bot.runner.stats.items() if st.failures}
    assert failures == {}, failures  # the fault was contained in the polls: no job failed
