"""Job scheduling for the leader: polling, snapshots, evaluation, outbox draining, digests.

The jobs are plain async callables ``func(now_ms)``, passed in as :class:`Job` specs (the engine
wiring builds them); this module decides *when* they run and guarantees how:

* **no stacking**: at most one instance of a job runs at a time; a firing while the previous
  run is still going is skipped and logged (``max_instances=1``);
* **coalescing**: after a pause (a stalled loop, a suspended host) the firings that piled up
  run once, not once each (``coalesce=True``);
* **misfire grace**: a firing that comes more than ``misfire_grace_s`` late is skipped and
  logged; the job runs at its next time;
* **isolation**: a job's exception is logged and counted; the scheduler and the other jobs go
  on;
* **UTC**: cron schedules (digests) are in UTC, whatever the host's time zone.

Two drivers share the triggers (APScheduler's own :class:`IntervalTrigger` and
:class:`CronTrigger`) and :class:`JobRunner`, which runs a job with ``now`` from the injected
clock and applies no-stacking and isolation:

* :func:`build_scheduler` gives an APScheduler 3.11 :class:`AsyncIOScheduler` (the range
  python-telegram-bot's job queue accepts) for production, on the wall clock. APScheduler itself
  enforces ``max_instances``, ``coalesce`` and ``misfire_grace_time``; its skips and misses are
  fed back into the runner's statistics.
* :class:`TickRunner` drives the same jobs on *any* clock: a fake clock in tests, the
  accelerated data clock of ``liqbot run --demo`` and replays, so a 22:00 UTC digest fires at
  22:00 of data time.

Why not a fake clock under APScheduler: APScheduler 3 reads ``datetime.now()`` inside its
scheduler loop and its executors, with no hook; driving it from a fake clock would mean patching
its modules. :class:`TickRunner` instead replays APScheduler's decision (due run times from the
trigger, keep the last when coalescing, skip when running, skip when late beyond grace) in a few
lines, on the same trigger objects; the tests run both drivers.

Several instances (DESIGN §8): only the leader runs a scheduler; ``claim`` (optional) is asked
before each run with the job id and its scheduled slot, so a job firing takes a claim row and a
brief double leader cannot run it twice.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from apscheduler.events import (  # type: ignore[import-untyped]
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]
from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]

from core.config import AlertSettings
from core.errors import InputError

log = logging.getLogger(__name__)

Clock = Callable[[], float]  # epoch seconds
JobFunc = Callable[[int], Awaitable[object]]  # called with now_ms from the clock
Claim = Callable[[str, int], Awaitable[bool]]  # (job id, slot ms) -> this instance may run it
JobKind = Literal["poll", "snapshot", "evaluate", "drain", "digest", "other"]

HOURLY_DIGEST_CRON = "0 * * * *"
# US spot ETF flows are out after the US close: 22:00 UTC on weekdays by default.
DAILY_DIGEST_CRON = "0 22 * * mon-fri"
POLL_OFFSET_S = 2.0  # after the bar closes: venues publish the bar a moment later
SNAPSHOT_OFFSET_S = 5.0  # after the polls
EVALUATE_OFFSET_S = 8.0  # after the snapshots
DIGEST_SECOND = 30  # digests read the snapshot of the hour


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


@dataclass(frozen=True)
class Every:
    """Every ``seconds``, on the epoch grid plus ``offset_s`` (every 60s at :05 of the minute).

    A grid, not "every 60s from start", so ticks line up with bar closes and across restarts.
    """

    seconds: float
    offset_s: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.seconds) and self.seconds > 0):
            raise InputError(f"a job interval must be positive, got {self.seconds}")
        if not 0 <= self.offset_s < self.seconds:
            raise InputError(
                f"a job offset must be within [0, {self.seconds:g}) s, got {self.offset_s}"
            )

    def trigger(self, now_s: float) -> Any:
        start = math.floor(now_s / self.seconds) * self.seconds + self.offset_s
        return IntervalTrigger(seconds=self.seconds, start_date=_utc(start), timezone=UTC)

    def describe(self) -> str:
        return f"every {self.seconds:g}s" + (f" at +{self.offset_s:g}s" if self.offset_s else "")


@dataclass(frozen=True)
class Cron:
    """A crontab schedule in UTC (minute hour day month weekday), fired at ``second``.

    Weekdays must be names (``mon-fri``): APScheduler 3 counts 0 as Monday where crontab counts
    Sunday, and a number would silently mean another day.
    """

    crontab: str
    second: int = 0

    def __post_init__(self) -> None:
        fields_ = self.crontab.split()
        if len(fields_) != 5:
            raise InputError(
                f"invalid cron schedule {self.crontab!r}; expected 5 fields "
                "(minute hour day month weekday), e.g. '0 22 * * mon-fri'"
            )
        if re.search(r"\d", fields_[4]):
            raise InputError(
                f"weekday {fields_[4]!r} in {self.crontab!r}: use names (mon-fri, sat,sun), "
                "not numbers"
            )
        if not 0 <= self.second < 60:
            raise InputError(f"second must be within 0..59, got {self.second}")
        try:
            self.trigger(0.0)
        except ValueError as exc:
            raise InputError(f"invalid cron schedule {self.crontab!r}: {exc}") from None

    def trigger(self, now_s: float) -> Any:
        minute, hour, day, month, weekday = self.crontab.split()
        return CronTrigger(
            second=self.second,
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=weekday,
            timezone=UTC,
        )

    def describe(self) -> str:
        return f"cron '{self.crontab}' UTC"


@dataclass(frozen=True)
class Job:
    """One scheduled job: ``func(now_ms)`` on ``when``.

    ``misfire_grace_s`` overrides the settings' grace for this job.
    """

    id: str
    func: JobFunc
    when: Every | Cron
    kind: JobKind = "other"
    misfire_grace_s: float | None = None

    def grace_s(self, settings: AlertSettings) -> float:
        return (
            self.misfire_grace_s if self.misfire_grace_s is not None else settings.misfire_grace_s
        )


@dataclass
class JobStats:
    """What /status shows per job."""

    runs: int = 0
    failures: int = 0
    skipped_running: int = 0  # a firing came while the previous run was still going
    missed: int = 0  # a firing came later than the misfire grace
    claimed_elsewhere: int = 0  # another instance took the slot
    running: bool = False
    last_start_ms: int | None = None
    last_end_ms: int | None = None
    last_error: str | None = None


@dataclass
class JobRunner:
    """Runs jobs by id with ``now`` from ``clock``: one instance at a time, errors contained."""

    jobs: Sequence[Job]
    clock: Clock = time.time
    claim: Claim | None = None
    settings: AlertSettings = field(default_factory=AlertSettings)
    stats: dict[str, JobStats] = field(init=False)
    _by_id: dict[str, Job] = field(init=False)

    def __post_init__(self) -> None:
        self._by_id = {}
        for job in self.jobs:
            if job.id in self._by_id:
                raise InputError(f"two jobs have the id {job.id!r}")
            self._by_id[job.id] = job
        self.stats = {job.id: JobStats() for job in self.jobs}

    def job(self, job_id: str) -> Job:
        return self._by_id[job_id]

    def is_running(self, job_id: str) -> bool:
        return self.stats[job_id].running

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def run(self, job_id: str, slot_ms: int | None = None) -> None:
        """Run ``job_id`` once now. Never raises what the job raises (it is logged)."""
        job, st = self._by_id[job_id], self.stats[job_id]
        if st.running:  # APScheduler's max_instances catches this first; TickRunner too
            self.record_skip(job_id)
            return
        st.running = True
        try:
            now = self.now_ms()
            if self.claim is not None and not await self._claimed(job, slot_ms, now):
                return
            st.last_start_ms = now
            try:
                await job.func(now)
            except Exception as exc:  # a job's failure must not stop the scheduler
                st.failures += 1
                st.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("job %s (%s) failed", job_id, job.kind)
            else:
                st.runs += 1
            finally:
                st.last_end_ms = self.now_ms()
        finally:
            st.running = False

    async def _claimed(self, job: Job, slot_ms: int | None, now_ms: int) -> bool:
        """Whether this instance won the job's slot; a failing claim counts as lost (logged)."""
        assert self.claim is not None
        st = self.stats[job.id]
        slot = slot_ms if slot_ms is not None else self.slot_ms(job.id, now_ms)
        try:
            won = await self.claim(job.id, slot)
        except Exception as exc:
            st.failures += 1
            st.last_error = f"claim failed: {type(exc).__name__}: {exc}"
            log.exception("job %s: claiming slot %d failed; not running it", job.id, slot)
            return False
        if not won:
            st.claimed_elsewhere += 1
            log.info("job %s: slot %d already claimed by another instance", job.id, slot)
        return won

    def slot_ms(self, job_id: str, now_ms: int) -> int:
        """The scheduled time of the firing running at ``now_ms``: the latest fire time at or
        before it, within the grace (a later firing would have been skipped); else ``now_ms``."""
        job = self._by_id[job_id]
        now = now_ms / 1000
        if isinstance(job.when, Every):
            step, off = job.when.seconds, job.when.offset_s
            slot = math.floor((now - off) / step) * step + off
            return round(slot * 1000) if now - slot <= job.grace_s(self.settings) else now_ms
        trigger = job.when.trigger(now)
        latest: float | None = None
        fire = trigger.get_next_fire_time(None, _utc(now - job.grace_s(self.settings)))
        while fire is not None and fire.timestamp() <= now:
            latest = float(fire.timestamp())
            fire = trigger.get_next_fire_time(fire, _utc(now))
        return now_ms if latest is None else round(latest * 1000)

    def record_skip(self, job_id: str) -> None:
        self.stats[job_id].skipped_running += 1
        log.warning("job %s skipped: the previous run is still going", job_id)

    def record_miss(self, job_id: str, late_s: float) -> None:
        self.stats[job_id].missed += 1
        log.warning(
            "job %s missed its run time by %.1fs (beyond the misfire grace)", job_id, late_s
        )


