"""OKX ``liquidation-orders`` websocket stream (``wss://ws.okx.com:8443/ws/v5/public``).

One subscription ``{"channel":"liquidation-orders","instType":"SWAP"}`` carries every swap; frames
are filtered to the USDT-margined swaps of the requested symbols. ``sz`` is in contracts, so each
event needs the instrument's ``ctVal`` (a mapping given to the constructor, or fetched through
:class:`~core.feeds.okx.OkxRest` before connecting); events of an instrument whose ``ctVal`` is
unknown are skipped and counted in :attr:`OkxLiquidationStream.skipped_unknown`. A ``notice``
event (64008: service upgrade) makes the stream reconnect before the venue cuts it.

Keepalive: the text ``ping`` after ``ping_interval_s`` (25 s) of silence, answered by ``pong``;
OKX cuts a connection silent for 30 s. Reconnects, backoff and counters are the shared loop's
(:mod:`core.feeds.ws`).
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from typing import Any, ClassVar, Protocol, Unpack

import orjson

from core.errors import InputError
from core.feeds.errors import FeedError, JunkResponse
from core.feeds.parse import epoch_ms, positive
from core.feeds.symbols import base_of, venue_symbol
from core.feeds.types import LiqEvent, Side, Venue
from core.feeds.ws import Frame, StreamReset, WsLiquidationStream, WsOptions, frame_text

__all__ = [
    "CHANNEL",
    "OKX_WS_URL",
    "SUBSCRIBE",
    "ContractValues",
    "OkxLiquidationStream",
    "StreamReset",
    "WsLiquidationStream",
    "WsOptions",
    "parse_liquidation_data",
]

OKX_WS_URL = "wss://ws.okx.com:8443/ws/v5/public"
CHANNEL = "liquidation-orders"
SUBSCRIBE = orjson.dumps(
    {"op": "subscribe", "args": [{"channel": CHANNEL, "instType": "SWAP"}]}
).decode()

_SIDES: dict[tuple[Any, Any], Side] = {
    # (posSide, side) -> the position that was liquidated. posSide wins where it is given;
    # in net mode a forced sell closes a long.
    ("long", "sell"): "long", ("long", "buy"): "long",
    ("short", "buy"): "short", ("short", "sell"): "short",
    ("net", "sell"): "long", ("net", "buy"): "short",
    ("", "sell"): "long", ("", "buy"): "short",
}  # fmt: skip


def parse_liquidation_data(
    data: Any, ct_vals: Mapping[str, float], inst_ids: Container[str] | None = None
) -> tuple[list[LiqEvent], int]:
    """``data`` of a liquidation-orders push (or REST answer) -> (events, skipped).

    The hot path. Each ``details[]`` item is one event: ``qty`` is ``sz`` (contracts) x
    ``ctVal`` (coin per contract), ``price`` the bankruptcy price ``bkPx``, ``usd`` = price x
    qty. Instruments outside ``inst_ids`` (default: every USDT-margined swap) are ignored. One
    in scope whose ``ctVal`` is not in ``ct_vals`` is skipped and counted, never guessed. A
    malformed item rejects the whole frame with JunkResponse.
    """
    events: list[LiqEvent] = []
    skipped = 0
    append = events.append
    try:
        for item in data:
            inst = item["instId"]
            if inst_ids is None:
                if not inst.endswith("-USDT-SWAP"):
                    continue
            elif inst not in inst_ids:
                continue
            ct = ct_vals.get(inst)
            if ct is None:
                skipped += 1
                continue
            symbol = base_of(inst)
            for d in item["details"]:
                side = _SIDES[d["posSide"], d["side"]]
                price = positive(d["bkPx"])
                qty = positive(d["sz"]) * ct
                append(LiqEvent("okx", symbol, side, price, qty, price * qty, epoch_ms(d["ts"])))
    except (KeyError, TypeError, ValueError, AttributeError, InputError) as exc:
        raise JunkResponse(
            "okx", f"liquidation-orders: malformed item ({type(exc).__name__}: {exc})"
        ) from None
    return events, skipped


class ContractValues(Protocol):
    """Where the stream gets ``ctVal`` of every swap: :class:`~core.feeds.okx.OkxRest`."""

    async def contract_values(self) -> dict[str, float]: ...


class OkxLiquidationStream(WsLiquidationStream):
    """OKX liquidations of the USDT-margined swaps of ``symbols`` (None: all of them).

    Give ``ct_vals`` (instId -> base coin per contract, e.g. ``{"BTC-USDT-SWAP": 0.01}``) or
    ``rest`` (an :class:`~core.feeds.okx.OkxRest`), which the stream asks for every swap's
    ``ctVal`` before connecting while a requested instrument's is unknown.
    """

    venue: Venue = "okx"
    ping_message: ClassVar[str] = "ping"
    ping_when_idle: ClassVar[bool] = True
    default_ping_interval_s: ClassVar[float] = 25.0  # OKX cuts a connection silent for 30 s

    def __init__(
        self,
        symbols: Iterable[str] | None = None,
        *,
        ct_vals: Mapping[str, float] | None = None,
        rest: ContractValues | None = None,
        url: str = OKX_WS_URL,
        **options: Unpack[WsOptions],
    ) -> None:
        if ct_vals is None and rest is None:
            raise ValueError("OkxLiquidationStream needs ct_vals or an OkxRest to fetch them")
        super().__init__(url, **options)
        self.symbols = None if symbols is None else tuple(sorted({base_of(s) for s in symbols}))
        self._inst_ids = (
            None
            if self.symbols is None
            else frozenset(venue_symbol(s, "okx") for s in self.symbols)
        )
        self._ct_vals = dict(ct_vals or {})
        self._rest = rest

    @property
    def skipped_unknown(self) -> int:
        """Events of in-scope instruments with no known ctVal (``status().skipped``)."""
        return self.skipped

    def subscribe_messages(self) -> list[str]:
        return [SUBSCRIBE]

    async def prepare(self) -> None:
        if self._rest is None:
            return
        missing = (
            not self._ct_vals if self._inst_ids is None else self._inst_ids - self._ct_vals.keys()
        )
        if missing:
            try:
                self._ct_vals.update(await self._rest.contract_values())
            except FeedError as exc:
                self._last_error = f"ctVal lookup failed, events go uncounted until known: {exc}"

    def handle(self, raw: Frame) -> list[LiqEvent]:
        if raw == b"pong" or raw == "pong":
            return []
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise JunkResponse("okx", f"frame is not JSON: {frame_text(raw)}") from None
        if msg.__class__ is not dict:
            raise JunkResponse("okx", f"frame is not a JSON object: {frame_text(raw)}")
        data = msg.get("data")
        if data is not None:
            arg = msg.get("arg")
            if arg.__class__ is not dict or arg.get("channel") != CHANNEL:
                raise JunkResponse("okx", f"data frame of an unexpected channel: {arg!r:.60}")
            events, skipped = parse_liquidation_data(data, self._ct_vals, self._inst_ids)
            self.skipped += skipped
            return events
        event = msg.get("event")
        if event == "notice":  # 64008: the venue will cut us for an upgrade; move now
            raise StreamReset(f"OKX notice {msg.get('code')}: {msg.get('msg')}")
        if event == "error":
            self._last_error = f"OKX error {msg.get('code')}: {msg.get('msg')}"
            return []
        if event == "subscribe":
            self.mark_subscribed()
            return []
        if event in ("unsubscribe", "channel-conn-count"):
            return []
        raise JunkResponse("okx", f"unexpected frame: {frame_text(raw)}")
