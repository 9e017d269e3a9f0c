"""SoSoValue OpenAPI (free Demo key) -> :class:`core.etf.EtfFlows`.

Endpoints (base ``https://openapi.sosovalue.com/openapi/v1``, key in the ``x-soso-api-key``
header):

- ``GET /etfs/summary-history?symbol=BTC&country_code=US`` gives the daily total net inflow of all
  US spot BTC ETFs (USD), newest first, about the last month.
- ``GET /etfs/{ticker}/history`` gives one fund's daily ``net_inflow`` (USD).

The legacy v2 ``POST /openapi/v2/etf/historicalInflowChart`` answers the same rows in camelCase
under ``data.list``; :func:`parse_summary_history` reads that shape too (fetch it with
``HttpClient.post_json``; the client here uses v1).

Shapes tolerated, as the reference lists: a bare array (the docs) or ``{"code": 0, "data": [...]}``
(the wire); ``data.list`` or ``data``; ``date`` as ``YYYY-MM-DD`` or epoch ms; numbers as JSON
numbers or numeric strings. Flows are converted from USD to US$ millions.

Errors: ``code`` != 0 (on HTTP 200 or 4xx) becomes :class:`VenueError` carrying the code, or
:class:`RateLimited` for 42901 / 402901 (``details.retry_after`` seconds). The API key is sent in
the header only and never appears in a message: the HttpClient masks it (``secret_headers``) in
the errors it builds, and :meth:`HttpClient.redacting` in those of the parsers.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

import httpx
import numpy as np

from core.errors import InputError
from core.etf import EtfFlows
from core.etf_io import TOTAL_TOLERANCE_MUSD
from core.feeds.errors import FeedError, JunkResponse, RateLimited, VenueError
from core.feeds.http import Clock, Sleep, keyed_client
from core.feeds.limits import VenueLimits, Window

VENUE = "sosovalue"
SOSOVALUE_BASE_URL = "https://openapi.sosovalue.com/openapi/v1"
KEY_HEADER = "x-soso-api-key"
SOSOVALUE_LIMITS = VenueLimits({"key": Window(20, 60.0)})  # 20 requests/min per key
RATE_LIMIT_CODES = frozenset({42901, 402901})
KEY_CODES = frozenset({400101, 400102})  # invalid key, expired key (HTTP 401)
DEFAULT_RETRY_AFTER_S = 60.0

_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}")
_TICKER = re.compile(r"^[A-Za-z0-9.]{1,12}$")
_TOTAL_KEYS = ("total_net_inflow", "totalNetInflow")
_FUND_KEYS = ("net_inflow", "netInflow")


def unwrap(payload: Any, what: str) -> Any:
    """The ``data`` of a good answer (or a bare array); the error it amounts to otherwise."""
    if isinstance(payload, list):
        return payload
    if not isinstance(payload, dict) or "code" not in payload:
        raise JunkResponse(
            VENUE, f"{what}: expected {{code, data}} or a list, got {_kind(payload)}"
        )
    code = payload["code"]
    if code in (0, "0"):
        if payload.get("data") is None:
            raise JunkResponse(VENUE, f"{what}: code 0 but no 'data'")
        return payload["data"]
    raise envelope_error(payload, what)


def envelope_error(body: Mapping[str, Any], what: str) -> FeedError:
    """The error of a ``{"code": != 0, "message"|"msg": ..., "details": ...}`` body."""
    code = body.get("code")
    msg = str(body.get("message") or body.get("msg") or "no message")[:200]
    details = body.get("details")
    if _as_int(code) in RATE_LIMIT_CODES:
        after = details.get("retry_after") if isinstance(details, dict) else None
        wait = (
            float(after) if isinstance(after, int | float) and after > 0 else DEFAULT_RETRY_AFTER_S
        )
        return RateLimited(VENUE, f"{what}: rate limited ({msg}); retry after {wait:.0f}s", wait)
    if _as_int(code) in KEY_CODES:
        return VenueError(VENUE, f"{what}: the API key was rejected ({msg}, code {code})", code)
    extra = f" ({details})" if isinstance(details, dict) and details else ""
    return VenueError(VENUE, f"{what}: code {code}: {msg}{extra[:200]}", code)


def sosovalue_error(status: int, body: Any) -> FeedError | None:
    """HttpClient error mapper for non-2xx answers other than 429 / 403 / 5xx."""
    if isinstance(body, dict) and "code" in body:
        return envelope_error(body, f"HTTP {status}")
    if status == 401:
        return VenueError(VENUE, "HTTP 401: the API key is missing or invalid", 401)
    return None


def parse_summary_history(payload: Any, source: str = VENUE) -> EtfFlows:
    """Daily total net inflow of all US spot BTC ETFs, US$ millions, oldest first, no funds.

    Reads v1 ``/etfs/summary-history`` (enveloped or bare) and legacy v2
    ``historicalInflowChart`` (``data.list``, camelCase). A row whose total is null (a day not yet
    reported) is skipped with a note.
    """
    rows = _rows(unwrap(payload, source), source)
    days: dict[date, float] = {}
    notes: list[str] = []
    for k, row in enumerate(rows):
        day = _day(_field(row, ("date",), k, source), k, source)
        raw = _field(row, _TOTAL_KEYS, k, source)
        if raw is None:
            notes.append(f"{source}: {day}: no total net inflow yet; skipped")
            continue
        if day in days:
            raise JunkResponse(VENUE, f"{source}: row {k}: date {day} is listed twice")
        days[day] = _usd(raw, f"{source}: row {k} ({day}), field total_net_inflow") / 1e6
    if not days:
        raise JunkResponse(VENUE, f"{source}: no days in the answer")
    ordered = sorted(days)
    return EtfFlows(
        dates=np.array(ordered, dtype="datetime64[D]"),
        funds=(),
        flows=np.zeros((len(ordered), 0)),
        total=np.array([days[d] for d in ordered]),
        notes=tuple(notes),
        source=source,
    )


def parse_ticker_history(payload: Any, ticker: str, source: str = VENUE) -> dict[date, float]:
    """One fund's daily net inflow from ``/etfs/{ticker}/history``: {day: US$ millions}."""
    where = f"{source} {ticker}"
    out: dict[date, float] = {}
    for k, row in enumerate(_rows(unwrap(payload, where), where)):
        day = _day(_field(row, ("date",), k, where), k, where)
        raw = _field(row, _FUND_KEYS, k, where)
        if raw is None:
            continue
        if day in out:
            raise JunkResponse(VENUE, f"{where}: row {k}: date {day} is listed twice")
        out[day] = _usd(raw, f"{where}: row {k} ({day}), field net_inflow") / 1e6
    return out


