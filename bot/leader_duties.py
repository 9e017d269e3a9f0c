"""What only the leader does, started on election and stopped on deposition (DESIGN §8).

The leader runs the scheduler: polls, snapshots and evaluation, outbox delivery, digests. Every
job firing except the drain first takes a claim row (``alerts.store.claim_job``), so a brief
double leader (the old one has not yet noticed it lost its session) cannot run a firing twice;
the drain needs none, since outbox rows are leased to one worker. A follower runs no jobs and
refreshes its snapshot cache from the store, where the leader writes every tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from alerts.scheduler import Job, JobRunner, TickRunner, build_scheduler
from alerts.store import StoreError, claim_job, get_snapshot_views, release_leases
from bot.pipeline import Pipeline
from core.config import Settings

__all__ = ["LeaderDuties"]

log = logging.getLogger(__name__)

UNCLAIMED = frozenset({"drain"})


class LeaderDuties:
    """Starts and stops the scheduler as leadership comes and goes."""

    def __init__(
        self,
        pipeline: Pipeline,
        jobs: Sequence[Job],
        settings: Settings,
        *,
        data_clock: bool,
        clock: Callable[[], float],
    ) -> None:
        self.pipeline = pipeline
        self.settings = settings
        self.data_clock = data_clock  # a demo's fast clock: TickRunner, not APScheduler
        self.clock = clock
        self.runner = JobRunner(jobs, clock, self._claim, settings.alerts)
        self._jobs = list(jobs)
        self._sched: Any = None
        self._ticker: TickRunner | None = None
        self._ticker_task: asyncio.Task[None] | None = None
        self._warm = False
        self._lock = asyncio.Lock()

    async def _claim(self, job_id: str, slot_ms: int) -> bool:
        if job_id in UNCLAIMED:
            return True
        return await claim_job(self.pipeline.store, job_id, slot_ms, self.pipeline.instance)

    async def lead(self) -> None:
        """Elected: a first poll and snapshot if this instance has none yet, then the jobs."""
        async with self._lock:
            if self._sched is not None or self._ticker is not None:
                return
            # Leases of a leader that died mid-drain: due again now, not when they run out.
            released = await release_leases(self.pipeline.store)
            if released:
                log.info("took over %d outbox rows a previous leader had claimed", released)
            if not self._warm:
                await warm_up(self.pipeline)
                self._warm = True
            if self.data_clock:
                self._ticker = TickRunner(
                    self._jobs, self.settings.alerts, clock=self.clock, runner=self.runner
                )
                self._ticker_task = asyncio.create_task(self._ticker.run(poll_s=0.1))
            else:
                self._sched = build_scheduler(
                    self._jobs, self.settings.alerts, clock=self.clock, runner=self.runner
                )
                self._sched.start()
            log.info("leading: scheduler started (%d jobs)", len(self._jobs))

    async def follow(self) -> None:
        """Deposed or stopping: start no new job, let the running ones finish."""
        async with self._lock:
            if self._sched is not None:
                # Paused, not shut down: APScheduler's shutdown cancels the running jobs.
                self._sched.pause()
            if self._ticker_task is not None:
                self._ticker_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._ticker_task
                self._ticker_task = None
            await wait_for_jobs(self.runner)
            if self._sched is not None:
                self._sched.shutdown(wait=False)
                self._sched = None
            if self._ticker is not None:
                await self._ticker.aclose()
                self._ticker = None

    @property
    def leading(self) -> bool:
        return self._sched is not None or self._ticker is not None

    async def refresh_while_following(self, every_s: float) -> None:
        """A follower's snapshots come from the store (the leader writes them every tick)."""
        cache = self.pipeline.builder.cache
        while True:
            if not self.leading:
                try:
                    for got in (await get_snapshot_views(self.pipeline.store)).values():
                        cache.seed(got.snapshot, got.map, got.render_key)
                except StoreError as exc:  # the database is away (restarting): next time
                    log.warning("could not read the shared snapshots: %s", exc)
                except Exception:
                    log.warning("could not read the shared snapshots", exc_info=True)
            await asyncio.sleep(every_s)


async def warm_up(pipeline: Pipeline) -> None:
    """First poll of every venue, ETF flows and a first snapshot, with progress in the log."""
    now = pipeline.now_ms()
    for venue in pipeline.feeds.rests:
        log.info("loading %s bars for %s ...", venue, ", ".join(pipeline.feeds.symbols))
        await pipeline.poll(venue, now)
    await pipeline.poll_etf(now)
    snaps = await pipeline.tick(pipeline.now_ms())
    log.info("first snapshots: %s", ", ".join(f"{s.symbol} {s.price:,.0f}" for s in snaps))


async def wait_for_jobs(runner: JobRunner, timeout_s: float = 30.0) -> None:
    """Let running jobs (a drain's in-flight sends) finish."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while any(st.running for st in runner.stats.values()):
        if loop.time() > deadline:
            log.warning("jobs still running after %.0fs; stopping anyway", timeout_s)
            return
        await asyncio.sleep(0.05)
