"""A real, scriptable HTTP/1.1 server on 127.0.0.1 for feed fault tests (DESIGN §9).

It listens on a real socket (port 0, so the OS picks a free port) and serves from a thread, so
it works under async tests (the event loop stays free), sync tests and subprocesses alike.

Usage::

    from tests.fakes.http_server import FakeHttpServer, Reply

    @pytest.fixture
    def server() -> Iterator[FakeHttpServer]:
        with FakeHttpServer() as srv:  # ``async with`` works too
            yield srv

    async def test_retry(server: FakeHttpServer) -> None:
        server.script(
            "/fapi/v1/klines",
            Reply(status=503),
            Reply.json([[1, "2"]], headers={"X-MBX-USED-WEIGHT-1M": "12"}),
        )
        client = HttpClient("binance", server.url, ...)
        ...
        assert server.count("/fapi/v1/klines") == 2
        assert server.requests[0].query == {"symbol": ["BTCUSDT"]}

API
---
``FakeHttpServer(clock=time.monotonic)``
    ``clock`` stamps each request's arrival (``Recorded.at``); pass a test's fake clock to
    compare arrivals with the times the client under test believes it sent them.
``start()`` / ``stop()``, or ``with`` / ``async with``
    ``stop()`` is idempotent. It interrupts pending delays and gates, closes open keep-alive
    connections and joins every handler thread, so nothing outlives the test.
``url``
    ``"http://127.0.0.1:<port>"`` (no trailing slash). ``port`` is there too.
``script(path, *replies)``
    Append replies to ``path``'s queue (path only, without the query). Each request to the
    path takes the next one, in order.
``always(path, reply)``
    What ``path`` answers once its queue is empty (default: 404 JSON naming the path).
``requests`` / ``requests_to(path)`` / ``count(path=None)``
    Copies of the request log: every request that reached the server, in arrival order, as
    :class:`Recorded` (method, path, query dict of lists, raw query, lower-cased headers, body
    bytes, arrival time). A request is logged on arrival, before any delay.
``pending(path)``
    How many scripted replies for ``path`` are still queued.
``wait_for_requests(n, timeout_s=5.0, path=None)``
    Block (a thread-blocking call; from async code use ``await asyncio.to_thread(...)``)
    until at least ``n`` requests (to ``path``) have arrived; returns whether they did.
``errors``
    Unexpected exceptions raised in handler threads (client disconnects are not errors).

:class:`Reply` fields (all optional)
    ``status`` (200), ``body`` (bytes), ``headers`` (Content-Length is added unless given),
    ``delay_s`` (sleep before answering; stop() interrupts it), ``gate`` (a
    ``threading.Event`` to wait for before answering, e.g. to hold requests in flight),
    ``close`` (after the delay, close the connection without answering), ``truncate_at``
    (announce the full Content-Length but send only this many body bytes, then close).
    ``Reply.json(obj, status=200, **fields)`` and ``Reply.text(str, status=200, **fields)``
    build a body with the matching Content-Type.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Reply:
    """One scripted answer (see the module docstring)."""

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    gate: threading.Event | None = None
    close: bool = False
    truncate_at: int | None = None

    @classmethod
    def json(cls, obj: Any, status: int = 200, **fields: Any) -> Reply:
        headers = {"Content-Type": "application/json", **fields.pop("headers", {})}
        return cls(status=status, body=json.dumps(obj).encode(), headers=headers, **fields)

    @classmethod
    def text(cls, text: str, status: int = 200, **fields: Any) -> Reply:
        headers = {"Content-Type": "text/plain; charset=utf-8", **fields.pop("headers", {})}
        return cls(status=status, body=text.encode(), headers=headers, **fields)


@dataclass(frozen=True)
class Recorded:
    """One request as it reached the server."""

    method: str
    path: str
    query: dict[str, list[str]]
    raw_query: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    at: float  # the server's clock on arrival


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # joined on close, so no handler outlives stop()
    block_on_close = True

    def __init__(self, fake: FakeHttpServer) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # the client went away (timeout, reset): not our fault
            return
        if exc is not None:
            self.fake.errors.append(exc)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real venues do
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.fake._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _serve(self) -> None:
        fake = self.server.fake
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        reply = fake._arrive(
            Recorded(
                method=self.command,
                path=split.path,
                query=parse_qs(split.query, keep_blank_values=True),
                raw_query=split.query,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                at=fake.clock(),
            )
        )
        if reply.gate is not None:
            while not reply.gate.wait(0.02):
                if fake._stopping.is_set():
                    break
        if reply.delay_s > 0:
            fake._stopping.wait(reply.delay_s)
        if reply.close or fake._stopping.is_set():
            self.close_connection = True
            return
        self.send_response(reply.status)
        sent_length = False
        for name, value in reply.headers.items():
            sent_length |= name.lower() == "content-length"
            self.send_header(name, value)
        if not sent_length:
            self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if reply.truncate_at is not None:
            self.wfile.write(reply.body[: reply.truncate_at])
            self.wfile.flush()
            self.close_connection = True
            return
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve


class FakeHttpServer:
    """A scriptable local HTTP server (see the module docstring for the API)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.errors: list[BaseException] = []
        self._lock = threading.Condition()
        self._queues: dict[str, deque[Reply]] = {}
        self._always: dict[str, Reply] = {}
        self._log: list[Recorded] = []
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name="fake-http-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()
        server.shutdown()  # stop accepting; returns once serve_forever has left
        thread.join()
        with self._lock:
            conns = list(self._connections)
        for conn in conns:  # wake handlers blocked reading an idle keep-alive connection
            _shutdown(conn)
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
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the fake server is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # scripting

    def script(self, path: str, *replies: Reply) -> None:
        with self._lock:
            self._queues.setdefault(path, deque()).extend(replies)

    def always(self, path: str, reply: Reply) -> None:
        with self._lock:
            self._always[path] = reply

    def pending(self, path: str) -> int:
        with self._lock:
            return len(self._queues.get(path, ()))

    # the log

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._log)

    def requests_to(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    def count(self, path: str | None = None) -> int:
        return len(self.requests if path is None else self.requests_to(path))

    def wait_for_requests(self, n: int, timeout_s: float = 5.0, path: str | None = None) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while sum(1 for r in self._log if path is None or r.path == path) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
            return True

    # called from handler threads

    def _arrive(self, request: Recorded) -> Reply:
        with self._lock:
            self._log.append(request)
            self._lock.notify_all()
            queue = self._queues.get(request.path)
            if queue:
                return queue.popleft()
            fallback = self._always.get(request.path)
        if fallback is not None:
            return fallback
        return Reply.json({"error": f"no scripted reply for {request.path}"}, status=404)

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)
        if add and self._stopping.is_set():  # arrived while stop() ran: do not block it
            _shutdown(conn)


def _shutdown(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)
