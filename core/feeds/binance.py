"""Binance USDⓈ-M futures REST client: klines, open interest, mark price, positioning ratios.

:class:`BinanceRest` is the :class:`~core.feeds.base.RestFeed` over the shared
:class:`~core.feeds.http.HttpClient` (budgets, retries, bans); the pure parsers it hands the
payloads to live in :mod:`core.feeds.binance_parse` and are re-exported here.

Unknown symbols: most endpoints answer HTTP 400 ``{"code":-1121,"msg":"Invalid symbol."}``,
which becomes :class:`~core.feeds.errors.UnknownSymbol`. The ``/futures/data/*`` endpoints
answer HTTP 200 ``[]`` instead. The client reads ``[]`` as an unknown symbol when no time range
was asked for (a listed symbol always has recent rows). With a range it sends one probe
(``limit=1``, no range): an empty probe means an unknown symbol, otherwise the range is simply
empty and ``[]`` is returned.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import httpx

from core.errors import InputError
from core.feeds import limits
from core.feeds.binance_parse import (
    INVALID_SYMBOL,
    VENUE,
    AccountRatio,
    TakerRatio,
    error_from_body,
    map_http_error,
    parse_account_ratio,
    parse_klines,
    parse_open_interest,
    parse_open_interest_hist,
    parse_premium_index,
    parse_taker_ratio,
)
from core.feeds.errors import UnknownSymbol, VenueError
from core.feeds.http import Clock, HttpClient, Sleep, VenueStatus
from core.feeds.symbols import base_of, venue_symbol
from core.feeds.types import Kline, MarkPrice, OpenInterest, Venue

__all__ = [
    "BINANCE_REST_URL",
    "INVALID_SYMBOL",
    "KLINE_INTERVALS",
    "MAX_KLINES",
    "MAX_STATS",
    "STAT_PERIODS",
    "VENUE",
    "AccountRatio",
    "AccountRatioKind",
    "BinanceRest",
    "TakerRatio",
    "error_from_body",
    "klines_weight",
    "map_http_error",
    "parse_account_ratio",
    "parse_klines",
    "parse_open_interest",
    "parse_open_interest_hist",
    "parse_premium_index",
    "parse_taker_ratio",
]

BINANCE_REST_URL = "https://fapi.binance.com"

KLINE_INTERVALS = (
    "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1M",
)  # fmt: skip
STAT_PERIODS = ("5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d")
MAX_KLINES = 1500
MAX_STATS = 500
STATS_HISTORY_MS = 30 * 86_400_000  # /futures/data/* keep the latest 30 days only

OptInt = int | None
AccountRatioKind = Literal["global", "top_account", "top_position"]
_RATIO_PATHS: dict[str, str] = {
    "global": "/futures/data/globalLongShortAccountRatio",
    "top_account": "/futures/data/topLongShortAccountRatio",
    "top_position": "/futures/data/topLongShortPositionRatio",
}
_T = TypeVar("_T", OpenInterest, TakerRatio, AccountRatio)


# --- request helpers ----------------------------------------------------------------------------


def klines_weight(limit: int | None) -> int:
    """Request weight of /fapi/v1/klines by ``limit`` (Binance's default limit is 500)."""
    n = 500 if limit is None else limit
    return 1 if n < 100 else 2 if n < 500 else 5 if n <= 1000 else 10


def _check_choice(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise InputError(
            f"Binance does not offer {what} {value!r}; use one of {', '.join(allowed)}"
        )


def _range_params(
    start_ms: int | None, end_ms: int | None, limit: int | None, max_limit: int
) -> dict[str, str | int | float]:
    if limit is not None and not 1 <= limit <= max_limit:
        raise InputError(f"limit must be between 1 and {max_limit}, got {limit}")
    if start_ms is not None and end_ms is not None and start_ms > end_ms:
        raise InputError(f"start {start_ms} is after end {end_ms}")
    params: dict[str, str | int | float] = {}
    for key, value in (("startTime", start_ms), ("endTime", end_ms), ("limit", limit)):
        if value is not None:
            params[key] = value
    return params


class BinanceRest:
    """Binance USDⓈ-M REST feed (:class:`~core.feeds.base.RestFeed`); ``symbol`` is 'BTC'.

    Pass ``http`` to share a client (it is then the caller's to close) or ``transport`` to
    test against ``httpx.MockTransport``.
    """

    venue: Venue = VENUE
    max_klines_per_request = MAX_KLINES
    max_oi_per_request = MAX_STATS

    def __init__(
        self,
        base_url: str = BINANCE_REST_URL,
        *,
        http: HttpClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        timeout_s: float = 10.0,
    ) -> None:
        self._clock = clock
        self._owns_http = http is None
        self._http = http or HttpClient(
            VENUE,
            base_url,
            limits.BINANCE,
            transport=transport,
            clock=clock,
            sleep=sleep,
            error_mapper=map_http_error,
            timeout_s=timeout_s,
        )

    def oi_history_start_ms(self) -> int:
        """The oldest time /futures/data/* serves now (see :class:`LimitedOiHistory`)."""
        return int(self._clock() * 1000) - STATS_HISTORY_MS

    def status(self) -> VenueStatus:
        return self._http.status()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def _call(
        self, path: str, params: dict[str, str | int | float], costs: dict[str, float]
    ) -> Any:
        try:
            return await self._http.get_json(path, params, costs=costs)
        except VenueError as exc:
            # A shared HttpClient may lack our error_mapper: the code still tells.
            if isinstance(exc, UnknownSymbol) or exc.code == INVALID_SYMBOL:
                raise UnknownSymbol(
                    VENUE, f"Binance does not list {params.get('symbol')} ({path})", exc.code
                ) from exc
            raise

    async def klines(
        self,
        symbol: str,
        interval: str,
        *,
        start_ms: OptInt = None,
        end_ms: OptInt = None,
        limit: OptInt = None,
    ) -> list[Kline]:
        base = base_of(symbol)
        _check_choice(interval, KLINE_INTERVALS, "kline interval")
        params = _range_params(start_ms, end_ms, limit, MAX_KLINES)
        params.update(symbol=venue_symbol(base, VENUE), interval=interval)
        payload = await self._call("/fapi/v1/klines", params, {"weight": klines_weight(limit)})
        return parse_klines(payload, base)

    async def mark_price(self, symbol: str) -> MarkPrice:
        base = base_of(symbol)
        params: dict[str, str | int | float] = {"symbol": venue_symbol(base, VENUE)}
        payload = await self._call("/fapi/v1/premiumIndex", params, {"weight": 1})
        return parse_premium_index(payload, base)

    async def open_interest(self, symbol: str) -> OpenInterest:
        """Current open interest, in USD at the current mark price (two weight-1 requests)."""
        base = base_of(symbol)
        params: dict[str, str | int | float] = {"symbol": venue_symbol(base, VENUE)}
        results: tuple[Any, MarkPrice | BaseException] = await asyncio.gather(
            self._call("/fapi/v1/openInterest", params, {"weight": 1}),
            self.mark_price(base),
            return_exceptions=True,  # wait for both, then raise the first error as it is
        )
        oi_result, mark_result = results
        if isinstance(oi_result, BaseException):
            raise oi_result
        if isinstance(mark_result, BaseException):
            raise mark_result
        return parse_open_interest(oi_result, base, mark_result.mark)

    async def open_interest_hist(
        self,
        symbol: str,
        period: str,
        *,
        start_ms: OptInt = None,
        end_ms: OptInt = None,
        limit: OptInt = None,
    ) -> list[OpenInterest]:
        span = (start_ms, end_ms, limit)
        return await self._stats(
            "/futures/data/openInterestHist", parse_open_interest_hist, symbol, period, span
        )

    async def taker_ratio(
        self,
        symbol: str,
        period: str,
        *,
        start_ms: OptInt = None,
        end_ms: OptInt = None,
        limit: OptInt = None,
    ) -> list[TakerRatio]:
        span = (start_ms, end_ms, limit)
        return await self._stats(
            "/futures/data/takerlongshortRatio", parse_taker_ratio, symbol, period, span
        )

    async def account_ratio(
        self,
        symbol: str,
        period: str,
        *,
        kind: AccountRatioKind = "global",
        start_ms: OptInt = None,
        end_ms: OptInt = None,
        limit: OptInt = None,
    ) -> list[AccountRatio]:
        """Long/short account ratio: all accounts ('global'), or top traders by account or
        by position."""
        if kind not in _RATIO_PATHS:
            raise InputError(f"kind must be one of {', '.join(_RATIO_PATHS)}, got {kind!r}")
        span = (start_ms, end_ms, limit)
        return await self._stats(_RATIO_PATHS[kind], parse_account_ratio, symbol, period, span)

    async def _stats(
        self,
        path: str,
        parse: Callable[[Any, str], list[_T]],
        symbol: str,
        period: str,
        span: tuple[int | None, int | None, int | None],
    ) -> list[_T]:
        """One /futures/data/* series (own 1000 requests / 5 min budget; last 30 days)."""
        start_ms, end_ms, limit = span
        base = base_of(symbol)
        _check_choice(period, STAT_PERIODS, "period")
        oldest = int(self._clock() * 1000) - STATS_HISTORY_MS
        for name, value in (("start", start_ms), ("end", end_ms)):
            if value is not None and value < oldest:
                days = (oldest + STATS_HISTORY_MS - value) / 86_400_000
                raise InputError(
                    f"Binance keeps {path.rsplit('/', 1)[-1]} for the last 30 days only; "
                    f"the {name} asked for is {days:.1f} days ago"
                )
        params = _range_params(start_ms, end_ms, limit, MAX_STATS)
        params.update(symbol=venue_symbol(base, VENUE), period=period)
        rows = parse(await self._call(path, params, {"futures_data": 1}), base)
        if rows:
            return rows
        # HTTP 200 [] is how these endpoints say "unknown symbol" (see the module docstring).
        if start_ms is not None or end_ms is not None:
            probe_params = {"symbol": params["symbol"], "period": period, "limit": 1}
            if parse(await self._call(path, probe_params, {"futures_data": 1}), base):
                return rows
        raise UnknownSymbol(VENUE, f"Binance has no {path} data for {params['symbol']}")
