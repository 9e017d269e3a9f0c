"""Backfill and incremental polling over the real REST clients and a real local server that
emulates Binance, OKX and Bybit (tests/fakes/venue_api.py).

Time is simulated: the clients and the server share a :class:`SimClock`, so budget waits move the
clock instead of taking real seconds, and the server meters every documented limit in that time.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import httpx
import numpy as np
import pytest

from core.bars import Bars
from core.feeds.backfill import (
    IncrementalPoller,
    backfill,
    fetch_klines,
    fetch_open_interest,
    join_bars,
)
from core.feeds.base import RestFeed
from core.feeds.binance import BinanceRest
from core.feeds.bybit import BybitRest
from core.feeds.errors import UnknownSymbol
from core.feeds.okx import OkxRest
from core.feeds.types import Kline
from tests.fakes.venue_api import FakeVenueApi, SimClock

STEP = 300_000  # 5m
DAY = 86_400_000
NOW_MS = 1_791_565_200_000 + 12 * 60_000 + 30_000  # 2026-10-09 06:12:30 UTC, inside a 5m bar
CLOSED_BEFORE = NOW_MS // STEP * STEP  # open time of the forming bar
VENUES = ("binance", "okx", "bybit")
KLINE_PATH = {
    "binance": "/fapi/v1/klines",
    "okx": "/api/v5/market/candles",
    "bybit": "/v5/market/kline",
}


def requested_start(venue: str, params: dict[str, str]) -> int:
    """The first bar open time a klines request asked for, in each venue's own terms."""
    if venue == "binance":
        return int(params["startTime"])
    if venue == "okx":
        return int(params["before"]) + 1  # 'before' is exclusive: rows newer than it
    return int(params["start"])


@pytest.fixture
def clock() -> SimClock:
    return SimClock(NOW_MS / 1000)


@pytest.fixture
def api(clock: SimClock) -> Iterator[FakeVenueApi]:
    with FakeVenueApi(["BTC", "ETH"], clock=clock.time) as server:
        yield server
    assert server.errors == []


@contextlib.asynccontextmanager
async def open_feed(venue: str, api: FakeVenueApi, clock: SimClock) -> AsyncIterator[RestFeed]:
    feed: RestFeed
    if venue == "binance":
        feed = BinanceRest(api.url, clock=clock.time, sleep=clock.sleep)
    elif venue == "okx":
        feed = OkxRest(api.url, clock=clock.time, sleep=clock.sleep)
    else:
        feed = BybitRest(api.url, clock=clock.time, sleep=clock.sleep)
    try:
        yield feed
    finally:
        await feed.aclose()


def served(api: FakeVenueApi, symbol: str, start_ms: int, end_ms: int) -> Bars:
    """The server's 5m bars opened in [start_ms, end_ms)."""
    bars = api.bars(symbol, "5m")
    keep = (bars.ts >= start_ms) & (bars.ts < end_ms)
    lo, hi = np.flatnonzero(keep)[[0, -1]]
    return bars.slice(int(lo), int(hi) + 1)


def assert_same_bars(got: Bars, want: Bars, venue: str) -> None:
    np.testing.assert_array_equal(got.ts, want.ts)
    for col in ("open", "high", "low", "close", "volume_usd"):
        np.testing.assert_array_equal(getattr(got, col), getattr(want, col), err_msg=col)
    # OI at each bar's close: the venues send it in USD except Bybit (coin, valued at the close).
    np.testing.assert_allclose(got.oi_usd, want.oi_usd, rtol=1e-12)
    if venue == "binance":
        np.testing.assert_array_equal(got.taker_buy_usd, want.taker_buy_usd)
    else:  # OKX and Bybit klines carry no taker-buy split
        assert np.isnan(got.taker_buy_usd).all()


def assert_same_klines(got: list[Kline], api: FakeVenueApi, symbol: str) -> None:
    bars = api.bars(symbol, "5m")
    idx = (np.array([k.ts_ms for k in got]) - api.start_ms) // STEP
    np.testing.assert_array_equal([k.close for k in got], bars.close[idx])
    np.testing.assert_array_equal([k.open for k in got], bars.open[idx])


# --- backfill ---------------------------------------------------------------------------------


