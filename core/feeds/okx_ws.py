"""OKX ``liquidation-orders`` websocket stream, and the reconnecting stream both venues share.

:class:`WsLiquidationStream` is venue-neutral (it lives here until a shared ``ws.py`` exists);
a venue subclass says what to send on connect and how to read a frame. It:

* reconnects with exponential backoff and jitter (``sleep``, ``rng`` and ``clock`` are
  injectable), and resubscribes on every new connection;
* sends the venue's app-level ping (OKX: the text ``ping`` after ``ping_interval_s`` of
  silence; Bybit: ``{"op":"ping"}`` every ``ping_interval_s``) and gives up on a connection
  that answers nothing within ``pong_timeout_s``;
* treats ``silence_timeout_s`` without any frame as a dead connection;
* counts malformed frames as dropped and goes on; never yields half-parsed data.

OKX (``wss://ws.okx.com:8443/ws/v5/public``): one subscription
``{"channel":"liquidation-orders","instType":"SWAP"}`` carries every swap; frames are filtered
to the USDT-margined swaps of the requested symbols. ``sz`` is in contracts, so each event
needs the instrument's ``ctVal`` (a mapping given to the constructor, or fetched through
:class:`~core.feeds.okx.OkxRest` before connecting); events of an instrument whose ``ctVal`` is
unknown are skipped and counted in :attr:`OkxLiquidationStream.skipped_unknown`. A ``notice``
event (64008: service upgrade) makes the stream reconnect before the venue cuts it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Container, Iterable, Mapping
from typing import Any, ClassVar, Literal, Protocol, TypedDict, Unpack

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from core.errors import InputError
from core.feeds.base import StreamStatus
from core.feeds.errors import FeedError, JunkResponse
from core.feeds.symbols import base_of, venue_symbol
from core.feeds.types import LiqEvent, Side, Venue

OKX_WS_URL = "wss://ws.okx.com:8443/ws/v5/public"
CHANNEL = "liquidation-orders"
SUBSCRIBE = orjson.dumps(
    {"op": "subscribe", "args": [{"channel": CHANNEL, "instType": "SWAP"}]}
).decode()

Frame = str | bytes

_SIDES: dict[tuple[Any, Any], Side] = {
    # (posSide, side) -> the position that was liquidated. posSide wins where it is given;
    # in net mode a forced sell closes a long.
    ("long", "sell"): "long", ("long", "buy"): "long",
    ("short", "buy"): "short", ("short", "sell"): "short",
    ("net", "sell"): "long", ("net", "buy"): "short",
    ("", "sell"): "long", ("", "buy"): "short",
}  # fmt: skip
_MIN_MS, _MAX_MS = 946_684_800_000, 4_102_444_800_000  # 2000-01-01 .. 2100-01-01
_INF = float("inf")


def _pos(value: Any) -> float:
    cls = value.__class__
    if cls is not str and cls is not float and cls is not int:
        raise TypeError(f"expected a number string, got {cls.__name__}")
    x = float(value)
    if not 0.0 < x < _INF:
        raise ValueError(f"not a positive finite number: {value!r}")
    return x


def _ms(value: Any) -> int:
    cls = value.__class__
    if cls is not str and cls is not int:
        raise TypeError(f"expected epoch ms, got {cls.__name__}")
    ms = int(value)
    if not _MIN_MS <= ms < _MAX_MS:
        raise ValueError(f"not a plausible epoch-ms timestamp: {value!r}")
    return ms


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
                price = _pos(d["bkPx"])
                qty = _pos(d["sz"]) * ct
                append(LiqEvent("okx", symbol, side, price, qty, price * qty, _ms(d["ts"])))
    except (KeyError, TypeError, ValueError, AttributeError, InputError) as exc:
        raise JunkResponse(
            "okx", f"liquidation-orders: malformed item ({type(exc).__name__}: {exc})"
        ) from None
    return events, skipped


class ContractValues(Protocol):
    """Where the stream gets ``ctVal`` of every swap: :class:`~core.feeds.okx.OkxRest`."""

    async def contract_values(self) -> dict[str, float]: ...


class WsOptions(TypedDict, total=False):
    """Keyword options every stream accepts (see :class:`WsLiquidationStream`)."""

    silence_timeout_s: float
    ping_interval_s: float
    pong_timeout_s: float
    backoff_base_s: float
    backoff_max_s: float
    healthy_after_s: float
    open_timeout_s: float
    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]
    rng: random.Random
    proxy: str | Literal[True] | None


class StreamReset(Exception):
    """The connection must be replaced: silence, no pong, or the venue asked for it."""


class WsLiquidationStream:
    """A venue's liquidation events over one websocket, reconnecting until :meth:`aclose`.

    ``healthy_after_s``: a connection that delivered events, or stayed up this long, resets the
    backoff; one that fails at once makes the next wait longer (base x 2^n, capped, jittered
    to 50-100 % so many clients do not reconnect in step).
    """

    venue: Venue
    ping_message: ClassVar[str]
    ping_when_idle: ClassVar[bool] = True  # ping after silence (OKX) or on a timer (Bybit)
    default_ping_interval_s: ClassVar[float] = 20.0

    def __init__(
        self,
        url: str,
        *,
        silence_timeout_s: float = 60.0,
        ping_interval_s: float | None = None,
        pong_timeout_s: float = 10.0,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        healthy_after_s: float = 30.0,
        open_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        proxy: str | Literal[True] | None = True,
    ) -> None:
        self.url = url
        self._silence = silence_timeout_s
        self._ping_interval = ping_interval_s or self.default_ping_interval_s
        self._pong_timeout = pong_timeout_s
        self._backoff_base, self._backoff_max = backoff_base_s, backoff_max_s
        self._healthy_after = healthy_after_s
        self._open_timeout = open_timeout_s
        self._clock, self._sleep = clock, sleep
        self._rng = rng or random.Random()
        self._proxy = proxy
        self._closed = False
        self._closed_event = asyncio.Event()
        self._iterating = False
        self._ws: ClientConnection | None = None
        self._connects = self._events = self._dropped = 0
        self._last_message_ms: int | None = None
        self._last_event_ms: int | None = None
        self._last_error: str | None = None
        self._rx_at = self._ping_at = 0.0
        self._ping_sent_at: float | None = None

    # --- what a venue provides ---------------------------------------------------------------

    def subscribe_messages(self) -> list[str]:
        raise NotImplementedError

    def handle(self, raw: Frame) -> list[LiqEvent]:
        """Events of one frame; JunkResponse if malformed, StreamReset to reconnect."""
        raise NotImplementedError

    async def prepare(self) -> None:
        """Called before every connection attempt (e.g. to fetch contract sizes)."""

    # --- the loop --------------------------------------------------------------------------

    def status(self) -> StreamStatus:
        return StreamStatus(
            venue=self.venue,
            url=self.url,
            connected=self._ws is not None,
            connects=self._connects,
            last_message_ms=self._last_message_ms,
            last_event_ms=self._last_event_ms,  # when we received the last event (our clock)
            events=self._events,
            dropped_frames=self._dropped,
            last_error=self._last_error,
        )

    async def aclose(self) -> None:
        self._closed = True
        self._closed_event.set()
        if self._ws is not None:
            await self._ws.close()

    async def __aenter__(self) -> WsLiquidationStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def events(self) -> AsyncGenerator[LiqEvent, None]:
        """Liquidation events as they arrive, across reconnects, until :meth:`aclose`."""
        if self._iterating:
            raise RuntimeError("events() is already being iterated")
        self._iterating = True
        failures = 0
        loop = asyncio.get_running_loop()
        try:
            while not self._closed:
                opened_at: float | None = None
                delivered = False
                try:
                    await self.prepare()
                    async with connect(
                        self.url,
                        ping_interval=None,  # app-level pings instead, as the venues ask
                        open_timeout=self._open_timeout,
                        close_timeout=2.0,
                        proxy=self._proxy,
                        user_agent_header="liqbot/0.1",
                    ) as ws:
                        self._ws, self._connects = ws, self._connects + 1
                        opened_at = self._rx_at = self._ping_at = loop.time()
                        self._ping_sent_at = None
                        for message in self.subscribe_messages():
                            await ws.send(message)
                        while True:
                            raw = await self._next_frame(ws, loop)
                            self._last_message_ms = int(self._clock() * 1000)
                            try:
                                batch = self.handle(raw)
                            except JunkResponse as exc:
                                self._dropped += 1
                                self._last_error = f"dropped frame: {exc}"
                                continue
                            if batch:
                                delivered = True
                                self._events += len(batch)
                                self._last_event_ms = self._last_message_ms
                                for event in batch:
                                    yield event
                except StreamReset as exc:
                    self._last_error = str(exc)
                except (OSError, TimeoutError, WebSocketException) as exc:
                    if not self._closed:  # our own aclose() is no error
                        self._last_error = f"{type(exc).__name__}: {exc}"
                finally:
                    self._ws = None
                if self._closed:
                    break
                if delivered or (
                    opened_at is not None and loop.time() - opened_at >= self._healthy_after
                ):
                    failures = 0
                await self._pause(self._backoff(failures))
                failures += 1
        finally:
            self._iterating = False

    async def _next_frame(self, ws: ClientConnection, loop: asyncio.AbstractEventLoop) -> Frame:
        """The next frame; pings when due, raises StreamReset on silence or a missing pong."""
        while True:
            now = loop.time()
            if now - self._rx_at >= self._silence:
                raise StreamReset(f"no message for {self._silence:g}s: reconnecting")
            if self._ping_sent_at is not None:
                if now - self._ping_sent_at >= self._pong_timeout:
                    raise StreamReset(f"no pong within {self._pong_timeout:g}s: reconnecting")
                due = self._ping_sent_at + self._pong_timeout
            else:
                since = max(self._rx_at, self._ping_at) if self.ping_when_idle else self._ping_at
                due = since + self._ping_interval
                if now >= due:
                    await ws.send(self.ping_message)
                    self._ping_at = self._ping_sent_at = now
                    continue
            try:
                async with asyncio.timeout(min(due, self._rx_at + self._silence) - now):
                    raw = await ws.recv()  # cancelling recv() loses no data (websockets docs)
            except TimeoutError:
                continue
            self._rx_at, self._ping_sent_at = loop.time(), None
            return raw

    def _backoff(self, failures: int) -> float:
        cap = min(self._backoff_max, self._backoff_base * 2.0**failures)
        return cap * (0.5 + 0.5 * self._rng.random())

    async def _pause(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or less if :meth:`aclose` is called meanwhile."""
        sleeper = asyncio.ensure_future(self._sleep(delay))
        closer = asyncio.ensure_future(self._closed_event.wait())
        try:
            await asyncio.wait({sleeper, closer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, closer):
                task.cancel()
            await asyncio.gather(sleeper, closer, return_exceptions=True)


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
        self.skipped_unknown = 0  # events of in-scope instruments with no known ctVal

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
        if raw == "pong":
            return []
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise JunkResponse("okx", f"frame is not JSON: {raw[:60]!r}") from None
        if msg.__class__ is not dict:
            raise JunkResponse("okx", f"frame is not a JSON object: {raw[:60]!r}")
        data = msg.get("data")
        if data is not None:
            arg = msg.get("arg")
            if arg.__class__ is not dict or arg.get("channel") != CHANNEL:
                raise JunkResponse("okx", f"data frame of an unexpected channel: {arg!r:.60}")
            events, skipped = parse_liquidation_data(data, self._ct_vals, self._inst_ids)
            self.skipped_unknown += skipped
            return events
        event = msg.get("event")
        if event == "notice":  # 64008: the venue will cut us for an upgrade; move now
            raise StreamReset(f"OKX notice {msg.get('code')}: {msg.get('msg')}")
        if event == "error":
            self._last_error = f"OKX error {msg.get('code')}: {msg.get('msg')}"
            return []
        if event in ("subscribe", "unsubscribe", "channel-conn-count"):
            return []
        raise JunkResponse("okx", f"unexpected frame: {raw[:60]!r}")
