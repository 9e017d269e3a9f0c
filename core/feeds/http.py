"""One resilient HTTP layer on httpx for every venue.

* Timeouts, and retries with exponential backoff and full jitter on network errors and 5xx.
* 429 waits for Retry-After (and makes every later call of the venue wait too).
* 418 (Binance's IP ban), 403 (Bybit's IP ban, WAF) and 451 (geo-block) open the venue's
  circuit until the ban ends: no request goes out before then, which is what keeps a ban short.
* Request budgets per venue (``limits.py``), fed by the venue's own counter where it sends one
  (Binance ``X-MBX-USED-WEIGHT-1M``), so normal operation never reaches a limit.
* :meth:`HttpClient.status` is what ``/status`` shows for the venue.

The clock, the sleep and the transport are injectable, so tests run against a local server or
an ``httpx.MockTransport`` without waiting real seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from core.feeds.errors import (
    Banned,
    CircuitOpen,
    FeedError,
    FeedUnavailable,
    JunkResponse,
    RateLimited,
    VenueError,
)
from core.feeds.limits import Budget, VenueLimits

Clock = Callable[[], float]  # seconds since the epoch
Sleep = Callable[[float], Awaitable[None]]
# Maps a non-2xx answer (status, parsed body or None) to the venue's own error, or None.
ErrorMapper = Callable[[int, Any], FeedError | None]

_BANNED_UNTIL = re.compile(r"banned until (\d{10,13})")


@dataclass(frozen=True)
class VenueStatus:
    """Health of one venue's HTTP side, as ``/status`` shows it."""

    venue: str
    state: str  # "ok", "degraded" (recent failures), "open" (banned / circuit open)
    open_until_ms: int | None
    reason: str | None
    last_ok_ms: int | None
    consecutive_failures: int
    requests: int
    budget: dict[str, dict[str, float]]


