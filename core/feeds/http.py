"""One resilient HTTP layer on httpx for every venue.

* Timeouts, and retries with exponential backoff and full jitter on network errors, 408 and 5xx.
* 429 waits for Retry-After (header, or ``retry_after`` in the body as SoSoValue sends it) and
  makes every later call of the venue wait too. Without one, the wait doubles per consecutive
  429 (1 s, 2 s, 4 s, ... up to ``backoff_max_s``): Binance bans IPs that keep going after 429s.
* 418 (Binance's IP ban), 403 (Bybit's IP ban, WAF) and 451 (geo-block) open the venue's
  circuit until the ban ends: no request goes out before then, which is what keeps a ban short.
  When it ends the circuit is half-open: one probe request goes first, and concurrent calls get
  :class:`CircuitOpen` until it has answered; a new ban re-opens the circuit.
* Request budgets per venue (``limits.py``), fed by the venue's own counter where it sends one
  (Binance ``X-MBX-USED-WEIGHT-1M``), so normal operation never reaches a limit. A call never
  waits longer than ``max_wait_s`` for its turn: it raises :class:`RateLimited` instead.
* A 2xx body is returned parsed, even when it holds an error envelope (OKX, Bybit): the venue
  layer judges envelopes. A 4xx goes through ``error_mapper``, else becomes :class:`VenueError`.
* :meth:`HttpClient.status` is what ``/status`` shows for the venue.

The clock, the sleep and the transport are injectable, so tests run against a local server or
an ``httpx.MockTransport`` without waiting real seconds. An injected sleep must let the clock
pass (advance a fake clock by the seconds asked), as a real sleep does.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
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
_BAN_REASONS = {
    418: "IP banned for ignoring rate limits",
    403: "forbidden: IP ban or firewall",
    451: "unavailable from this location",
}
_GEO_BLOCK_S = 3600.0  # a geo-block does not lift by itself; look again hourly
_MIN_OPEN_S = 1.0  # a ban stamp already past (clock skew) still opens the circuit briefly
_THROTTLE_FIRST_S = 1.0  # first wait after a 429 that names no wait; doubles per repeat


@dataclass(frozen=True)
class VenueStatus:
    """Health of one venue's HTTP side, as ``/status`` shows it."""

    venue: str
    state: str  # "ok", "degraded" (recent failures, probing), "open" (banned / circuit open)
    open_until_ms: int | None
    reason: str | None  # why open, or the last failure while degraded
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
        ban_statuses: Collection[int] = (418, 403, 451),
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
        # Which statuses mean "banned": Binance 418, Bybit 403, any venue's 451 geo-block. OKX
        # does not document 403 as a ban, so its client narrows this.
        self._ban_statuses = frozenset(ban_statuses) & set(_BAN_REASONS)
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._map_error = error_mapper
        self._open_until: float = 0.0
        self._open_reason: str | None = None
        self._half_open = False  # a ban has ended; the next request is a probe
        self._probing = False  # the probe is in flight
        self._slow_until: float = 0.0  # after a 429 (or 5xx with Retry-After): calls wait
        self._throttled = 0  # consecutive 429s, for the wait when none is named
        self._last_ok: float | None = None
        self._last_error: str | None = None
        self._failures = 0
        self._requests = 0

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
        if is_open:
            state, reason = "open", self._open_reason
        elif self._half_open:
            state, reason = "degraded", f"probing after {self._open_reason}"
        elif self._failures:
            state, reason = "degraded", self._last_error
        else:
            state, reason = "ok", None
        return VenueStatus(
            venue=self.venue,
            state=state,
            open_until_ms=round(self._open_until * 1000) if is_open else None,
            reason=reason,
            last_ok_ms=round(self._last_ok * 1000) if self._last_ok is not None else None,
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
        (for Binance, ``{"weight": 5}``); the default is one unit in every window. A window
        the venue does not have is a programming error (ValueError).
        """
        spend = (
            dict(costs) if costs is not None else dict.fromkeys(self._budget.limits.windows, 1.0)
        )
        self._budget.check(spend)
        attempt = 0
        while True:
            probe = await self._wait_turn(spend)
            try:
                result = await self._attempt(path, params)
            finally:
                if probe:
                    self._probing = False
            if probe and not isinstance(result, Banned):
                self._half_open = False  # the venue answered without banning us: closed
            if not isinstance(result, FeedError):
                self._last_ok, self._failures, self._throttled = self._clock(), 0, 0
                self._last_error = None
                return result
            self._note_failure(result)
            retry_in = self._retry_delay(result, attempt)
            if retry_in is None:
                raise result
            attempt += 1
            if retry_in > 0:
                await self._sleep(retry_in)

    async def _wait_turn(self, spend: dict[str, float]) -> bool:
        """Wait until the request may go, and count it; True if it is the half-open probe.

        The check and the spend run without an await between them, so concurrent calls never
        overspend; waits happen outside, and everything is checked again after each one.
        """
        while True:
            now = self._clock()
            if now < self._open_until:
                raise CircuitOpen(
                    self.venue,
                    f"circuit open for {self._open_until - now:.0f}s more ({self._open_reason})",
                    round(self._open_until * 1000),
                )
            if self._half_open and self._probing:
                raise CircuitOpen(
                    self.venue,
                    f"a probe is checking whether the ban has ended ({self._open_reason})",
                    round(now * 1000),
                )
            wait = max(self._slow_until - now, self._budget.delay(now, spend))
            if wait <= 0:
                self._budget.spend(now, spend)
                self._requests += 1
                if self._half_open:
                    self._probing = True
                return self._half_open
            if wait > self._max_wait:
                raise RateLimited(
                    self.venue,
                    f"rate limit needs a {wait:.0f}s wait, more than {self._max_wait:.0f}s",
                    wait,
                )
            await self._sleep(wait)

    async def _attempt(self, path: str, params: Mapping[str, str | int | float] | None) -> Any:
        """One request: the parsed body, or the FeedError it amounts to (returned, not raised)."""
        try:
            response = await self._client.get(path, params=params)
        except httpx.TimeoutException:
            return FeedUnavailable(self.venue, f"timed out on {path}")
        except httpx.DecodingError as exc:
            return JunkResponse(self.venue, f"{path} sent an undecodable body: {exc}")
        except httpx.RequestError as exc:
            return FeedUnavailable(self.venue, f"network error on {path}: {type(exc).__name__}")
        self._observe(response)
        return self._classify(response, path)

    def _observe(self, response: httpx.Response) -> None:
        used = response.headers.get("X-MBX-USED-WEIGHT-1M")
        if used is not None and "weight" in self._budget.limits.windows:
            try:  # a garbled header must not fail a good response
                figure = float(used)
            except ValueError:
                return
            self._budget.observe_used("weight", self._clock(), figure)

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
            return self._rate_limited(response, parsed, path)
        if status in self._ban_statuses:
            return self._open_circuit(status, response)
        if status >= 500 or status == 408:
            after = _retry_after(response, None, self._clock())
            if after is not None:
                self._slow_until = max(self._slow_until, self._clock() + after)
            return FeedUnavailable(self.venue, f"{path} answered HTTP {status}")
        mapped = self._map_error(status, parsed) if self._map_error else None
        if mapped is not None:
            return mapped
        code, msg = _code_msg(parsed)
        return VenueError(self.venue, f"{path} answered HTTP {status}: {msg or 'no message'}", code)

    def _rate_limited(self, response: httpx.Response, body: Any, path: str) -> RateLimited:
        after = _retry_after(response, body, self._clock())
        if after is None:
            after = min(self._backoff_max, _THROTTLE_FIRST_S * 2**self._throttled)
        after = max(after, self._backoff_base)  # "Retry-After: 0" must not become a hammer
        self._throttled += 1
        self._slow_until = max(self._slow_until, self._clock() + after)
        return RateLimited(self.venue, f"rate limited on {path}; retry after {after:g}s", after)

    def _open_circuit(self, status: int, response: httpx.Response) -> Banned:
        now = self._clock()
        candidates = []
        match = _BANNED_UNTIL.search(response.content[:2000].decode("utf-8", "replace"))
        if match:
            stamp = int(match.group(1))
            candidates.append(stamp / 1000 if stamp > 10**11 else float(stamp))
        after = _retry_after(response, None, now)
        if after is not None:
            candidates.append(now + after)
        if not candidates:
            candidates.append(now + (_GEO_BLOCK_S if status == 451 else self._ban_default))
        until = max(*candidates, now + _MIN_OPEN_S)
        reason = _BAN_REASONS[status]
        self._open_until = max(self._open_until, until)
        self._open_reason = f"HTTP {status}: {reason}"
        self._half_open = True
        return Banned(
            self.venue,
            f"{reason}; no requests for {self._open_until - now:.0f}s",
            round(self._open_until * 1000),
        )

    def _note_failure(self, error: FeedError) -> None:
        if isinstance(error, VenueError):
            # The venue answered coherently (e.g. an unknown symbol): it is up, not degraded.
            self._failures = 0
            return
        self._failures += 1
        self._last_error = str(error)

    def _retry_delay(self, error: FeedError, attempt: int) -> float | None:
        """Seconds to wait before retrying, or None to give up now.

        Waits named by the venue (429, Retry-After) are not slept here: ``_wait_turn`` honours
        ``_slow_until`` for this call and every concurrent one.
        """
        if attempt >= self._max_retries:
            return None
        if isinstance(error, RateLimited):
            return 0.0 if error.retry_after_s <= self._max_wait else None
        if isinstance(error, FeedUnavailable):
            if self._slow_until > self._clock():
                return 0.0
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


def _retry_after(response: httpx.Response, body: Any, now: float) -> float | None:
    """Seconds the venue asked us to wait: Retry-After (seconds or HTTP date), else the body's
    ``retry_after`` (top level or under ``details``, as SoSoValue sends it)."""
    raw = response.headers.get("Retry-After")
    if raw is not None:
        try:
            return _seconds(float(raw))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        return max(when.timestamp() - now, 0.0)
    if isinstance(body, dict):
        details = body.get("details")
        value = body.get("retry_after")
        if value is None and isinstance(details, dict):
            value = details.get("retry_after")
        if isinstance(value, int | float) and not isinstance(value, bool):
            return _seconds(float(value))
    return None


def _seconds(value: float) -> float | None:
    return max(value, 0.0) if math.isfinite(value) else None


def _code_msg(body: Any) -> tuple[str | int | None, str | None]:
    """(code, message) from the error bodies the venues send."""
    if not isinstance(body, dict):
        return None, None
    code = body.get("code", body.get("retCode"))
    msg = body.get("msg", body.get("retMsg", body.get("message")))
    return code, str(msg) if msg is not None else None
