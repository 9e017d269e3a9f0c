"""OKX REST: parsers against the real payloads in ../shared/samples, junk, and OkxRest end to
end over httpx.MockTransport (paging with after/before, endpoints per range, errors)."""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from core.errors import InputError
from core.feeds.errors import (
    FeedUnavailable,
    JunkResponse,
    RateLimited,
    UnknownSymbol,
    VenueError,
)
from core.feeds.okx import (
    OkxRest,
    parse_candles,
    parse_contract_values,
    parse_open_interest,
    parse_open_interest_history,
    span,
    unwrap,
)
from core.feeds.okx_ws import parse_liquidation_data
from core.feeds.types import Kline, LiqEvent, OpenInterest
from tests.fakes.timing import ManualClock

HOUR = 3_600_000
NOW_MS = 1_791_565_200_000 + 25 * 60_000  # 2026-10-09 06:25 UTC, inside an hourly bar
BTC = "BTC-USDT-SWAP"

# --- samples --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def load(sample: Callable[[str], Any]) -> Callable[[str], Any]:
    return lambda name: sample(f"okx_{name}")  # "candles__docs" reads okx_candles__docs.json


def test_candles_live_newest_first_is_reversed(load: Callable[[str], Any]) -> None:
    data = unwrap(load("candles__nautilus_2025"), "candles")
    assert int(data[0][0]) > int(data[1][0])  # OKX sends newest first
    bars = parse_candles(data, "BTC")
    assert bars == [
        Kline("okx", "BTC", 1747093980000, 102806.0, 102820.5, 102783.1, 102806.1,
              7364701.57952, None),
        Kline("okx", "BTC", 1747094040000, 102806.1, 102820.4, 102806.1, 102820.4,
              1069603.34883, None),
    ]  # fmt: skip
    # vol is contracts: x ctVal 0.01 gives volCcy (BTC); volume_usd is volCcyQuote (USDT).
    assert float(data[0][5]) * 0.01 == pytest.approx(float(data[0][6]))


def test_candles_docs_repeat_a_timestamp_and_are_rejected(load: Callable[[str], Any]) -> None:
    # The docs example lists one timestamp twice: never two bars at one time.
    for name in ("candles__docs", "history_candles__docs"):
        with pytest.raises(JunkResponse, match="appears twice"):
            parse_candles(unwrap(load(name), name), "BTC")
    # Without the still-forming row (confirm "0") the docs candles are one valid bar.
    [bar] = parse_candles(unwrap(load("candles__docs"), "c"), "BTC", closed_only=True)
    assert (bar.open, bar.close, bar.volume_usd) == (3.731, 3.72, 37632347.24399722)


def test_candles_old_format_has_no_quote_volume(load: Callable[[str], Any]) -> None:
    bars = parse_candles(unwrap(load("candles__nautilus_old"), "c"), "BTC")
    assert [b.ts_ms for b in bars] == [1625097600000, 1625097660000]  # sorted either way
    assert all(math.isnan(b.volume_usd) for b in bars)  # "0" quote volume on traded bars
    assert all(b.taker_buy_usd is None for b in bars)


def test_open_interest_history_rubik(load: Callable[[str], Any]) -> None:
    rows = parse_open_interest_history(
        unwrap(load("rubik_open_interest_history__docs"), "r"), "BTC"
    )
    assert rows == [
        OpenInterest("okx", "BTC", 1701417500000, 111.0, 8888888.0),
        OpenInterest("okx", "BTC", 1701417600000, 111.0, 8888888.0),
    ]


def test_open_interest_volume_rows_are_not_read_as_history(load: Callable[[str], Any]) -> None:
    # [ts, oi USD, vol USD] of every contract of the coin: a different series, rejected.
    with pytest.raises(JunkResponse):
        parse_open_interest_history(unwrap(load("rubik_open_interest_volume__docs"), "v"), "BTC")