@pytest.mark.parametrize("symbol", ["BTC", "ETH"])
@pytest.mark.parametrize("venue", VENUES)
async def test_backfill_equals_the_venue_bars(
    venue: str, symbol: str, api: FakeVenueApi, clock: SimClock
) -> None:
    end = CLOSED_BEFORE
    start = end - 7 * DAY + STEP  # as `liqbot fetch` asks: 2,015 bars, several pages each
    async with open_feed(venue, api, clock) as feed:
        bars = await backfill(feed, symbol, "5m", start, end)
        sent = feed.status().requests

    assert len(bars) == (end - start) // STEP
    assert (np.diff(bars.ts) == STEP).all()  # oldest first, no duplicates, no gaps
    assert_same_bars(bars, served(api, symbol, start, end), venue)
    assert sent == api.count(venue=venue)
    assert api.violations() == 0
    assert all(r.status == 200 for r in api.requests)


async def test_okx_budget_waits_in_simulated_time(api: FakeVenueApi, clock: SimClock) -> None:
    # 2,016 OI rows at 100 a request is 21 rubik requests; OKX allows 10 per 2 s and the
    # client budgets 8, so it must wait, and must never be refused.
    async with open_feed("okx", api, clock) as feed:
        await backfill(feed, "BTC", "5m", CLOSED_BEFORE - 7 * DAY + STEP, CLOSED_BEFORE)
    rubik = api.usage()["okx"]["windows"]["rubik-oi"]
    assert rubik["requests"] == 21
    assert rubik["peak"] <= 8
    assert clock.slept_s > 0
    assert api.violations() == 0


@pytest.mark.parametrize("venue", VENUES)
async def test_progress_counts_pages_per_stage(
    venue: str, api: FakeVenueApi, clock: SimClock
) -> None:
    calls: list[tuple[str, int, int]] = []
    async with open_feed(venue, api, clock) as feed:
        await backfill(
            feed,
            "BTC",
            "5m",
            CLOSED_BEFORE - 7 * DAY + STEP,
            CLOSED_BEFORE,
            lambda what, done, total: calls.append((what, done, total)),
        )
    stages = [f"{venue} bars", f"{venue} open interest"]
    assert list(dict.fromkeys(what for what, _, _ in calls)) == stages
    for stage in stages:
        mine = [(done, total) for what, done, total in calls if what == stage]
        totals = {total for _, total in mine}
        assert len(totals) == 1
        assert [done for done, _ in mine] == list(range(1, len(mine) + 1))
        assert mine[-1][0] == mine[-1][1]  # the last page completes the stage


@pytest.mark.parametrize("venue", VENUES)
async def test_unknown_symbol_is_the_venues_error(
    venue: str, api: FakeVenueApi, clock: SimClock
) -> None:
    async with open_feed(venue, api, clock) as feed:
        with pytest.raises(UnknownSymbol) as info:
            await backfill(feed, "SOL", "5m", CLOSED_BEFORE - DAY, CLOSED_BEFORE)
    assert info.value.venue == venue
    assert api.count() == 1  # the first klines page already says so


async def test_binance_oi_of_an_unknown_symbol_is_probed(
    api: FakeVenueApi, clock: SimClock
) -> None:
    # /futures/data answers HTTP 200 [] for an unknown symbol; the client probes once.
    async with open_feed("binance", api, clock) as feed:
        with pytest.raises(UnknownSymbol):
            await fetch_open_interest(feed, "SOL", "5m", CLOSED_BEFORE - DAY, CLOSED_BEFORE)
    asked = api.requests_to("/futures/data/openInterestHist")
    assert [r.status for r in asked] == [200, 200]
    assert "startTime" in asked[0].params
    assert asked[1].params == {"symbol": "SOLUSDT", "period": "5m", "limit": "1"}


