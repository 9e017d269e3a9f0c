"""The fake venue API with faults a test switches on and off: down, failing, slow, banned.

:class:`FaultyVenueApi` is :class:`tests.fakes.venue_api.FakeVenueApi` (the same synthetic
market, the same clock, the same request log) plus one fault at a time, for the "exchange feeds
down, slow or banned for minutes" tests (DESIGN §6, §9). Real sockets throughout: the clients
under test see what they would see from a real venue having a bad day.

Usage::

    clock = ManualClock(T0)
    with FaultyVenueApi(["BTC"], clock=clock) as api:
        feed = BinanceRest(api.url, clock=clock, sleep=clock.sleep, timeout_s=0.4)
        api.refuse()                 # down: nothing listens on the port, connections refused
        api.fail(503)                # up, but every request answers HTTP 503
        api.slow(2.0)                # every answer takes 2 wall seconds (longer than a timeout)
        api.ban(until_s=T0 + 600)    # Binance's IP ban: 418 + Retry-After until then
        api.ban(until_s=..., status=429)  # Binance's 429 -1003 with a Retry-After of minutes
        api.heal()                   # healthy again (a ban also ends by itself at until_s)

Faults
------
``refuse()``
    The server stops and the port stays bound but not listening (so no other socket can take
    it), which the kernel answers with a reset: ``ECONNREFUSED``, as a venue whose front is
    down. Open keep-alive connections are closed. ``heal()`` listens on the same port again,
    so the clients' base URL stays right.
``fail(status=503)``
    Every request is answered ``status`` with a small JSON body (a 5xx: the venue is up but
    failing).
``slow(delay_s)``
    Every request waits ``delay_s`` wall seconds before its normal answer. ``heal()`` and
    ``stop()`` end the waits in progress at once, so nothing outlives the test.
``ban(until_s, status=418)``
    Binance's answers to an IP over its limits, until the server's clock reaches ``until_s``:
    418 ``{"code":-1003,"msg":"Way too many requests; IP(127.0.0.1) banned until <ms>..."}``,
    or with ``status=429`` the 429 -1003 answer; both carry ``Retry-After`` (seconds to
    ``until_s``). From ``until_s`` on, answers are normal again with no call to ``heal()``.

Every request that reaches the server is in ``requests`` (injected answers included, with their
status), so a test can check, e.g., that a banned client sent nothing until the ban's end.
A refused connection never reaches the server and is not logged.
"""

from __future__ import annotations

import math
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Self
from urllib.parse import parse_qs

import orjson

from tests.fakes.venue_api import ApiRequest, FakeVenueApi, _Server

FaultKind = Literal["refuse", "fail", "slow", "ban"]

_BINANCE_429 = (
    "Too many requests; current limit is 2400 requests per minute. Please use the websocket "
    "for live updates to avoid polling the API."
)


@dataclass(frozen=True)
class Fault:
    """The fault in force (see the module docstring)."""

    kind: FaultKind
    status: int = 503
    delay_s: float = 0.0
    until_s: float = math.inf  # a ban's end on the server's clock


class _PinnedServer(_Server):
    """The fake's HTTP server on a given port (to come back where the clients look for it)."""

    def __init__(self, api: FakeVenueApi, port: int) -> None:
        self._pin = port
        super().__init__(api)

    def server_bind(self) -> None:
        self.server_address = ("127.0.0.1", self._pin)
        super().server_bind()


class FaultyVenueApi(FakeVenueApi):
    """:class:`FakeVenueApi` with one switchable fault at a time (see the module docstring)."""

    def __init__(
        self,
        symbols: Iterable[str] = ("BTC", "ETH"),
        *,
        clock: Callable[[], float],
        **options: Any,
    ) -> None:
        super().__init__(symbols, clock=clock, **options)
        self._fault: Fault | None = None
        self._port: int | None = None
        self._holder: socket.socket | None = None  # keeps the port while "down"
        self._wake = threading.Event()  # ends slow answers in progress

    # lifecycle -----------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None or self._holder is not None:
            return self  # running, or down on purpose until heal()
        self._listen()
        return self

    def _listen(self) -> None:
        server = _Server(self) if self._port is None else _PinnedServer(self, self._port)
        self._port = int(server.server_address[1])
        if self._holder is not None:  # the listener has the port now: let the holder go
            self._holder.close()
            self._holder = None
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name="faulty-venue-api",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self._wake.set()
        super().stop()
        if self._holder is not None:
            self._holder.close()
            self._holder = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the fake venue API has not started")
        return self._port

    @property
    def url(self) -> str:
        """The base URL; it stays the same while the server is down."""
        return f"http://127.0.0.1:{self.port}"

    # faults --------------------------------------------------------------------------------

    @property
    def fault(self) -> Fault | None:
        """The fault in force (a ban past its end is none)."""
        f = self._fault
        if f is not None and f.kind == "ban" and self.clock() >= f.until_s:
            return None
        return f

    def refuse(self) -> None:
        """Down: connections to the port are refused until :meth:`heal`."""
        port = self.port
        self._set(Fault("refuse"))
        super().stop()  # closes the listener and every open connection
        holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", port))  # bound, never listening: the kernel refuses
        self._holder = holder

    def fail(self, status: int = 503) -> None:
        """Every request answers ``status`` until :meth:`heal`."""
        self._set(Fault("fail", status=status))

    def slow(self, delay_s: float) -> None:
        """Every answer waits ``delay_s`` wall seconds until :meth:`heal`."""
        self._set(Fault("slow", delay_s=delay_s))

    def ban(self, until_s: float, status: Literal[418, 429] = 418) -> None:
        """Binance's IP ban (418) or 429 -1003, with Retry-After, until ``until_s``."""
        self._set(Fault("ban", status=status, until_s=until_s))

    def heal(self) -> None:
        """No fault: a refused port listens again, slow answers in progress go out now."""
        self._set(None)
        if self._holder is not None:
            self._listen()

    def _set(self, fault: Fault | None) -> None:
        if self._holder is not None and fault is not None:
            raise RuntimeError("the server is down: heal() it before another fault")
        self._wake.set()  # whatever was slow answers now
        self._wake = threading.Event()
        self._fault = fault

    # serving -------------------------------------------------------------------------------

    def handle(self, path: str, query: str) -> tuple[int, bytes, dict[str, str]]:
        fault = self.fault
        if fault is not None and fault.kind == "slow":
            self._wake.wait(fault.delay_s)
        elif fault is not None and fault.kind in ("fail", "ban"):
            return self._injected(path, query, fault)
        return super().handle(path, query)

    def _injected(self, path: str, query: str, fault: Fault) -> tuple[int, bytes, dict[str, str]]:
        at = self.clock()
        headers = {"Content-Type": "application/json"}
        if fault.kind == "ban":
            retry = str(max(math.ceil(fault.until_s - at), 1))
            headers["Retry-After"] = retry
            if fault.status == 418:
                msg = (
                    f"Way too many requests; IP(127.0.0.1) banned until "
                    f"{int(fault.until_s * 1000)}. Please use the websocket for live updates "
                    "to avoid bans."
                )
            else:
                msg = _BINANCE_429
            body = orjson.dumps({"code": -1003, "msg": msg})
        else:
            body = orjson.dumps({"code": fault.status, "msg": "fake venue failure"})
        route = self._routes.get(path)
        params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        with self._lock:
            venue = route[0] if route is not None else "unknown"
            self._log.append(ApiRequest(venue, path, params, at, fault.status, {}))
        return fault.status, body, headers