def test_open_interest_current(load: Callable[[str], Any]) -> None:
    oi = parse_open_interest(unwrap(load("open_interest__docs"), "oi"), "BTC")
    assert oi == OpenInterest("okx", "BTC", 1597026383085, 555.55, 50000.0)
    live = parse_open_interest(load("open_interest__ws_live")["data"], "BTC")  # same item shape
    assert live.oi_base == pytest.approx(22161.1301)
    assert live.oi_usd == pytest.approx(1939251795.5477)
    with pytest.raises(UnknownSymbol):
        parse_open_interest(load("open_interest__ws_live")["data"], "ETH")


@pytest.mark.parametrize("name", ["instruments_swap__live2022", "instruments_swap__nautilus"])
def test_contract_values_linear_usdt_swaps_only(load: Callable[[str], Any], name: str) -> None:
    # BTC-USD-SWAP is inverse (ctVal 100 USD): leaving it out is what keeps sizes right.
    assert parse_contract_values(unwrap(load(name), name)) == {
        "BTC-USDT-SWAP": 0.01,
        "ETH-USDT-SWAP": 0.1,
    }
    assert parse_contract_values(unwrap(load("instruments__docs_spot"), "spot")) == {}


def test_error_51001_is_unknown_symbol(load: Callable[[str], Any]) -> None:
    with pytest.raises(UnknownSymbol) as info:
        unwrap(load("error_51001"), "instruments")
    assert info.value.code == "51001"


def test_rest_liquidation_shape(load: Callable[[str], Any]) -> None:
    events, skipped = parse_liquidation_data(
        load("rest_liquidation_orders__shape_thirdparty")["data"], {BTC: 0.01}
    )
    assert skipped == 0
    assert [(e.side, e.price, e.ts_ms) for e in events] == [
        ("long", 63955.7, 1786408771714),
        ("short", 64168.9, 1786394631624),
    ]
    assert [e.qty for e in events] == pytest.approx([0.0362, 0.053])


def test_ws_liquidation_live_btc_contracts_times_ctval(load: Callable[[str], Any]) -> None:
    [event], skipped = parse_liquidation_data(
        load("ws_liquidation_orders__live_btc")["data"], {BTC: 0.01}
    )
    assert skipped == 0
    assert event.venue == "okx" and event.symbol == "BTC" and event.side == "long"
    assert event.qty == pytest.approx(8.55 * 0.01)  # sz is contracts, not BTC
    assert event.usd == pytest.approx(82655.7 * 0.0855)
    assert event.ts_ms == 1791565600771


def test_ws_liquidation_other_instruments(load: Callable[[str], Any]) -> None:
    celo = load("ws_liquidation_orders__live_celo")["data"]
    assert parse_liquidation_data(celo, {BTC: 0.01}) == ([], 1)  # in scope, ctVal unknown
    assert parse_liquidation_data(celo, {BTC: 0.01}, {BTC}) == ([], 0)  # out of scope
    [event], _ = parse_liquidation_data(celo, {"CELO-USDT-SWAP": 10.0})
    assert (event.symbol, event.side, event.qty) == ("CELO", "short", 199790.0)
    [iost], _ = parse_liquidation_data(
        load("ws_liquidation_orders__docs")["data"], {"IOST-USDT-SWAP": 1000.0}
    )
    assert (iost.side, iost.qty, iost.price) == ("short", 13000.0, 0.007831)


@pytest.mark.parametrize(
    ("pos_side", "side", "liquidated"),
    [
        ("long", "sell", "long"),
        ("short", "buy", "short"),
        ("net", "sell", "long"),
        ("net", "buy", "short"),
    ],
)
def test_side_semantics(
    load: Callable[[str], Any], pos_side: str, side: str, liquidated: str
) -> None:
    data = copy.deepcopy(load("ws_liquidation_orders__live_btc")["data"])
    data[0]["details"][0].update(posSide=pos_side, side=side)
    [event], _ = parse_liquidation_data(data, {BTC: 0.01})
    assert event.side == liquidated


# --- junk -----------------------------------------------------------------------------------


def _liq_item(**detail: Any) -> list[Any]:
    base = {
        "bkPx": "82655.7",
        "posSide": "long",
        "side": "sell",
        "sz": "8.55",
        "ts": "1791565600771",
    }
    base.update(detail)
    return [{"instId": BTC, "details": [base]}]


