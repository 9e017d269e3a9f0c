"""Binance USDⓈ-M futures REST payloads -> core types: pure functions, no I/O.

Each parser validates the whole payload and returns core types, or raises
:class:`~core.feeds.errors.JunkResponse` naming the first bad field; nothing half-parsed ever
comes back. A Binance error body (``{"code": -1121, "msg": "Invalid symbol."}``) where data was
expected raises the error it stands for (:class:`~core.feeds.errors.UnknownSymbol` for -1121).
The client that fetches them is :class:`core.feeds.binance.BinanceRest`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import InputError
from core.feeds.errors import FeedError, UnknownSymbol, VenueError
from core.feeds.parse import Fields, funding_per_8h, oldest_first
from core.feeds.symbols import venue_symbol
from core.feeds.types import Kline, MarkPrice, OpenInterest, Venue

VENUE: Venue = "binance"
INVALID_SYMBOL = -1121
_F = Fields(VENUE)


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


def _no_error(payload: Any, instrument: str) -> Any:
    """``payload``, unless it is a Binance error body: then the error it stands for is raised."""
    error = error_from_body(payload, instrument)
    if error is not None:
        raise error
    return payload


def _object(payload: Any, what: str, instrument: str) -> dict[str, Any]:
    body: dict[str, Any] = _F.typed(_no_error(payload, instrument), dict, what)
    return body


def _rows(payload: Any, what: str, instrument: str, kind: type) -> list[Any]:
    return _F.rows(_no_error(payload, instrument), kind, what)


def _check_symbol(row: Mapping[str, Any], instrument: str, where: str) -> None:
    got = _F.get(row, "symbol", where)
    if got != instrument:
        raise _F.junk(f"{where}: answered for {got!r}, asked for {instrument}")


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
            raise _F.junk(f"{where}: expected 12 fields, got {len(row)}")
        ts = _F.epoch_ms(row[0], f"{where} openTime")
        names = ("open", "high", "low", "close")
        o, h, lo, c = (_F.number(row[k], f"{where} {n}") for k, n in enumerate(names, 1))
        if not 0 < lo <= min(o, c) <= max(o, c) <= h:
            raise _F.junk(f"{where}: inconsistent OHLC {o}/{h}/{lo}/{c}")
        close_ts = _F.epoch_ms(row[6], f"{where} closeTime")
        if close_ts <= ts:
            raise _F.junk(f"{where}: closeTime {close_ts} is not after openTime {ts}")
        _F.non_negative(row[5], f"{where} volume")
        _F.non_negative(row[9], f"{where} takerBuyBase")
        volume = _F.non_negative(row[7], f"{where} quoteVolume")
        taker = _F.non_negative(row[10], f"{where} takerBuyQuote")
        if taker > volume * (1 + 1e-9):
            raise _F.junk(f"{where}: takerBuyQuote {taker} exceeds quoteVolume {volume}")
        out.append(Kline(VENUE, symbol, ts, o, h, lo, c, volume, taker))
    return oldest_first(out, VENUE, "klines")


def parse_open_interest(payload: Any, symbol: str, mark_price: float) -> OpenInterest:
    """``/fapi/v1/openInterest`` (base coin) -> OpenInterest, USD via ``mark_price``."""
    instrument = venue_symbol(symbol, VENUE)
    body = _object(payload, "openInterest", instrument)
    _check_symbol(body, instrument, "openInterest")
    oi = _F.non_negative(_F.get(body, "openInterest", "openInterest"), "openInterest.openInterest")
    ts = _F.epoch_ms(_F.get(body, "time", "openInterest"), "openInterest.time")
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
    return oldest_first(out, VENUE, "openInterestHist")


def parse_premium_index(payload: Any, symbol: str) -> MarkPrice:
    """``/fapi/v1/premiumIndex?symbol=..`` -> MarkPrice (mark, index, last funding rate).

    ``lastFundingRate`` is per funding interval. premiumIndex does not say the interval, which
    is 8 h on BTCUSDT and most symbols, so the rate is taken as per 8 h; a payload that carries
    ``fundingIntervalHours`` (as ``/fapi/v1/fundingInfo`` names it) is converted to per 8 h.
    """
    instrument = venue_symbol(symbol, VENUE)
    body = _object(payload, "premiumIndex", instrument)
    _check_symbol(body, instrument, "premiumIndex")
    mark = _F.number(_F.get(body, "markPrice", "premiumIndex"), "premiumIndex.markPrice")
    if mark <= 0:
        raise _F.junk(f"premiumIndex.markPrice is not positive: {mark}")

    def optional(key: str) -> float | None:
        value = body.get(key)
        return None if value in (None, "") else _F.number(value, f"premiumIndex.{key}")

    funding = optional("lastFundingRate")
    hours = optional("fundingIntervalHours")
    if hours is not None:
        if hours <= 0:
            raise _F.junk(f"premiumIndex.fundingIntervalHours is not positive: {hours}")
        funding = None if funding is None else funding_per_8h(funding, hours)
    next_funding = body.get("nextFundingTime")
    return MarkPrice(
        VENUE,
        symbol,
        _F.epoch_ms(_F.get(body, "time", "premiumIndex"), "premiumIndex.time"),
        mark,
        index=optional("indexPrice"),
        funding_rate=funding,
        # Binance sends 0 where no funding is scheduled (delivery contracts).
        next_funding_ms=_F.epoch_ms(next_funding, "premiumIndex.nextFundingTime")
        if next_funding not in (None, 0, "0", "")
        else None,
    )


def parse_taker_ratio(payload: Any, symbol: str) -> list[TakerRatio]:
    """``/futures/data/takerlongshortRatio`` -> TakerRatio rows (the rows carry no symbol)."""
    keys = ("buySellRatio", "buyVol", "sellVol")
    rows = _series(payload, "takerlongshortRatio", symbol, keys, has_symbol=False)
    out = [TakerRatio(VENUE, symbol, ts, *values) for ts, values in rows]
    return oldest_first(out, VENUE, "takerlongshortRatio")


def parse_account_ratio(payload: Any, symbol: str) -> list[AccountRatio]:
    """``/futures/data/{global,top}LongShort{Account,Position}Ratio`` -> AccountRatio rows."""
    keys = ("longAccount", "shortAccount", "longShortRatio")
    out: list[AccountRatio] = []
    for i, (ts, (long_, short, ratio)) in enumerate(
        _series(payload, "longShortRatio", symbol, keys)
    ):
        if long_ > 1 or short > 1:
            raise _F.junk(f"longShortRatio[{i}]: shares must be in [0, 1], got {long_}/{short}")
        out.append(AccountRatio(VENUE, symbol, ts, long_, short, ratio))
    return oldest_first(out, VENUE, "longShortRatio")


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
        ts = _F.epoch_ms(_F.get(row, "timestamp", where), f"{where}.timestamp")
        out.append(
            (ts, [_F.non_negative(_F.get(row, key, where), f"{where}.{key}") for key in keys])
        )
    return out