async def test_binance_keeps_30_days_of_oi_so_join_drops_older_bars(
    api: FakeVenueApi, clock: SimClock
) -> None:
    end = CLOSED_BEFORE
    start = end - 40 * DAY
    oi_from = -(-(NOW_MS - 30 * DAY) // STEP) * STEP  # the oldest sample Binance still has
    async with open_feed("binance", api, clock) as feed:
        klines = await fetch_klines(feed, "BTC", "5m", start, end)
        oi = await fetch_open_interest(feed, "BTC", "5m", oi_from, end)
    assert len(klines) == 40 * DAY // STEP
    assert oi[0].ts_ms == oi_from

    bars = join_bars(klines, oi, STEP)
    # The first bar kept is the one that closes at the oldest OI sample.
    assert int(bars.ts[0]) == oi_from - STEP
    assert_same_bars(bars, served(api, "BTC", oi_from - STEP, end), "binance")


async def test_binance_server_answers_no_oi_older_than_30_days(
    api: FakeVenueApi, clock: SimClock
) -> None:
    async with httpx.AsyncClient(base_url=api.url) as client:
        old = NOW_MS - 35 * DAY
        params: dict[str, str | int] = {"symbol": "BTCUSDT", "period": "5m"}
        params.update(startTime=old, endTime=old + DAY)
        r = await client.get("/futures/data/openInterestHist", params=params)
    assert r.status_code == 200
    assert r.json() == []


async def test_binance_backfill_beyond_30_days_drops_bars_without_oi(
    api: FakeVenueApi, clock: SimClock
) -> None:
    # backfill asks Binance only for the OI it still has (one bar of slack for the clock);
    # join_bars then drops the older bars, which cannot have OI.
    end = CLOSED_BEFORE
    oi_start = -(-(NOW_MS - 30 * DAY + STEP) // STEP) * STEP
    async with open_feed("binance", api, clock) as feed:
        bars = await backfill(feed, "BTC", "5m", end - 40 * DAY, end)
    assert int(bars.ts[0]) == oi_start - STEP
    assert (np.diff(bars.ts) == STEP).all()
    assert_same_bars(bars, served(api, "BTC", oi_start - STEP, end), "binance")
    asked = api.requests_to("/futures/data/openInterestHist")
    assert int(asked[0].params["startTime"]) == oi_start
    assert all(r.status == 200 for r in api.requests)


# --- incremental polling -----------------------------------------------------------------------


@pytest.mark.parametrize("venue", VENUES)
async def test_poller_fetches_only_new_closed_bars(
    venue: str, api: FakeVenueApi, clock: SimClock
) -> None:
    poller = IncrementalPoller(first_fetch_bars=50)
    path = KLINE_PATH[venue]
    async with open_feed(venue, api, clock) as feed:
        first = await poller.poll(feed, "BTC", "5m", NOW_MS)
        assert len(first) == 50
        assert [k.ts_ms for k in first] == list(
            range(CLOSED_BEFORE - 50 * STEP, CLOSED_BEFORE, STEP)
        )  # oldest first, the forming bar (CLOSED_BEFORE) left out
        assert_same_klines(first, api, "BTC")
        assert [requested_start(venue, r.params) for r in api.requests_to(path)] == [
            CLOSED_BEFORE - 50 * STEP
        ]

        # Same tick, and a tick inside the same bar: nothing new, no request.
        assert await poller.poll(feed, "BTC", "5m", NOW_MS) == []
        clock.advance(60)
        assert await poller.poll(feed, "BTC", "5m", int(clock.time() * 1000)) == []
        assert api.count() == 1

        # Three more bars close: exactly those, asked for from the one after the last.
        clock.advance(3 * STEP / 1000)
        now = int(clock.time() * 1000)
        later = await poller.poll(feed, "BTC", "5m", now)
        assert [k.ts_ms for k in later] == [CLOSED_BEFORE + i * STEP for i in range(3)]
        assert all(k.ts_ms + STEP <= now for k in later)  # all closed
        assert_same_klines(later, api, "BTC")
        asked = api.requests_to(path)
        assert len(asked) == 2
        assert requested_start(venue, asked[-1].params) == CLOSED_BEFORE
        assert poller.last_bar_ms(venue, "BTC", "5m") == CLOSED_BEFORE + 2 * STEP
    assert api.violations() == 0


# --- the fake itself: the limits it meters are real ------------------------------------------


def test_fake_binance_weight_header_429_then_418(clock: SimClock) -> None:
    minute = NOW_MS // 60_000 * 60_000
    clock.advance(minute / 1000 - clock.time())  # the start of a calendar minute
    with FakeVenueApi(["BTC"], clock=clock.time) as api, httpx.Client(base_url=api.url) as c:
        used = [
            int(c.get("/fapi/v1/premiumIndex").headers["X-MBX-USED-WEIGHT-1M"])
            for _ in range(240)  # weight 10 each without a symbol
        ]
        assert used[:3] == [10, 20, 30]
        assert used[-1] == 2400
        over = c.get("/fapi/v1/premiumIndex")
        assert over.status_code == 429
        assert over.json()["code"] == -1003
        assert 0 < int(over.headers["Retry-After"]) <= 60
        banned = c.get("/fapi/v1/premiumIndex", params={"symbol": "BTCUSDT"})
        assert banned.status_code == 418
        assert "banned until" in banned.json()["msg"]
        clock.advance(121)  # the ban is over, and it is a new minute
        again = c.get("/fapi/v1/premiumIndex", params={"symbol": "BTCUSDT"})
        assert again.status_code == 200
        assert again.headers["X-MBX-USED-WEIGHT-1M"] == "1"
        usage = api.usage()["binance"]
        assert usage["windows"]["weight"]["violations"] == 2  # both went over 2,400
        assert usage["refused"] == 2
        assert api.errors == []


def test_fake_okx_candles_keep_1440_bars_and_rubik_limit(clock: SimClock) -> None:
    with FakeVenueApi(["BTC"], clock=clock.time) as api, httpx.Client(base_url=api.url) as c:
        old = CLOSED_BEFORE - 1500 * STEP
        params: dict[str, str | int] = {"instId": "BTC-USDT-SWAP", "bar": "5m"}
        params.update(after=old + 1, limit=100)
        assert c.get("/api/v5/market/candles", params=params).json()["data"] == []
        rows = c.get("/api/v5/market/history-candles", params=params).json()["data"]
        assert [int(r[0]) for r in rows] == [old - i * STEP for i in range(100)]  # newest first
        recent = c.get("/api/v5/market/candles", params={"instId": "BTC-USDT-SWAP", "bar": "5m"})
        assert recent.json()["data"][0][8] == "0"  # the forming bar, newest first
        too_many = c.get("/api/v5/market/candles", params={**params, "limit": 301})
        assert too_many.json()["code"] == "51000"

        oi = {"instId": "BTC-USDT-SWAP", "period": "5m"}
        rubik = "/api/v5/rubik/stat/contracts/open-interest-history"
        answers = [c.get(rubik, params=oi) for _ in range(11)]  # 10 per 2 s allowed
        assert [a.status_code for a in answers] == [200] * 10 + [429]
        assert answers[-1].json()["code"] == "50011"
        assert api.violations("okx") == 1
        unknown = c.get("/api/v5/market/candles", params={"instId": "SOL-USDT-SWAP"})
        assert unknown.status_code == 200
        assert unknown.json()["code"] == "51001"


def test_fake_bybit_oi_cursor_pages_newest_first(clock: SimClock) -> None:
    with FakeVenueApi(["BTC"], clock=clock.time) as api, httpx.Client(base_url=api.url) as c:
        params: dict[str, str | int] = {
            "category": "linear",
            "symbol": "BTCUSDT",
            "intervalTime": "5min",
            "startTime": CLOSED_BEFORE - 499 * STEP,
            "endTime": CLOSED_BEFORE,
            "limit": 200,
        }
        stamps: list[int] = []
        while True:
            result = c.get("/v5/market/open-interest", params=params).json()["result"]
            stamps += [int(row["timestamp"]) for row in result["list"]]
            if not result["nextPageCursor"]:
                break
            params["cursor"] = result["nextPageCursor"]
        assert stamps == [CLOSED_BEFORE - i * STEP for i in range(500)]
        unknown = c.get("/v5/market/kline", params={"symbol": "SOLUSDT", "interval": "5"})
        assert unknown.json()["retCode"] == 10001
        assert api.violations() == 0

        # 600 requests per 5 s per IP; the 601st in the same window is an IP ban (403).
        tickers = {"category": "linear", "symbol": "BTCUSDT"}
        sent = api.count()
        answers = [c.get("/v5/market/tickers", params=tickers) for _ in range(601 - sent)]
        assert {a.status_code for a in answers[:-1]} == {200}
        assert answers[-1].status_code == 403
        assert api.violations("bybit") == 1