@pytest.mark.parametrize(
    "data",
    [
        None,
        "data",
        {"instId": BTC},
        [{"instId": BTC}],
        [{"instId": BTC, "details": "x"}],
        [{"details": []}],
        _liq_item(bkPx=None),
        _liq_item(bkPx="nan"),
        _liq_item(bkPx="0"),
        _liq_item(sz="abc"),
        _liq_item(sz="-1"),
        _liq_item(sz=True),
        _liq_item(ts="soon"),
        _liq_item(ts="1791565600"),  # seconds, not ms
        _liq_item(side="hold"),
        _liq_item(posSide="both"),
    ],
)
def test_liquidation_junk(data: Any) -> None:
    with pytest.raises(JunkResponse):
        parse_liquidation_data(data, {BTC: 0.01})


def _row(**fields: str) -> list[str]:
    row = dict(ts="1747094040000", o="10", h="12", l="9", c="11", vol="5", ccy="0.05", q="55")
    row.update(fields)
    return [*row.values(), "1"]


@pytest.mark.parametrize(
    "rows",
    [
        "rows",
        [["1747094040000", "1", "2"]],
        [_row(h="8")],  # high below open
        [_row(o="x")],
        [_row(ts="yesterday")],
        [_row(q="-5")],
        [{"ts": "1747094040000"}],
    ],
)
def test_candles_junk(rows: Any) -> None:
    with pytest.raises(JunkResponse):
        parse_candles(rows, "BTC")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ([], JunkResponse),
        ({"msg": "", "data": []}, JunkResponse),
        ({"code": "0", "data": {"x": 1}}, JunkResponse),
        ({"code": "50011", "msg": "Rate limit reached.", "data": []}, RateLimited),
        ({"code": "50013", "msg": "Systems are busy", "data": []}, FeedUnavailable),
        ({"code": "51000", "msg": "Parameter bar error", "data": []}, VenueError),
        ({"code": "51001", "msg": "Instrument ID doesn't exist.", "data": []}, UnknownSymbol),
    ],
)
def test_envelope_errors(body: Any, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        unwrap(body, "x")
    assert type(info.value) is error


def test_span_semantics() -> None:
    now = 10 * HOUR + 5
    assert span(now, HOUR, None, None, 3, 300) == (8 * HOUR, 10 * HOUR)
    assert span(now, HOUR, HOUR + 1, None, 2, 300) == (2 * HOUR, 3 * HOUR)
    assert span(now, HOUR, 0, 4 * HOUR + 7, None, 300) == (0, 4 * HOUR)
    with pytest.raises(InputError):
        span(now, HOUR, None, None, 0, 300)
    with pytest.raises(InputError):
        span(now, HOUR, 5 * HOUR, 4 * HOUR, None, 300)


# --- OkxRest over MockTransport -----------------------------------------------------------------


class FakeOkx:
    """OKX candles/rubik/instruments semantics: newest first, after/before exclusive."""

    def __init__(self, now_ms: int, listed_ms: int, step: int = HOUR) -> None:
        self.now_ms, self.listed_ms, self.step = now_ms, listed_ms, step
        self.requests: list[httpx.Request] = []
        self.replies: dict[str, httpx.Response] = {}  # path -> fixed reply

    def _window(self, q: dict[str, str], lo_key: str, hi_key: str, recent: bool) -> list[int]:
        last = self.now_ms // self.step * self.step
        first = max(self.listed_ms, last - 1439 * self.step) if recent else self.listed_ms
        lo, hi = int(q.get(lo_key, 0)), int(q.get(hi_key, 2**62))
        times = [t for t in range(last, first - 1, -self.step) if lo < t < hi]
        return times[: int(q.get("limit", 100))]

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path, q = request.url.path, dict(request.url.params)
        if path in self.replies:
            return self.replies[path]
        if q.get("instId", BTC) != BTC:
            return httpx.Response(200, json={"code": "51001", "msg": "no such", "data": []})
        if path.startswith("/api/v5/market/"):
            current = self.now_ms // self.step * self.step
            times = self._window(q, "before", "after", recent=path.endswith("/candles"))
            rows = [
                [str(t), "100", "110", "90", str(100 + t // self.step % 7), "10", "0.1", "1000",
                 "0" if t == current else "1"]
                for t in times
            ]  # fmt: skip
        elif path.endswith("open-interest-history"):
            times = self._window(q, "begin", "end", recent=False)
            rows = [[str(t), "500", "5", str(t // self.step)] for t in times]
        else:
            raise AssertionError(f"unexpected {request.url}")
        return httpx.Response(200, json={"code": "0", "msg": "", "data": rows})

    def paths(self) -> list[str]:
        return [r.url.path.rsplit("/", 1)[-1] for r in self.requests]


@contextlib.asynccontextmanager
async def _rest_ctx(fake: FakeOkx) -> AsyncIterator[OkxRest]:
    clock = ManualClock(fake.now_ms / 1000)  # moves only when the client sleeps
    rest = OkxRest(transport=httpx.MockTransport(fake.handler), clock=clock, sleep=clock.sleep)
    try:
        yield rest
    finally:
        await rest.aclose()


async def test_klines_latest_one_request() -> None:
    fake = FakeOkx(NOW_MS, NOW_MS - 5000 * HOUR)
    async with _rest_ctx(fake) as rest:
        bars = await rest.klines("BTC", "1h", limit=5)
        closed = await rest.klines("btc", "1h", limit=5, closed_only=True)
    current = NOW_MS // HOUR * HOUR
    assert [b.ts_ms for b in bars] == [current - k * HOUR for k in (4, 3, 2, 1, 0)]
    assert [b.ts_ms for b in closed] == [current - k * HOUR for k in (5, 4, 3, 2, 1)]
    first = fake.requests[0].url.params
    assert fake.requests[0].url.path == "/api/v5/market/candles"
    assert dict(first) == {
        "instId": BTC,
        "bar": "1H",
        "before": str(current - 4 * HOUR - 1),
        "after": str(current + 1),
        "limit": "5",
    }


async def test_klines_long_range_pages_both_endpoints_oldest_first() -> None:
    fake = FakeOkx(NOW_MS, NOW_MS - 5000 * HOUR)
    start = NOW_MS // HOUR * HOUR - 2000 * HOUR
    async with _rest_ctx(fake) as rest:
        bars = await rest.klines("BTC", "1h", start_ms=start)
    assert [b.ts_ms for b in bars] == list(range(start, NOW_MS, HOUR))  # 2001, no gap
    for request in fake.requests:
        limit = int(request.url.params["limit"])
        assert limit <= (300 if request.url.path.endswith("/candles") else 100)
    assert set(fake.paths()) == {"candles", "history-candles"}
    assert fake.paths().count("candles") == 5  # 1,431 recent bars / 300
    assert fake.paths().count("history-candles") == 6  # the 570 older ones / 100


async def test_klines_stop_paging_before_listing() -> None:
    listed = NOW_MS // HOUR * HOUR - 1600 * HOUR
    fake = FakeOkx(NOW_MS, listed)
    async with _rest_ctx(fake) as rest:
        bars = await rest.klines("BTC", "1h", start_ms=listed - 3000 * HOUR)
    assert bars[0].ts_ms == listed and len(bars) == 1601
    assert fake.paths().count("history-candles") == 3  # 170 listed bars, then one empty page


async def test_klines_unknown_symbol_and_interval() -> None:
    fake = FakeOkx(NOW_MS, NOW_MS - 5000 * HOUR)
    async with _rest_ctx(fake) as rest:
        with pytest.raises(UnknownSymbol):
            await rest.klines("DOGE", "1h", limit=3)
        with pytest.raises(InputError, match="interval"):
            await rest.klines("BTC", "7m")


async def test_open_interest_history_paging() -> None:
    fake = FakeOkx(NOW_MS, NOW_MS - 5000 * HOUR)
    async with _rest_ctx(fake) as rest:
        rows = await rest.open_interest_hist("BTC", "1h", limit=250)
    last = NOW_MS // HOUR * HOUR
    assert [r.ts_ms for r in rows] == list(range(last - 249 * HOUR, last + 1, HOUR))
    assert rows[-1] == OpenInterest("okx", "BTC", last, 5.0, float(last // HOUR))
    assert fake.paths() == ["open-interest-history"] * 3
    q = fake.requests[0].url.params
    assert (q["instId"], q["period"], q["limit"]) == (BTC, "1H", "100")
    assert (int(q["begin"]), int(q["end"])) == (last - 99 * HOUR - 1, last + 1)


async def test_open_interest_current_request() -> None:
    fake = FakeOkx(NOW_MS, 0)
    item = {"instType": "SWAP", "instId": BTC, "oi": "5000", "oiCcy": "50", "oiUsd": "5e6",
            "ts": "1791565200000"}  # fmt: skip
    fake.replies["/api/v5/public/open-interest"] = httpx.Response(
        200, json={"code": "0", "msg": "", "data": [item]}
    )
    async with _rest_ctx(fake) as rest:
        oi = await rest.open_interest("BTC")
    assert oi == OpenInterest("okx", "BTC", 1791565200000, 50.0, 5e6)
    assert dict(fake.requests[0].url.params) == {"instType": "SWAP", "instId": BTC}


async def test_contract_value_is_cached(load: Callable[[str], Any]) -> None:
    fake = FakeOkx(NOW_MS, 0)
    fake.replies["/api/v5/public/instruments"] = httpx.Response(
        200, json=load("instruments_swap__live2022")
    )
    async with _rest_ctx(fake) as rest:
        assert await rest.contract_value("BTC") == 0.01
        assert await rest.contract_value("ETH") == 0.1  # came with the first answer
        assert len(fake.requests) == 1
        assert dict(fake.requests[0].url.params) == {"instType": "SWAP", "instId": BTC}
        with pytest.raises(UnknownSymbol):
            await rest.contract_value("SOL")
        assert await rest.contract_values() == {BTC: 0.01, "ETH-USDT-SWAP": 0.1}


async def test_http_400_with_okx_code() -> None:
    fake = FakeOkx(NOW_MS, 0)
    fake.replies["/api/v5/public/open-interest"] = httpx.Response(
        400, json={"code": "51001", "msg": "Instrument ID doesn't exist.", "data": []}
    )
    async with _rest_ctx(fake) as rest:
        with pytest.raises(UnknownSymbol):
            await rest.open_interest("BTC")


async def test_junk_body_on_200() -> None:
    fake = FakeOkx(NOW_MS, 0)
    fake.replies["/api/v5/public/open-interest"] = httpx.Response(200, content=b'{"code":"0"')
    async with _rest_ctx(fake) as rest:
        with pytest.raises(JunkResponse):
            await rest.open_interest("BTC")


async def test_rest_liquidations_best_effort(load: Callable[[str], Any]) -> None:
    fake = FakeOkx(NOW_MS, NOW_MS - 50 * HOUR)
    fake.replies["/api/v5/public/instruments"] = httpx.Response(
        200, json=load("instruments_swap__live2022")
    )
    shape = load("rest_liquidation_orders__shape_thirdparty")
    path = "/api/v5/public/liquidation-orders"
    fake.replies[path] = httpx.Response(200, json={"code": "0", "msg": "", **shape})
    async with _rest_ctx(fake) as rest:
        events = await rest.liquidations("BTC")
        assert [e.ts_ms for e in events] == [1786394631624, 1786408771714]  # oldest first
        assert all(isinstance(e, LiqEvent) and e.symbol == "BTC" for e in events)
        assert rest.liquidations_note is None
        q = fake.requests[-1].url.params
        assert (q["instType"], q["uly"], q["state"], q["limit"]) == (
            "SWAP", "BTC-USDT", "filled", "100",
        )  # fmt: skip
        for reply in (
            httpx.Response(404, json={"code": "404", "msg": "Not Found"}),
            httpx.Response(500),
            httpx.Response(200, content=b"<html>"),
            httpx.Response(200, json={"code": "50011", "msg": "Rate limit", "data": []}),
            httpx.Response(403, text="Forbidden"),
        ):
            fake.replies[path] = reply
            assert await rest.liquidations("BTC") == []
            assert rest.liquidations_note and "best effort" in rest.liquidations_note
        # Its 403 opened no circuit for the documented endpoints.
        assert rest.status().state == "ok"
        assert len(await rest.klines("BTC", "1h", limit=2)) == 2
