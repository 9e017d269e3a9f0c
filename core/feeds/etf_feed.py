"""ETF flows from one chosen source, cached on disk per UTC day.

Sources, by name:

- ``farside``: Farside's HTML table (free, no key; :mod:`core.feeds.farside`).
- ``sosovalue``: SoSoValue's OpenAPI (key; about the last month of totals, per fund on request).
- ``coinglass``: CoinGlass's ETF flow history (key; per fund).
- ``file``: a flows file (JSON or CSV, :mod:`core.etf_io`); read on every call, never cached.

A keyed source without its key is refused up front with an :class:`InputError` that names the
environment variable the key comes from (:data:`KEY_ENV`); keys are passed in, never read here.

Caching: a successful fetch is written as ``etf-<source>-<YYYY-MM-DD>.json`` (the UTC day of the
fetch, in the JSON shape :mod:`core.etf_io` reads) atomically: a temporary file, fsync, rename.
A cache for today is reused instead of fetching; ``max_age_s`` can shorten that, since a US
trading day's flows are published late in its UTC day or after it. When a fetch fails (network,
ban, junk page), the newest cached day is served with ``stale=True`` and the error, and the next
fetch is tried only after ``retry_s``. ``freshness`` (a daily :class:`Freshness`) always tells
when the flows served were fetched. Rows dated after today (a placeholder row) are dropped.

The clock is injectable (seconds since the epoch), so tests move days without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from core.errors import InputError, LiqbotError
from core.etf import EtfFlows
from core.etf_io import load_flows, parse_flows_json
from core.feeds.coinglass import CoinGlassClient
from core.feeds.farside import FARSIDE_ALL_DATA_URL, farside_client, fetch_farside
from core.feeds.http import Clock, Sleep
from core.feeds.sosovalue import SoSoValueClient
from core.feeds.staleness import Freshness

log = logging.getLogger(__name__)

SOURCE_NAMES = ("farside", "sosovalue", "coinglass", "file")
KEY_ENV = {"sosovalue": "LIQBOT_SOSOVALUE_KEY", "coinglass": "LIQBOT_COINGLASS_KEY"}
DAY_MS = 86_400_000
_CACHE_NAME = re.compile(r"^etf-(?P<source>[a-z0-9_-]+)-(?P<day>\d{4}-\d{2}-\d{2})\.json$")


async def _nothing() -> None:
    return None


@dataclass(frozen=True)
class FlowSource:
    """One way to get flows: ``fetch`` returns them; ``cacheable`` says whether to cache."""

    name: str
    fetch: Callable[[], Awaitable[EtfFlows]]
    aclose: Callable[[], Awaitable[None]] = _nothing
    cacheable: bool = True


@dataclass(frozen=True)
class EtfSnapshot:
    """Flows as served: what, from which UTC day's fetch, and whether a fetch just failed."""

    flows: EtfFlows
    day: date  # UTC day of the fetch that produced ``flows``
    fetched_ms: int
    freshness: Freshness
    from_cache: bool
    error: str | None = None  # today's fetch failed with this; ``flows`` are older

    @property
    def stale(self) -> bool:
        """True when today's fetch failed and older flows are served."""
        return self.error is not None

    def is_stale(self, now_ms: int) -> bool:
        """``stale``, or the flows are older than two days (:class:`Freshness`'s rule)."""
        return self.stale or self.freshness.is_stale(now_ms)


def make_source(
    name: str,
    *,
    sosovalue_key: str | None = None,
    coinglass_key: str | None = None,
    file: str | Path | None = None,
    farside_url: str = FARSIDE_ALL_DATA_URL,
    sosovalue_tickers: Sequence[str] = (),
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock = time.time,
    sleep: Sleep | None = None,
) -> FlowSource:
    """The source called ``name``; InputError for an unknown name or a missing key or file."""
    net: dict[str, Any] = {"transport": transport, "clock": clock, "sleep": sleep}
    if name == "farside":
        page = farside_client(farside_url, **net)
        return FlowSource(name, lambda: fetch_farside(page), page.aclose)
    if name == "sosovalue":
        soso = SoSoValueClient(_key(name, sosovalue_key), **net)
        return FlowSource(name, lambda: soso.flows(sosovalue_tickers), soso.aclose)
    if name == "coinglass":
        glass = CoinGlassClient(_key(name, coinglass_key), **net)
        return FlowSource(name, lambda: glass.etf_flows("us"), glass.aclose)
    if name == "file":
        if file is None or not str(file).strip():
            raise InputError("ETF source 'file' needs the path of a flows file (JSON or CSV)")
        path = Path(file)
        return FlowSource(name, lambda: asyncio.to_thread(load_flows, path), cacheable=False)
    raise InputError(f"unknown ETF source {name!r}; expected one of {', '.join(SOURCE_NAMES)}")


