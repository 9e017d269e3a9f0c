"""Binance USDⓈ-M futures REST: klines, open interest, mark price and positioning ratios.

The parsers are pure functions (no I/O): each validates the whole payload and returns core
types, or raises :class:`~core.feeds.errors.JunkResponse` naming the first bad field. Nothing
half-parsed ever comes back. :class:`BinanceRest` is the :class:`~core.feeds.base.RestFeed`
over the shared :class:`~core.feeds.http.HttpClient` (budgets, retries, bans).

Unknown symbols: most endpoints answer HTTP 400 ``{"code":-1121,"msg":"Invalid symbol."}``,
which becomes :class:`~core.feeds.errors.UnknownSymbol`. The ``/futures/data/*`` endpoints
answer HTTP 200 ``[]`` instead. The client reads ``[]`` as an unknown symbol when no time range
was asked for (a listed symbol always has recent rows). With a range it sends one probe
(``limit=1``, no range): an empty probe means an unknown symbol, otherwise the range is simply
empty and ``[]`` is returned.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import httpx

from core.errors import InputError
from core.feeds import limits
from core.feeds.errors import FeedError, JunkResponse, UnknownSymbol, VenueError
from core.feeds.http import Clock, HttpClient, Sleep, VenueStatus
from core.feeds.symbols import base_of, venue_symbol
from core.feeds.types import Kline, MarkPrice, OpenInterest, Venue

BINANCE_REST_URL = "https://fapi.binance.com"
VENUE: Venue = "binance"
INVALID_SYMBOL = -1121

KLINE_INTERVALS = (
    "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1M",
)  # fmt: skip
STAT_PERIODS = ("5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d")
MAX_KLINES = 1500
MAX_STATS = 500
STATS_HISTORY_MS = 30 * 86_400_000  # /futures/data/* keep the latest 30 days only

_MIN_MS, _MAX_MS = 946_684_800_000, 4_102_444_800_000  # 2000-01-01 .. 2100-01-01: epoch ms

OptInt = int | None
AccountRatioKind = Literal["global", "top_account", "top_position"]
_RATIO_PATHS: dict[str, str] = {
    "global": "/futures/data/globalLongShortAccountRatio",
    "top_account": "/futures/data/topLongShortAccountRatio",
    "top_position": "/futures/data/topLongShortPositionRatio",
}


@dataclass(frozen=True, slots=True)
class TakerRatio:
    """Taker buy/sell volume over one period; volumes are in base coin, as Binance sends them."""

    venue: Venue
    symbol: str
    ts_ms: int
    buy_sell_ratio: float
    buy_base: float
    sell_base: float


@dataclass(frozen=True, slots=True)
class AccountRatio:
    """Long/short split of accounts (or of top traders' positions), shares in [0, 1]."""

    venue: Venue
    symbol: str
    ts_ms: int
    long_share: float
    short_share: float
    long_short_ratio: float


# --- parsing helpers --------------------------------------------------------------------------


def _junk(message: str) -> JunkResponse:
    return JunkResponse(VENUE, message)


def error_from_body(body: Any, instrument: str | None = None) -> FeedError | None:
    """The error a Binance error body ``{"code": .., "msg": ..}`` stands for, else None."""
    if not (isinstance(body, dict) and "code" in body and "msg" in body):
        return None
    code, msg = body["code"], str(body["msg"])
    if code == INVALID_SYMBOL:
        what = f"unknown symbol {instrument}" if instrument else "unknown symbol"
        return UnknownSymbol(VENUE, f"{what} ({msg})", code)
    return VenueError(VENUE, f"error {code}: {msg}", code)


def map_http_error(status: int, body: Any) -> FeedError | None:
    """``HttpClient`` error_mapper: -1121 is an unknown symbol; the rest stays a VenueError."""
    error = error_from_body(body)
    return error if isinstance(error, UnknownSymbol) else None


def _num(value: Any, where: str) -> float:
    if isinstance(value, str):
        try:
            x = float(value)
        except ValueError:
            raise _junk(f"{where} is not a number: {value[:40]!r}") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        x = float(value)
    else:
        raise _junk(f"{where} should be a number string, got {type(value).__name__}")
    if not math.isfinite(x):
        raise _junk(f"{where} is not finite: {value!r}")
    return x


def _nonneg(value: Any, where: str) -> float:
    x = _num(value, where)
    if x < 0:
        raise _junk(f"{where} is negative: {x}")
    return x


def _ms(value: Any, where: str) -> int:
    """Epoch milliseconds, sent as an integer (live) or a digit string (old docs)."""
    if isinstance(value, int) and not isinstance(value, bool):
        ms = value
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        ms = int(value)
    else:
        raise _junk(f"{where} should be epoch milliseconds, got {value!r:.40}")
    if not _MIN_MS <= ms < _MAX_MS:
        raise _junk(f"{where} is not a plausible epoch-ms timestamp: {ms}")
    return ms


def _get(row: Mapping[str, Any], key: str, where: str) -> Any:
    try:
        return row[key]
    except KeyError:
        raise _junk(f"{where}: missing field '{key}'") from None


def _object(payload: Any, what: str, instrument: str) -> dict[str, Any]:
    body: dict[str, Any] = _checked(payload, what, instrument, dict)
    return body


def _rows(payload: Any, what: str, instrument: str, kind: type) -> list[Any]:
    rows: list[Any] = _checked(payload, what, instrument, list)
    for i, row in enumerate(rows):
        if not isinstance(row, kind):
            raise _junk(f"{what}[{i}]: expected {kind.__name__}, got {type(row).__name__}")
    return rows


def _checked(payload: Any, what: str, instrument: str, kind: type) -> Any:
    """``payload`` if it is a ``kind``; a Binance error body raises the error it stands for."""
    error = error_from_body(payload, instrument)
    if error is not None:
        raise error
    if not isinstance(payload, kind):
        raise _junk(f"{what}: expected a JSON {kind.__name__}, got {type(payload).__name__}")
    return payload


def _check_symbol(row: Mapping[str, Any], instrument: str, where: str) -> None:
    got = _get(row, "symbol", where)
    if got != instrument:
        raise _junk(f"{where}: answered for {got!r}, asked for {instrument}")


_T = TypeVar("_T", Kline, OpenInterest, TakerRatio, AccountRatio)


def _oldest_first(items: list[_T], what: str) -> list[_T]:
    """Sorted by time; a repeated timestamp means a broken answer, not two bars."""
    items.sort(key=lambda item: item.ts_ms)
    for prev, cur in itertools.pairwise(items):
        if prev.ts_ms == cur.ts_ms:
            raise _junk(f"{what}: timestamp {cur.ts_ms} appears twice")
    return items


# --- parsers ----------------------------------------------------------------------------------


def parse_klines(payload: Any, symbol: str) -> list[Kline]:
    """``/fapi/v1/klines`` rows -> bars, oldest first; volumes in USDT (quote) notional.

    Row: [openTime, open, high, low, close, volume, closeTime, quoteVolume, trades,
    takerBuyBase, takerBuyQuote, ignore]. Extra trailing fields are ignored.
    """
    rows = _rows(payload, "klines", venue_symbol(symbol, VENUE), list)
    out: list[Kline] = []
    for i, row in enumerate(rows):
        where = f"klines[{i}]"
        if len(row) < 11:
            raise _junk(f"{where}: expected 12 fields, got {len(row)}")
        ts = _ms(row[0], f"{where} openTime")
        names = ("open", "high", "low", "close")
        o, h, lo, c = (_num(row[k], f"{where} {n}") for k, n in enumerate(names, 1))
        if not 0 < lo <= min(o, c) <= max(o, c) <= h:
            raise _junk(f"{where}: inconsistent OHLC {o}/{h}/{lo}/{c}")
        close_ts = _ms(row[6], f"{where} closeTime")
        if close_ts <= ts:
            raise _junk(f"{where}: closeTime {close_ts} is not after openTime {ts}")
        _nonneg(row[5], f"{where} volume")
        _nonneg(row[9], f"{where} takerBuyBase")
        volume = _nonneg(row[7], f"{where} quoteVolume")
        taker = _nonneg(row[10], f"{where} takerBuyQuote")
        if taker > volume * (1 + 1e-9):
            raise _junk(f"{where}: takerBuyQuote {taker} exceeds quoteVolume {volume}")
        out.append(Kline(VENUE, symbol, ts, o, h, lo, c, volume, taker))
    return _oldest_first(out, "klines")


def parse_open_interest(payload: Any, symbol: str, mark_price: float) -> OpenInterest:
    """``/fapi/v1/openInterest`` (base coin) -> OpenInterest, USD via ``mark_price``."""
    instrument = venue_symbol(symbol, VENUE)
    body = _object(payload, "openInterest", instrument)
    _check_symbol(body, instrument, "openInterest")
    oi = _nonneg(_get(body, "openInterest", "openInterest"), "openInterest.openInterest")
    ts = _ms(_get(body, "time", "openInterest"), "openInterest.time")
    if not (math.isfinite(mark_price) and mark_price > 0):
        raise InputError(f"mark price must be a positive number, got {mark_price}")
    return OpenInterest(VENUE, symbol, ts, oi, oi * mark_price)


def parse_open_interest_hist(payload: Any, symbol: str) -> list[OpenInterest]:
    """``/futures/data/openInterestHist`` -> OpenInterest rows, oldest first.

    ``sumOpenInterest`` is base coin and ``sumOpenInterestValue`` is USDT; ``timestamp`` is
    an integer (live) or a digit string (old docs).
    """
    keys = ("sumOpenInterest", "sumOpenInterestValue")
    rows = _series(payload, "openInterestHist", symbol, keys)
    out = [OpenInterest(VENUE, symbol, ts, oi, usd) for ts, (oi, usd) in rows]
    return _oldest_first(out, "openInterestHist")


def parse_premium_index(payload: Any, symbol: str) -> MarkPrice:
    """``/fapi/v1/premiumIndex?symbol=..`` -> MarkPrice (mark, index, last funding rate)."""
    instrument = venue_symbol(symbol, VENUE)
    body = _object(payload, "premiumIndex", instrument)
    _check_symbol(body, instrument, "premiumIndex")
    mark = _num(_get(body, "markPrice", "premiumIndex"), "premiumIndex.markPrice")
    if mark <= 0:
        raise _junk(f"premiumIndex.markPrice is not positive: {mark}")

    def optional(key: str) -> float | None:
        value = body.get(key)
        return None if value in (None, "") else _num(value, f"premiumIndex.{key}")

    next_funding = body.get("nextFundingTime")
    return MarkPrice(
        VENUE,
        symbol,
        _ms(_get(body, "time", "premiumIndex"), "premiumIndex.time"),
        mark,
        index=optional("indexPrice"),
        funding_rate=optional("lastFundingRate"),
        # Binance sends 0 where no funding is scheduled (delivery contracts).
        next_funding_ms=_ms(next_funding, "premiumIndex.nextFundingTime")
        if next_funding not in (None, 0, "0", "")
        else None,
    )


def parse_taker_ratio(payload: Any, symbol: str) -> list[TakerRatio]:
    """``/futures/data/takerlongshortRatio`` -> TakerRatio rows (the rows carry no symbol)."""
    keys = ("buySellRatio", "buyVol", "sellVol")
    rows = _series(payload, "takerlongshortRatio", symbol, keys, has_symbol=False)
    out = [TakerRatio(VENUE, symbol, ts, *values) for ts, values in rows]
    return _oldest_first(out, "takerlongshortRatio")


def parse_account_ratio(payload: Any, symbol: str) -> list[AccountRatio]:
    """``/futures/data/{global,top}LongShort{Account,Position}Ratio`` -> AccountRatio rows."""
    keys = ("longAccount", "shortAccount", "longShortRatio")
    out: list[AccountRatio] = []
    for i, (ts, (long_, short, ratio)) in enumerate(
        _series(payload, "longShortRatio", symbol, keys)
    ):
        if long_ > 1 or short > 1:
            raise _junk(f"longShortRatio[{i}]: shares must be in [0, 1], got {long_}/{short}")
        out.append(AccountRatio(VENUE, symbol, ts, long_, short, ratio))
    return _oldest_first(out, "longShortRatio")


def _series(
    payload: Any, what: str, symbol: str, keys: tuple[str, ...], *, has_symbol: bool = True
) -> list[tuple[int, list[float]]]:
    """(timestamp, [non-negative value per key]) of each /futures/data/* row."""
    instrument = venue_symbol(symbol, VENUE)
    out: list[tuple[int, list[float]]] = []
    for i, row in enumerate(_rows(payload, what, instrument, dict)):
        where = f"{what}[{i}]"
        if has_symbol:
            _check_symbol(row, instrument, where)
        ts = _ms(_get(row, "timestamp", where), f"{where}.timestamp")
        out.append((ts, [_nonneg(_get(row, key, where), f"{where}.{key}") for key in keys]))
    return out


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
        )

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