class HttpClient:
    """GET JSON from one venue, politely and resiliently."""

    def __init__(
        self,
        venue: str,
        base_url: str,
        limits: VenueLimits,
        *,
        timeout_s: float = 10.0,
        max_retries: int = 4,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        max_wait_s: float = 120.0,
        ban_default_s: float = 600.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        error_mapper: ErrorMapper | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.venue = venue
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout_s,
            transport=transport,
            headers={"User-Agent": "liqbot/0.1", **(headers or {})},
        )
        self._budget = Budget(limits)
        self._max_retries = max_retries
        self._backoff_base = backoff_base_s
        self._backoff_max = backoff_max_s
        self._max_wait = max_wait_s
        self._ban_default = ban_default_s
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._map_error = error_mapper
        self._open_until: float = 0.0
        self._open_reason: str | None = None
        self._slow_until: float = 0.0  # after a 429: every call waits until then
        self._last_ok: float | None = None
        self._failures = 0
        self._requests = 0
        self._lock = asyncio.Lock()  # budget checks and spends happen one call at a time

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def requests_sent(self) -> int:
        return self._requests

    def status(self) -> VenueStatus:
        now = self._clock()
        is_open = now < self._open_until
        state = "open" if is_open else "degraded" if self._failures else "ok"
        return VenueStatus(
            venue=self.venue,
            state=state,
            open_until_ms=int(self._open_until * 1000) if is_open else None,
            reason=self._open_reason if is_open else None,
            last_ok_ms=int(self._last_ok * 1000) if self._last_ok is not None else None,
            consecutive_failures=self._failures,
            requests=self._requests,
            budget=self._budget.snapshot(now),
        )

    async def get_json(
        self,
        path: str,
        params: Mapping[str, str | int | float] | None = None,
        *,
        costs: Mapping[str, float] | None = None,
    ) -> Any:
        """The parsed JSON body of ``GET path``; raises a :class:`FeedError` subclass.

        ``costs`` names the budget windows the request counts against and its cost in each
        (for Binance, ``{"weight": 5}``); the default is one unit in every window.
        """
        spend = (
            dict(costs) if costs is not None else dict.fromkeys(self._budget.limits.windows, 1.0)
        )
        attempt = 0
        while True:
            await self._wait_turn(spend)
            try:
                response = await self._client.get(path, params=params)
            except httpx.TimeoutException:
                error: FeedError = FeedUnavailable(self.venue, f"timed out on {path}")
            except httpx.TransportError as exc:
                error = FeedUnavailable(
                    self.venue, f"network error on {path}: {type(exc).__name__}"
                )
            else:
                self._observe(response)
                result = self._classify(response, path)
                if not isinstance(result, FeedError):
                    self._last_ok, self._failures = self._clock(), 0
                    return result
                error = result
            self._failures += 1
            retry_in = self._retry_delay(error, attempt)
            if retry_in is None:
                raise error
            attempt += 1
            await self._sleep(retry_in)

    async def _wait_turn(self, spend: dict[str, float]) -> None:
        async with self._lock:
            now = self._clock()
            if now < self._open_until:
                raise CircuitOpen(
                    self.venue,
                    f"circuit open for {self._open_until - now:.0f}s more ({self._open_reason})",
                    int(self._open_until * 1000),
                )
            wait = max(self._slow_until - now, self._budget.delay(now, spend))
            if wait > 0:
                await self._sleep(wait)
            self._budget.spend(self._clock(), spend)
            self._requests += 1

    def _observe(self, response: httpx.Response) -> None:
        used = response.headers.get("X-MBX-USED-WEIGHT-1M")
        if used is not None and "weight" in self._budget.limits.windows:
            # A garbled header must not fail a good response.
            with contextlib.suppress(ValueError):
                self._budget.observe_used("weight", self._clock(), float(used))

    def _classify(self, response: httpx.Response, path: str) -> Any:
        """The parsed body of a good answer, or the FeedError it amounts to."""
        status = response.status_code
        body = _parse(response.content)
        if 200 <= status < 300:
            if body is _JUNK:
                snippet = response.content[:60].decode("utf-8", "replace")
                return JunkResponse(self.venue, f"{path} answered with invalid JSON: {snippet!r}")
            return body
        parsed = None if body is _JUNK else body
        if status == 429:
            after = _retry_after(response) or 1.0
            self._slow_until = self._clock() + after
            return RateLimited(
                self.venue, f"rate limited on {path}; retry after {after:.0f}s", after
            )
        if status in (418, 403, 451):
            return self._open_circuit(status, response, parsed)
        if status >= 500:
            return FeedUnavailable(self.venue, f"{path} answered HTTP {status}")
        mapped = self._map_error(status, parsed) if self._map_error else None
        if mapped is not None:
            return mapped
        code, msg = _code_msg(parsed)
        return VenueError(self.venue, f"{path} answered HTTP {status}: {msg or 'no message'}", code)

    def _open_circuit(self, status: int, response: httpx.Response, body: Any) -> Banned:
        now = self._clock()
        _, msg = _code_msg(body)
        until = None
        match = _BANNED_UNTIL.search(msg or "")
        if match:
            stamp = int(match.group(1))
            until = stamp / 1000 if stamp > 10**11 else float(stamp)
        after = _retry_after(response)
        if until is None and after is not None:
            until = now + after
        if until is None:
            until = now + (3600.0 if status == 451 else self._ban_default)
        reason = {
            418: "IP banned for ignoring rate limits",
            403: "forbidden: IP ban or firewall",
            451: "unavailable from this location",
        }[status]
        self._open_until, self._open_reason = until, f"HTTP {status}: {reason}"
        return Banned(
            self.venue,
            f"{reason}; no requests until {until - now:.0f}s from now",
            int(until * 1000),
        )

    def _retry_delay(self, error: FeedError, attempt: int) -> float | None:
        """Seconds to wait before retrying, or None to give up now."""
        if attempt >= self._max_retries:
            return None
        if isinstance(error, RateLimited):
            return error.retry_after_s if error.retry_after_s <= self._max_wait else None
        if isinstance(error, FeedUnavailable):
            # Full jitter: spreads the retries of many clients instead of synchronising them.
            cap = min(self._backoff_max, self._backoff_base * 2**attempt)
            return self._rng.uniform(0, cap)
        return None  # bans, venue errors and junk are not fixed by asking again at once


_JUNK = object()


def _parse(content: bytes) -> Any:
    if not content:
        return _JUNK
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return _JUNK


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return max(float(raw), 0.0)
    except ValueError:
        return None


def _code_msg(body: Any) -> tuple[str | int | None, str | None]:
    """(code, message) from the error bodies the venues send."""
    if not isinstance(body, dict):
        return None, None
    code = body.get("code", body.get("retCode"))
    msg = body.get("msg", body.get("retMsg", body.get("message")))
    return code, str(msg) if msg is not None else None