def with_funds(summary: EtfFlows, funds: Mapping[str, Mapping[date, float]]) -> EtfFlows:
    """``summary`` (totals) with per-fund columns; a fund absent on a day counts 0.0.

    The total stays SoSoValue's all-fund figure. When the listed funds do not add up to it (a
    subset of tickers was fetched) one note says on how many days.
    """
    if not funds:
        return summary
    names = tuple(funds)
    extra = sorted({d for f in funds.values() for d in f} - set(summary.dates.tolist()))
    dates = sorted([*summary.dates.tolist(), *extra])
    totals = dict(zip(summary.dates.tolist(), summary.total.tolist(), strict=True))
    matrix = np.array([[funds[f].get(d, 0.0) for f in names] for d in dates]).reshape(
        len(dates), len(names)
    )
    total = np.array([totals.get(d, float(matrix[i].sum())) for i, d in enumerate(dates)])
    notes = list(summary.notes)
    if extra:
        notes.append(f"{summary.source}: {len(extra)} day(s) only in fund histories; total = sum")
    off = int(np.sum(np.abs(total - matrix.sum(axis=1)) > TOTAL_TOLERANCE_MUSD + 1e-9))
    if off:
        notes.append(
            f"{summary.source}: {', '.join(names)} do not add up to the all-fund total on "
            f"{off} of {len(dates)} days; the total is SoSoValue's"
        )
    return EtfFlows(
        dates=np.array(dates, dtype="datetime64[D]"),
        funds=names,
        flows=matrix,
        total=total,
        notes=tuple(notes),
        source=summary.source,
    )


