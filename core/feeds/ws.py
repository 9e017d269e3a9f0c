"""The one reconnecting websocket loop every liquidation stream runs on.

:class:`WsLiquidationStream` is venue-neutral. A venue subclass gives the URL, what to send on
connect (:meth:`~WsLiquidationStream.subscribe_messages`), its keepalive style (class
attributes), and :meth:`~WsLiquidationStream.handle`, which turns one frame into events with the
venue's pure parser. The loop:

* connects, subscribes, and resubscribes on every new connection;
* reconnects after any drop with exponential backoff and jitter (``base x 2^n``, capped at
  ``backoff_max_s``, jittered to 50-100 % so many clients do not reconnect in step). The backoff
  starts over once a connection has delivered a frame, or stayed up ``healthy_after_s``;
* keeps the connection alive one of two ways: an app-level text ping (``ping_message``; OKX
  sends ``ping`` after ``ping_interval_s`` of silence, Bybit ``{"op":"ping"}`` on a timer) that
  must be answered within ``pong_timeout_s``, or, when ``ping_message`` is None (Binance), the
  ``websockets`` library's own ping/pong, which also answers the venue's pings;
* treats ``silence_timeout_s`` without any frame as a dead connection;
* with ``max_connection_age_s``, replaces a connection before the venue ends it (Binance's 24 h
  limit) at once, without backoff and without counting it as an error;
* counts frames: malformed ones are dropped (``dropped_frames``), valid ones that carry nothing
  for us are filtered (``filtered_frames``); events the venue sent that cannot be read without
  guessing are ``skipped`` (OKX: no contract size yet). Nothing half-parsed is ever yielded;
* ends when :meth:`~WsLiquidationStream.aclose` is called, also for a consumer waiting on a
  frame, a connection attempt or a backoff.

``clock`` (epoch seconds) stamps the status and ages connections; ``sleep`` and ``rng`` drive
the backoff, so tests control time.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, ClassVar, Literal, TypedDict

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from core.errors import InputError
from core.feeds.base import StreamStatus
from core.feeds.errors import JunkResponse
from core.feeds.types import LiqEvent, Venue

Frame = str | bytes
_INF = float("inf")


class WsOptions(TypedDict, total=False):
    """Keyword options every stream accepts (see :class:`WsLiquidationStream`)."""

    silence_timeout_s: float
    ping_interval_s: float
    pong_timeout_s: float
    backoff_base_s: float
    backoff_max_s: float
    healthy_after_s: float
    open_timeout_s: float
    close_timeout_s: float
    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]
    rng: random.Random
    proxy: str | Literal[True] | None


class StreamReset(Exception):
    """The connection must be replaced: silence, no pong, a drop, or the venue asked for it."""


class _Rollover(StreamReset):
    """The connection reached ``max_connection_age_s``: replace it now, no backoff, no error."""


def frame_text(raw: Frame, n: int = 60) -> str:
    """``repr`` of the first ``n`` characters of a frame, for error messages."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return repr(text[:n])


