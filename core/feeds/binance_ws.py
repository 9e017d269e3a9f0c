"""Binance USDⓈ-M liquidation stream (``<symbol>@forceOrder`` / ``!forceOrder@arr``).

Since 2026 the futures websocket is routed by path: forceOrder lives under ``/market``, and a
connection without that path silently receives nothing (market-apis.md §0.1). The stream URL is
``{base}/stream?streams=a/b``, so every frame comes wrapped as ``{"stream": .., "data": ..}``;
the parser accepts the raw event too.

Connection upkeep:

* Pings: Binance pings every 3 minutes and drops a client that does not pong within 10. The
  ``websockets`` protocol layer answers every ping by itself (``Protocol.recv_frame`` sends the
  pong as the frame is read, whether or not anyone is awaiting ``recv``); the library's own
  keepalive pings (``ping_interval_s``) also detect a half-open TCP connection.
* Silence: no frame for ``silence_timeout_s`` means a dead or wedged connection; reconnect. The
  all-market stream is never quiet that long; for a single quiet symbol raise the timeout.
* 24-hour rollover: Binance closes a connection after 24 h. We close it ourselves after
  ``max_connection_age_s`` (23 h 50 min) and reconnect at once, without backoff.
* Any other disconnect or error: reconnect with exponential backoff and jitter; the backoff
  resets once a connection has delivered a frame (``healthy_after_s``: or stayed up that long).

The loop itself, its counters and ``aclose()`` are the shared ones of :mod:`core.feeds.ws`.

Binance pushes at most one liquidation per symbol per second, so the events are a lower bound
of what was liquidated (DESIGN §4.2).
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, Literal

import orjson
from websockets.exceptions import InvalidURI
from websockets.uri import parse_uri

from core.errors import InputError
from core.feeds.errors import JunkResponse
from core.feeds.parse import MAX_MS, MIN_MS
from core.feeds.symbols import base_of, venue_symbol
from core.feeds.types import LiqEvent, Side, Venue
from core.feeds.ws import Frame, WsLiquidationStream, error_text

BINANCE_WS_URL = "wss://fstream.binance.com/market"
MAX_CONNECTION_AGE_S = 23 * 3600 + 50 * 60  # Binance ends every connection at 24 h
MAX_STREAMS = 1024  # per connection

VENUE: Venue = "binance"
_SIDES: dict[Any, Side] = {"SELL": "long", "BUY": "short"}  # forced SELL closes a long
_INF = float("inf")
_loads = orjson.loads


# --- parsing ------------------------------------------------------------------------------------


def parse_force_order(frame: bytes | str) -> LiqEvent | None:
    """The liquidation in one forceOrder frame, None for a frame that carries none for us.

    Accepts the raw event and the combined-stream wrapper ``{"stream", "data"}``, with the
    2026 ``ps``/``st`` fields at the top of the event or inside ``o``. Returns None for a
    subscription ack, another event type, a COIN-M order (``st`` 2) and any instrument that
    is not a USDT-margined perpetual (``<BASE>USDT``). Price is the average fill price ``ap``
    (else the order price ``p``); quantity is the filled ``z`` (else the order size ``q``).
    Raises JunkResponse on anything malformed.
    """
    try:
        msg = _loads(frame)
    except orjson.JSONDecodeError as exc:
        raise JunkResponse(VENUE, f"forceOrder frame is not JSON ({exc})") from None
    if type(msg) is not dict:
        raise JunkResponse(VENUE, f"forceOrder frame is a JSON {type(msg).__name__}, not object")
    event = msg.get("data", msg)
    try:
        kind = event.get("e")
        if kind != "forceOrder":
            if kind is None and "result" in msg and "id" in msg:
                return None  # subscription ack
            if kind is None:
                raise KeyError("e")
            return None  # another event type: not ours
        o = event["o"]
        st = o.get("st", event.get("st"))
        if st is not None and st != 1:
            if st == 2:
                return None  # COIN-M, merged into !forceOrder@arr since 2026-06
            raise ValueError(f"unknown st {st!r}")
        symbol = _usdt_base(o["s"])
        if symbol is None:
            return None
        side = _SIDES[o["S"]]
        z = o.get("z")
        qty = float(z) if z is not None else 0.0
        if not qty > 0:
            qty = float(o["q"])
        ap = o.get("ap")
        price = float(ap) if ap is not None else 0.0
        if not price > 0:
            price = float(o["p"])
        ts = o["T"]
        if type(ts) is not int or not MIN_MS <= ts < MAX_MS:
            raise ValueError(f"o.T is not epoch milliseconds: {ts!r:.40}")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise JunkResponse(VENUE, f"forceOrder frame: {_diagnose(event, exc)}") from None
    usd = price * qty
    if not 0 < usd < _INF:
        raise JunkResponse(VENUE, f"forceOrder frame: price {price} x qty {qty} is not positive")
    return LiqEvent(VENUE, symbol, side, price, qty, usd, ts)


@functools.lru_cache(maxsize=4096)
def _usdt_base(instrument: str) -> str | None:
    """'BTC' for 'BTCUSDT'; None for USDC, COIN-M, dated or unnameable instruments."""
    if not instrument.endswith("USDT") or len(instrument) <= 4:
        return None
    try:
        return base_of(instrument)
    except InputError:
        return None


def _diagnose(event: Any, exc: BaseException) -> str:
    """A precise reason for a rejected event (the slow path: only runs on junk)."""
    if type(event) is not dict:
        return f"the event is a JSON {type(event).__name__}, not an object"
    o = event.get("o")
    if "e" not in event or type(o) is not dict:
        return "missing field 'e'" if "e" not in event else "field 'o' is missing or not an object"
    if type(o.get("s")) is not str:
        return f"o.s should be a symbol string, got {o.get('s')!r:.40}"
    if o.get("S") not in _SIDES:
        return f"o.S is {o.get('S')!r:.40}, expected BUY or SELL"
    for primary, fallback in (("z", "q"), ("ap", "p")):
        problem = _number_problem(o, primary, fallback)
        if problem:
            return problem
    if "T" not in o:
        return "missing field o.T"
    return error_text(exc) if not isinstance(exc, ValueError) else str(exc)


def _number_problem(o: dict[str, Any], primary: str, fallback: str) -> str | None:
    """What is wrong with o[primary], or with o[fallback] when primary is absent or not > 0."""
    value = o.get(primary)
    if value is not None:
        try:
            if float(value) > 0:
                return None
        except (TypeError, ValueError):
            return f"o.{primary} is not a number: {value!r:.40}"
    value = o.get(fallback)
    if value is None:
        return f"o.{fallback} is missing or null"
    try:
        float(value)
    except (TypeError, ValueError):
        return f"o.{fallback} is not a number: {value!r:.40}"
    return None


# --- the stream ---------------------------------------------------------------------------------


def stream_names(symbols: Sequence[str] | None) -> list[str]:
    """``['!forceOrder@arr']`` for every symbol, else ``['btcusdt@forceOrder', ...]``."""
    if symbols is None:
        return ["!forceOrder@arr"]
    if not symbols:
        raise InputError("symbols is empty: pass None for the all-market stream")
    if len(symbols) > MAX_STREAMS:
        raise InputError(f"Binance allows {MAX_STREAMS} streams per connection, got {len(symbols)}")
    names = (venue_symbol(base_of(s), VENUE).lower() + "@forceOrder" for s in symbols)
    return list(dict.fromkeys(names))


class BinanceLiquidationStream(WsLiquidationStream):
    """Binance forced liquidations as LiqEvents (a :class:`~core.feeds.base.LiquidationStream`).

    ``events()`` connects, parses, and reconnects until :meth:`aclose` (the shared loop of
    :mod:`core.feeds.ws`). ``ping_interval_s`` / ``ping_timeout_s`` are the websockets library's
    keepalive (None: off); the subscription is in the URL, so nothing is sent on connect.
    """

    venue: Venue = VENUE
    silence_text: ClassVar[str] = "silent for {s:g}s; reconnecting"
    dropped_text: ClassVar[str] = "dropped a frame: {exc}"
    rollover_reason: ClassVar[str] = "24h rollover"

    def __init__(
        self,
        symbols: Sequence[str] | None = None,
        *,
        base_url: str = BINANCE_WS_URL,
        silence_timeout_s: float = 60.0,
        max_connection_age_s: float = MAX_CONNECTION_AGE_S,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        healthy_after_s: float | None = None,
        open_timeout_s: float = 10.0,
        close_timeout_s: float = 2.0,
        ping_interval_s: float | None = 20.0,
        ping_timeout_s: float | None = 20.0,
        proxy: str | Literal[True] | None = True,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        url = f"{base_url.rstrip('/')}/stream?streams={'/'.join(stream_names(symbols))}"
        try:
            parse_uri(url)
        except InvalidURI as exc:
            raise InputError(f"base_url is not a websocket URL: {base_url!r} ({exc})") from None
        super().__init__(
            url,
            silence_timeout_s=silence_timeout_s,
            ping_interval_s=ping_interval_s,
            pong_timeout_s=ping_timeout_s,
            backoff_base_s=backoff_base_s,
            backoff_max_s=backoff_max_s,
            healthy_after_s=healthy_after_s,
            open_timeout_s=open_timeout_s,
            close_timeout_s=close_timeout_s,
            max_connection_age_s=max_connection_age_s,
            clock=clock,
            sleep=sleep,
            rng=rng,
            proxy=proxy,
        )
        self.silence_timeout_s = silence_timeout_s
        self.max_connection_age_s = max_connection_age_s

    def handle(self, raw: Frame) -> list[LiqEvent]:
        event = parse_force_order(raw)
        return [] if event is None else [event]
