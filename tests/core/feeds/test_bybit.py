"""Bybit REST: parsers against the real payloads in ../shared/samples, junk, and BybitRest end
to end over httpx.MockTransport (range chunks, cursor paging, OI in USD, errors, 403 ban)."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from core.errors import InputError
from core.feeds.bybit import (
    BybitRest,
    parse_klines,
    parse_open_interest_page,
    parse_ticker_item,
    parse_tickers,
    unwrap,
)
from core.feeds.errors import (
    Banned,
    CircuitOpen,
    FeedUnavailable,
    JunkResponse,
    RateLimited,
    UnknownSymbol,
    VenueError,
)
from core.feeds.types import Kline, MarkPrice, OpenInterest

HOUR = 3_600_000
NOW_MS = 1_791_565_200_000 + 25 * 60_000  # 2026-10-09 06:25 UTC, inside an hourly bar
CURRENT = NOW_MS // HOUR * HOUR

# --- samples --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def load(sample: Callable[[str], Any]) -> Callable[[str], Any]:
    return lambda name: sample(f"bybit_{name}")  # "kline__docs" reads bybit_kline__docs.json


def test_kline_linear(load: Callable[[str], Any]) -> None:
    assert parse_klines(load("kline__nautilus_linear"), "BTC") == [
        Kline("bybit", "BTC", 1709891679000, 27450.0, 27460.0, 27440.0, 27455.0, 3390000.0, None)
    ]


def test_kline_newest_first_is_reversed(load: Callable[[str], Any]) -> None:
    body = copy.deepcopy(load("kline__docs"))
    body["result"]["category"] = "linear"  # the docs example is inverse; see below
    bars = parse_klines(body, "BTC")
    assert [b.ts_ms for b in bars] == [1670601600000, 1670605200000, 1670608800000]
    assert bars[-1].volume_usd == 15.74462667  # turnover (index 6)


@pytest.mark.parametrize(
    ("name", "parse"),
    [
        ("kline__docs", lambda body: parse_klines(body, "BTC")),
        ("open_interest__docs", parse_open_interest_page),
        ("tickers__docs_inverse", lambda body: parse_tickers(body, "BTC")),
    ],
)
def test_inverse_answers_are_rejected(
    load: Callable[[str], Any], name: str, parse: Callable[[Any], Any]
) -> None:
    # Inverse units differ (OI in USD, turnover in coin): never read them as linear data.
    with pytest.raises(JunkResponse, match="category 'inverse'"):
        parse(load(name))


def test_open_interest_page_live(load: Callable[[str], Any]) -> None:
    rows, cursor = parse_open_interest_page(load("open_interest__live2023"))
    assert rows == [(1677832500000, 411484.61), (1677832800000, 411496.22)]  # oldest first
    assert cursor == "lastid%3D44487872"


def test_ticker_ws_linear_snapshot(load: Callable[[str], Any]) -> None:
    frame = load("ws_tickers_linear__nautilus")
    mark, oi = parse_ticker_item(frame["data"], "BTC", frame["ts"])
    assert mark == MarkPrice(
        "bybit", "BTC", 1673272861686, 17217.33, 17227.36, -0.000212, 1673280000000
    )
    assert oi == OpenInterest("bybit", "BTC", 1673272861686, 68744.761, 1183601235.91)
    with pytest.raises(JunkResponse, match="asked for ETHUSDT"):
        parse_ticker_item(frame["data"], "ETH", frame["ts"])


def test_ticker_funding_is_per_8h(load: Callable[[str], Any]) -> None:
    data = dict(load("ws_tickers_linear__nautilus")["data"], fundingIntervalHour="4")
    mark, _ = parse_ticker_item(data, "BTC", 1673272861686)
    assert mark.funding_rate == pytest.approx(-0.000424)


def test_error_params_mock(load: Callable[[str], Any]) -> None:
    with pytest.raises(VenueError) as info:
        unwrap(load("error_params__nautilus_mock"), "kline")
    assert type(info.value) is VenueError and info.value.code == 10001


# --- junk -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ([], JunkResponse),
        ({"retMsg": "OK", "result": {}}, JunkResponse),
        ({"retCode": "0", "result": {"list": []}}, JunkResponse),  # retCode is an int
        ({"retCode": 0, "result": []}, JunkResponse),
        ({"retCode": 10001, "retMsg": "params error: symbol invalid"}, UnknownSymbol),
        ({"retCode": 10001, "retMsg": "params error: interval invalid"}, VenueError),
        ({"retCode": 10006, "retMsg": "Too many visits!"}, RateLimited),
        ({"retCode": 10016, "retMsg": "Server error"}, FeedUnavailable),
        ({"retCode": 10017, "retMsg": "Route not found"}, VenueError),
    ],
)
def test_envelope_errors(body: Any, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        unwrap(body, "x")
    assert type(info.value) is error


def _kline_body(rows: Any) -> dict[str, Any]:
    return {"retCode": 0, "retMsg": "OK", "result": {"category": "linear", "list": rows}}


ROW = ["1709891679000", "27450", "27460", "27440", "27455", "123.45", "3390000"]


@pytest.mark.parametrize(
    "rows",
    [
        "rows",
        {"0": ROW},
        [ROW[:5]],
        [[*ROW[:2], "27000", *ROW[3:]]],  # high below open
        [[ROW[0], "x", *ROW[2:]]],
        [[*ROW[:6], "-1"]],
        [[1.5e12, *ROW[1:]]],  # a float timestamp
        [ROW, ROW],  # one bar twice
    ],
)
def test_kline_junk(rows: Any) -> None:
    with pytest.raises(JunkResponse):
        parse_klines(_kline_body(rows), "BTC")


@pytest.mark.parametrize(
    "item",
    [
        {"openInterest": "1"},
        {"timestamp": "1677832800000"},
        {"openInterest": "-1", "timestamp": "1677832800000"},
        {"openInterest": "1", "timestamp": "1677832800"},  # seconds
        "x",
    ],
)
def test_open_interest_junk(item: Any) -> None:
    body = {"retCode": 0, "result": {"category": "linear", "list": [item]}}
    with pytest.raises(JunkResponse):
        parse_open_interest_page(body)


# --- BybitRest over MockTransport -----------------------------------------------------------


class FakeTime:
    def __init__(self, now_ms: int) -> None:
        self.now = now_ms / 1000

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def close_at(ts: int) -> float:
    return 100.0 + ts // HOUR % 7


class FakeBybit:
    """/v5/market semantics: newest first, ranges inclusive, cursor pages on open-interest."""

    def __init__(self, listed_ms: int, *, fill_from: str = "newest") -> None:
        self.listed_ms, self.fill_from = listed_ms, fill_from
        self.requests: list[httpx.Request] = []
        self.replies: dict[str, httpx.Response] = {}

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path, q = request.url.path, dict(request.url.params)
        if path in self.replies:
            return self.replies[path]
        assert q["category"] == "linear"
        if q["symbol"] != "BTCUSDT":
            return httpx.Response(
                200, json={"retCode": 10001, "retMsg": "params error: Symbol Invalid"}
            )
        if path == "/v5/market/kline":
            assert q["interval"] == "60"
            lo, hi = int(q.get("start", 0)), int(q.get("end", CURRENT))
            times = [t for t in range(CURRENT, self.listed_ms - 1, -HOUR) if lo <= t <= hi]
            n = int(q.get("limit", 200))
            times = times[:n] if self.fill_from == "newest" else times[-n:]
            rows = [[str(t), "100", "110", "90", str(close_at(t)), "1", "1000"] for t in times]
            result: dict[str, Any] = {"category": "linear", "symbol": "BTCUSDT", "list": rows}
        elif path == "/v5/market/open-interest":
            assert q["intervalTime"] == "1h"
            lo, hi = int(q["startTime"]), int(q["endTime"])
            times = [t for t in range(CURRENT, self.listed_ms - 1, -HOUR) if lo <= t <= hi]
            offset = int(q.get("cursor", "lastid%3D0").split("%3D")[1])
            n = int(q.get("limit", 50))
            page = times[offset : offset + n]
            more = offset + n < len(times)
            result = {
                "category": "linear",
                "list": [{"openInterest": "2", "timestamp": str(t)} for t in page],
                "nextPageCursor": f"lastid%3D{offset + n}" if more else "",
            }
        else:
            raise AssertionError(f"unexpected {request.url}")
        return httpx.Response(
            200, json={"retCode": 0, "retMsg": "OK", "result": result, "time": NOW_MS}
        )


@contextlib.asynccontextmanager
async def rest_for(fake: FakeBybit) -> AsyncIterator[BybitRest]:
    t = FakeTime(NOW_MS)
    rest = BybitRest(transport=httpx.MockTransport(fake.handler), clock=t.clock, sleep=t.sleep)
    try:
        yield rest
    finally:
        await rest.aclose()


async def test_klines_latest() -> None:
    fake = FakeBybit(CURRENT - 5000 * HOUR)
    async with rest_for(fake) as rest:
        bars = await rest.klines("BTC", "1h", limit=3)
        closed = await rest.klines("BTCUSDT", "1h", limit=3, closed_only=True)
    assert [b.ts_ms for b in bars] == [CURRENT - 2 * HOUR, CURRENT - HOUR, CURRENT]
    assert [b.ts_ms for b in closed] == [CURRENT - 3 * HOUR, CURRENT - 2 * HOUR, CURRENT - HOUR]
    assert bars[0].close == close_at(CURRENT - 2 * HOUR) and bars[0].volume_usd == 1000.0
    assert dict(fake.requests[0].url.params) == {
        "category": "linear",
        "symbol": "BTCUSDT",
        "interval": "60",
        "start": str(CURRENT - 2 * HOUR),
        "end": str(CURRENT),
        "limit": "3",
    }


@pytest.mark.parametrize("fill_from", ["newest", "oldest"])
async def test_klines_long_range_in_chunks(fill_from: str) -> None:
    # Each request names a range that fits one page, so either filling order gives every bar.
    fake = FakeBybit(CURRENT - 5000 * HOUR, fill_from=fill_from)
    start = CURRENT - 2499 * HOUR
    async with rest_for(fake) as rest:
        bars = await rest.klines("BTC", "1h", start_ms=start - 1)
    assert [b.ts_ms for b in bars] == list(range(start, CURRENT + 1, HOUR))
    assert [int(r.url.params["limit"]) for r in fake.requests] == [1000, 1000, 500]


async def test_klines_stop_before_listing() -> None:
    fake = FakeBybit(CURRENT - 1500 * HOUR)
    async with rest_for(fake) as rest:
        bars = await rest.klines("BTC", "1h", start_ms=CURRENT - 9000 * HOUR)
    assert len(bars) == 1501 and len(fake.requests) == 3  # the third page is empty


async def test_open_interest_hist_cursor_paging_and_usd() -> None:
    fake = FakeBybit(CURRENT - 5000 * HOUR)
    async with rest_for(fake) as rest:
        rows = await rest.open_interest_hist("BTC", "1h", limit=450)
    assert [r.ts_ms for r in rows] == list(range(CURRENT - 449 * HOUR, CURRENT + 1, HOUR))
    # OI in coin x the close of the bar that ends at the OI timestamp.
    t = rows[10].ts_ms
    assert rows[10] == OpenInterest("bybit", "BTC", t, 2.0, 2.0 * close_at(t - HOUR))
    oi_requests = [r for r in fake.requests if r.url.path.endswith("open-interest")]
    assert [r.url.params.get("cursor") for r in oi_requests] == [
        None, "lastid%3D200", "lastid%3D400",
    ]  # fmt: skip
    first = oi_requests[0].url.params
    assert (first["startTime"], first["endTime"], first["limit"]) == (
        str(CURRENT - 449 * HOUR), str(CURRENT), "200",
    )  # fmt: skip


async def test_open_interest_hist_at_listing_uses_the_open() -> None:
    listed = CURRENT - 10 * HOUR
    fake = FakeBybit(listed)
    async with rest_for(fake) as rest:
        rows = await rest.open_interest_hist("BTC", "1h", start_ms=listed)
    assert rows[0].ts_ms == listed and rows[0].oi_usd == 2.0 * 100.0  # no bar ends there
    assert len(rows) == 11


async def test_open_interest_hist_bad_period() -> None:
    async with rest_for(FakeBybit(0)) as rest:
        with pytest.raises(InputError, match="open-interest period"):
            await rest.open_interest_hist("BTC", "2h")


async def test_ticker_open_interest_mark_price(load: Callable[[str], Any]) -> None:
    fake = FakeBybit(0)
    item = load("ws_tickers_linear__nautilus")["data"]
    fake.replies["/v5/market/tickers"] = httpx.Response(
        200,
        json={"retCode": 0, "retMsg": "OK", "time": NOW_MS,
              "result": {"category": "linear", "list": [item]}},
    )  # fmt: skip
    async with rest_for(fake) as rest:
        oi = await rest.open_interest("BTC")
        mark = await rest.mark_price("BTC")
    assert oi == OpenInterest("bybit", "BTC", NOW_MS, 68744.761, 1183601235.91)
    assert mark.mark == 17217.33 and mark.ts_ms == NOW_MS
    assert dict(fake.requests[0].url.params) == {"category": "linear", "symbol": "BTCUSDT"}


async def test_unknown_symbol() -> None:
    async with rest_for(FakeBybit(0)) as rest:
        with pytest.raises(UnknownSymbol):
            await rest.klines("DOGE", "1h", limit=2)


async def test_http_400_with_ret_code() -> None:
    fake = FakeBybit(0)
    fake.replies["/v5/market/tickers"] = httpx.Response(
        400, json={"retCode": 10001, "retMsg": "params error: symbol invalid"}
    )
    async with rest_for(fake) as rest:
        with pytest.raises(UnknownSymbol):
            await rest.ticker("BTC")


async def test_403_is_an_ip_ban() -> None:
    fake = FakeBybit(0)
    fake.replies["/v5/market/tickers"] = httpx.Response(403, text="access too frequent")
    async with rest_for(fake) as rest:
        with pytest.raises(Banned):
            await rest.ticker("BTC")
        with pytest.raises(CircuitOpen):
            await rest.klines("BTC", "1h", limit=2)
        assert rest.status().state == "open"
    assert len(fake.requests) == 1  # nothing went out while banned
