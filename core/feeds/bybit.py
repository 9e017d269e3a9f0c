"""Bybit v5 REST (category=linear): klines, open interest, tickers.

Endpoints (``symbol`` is a base such as 'BTC'; the instrument is the USDT perpetual 'BTCUSDT')::

    /v5/market/kline          [start, open, high, low, close, volume (coin), turnover (USDT)],
                              newest first, <= 1000 a request
    /v5/market/open-interest  {openInterest (coin), timestamp}, newest first, <= 200 a page,
                              cursor paging through ``nextPageCursor``
    /v5/market/tickers        mark and index price, funding, openInterest (coin) and
                              openInterestValue (USD)

Units: ``volume_usd`` is ``turnover``; Bybit klines have no taker-buy split (None). Linear
open interest is in base coin. :meth:`BybitRest.open_interest_hist` converts it to USD with the
kline of the same interval: OI stamped t is valued at the close of the bar that ends at t (the
last traded price at t), or at the open of the bar that starts at t when that close is missing.
A point with neither is dropped, never guessed. The current OI comes from the ticker, whose
``openInterestValue`` is Bybit's own USD figure (at the mark price).

Every list is returned oldest first. Every answer's ``category`` must be "linear": inverse
answers use other units (OI in USD, turnover in coin), so taking one for linear data would be
wrong, and it is rejected as :class:`JunkResponse`.

Errors: ``retCode`` != 0 is an error even on HTTP 200. 10001 (parameter error) naming the symbol
is :class:`UnknownSymbol`, 10006/10018 a rate limit, 10016 a server error; the rest are
:class:`VenueError`. HTTP 403 is an IP ban (or a US IP): HttpClient opens the circuit.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from core.errors import InputError
from core.feeds import limits
from core.feeds.errors import (
    FeedError,
    FeedUnavailable,
    JunkResponse,
    RateLimited,
    UnknownSymbol,
    VenueError,
)
from core.feeds.http import Clock, HttpClient, Sleep, VenueStatus
from core.feeds.parse import chunks, epoch_ms, finite, funding_per_8h, oldest_first, span
from core.feeds.symbols import base_of, venue_symbol
from core.feeds.types import Kline, MarkPrice, OpenInterest, Venue

BYBIT_BASE_URL = "https://api.bybit.com"
VENUE: Venue = "bybit"
MAX_KLINES, MAX_OI_ROWS = 1000, 200
MAX_OI_PAGES = 500  # a guard against a cursor that never ends

# Canonical interval -> (kline interval, open-interest intervalTime or None, ms).
INTERVALS: dict[str, tuple[str, str | None, int]] = {
    "1m": ("1", None, 60_000), "3m": ("3", None, 180_000), "5m": ("5", "5min", 300_000),
    "15m": ("15", "15min", 900_000), "30m": ("30", "30min", 1_800_000),
    "1h": ("60", "1h", 3_600_000), "2h": ("120", None, 7_200_000),
    "4h": ("240", "4h", 14_400_000), "6h": ("360", None, 21_600_000),
    "12h": ("720", None, 43_200_000), "1d": ("D", "1d", 86_400_000),
}  # fmt: skip


def _junk(message: str) -> JunkResponse:
    return JunkResponse(VENUE, message)


def error_from_code(code: int, msg: str, what: str) -> FeedError:
    """The FeedError a Bybit ``retCode`` stands for."""
    text = f"{what}: retCode {code}: {msg or 'no message'}"
    lowered = msg.lower()
    if code == 10001 and "symbol" in lowered:
        return UnknownSymbol(VENUE, text, code)
    if code in (10006, 10018):
        return RateLimited(VENUE, text, 1.0)
    if code in (10000, 10016):
        return FeedUnavailable(VENUE, text)
    return VenueError(VENUE, text, code)


def map_http_error(status: int, body: Any) -> FeedError | None:
    """``HttpClient`` error_mapper: a 4xx body with a ``retCode`` maps like a 200 one."""
    if isinstance(body, dict) and isinstance(body.get("retCode"), int) and body["retCode"]:
        return error_from_code(body["retCode"], str(body.get("retMsg", "")), f"HTTP {status}")
    return None


def unwrap(body: Any, what: str) -> dict[str, Any]:
    """``result`` of a Bybit envelope ``{"retCode":0,"result":{..},"time":..}``."""
    if not isinstance(body, dict):
        raise _junk(f"{what}: expected a JSON object, got {type(body).__name__}")
    code = body.get("retCode")
    if not isinstance(code, int) or isinstance(code, bool):
        raise _junk(f"{what}: envelope has no integer 'retCode'")
    if code != 0:
        raise error_from_code(code, str(body.get("retMsg", "")), what)
    result = body.get("result")
    if not isinstance(result, dict):
        raise _junk(f"{what}: 'result' should be an object, got {type(result).__name__}")
    category = result.get("category", "linear")
    if category not in ("linear", ""):
        raise _junk(f"{what}: answered for category {category!r}, asked for linear")
    return result


def _list(result: dict[str, Any], what: str) -> list[Any]:
    rows = result.get("list")
    if not isinstance(rows, list):
        raise _junk(f"{what}: 'result.list' should be a list, got {type(rows).__name__}")
    return rows


def parse_klines(body: Any, symbol: str) -> list[Kline]:
    """A /v5/market/kline answer -> Klines, oldest first (Bybit sends newest first)."""
    out: list[Kline] = []
    for i, row in enumerate(_list(unwrap(body, "kline"), "kline")):
        try:
            if not isinstance(row, list) or len(row) < 7:
                raise ValueError(f"expected 7 fields, got {row!r:.60}")
            o, h, lo, c = (finite(row[k], 0.0) for k in (1, 2, 3, 4))
            ts, turnover = epoch_ms(row[0]), finite(row[6], 0.0)
        except (TypeError, ValueError) as exc:
            raise _junk(f"kline[{i}]: {exc}") from None
        if not 0 < lo <= min(o, c) <= max(o, c) <= h:
            raise _junk(f"kline[{i}]: inconsistent OHLC {o}/{h}/{lo}/{c}")
        out.append(Kline(VENUE, symbol, ts, o, h, lo, c, turnover, None))
    return oldest_first(out, VENUE, "kline")


def parse_open_interest_page(body: Any) -> tuple[list[tuple[int, float]], str]:
    """One /v5/market/open-interest page -> ([(ts, OI in base coin)] oldest first, cursor)."""
    result = unwrap(body, "open-interest")
    out: list[tuple[int, float]] = []
    for i, item in enumerate(_list(result, "open-interest")):
        try:
            out.append((epoch_ms(item["timestamp"]), finite(item["openInterest"], 0.0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise _junk(f"open-interest[{i}]: bad or missing field {exc}") from None
    out.sort()
    cursor = result.get("nextPageCursor") or ""
    if not isinstance(cursor, str):
        raise _junk("open-interest: nextPageCursor should be a string")
    return out, cursor


def parse_ticker_item(item: Any, symbol: str, ts_ms: int) -> tuple[MarkPrice, OpenInterest]:
    """A linear ticker (REST list item or WS ``tickers`` snapshot data) -> (mark, OI).

    ``funding_rate`` is per 8 h, the unit of the bar CSV: Bybit's rate is per funding
    interval (``fundingIntervalHour``, 8 on most symbols, 1 or 4 on some).
    """
    inst = venue_symbol(symbol, VENUE)
    try:
        if item["symbol"] != inst:
            raise ValueError(f"answered for {item['symbol']!r}, asked for {inst}")
        mark = finite(item["markPrice"], 0.0)
        index = finite(item["indexPrice"], 0.0) if item.get("indexPrice") else None
        rate = finite(item["fundingRate"]) if item.get("fundingRate") not in (None, "") else None
        hours = finite(item.get("fundingIntervalHour") or 8, 1.0)
        funding = None if rate is None else funding_per_8h(rate, hours)
        nxt = item.get("nextFundingTime")
        next_ms = epoch_ms(nxt) if nxt not in (None, "", "0", 0) else None
        oi, oi_usd = finite(item["openInterest"], 0.0), finite(item["openInterestValue"], 0.0)
    except (KeyError, TypeError, ValueError) as exc:
        raise _junk(f"tickers {inst}: bad or missing field {exc}") from None
    if mark <= 0:
        raise _junk(f"tickers {inst}: markPrice is not positive")
    return (
        MarkPrice(VENUE, symbol, ts_ms, mark, index, funding, next_ms),
        OpenInterest(VENUE, symbol, ts_ms, oi, oi_usd),
    )


def parse_tickers(body: Any, symbol: str) -> tuple[MarkPrice, OpenInterest]:
    """A /v5/market/tickers answer -> (mark price, open interest) stamped with ``time``."""
    if not isinstance(body, dict):
        raise _junk(f"tickers: expected a JSON object, got {type(body).__name__}")
    rows = _list(unwrap(body, "tickers"), "tickers")
    if not rows:
        raise UnknownSymbol(VENUE, f"tickers has no row for {venue_symbol(symbol, VENUE)}")
    try:
        ts = epoch_ms(body["time"])
    except (KeyError, TypeError, ValueError) as exc:
        raise _junk(f"tickers: bad or missing 'time' ({exc})") from None
    return parse_ticker_item(rows[0], symbol, ts)


def _interval(interval: str, *, oi: bool = False) -> tuple[str, str | None, int]:
    allowed = [k for k, v in INTERVALS.items() if v[1] is not None or not oi]
    if interval not in allowed:
        what = "open-interest period" if oi else "interval"
        raise InputError(f"Bybit does not offer {what} {interval!r}; use one of {allowed}")
    return INTERVALS[interval]


class BybitRest:
    """Bybit REST feed (:class:`~core.feeds.base.RestFeed`) for USDT perpetuals (linear).

    Pass ``transport`` to test against ``httpx.MockTransport``.
    """

    venue: Venue = VENUE
    max_klines_per_request = MAX_KLINES
    max_oi_per_request = MAX_OI_ROWS

    def __init__(
        self,
        base_url: str = BYBIT_BASE_URL,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        timeout_s: float = 10.0,
    ) -> None:
        self._clock = clock
        self._http = HttpClient(
            VENUE,
            base_url,
            limits.BYBIT,
            transport=transport,
            clock=clock,
            sleep=sleep,
            timeout_s=timeout_s,
            error_mapper=map_http_error,
        )

    def status(self) -> VenueStatus:
        return self._http.status()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _get(self, path: str, params: dict[str, str | int | float]) -> Any:
        return await self._http.get_json(path, params, costs={"ip": 1})

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def klines(
        self,
        symbol: str,
        interval: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int | None = None,
        closed_only: bool = False,
    ) -> list[Kline]:
        """Bars oldest first; the latest bar may still be forming unless ``closed_only``.

        Each request names a range ``start..end`` of at most 1000 bars, so the answer is the
        whole range whichever end Bybit fills from.
        """
        base = base_of(symbol)
        code, _, step = _interval(interval)
        now = self._now_ms()
        first, last = span(now, step, start_ms, end_ms, limit, MAX_KLINES, closed_only=closed_only)
        params: dict[str, str | int | float] = {
            "category": "linear",
            "symbol": venue_symbol(base, VENUE),
            "interval": code,
        }
        out: list[Kline] = []
        for a, b in chunks(first, last, step, MAX_KLINES):
            params.update(start=a, end=b, limit=(b - a) // step + 1)
            page = parse_klines(await self._get("/v5/market/kline", params), base)
            if not page:
                break  # older than the listing: older ranges are empty too
            out.extend(k for k in page if a <= k.ts_ms <= b)
        return oldest_first(out, VENUE, "kline")

    async def open_interest_hist(
        self,
        symbol: str,
        period: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int | None = None,
    ) -> list[OpenInterest]:
        """OI per ``period`` (5m, 15m, 30m, 1h, 4h, 1d), oldest first, in USD by the klines
        (see the module docstring). Pages follow ``nextPageCursor``."""
        base = base_of(symbol)
        _, oi_code, step = _interval(period, oi=True)
        assert oi_code is not None  # _interval(oi=True) only lets OI periods through
        first, last = span(self._now_ms(), step, start_ms, end_ms, limit, MAX_OI_ROWS)
        params: dict[str, str | int | float] = {
            "category": "linear",
            "symbol": venue_symbol(base, VENUE),
            "intervalTime": oi_code,
            "startTime": first,
            "endTime": last,
            "limit": min(MAX_OI_ROWS, (last - first) // step + 1),
        }
        points: dict[int, float] = {}
        seen: set[str] = set()
        for _ in range(MAX_OI_PAGES):
            body = await self._get("/v5/market/open-interest", params)
            page, cursor = parse_open_interest_page(body)
            points.update((ts, oi) for ts, oi in page if first <= ts <= last)
            if not page or not cursor or cursor in seen or page[0][0] <= first:
                break
            seen.add(cursor)
            params["cursor"] = cursor
        if not points:
            return []
        bars = await self.klines(base, period, start_ms=min(points) - step, end_ms=max(points))
        close_at = {k.ts_ms + step: k.close for k in bars}  # price at the end of each bar
        open_at = {k.ts_ms: k.open for k in bars}
        out: list[OpenInterest] = []
        for ts in sorted(points):
            price = close_at.get(ts) or open_at.get(ts)
            if price is not None:
                out.append(OpenInterest(VENUE, base, ts, points[ts], points[ts] * price))
        return out

    async def ticker(self, symbol: str) -> tuple[MarkPrice, OpenInterest]:
        """Mark price, funding and open interest (coin and Bybit's USD value) in one call."""
        base = base_of(symbol)
        params: dict[str, str | int | float] = {
            "category": "linear",
            "symbol": venue_symbol(base, VENUE),
        }
        return parse_tickers(await self._get("/v5/market/tickers", params), base)

    async def open_interest(self, symbol: str) -> OpenInterest:
        return (await self.ticker(symbol))[1]

    async def mark_price(self, symbol: str) -> MarkPrice:
        return (await self.ticker(symbol))[0]