class EtfFeed:
    """Daily ETF flows from one source, with a per-UTC-day disk cache and a stale fallback."""

    def __init__(
        self,
        source: FlowSource,
        cache_dir: str | Path,
        *,
        clock: Clock = time.time,
        retry_s: float = 900.0,
        keep_days: int = 10,
        max_age_s: float | None = None,
    ) -> None:
        self.source = source
        self.cache_dir = Path(cache_dir)
        self._clock = clock
        self._retry_s = retry_s
        self._max_age_ms = None if max_age_s is None else max_age_s * 1000
        self._keep = max(keep_days, 1)
        self._current: EtfSnapshot | None = None
        self._failed_at: float | None = None
        self._freshness = Freshness(f"etf:{source.name}", DAY_MS)
        self._lock = asyncio.Lock()  # one fetch at a time; concurrent callers share its result

    @classmethod
    def create(
        cls, name: str, cache_dir: str | Path, *, clock: Clock = time.time, **options: Any
    ) -> EtfFeed:
        """:func:`make_source` (``options`` are its keywords) wrapped in a feed."""
        return cls(make_source(name, clock=clock, **options), cache_dir, clock=clock)

    @property
    def name(self) -> str:
        return self.source.name

    def freshness(self) -> Freshness:
        """When the flows held were fetched (daily interval), for /status and staleness."""
        return self._freshness

    async def get(self, *, refresh: bool = False) -> EtfSnapshot:
        """Today's flows: from memory or today's cache, else fetched; see the module docstring.

        ``refresh`` fetches even when today's flows are held. Raises the fetch's error only when
        there is nothing to fall back to.
        """
        async with self._lock:
            return await self._get(refresh)

    async def _get(self, refresh: bool) -> EtfSnapshot:
        now = self._clock()
        today = _utc_day(now)
        current = self._current
        if not refresh and current is not None:
            if self._usable_today(current, today, now):
                return current
            if current.error is not None and now - (self._failed_at or 0.0) < self._retry_s:
                return current  # a fetch failed moments ago: do not hammer the source
        if not refresh and self.source.cacheable:
            cached = self._read(self._path(today))
            if cached is not None and self._usable_today(cached, today, now):
                return self._serve(cached)
        try:
            flows = await self.source.fetch()
            if flows.last_date > today:  # a placeholder row for a day that has not happened
                flows = flows.until(today)
        except LiqbotError as exc:
            self._failed_at = now
            fallback = current or self._latest_cached(today)
            if fallback is None:
                raise
            log.warning(
                "etf %s: fetch failed (%s); serving flows of %s", self.name, exc, fallback.day
            )
            return self._serve(replace(fallback, error=str(exc)))
        self._failed_at = None
        now_ms = int(now * 1000)
        snap = EtfSnapshot(flows, today, now_ms, self._freshness, from_cache=False)
        if self.source.cacheable:
            self._write(snap)
        return self._serve(snap)

    async def aclose(self) -> None:
        await self.source.aclose()

    async def __aenter__(self) -> EtfFeed:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _usable_today(self, snap: EtfSnapshot, today: date, now: float) -> bool:
        """Fetched today, successfully, and (with ``max_age_s``) recently enough."""
        young = self._max_age_ms is None or now * 1000 - snap.fetched_ms < self._max_age_ms
        return snap.day == today and snap.error is None and young

    def _serve(self, snap: EtfSnapshot) -> EtfSnapshot:
        self._freshness = self._freshness.updated(snap.fetched_ms)
        snap = replace(snap, freshness=self._freshness)
        self._current = snap
        return snap

    def _path(self, day: date) -> Path:
        return self.cache_dir / f"etf-{self.name}-{day.isoformat()}.json"

    def _cached_days(self) -> list[tuple[date, Path]]:
        out = []
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for path in self.cache_dir.iterdir():
                m = _CACHE_NAME.match(path.name)
                if m and m["source"] == self.name:
                    with contextlib.suppress(ValueError):
                        out.append((date.fromisoformat(m["day"]), path))
        return sorted(out, reverse=True)

    def _latest_cached(self, today: date) -> EtfSnapshot | None:
        for day, path in self._cached_days():
            if day <= today:
                snap = self._read(path)
                if snap is not None:
                    return snap
        return None

    def _read(self, path: Path) -> EtfSnapshot | None:
        """A cache file as a snapshot; None when absent or unreadable (logged, then ignored)."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("etf cache %s: cannot read (%s); ignored", path, exc.strerror)
            return None
        try:
            meta = orjson.loads(data)["meta"]
            flows = parse_flows_json(data, str(path))
            flows = replace(flows, notes=tuple(meta["notes"]), source=str(meta["flows_source"]))
            fetched_ms, day = int(meta["fetched_ms"]), date.fromisoformat(meta["day"])
        except (LiqbotError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            log.warning("etf cache %s: unusable (%s); ignored", path, exc)
            return None
        fresh = Freshness(self._freshness.series, DAY_MS, fetched_ms)
        return EtfSnapshot(flows, day, fetched_ms, fresh, from_cache=True)

    def _write(self, snap: EtfSnapshot) -> None:
        """Write ``snap`` as today's cache atomically, and prune old days. Failures only log:
        the flows fetched are good whether or not they could be cached."""
        path = self._path(snap.day)
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            _atomic_write(path, _cache_bytes(snap, self.name))
        except OSError as exc:
            log.warning("etf cache %s: cannot write (%s)", path, exc.strerror or exc)
            return
        for _, old in self._cached_days()[self._keep :]:
            with contextlib.suppress(OSError):
                old.unlink()


def _cache_bytes(snap: EtfSnapshot, source: str) -> bytes:
    flows = snap.flows
    days = [
        {
            "date": flows.date_at(i).isoformat(),
            "total_musd": float(flows.total[i]),
            "funds": {f: float(flows.flows[i, j]) for j, f in enumerate(flows.funds)},
        }
        for i in range(len(flows))
    ]
    meta = {
        "source": source,
        "flows_source": flows.source,
        "day": snap.day.isoformat(),
        "fetched_ms": snap.fetched_ms,
        "notes": list(flows.notes),
    }
    return orjson.dumps({"meta": meta, "days": days})


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _key(name: str, key: str | None) -> str:
    if key is None or not key.strip():
        raise InputError(
            f"ETF source '{name}' needs an API key: set {KEY_ENV[name]} in the environment, "
            "or use the source 'farside' (free, no key) or 'file'"
        )
    return key


def _utc_day(seconds: float) -> date:
    return datetime.fromtimestamp(seconds, UTC).date()