# -- APScheduler (production) ------------------------------------------------------------------


class _OverlapFilter(logging.Filter):
    """Drops APScheduler's warning that a run was skipped because the previous one is still
    going: by design here (``max_instances=1``: a drain of a long broadcast outlasts its
    1 s interval), and counted in the job's ``skipped_running`` instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in record.getMessage()


def _quiet_overlaps() -> None:
    logger = logging.getLogger("apscheduler.scheduler")
    if not any(isinstance(f, _OverlapFilter) for f in logger.filters):
        logger.addFilter(_OverlapFilter())


def build_scheduler(
    jobs: Sequence[Job],
    settings: AlertSettings,
    *,
    clock: Clock = time.time,
    runner: JobRunner | None = None,
    claim: Claim | None = None,
) -> Any:
    """An unstarted APScheduler :class:`AsyncIOScheduler` (UTC) running ``jobs``.

    Each job gets ``max_instances=1``, ``coalesce=True`` and ``misfire_grace_time`` (whole
    seconds, rounded up) from ``settings`` or the job. ``clock`` gives the jobs their ``now``;
    APScheduler schedules on the wall clock, so pass a clock that runs with it (use
    :class:`TickRunner` for data time). Pass ``runner`` to read its statistics (for /status).
    Start it from a running loop: ``sched.start()``; stop with ``sched.shutdown()``.
    """
    runner = runner if runner is not None else JobRunner(jobs, clock, claim, settings)
    missing = {j.id for j in jobs} - set(runner.stats)
    if missing:
        raise InputError(f"the runner does not know the jobs {sorted(missing)}")
    sched = AsyncIOScheduler(timezone=UTC)
    _quiet_overlaps()
    now = clock()
    for job in jobs:
        sched.add_job(
            runner.run,
            trigger=job.when.trigger(now),
            args=[job.id],
            id=job.id,
            name=f"{job.kind}:{job.id} ({job.when.describe()})",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, math.ceil(job.grace_s(settings))),
            replace_existing=True,
        )

    def on_event(event: Any) -> None:
        if event.job_id not in runner.stats:
            return
        if event.code == EVENT_JOB_MAX_INSTANCES:
            runner.stats[event.job_id].skipped_running += 1  # APScheduler logged it
        elif event.code == EVENT_JOB_MISSED:
            runner.stats[event.job_id].missed += 1

    sched.add_listener(on_event, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
    return sched


# -- TickRunner (any clock) --------------------------------------------------------------------


class TickRunner:
    """Runs jobs on an injected clock with the semantics of :func:`build_scheduler`.

    Call :meth:`run_due` whenever the clock may have moved (tests after moving a fake clock;
    :meth:`run` in a loop for data time). Started runs are asyncio tasks; :meth:`join` waits for
    them, :meth:`aclose` cancels them.
    """

    def __init__(
        self,
        jobs: Sequence[Job],
        settings: AlertSettings,
        *,
        clock: Clock = time.time,
        runner: JobRunner | None = None,
        claim: Claim | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.runner = runner if runner is not None else JobRunner(jobs, clock, claim, settings)
        now = clock()
        self._jobs = list(jobs)
        self._triggers: dict[str, Any] = {j.id: j.when.trigger(now) for j in jobs}
        self._next: dict[str, datetime | None] = {
            j.id: self._triggers[j.id].get_next_fire_time(None, _utc(now)) for j in jobs
        }
        self._tasks: set[asyncio.Task[None]] = set()

    def next_run(self, job_id: str) -> datetime | None:
        return self._next[job_id]

    def next_runs(self) -> Mapping[str, datetime | None]:
        return dict(self._next)

    def next_wakeup_s(self) -> float | None:
        times = [t.timestamp() for t in self._next.values() if t is not None]
        return min(times) if times else None

    def run_due(self) -> list[str]:
        """Start every job due at the clock's now; returns the ids started."""
        now_s = self.clock()
        now = _utc(now_s)
        started = []
        for job in self._jobs:
            nxt = self._next[job.id]
            if nxt is None or nxt > now:
                continue
            trigger = self._triggers[job.id]
            due: list[datetime] = []
            t: datetime | None = nxt
            while t is not None and t <= now:
                due.append(t)
                t = trigger.get_next_fire_time(t, now)
            self._next[job.id] = t
            run_time = due[-1]  # coalesce: the firings that piled up run once
            if self.runner.is_running(job.id):
                self.runner.record_skip(job.id)
                continue
            late = (now - run_time).total_seconds()
            if late > job.grace_s(self.settings):
                self.runner.record_miss(job.id, late)
                continue
            slot = round(run_time.timestamp() * 1000)
            task = asyncio.get_running_loop().create_task(self.runner.run(job.id, slot))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            started.append(job.id)
        return started

    @property
    def active(self) -> int:
        """Runs started and not finished."""
        return len(self._tasks)

    async def join(self) -> None:
        """Wait until every started run has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks))

    async def run(
        self,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        poll_s: float = 0.25,
        until_s: float | None = None,
    ) -> None:
        """Run due jobs, sleep ``poll_s`` (wall seconds), repeat; until ``until_s`` on the clock.

        Polling rather than sleeping until the next firing keeps it right for a clock that runs
        faster than the wall clock.
        """
        while until_s is None or self.clock() < until_s:
            if self.run_due():
                await asyncio.sleep(0)  # let the runs start (and read the clock) first
            await sleep(poll_s)

    async def aclose(self) -> None:
        """Cancel the runs in progress and wait for them to end."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)