def error_text(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class WsLiquidationStream:
    """A venue's liquidation events over one websocket, reconnecting until :meth:`aclose`.

    ``ping_interval_s`` is the app-level ping period (None: the venue's default). For a venue
    without app pings (``ping_message`` None) it and ``pong_timeout_s`` configure the library's
    keepalive instead, None turning it off.
    """

    venue: Venue
    ping_message: ClassVar[str | None] = None  # None: the websockets library pings
    ping_when_idle: ClassVar[bool] = True  # ping after silence (OKX) or on a timer (Bybit)
    default_ping_interval_s: ClassVar[float] = 20.0
    # Status and close texts; a venue may word them its own way (/status shows them).
    silence_text: ClassVar[str] = "no message for {s:g}s: reconnecting"
    dropped_text: ClassVar[str] = "dropped frame: {exc}"
    rollover_reason: ClassVar[str] = "connection age limit"

    def __init__(
        self,
        url: str,
        *,
        silence_timeout_s: float = 60.0,
        ping_interval_s: float | None = None,
        pong_timeout_s: float | None = 10.0,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        healthy_after_s: float | None = 30.0,
        open_timeout_s: float = 10.0,
        close_timeout_s: float = 2.0,
        max_connection_age_s: float | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        proxy: str | Literal[True] | None = True,
    ) -> None:
        if silence_timeout_s <= 0 or (
            max_connection_age_s is not None and max_connection_age_s <= 0
        ):
            raise InputError("silence_timeout_s and max_connection_age_s must be positive")
        self.url = url
        self._silence = silence_timeout_s
        self._max_age = max_connection_age_s
        app_ping = self.ping_message is not None
        self._ping_interval = (
            (ping_interval_s or self.default_ping_interval_s) if app_ping else _INF
        )
        self._pong_timeout = (pong_timeout_s or 10.0) if app_ping else _INF  # None: 10 s
        self._connect_options: dict[str, Any] = {
            "open_timeout": open_timeout_s,
            "close_timeout": close_timeout_s,
            "ping_interval": None if app_ping else ping_interval_s,
            "ping_timeout": None if app_ping else pong_timeout_s,
            "proxy": proxy,
            "max_size": 2**20,
            "user_agent_header": "liqbot/0.1",
        }
        self._backoff_base, self._backoff_max = backoff_base_s, backoff_max_s
        self._healthy_after = _INF if healthy_after_s is None else healthy_after_s
        self._clock, self._sleep = clock, sleep
        self._rng = rng or random.Random()
        self._closed = asyncio.Event()
        self._iterating = False
        self._ws: ClientConnection | None = None
        self._subscribed = False
        self._connects = self._events = self._dropped = 0
        self.filtered_frames = 0  # valid frames with nothing for us (acks, pongs, other markets)
        self.skipped = 0  # events we could not read without guessing
        self._last_message_ms: int | None = None
        self._last_event_ms: int | None = None
        self._last_error: str | None = None
        # Per connection: when it opened (clock), last frame / ping (loop time), ping in flight.
        self._born = self._rx_at = self._ping_at = 0.0
        self._ping_sent_at: float | None = None

    # --- what a venue provides ---------------------------------------------------------------

    def subscribe_messages(self) -> list[str]:
        """Sent on every new connection; [] when the URL itself subscribes."""
        return []

    def handle(self, raw: Frame) -> list[LiqEvent]:
        """Events of one frame; JunkResponse if malformed, StreamReset to reconnect."""
        raise NotImplementedError

    async def prepare(self) -> None:
        """Called before every connection attempt (e.g. to fetch contract sizes)."""

    def mark_subscribed(self) -> None:
        """The venue confirmed the subscription (``handle`` calls this on the ack)."""
        self._subscribed = True

    # --- status ------------------------------------------------------------------------------

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
            filtered_frames=self.filtered_frames,
            skipped=self.skipped,
            subscribed=self._subscribed,
        )

    async def aclose(self) -> None:
        """End ``events()``: closes the connection and wakes any wait."""
        self._closed.set()
        ws = self._ws
        if ws is not None:
            await ws.close()

    async def __aenter__(self) -> WsLiquidationStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- the loop ----------------------------------------------------------------------------

    async def events(self) -> AsyncGenerator[LiqEvent, None]:
        """Liquidation events as they arrive, across reconnects, until :meth:`aclose`."""
        if self._iterating:
            raise RuntimeError("events() is already being iterated; the stream has one consumer")
        self._iterating = True
        loop = asyncio.get_running_loop()
        attempt = 0  # connections in a row that failed before they were healthy
        try:
            while not self._closed.is_set():
                await self._until_closed(self.prepare())
                ws = await self._open() if not self._closed.is_set() else None
                if ws is None:
                    if self._closed.is_set():
                        break
                    await self._until_closed(self._sleep(self._delay(attempt)))
                    attempt += 1
                    continue
                self._born = self._clock()
                opened = self._rx_at = self._ping_at = loop.time()
                self._ping_sent_at = None
                healthy = rollover = False
                reason = "stream closed"
                try:
                    messages = self.subscribe_messages()
                    for message in messages:
                        await self._send(ws, message)
                    self._subscribed = not messages
                    while True:
                        raw = await self._next_frame(ws, loop)
                        healthy = True
                        self._last_message_ms = now_ms = int(self._clock() * 1000)
                        try:
                            batch = self.handle(raw)
                        except JunkResponse as exc:
                            self._dropped += 1
                            self._last_error = self.dropped_text.format(exc=exc)
                            continue
                        if not batch:
                            self.filtered_frames += 1
                            continue
                        self._subscribed = True
                        self._events += len(batch)
                        self._last_event_ms = now_ms
                        for event in batch:
                            yield event
                except _Rollover:
                    reason, rollover = self.rollover_reason, True
                except StreamReset as exc:
                    reason = "reconnecting"
                    if not self._closed.is_set():  # our own aclose() is no error
                        self._last_error = str(exc)
                finally:
                    await self._drop(ws, reason)
                if self._closed.is_set():
                    break
                if rollover:
                    continue
                if healthy or loop.time() - opened >= self._healthy_after:
                    attempt = 0
                await self._until_closed(self._sleep(self._delay(attempt)))
                attempt += 1
        finally:
            self._iterating = False

    async def _open(self) -> ClientConnection | None:
        """A new connection; None when it failed (last_error says why) or aclose() came."""
        try:
            ws: ClientConnection | None = await self._until_closed(
                connect(self.url, **self._connect_options)
            )
        except Exception as exc:  # DNS, refused, TLS, HTTP 4xx/5xx, handshake timeout, ...
            self._last_error = f"connect failed: {error_text(exc)}"
            return None
        if ws is not None and self._closed.is_set():  # aclose() raced the handshake
            await ws.close()
            return None
        if ws is not None:
            self._ws = ws
            self._connects += 1
        return ws

    async def _next_frame(self, ws: ClientConnection, loop: asyncio.AbstractEventLoop) -> bytes:
        """The next frame; pings when due, raises StreamReset on silence, no pong or a drop."""
        while True:
            now = loop.time()
            age_due = _INF
            if self._max_age is not None:
                age_left = self._max_age - (self._clock() - self._born)
                if age_left <= 0:
                    raise _Rollover(self.rollover_reason)
                age_due = now + age_left
            if now - self._rx_at >= self._silence:
                raise StreamReset(self.silence_text.format(s=self._silence))
            if self._ping_sent_at is not None:
                if now - self._ping_sent_at >= self._pong_timeout:
                    raise StreamReset(f"no pong within {self._pong_timeout:g}s: reconnecting")
                ping_due = self._ping_sent_at + self._pong_timeout
            else:
                since = max(self._rx_at, self._ping_at) if self.ping_when_idle else self._ping_at
                ping_due = since + self._ping_interval
                if now >= ping_due and self.ping_message is not None:
                    await self._send(ws, self.ping_message)
                    self._ping_at = self._ping_sent_at = now
                    continue
            try:
                async with asyncio.timeout(
                    min(ping_due, age_due, self._rx_at + self._silence) - now
                ):
                    raw = await ws.recv(decode=False)  # cancelling recv() loses no data
            except TimeoutError:
                continue
            except ConnectionClosed as exc:
                raise StreamReset(f"connection closed ({error_text(exc)})") from None
            except Exception as exc:
                raise StreamReset(f"receive failed: {error_text(exc)}") from None
            self._rx_at, self._ping_sent_at = loop.time(), None
            return raw

    async def _send(self, ws: ClientConnection, message: str) -> None:
        try:
            await ws.send(message)
        except ConnectionClosed as exc:
            raise StreamReset(f"connection closed ({error_text(exc)})") from None
        except Exception as exc:
            raise StreamReset(f"send failed: {error_text(exc)}") from None

    async def _drop(self, ws: ClientConnection, reason: str) -> None:
        self._ws = None
        self._subscribed = False
        with contextlib.suppress(Exception):
            await ws.close(code=1000, reason=reason)

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with jitter: 50-100 % of ``base x 2^attempt``, capped."""
        ceiling = min(self._backoff_max, self._backoff_base * 2.0 ** min(attempt, 30))
        return ceiling * (0.5 + 0.5 * self._rng.random())

    async def _until_closed(self, aw: Awaitable[Any]) -> Any:
        """Await ``aw`` unless aclose() comes first (then cancel it and return None)."""
        task = asyncio.ensure_future(aw)
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait((task, closed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
            if not task.done():  # aclose() came first, or we were cancelled ourselves
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return None if task.cancelled() else task.result()
