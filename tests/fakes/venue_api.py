"""A real local HTTP server that emulates the market-data REST APIs of Binance USD-M, OKX v5 and
Bybit v5 over seeded synthetic bars (DESIGN §9: real clients over real sockets).

One server answers all three venues (their paths do not overlap), so every client can be pointed
at ``api.url``. It listens on 127.0.0.1 port 0 and serves from threads, so it works under sync and
async tests alike, and ``stop()`` joins every thread.

Usage::

    clock = SimClock(NOW_S)
    with FakeVenueApi(["BTC", "ETH"], clock=clock.time) as api:  # ``async with`` works too
        feed = BinanceRest(api.url, clock=clock.time, sleep=clock.sleep)
        bars = await backfill(feed, "BTC", "5m", start_ms, end_ms)
        api.bars("BTC", "5m")          # the synthetic series the venues serve
        api.requests_to("/fapi/v1/klines")[0].params["startTime"]
        api.usage()["binance"]["windows"]["weight"]["peak"]
        assert api.violations() == 0

Data
----
Each (symbol, interval) is one ``core.synthetic.synthetic_bars`` series from ``start_ms`` to
``end_ms`` (default: 45 days before the clock's day to 2 days after), seeded per symbol and
interval. The APIs serve the bars opened up to the clock's "now" (the bar containing now is the
still-forming one); open interest stamped ``t`` is the OI at ``t``, i.e. the ``oi_usd`` of the bar
that closes at ``t``. Numbers go out as ``repr`` strings, so a client reads back exactly the
series' floats. Intervals: those that divide a day (1m ... 1d).

Venue semantics emulated (market-apis.md)
-----------------------------------------
Binance ``/fapi/v1/klines``: symbol, interval, startTime, endTime, limit (default 500, 1..1500);
ascending 12-field rows, numbers as strings, taker-buy quote = ``taker_buy_usd``. With startTime
the oldest ``limit`` bars from it, else the newest ``limit`` up to endTime (or now).
``/futures/data/openInterestHist``: symbol, period, startTime, endTime, limit (default 30,
1..500); ascending, integer ``timestamp`` at period end, ``sumOpenInterestValue`` in USD; only
the last 30 days before now; HTTP 200 ``[]`` for an unknown symbol. ``/fapi/v1/premiumIndex``,
``/fapi/v1/openInterest``. Unknown symbol: HTTP 400 ``{"code":-1121,"msg":"Invalid symbol."}``.
Every answer carries ``X-MBX-USED-WEIGHT-1M``: the weight spent in the current calendar minute
(klines by limit: [1,100) 1, [100,500) 2, [500,1000] 5, above 10). Over 2,400 a minute the
answer is 429 -1003 with Retry-After; a client that goes on in the same minute gets 418 and a
2-minute ban. More than 1,000 ``/futures/data`` requests in 5 minutes also answer 429.

OKX ``/api/v5/market/candles`` (latest 1,440 bars only, limit <= 300, default 100) and
``/api/v5/market/history-candles`` (all bars, limit <= 100): ``after`` = older than, ``before`` =
newer than, the newest ``limit`` rows of the range, newest first, ``confirm`` "0" on the forming
bar. ``/api/v5/rubik/stat/contracts/open-interest-history`` (instId, period, begin, end, limit
<= 100): newest first ``[ts, oi (contracts), oiCcy, oiUsd]``. ``/api/v5/public/instruments``
(ctVal) and ``/api/v5/public/open-interest``. Envelope ``{"code":"0","msg":"","data":[..]}``;
unknown instrument: HTTP 200 code 51001. Over the limit (40/2 s candles, 20/2 s
history-candles, 10/2 s rubik, 20/2 s public): HTTP 429 code 50011.

Bybit ``/v5/market/kline`` (category=linear, symbol, interval, start, end, limit 1..1000,
default 200): the newest ``limit`` bars of the range, newest first, ``turnover`` in USDT.
``/v5/market/open-interest`` (intervalTime, startTime, endTime, limit 1..200, default 50,
cursor): newest first, OI in coin, ``nextPageCursor`` pages to older rows. ``/v5/market/tickers``.
Envelope ``{"retCode":0,"retMsg":"OK","result":{..},"retExtInfo":{},"time":..}``; unknown
symbol: retCode 10001 "params error: symbol invalid". Over 600 requests in 5 s: HTTP 403.

API
---
``FakeVenueApi(symbols=("BTC", "ETH"), *, clock=time.time, seed=7, history_days=45,
horizon_days=2, start_ms=None, end_ms=None, enforce_limits=True)``
    ``clock`` (seconds, like the clients' ``Clock``) is the venues' "now": what they serve up
    to and when each request counts against the limits. Other symbols answer as unknown.
``start()`` / ``stop()``, ``with`` / ``async with``; ``url`` (no trailing slash).
``bars(symbol, interval) -> Bars``: the series served; ``oi_at(symbol, step_ms, t)`` the
    (coin, USD) OI sample at ``t``; ``start_ms`` / ``end_ms``; ``listings`` (ctVal per symbol).
``requests`` / ``requests_to(path)`` / ``count(path=None, venue=None)`` / ``clear_log()``:
    the log of :class:`ApiRequest`.
``usage() -> {venue: {"requests", "refused", "windows": {name: {"limit", "seconds",
    "requests", "total", "peak", "violations"[, "peak_sliding"]}}}}``; ``violations(venue=None)``.
``errors``: exceptions raised inside the server (a test should assert it is empty).
:class:`SimClock`: ``time()``, ``await sleep(s)`` (moves time, counts ``slept_s``), ``advance(s)``.

Accounting
----------
Every request is logged as :class:`ApiRequest` (venue, path, params, server time, status, the
cost per limit window). Each documented limit is metered: ``peak`` is the most units seen in
any window (sliding; Binance's weight per calendar minute, as Binance counts it, with the
sliding peak beside it), and ``violations`` counts the requests that found their window over
the limit. ``enforce_limits=False`` only counts and never refuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import sys
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from core.bars import Bars
from core.synthetic import synthetic_bars

DAY_MS = 86_400_000
BINANCE_OI_HISTORY_MS = 30 * DAY_MS
OKX_RECENT_BARS = 1440
Params = dict[str, str]
Answer = tuple[int, Any, dict[str, str]]  # status, JSON body (or str), extra headers


# --- simulated time -------------------------------------------------------------------------


class SimClock:
    """Simulated seconds for a client and the server: ``sleep`` moves time on instead of waiting.

    ``time`` is a :data:`core.feeds.http.Clock` and ``sleep`` a ``Sleep``; pass both to a REST
    client and ``time`` to :class:`FakeVenueApi`, and a budget wait costs no real time.
    """

    def __init__(self, start_s: float) -> None:
        self._now = float(start_s)
        self.slept_s = 0.0  # simulated seconds spent in sleep()
        self.sleeps = 0

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += max(seconds, 0.0)

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.sleeps += 1
            self.slept_s += seconds
            self._now += seconds
        await asyncio.sleep(0)  # still a suspension point, as a real sleep is


# --- limits and accounting ----------------------------------------------------------------


@dataclass(frozen=True)
class Limit:
    """A documented limit: at most ``limit`` units per ``seconds``."""

    limit: float
    seconds: float
    per_calendar_window: bool = False  # Binance counts weight per calendar minute


LIMITS: dict[str, dict[str, Limit]] = {
    "binance": {
        "weight": Limit(2400, 60.0, per_calendar_window=True),
        "futures_data": Limit(1000, 300.0),
    },
    "okx": {
        "candles": Limit(40, 2.0),
        "history-candles": Limit(20, 2.0),
        "rubik-oi": Limit(10, 2.0),
        "public": Limit(20, 2.0),
    },
    "bybit": {"ip": Limit(600, 5.0)},
}


@dataclass
class _Meter:
    """Units spent against one limit: sliding window, calendar window, peaks, violations."""

    spec: Limit
    total: float = 0.0
    requests: int = 0
    peak: float = 0.0
    peak_sliding: float = 0.0
    violations: int = 0
    _window: deque[tuple[float, float]] = field(default_factory=deque)
    _window_sum: float = 0.0
    _buckets: dict[int, float] = field(default_factory=dict)

    def charge(self, at: float, cost: float) -> float:
        """Spend ``cost`` at ``at``; the usage the venue enforces, this request included."""
        self.total += cost
        self.requests += 1
        q = self._window
        while q and q[0][0] <= at - self.spec.seconds:
            self._window_sum -= q.popleft()[1]
        q.append((at, cost))
        self._window_sum += cost
        sliding = self._window_sum
        self.peak_sliding = max(self.peak_sliding, sliding)
        if self.spec.per_calendar_window:
            bucket = int(at // self.spec.seconds)
            used = self._buckets.get(bucket, 0.0) + cost
            self._buckets[bucket] = used
        else:
            used = sliding
        self.peak = max(self.peak, used)
        if used > self.spec.limit:
            self.violations += 1
        return used

    def used_now(self, at: float) -> float:
        if self.spec.per_calendar_window:
            return self._buckets.get(int(at // self.spec.seconds), 0.0)
        return sum(c for t, c in self._window if t > at - self.spec.seconds)

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "limit": self.spec.limit,
            "seconds": self.spec.seconds,
            "requests": self.requests,
            "total": self.total,
            "peak": self.peak,
            "violations": self.violations,
        }
        if self.spec.per_calendar_window:
            out["peak_sliding"] = self.peak_sliding
        return out


@dataclass(frozen=True)
class ApiRequest:
    """One request as the server saw it."""

    venue: str
    path: str
    params: Params  # the last value of each query parameter
    at: float  # the server's clock (seconds) on arrival
    status: int
    costs: Mapping[str, float]

    @property
    def at_ms(self) -> int:
        return int(self.at * 1000)


# --- listings and the synthetic market ----------------------------------------------------


@dataclass(frozen=True)
class Listing:
    """One listed perpetual: its synthetic start values and OKX contract size."""

    base: str
    start_price: float
    start_oi_usd: float
    ct_val: float  # OKX: base coin per contract


_KNOWN: dict[str, tuple[float, float, float]] = {
    "BTC": (95_000.0, 8e9, 0.01),
    "ETH": (3_500.0, 4e9, 0.1),
    "SOL": (180.0, 1.5e9, 1.0),
}

_STEPS: dict[str, int] = {
    "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000,
    "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000,
    "8h": 28_800_000, "12h": 43_200_000, "1d": DAY_MS,
}  # fmt: skip
_OKX_BARS: dict[str, int] = {
    "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000,
    "1H": 3_600_000, "2H": 7_200_000, "4H": 14_400_000, "6Hutc": 21_600_000,
    "12Hutc": 43_200_000, "1Dutc": DAY_MS,
}  # fmt: skip
_BYBIT_KLINE: dict[str, int] = {
    "1": 60_000, "3": 180_000, "5": 300_000, "15": 900_000, "30": 1_800_000, "60": 3_600_000,
    "120": 7_200_000, "240": 14_400_000, "360": 21_600_000, "720": 43_200_000, "D": DAY_MS,
}  # fmt: skip
_BYBIT_OI: dict[str, int] = {
    "5min": 300_000, "15min": 900_000, "30min": 1_800_000, "1h": 3_600_000,
    "4h": 14_400_000, "1d": DAY_MS,
}  # fmt: skip
_BINANCE_PERIODS = ("5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d")

_BINANCE_429 = (
    "Too many requests; current limit is 2400 requests per minute. Please use the websocket "
    "for live updates to avoid polling the API."
)
_OKX_RATE = (
    "Rate limit reached. Please refer to API documentation and throttle requests accordingly."
)


class _Fail(Exception):
    """Raised by a handler's checks: the venue's error answer."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer[0])
        self.answer = answer