# -- the engine's job set --------------------------------------------------------------------


@dataclass(frozen=True)
class PollSpec:
    """A polling job: ``func(now_ms)`` every ``every_s`` (e.g. one per venue and interval)."""

    id: str
    func: JobFunc
    every_s: float
    offset_s: float = POLL_OFFSET_S


def engine_jobs(
    settings: AlertSettings,
    *,
    polls: Sequence[PollSpec],
    snapshot: JobFunc,
    evaluate: JobFunc,
    drain: JobFunc,
    drain_every_s: float = 1.0,
    hourly_digest: JobFunc | None = None,
    daily_digest: JobFunc | None = None,
    hourly_cron: str = HOURLY_DIGEST_CRON,
    daily_cron: str = DAILY_DIGEST_CRON,
) -> list[Job]:
    """The leader's jobs: polls, then snapshots and evaluation each tick, draining, digests.

    Snapshot and evaluation run every ``settings.tick_s`` on the grid, a few seconds after the
    polls (offsets :data:`SNAPSHOT_OFFSET_S`, :data:`EVALUATE_OFFSET_S`, clipped to the tick).
    A wiring that needs evaluation strictly after the snapshot may instead pass one callable
    that does both as ``snapshot`` and a no-op as ``evaluate``.
    """
    tick = settings.tick_s

    def offset(s: float) -> float:
        return min(s, tick * 0.5)

    jobs = [
        Job(p.id, p.func, Every(p.every_s, min(p.offset_s, p.every_s * 0.5)), "poll") for p in polls
    ]
    jobs += [
        Job("snapshot", snapshot, Every(tick, offset(SNAPSHOT_OFFSET_S)), "snapshot"),
        Job("evaluate", evaluate, Every(tick, offset(EVALUATE_OFFSET_S)), "evaluate"),
        Job("drain", drain, Every(drain_every_s), "drain"),
    ]
    if hourly_digest is not None:
        jobs.append(Job("digest-hourly", hourly_digest, Cron(hourly_cron, DIGEST_SECOND), "digest"))
    if daily_digest is not None:
        jobs.append(Job("digest-daily", daily_digest, Cron(daily_cron, DIGEST_SECOND), "digest"))
    return jobs


def describe_jobs(jobs: Sequence[Job]) -> list[str]:
    """One line per job, for logs and /status."""
    return [f"{j.id} [{j.kind}] {j.when.describe()}" for j in jobs]