class SoSoValueClient:
    """Fetches ETF flows from SoSoValue with one API key (never logged, never in messages)."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = SOSOVALUE_BASE_URL,
        limits: VenueLimits = SOSOVALUE_LIMITS,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = time.time,
        sleep: Sleep | None = None,
        **options: Any,
    ) -> None:
        self.http = keyed_client(
            VENUE,
            base_url,
            limits,
            key_header=KEY_HEADER,
            api_key=api_key,
            missing_key="SoSoValue needs an API key (a free Demo key works)",
            error_mapper=sosovalue_error,
            transport=transport,
            clock=clock,
            sleep=sleep,
            **options,
        )

    async def summary_history(
        self,
        *,
        symbol: str = "BTC",
        country_code: str = "US",
        limit: int | None = None,
        start_date: date | None = None,
        end_date: date | None = None,
    ) -> EtfFlows:
        """Daily totals (US$ millions); ``limit`` at most 300, the API's default is 50."""
        params: dict[str, str | int] = {"symbol": symbol, "country_code": country_code}
        params.update(_range(limit, start_date, end_date))
        payload = await self.http.get_json("/etfs/summary-history", params)
        with self.http.redacting():
            return parse_summary_history(payload, source=f"{VENUE} summary-history")

    async def ticker_history(
        self, ticker: str, *, limit: int | None = None, start_date: date | None = None
    ) -> dict[date, float]:
        """One fund's daily net inflow, {day: US$ millions}."""
        if not _TICKER.match(ticker):
            raise InputError(f"not an ETF ticker: {ticker[:20]!r} (expected letters, e.g. IBIT)")
        payload = await self.http.get_json(
            f"/etfs/{ticker}/history", _range(limit, start_date, None)
        )
        with self.http.redacting():
            return parse_ticker_history(payload, ticker)

    async def flows(self, tickers: Sequence[str] = (), *, limit: int | None = None) -> EtfFlows:
        """Totals, plus a column per ticker in ``tickers`` (one request each; 20/min budget)."""
        summary = await self.summary_history(limit=limit)
        funds = {t: await self.ticker_history(t, limit=limit) for t in tickers}
        return with_funds(summary, funds)

    async def aclose(self) -> None:
        await self.http.aclose()


def _range(limit: int | None, start: date | None, end: date | None) -> dict[str, str | int]:
    out: dict[str, str | int] = {}
    if limit is not None:
        out["limit"] = limit
    if start is not None:
        out["start_date"] = start.isoformat()
    if end is not None:
        out["end_date"] = end.isoformat()
    return out


def _rows(data: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(data, dict) and "list" in data:
        data = data["list"]
    if not isinstance(data, list):
        raise JunkResponse(VENUE, f"{where}: expected a list of days, got {_kind(data)}")
    for k, row in enumerate(data):
        if not isinstance(row, dict):
            raise JunkResponse(VENUE, f"{where}: row {k}: expected an object, got {_kind(row)}")
    return data


def _field(row: Mapping[str, Any], keys: tuple[str, ...], k: int, where: str) -> Any:
    for key in keys:
        if key in row:
            return row[key]
    raise JunkResponse(VENUE, f"{where}: row {k}: missing field {keys[0]!r}")


def _day(value: Any, k: int, where: str) -> date:
    if isinstance(value, str) and _ISO.match(value):
        with contextlib.suppress(ValueError):
            return date.fromisoformat(value[:10])
    elif isinstance(value, int) and not isinstance(value, bool) and value > 0:
        seconds = value / 1000 if value > 10**11 else float(value)
        return datetime.fromtimestamp(seconds, UTC).date()
    raise JunkResponse(VENUE, f"{where}: row {k}: expected a date YYYY-MM-DD, found {value!r}")


def _usd(value: Any, where: str) -> float:
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = float(value.strip())
    if number is None or not math.isfinite(number):
        raise JunkResponse(VENUE, f"{where}: expected a number of USD, found {value!r}"[:300])
    return number


def _as_int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
