"""A small HTTP server for the operator: ``GET /metrics`` (Prometheus) and ``GET /healthz``.

It runs in the bot's own asyncio loop (aiohttp, which discord.py already brings in), bound to
127.0.0.1 by default: metrics and health details are for the host's scraper and probes, not
the internet. ``/healthz`` answers 200 ``{"status": "ok", ...}`` or 503 with the reasons, so a
container probe or a load balancer can act on it and a person can read why.

::

    server = HealthServer(metrics, health, port=9108, on_scrape=refresh)
    await server.start()          # server.port is the bound port (port=0: an ephemeral one)
    ...
    await server.stop()
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from alerts.store import Store
from bot.metrics import Metrics
from bot.services import StatusView

__all__ = [
    "HealthCheck",
    "HealthReport",
    "HealthServer",
    "health_check",
    "health_from_status",
    "ping_store",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HealthReport:
    """Healthy or not, why not (one short sentence per problem), and what was looked at."""

    ok: bool
    reasons: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.ok else "unhealthy",
            "reasons": list(self.reasons),
            **self.details,
        }


HealthCheck = Callable[[], Awaitable[HealthReport]]


def health_from_status(
    status: StatusView, *, max_tick_age_s: float, store_error: str | None = None
) -> HealthReport:
    """The bot's health from what ``/status`` shows and a store ping (None: it answered).

    Unhealthy when the store does not answer, or, on the leader, when no tick ran within
    ``max_tick_age_s`` (the scheduler is stuck or every tick fails). Ages are in the bot's
    data time (``status.now_ms``), as ``tick_s`` is: in demo mode a data minute passes in a
    tenth of a wall second. A follower does not tick, so its tick age is not held against it.
    Stale feeds are reported in the details only: restarting the bot does not fix a venue.
    """
    reasons: list[str] = []
    if store_error is not None:
        reasons.append(f"store unreachable: {store_error}")
    tick_age_s: float | None = None
    if status.last_tick_ms is not None:
        tick_age_s = max(status.now_ms - status.last_tick_ms, 0) / 1000
    if status.is_leader:
        if tick_age_s is None:
            reasons.append("no tick has run yet")
        elif tick_age_s > max_tick_age_s:
            reasons.append(f"last tick {tick_age_s:.0f}s ago (limit {max_tick_age_s:.0f}s)")
    stale = [f.series for f in status.series if f.is_stale(status.now_ms)]
    details: dict[str, Any] = {
        "mode": status.mode,
        "leader": status.leader,
        "is_leader": status.is_leader,
        "last_tick_age_s": tick_age_s,
        "queue_depth": status.queue_depth,
        "dead_letters": status.dead_letters,
        "stale_series": stale,
        "store": "ok" if store_error is None else "error",
    }
    return HealthReport(not reasons, reasons, details)


async def ping_store(store: Store, timeout_s: float = 2.0) -> str | None:
    """None when the store answers ``SELECT 1`` within ``timeout_s``, else why not."""
    try:
        async with asyncio.timeout(timeout_s), store.read() as conn:
            await conn.execute(text("SELECT 1"))
    except TimeoutError:
        return f"no answer within {timeout_s:g}s"
    except Exception as exc:  # any driver error means the same to a probe: unreachable
        return f"{type(exc).__name__}: {exc}"[:200]
    return None


def health_check(
    status: Callable[[], Awaitable[StatusView]], store: Store, *, max_tick_age_s: float
) -> HealthCheck:
    """The default ``/healthz`` check: ``status()`` (e.g. ``Pipeline.status``) and a store
    ping. A ``status()`` that raises (it reads the outbox) is unhealthy, with its error."""

    async def check() -> HealthReport:
        store_error = await ping_store(store)
        try:
            view = await status()
        except Exception as exc:
            reason = f"status unavailable: {type(exc).__name__}: {exc}"[:300]
            return HealthReport(
                False, [reason], {"store": "ok" if store_error is None else "error"}
            )
        return health_from_status(view, max_tick_age_s=max_tick_age_s, store_error=store_error)

    return check


class HealthServer:
    """``/metrics`` and ``/healthz`` on ``host:port``, in the running loop.

    ``on_scrape``, when given, runs before each ``/metrics`` answer: gauges that cost a query
    (the outbox counts) are then read when scraped rather than on every drain. If it fails,
    the scrape still answers with the values from before (logged), so one slow query does not
    blank every metric.
    """

    def __init__(
        self,
        metrics: Metrics,
        health: HealthCheck,
        host: str = "127.0.0.1",
        port: int = 9108,
        *,
        on_scrape: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.metrics = metrics
        self.health = health
        self.host = host
        self._port = port
        self.on_scrape = on_scrape
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        """The bound port once started (the ephemeral one for ``port=0``), else the asked one."""
        if self._runner is not None and self._runner.addresses:
            return int(self._runner.addresses[0][1])
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("the health server is already running")
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        runner = web.AppRunner(app, access_log=None)  # a scrape every 15s is not news
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self._port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        log.info("metrics and health on %s (/metrics, /healthz)", self.url)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        if self.on_scrape is not None:
            try:
                await self.on_scrape()
            except Exception:
                log.exception("refreshing metrics before a scrape failed")
        return web.Response(
            body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _healthz(self, request: web.Request) -> web.Response:
        try:
            report = await self.health()
        except Exception as exc:  # a broken check is itself a reason to be unhealthy
            log.exception("health check failed")
            report = HealthReport(False, [f"health check failed: {type(exc).__name__}: {exc}"])
        body = _finite(report.to_json())
        return web.json_response(body, status=200 if report.ok else 503, dumps=_dumps)


_dumps = functools.partial(json.dumps, default=str)  # a detail of any type still serializes


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: such numbers become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
