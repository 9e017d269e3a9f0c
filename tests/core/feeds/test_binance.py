"""Binance REST: parsers against the real payloads in ../shared/samples, junk, and the client
end to end over httpx.MockTransport (query parameters, weights, errors, status)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from core.errors import InputError
from core.feeds import limits
from core.feeds.binance import (
    AccountRatio,
    BinanceRest,
    TakerRatio,
    error_from_body,
    klines_weight,
    parse_account_ratio,
    parse_klines,
    parse_open_interest,
    parse_open_interest_hist,
    parse_premium_index,
    parse_taker_ratio,
)
from core.feeds.errors import FeedError, JunkResponse, UnknownSymbol, VenueError
from core.feeds.http import HttpClient
from core.feeds.types import Kline, MarkPrice, OpenInterest

NOW_S = 1_788_787_300.0  # 2026-09-07, just after the live openInterestHist sample
NOW_MS = int(NOW_S * 1000)
DAY_MS = 86_400_000
OLD_31D = NOW_MS - 31 * DAY_MS

# --- samples --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def load(sample: Callable[[str], Any]) -> Callable[[str], Any]:
    return lambda name: sample(f"binance_{name}")  # "klines__live": binance_klines__live.json


def test_klines_live(load: Callable[[str], Any]) -> None:
    [bar] = parse_klines(load("klines__live"), "BTC")
    assert bar == Kline(
        "binance", "BTC", 1783296000000, 63617.2, 63900.0, 63308.3, 63385.2,
        1162507083.2734, 605691518.4792,
    )  # fmt: skip


def test_klines_docs(load: Callable[[str], Any]) -> None:
    [bar] = parse_klines(load("klines__docs"), "BTC")
    assert (bar.ts_ms, bar.high, bar.volume_usd, bar.taker_buy_usd) == (
        1499040000000, 0.8, 2434.19055334, 28.46694368,
    )  # fmt: skip


@pytest.mark.parametrize("name", ["openInterest__live", "openInterest__docs"])
def test_open_interest(load: Callable[[str], Any], name: str) -> None:
    payload = load(name)
    oi = parse_open_interest(payload, "BTC", mark_price=80_000.0)
    assert oi.oi_base == float(payload["openInterest"])
    assert oi.oi_usd == pytest.approx(float(payload["openInterest"]) * 80_000.0)
    assert oi.ts_ms == payload["time"] and oi.symbol == "BTC" and oi.venue == "binance"


@pytest.mark.parametrize(
    ("name", "first"),
    [
        ("openInterestHist__live", (1788786300000, 107259.199, 8533728551.635673)),
        ("openInterestHist__docs_sdk", (1591261042378, 20403.12345678, 176196512.12345678)),
        ("openInterestHist__docs_old", (1583127900000, 20403.637, 150570784.07809979)),
    ],
)  # fmt: skip
def test_open_interest_hist(
    load: Callable[[str], Any], name: str, first: tuple[int, float, float]
) -> None:
    payload = load(name)
    rows = parse_open_interest_hist(payload, "BTC")
    assert len(rows) == len(payload)
    assert (rows[0].ts_ms, rows[0].oi_base, rows[0].oi_usd) == first
    assert [r.ts_ms for r in rows] == sorted(r.ts_ms for r in rows)


@pytest.mark.parametrize("name", ["premiumIndex__live", "premiumIndex__docs"])
def test_premium_index(load: Callable[[str], Any], name: str) -> None:
    p = load(name)
    assert parse_premium_index(p, "BTC") == MarkPrice(
        "binance", "BTC", p["time"], float(p["markPrice"]), float(p["indexPrice"]),
        float(p["lastFundingRate"]), p["nextFundingTime"],
    )  # fmt: skip


def test_premium_index_funding_is_per_8h(load: Callable[[str], Any]) -> None:
    """lastFundingRate is per funding interval: per 8 h as sent unless the payload names one."""
    p = load("premiumIndex__live")
    assert parse_premium_index(p, "BTC").funding_rate == 0.00003858  # BTCUSDT: 8 h already
    four_hourly = parse_premium_index({**p, "fundingIntervalHours": 4}, "BTC")
    assert four_hourly.funding_rate == pytest.approx(2 * 0.00003858)
    assert parse_premium_index({**p, "fundingIntervalHours": "8"}, "BTC").funding_rate == (
        0.00003858
    )
    with pytest.raises(JunkResponse, match="fundingIntervalHours is not positive"):
        parse_premium_index({**p, "fundingIntervalHours": 0}, "BTC")


def test_taker_ratio_docs_unsorted_string_timestamps(load: Callable[[str], Any]) -> None:
    rows = parse_taker_ratio(load("takerlongshortRatio__docs"), "BTC")
    # The old docs list the later row first and send string timestamps: oldest first here.
    assert rows == [
        TakerRatio("binance", "BTC", 1583139900000, 1.3104, 343.929, 248.503),
        TakerRatio("binance", "BTC", 1585614900000, 1.5586, 387.33, 248.503),
    ]


def test_taker_ratio_sdk(load: Callable[[str], Any]) -> None:
    [row] = parse_taker_ratio(load("takerlongshortRatio__docs_sdk"), "BTC")
    assert row == TakerRatio("binance", "BTC", 1591261042378, 1.5586, 387.33, 248.503)


@pytest.mark.parametrize(
    ("name", "first"),
    [
        ("globalLongShortAccountRatio__live", (1788786900000, 0.5268, 0.4732, 1.1133)),
        ("globalLongShortAccountRatio__docs", (1583139600000, 0.6622, 0.3378, 0.196)),
        ("topLongShortPositionRatio__docs_sdk", (1591261042378, 0.5344, 0.4238, 1.4342)),
    ],
)  # fmt: skip
def test_account_ratio(
    load: Callable[[str], Any], name: str, first: tuple[int, float, float, float]
) -> None:
    rows = parse_account_ratio(load(name), "BTC")
    assert rows[0] == AccountRatio("binance", "BTC", *first)


PARSERS: list[Callable[[Any], object]] = [
    lambda p: parse_klines(p, "BTC"),
    lambda p: parse_open_interest(p, "BTC", 1.0),
    lambda p: parse_open_interest_hist(p, "BTC"),
    lambda p: parse_premium_index(p, "BTC"),
    lambda p: parse_taker_ratio(p, "BTC"),
    lambda p: parse_account_ratio(p, "BTC"),
]


@pytest.mark.parametrize("parse", PARSERS)
def test_error_bodies_on_http_200(
    load: Callable[[str], Any], parse: Callable[[Any], object]
) -> None:
    with pytest.raises(UnknownSymbol, match="BTCUSDT"):
        parse(load("error_invalid_symbol"))
    with pytest.raises(VenueError, match="-1003") as info:
        parse(load("error_418_ipban__test_shape"))
    assert not isinstance(info.value, UnknownSymbol) and info.value.code == -1003


def test_error_from_body() -> None:
    assert error_from_body([]) is None and error_from_body({"symbol": "BTCUSDT"}) is None
    assert isinstance(error_from_body({"code": -1121, "msg": "Invalid symbol."}), UnknownSymbol)


# --- junk: every mutation of a real payload is rejected, never half-used ---------------------


def _mutate(payload: Any, path: tuple[Any, ...], value: Any) -> Any:
    out = copy.deepcopy(payload)
    target = out
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return out


_DELETE = object()

JUNK: list[tuple[str, str, tuple[Any, ...], Any, str]] = [
    # (sample, parser, path, new value, expected message fragment)
    ("klines__live", "klines", (), {"data": []}, "expected a JSON list"),
    ("klines__live", "klines", (0,), {"t": 1}, "expected list"),
    ("klines__live", "klines", (0,), [1783296000000, "1", "2"], "expected 12 fields"),
    ("klines__live", "klines", (0, 1), None, "open should be a number"),
    ("klines__live", "klines", (0, 2), "abc", "high is not a number"),
    ("klines__live", "klines", (0, 4), "NaN", "close is not finite"),
    ("klines__live", "klines", (0, 3), "99999", "inconsistent OHLC"),
    ("klines__live", "klines", (0, 0), 1783296000.0, "openTime should be epoch"),
    ("klines__live", "klines", (0, 0), True, "openTime should be epoch"),
    ("klines__live", "klines", (0, 0), 1783296000, "not a plausible epoch-ms"),
    ("klines__live", "klines", (0, 6), 1783296000000, "closeTime"),
    ("klines__live", "klines", (0, 7), "-5", "quoteVolume is negative"),
    ("klines__live", "klines", (0, 10), "2e9", "exceeds quoteVolume"),
    ("openInterest__live", "oi", (), [], "expected a JSON dict"),
    ("openInterest__live", "oi", ("openInterest",), _DELETE, "missing field 'openInterest'"),
    ("openInterest__live", "oi", ("symbol",), "ETHUSDT", "answered for 'ETHUSDT'"),
    ("openInterest__live", "oi", ("time",), "yesterday", "time should be epoch"),
    ("openInterestHist__live", "oih", (1, "timestamp"), "17x", "[1].timestamp"),
    ("openInterestHist__live", "oih", (2, "sumOpenInterestValue"), _DELETE, "field 'sumOpenInterestValue'"),  # noqa: E501
    ("openInterestHist__live", "oih", (0,), "row", "expected dict"),
    ("openInterestHist__live", "oih", (0, "symbol"), "ETHUSDT", "answered for"),
    ("openInterestHist__live", "oih", (2, "timestamp"), 1788786300000, "appears twice"),
    ("openInterestHist__live", "oih", (0, "sumOpenInterest"), {"v": 1}, "should be a number"),
    ("premiumIndex__live", "premium", ("markPrice",), "0", "not positive"),
    ("premiumIndex__live", "premium", (), [{"symbol": "BTCUSDT"}], "expected a JSON dict"),
    ("premiumIndex__live", "premium", ("lastFundingRate",), [], "lastFundingRate"),
    ("takerlongshortRatio__docs_sdk", "taker", (0, "buyVol"), _DELETE, "missing field 'buyVol'"),
    ("globalLongShortAccountRatio__live", "account", (0, "longAccount"), "1.5", "in [0, 1]"),
]  # fmt: skip

_BY_NAME: dict[str, Callable[[Any], object]] = dict(
    zip(["klines", "oi", "oih", "premium", "taker", "account"], PARSERS, strict=True)
)


@pytest.mark.parametrize(("name", "parser", "path", "value", "fragment"), JUNK)
def test_junk_is_rejected(
    load: Callable[[str], Any],
    name: str,
    parser: str,
    path: tuple[Any, ...],
    value: Any,
    fragment: str,
) -> None:
    payload = value if path == () else _mutate(load(name), path, value)
    with pytest.raises(JunkResponse) as info:
        _BY_NAME[parser](payload)
    assert fragment in str(info.value)
    assert str(info.value).startswith("binance: ")


def test_open_interest_needs_a_real_mark_price(load: Callable[[str], Any]) -> None:
    with pytest.raises(InputError, match="mark price"):
        parse_open_interest(load("openInterest__live"), "BTC", float("nan"))


@pytest.mark.parametrize(
    ("limit", "weight"),
    [(None, 5), (1, 1), (99, 1), (100, 2), (499, 2), (500, 5), (1000, 5), (1001, 10), (1500, 10)],
)
def test_klines_weight(limit: int | None, weight: int) -> None:
    assert klines_weight(limit) == weight


# --- the client over httpx.MockTransport ------------------------------------------------------


class FakeBinance:
    """Answers by path from a routing table; records every request."""

    def __init__(self, routes: dict[str, Any]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = self.routes[request.url.path]
        answer = route(request) if callable(route) else route
        if isinstance(answer, httpx.Response):
            return answer
        return httpx.Response(200, content=orjson.dumps(answer))

    def params(self, i: int = -1) -> dict[str, str]:
        return dict(self.requests[i].url.params)


async def _no_sleep(_: float) -> None:
    return None


def _client(fake: FakeBinance, **kwargs: Any) -> BinanceRest:
    return BinanceRest(
        transport=httpx.MockTransport(fake), clock=lambda: NOW_S, sleep=_no_sleep, **kwargs
    )


async def test_klines_request_and_weight(load: Callable[[str], Any]) -> None:
    fake = FakeBinance({"/fapi/v1/klines": load("klines__live")})
    rest = _client(fake)
    bars = await rest.klines("btc", "1d", start_ms=1783296000000, end_ms=1783382399999, limit=1500)
    assert [b.ts_ms for b in bars] == [1783296000000]
    assert fake.params() == {
        "symbol": "BTCUSDT", "interval": "1d", "startTime": "1783296000000",
        "endTime": "1783382399999", "limit": "1500",
    }  # fmt: skip
    assert str(fake.requests[0].url).startswith("https://fapi.binance.com/fapi/v1/klines?")
    await rest.klines("BTCUSDT", "1h", limit=99)
    assert fake.params() == {"symbol": "BTCUSDT", "interval": "1h", "limit": "99"}
    status = rest.status()
    assert status.venue == "binance" and status.requests == 2 and status.state == "ok"
    assert status.budget["weight"]["used"] == 10 + 1
    assert status.budget["futures_data"]["used"] == 0
    await rest.aclose()


async def test_used_weight_header_is_observed(load: Callable[[str], Any]) -> None:
    body = orjson.dumps(load("klines__live"))
    response = httpx.Response(200, content=body, headers={"X-MBX-USED-WEIGHT-1M": "1234"})
    rest = _client(FakeBinance({"/fapi/v1/klines": response}))
    await rest.klines("BTC", "1h", limit=10)
    assert rest.status().budget["weight"]["used"] == 1234.0
    await rest.aclose()


async def test_open_interest_uses_mark_price(load: Callable[[str], Any]) -> None:
    fake = FakeBinance(
        {
            "/fapi/v1/openInterest": load("openInterest__live"),
            "/fapi/v1/premiumIndex": load("premiumIndex__live"),
        }
    )
    rest = _client(fake)
    oi = await rest.open_interest("BTC")
    assert oi == OpenInterest(
        "binance", "BTC", 1783307783695, 104935.279, 104935.279 * 79599.53797101
    )
    assert sorted(r.url.path for r in fake.requests) == [
        "/fapi/v1/openInterest",
        "/fapi/v1/premiumIndex",
    ]
    assert all(dict(r.url.params) == {"symbol": "BTCUSDT"} for r in fake.requests)
    assert rest.status().budget["weight"]["used"] == 2
    mark = await rest.mark_price("BTC")
    assert mark.mark == 79599.53797101 and mark.funding_rate == 0.00003858
    await rest.aclose()


async def test_open_interest_hist_request(load: Callable[[str], Any]) -> None:
    fake = FakeBinance({"/futures/data/openInterestHist": load("openInterestHist__live")})
    rest = _client(fake)
    rows = await rest.open_interest_hist("BTC", "5m", start_ms=NOW_MS - DAY_MS, limit=500)
    assert rows[0].oi_usd == 8533728551.635673
    assert fake.params() == {
        "symbol": "BTCUSDT", "period": "5m", "startTime": str(NOW_MS - DAY_MS), "limit": "500",
    }  # fmt: skip
    budget = rest.status().budget
    assert budget["futures_data"]["used"] == 1 and budget["weight"]["used"] == 0
    await rest.aclose()


@pytest.mark.parametrize(
    ("method", "path", "name"),
    [
        ("taker_ratio", "/futures/data/takerlongshortRatio", "takerlongshortRatio__docs_sdk"),
        ("account_ratio", "/futures/data/globalLongShortAccountRatio", "globalLongShortAccountRatio__live"),  # noqa: E501
    ],
)  # fmt: skip
async def test_ratio_requests(
    load: Callable[[str], Any], method: str, path: str, name: str
) -> None:
    fake = FakeBinance({path: load(name)})
    rest = _client(fake)
    rows = await getattr(rest, method)("BTC", "1h", limit=30)
    assert len(rows) == 1 and fake.params() == {"symbol": "BTCUSDT", "period": "1h", "limit": "30"}
    assert rest.status().budget["futures_data"]["used"] == 1
    await rest.aclose()


async def test_top_position_ratio_path(load: Callable[[str], Any]) -> None:
    path = "/futures/data/topLongShortPositionRatio"
    fake = FakeBinance({path: load("topLongShortPositionRatio__docs_sdk")})
    rest = _client(fake)
    [row] = await rest.account_ratio("BTC", "4h", kind="top_position")
    assert row.long_short_ratio == 1.4342 and fake.requests[0].url.path == path
    await rest.aclose()


async def test_invalid_symbol_400_becomes_unknown_symbol(load: Callable[[str], Any]) -> None:
    body = orjson.dumps(load("error_invalid_symbol"))
    fake = FakeBinance({"/fapi/v1/klines": httpx.Response(400, content=body)})
    rest = _client(fake)
    with pytest.raises(UnknownSymbol, match="does not list NOPEUSDT") as info:
        await rest.klines("NOPE", "1h")
    assert info.value.code == -1121 and len(fake.requests) == 1  # no retry
    assert rest.status().state == "ok"  # an unknown symbol says nothing about Binance's health
    await rest.aclose()


async def test_invalid_symbol_with_a_shared_http_client(load: Callable[[str], Any]) -> None:
    """A shared HttpClient without our error mapper: the -1121 code still makes it UnknownSymbol."""
    body = orjson.dumps(load("error_invalid_symbol"))
    fake = FakeBinance({"/fapi/v1/premiumIndex": httpx.Response(400, content=body)})
    http = HttpClient(
        "binance", "https://fapi.binance.com", limits.BINANCE, transport=httpx.MockTransport(fake)
    )
    rest = BinanceRest(http=http)
    with pytest.raises(UnknownSymbol, match="NOPEUSDT"):
        await rest.mark_price("NOPE")
    await rest.aclose()  # not ours to close: still usable
    fake.routes["/fapi/v1/premiumIndex"] = {"symbol": "BTCUSDT", "markPrice": "1", "time": NOW_MS}
    assert (await rest.mark_price("BTC")).mark == 1.0
    await http.aclose()


async def test_other_4xx_stays_a_venue_error() -> None:
    body = orjson.dumps({"code": -1120, "msg": "Invalid interval."})
    rest = _client(FakeBinance({"/fapi/v1/klines": httpx.Response(400, content=body)}))
    with pytest.raises(VenueError) as info:
        await rest.klines("BTC", "1h")
    assert not isinstance(info.value, UnknownSymbol) and info.value.code == -1120
    await rest.aclose()


@pytest.mark.parametrize(
    ("content", "error", "fragment"),
    [
        (b'[[1783296000000,"63617.20","63900.00"', JunkResponse, "invalid JSON"),
        (b"", JunkResponse, "invalid JSON"),
        (b'{"code":-1121,"msg":"Invalid symbol."}', UnknownSymbol, "BTCUSDT"),
        (b'{"code":-1130,"msg":"Data sent for parameter is not valid."}', VenueError, "-1130"),
        (b'{"result": []}', JunkResponse, "expected a JSON list"),
    ],
)
async def test_bad_http_200_bodies(content: bytes, error: type[FeedError], fragment: str) -> None:
    rest = _client(FakeBinance({"/fapi/v1/klines": httpx.Response(200, content=content)}))
    with pytest.raises(error, match=fragment.replace("[", r"\[")):
        await rest.klines("BTC", "1h")
    await rest.aclose()


async def test_empty_hist_without_range_is_unknown_symbol() -> None:
    fake = FakeBinance({"/futures/data/openInterestHist": []})
    rest = _client(fake)
    with pytest.raises(UnknownSymbol, match="NOPEUSDT"):
        await rest.open_interest_hist("NOPE", "5m")
    assert len(fake.requests) == 1
    await rest.aclose()


async def test_empty_hist_range_probes_once(load: Callable[[str], Any]) -> None:
    """[] for a range: a one-row probe tells an empty range from an unknown symbol."""
    live = load("openInterestHist__live")
    fake = FakeBinance(
        {
            "/futures/data/openInterestHist": lambda r: (
                [] if "startTime" in r.url.params else live[:1]
            )
        }
    )
    rest = _client(fake)
    start = NOW_MS - 2 * DAY_MS
    assert await rest.open_interest_hist("BTC", "1h", start_ms=start, end_ms=start + 1) == []
    assert fake.params() == {"symbol": "BTCUSDT", "period": "1h", "limit": "1"}
    fake.routes["/futures/data/openInterestHist"] = []
    with pytest.raises(UnknownSymbol):
        await rest.open_interest_hist("BTC", "1h", start_ms=start)
    assert len(fake.requests) == 4
    assert rest.status().budget["futures_data"]["used"] == 4
    await rest.aclose()


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda r: r.klines("BTC", "1s"), "kline interval '1s'"),
        (lambda r: r.klines("BTC", "1H"), "use one of 1m, 3m"),
        (lambda r: r.klines("BTC", "1h", limit=1501), "between 1 and 1500"),
        (lambda r: r.klines("BTC", "1h", limit=0), "between 1 and 1500"),
        (lambda r: r.klines("BTC", "1h", start_ms=2, end_ms=1), "after end"),
        (lambda r: r.klines("not a symbol!", "1h"), "Unknown symbol"),
        (lambda r: r.open_interest_hist("BTC", "3m"), "period '3m'"),
        (lambda r: r.open_interest_hist("BTC", "1h", limit=501), "between 1 and 500"),
        (lambda r: r.open_interest_hist("BTC", "1h", start_ms=OLD_31D), "30 days only; the start asked for is 31.0 days"),  # noqa: E501
        (lambda r: r.taker_ratio("BTC", "5m", end_ms=NOW_MS - 40 * DAY_MS), "end asked for is 40.0"),  # noqa: E501
        (lambda r: r.account_ratio("BTC", "5m", kind="top"), "kind must be one of"),
    ],
)  # fmt: skip
async def test_input_errors_send_nothing(call: Callable[[BinanceRest], Any], fragment: str) -> None:
    fake = FakeBinance({})
    rest = _client(fake)
    with pytest.raises(InputError, match=fragment.replace("(", r"\(")):
        await call(rest)
    assert fake.requests == []
    await rest.aclose()


async def test_rest_feed_surface() -> None:
    rest = BinanceRest()
    assert rest.venue == "binance"
    assert (rest.max_klines_per_request, rest.max_oi_per_request) == (1500, 500)
    assert rest.status().state == "ok" and rest.status().requests == 0
    await rest.aclose()
