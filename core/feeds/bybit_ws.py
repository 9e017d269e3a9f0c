"""Bybit ``allLiquidation.{symbol}`` websocket stream (``wss://stream.bybit.com/v5/public/linear``).

Bybit pushes every liquidation, batched every 500 ms: ``{"topic":"allLiquidation.BTCUSDT",
"type":"snapshot","ts":..,"data":[{"T":ms,"s":"BTCUSDT","S":"Buy","v":"0.006","p":"82396.90"}]}``.

Side semantics differ from Binance: ``S`` is the side of the *position*, so ``Buy`` means a
long was liquidated. ``v`` is base coin (linear), ``p`` the bankruptcy price, ``T`` the event
time in ms. The deprecated ``liquidation.{symbol}`` topic (a single object in ``data``) is not
used; such a frame is rejected rather than read with other semantics.

Keepalive is ``{"op":"ping"}`` every 20 s; the pong is ``{"success":true,"ret_msg":"pong",
"op":"ping",..}``. A failed subscription (``{"success":false,"ret_msg":"Invalid topic: .."}``)
is counted in :attr:`BybitLiquidationStream.subscribe_failures` and shown as the status error;
it is not retried on the same connection, since asking again gets the same answer. Reconnects,
backoff and counters are the shared loop's (:mod:`core.feeds.ws`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Unpack

import orjson

from core.feeds.bybit import VENUE
from core.feeds.errors import JunkResponse
from core.feeds.parse import epoch_ms, positive
from core.feeds.symbols import base_of, venue_symbol
from core.feeds.types import LiqEvent, Side, Venue
from core.feeds.ws import Frame, WsLiquidationStream, WsOptions, frame_text

BYBIT_WS_URL = "wss://stream.bybit.com/v5/public/linear"
TOPIC_PREFIX = "allLiquidation."
PING = orjson.dumps({"op": "ping"}).decode()

_SIDES: dict[str, Side] = {"Buy": "long", "Sell": "short"}  # the position's side


def parse_all_liquidation(data: Any, instruments: Mapping[str, str]) -> list[LiqEvent]:
    """``data`` of an allLiquidation push -> events (hot path).

    ``instruments`` maps the venue symbols wanted ('BTCUSDT') to bases ('BTC'); items of other
    symbols are ignored. A malformed item rejects the whole frame with JunkResponse.
    """
    if data.__class__ is not list:
        raise JunkResponse(VENUE, f"allLiquidation: 'data' should be a list, got {data!r:.60}")
    events: list[LiqEvent] = []
    append = events.append
    try:
        for d in data:
            base = instruments.get(d["s"])
            if base is None:
                continue
            side = _SIDES[d["S"]]
            price = positive(d["p"])
            qty = positive(d["v"])
            append(LiqEvent(VENUE, base, side, price, qty, price * qty, epoch_ms(d["T"])))
    except (KeyError, TypeError, ValueError) as exc:
        raise JunkResponse(
            VENUE, f"allLiquidation: malformed item ({type(exc).__name__}: {exc})"
        ) from None
    return events


class BybitLiquidationStream(WsLiquidationStream):
    """Bybit liquidations of the USDT perpetuals of ``symbols`` (e.g. ``["BTC", "ETH"]``)."""

    venue: Venue = "bybit"
    ping_message: ClassVar[str] = PING
    ping_when_idle: ClassVar[bool] = False  # Bybit asks for a ping every 20 s regardless
    default_ping_interval_s: ClassVar[float] = 20.0

    def __init__(
        self,
        symbols: Iterable[str],
        *,
        url: str = BYBIT_WS_URL,
        **options: Unpack[WsOptions],
    ) -> None:
        super().__init__(url, **options)
        bases = sorted({base_of(s) for s in symbols})
        if not bases:
            raise ValueError("BybitLiquidationStream needs at least one symbol")
        self.symbols = tuple(bases)
        self._instruments = {venue_symbol(b, VENUE): b for b in bases}
        self.topics = [TOPIC_PREFIX + inst for inst in self._instruments]
        self.subscribe_failures = 0

    def subscribe_messages(self) -> list[str]:
        return [orjson.dumps({"op": "subscribe", "args": self.topics}).decode()]

    def handle(self, raw: Frame) -> list[LiqEvent]:
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise JunkResponse(VENUE, f"frame is not JSON: {frame_text(raw)}") from None
        if msg.__class__ is not dict:
            raise JunkResponse(VENUE, f"frame is not a JSON object: {frame_text(raw)}")
        topic = msg.get("topic")
        if topic is not None:
            if topic.__class__ is not str or not topic.startswith(TOPIC_PREFIX):
                raise JunkResponse(VENUE, f"push of an unexpected topic: {topic!r:.60}")
            return parse_all_liquidation(msg.get("data"), self._instruments)
        op = msg.get("op")
        if op == "subscribe":
            if msg.get("success") is not True:
                self.subscribe_failures += 1
                self._last_error = f"subscribe failed: {msg.get('ret_msg')}"
            else:
                self.mark_subscribed()
            return []
        if op in ("ping", "pong"):
            return []
        raise JunkResponse(VENUE, f"unexpected frame: {frame_text(raw)}")
