"""OKX v5 REST: candles, open interest, contract sizes, and (best effort) liquidations.

Which endpoint serves what (``symbol`` is a base such as 'BTC'; the instrument is the
USDT-margined perpetual 'BTC-USDT-SWAP')::

    /api/v5/market/candles            the latest 1,440 bars of a bar size, <= 300 a request
    /api/v5/market/history-candles    everything older (years), <= 100 a request
    /api/v5/rubik/stat/contracts/open-interest-history
                                      OI of one instrument: [ts, oi (contracts), oiCcy (coin),
                                      oiUsd (USD)], <= 100 a request
    /api/v5/public/open-interest      current OI: oi (contracts), oiCcy (coin), oiUsd (USD)
    /api/v5/public/instruments        ctVal: base coin per contract (cached per instrument)
    /api/v5/public/liquidation-orders undocumented since 2023: best effort only

Units: OKX gives open interest in contracts, in coin and in USD, so no conversion is needed:
``oi_base`` is ``oiCcy`` and ``oi_usd`` is ``oiUsd``. ``.../open-interest-volume`` is not
used: it sums every contract of the coin (coin-margined swaps and dated futures too), so it is
not the OI of the USDT perpetual. Candle volume in USD is ``volCcyQuote`` (USDT); OKX candles
have no taker-buy split, so ``taker_buy_usd`` is None.

Paging: rows come newest first; ``after=t`` asks for rows older than t, ``before=t`` for rows
newer than t. With ``before`` alone OKX returns the *newest* rows rather than those right after
``before``, so paging forward with it silently skips data. Every request here therefore names
a closed range ``before=lo-1, after=hi+1`` no longer than one page, newest range first: the
answer is the whole range whichever end OKX fills from. The caller gets bars oldest first.

Errors ride on HTTP 200 as ``{"code": "51001", "msg": ..}``: code != "0" is an error, 51001
is an unknown instrument (:class:`UnknownSymbol`), 50011 a rate limit. Bodies that are not what
OKX documents raise :class:`JunkResponse`; nothing half-parsed comes back.
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
from core.feeds.okx_ws import parse_liquidation_data
from core.feeds.parse import chunks, epoch_ms, non_negative, oldest_first, positive, span
from core.feeds.symbols import base_of, venue_symbol
from core.feeds.types import Kline, LiqEvent, OpenInterest, Venue

OKX_BASE_URL = "https://www.okx.com"
VENUE: Venue = "okx"
UNKNOWN_INSTRUMENT = "51001"
RECENT_BARS = 1440  # /market/candles keeps this many bars of each size
MAX_CANDLES, MAX_HISTORY_CANDLES, MAX_OI_ROWS = 300, 100, 100
OI_HISTORY_PATH = "/api/v5/rubik/stat/contracts/open-interest-history"
INSTRUMENTS_PATH = "/api/v5/public/instruments"

# Canonical interval -> (OKX bar, ms). Daily and longer bars use the UTC-aligned variants
# ("1Dutc"): plain "1D" opens at 00:00 Hong Kong time.
BARS: dict[str, tuple[str, int]] = {
    "1m": ("1m", 60_000), "3m": ("3m", 180_000), "5m": ("5m", 300_000),
    "15m": ("15m", 900_000), "30m": ("30m", 1_800_000), "1h": ("1H", 3_600_000),
    "2h": ("2H", 7_200_000), "4h": ("4H", 14_400_000), "6h": ("6Hutc", 21_600_000),
    "12h": ("12Hutc", 43_200_000), "1d": ("1Dutc", 86_400_000),
}  # fmt: skip

_RATE_LIMIT_CODES = frozenset({"50011", "50061"})
_BUSY_CODES = frozenset({"50001", "50013", "50026"})


def _junk(message: str) -> JunkResponse:
    return JunkResponse(VENUE, message)


def error_from_code(code: str, msg: str, what: str) -> FeedError:
    """The FeedError an OKX error code stands for."""
    text = f"{what}: error {code}: {msg or 'no message'}"
    if code == UNKNOWN_INSTRUMENT:
        return UnknownSymbol(VENUE, text, code)
    if code in _RATE_LIMIT_CODES:
        return RateLimited(VENUE, text, 2.0)  # OKX windows are 2 s long
    if code in _BUSY_CODES:
        return FeedUnavailable(VENUE, text)
    return VenueError(VENUE, text, code)


def map_http_error(status: int, body: Any) -> FeedError | None:
    """``HttpClient`` error_mapper for non-2xx answers that carry an OKX code."""
    if isinstance(body, dict) and body.get("code") not in (None, "0", 0):
        return error_from_code(str(body["code"]), str(body.get("msg", "")), f"HTTP {status}")
    return None


def unwrap(body: Any, what: str) -> list[Any]:
    """``data`` of an OKX envelope ``{"code":"0","msg":"","data":[..]}``; raises on errors."""
    if not isinstance(body, dict):
        raise _junk(f"{what}: expected a JSON object, got {type(body).__name__}")
    code = body.get("code")
    if not isinstance(code, str | int) or isinstance(code, bool):
        raise _junk(f"{what}: envelope has no 'code'")
    if str(code) != "0":
        raise error_from_code(str(code), str(body.get("msg", "")), what)
    data = body.get("data")
    if not isinstance(data, list):
        raise _junk(f"{what}: 'data' should be a list, got {type(data).__name__}")
    return data


def parse_candles(data: list[Any], symbol: str, *, closed_only: bool = False) -> list[Kline]:
    """Candle rows ``[ts,o,h,l,c,vol,volCcy,volCcyQuote,confirm]`` -> Klines, oldest first.

    ``volume_usd`` is ``volCcyQuote`` (USDT). Old answers send "0" there even for traded bars;
    such a bar gets NaN volume rather than a wrong zero. ``confirm`` "0" marks a bar still
    forming; ``closed_only`` drops it.
    """
    out: list[Kline] = []
    for i, row in enumerate(data):
        try:
            if not isinstance(row, list) or len(row) < 8:
                raise ValueError(f"expected a list of 9 fields, got {row!r:.60}")
            o, h, lo, c = positive(row[1]), positive(row[2]), positive(row[3]), positive(row[4])
            vol, quote = non_negative(row[5]), non_negative(row[7])
            ts = epoch_ms(row[0])
        except (TypeError, ValueError) as exc:
            raise _junk(f"candles[{i}]: {exc}") from None
        if not lo <= min(o, c) <= max(o, c) <= h:
            raise _junk(f"candles[{i}]: inconsistent OHLC {o}/{h}/{lo}/{c}")
        if closed_only and len(row) > 8 and row[8] == "0":
            continue
        volume_usd = quote if quote > 0 or vol == 0 else float("nan")
        out.append(Kline(VENUE, symbol, ts, o, h, lo, c, volume_usd, None))
    return oldest_first(out, VENUE, "candles")


def parse_open_interest_history(data: list[Any], symbol: str) -> list[OpenInterest]:
    """rubik open-interest-history rows ``[ts, oi, oiCcy, oiUsd]`` -> OpenInterest, oldest first."""
    out: list[OpenInterest] = []
    for i, row in enumerate(data):
        try:
            if not isinstance(row, list) or len(row) < 4:
                raise ValueError(f"expected [ts, oi, oiCcy, oiUsd], got {row!r:.60}")
            out.append(
                OpenInterest(
                    VENUE, symbol, epoch_ms(row[0]), non_negative(row[2]), non_negative(row[3])
                )
            )
        except (TypeError, ValueError) as exc:
            raise _junk(f"open-interest-history[{i}]: {exc}") from None
    return oldest_first(out, VENUE, "open-interest-history")


def parse_open_interest(data: list[Any], symbol: str) -> OpenInterest:
    """/public/open-interest ``data`` (one item per instrument) -> OpenInterest."""
    inst = venue_symbol(symbol, VENUE)
    for item in data:
        if isinstance(item, dict) and item.get("instId") == inst:
            try:
                ts, base, usd = (
                    epoch_ms(item["ts"]),
                    non_negative(item["oiCcy"]),
                    non_negative(item["oiUsd"]),
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise _junk(f"open-interest {inst}: bad or missing field {exc}") from None
            return OpenInterest(VENUE, symbol, ts, base, usd)
    raise UnknownSymbol(VENUE, f"open-interest has no row for {inst}")


def parse_contract_values(data: list[Any]) -> dict[str, float]:
    """instId -> base coin per contract, for the linear USDT-margined swaps in ``data``.

    Other instruments (spot, inverse, coin-settled) are left out: their ``ctVal`` is not in
    base coin, and a liquidation size multiplied by it would be wrong.
    """
    out: dict[str, float] = {}
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise _junk(f"instruments[{i}]: expected an object, got {type(item).__name__}")
        inst = item.get("instId")
        if not (
            isinstance(inst, str)
            and inst.endswith("-USDT-SWAP")
            and item.get("ctType") == "linear"
            and item.get("settleCcy") == "USDT"
            and item.get("ctValCcy") == inst.split("-", 1)[0]
        ):
            continue
        try:
            mult = positive(item["ctMult"]) if item.get("ctMult") not in (None, "") else 1.0
            out[inst] = positive(item["ctVal"]) * mult
        except (KeyError, TypeError, ValueError) as exc:
            raise _junk(f"instruments[{i}] {inst}: bad contract value ({exc})") from None
    return out


def _bar(interval: str) -> tuple[str, int]:
    if interval not in BARS:
        raise InputError(f"OKX does not offer interval {interval!r}; use one of {', '.join(BARS)}")
    return BARS[interval]


class OkxRest:
    """OKX REST feed (:class:`~core.feeds.base.RestFeed`) for USDT-margined perpetuals.

    Pass ``transport`` to test against ``httpx.MockTransport``. The best-effort liquidation
    endpoint has its own HttpClient with no retries, so its failures (a 403 from a firewall
    included) never open the circuit of, or spend retries on, the documented endpoints.
    """

    venue: Venue = VENUE
    max_klines_per_request = MAX_CANDLES
    max_oi_per_request = MAX_OI_ROWS

    def __init__(
        self,
        base_url: str = OKX_BASE_URL,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        timeout_s: float = 10.0,
    ) -> None:
        self._clock = clock
        common: dict[str, Any] = {
            "transport": transport,
            "clock": clock,
            "sleep": sleep,
            "timeout_s": timeout_s,
            "error_mapper": map_http_error,
        }
        # OKX documents no IP-ban status; only a geo-block (451) opens its circuit.
        self._http = HttpClient(VENUE, base_url, limits.OKX, ban_statuses=(451,), **common)
        self._liq_http = HttpClient(
            VENUE, base_url, limits.OKX, max_retries=0, ban_statuses=(451,), **common
        )
        self._ct_vals: dict[str, float] = {}
        self.liquidations_note: str | None = None  # why the last best-effort call gave []

    def status(self) -> VenueStatus:
        return self._http.status()

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._liq_http.aclose()

    async def _get(self, path: str, params: dict[str, str | int | float], window: str) -> list[Any]:
        return unwrap(await self._http.get_json(path, params, costs={window: 1}), path)

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
        """Bars oldest first; the latest bar may still be forming unless ``closed_only``."""
        base = base_of(symbol)
        bar, step = _bar(interval)
        now = int(self._clock() * 1000)
        first, last = span(now, step, start_ms, end_ms, limit, MAX_CANDLES, closed_only=closed_only)
        # Leave a margin below the 1,440-bar edge for clock skew between us and OKX.
        edge = now // step * step - (RECENT_BARS - 10) * step
        plan = [
            ("/api/v5/market/candles", "market", MAX_CANDLES, max(first, edge), last),
            ("/api/v5/market/history-candles", "history", MAX_HISTORY_CANDLES, first,
             min(last, edge - step)),
        ]  # fmt: skip
        params: dict[str, str | int | float] = {"instId": venue_symbol(base, VENUE), "bar": bar}
        rows: list[Any] = []
        for path, window, size, lo, hi in plan:
            for a, b in chunks(lo, hi, step, size):
                params.update(before=a - 1, after=b + 1, limit=(b - a) // step + 1)
                page = await self._get(path, params, window)
                if not page and path.endswith("history-candles"):
                    break  # older than the listing: older pages are empty too
                rows.extend(page)
        bars = parse_candles(rows, base, closed_only=closed_only)
        return [k for k in bars if first <= k.ts_ms <= last]

    async def open_interest_hist(
        self,
        symbol: str,
        period: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int | None = None,
    ) -> list[OpenInterest]:
        """OI per ``period`` of the USDT perpetual, oldest first (oiUsd: USD already)."""
        base = base_of(symbol)
        bar, step = _bar(period)
        first, last = span(int(self._clock() * 1000), step, start_ms, end_ms, limit, MAX_OI_ROWS)
        params: dict[str, str | int | float] = {"instId": venue_symbol(base, VENUE), "period": bar}
        rows: list[Any] = []
        for a, b in chunks(first, last, step, MAX_OI_ROWS):
            params.update(begin=a - 1, end=b + 1, limit=(b - a) // step + 1)
            page = await self._get(OI_HISTORY_PATH, params, "rubik")
            if not page:
                break
            rows.extend(page)
        return [x for x in parse_open_interest_history(rows, base) if first <= x.ts_ms <= last]

    async def open_interest(self, symbol: str) -> OpenInterest:
        base = base_of(symbol)
        params: dict[str, str | int | float] = {"instType": "SWAP"}
        params["instId"] = venue_symbol(base, VENUE)
        data = await self._get("/api/v5/public/open-interest", params, "public")
        return parse_open_interest(data, base)

    async def contract_value(self, symbol: str) -> float:
        """Base coin per contract of the symbol's USDT perpetual (0.01 for BTC), cached."""
        inst = venue_symbol(base_of(symbol), VENUE)
        if inst not in self._ct_vals:
            params: dict[str, str | int | float] = {"instType": "SWAP", "instId": inst}
            found = parse_contract_values(await self._get(INSTRUMENTS_PATH, params, "public"))
            if inst not in found:
                raise UnknownSymbol(VENUE, f"{inst} is not a listed USDT-margined swap")
            self._ct_vals.update(found)
        return self._ct_vals[inst]

    async def contract_values(self) -> dict[str, float]:
        """ctVal of every listed USDT-margined swap (one request), merged into the cache."""
        params: dict[str, str | int | float] = {"instType": "SWAP"}
        found = parse_contract_values(await self._get(INSTRUMENTS_PATH, params, "public"))
        self._ct_vals.update(found)
        return dict(self._ct_vals)

    async def liquidations(self, symbol: str, *, limit: int = 100) -> list[LiqEvent]:
        """Recent filled liquidations from the undocumented REST endpoint, oldest first.

        Best effort: any failure gives ``[]`` and sets :attr:`liquidations_note`; it never
        raises, so a poller keeps going. The websocket stream is the real source.
        """
        try:
            base = base_of(symbol)
            inst = venue_symbol(base, VENUE)
            ct = await self.contract_value(base)
            params: dict[str, str | int | float] = {
                "instType": "SWAP",
                "uly": f"{base}-USDT",
                "state": "filled",
                "limit": min(max(limit, 1), 100),
            }
            body = await self._liq_http.get_json(
                "/api/v5/public/liquidation-orders", params, costs={"public": 1}
            )
            data = unwrap(body, "liquidation-orders")
            events, _ = parse_liquidation_data(data, {inst: ct}, {inst})
        except (FeedError, InputError) as exc:
            self.liquidations_note = f"REST liquidations unavailable (best effort): {exc}"
            return []
        self.liquidations_note = None
        events.sort(key=lambda e: e.ts_ms)
        return events
