"""CoinGlass API v4 (paid key) -> ETF flows (:class:`EtfFlows`) and liquidation maps (LiqMap).

The key goes in the ``CG-API-KEY`` header and never into a message (HttpClient masks it).
Answers are ``{"code": "0", "msg": ..., "data": ...}`` with a *string* code; any other code is
a :class:`VenueError` (or :class:`RateLimited` for "429").

ETF flows: ``/api/etf/bitcoin/flow-history`` (US; Hobbyist plan) and ``/api/hk-etf/bitcoin/
flow-history`` give per day ``timestamp`` (ms, UTC midnight), ``flow_usd`` (the total, USD) and
``etf_flows`` ``[{etf_ticker, flow_usd}]``; a missing fund ``flow_usd`` (no data) counts 0.0.
``.../net-assets/history`` gives the totals alone (``change_usd``).
Converted to US$ millions; the total is CoinGlass's, noted where the funds do not add up to it.

Liquidation maps, to compare with our estimate (Professional plan):
``/api/futures/liquidation/map`` (exchange, pair, range) and ``.../aggregated-map`` (coin, range)
answer ``data.data = {price: [[price, usd, leverage, null], ...]}``; ``.../heatmap/model1..3``
answer ``y_axis`` (prices), ``liquidation_leverage_data`` ``[[x, y, usd], ...]`` (x indexes the
candles, y the prices) and ``price_candlesticks`` ``[[ts_s, o, h, l, c, vol], ...]``.

Mapping onto our grid, and what is lost:

- Side. Neither payload says long or short. As on CoinGlass's chart, a level below the current
  price is long (a fall liquidates it) and one at or above it is short. The map endpoints do not
  carry the price, so the caller passes it; the heatmap uses its last candle's close. A level that
  CoinGlass put on the "wrong" side of the price (already crossed) cannot be told apart.
- Leverage. Each distinct leverage of the map becomes a tier, as given (25 stays 25x, not snapped
  to our presets). The aggregated map and the heatmap carry none: their mass sits on one tier
  labelled :data:`UNKNOWN_LEVERAGE` (0.0).
- Price. Levels are re-binned on our global grid (``bin_size``, default about 0.1% of the price
  as our own maps), so two levels closer than a bin merge; mass is conserved.
- Time. The map payloads carry no timestamp, so ``ts_ms`` is the fetch time. The heatmap's
  history is reduced to one column, the latest by default: a LiqMap is one moment.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any, Literal

import httpx
import numpy as np

from core.errors import DataError, InputError
from core.etf import EtfFlows
from core.etf_io import TOTAL_TOLERANCE_MUSD
from core.feeds.errors import FeedError, JunkResponse, RateLimited, VenueError
from core.feeds.http import Clock, Sleep, keyed_client
from core.feeds.limits import VenueLimits, Window
from core.feeds.symbols import base_of
from core.liqmap import FloatArray, LiqMap, bin_levels, grid_for
from core.mapbuild import nice_bin_size

VENUE = "coinglass"
COINGLASS_BASE_URL = "https://open-api-v4.coinglass.com"
KEY_HEADER = "CG-API-KEY"
COINGLASS_HOBBYIST = VenueLimits({"plan": Window(30, 60.0)})  # 30/min; Startup 80, Standard 300
UNKNOWN_LEVERAGE = 0.0  # tier label of mass whose leverage CoinGlass does not give
MAP_RANGES = ("1d", "7d", "30d")
HEATMAP_RANGES = ("12h", "24h", "3d", "7d", "30d", "90d", "180d", "1y")
_HEATMAP_KEYS = ("y_axis", "liquidation_leverage_data", "price_candlesticks")
_ETF_PATHS = {"us": "/api/etf/bitcoin/flow-history", "hk": "/api/hk-etf/bitcoin/flow-history"}
_NAME = re.compile(r"^[A-Za-z0-9\-]{2,30}$")


def unwrap(payload: Any, what: str) -> Any:
    """The ``data`` of ``{"code": "0", ...}``; the error any other code amounts to."""
    if not isinstance(payload, dict) or "code" not in payload:
        raise JunkResponse(VENUE, f"{what}: expected {{code, msg, data}}, got {_kind(payload)}")
    code = str(payload["code"])
    if code == "0":
        if payload.get("data") is None:
            raise JunkResponse(VENUE, f"{what}: code \"0\" but no 'data'")
        return payload["data"]
    raise envelope_error(payload, what)


def envelope_error(body: Mapping[str, Any], what: str) -> FeedError:
    code = str(body.get("code"))
    msg = str(body.get("msg") or body.get("message") or "no message")[:200]
    if code == "429":
        return RateLimited(VENUE, f"{what}: rate limited ({msg})", 60.0)
    if code == "401":
        return VenueError(VENUE, f"{what}: the API key was rejected ({msg})", code)
    return VenueError(VENUE, f"{what}: code {code}: {msg}", code)


def coinglass_error(status: int, body: Any) -> FeedError | None:
    """HttpClient error mapper for non-2xx answers other than 429 / 403 / 5xx."""
    if isinstance(body, dict) and "code" in body:
        return envelope_error(body, f"HTTP {status}")
    if status == 401:
        return VenueError(VENUE, "HTTP 401: the API key is missing or invalid", 401)
    return None


def parse_etf_flow_history(payload: Any, source: str = VENUE) -> EtfFlows:
    """Daily flows per fund from ``flow-history`` (US or HK), US$ millions, oldest first."""
    rows = unwrap(payload, source)
    if not isinstance(rows, list) or not rows:
        raise JunkResponse(VENUE, f"{source}: expected a non-empty list of days, got {_kind(rows)}")
    days: dict[date, tuple[float | None, dict[str, float]]] = {}
    funds: dict[str, None] = {}  # ordered set, funds in order of first appearance
    for k, row in enumerate(rows):
        where = f"{source}: day {k}"
        if not isinstance(row, dict):
            raise JunkResponse(VENUE, f"{where}: expected an object, got {_kind(row)}")
        ts = row.get("timestamp")
        if isinstance(ts, bool) or not isinstance(ts, int) or ts <= 0:
            raise JunkResponse(VENUE, f"{where}: expected 'timestamp' in epoch ms, got {ts!r}")
        day = datetime.fromtimestamp(ts / 1000, UTC).date()
        if day in days:
            raise JunkResponse(VENUE, f"{where}: date {day} is listed twice")
        items = row.get("etf_flows") or []
        if not isinstance(items, list):
            raise JunkResponse(VENUE, f"{where}: 'etf_flows' must be a list, got {_kind(items)}")
        per_fund: dict[str, float] = {}
        for item in items:
            ticker = item.get("etf_ticker") if isinstance(item, dict) else None
            if not isinstance(ticker, str) or not ticker.strip():
                raise JunkResponse(VENUE, f"{where}: an etf_flows item has no etf_ticker: {item!r}")
            raw = item.get("flow_usd")  # missing when CoinGlass has no figure: 0.0
            flow = 0.0 if raw is None else _num(raw, f"{where}, {ticker} flow_usd")
            per_fund[ticker] = per_fund.get(ticker, 0.0) + flow / 1e6
        funds.update(dict.fromkeys(per_fund))
        raw = row.get("flow_usd")  # the day's total; without it, the sum of the funds
        days[day] = (None if raw is None else _num(raw, f"{where}, flow_usd") / 1e6, per_fund)
    names, ordered = tuple(funds), sorted(days)
    matrix = np.array([[days[d][1].get(f, 0.0) for f in names] for d in ordered], ndmin=2)
    sums = matrix.sum(axis=1)
    totals = np.array([days[d][0] for d in ordered], dtype=np.float64)  # None -> NaN
    totals = np.where(np.isnan(totals), sums, totals)
    notes = tuple(
        f"{source}: {ordered[i]}: total {totals[i]:.1f} differs from the sum of the listed funds "
        f"{sums[i]:.1f}; kept CoinGlass's total"
        for i in np.flatnonzero(np.abs(totals - sums) > TOTAL_TOLERANCE_MUSD + 1e-9)
        if days[ordered[i]][1]  # a day that lists no fund has nothing to disagree with
    )
    dates = np.array(ordered, dtype="datetime64[D]")
    return EtfFlows(dates, names, matrix, totals, notes=notes, source=source)


def parse_etf_net_assets_history(payload: Any, source: str = VENUE) -> EtfFlows:
    """Daily totals from ``/api/etf/bitcoin/net-assets/history``: ``change_usd`` is the day's net
    flow (it matches flow-history's ``flow_usd``), not the change of assets with the price."""
    rows = unwrap(payload, source)
    ok = isinstance(rows, list) and all(isinstance(r, dict) and "change_usd" in r for r in rows)
    if not ok:
        raise JunkResponse(VENUE, f"{source}: expected a list of days with 'change_usd'")
    days = [{"timestamp": r.get("timestamp"), "flow_usd": r["change_usd"]} for r in rows]
    return parse_etf_flow_history({"code": "0", "data": days}, source)


def parse_liquidation_map(
    payload: Any,
    *,
    price: float,
    symbol: str,
    venue: str,
    ts_ms: int,
    bin_size: float | None = None,
) -> LiqMap:
    """A CoinGlass (aggregated) liquidation map as a :class:`LiqMap`; see the module docstring.

    ``price`` is the current price (USD) that splits longs from shorts. Raises
    :class:`JunkResponse` on a malformed payload and :class:`DataError` when it holds no level.
    """
    data = unwrap(payload, "liquidation map")
    levels = data.get("data") if isinstance(data, dict) else None
    if not isinstance(levels, dict):
        raise JunkResponse(VENUE, "liquidation map: expected data.data to be an object of levels")
    prices, usd, leverage = [], [], []
    for key, entries in levels.items():
        if not isinstance(entries, list):
            raise JunkResponse(VENUE, f"liquidation map: level {key!r}: expected a list")
        for i, entry in enumerate(entries):
            where = f"liquidation map: level {key!r}, entry {i}"
            if not isinstance(entry, list) or len(entry) < 2:
                raise JunkResponse(VENUE, f"{where}: expected [price, usd, leverage, ...]")
            prices.append(_num(entry[0], f"{where}, price", 0.0, strict=True))
            usd.append(_num(entry[1], f"{where}, usd", 0.0))
            lev = entry[2] if len(entry) > 2 else None  # null in the aggregated map
            lev_x = UNKNOWN_LEVERAGE if lev is None else _num(lev, f"{where}, lev", 0.0, True)
            leverage.append(lev_x)
    arrays = np.array(prices), np.array(usd), np.array(leverage)
    return levels_to_liqmap(*arrays, price, symbol, venue, ts_ms, bin_size)


def parse_liquidation_heatmap(
    payload: Any,
    *,
    symbol: str,
    venue: str,
    column: int = -1,
    bin_size: float | None = None,
) -> LiqMap:
    """One column (default: the latest candle) of a CoinGlass heatmap as a :class:`LiqMap`.

    The price is that candle's close and ``ts_ms`` its open time. Every index is checked against
    ``y_axis`` and ``price_candlesticks``; one out of range rejects the payload.
    """
    data = unwrap(payload, "heatmap")
    if not isinstance(data, dict):
        raise JunkResponse(VENUE, f"heatmap: expected an object, got {_kind(data)}")
    y_axis, cells, candles = (data.get(k) for k in _HEATMAP_KEYS)
    if not (isinstance(y_axis, list) and isinstance(cells, list) and isinstance(candles, list)):
        raise JunkResponse(VENUE, f"heatmap: expected lists {', '.join(_HEATMAP_KEYS)}")
    if not candles:
        raise DataError(f"{venue}: the heatmap has no candles")
    col = column if column >= 0 else len(candles) + column
    if not 0 <= col < len(candles):
        raise InputError(f"heatmap column {column} is outside its {len(candles)} candles")
    candle = candles[col]
    if not isinstance(candle, list) or len(candle) < 5:
        raise JunkResponse(VENUE, f"heatmap: candle {col}: expected [ts, o, h, l, c, ...]")
    price = _num(candle[4], f"heatmap: candle {col}, close", 0.0, strict=True)
    ts_s = _num(candle[0], f"heatmap: candle {col}, time", 0.0, strict=True)
    ys = [_num(y, f"heatmap: y_axis[{j}]", 0.0, strict=True) for j, y in enumerate(y_axis)]
    prices, usd = [], []
    for i, cell in enumerate(cells):
        if not isinstance(cell, list) or len(cell) != 3:
            raise JunkResponse(VENUE, f"heatmap: cell {i}: expected [x, y, usd], got {cell!r}")
        x, y = cell[0], cell[1]
        if not (_is_index(x, len(candles)) and _is_index(y, len(ys))):
            shape = f"{len(candles)} candles x {len(ys)} prices"
            raise JunkResponse(VENUE, f"heatmap: cell {i}: x={x!r}, y={y!r} is outside the {shape}")
        value = _num(cell[2], f"heatmap: cell {i}, usd", 0.0)
        if x == col:
            prices.append(ys[y])
            usd.append(value)
    arrays = np.array(prices), np.array(usd), np.full(len(prices), UNKNOWN_LEVERAGE)
    return levels_to_liqmap(*arrays, price, symbol, venue, int(ts_s * 1000), bin_size)


def levels_to_liqmap(
    prices: FloatArray,
    usd: FloatArray,
    leverage: FloatArray,
    price: float,
    symbol: str,
    venue: str,
    ts_ms: int,
    bin_size: float | None = None,
) -> LiqMap:
    """Bin liquidation levels (price USD, usd, leverage) into a LiqMap, one tier per leverage.

    Levels below ``price`` are longs, the others shorts. Mass is conserved: the map's long plus
    short totals equal ``usd.sum()``.
    """
    if not (math.isfinite(price) and price > 0):  # NaN, say, from a feed that has no price yet
        raise InputError(f"the current price must be a positive number, got {price!r}")
    if prices.size == 0:
        raise DataError(f"{venue}: CoinGlass returned no liquidation levels for {symbol}")
    size = bin_size if bin_size is not None else nice_bin_size(price)
    leverages = tuple(sorted({float(x) for x in leverage}))
    tier = np.searchsorted(np.asarray(leverages), leverage).astype(np.intp)
    origin, n_bins = grid_for(prices, price, size)
    is_long = prices < price
    grids = [
        bin_levels(prices[m], usd[m], tier[m], len(leverages), size, origin, n_bins)
        for m in (is_long, ~is_long)
    ]
    return LiqMap(
        symbol=symbol,
        venues=(venue,),
        ts_ms=ts_ms,
        price=float(price),
        atr=float("nan"),
        bin_size=size,
        origin=origin,
        leverages=leverages,
        long_usd=grids[0],
        short_usd=grids[1],
    )


class CoinGlassClient:
    """ETF flows and liquidation maps from CoinGlass with one API key (never in messages)."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = COINGLASS_BASE_URL,
        limits: VenueLimits = COINGLASS_HOBBYIST,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = time.time,
        sleep: Sleep | None = None,
        **options: Any,
    ) -> None:
        self._clock = clock
        self.http = keyed_client(
            VENUE,
            base_url,
            limits,
            key_header=KEY_HEADER,
            api_key=api_key,
            missing_key="CoinGlass needs an API key (the Hobbyist plan covers ETF flows)",
            error_mapper=coinglass_error,
            transport=transport,
            clock=clock,
            sleep=sleep,
            **options,
        )

    async def etf_flows(self, market: Literal["us", "hk"] = "us") -> EtfFlows:
        """Daily Bitcoin ETF flows per fund, US$ millions (``market`` "us" or "hk")."""
        path = _ETF_PATHS[market]
        payload = await self.http.get_json(path, {})
        with self.http.redacting():
            return parse_etf_flow_history(payload, source=f"{VENUE} {path}")

    async def liquidation_map(
        self,
        *,
        price: float,
        pair: str = "BTCUSDT",
        exchange: str | None = "Binance",
        range_: str = "7d",
        bin_size: float | None = None,
    ) -> LiqMap:
        """CoinGlass's map of ``pair`` on ``exchange``, split at ``price`` (see the module doc).

        ``exchange=None`` asks for the aggregated map of the pair's coin over all exchanges (no
        leverage there: one unknown tier).
        """
        _check(range_, MAP_RANGES, "range")
        base = base_of(_name(pair))
        if exchange is None:
            params, path, venue = {"symbol": base}, "aggregated-map", "coinglass:aggregated"
        else:
            params, path = {"exchange": _name(exchange), "symbol": pair}, "map"
            venue = f"coinglass:{exchange.lower()}"
        url = f"/api/futures/liquidation/{path}"
        payload = await self.http.get_json(url, {**params, "range": range_})
        now_ms = int(self._clock() * 1000)
        with self.http.redacting():
            return parse_liquidation_map(
                payload, price=price, symbol=base, venue=venue, ts_ms=now_ms, bin_size=bin_size
            )

    async def liquidation_heatmap(
        self,
        *,
        pair: str = "BTCUSDT",
        exchange: str = "Binance",
        range_: str = "3d",
        model: int = 1,
        bin_size: float | None = None,
    ) -> LiqMap:
        """The latest column of CoinGlass's heatmap (``model`` 1, 2 or 3)."""
        _check(range_, HEATMAP_RANGES, "range")
        _check(str(model), ("1", "2", "3"), "model")
        params = {"exchange": _name(exchange), "symbol": _name(pair), "range": range_}
        payload = await self.http.get_json(f"/api/futures/liquidation/heatmap/model{model}", params)
        venue = f"coinglass:{exchange.lower()}"
        with self.http.redacting():
            return parse_liquidation_heatmap(
                payload, symbol=base_of(pair), venue=venue, bin_size=bin_size
            )

    async def aclose(self) -> None:
        await self.http.aclose()


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise InputError(f"CoinGlass {what} {value!r} is not one of {', '.join(allowed)}")


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise InputError(f"not an exchange or symbol name: {value[:30]!r}")
    return value


def _num(value: Any, where: str, lowest: float = -math.inf, strict: bool = False) -> float:
    """A finite number (JSON number or numeric string) >= ``lowest`` (> if ``strict``)."""
    number = math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = float(value.strip())
    if not math.isfinite(number) or number < lowest or (strict and number == lowest):
        bound = f" {'above' if strict else 'at least'} {lowest:g}" if lowest > -math.inf else ""
        raise JunkResponse(VENUE, f"{where}: expected a number{bound}, found {value!r}"[:300])
    return number


def _is_index(value: Any, n: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < n


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
