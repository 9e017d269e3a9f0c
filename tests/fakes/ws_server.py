"""A real, scriptable websocket server on 127.0.0.1 for the liquidation-stream tests (DESIGN §9).

It is a ``websockets`` server on port 0 (the OS picks a free port) in the test's event loop. Each
client connection is a :class:`WsConn`: what the client sent is recorded, and the test sends
frames (real samples or malformed ones), goes silent, closes or drops the connection, either
step by step or through a script given up front.

Usage::

    from tests.fakes.ws_server import FakeWsServer, play

    async def test_interactive() -> None:
        async with FakeWsServer(pong={"ping": "pong"}) as server:
            stream = SomeStream(url=server.url, ...)
            ...
            conn = await server.next_conn()
            assert await conn.expect() == SUBSCRIBE  # the next message the client sent
            await conn.send(sample_frame, "garbage")
            await conn.drop()  # the TCP connection dies, no close frame

    async def test_scripted() -> None:
        async with FakeWsServer(play(f1, f2, then="abort"), play(f3)) as server:
            ...  # connection 0 plays the first script, every later one the last
            assert server.paths == ["/market/stream?streams=!forceOrder@arr", ...]
            assert server.closes[0] == (1000, "24h rollover")

API
---
``FakeWsServer(*scripts, pong=None)``
    ``scripts``: connection i runs ``scripts[i]`` (the last one repeats); without scripts a
    connection just records and waits for the test. ``pong`` maps a client text message to the
    reply sent at once (a venue's app-level pong); it may be changed while the server runs.
``start()`` / ``stop()``, or ``async with``
    ``stop()`` closes every connection and the listening socket; it is idempotent.
``url``
    ``"ws://127.0.0.1:<port>"`` (no path, no trailing slash); ``port`` is there too.
``next_conn(timeout_s=5.0)``
    The next connection not yet handed out, in arrival order (waits for it).
``conns`` / ``paths`` / ``closes``
    Every connection so far; their request paths (with the query); and ``(code, reason)`` of
    those that have closed, as the server saw the client's close, in connection order.
``closed_url(path="")``
    A ``ws://`` URL on a port where nothing listens: every connection attempt is refused.

:class:`WsConn`
    ``ws`` (the ``ServerConnection``), ``path``, ``received`` (text of every client message, in
    order), ``expect(timeout_s=5.0)`` (the next client message not yet expected), ``send(*frames)``
    (str frames go as text, bytes as binary), ``close(code=1000, reason="")`` (a clean close),
    ``drop()`` (abort the TCP connection without a close frame), ``hold()`` (go silent until the
    client closes), ``closed`` (an ``asyncio.Event``) and ``close_code`` / ``close_reason``.

:func:`play` ``(*frames, then="hold")``
    A script: send ``frames``, then ``"hold"`` the line open and silent, ``"close"`` it, or
    ``"abort"`` the TCP connection. Any ``async def script(conn: WsConn)`` works as a script too.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Literal, Self

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

LIMIT_S = 5.0  # default bound of every wait

Script = Callable[["WsConn"], Awaitable[None]]


class WsConn:
    """One client connection as the server sees it."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.path = ws.request.path if ws.request is not None else ""
        self.received: list[str] = []
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._inbox: asyncio.Queue[str] = asyncio.Queue()

    async def expect(self, timeout_s: float = LIMIT_S) -> str:
        """The next message the client sent (text; binary is decoded as UTF-8)."""
        return await asyncio.wait_for(self._inbox.get(), timeout_s)

    async def send(self, *frames: str | bytes) -> None:
        for frame in frames:
            await self.ws.send(frame)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.ws.close(code, reason)

    async def drop(self) -> None:
        """Abort the TCP connection: the client sees no close frame."""
        self.ws.transport.abort()
        await self.ws.wait_closed()

    async def hold(self) -> None:
        """Send nothing more; return when the client has closed the connection."""
        await self.ws.wait_closed()


def play(*frames: str | bytes, then: Literal["hold", "close", "abort"] = "hold") -> Script:
    """A script that sends ``frames``, then holds the line silent, closes it, or aborts it."""

    async def script(conn: WsConn) -> None:
        await conn.send(*frames)
        if then == "close":
            await conn.close()
        elif then == "abort":
            await conn.drop()
        else:
            await conn.hold()

    return script


def closed_url(path: str = "") -> str:
    """A URL on a port where nothing listens (bound and released): connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"ws://127.0.0.1:{port}{path}"


class FakeWsServer:
    """A websockets server on 127.0.0.1 port 0 (see the module docstring)."""

    def __init__(self, *scripts: Script, pong: Mapping[str, str] | None = None) -> None:
        self.scripts = list(scripts)
        self.pong: dict[str, str] = dict(pong or {})
        self.conns: list[WsConn] = []
        self._pending: asyncio.Queue[WsConn] = asyncio.Queue()
        self._server: Server | None = None

    async def start(self) -> Self:
        self._server = await serve(self._handler, "127.0.0.1", 0)
        return self

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not running: use start() or async with")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def paths(self) -> list[str]:
        return [c.path for c in self.conns]

    @property
    def closes(self) -> list[tuple[int | None, str | None]]:
        return [(c.close_code, c.close_reason) for c in self.conns if c.closed.is_set()]

    async def next_conn(self, timeout_s: float = LIMIT_S) -> WsConn:
        return await asyncio.wait_for(self._pending.get(), timeout_s)

    async def _handler(self, ws: ServerConnection) -> None:
        conn = WsConn(ws)
        i = len(self.conns)
        self.conns.append(conn)
        await self._pending.put(conn)
        reader = asyncio.create_task(self._read(conn))
        if self.scripts:
            with contextlib.suppress(Exception):
                await self.scripts[min(i, len(self.scripts) - 1)](conn)
        await ws.wait_closed()
        await reader
        conn.close_code, conn.close_reason = ws.close_code, ws.close_reason
        conn.closed.set()

    async def _read(self, conn: WsConn) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in conn.ws:
                text = message if isinstance(message, str) else message.decode()
                conn.received.append(text)
                reply = self.pong.get(text)
                if reply is not None:
                    await conn.ws.send(reply)
                conn._inbox.put_nowait(text)
