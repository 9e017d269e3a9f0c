"""CoinGlass liquidation map / aggregated map / heatmap -> LiqMap: the real doc samples, shape,
totals and side split, invariants, junk, and the client over httpx.MockTransport."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import DataError, InputError
from core.feeds.coinglass import (
    UNKNOWN_LEVERAGE,
    CoinGlassClient,
    levels_to_liqmap,
    parse_liquidation_heatmap,
    parse_liquidation_map,
)
from core.feeds.errors import JunkResponse, VenueError
from core.liqmap import LiqMap, combine
from core.mapbuild import nice_bin_size

KEY = "cg-secret-key-0123456789"
NOW_S = 1_791_565_600.0
META: dict[str, Any] = {"symbol": "BTC", "venue": "coinglass:binance", "ts_ms": 1_791_565_600_000}


def _envelope(levels: dict[str, Any]) -> dict[str, Any]:
    return {"code": "0", "msg": "success", "data": {"data": levels}}


def _bin_of(m: LiqMap, price: float) -> int:
    return int(np.floor((price - m.origin) / m.bin_size))


# --- the real doc samples ----------------------------------------------------------------------


def test_map_sample_below_price_is_long(sample: Callable[[str], Any]) -> None:
    m = parse_liquidation_map(sample("coinglass_liquidation_map__docs"), price=50_000.0, **META)
    assert (m.symbol, m.venues, m.ts_ms, m.price) == (
        "BTC",
        ("coinglass:binance",),
        META["ts_ms"],
        50_000.0,
    )
    assert m.leverages == (25.0,)
    assert m.bin_size == nice_bin_size(50_000.0) == 50.0
    assert m.origin % m.bin_size == 0 and m.origin <= 48_935
    assert m.long_usd.shape == m.short_usd.shape == (1, m.n_bins)
    assert m.long_usd.sum() == pytest.approx(1_579_370.77)
    assert m.short_usd.sum() == 0.0
    assert m.long_usd[0, _bin_of(m, 48_935)] == pytest.approx(1_579_370.77)
    assert 0 <= m.price_bin < m.n_bins  # the grid covers the price too
    assert np.isnan(m.atr)


def test_map_sample_above_price_is_short(sample: Callable[[str], Any]) -> None:
    m = parse_liquidation_map(sample("coinglass_liquidation_map__docs"), price=48_000.0, **META)
    assert m.short_usd.sum() == pytest.approx(1_579_370.77) and m.long_usd.sum() == 0.0
    assert m.cumulative_peaks().short_usd == pytest.approx(1_579_370.77)


def test_aggregated_map_sample_has_one_unknown_tier(sample: Callable[[str], Any]) -> None:
    payload = sample("coinglass_liquidation_aggregated_map__docs")
    m = parse_liquidation_map(payload, price=50_000.0, bin_size=100.0, **META)
    assert m.leverages == (UNKNOWN_LEVERAGE,) == (0.0,)
    assert m.bin_size == 100.0 and m.origin % 100.0 == 0
    assert m.long_total.sum() == pytest.approx(1_579_370.77)


def test_heatmap_sample_is_rejected_as_truncated(sample: Callable[[str], Any]) -> None:
    # The docs example lists 3 prices and 2 candles but indexes y=124 and x=5: it was cut short.
    with pytest.raises(
        JunkResponse, match=r"cell 0: x=5, y=124 is outside the 2 candles x 3 prices"
    ):
        parse_liquidation_heatmap(
            sample("coinglass_liquidation_heatmap_model1__docs"), symbol="BTC", venue="cg"
        )


def test_heatmap_sample_with_consistent_indices(sample: Callable[[str], Any]) -> None:
    payload = sample("coinglass_liquidation_heatmap_model1__docs")
    # Re-index the sample's three cells onto its own axes: two in the last candle, one earlier.
    payload["data"]["liquidation_leverage_data"] = [[1, 0, 2288867.26], [1, 2, 318624.82],
                                                    [0, 1, 1527940.12]]  # fmt: skip
    m = parse_liquidation_heatmap(payload, symbol="BTC", venue="coinglass:binance", bin_size=10.0)
    assert m.price == 61_590.5 and m.ts_ms == 1_722_676_800_000  # the last candle, seconds -> ms
    assert m.leverages == (UNKNOWN_LEVERAGE,)
    # y_axis (~48,000) is far below the candles (~61,500), so every level reads as long.
    assert m.long_usd.sum() == pytest.approx(2288867.26 + 318624.82)
    assert m.long_usd[0, _bin_of(m, 47_968.54)] == pytest.approx(2288867.26)
    first = parse_liquidation_heatmap(payload, symbol="BTC", venue="cg", column=0, bin_size=10.0)
    assert first.long_usd.sum() == pytest.approx(1527940.12) and first.price == 61_539.9


# --- mapping and invariants --------------------------------------------------------------------


def test_several_leverages_become_tiers() -> None:
    payload = _envelope(
        {
            "60000": [[60000, 1e6, 10, None], [60000, 2e6, 100, None]],
            "70000.5": [["70000.5", "3e6", 25, None]],  # strings are numbers too
            "80000": [[80000, 4e6, None, None]],
            "90000": [],
        }
    )
    m = parse_liquidation_map(payload, price=70_000.0, **META)
    assert m.leverages == (0.0, 10.0, 25.0, 100.0)
    assert m.long_usd.sum(axis=1).tolist() == [0.0, 1e6, 0.0, 2e6]
    assert m.short_usd.sum(axis=1).tolist() == [4e6, 0.0, 3e6, 0.0]
    assert m.cum_long.max() == 3e6 and m.cum_short.max() == 7e6
    banded = m.banded()  # our display bands accept the unknown tier (it joins the lowest band)
    assert banded.long_usd.sum() + banded.short_usd.sum() == pytest.approx(10e6)
    doubled = combine([m, m])  # adds bin for bin with other maps of the same bin size
    assert doubled.short_usd.sum() == pytest.approx(14e6)


@settings(max_examples=60, deadline=None)
@given(
    levels=st.lists(
        st.tuples(
            st.floats(50_000, 150_000),
            st.floats(0, 1e9),
            st.sampled_from([None, 5, 10, 25, 50, 100, 125]),
        ),
        min_size=1,
        max_size=40,
    ),
    price=st.floats(60_000, 140_000),
)
def test_mass_is_conserved_and_sides_split_at_the_price(
    levels: list[tuple[float, float, int | None]], price: float
) -> None:
    prices = np.array([p for p, _, _ in levels])
    usd = np.array([u for _, u, _ in levels])
    lev = np.array([UNKNOWN_LEVERAGE if x is None else float(x) for _, _, x in levels])
    m = levels_to_liqmap(prices, usd, lev, price, "BTC", "cg", 0)
    assert m.long_usd.sum() + m.short_usd.sum() == pytest.approx(usd.sum(), rel=1e-9, abs=1e-6)
    assert m.long_usd.sum() == pytest.approx(usd[prices < price].sum(), rel=1e-9, abs=1e-6)
    long_bins = np.flatnonzero(m.long_total > 0)
    short_bins = np.flatnonzero(m.short_total > 0)
    assert (m.price_low[long_bins] <= price).all()
    assert (m.price_high[short_bins] > price).all()
    assert np.all(np.diff(m.cum_short) >= 0) and np.all(np.diff(m.cum_long) <= 0)
    assert m.leverages == tuple(sorted(set(lev.tolist())))


# --- junk ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "error", "message"),
    [
        ({"code": "0", "data": {"levels": {}}}, JunkResponse, "data.data to be an object"),
        ({"code": "0", "data": None}, JunkResponse, "no 'data'"),
        ({"code": "0", "data": [1]}, JunkResponse, "data.data to be an object"),
        ({"code": "403", "msg": "Upgrade plan"}, VenueError, "code 403: Upgrade plan"),
        (_envelope({"1": {"price": 1}}), JunkResponse, "level '1': expected a list"),
        (_envelope({"1": [[1]]}), JunkResponse, "level '1', entry 0: expected [price, usd"),
        (_envelope({"1": [[-1, 5, 25, None]]}), JunkResponse, "price: expected a number above 0"),
        (_envelope({"1": [[1, -5, 25, None]]}), JunkResponse, "usd: expected a number at least 0"),
        (_envelope({"1": [[1, "NaN", 25, None]]}), JunkResponse, "found 'NaN'"),
        (_envelope({"1": [[1, 5, 0, None]]}), JunkResponse, "lev: expected a number above 0"),
        (_envelope({"1": [[1, 5, "x", None]]}), JunkResponse, "found 'x'"),
        (_envelope({"1": [[True, 5, 25, None]]}), JunkResponse, "found True"),
        (_envelope({}), DataError, "no liquidation levels for BTC"),
    ],
)
def test_map_junk(payload: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        parse_liquidation_map(payload, price=50_000.0, **META)
    assert message in str(info.value)


def test_map_needs_a_positive_price(sample: Callable[[str], Any]) -> None:
    with pytest.raises(InputError, match="current price must be a positive number"):
        parse_liquidation_map(sample("coinglass_liquidation_map__docs"), price=float("nan"), **META)


def _heatmap(**data: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "y_axis": [100.0, 101.0],
        "liquidation_leverage_data": [[0, 0, 5.0]],
        "price_candlesticks": [[1722676500, "100", "101", "99", "100.5", "1"]],
    }
    return {"code": "0", "data": {**base, **data}}


@pytest.mark.parametrize(
    ("payload", "error", "message"),
    [
        (_heatmap(y_axis=None), JunkResponse, "expected lists y_axis"),
        (_heatmap(price_candlesticks=[]), DataError, "no candles"),
        (_heatmap(price_candlesticks=[[1, "2"]]), JunkResponse, "candle 0: expected [ts, o, h, l"),
        (_heatmap(liquidation_leverage_data=[[0, 0]]), JunkResponse, "cell 0: expected [x, y"),
        (_heatmap(liquidation_leverage_data=[[0, 2, 1]]), JunkResponse, "y=2 is outside"),
        (_heatmap(liquidation_leverage_data=[[0, -1, 1]]), JunkResponse, "y=-1 is outside"),
        (_heatmap(liquidation_leverage_data=[[0, 0, -1]]), JunkResponse, "usd: expected"),
        (_heatmap(y_axis=[100, "x"]), JunkResponse, "y_axis[1]"),
        (_heatmap(liquidation_leverage_data=[]), DataError, "no liquidation levels"),
    ],
)
def test_heatmap_junk(payload: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        parse_liquidation_heatmap(payload, symbol="BTC", venue="cg")
    assert message in str(info.value)


def test_heatmap_column_out_of_range() -> None:
    with pytest.raises(InputError, match="column 3 is outside its 1 candles"):
        parse_liquidation_heatmap(_heatmap(), symbol="BTC", venue="cg", column=3)


# --- the client ----------------------------------------------------------------------------------


class Recorder:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, content=orjson.dumps(self.answer))


def _client(rec: Recorder) -> CoinGlassClient:
    return CoinGlassClient(KEY, transport=httpx.MockTransport(rec), clock=lambda: NOW_S)


async def test_client_liquidation_map(sample: Callable[[str], Any]) -> None:
    rec = Recorder(sample("coinglass_liquidation_map__docs"))
    client = _client(rec)
    m = await client.liquidation_map(price=50_000.0, pair="BTCUSDT", exchange="OKX", range_="1d")
    await client.aclose()
    req = rec.requests[0]
    assert req.url.path == "/api/futures/liquidation/map"
    assert dict(req.url.params) == {"exchange": "OKX", "symbol": "BTCUSDT", "range": "1d"}
    assert req.headers["CG-API-KEY"] == KEY and req.headers["accept"] == "application/json"
    assert m.venues == ("coinglass:okx",) and m.symbol == "BTC"
    assert m.ts_ms == int(NOW_S * 1000)
    assert m.long_usd.sum() == pytest.approx(1_579_370.77)


async def test_client_aggregated_map_and_heatmap(sample: Callable[[str], Any]) -> None:
    rec = Recorder(sample("coinglass_liquidation_aggregated_map__docs"))
    client = _client(rec)
    m = await client.liquidation_map(price=40_000.0, pair="BTCUSDT", exchange=None)
    assert rec.requests[0].url.path == "/api/futures/liquidation/aggregated-map"
    assert dict(rec.requests[0].url.params) == {"symbol": "BTC", "range": "7d"}
    assert m.venues == ("coinglass:aggregated",) and m.short_usd.sum() == pytest.approx(
        1_579_370.77
    )
    rec.answer = _heatmap()
    h = await client.liquidation_heatmap(model=2, range_="24h")
    assert rec.requests[1].url.path == "/api/futures/liquidation/heatmap/model2"
    assert dict(rec.requests[1].url.params) == {
        "exchange": "Binance",
        "symbol": "BTCUSDT",
        "range": "24h",
    }
    assert h.long_usd.sum() == 5.0 and h.price == 100.5
    await client.aclose()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"range_": "2d"}, "range '2d' is not one of 1d, 7d, 30d"),
        ({"pair": "BTC/USDT?x=1"}, "not an exchange or symbol name"),
        ({"exchange": ""}, "not an exchange or symbol name"),
    ],
)
async def test_client_refuses_bad_arguments_before_any_request(
    call: dict[str, Any], message: str
) -> None:
    rec = Recorder({})
    client = _client(rec)
    with pytest.raises(InputError) as info:
        await client.liquidation_map(price=50_000.0, **call)
    await client.aclose()
    assert message in str(info.value) and rec.requests == []


async def test_client_heatmap_model_is_checked() -> None:
    client = _client(Recorder({}))
    with pytest.raises(InputError, match="model '4' is not one of 1, 2, 3"):
        await client.liquidation_heatmap(model=4)
    await client.aclose()