def _s(x: float) -> str:
    """A number as the venues send it: a string (repr, so the client reads back the float)."""
    return repr(float(x))


def _opt_int(params: Params, name: str) -> int | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    return int(raw)


def _bounds(step: int, lo: int, hi: int, avail_lo: int, avail_hi: int) -> tuple[int, int]:
    """Bar times in [lo, hi] (inclusive) that exist, as aligned [first, last]."""
    first = max(avail_lo, -(-lo // step) * step)
    last = min(avail_hi, hi // step * step)
    return first, last


def _pick(first: int, last: int, step: int, limit: int, *, oldest: bool) -> list[int]:
    """At most ``limit`` aligned times of [first, last], the oldest or the newest ones."""
    if last < first:
        return []
    n = (last - first) // step + 1
    if n > limit:
        if oldest:
            last = first + (limit - 1) * step
        else:
            first = last - (limit - 1) * step
    return list(range(first, last + step, step))


class FakeVenueApi:
    """The three venues' market-data APIs on one local server (see the module docstring)."""

    def __init__(
        self,
        symbols: Iterable[str] = ("BTC", "ETH"),
        *,
        clock: Callable[[], float] = time.time,
        seed: int = 7,
        history_days: int = 45,
        horizon_days: int = 2,
        start_ms: int | None = None,
        end_ms: int | None = None,
        enforce_limits: bool = True,
    ) -> None:
        self.clock = clock
        self.seed = seed
        self.enforce_limits = enforce_limits
        today = int(clock() * 1000) // DAY_MS * DAY_MS
        self.start_ms = today - history_days * DAY_MS if start_ms is None else start_ms
        self.end_ms = today + horizon_days * DAY_MS if end_ms is None else end_ms
        if self.start_ms % DAY_MS or self.end_ms <= self.start_ms:
            raise ValueError("start_ms must be a UTC midnight before end_ms")
        self.listings: dict[str, Listing] = {}
        for base in symbols:
            price, oi, ct = _KNOWN.get(base, (10.0, 1e8, 1.0))
            self.listings[base] = Listing(base, price, oi, ct)
        self.errors: list[BaseException] = []
        self._series: dict[tuple[str, int], Bars] = {}
        self._log: list[ApiRequest] = []
        self._meters: dict[str, dict[str, _Meter]] = {
            venue: {name: _Meter(spec) for name, spec in windows.items()}
            for venue, windows in LIMITS.items()
        }
        self._refused: dict[str, int] = dict.fromkeys(LIMITS, 0)
        self._binance_429_minute: int | None = None
        self._binance_banned_until = 0.0
        self._lock = threading.RLock()
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._routes: dict[str, tuple[str, Callable[[Params, int], Answer]]] = {
            "/fapi/v1/klines": ("binance", self._binance_klines),
            "/futures/data/openInterestHist": ("binance", self._binance_oi_hist),
            "/fapi/v1/premiumIndex": ("binance", self._binance_premium_index),
            "/fapi/v1/openInterest": ("binance", self._binance_open_interest),
            "/api/v5/market/candles": ("okx", self._okx_candles),
            "/api/v5/market/history-candles": ("okx", self._okx_history_candles),
            "/api/v5/rubik/stat/contracts/open-interest-history": ("okx", self._okx_oi_hist),
            "/api/v5/public/instruments": ("okx", self._okx_instruments),
            "/api/v5/public/open-interest": ("okx", self._okx_open_interest),
            "/v5/market/kline": ("bybit", self._bybit_kline),
            "/v5/market/open-interest": ("bybit", self._bybit_oi),
            "/v5/market/tickers": ("bybit", self._bybit_tickers),
        }

    # lifecycle -----------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is None:
            self._server = _Server(self)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.01},
                name="fake-venue-api",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close keep-alive connections and join every thread (idempotent)."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        thread.join()
        with self._lock:
            conns = list(self._connections)
        for conn in conns:  # wake handlers blocked reading an idle keep-alive connection
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()  # joins the handler threads
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return self.start()

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake venue API is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # the market ----------------------------------------------------------------------------

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def bars(self, symbol: str, interval: str) -> Bars:
        """The whole synthetic series of ``symbol`` at ``interval`` ('5m', '1h', ...)."""
        return self._bars(symbol, _STEPS[interval])

    def _bars(self, symbol: str, step: int) -> Bars:
        key = (symbol, step)
        with self._lock:
            found = self._series.get(key)
            if found is None:
                listing = self.listings[symbol]
                mix = zlib.crc32(f"{symbol}/{step}".encode()) % 100_000
                found = synthetic_bars(
                    (self.end_ms - self.start_ms) // step,
                    interval_ms=step,
                    seed=self.seed * 100_000 + mix,
                    start_price=listing.start_price,
                    start_oi_usd=listing.start_oi_usd,
                    start_ts=self.start_ms,
                )
                self._series[key] = found
            return found

    def _bar_span(self, step: int, now: int) -> tuple[int, int]:
        """Open times [first, last] of the bars that exist at ``now`` (last may be forming)."""
        return self.start_ms, min(now // step * step, self.end_ms - step)

    def _oi_span(self, step: int, now: int) -> tuple[int, int]:
        """Times [first, last] of the OI samples that exist at ``now`` (one per bar close)."""
        return self.start_ms + step, min(now // step * step, self.end_ms)

    def oi_at(self, symbol: str, step: int, t: int) -> tuple[float, float]:
        """(OI in base coin, OI in USD) at ``t``: the bar that closes at ``t``."""
        bars = self._bars(symbol, step)
        i = (t - self.start_ms) // step - 1
        usd = float(bars.oi_usd[i])
        return usd / float(bars.close[i]), usd

    def _row(self, symbol: str, step: int, t: int) -> tuple[float, ...]:
        bars = self._bars(symbol, step)
        i = (t - self.start_ms) // step
        return (
            float(bars.open[i]),
            float(bars.high[i]),
            float(bars.low[i]),
            float(bars.close[i]),
            float(bars.volume_usd[i]),
            float(bars.taker_buy_usd[i]),
        )

    def _price_now(self, symbol: str, now: int) -> float:
        step = _STEPS["5m"]
        t = min(max(now // step * step, self.start_ms), self.end_ms - step)
        return self._row(symbol, step, t)[3]

    # the log and the meters ----------------------------------------------------------------

    @property
    def requests(self) -> list[ApiRequest]:
        with self._lock:
            return list(self._log)

    def requests_to(self, path: str) -> list[ApiRequest]:
        return [r for r in self.requests if r.path == path]

    def count(self, path: str | None = None, *, venue: str | None = None) -> int:
        return sum(
            1
            for r in self.requests
            if (path is None or r.path == path) and (venue is None or r.venue == venue)
        )

    def clear_log(self) -> None:
        """Forget the request log (the meters keep counting)."""
        with self._lock:
            self._log.clear()

    def usage(self) -> dict[str, dict[str, Any]]:
        """Per venue: requests, refused answers, and each limit's report (see the docstring)."""
        with self._lock:
            return {
                venue: {
                    "requests": sum(1 for r in self._log if r.venue == venue),
                    "refused": self._refused[venue],
                    "windows": {name: m.report() for name, m in meters.items()},
                }
                for venue, meters in self._meters.items()
            }

    def violations(self, venue: str | None = None) -> int:
        with self._lock:
            return sum(
                m.violations
                for v, meters in self._meters.items()
                if venue is None or v == venue
                for m in meters.values()
            )

    # serving -------------------------------------------------------------------------------

    def handle(self, path: str, query: str) -> tuple[int, bytes, dict[str, str]]:
        """One request: (status, body, headers). Called from the handler threads."""
        params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        route = self._routes.get(path)
        if route is None:
            body = orjson.dumps({"code": 404, "msg": f"no such path {path}"})
            return 404, body, {"Content-Type": "application/json"}
        venue, handler = route
        with self._lock:
            at = self.clock()
            now = int(at * 1000)
            costs = self._costs(path, params)
            refusal = self._meter(venue, at, costs)
            if refusal is not None:
                status, payload, headers = refusal
                self._refused[venue] += 1
            else:
                try:
                    status, payload, headers = handler(params, now)
                except _Fail as fail:
                    status, payload, headers = fail.answer
                except ValueError as exc:  # a malformed number in the query
                    status, payload, headers = self._bad_param(venue, f"{exc}", now)
            if venue == "binance":
                used = self._meters["binance"]["weight"].used_now(at)
                headers = {**headers, "X-MBX-USED-WEIGHT-1M": str(int(used))}
            self._log.append(ApiRequest(venue, path, params, at, status, costs))
        if isinstance(payload, str):
            return status, payload.encode(), {"Content-Type": "text/plain", **headers}
        return status, orjson.dumps(payload), {"Content-Type": "application/json", **headers}

    def _costs(self, path: str, params: Params) -> dict[str, float]:
        if path == "/fapi/v1/klines":
            try:
                n = int(params.get("limit") or 500)
            except ValueError:
                n = 500
            return {"weight": 1 if n < 100 else 2 if n < 500 else 5 if n <= 1000 else 10}
        if path == "/fapi/v1/premiumIndex":
            return {"weight": 1 if params.get("symbol") else 10}
        if path == "/fapi/v1/openInterest":
            return {"weight": 1}
        if path.startswith("/futures/data/"):
            return {"futures_data": 1}  # weight 0: its own 1,000 / 5 min IP limit
        if path == "/api/v5/market/candles":
            return {"candles": 1}
        if path == "/api/v5/market/history-candles":
            return {"history-candles": 1}
        if path.startswith("/api/v5/rubik/"):
            return {"rubik-oi": 1}
        if path.startswith("/api/v5/public/"):
            return {"public": 1}
        return {"ip": 1}  # Bybit: every request counts against the IP's 600 / 5 s

    def _meter(self, venue: str, at: float, costs: Mapping[str, float]) -> Answer | None:
        """Charge the request; the venue's refusal if it broke a limit (when enforcing)."""
        if venue == "binance" and at < self._binance_banned_until:
            return self._binance_ban(at)
        over = False
        for name, cost in costs.items():
            if cost > 0 and self._meters[venue][name].charge(at, cost) > LIMITS[venue][name].limit:
                over = True
        if not (over and self.enforce_limits):
            return None
        if venue == "binance":
            minute = int(at // 60)
            if self._binance_429_minute == minute:  # went on after a 429: ban the IP
                self._binance_banned_until = at + 120.0
                return self._binance_ban(at)
            self._binance_429_minute = minute
            retry = str(math.ceil((minute + 1) * 60 - at))
            return 429, {"code": -1003, "msg": _BINANCE_429}, {"Retry-After": retry}
        if venue == "okx":
            return 429, {"code": "50011", "msg": _OKX_RATE, "data": []}, {}
        return 403, "403 Forbidden: access too frequent", {}

    def _binance_ban(self, at: float) -> Answer:
        until = int(self._binance_banned_until * 1000)
        msg = (
            f"Way too many requests; IP(127.0.0.1) banned until {until}. Please use the "
            "websocket for live updates to avoid bans."
        )
        retry = str(math.ceil(self._binance_banned_until - at))
        return 418, {"code": -1003, "msg": msg}, {"Retry-After": retry}

    def _bad_param(self, venue: str, what: str, now: int) -> Answer:
        if venue == "binance":
            return (
                400,
                {"code": -1100, "msg": f"Illegal characters found in a parameter. {what}"},
                {},
            )
        if venue == "okx":
            return 400, {"code": "51000", "msg": f"Parameter error: {what}", "data": []}, {}
        return 200, self._bybit_envelope(None, code=10001, msg=f"params error: {what}", now=now), {}

    # Binance -------------------------------------------------------------------------------

    def _binance_base(self, params: Params) -> str | None:
        symbol = params.get("symbol", "")
        base = symbol[:-4] if symbol.endswith("USDT") else ""
        return base if base in self.listings else None

    @staticmethod
    def _binance_error(code: int, msg: str) -> Answer:
        return 400, {"code": code, "msg": msg}, {}

    def _binance_limit(self, params: Params, default: int, most: int) -> int | None:
        limit = _opt_int(params, "limit")
        limit = default if limit is None else limit
        return limit if 1 <= limit <= most else None

    def _binance_klines(self, params: Params, now: int) -> Answer:
        if not params.get("symbol"):
            return self._binance_error(-1102, "Mandatory parameter 'symbol' was not sent.")
        base = self._binance_base(params)
        if base is None:
            return self._binance_error(-1121, "Invalid symbol.")
        step = _STEPS.get(params.get("interval", ""))
        if step is None:
            return self._binance_error(-1120, "Invalid interval.")
        limit = self._binance_limit(params, 500, 1500)
        if limit is None:
            return self._binance_error(-1130, "Data sent for paramter 'limit' is not valid.")
        start, end = _opt_int(params, "startTime"), _opt_int(params, "endTime")
        lo, hi = self._bar_span(step, now)
        first, last = _bounds(
            step, lo if start is None else start, hi if end is None else end, lo, hi
        )
        rows = []
        for t in _pick(first, last, step, limit, oldest=start is not None):
            o, h, low, c, vol, taker = self._row(base, step, t)
            rows.append(
                [t, _s(o), _s(h), _s(low), _s(c), _s(vol / c), t + step - 1, _s(vol),
                 max(1, int(vol / 50_000)), _s(taker / c), _s(taker), "0"]
            )  # fmt: skip
        return 200, rows, {}

    def _binance_oi_hist(self, params: Params, now: int) -> Answer:
        period = params.get("period", "")
        if not params.get("symbol") or not period:
            return self._binance_error(-1102, "Mandatory parameter was not sent.")
        if period not in _BINANCE_PERIODS:
            return self._binance_error(-1130, "Data sent for paramter 'period' is not valid.")
        limit = self._binance_limit(params, 30, 500)
        if limit is None:
            return self._binance_error(-1130, "Data sent for paramter 'limit' is not valid.")
        base = self._binance_base(params)
        if base is None:
            return 200, [], {}  # documented: an unknown symbol is an empty list here
        step = _STEPS[period]
        start, end = _opt_int(params, "startTime"), _opt_int(params, "endTime")
        lo, hi = self._oi_span(step, now)
        lo = max(lo, -(-(now - BINANCE_OI_HISTORY_MS) // step) * step)  # the latest month only
        first, last = _bounds(
            step, lo if start is None else start, hi if end is None else end, lo, hi
        )
        rows = []
        for t in _pick(first, last, step, limit, oldest=start is not None):
            coin, usd = self.oi_at(base, step, t)
            rows.append(
                {
                    "symbol": f"{base}USDT",
                    "sumOpenInterest": _s(coin),
                    "sumOpenInterestValue": _s(usd),
                    "CMCCirculatingSupply": "19950000.00000000",
                    "timestamp": t,
                }
            )
        return 200, rows, {}

    def _premium(self, base: str, now: int) -> dict[str, Any]:
        mark = self._price_now(base, now)
        eight_h = 8 * 3_600_000
        return {
            "symbol": f"{base}USDT",
            "markPrice": _s(mark),
            "indexPrice": _s(mark * 0.9999),
            "estimatedSettlePrice": _s(mark),
            "lastFundingRate": "0.00010000",
            "interestRate": "0.00010000",
            "nextFundingTime": (now // eight_h + 1) * eight_h,
            "time": now,
        }

    def _binance_premium_index(self, params: Params, now: int) -> Answer:
        if not params.get("symbol"):
            return 200, [self._premium(b, now) for b in self.listings], {}
        base = self._binance_base(params)
        if base is None:
            return self._binance_error(-1121, "Invalid symbol.")
        return 200, self._premium(base, now), {}

    def _binance_open_interest(self, params: Params, now: int) -> Answer:
        base = self._binance_base(params)
        if base is None:
            return self._binance_error(-1121, "Invalid symbol.")
        coin = self._current_oi(base, now)[0]
        return 200, {"symbol": f"{base}USDT", "openInterest": _s(coin), "time": now}, {}

    def _current_oi(self, base: str, now: int) -> tuple[float, float]:
        step = _STEPS["5m"]
        lo, hi = self._oi_span(step, now)
        return self.oi_at(base, step, max(lo, hi))

    # OKX -----------------------------------------------------------------------------------

    def _okx_base(self, params: Params) -> str | None:
        inst = params.get("instId", "")
        base = inst[: -len("-USDT-SWAP")] if inst.endswith("-USDT-SWAP") else ""
        return base if base in self.listings else None

    @staticmethod
    def _okx(data: list[Any]) -> Answer:
        return 200, {"code": "0", "msg": "", "data": data}, {}

    @staticmethod
    def _okx_error(code: str, msg: str, status: int = 200) -> Answer:
        return status, {"code": code, "msg": msg, "data": []}, {}

    def _okx_unknown(self) -> Answer:
        return self._okx_error(
            "51001", "Instrument ID, Instrument ID code, or Spread ID doesn't exist."
        )

    def _okx_range(
        self, params: Params, older: str, newer: str, most: int, default: int
    ) -> tuple[int, int, int]:
        """(lo, hi, limit): inclusive bounds from the exclusive pair (newer, older)."""
        limit = _opt_int(params, "limit")
        limit = default if limit is None else limit
        if not 1 <= limit <= most:
            raise _Fail(self._okx_error("51000", "Parameter limit error", 400))
        hi_ex, lo_ex = _opt_int(params, older), _opt_int(params, newer)
        hi = (1 << 62) if hi_ex is None else hi_ex - 1
        lo = -(1 << 62) if lo_ex is None else lo_ex + 1
        return lo, hi, limit

    def _okx_klines(self, params: Params, now: int, *, recent_only: bool) -> Answer:
        if not params.get("instId"):
            return self._okx_error("50014", "Parameter instId can not be empty.", 400)
        base = self._okx_base(params)
        if base is None:
            return self._okx_unknown()
        step = _OKX_BARS.get(params.get("bar", "1m"))
        if step is None:
            return self._okx_error("51000", "Parameter bar error", 400)
        most = 300 if recent_only else 100
        lo, hi, limit = self._okx_range(params, "after", "before", most, 100)
        avail_lo, avail_hi = self._bar_span(step, now)
        forming = now // step * step
        if recent_only:  # /market/candles keeps the latest 1,440 bars
            avail_lo = max(avail_lo, forming - (OKX_RECENT_BARS - 1) * step)
        first, last = _bounds(step, lo, hi, avail_lo, avail_hi)
        ct = self.listings[base].ct_val
        rows = []
        for t in reversed(_pick(first, last, step, limit, oldest=False)):
            o, h, low, c, vol, _ = self._row(base, step, t)
            coin = vol / c
            confirm = "0" if t == forming else "1"
            rows.append(
                [str(t), _s(o), _s(h), _s(low), _s(c), _s(coin / ct), _s(coin), _s(vol), confirm]
            )
        return self._okx(rows)

    def _okx_candles(self, params: Params, now: int) -> Answer:
        return self._okx_klines(params, now, recent_only=True)

    def _okx_history_candles(self, params: Params, now: int) -> Answer:
        return self._okx_klines(params, now, recent_only=False)

    def _okx_oi_hist(self, params: Params, now: int) -> Answer:
        if not params.get("instId"):
            return self._okx_error("50014", "Parameter instId can not be empty.", 400)
        base = self._okx_base(params)
        if base is None:
            return self._okx_unknown()
        step = _OKX_BARS.get(params.get("period", "5m"))
        if step is None:
            return self._okx_error("51000", "Parameter period error", 400)
        lo, hi, limit = self._okx_range(params, "end", "begin", 100, 100)
        avail_lo, avail_hi = self._oi_span(step, now)
        first, last = _bounds(step, lo, hi, avail_lo, avail_hi)
        ct = self.listings[base].ct_val
        rows = []
        for t in reversed(_pick(first, last, step, limit, oldest=False)):
            coin, usd = self.oi_at(base, step, t)
            rows.append([str(t), _s(coin / ct), _s(coin), _s(usd)])
        return self._okx(rows)

    def _okx_instrument(self, base: str) -> dict[str, Any]:
        listing = self.listings[base]
        return {
            "instId": f"{base}-USDT-SWAP",
            "instType": "SWAP",
            "instFamily": f"{base}-USDT",
            "uly": f"{base}-USDT",
            "ctVal": _s(listing.ct_val).removesuffix(".0"),
            "ctMult": "1",
            "ctValCcy": base,
            "ctType": "linear",
            "settleCcy": "USDT",
            "lotSz": "0.01",
            "minSz": "0.01",
            "tickSz": "0.1",
            "state": "live",
            "listTime": str(self.start_ms),
        }

    def _okx_instruments(self, params: Params, now: int) -> Answer:
        inst_type = params.get("instType")
        if not inst_type:
            return self._okx_error("50014", "Parameter instType can not be empty.", 400)
        if inst_type != "SWAP":
            return self._okx([])
        if params.get("instId"):
            base = self._okx_base(params)
            return self._okx_unknown() if base is None else self._okx([self._okx_instrument(base)])
        return self._okx([self._okx_instrument(b) for b in self.listings])

    def _okx_open_interest(self, params: Params, now: int) -> Answer:
        if params.get("instType") != "SWAP":
            return self._okx_error("50014", "Parameter instType can not be empty.", 400)
        bases: Sequence[str] = list(self.listings)
        if params.get("instId"):
            base = self._okx_base(params)
            if base is None:
                return self._okx_unknown()
            bases = [base]
        rows = []
        for b in bases:
            coin, usd = self._current_oi(b, now)
            contracts = coin / self.listings[b].ct_val
            rows.append(
                {"instType": "SWAP", "instId": f"{b}-USDT-SWAP", "oi": _s(contracts),
                 "oiCcy": _s(coin), "oiUsd": _s(usd), "ts": str(now)}
            )  # fmt: skip
        return self._okx(rows)

    # Bybit ---------------------------------------------------------------------------------

    @staticmethod
    def _bybit_envelope(
        result: dict[str, Any] | None, *, code: int = 0, msg: str = "OK", now: int
    ) -> dict[str, Any]:
        return {
            "retCode": code,
            "retMsg": msg,
            "result": {} if result is None else result,
            "retExtInfo": {},
            "time": now,
        }

    def _bybit_error(self, msg: str, now: int) -> Answer:
        return 200, self._bybit_envelope(None, code=10001, msg=msg, now=now), {}

    def _bybit_check(self, params: Params, now: int) -> str:
        """The listed base of a linear request; raises the error answer otherwise."""
        if params.get("category", "linear") != "linear":
            raise _Fail(self._bybit_error("params error: category only linear here", now))
        symbol = params.get("symbol", "")
        base = symbol[:-4] if symbol.endswith("USDT") else ""
        if base not in self.listings:
            raise _Fail(self._bybit_error("params error: symbol invalid", now))
        return base

    def _bybit_limit(self, params: Params, default: int, most: int) -> int | None:
        limit = _opt_int(params, "limit")
        limit = default if limit is None else limit
        return limit if 1 <= limit <= most else None

    def _bybit_kline(self, params: Params, now: int) -> Answer:
        base = self._bybit_check(params, now)
        step = _BYBIT_KLINE.get(params.get("interval", ""))
        if step is None:
            return self._bybit_error("params error: invalid interval", now)
        limit = self._bybit_limit(params, 200, 1000)
        if limit is None:
            return self._bybit_error("params error: invalid limit", now)
        start, end = _opt_int(params, "start"), _opt_int(params, "end")
        lo, hi = self._bar_span(step, now)
        first, last = _bounds(
            step, lo if start is None else start, hi if end is None else end, lo, hi
        )
        rows = []
        for t in reversed(_pick(first, last, step, limit, oldest=False)):
            o, h, low, c, vol, _ = self._row(base, step, t)
            rows.append([str(t), _s(o), _s(h), _s(low), _s(c), _s(vol / c), _s(vol)])
        result = {"category": "linear", "symbol": f"{base}USDT", "list": rows}
        return 200, self._bybit_envelope(result, now=now), {}

    def _bybit_oi(self, params: Params, now: int) -> Answer:
        base = self._bybit_check(params, now)
        step = _BYBIT_OI.get(params.get("intervalTime", ""))
        if step is None:
            return self._bybit_error("params error: invalid intervalTime", now)
        limit = self._bybit_limit(params, 50, 200)
        if limit is None:
            return self._bybit_error("params error: invalid limit", now)
        start, end = _opt_int(params, "startTime"), _opt_int(params, "endTime")
        lo, hi = self._oi_span(step, now)
        first, last = _bounds(
            step, lo if start is None else start, hi if end is None else end, lo, hi
        )
        cursor = params.get("cursor")
        if cursor:
            last = min(last, _cursor_time(cursor) - step)  # rows older than the last page's
        times = _pick(first, last, step, limit, oldest=False)
        rows = []
        for t in reversed(times):
            coin, _ = self.oi_at(base, step, t)
            rows.append(
                {"openInterest": _s(coin), "singleOpenInterest": _s(coin / 2), "timestamp": str(t)}
            )
        more = bool(times) and times[0] > first
        nxt = f"lastid%3D{times[0] // step}%26lasttime%3D{times[0] // 1000}" if more else ""
        result = {
            "symbol": f"{base}USDT",
            "category": "linear",
            "list": rows,
            "nextPageCursor": nxt,
        }
        return 200, self._bybit_envelope(result, now=now), {}

    def _bybit_tickers(self, params: Params, now: int) -> Answer:
        if params.get("category") != "linear":
            return self._bybit_error("params error: category only linear here", now)
        bases: Sequence[str] = list(self.listings)
        if params.get("symbol"):
            bases = [self._bybit_check(params, now)]
        rows = []
        eight_h = 8 * 3_600_000
        for b in bases:
            mark = self._price_now(b, now)
            coin, usd = self._current_oi(b, now)
            rows.append(
                {
                    "symbol": f"{b}USDT",
                    "lastPrice": _s(mark),
                    "markPrice": _s(mark),
                    "indexPrice": _s(mark * 0.9999),
                    "fundingRate": "0.0001",
                    "fundingIntervalHour": "8",
                    "nextFundingTime": str((now // eight_h + 1) * eight_h),
                    "openInterest": _s(coin),
                    "openInterestValue": _s(usd),
                }
            )
        result = {"category": "linear", "list": rows}
        return 200, self._bybit_envelope(result, now=now), {}

    # connection tracking (handler threads) -------------------------------------------------

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)


def _cursor_time(cursor: str) -> int:
    """The ``lasttime`` (seconds) of a Bybit cursor, in ms; the cursor may arrive %-encoded."""
    text = cursor
    for _ in range(3):
        if "lasttime=" in text:
            break
        text = unquote(text)
    for part in text.split("&"):
        key, _, value = part.partition("=")
        if key == "lasttime":
            return int(value) * 1000
    raise ValueError(f"bad cursor {cursor!r}")


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # joined on close, so no handler outlives stop()
    block_on_close = True

    def __init__(self, api: FakeVenueApi) -> None:
        self.api = api
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # the client went away: not the server's fault
            return
        if exc is not None:
            self.api.errors.append(exc)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real venues do
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as two writes: without NODELAY, Nagle's algorithm holds the
        # body back until the client's delayed ACK (~40 ms a request).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.api._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.api._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        split = urlsplit(self.path)
        try:
            status, body, headers = self.server.api.handle(split.path, split.query)
        except Exception as exc:  # a bug in the fake: answer 500 and let the test see it
            self.server.api.errors.append(exc)
            status, body, headers = 500, b'{"error":"fake venue API bug"}', {}
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
