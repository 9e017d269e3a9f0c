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
* :meth:`HttpClient.get_json` and :meth:`HttpClient.post_json` return a 2xx body parsed, even
  when it holds an error envelope (OKX, Bybit): the venue layer judges envelopes.
  :meth:`HttpClient.get_text` returns it as text (an HTML page), never parsed. A 4xx goes
  through ``error_mapper``, else becomes :class:`VenueError`.
* ``secret_headers`` (an API key's header): their values are masked as ``***`` in every error
  the client builds (a venue echoing the key in an error body included), and in any error raised
  inside :meth:`HttpClient.redacting`, for the venue layer's own parsing of 2xx bodies.
* :meth:`HttpClient.status` is what ``/status`` shows for the venue.

The clock, the sleep and the transport are injectable, so tests run against a local server or
an ``httpx.MockTransport`` without waiting real seconds. An injected sleep must let the clock
pass (advance a fake clock by the seconds asked), as a real sleep does.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from core.errors import InputError
from core.feeds.answers import (
    JUNK,
    banned_until,
    code_and_message,
    parse_body,
    redact,
    redact_error,
    retry_after,
)
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
Params = Mapping[str, str | int | float] | None
# Maps a non-2xx answer (status, parsed body or None) to the venue's own error, or None.
ErrorMapper = Callable[[int, Any], FeedError | None]

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
    """GET (and POST) one venue's JSON or pages, politely and resiliently."""

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
        secret_headers: Collection[str] = (),
    ) -> None:
        self.venue = venue
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout_s,
            transport=transport,
            headers={"User-Agent": "liqbot/0.1", **(headers or {})},
        )
        values = {self._client.headers.get(name, "") for name in secret_headers} - {""}
        self._secrets = sorted(values, key=len, reverse=True)  # longest first: no partial masks
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
        self, path: str, params: Params = None, *, costs: Mapping[str, float] | None = None
    ) -> Any:
        """The parsed JSON body of ``GET path``; raises a :class:`FeedError` subclass.

        ``costs`` names the budget windows the request counts against and its cost in each
        (for Binance, ``{"weight": 5}``); the default is one unit in every window. A window
        the venue does not have is a programming error (ValueError).
        """
        return await self._call("GET", path, params, None, costs, as_text=False)

    async def get_text(
        self, path: str, params: Params = None, *, costs: Mapping[str, float] | None = None
    ) -> str:
        """The body of ``GET path`` as text (an HTML page, say), not parsed as JSON.

        Budgets, retries, 429 and bans as :meth:`get_json`; an empty 2xx body is a
        :class:`JunkResponse`. Error answers are still read as JSON for ``error_mapper``.
        """
        return str(await self._call("GET", path, params, None, costs, as_text=True))

    async def post_json(
        self, path: str, json_body: Any, *, costs: Mapping[str, float] | None = None
    ) -> Any:
        """The parsed JSON body of ``POST path`` with ``json_body`` as its JSON payload.

        For read-only query endpoints that take a POST (SoSoValue v2): it is retried exactly as
        :meth:`get_json`, so never use it for a request that must not run twice.
        """
        return await self._call("POST", path, None, json_body, costs, as_text=False)

    def redact(self, text: str) -> str:
        """``text`` with every secret header value replaced by ``***``."""
        return redact(text, self._secrets)

    @contextlib.contextmanager
    def redacting(self) -> Iterator[None]:
        """Re-raise any error raised inside with the secret header values masked."""
        try:
            yield
        except Exception as exc:
            if redact_error(exc, self._secrets):
                raise exc from None
            raise

    async def _call(
        self,
        method: str,
        path: str,
        params: Params,
        json_body: Any,
        costs: Mapping[str, float] | None,
        *,
        as_text: bool,
    ) -> Any:
        spend = (
            dict(costs) if costs is not None else dict.fromkeys(self._budget.limits.windows, 1.0)
        )
        self._budget.check(spend)
        attempt = 0
        while True:
            probe = await self._wait_turn(spend)
            try:
                result = await self._attempt(method, path, params, json_body, as_text)
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

    async def _attempt(
        self, method: str, path: str, params: Params, json_body: Any, as_text: bool
    ) -> Any:
        """One request: the body, or the FeedError it amounts to (returned, not raised)."""
        try:
            response = await self._client.request(method, path, params=params, json=json_body)
        except httpx.TimeoutException:
            return FeedUnavailable(self.venue, f"timed out on {path}")
        except httpx.DecodingError as exc:
            return self._masked(JunkResponse(self.venue, f"{path} sent an undecodable body: {exc}"))
        except httpx.RequestError as exc:
            return FeedUnavailable(self.venue, f"network error on {path}: {type(exc).__name__}")
        self._observe(response)
        result = self._classify(response, path, as_text)
        return self._masked(result) if isinstance(result, FeedError) else result

    def _masked(self, error: FeedError) -> FeedError:
        redact_error(error, self._secrets)
        return error

    def _observe(self, response: httpx.Response) -> None:
        used = response.headers.get("X-MBX-USED-WEIGHT-1M")
        if used is not None and "weight" in self._budget.limits.windows:
            try:  # a garbled header must not fail a good response
                figure = float(used)
            except ValueError:
                return
            self._budget.observe_used("weight", self._clock(), figure)

    def _classify(self, response: httpx.Response, path: str, as_text: bool) -> Any:
        """The body of a good answer (parsed, or text), or the FeedError it amounts to."""
        status = response.status_code
        if as_text and 200 <= status < 300:
            text = response.text
            if not text.strip():
                return JunkResponse(self.venue, f"{path} answered with an empty page")
            return text
        body = parse_body(response.content)
        if 200 <= status < 300:
            if body is JUNK:
                snippet = response.content[:60].decode("utf-8", "replace")
                return JunkResponse(self.venue, f"{path} answered with invalid JSON: {snippet!r}")
            return body
        parsed = None if body is JUNK else body
        if status == 429:
            return self._rate_limited(response, parsed, path)
        if status in self._ban_statuses:
            return self._open_circuit(status, response)
        if status >= 500 or status == 408:
            after = retry_after(response, None, self._clock())
            if after is not None:
                self._slow_until = max(self._slow_until, self._clock() + after)
            return FeedUnavailable(self.venue, f"{path} answered HTTP {status}")
        mapped = self._map_error(status, parsed) if self._map_error else None
        if mapped is not None:
            return mapped
        code, msg = code_and_message(parsed)
        return VenueError(self.venue, f"{path} answered HTTP {status}: {msg or 'no message'}", code)

    def _rate_limited(self, response: httpx.Response, body: Any, path: str) -> RateLimited:
        after = retry_after(response, body, self._clock())
        if after is None:
            after = min(self._backoff_max, _THROTTLE_FIRST_S * 2**self._throttled)
        after = max(after, self._backoff_base)  # "Retry-After: 0" must not become a hammer
        self._throttled += 1
        self._slow_until = max(self._slow_until, self._clock() + after)
        return RateLimited(self.venue, f"rate limited on {path}; retry after {after:g}s", after)

    def _open_circuit(self, status: int, response: httpx.Response) -> Banned:
        now = self._clock()
        stamp = banned_until(response)
        candidates = [] if stamp is None else [stamp]
        after = retry_after(response, None, now)
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


def keyed_client(
    venue: str,
    base_url: str,
    limits: VenueLimits,
    *,
    key_header: str,
    api_key: str,
    missing_key: str,
    error_mapper: ErrorMapper,
    sleep: Sleep | None = None,
    **options: Any,
) -> HttpClient:
    """An HttpClient for a keyed JSON API: ``api_key`` goes in ``key_header`` and is masked in
    every error message. A blank key is refused up front with InputError(``missing_key``)."""
    key = (api_key or "").strip()
    if not key:
        raise InputError(missing_key)
    if sleep is not None:
        options["sleep"] = sleep
    headers = {key_header: key, "Accept": "application/json"}
    return HttpClient(
        venue, base_url, limits, headers=headers, secret_headers=(key_header,),
        error_mapper=error_mapper, **options,
    )  # fmt: skip
