"""The leader's work, one tick at a time: poll -> snapshot -> evaluate -> deliver (DESIGN §2).

:class:`Pipeline` owns the in-memory market (bar series, liquidation ledgers, the latest
snapshots and ETF flows) and gives the scheduler its job bodies (:meth:`jobs`):

* ``poll-<venue>``: new closed bars and their open interest for every symbol, each bar once;
* ``etf``: the day's ETF flows (the feed caches per day and falls back to older flows);
* ``snapshot``: a snapshot per symbol, stored for followers and commands, then the alert
  engine's tick on them (one job, so evaluation always sees this tick's snapshots);
* ``drain``: the outbox to the chat platforms;
* the digest cron jobs.

Liquidation streams run as background tasks (:meth:`run_streams`) feeding the ledgers. A job
that fails is logged by the scheduler and the next tick tries again; a stale feed makes stale
snapshots, on which no rule fires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from alerts.delivery import DrainResult, Sender
from alerts.engine import AlertEngine
from alerts.leadership import Leadership
from alerts.scheduler import Job, PollSpec, engine_jobs
from alerts.series import SeriesStore, bars_for_lookback, poll_bars
from alerts.snapshots import SnapshotBuilder
from alerts.store import OutboxStats, Store, put_snapshots, stats
from bot.feeds_setup import MarketFeeds
from bot.metrics import Metrics
from bot.services import EtfView, StatusView
from core.config import Settings
from core.errors import LiqbotError
from core.etf_report import FlowReport, flow_report
from core.feeds.backfill import IncrementalPoller
from core.feeds.base import LiquidationStream
from core.feeds.etf_feed import EtfSnapshot
from core.feeds.types import Venue
from core.snapshot import Snapshot

__all__ = ["Pipeline"]

log = logging.getLogger(__name__)
STATUS_TTL_S = 1.0  # /status reads the outbox counts and the leader at most this often


class Pipeline:
    """Polls, snapshots, evaluation and delivery over one :class:`MarketFeeds`."""

    def __init__(
        self,
        settings: Settings,
        feeds: MarketFeeds,
        store: Store,
        engine: AlertEngine,
        *,
        instance: str = "liqbot",
    ) -> None:
        self.settings = settings
        self.feeds = feeds
        self.store = store
        self.engine = engine
        self.instance = instance
        self.series = SeriesStore.from_settings(settings.map, feeds.interval)
        self.builder = SnapshotBuilder(
            self.series, settings.map, tick_ms=round(settings.alerts.tick_s * 1000)
        )
        # The first poll of a series fetches the map's whole lookback.
        lookback = bars_for_lookback(settings.map.lookback, feeds.interval)
        self.poller = IncrementalPoller(first_fetch_bars=max(lookback, 2))
        self.etf_snapshot: EtfSnapshot | None = None
        self._report: FlowReport | None = None
        self.last_tick_ms: int | None = None
        self.last_drain: DrainResult | None = None
        self.metrics: Metrics | None = None  # set by liqbot run
        self.leadership: Leadership | None = None  # None: this process is the only instance
        self._stream_tasks: list[asyncio.Task[None]] = []
        self._status_cache: tuple[float, OutboxStats, str | None] | None = None

    def latest_snapshots(self) -> list[Snapshot]:
        cache = self.builder.cache
        return [s for s in map(cache.get, cache.symbols()) if s is not None]

    def now_ms(self) -> int:
        return int(self.feeds.clock() * 1000)

    def leading(self) -> bool:
        """Whether this instance may deliver: the leader, or the only instance."""
        return self.leadership is None or self.leadership.is_leader

    # --- jobs ------------------------------------------------------------------------------

    async def poll(self, venue: Venue, now_ms: int) -> int:
        """New bars of every symbol on ``venue``; a symbol that fails does not stop the rest."""
        joined = 0
        feed = self.feeds.rests[venue]
        for symbol in self.feeds.symbols:
            try:
                joined += await poll_bars(self.series, feed, self.poller, symbol, now_ms)
            except LiqbotError as exc:
                log.warning("poll %s %s failed: %s", venue, symbol, exc)
        return joined

    async def poll_etf(self, now_ms: int) -> None:
        if self.feeds.etf is None:
            return
        try:
            snap = await self.feeds.etf.get()
        except LiqbotError as exc:
            log.warning("etf flows unavailable: %s", exc)
            return
        if self.etf_snapshot is None or snap.flows is not self.etf_snapshot.flows:
            self._report = flow_report(snap.flows, asof=snap.flows.last_date)
        self.etf_snapshot = snap

    def _streams_alive(self, now_ms: int) -> None:
        # Liquidations are sparse: a connected, subscribed stream is fresh without events.
        for venue, stream in self.feeds.streams.items():
            st = stream.status()
            if st.connected and st.subscribed:
                self.series.stream_alive(venue, now_ms)

    async def tick(self, now_ms: int) -> list[Snapshot]:
        """Snapshots of every symbol, stored, then evaluated by the alert engine."""
        started = time.perf_counter()
        self._streams_alive(now_ms)
        builds = self.builder.tick(now_ms)
        snaps = [b.snapshot for b in builds]
        if snaps:
            # With the map views: a follower answers /liqmap with the leader's chart.
            views = {
                b.snapshot.symbol: (b.map, b.render_key)
                for b in builds
                if b.map is not None and b.render_key is not None
            }
            await put_snapshots(self.store, snaps, views)
        result = await self.engine.tick(
            now_ms, snaps, self._report, etf_stale=self.etf_stale(now_ms)
        )
        self.last_tick_ms = now_ms
        if self.metrics is not None:
            self.metrics.observe_tick(time.perf_counter() - started, result, now_ms)
        return snaps

    def etf_stale(self, now_ms: int) -> bool:
        snap = self.etf_snapshot
        return snap is None or snap.is_stale(now_ms)

    def jobs(self, send: Sender, *, drain_every_s: float = 1.0) -> list[Job]:
        """The scheduler's job set for this pipeline, delivering with ``send``."""

        async def drain(now_ms: int) -> None:
            self.last_drain = await self.engine.drain(
                send, now_ms, self.instance, keep_going=self.leading
            )
            if self.metrics is not None:
                self.metrics.observe_drain("all", self.last_drain)

        async def nothing(now_ms: int) -> None:
            return None

        async def inputs() -> tuple[Sequence[Snapshot], FlowReport | None]:
            return self.latest_snapshots(), self._report

        def poller(venue: Venue) -> PollSpec:
            async def run(now_ms: int) -> None:
                await self.poll(venue, now_ms)

            return PollSpec(f"poll-{venue}", run, self.settings.bot.poll_s)

        polls = [poller(v) for v in self.feeds.rests]

        async def etf_and_digest(now_ms: int) -> None:
            await self.poll_etf(now_ms)
            if self._report is not None and not self.etf_stale(now_ms):
                snaps, report = await inputs()
                await self.engine.digest("after-etf", now_ms, snaps, report, now_ms=now_ms)

        polls.append(PollSpec("etf", etf_and_digest, 900.0))

        async def snapshot(now_ms: int) -> None:
            await self.tick(now_ms)

        return engine_jobs(
            self.settings.alerts,
            polls=polls,
            snapshot=snapshot,
            evaluate=nothing,
            drain=drain,
            drain_every_s=drain_every_s,
            hourly_digest=self.engine.digest_job("hourly", inputs),
            daily_digest=self.engine.digest_job("daily", inputs),
            hourly_cron=self.settings.alerts.hourly_digest_cron,
            daily_cron=self.settings.alerts.daily_digest_cron,
        )

    # --- streams ---------------------------------------------------------------------------

    def start_streams(self) -> None:
        """Listen to every venue's liquidation stream in the background."""
        now = self.now_ms()
        for venue, stream in self.feeds.streams.items():
            self.series.track_stream(venue, covered_from_ms=now)
            self._stream_tasks.append(asyncio.create_task(self._consume(venue, stream)))

    async def _consume(self, venue: str, stream: LiquidationStream) -> None:
        try:
            async for event in stream.events():
                self.series.add_events([event])
        except asyncio.CancelledError:
            raise
        except Exception:  # a stream bug must not take the bot down: it shows as stale
            log.exception("liquidation stream %s stopped", venue)

    async def stop_streams(self) -> None:
        for stream in self.feeds.streams.values():
            await stream.aclose()
        for task in self._stream_tasks:
            task.cancel()
        for task in self._stream_tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._stream_tasks.clear()

    # --- what commands read -------------------------------------------------------------

    async def etf_view(self) -> EtfView | None:
        snap = self.etf_snapshot
        if snap is None or self._report is None:
            return None
        now = self.now_ms()
        name = self.feeds.etf.name if self.feeds.etf is not None else ""
        return EtfView(snap.flows, self._report, snap.fetched_ms, snap.is_stale(now), name)

    async def _shared_status(self, now_ms: int) -> tuple[OutboxStats, str | None]:
        """The outbox counts and the leader's name, asked of the database at most once per
        STATUS_TTL_S: a burst of /status (or scrapes) must not queue queries on the leader
        lock's connection, where the lease checks run."""
        cached = self._status_cache
        if cached is not None and time.monotonic() - cached[0] < STATUS_TTL_S:
            return cached[1], cached[2]
        outbox = await stats(self.store, now_ms)
        leader: str | None = self.instance
        if self.leadership is not None:
            try:
                leader = await self.leadership.current_leader()
            except LiqbotError:  # the database cannot say right now
                leader = self.instance if self.leadership.is_leader else None
        self._status_cache = (time.monotonic(), outbox, leader)
        return outbox, leader

    async def status(self) -> StatusView:
        now = self.now_ms()
        self._streams_alive(now)
        outbox, leader = await self._shared_status(now)
        is_leader = self.leading()
        return StatusView(
            now_ms=now,
            venues=tuple(f.status() for f in self.feeds.rests.values()),
            streams=tuple(s.status() for s in self.feeds.streams.values()),
            series=tuple(self.series.freshness()),
            last_tick_ms=self.last_tick_ms,
            leader=leader,
            is_leader=is_leader,
            queue_depth=outbox.pending,
            dead_letters=outbox.dead,
            mode=self.feeds.mode,
        )
